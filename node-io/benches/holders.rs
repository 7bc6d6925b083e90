//! Holder scan: the three node-io forms side by side with `fuser` and `lsof`.
//!
//! Fixture: 8 background processes holding ~2000 fds each (half /dev/null, half a
//! regular file) plus one process holding a loop device (root only; without it the scans
//! look for a device nobody holds, which costs the same). Run:
//! `cargo bench -p node-io --bench holders -- --quick`.

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use criterion::{criterion_group, criterion_main, Criterion};
use node_io::dev_num::DevNum;
use node_io::holders::{scan_processes, ScanMode};

const CHILDREN: usize = 8;
const FDS_PER_CHILD: usize = 2000;

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

fn spawn_holder(script: &str, args: &[&Path]) -> Option<Child> {
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

fn fixture() -> Fixture {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    let script = format!(
        "ulimit -n {} 2>/dev/null; for ((i=10; i<{}; i+=2)); do \
         eval \"exec $i</dev/null $((i+1))<\\\"\\$1\\\"\"; done; echo ready; exec sleep 600",
        FDS_PER_CHILD + 100,
        FDS_PER_CHILD + 10
    );
    let mut children = Vec::new();
    for _ in 0..CHILDREN {
        children.extend(spawn_holder(&script, &[file.path()]));
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
            fx.children.extend(spawn_holder(
                "exec 3<\"$1\"; echo ready; exec sleep 600",
                &[&p],
            ));
            fx.loop_dev = Some(p);
            fx._backing = Some(backing);
        }
        _ => eprintln!("no loop device (not root?): scanning for an unheld device"),
    }
    let fds: usize = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_dir(e.path().join("fd")).ok())
        .map(|d| d.count())
        .sum();
    let procs = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count();
    eprintln!(
        "fixture: {} holder processes, {procs} processes, {fds} open fds in total, device {}",
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

fn bench(c: &mut Criterion) {
    let fx = fixture();
    let proc_root = Path::new("/proc");
    let expected = scan_processes(proc_root, &[fx.dev], ScanMode::Sequential)
        .unwrap()
        .holders;
    eprintln!("holders found: {expected:?}");
    let mut g = c.benchmark_group("holder_scan");
    for (name, mode) in [
        ("sequential", ScanMode::Sequential),
        ("io_uring", ScanMode::IoUring),
        ("parallel", ScanMode::Parallel),
    ] {
        assert_eq!(
            scan_processes(proc_root, &[fx.dev], mode).unwrap().holders,
            expected,
            "{name} disagrees"
        );
        g.bench_function(name, |b| {
            b.iter(|| black_box(scan_processes(proc_root, &[fx.dev], mode).unwrap()))
        });
    }
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
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
