//! Holder scan: node-io's forms side by side with `fuser` and `lsof`, on a fixture shaped
//! like a real node (issue goal: the default ≤ 0.5× fuser and ≤ 0.15× lsof with idle
//! cores, and never more than a few percent behind the best single form on a busy node).
//!
//! Fixture: `PROCS` background processes holding tens to hundreds of fds each (the
//! `FDS_PER_PROC` mix, half /dev/null, half a regular file; ~31,000 fds) besides whatever
//! the machine runs, and one process holding a loop device (root only; without it the
//! scans look for a device nobody holds, which costs the same, and fuser/lsof are skipped).
//!
//! Benchmarks (stable names, read by scripts/bench-report.sh):
//! - `holder_scan/{auto,sequential,parallel,io_uring,fuser,lsof}`: one scan for the loop
//!   device's number; `auto` is the default (`ScanMode::Auto`). Goals: auto/fuser ≤ 0.5,
//!   auto/lsof ≤ 0.15.
//! - `holder_scan_busy/{auto,sequential,parallel}`: the same with one CPU-spinning process
//!   per core running. Goal: auto/sequential ≤ ~1.05 (the default never loses more than a few
//!   percent when the cores are busy).
//!
//! Each group prints what the default chose (`holder_scan plan: group=.. sequential=N
//! parallel=N` over 20 scans) and the load average before and after.
//! Run: `cargo bench -p node-io --bench holders` (as root for fuser/lsof).

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use node_io::dev_num::DevNum;
use node_io::holders::{scan_processes, ScanMode, ScanPlan};

const PROCS: usize = 300;
/// Open fds per fixture process, cycled: a few big daemons, many small processes.
const FDS_PER_PROC: [usize; 8] = [12, 25, 40, 60, 90, 130, 200, 280];

struct Fixture {
    children: Vec<Child>,
    loop_dev: Option<PathBuf>,
    dev: DevNum,
    _file: tempfile::NamedTempFile,
    _backing: Option<tempfile::NamedTempFile>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(p) = &self.loop_dev {
            let _ = Command::new("losetup").arg("-d").arg(p).status();
        }
    }
}

/// Runs `script` in bash and waits for its `ready` line.
fn spawn_ready(script: &str, args: &[&Path]) -> Option<Child> {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).arg("bash");
    for a in args {
        cmd.arg(a);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().ok()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some(child)
}

fn count_procs_and_fds() -> (usize, usize) {
    let mut procs = 0;
    let mut fds = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        procs += 1;
        fds += std::fs::read_dir(e.path().join("fd")).map_or(0, |d| d.count());
    }
    (procs, fds)
}

fn fixture() -> Fixture {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    let mut children = Vec::new();
    for i in 0..PROCS {
        let n = FDS_PER_PROC[i % FDS_PER_PROC.len()];
        // fds 10.. alternate /dev/null and the regular file; then the shell becomes `sleep`.
        let script = format!(
            "for ((i=10; i<{}; i+=2)); do eval \"exec $i</dev/null $((i+1))<\\\"\\$1\\\"\"; \
             done; echo ready; exec sleep 3600",
            10 + n
        );
        children.extend(spawn_ready(&script, &[file.path()]));
    }
    let mut fx = Fixture {
        children,
        loop_dev: None,
        dev: DevNum::new(7, 99_999),
        _file: file,
        _backing: None,
    };
    let backing = tempfile::NamedTempFile::new().expect("tempfile");
    let _ = backing.as_file().set_len(16 << 20);
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(backing.path())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            fx.dev = std::fs::read_to_string(format!("/sys/class/block/{name}/dev"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(fx.dev);
            fx.children.extend(spawn_ready(
                "exec 3<\"$1\"; echo ready; exec sleep 3600",
                &[&p],
            ));
            fx.loop_dev = Some(p);
            fx._backing = Some(backing);
        }
        _ => eprintln!("no loop device (not root?): scanning for an unheld device"),
    }
    let (procs, fds) = count_procs_and_fds();
    eprintln!(
        "holder_scan fixture: {} fixture processes; /proc has {procs} processes with {fds} open fds; device {}",
        fx.children.len(),
        fx.dev
    );
    fx
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// What the default chose over 20 scans.
fn plans(group: &str, dev: DevNum) {
    let (mut seq, mut par) = (0, 0);
    for _ in 0..20 {
        match scan_processes(Path::new("/proc"), &[dev], ScanMode::Auto)
            .unwrap()
            .plan
        {
            ScanPlan::Sequential => seq += 1,
            ScanPlan::Parallel { .. } => par += 1,
        }
    }
    eprintln!(
        "holder_scan plan: group={group} sequential={seq} parallel={par} loadavg=\"{}\"",
        loadavg()
    );
}

fn scans(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    dev: DevNum,
    modes: &[(&str, ScanMode)],
) {
    let proc_root = Path::new("/proc");
    let expected = scan_processes(proc_root, &[dev], ScanMode::Sequential)
        .unwrap()
        .holders;
    for &(name, mode) in modes {
        assert_eq!(
            scan_processes(proc_root, &[dev], mode).unwrap().holders,
            expected,
            "{name} disagrees"
        );
        g.bench_function(name, |b| {
            b.iter(|| black_box(scan_processes(proc_root, &[dev], mode).unwrap()))
        });
    }
}

/// Criterion runs one form after the other, and on a shared machine the load moves in
/// between. This alternates the forms scan by scan and prints the median of each and the
/// median of the per-round ratios to sequential:
/// `holder_scan interleaved: group=.. rounds=.. sequential_ms=.. auto_ms=.. parallel_ms=..
/// auto/sequential=.. parallel/sequential=..`.
fn interleaved(group: &str, dev: DevNum) {
    use std::time::Instant;
    const ROUNDS: usize = 25;
    let proc_root = Path::new("/proc");
    let modes = [ScanMode::Sequential, ScanMode::Auto, ScanMode::Parallel];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for _ in 0..ROUNDS {
        for (i, &m) in modes.iter().enumerate() {
            let t = Instant::now();
            black_box(scan_processes(proc_root, &[dev], m).unwrap());
            times[i].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let ratio = |i: usize| {
        let r: Vec<f64> = times[i].iter().zip(&times[0]).map(|(x, s)| x / s).collect();
        med(&r)
    };
    eprintln!(
        "holder_scan interleaved: group={group} rounds={ROUNDS} sequential_ms={:.1} auto_ms={:.1} \
         parallel_ms={:.1} auto/sequential={:.3} parallel/sequential={:.3} loadavg=\"{}\"",
        med(&times[0]),
        med(&times[1]),
        med(&times[2]),
        ratio(1),
        ratio(2),
        loadavg()
    );
}

/// One busy-looping process per core, killed on drop.
struct Hogs(Vec<Child>);

impl Hogs {
    fn start() -> Self {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self(
            (0..n)
                .filter_map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .ok()
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The scan forms measured, by benchmark name; the busy group runs the first three.
const MODES: [(&str, ScanMode); 4] = [
    ("auto", ScanMode::Auto),
    ("sequential", ScanMode::Sequential),
    ("parallel", ScanMode::Parallel),
    ("io_uring", ScanMode::IoUring),
];

fn bench(c: &mut Criterion) {
    let fx = fixture();
    eprintln!("holder_scan start: loadavg=\"{}\"", loadavg());
    let mut g = c.benchmark_group("holder_scan");
    g.sample_size(20);
    scans(&mut g, fx.dev, &MODES);
    if let Some(dev) = &fx.loop_dev {
        for tool in ["fuser", "lsof"] {
            if !have(tool) {
                eprintln!("{tool} not installed: skipped");
                continue;
            }
            g.bench_function(tool, |b| {
                b.iter(|| {
                    black_box(
                        Command::new(tool)
                            .arg(dev)
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .unwrap(),
                    )
                })
            });
        }
    }
    g.finish();
    plans("holder_scan", fx.dev);
    interleaved("holder_scan", fx.dev);

    let hogs = Hogs::start();
    std::thread::sleep(std::time::Duration::from_millis(500));
    eprintln!(
        "holder_scan_busy: {} spinning processes; loadavg=\"{}\"",
        hogs.0.len(),
        loadavg()
    );
    plans("holder_scan_busy", fx.dev);
    interleaved("holder_scan_busy", fx.dev);
    let mut g = c.benchmark_group("holder_scan_busy");
    g.sample_size(20);
    scans(&mut g, fx.dev, &MODES[..3]);
    g.finish();
    drop(hogs);
}

criterion_group!(benches, bench);
criterion_main!(benches);
