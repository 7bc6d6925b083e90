//! Device wait at scale (issue goal: each volume's device within uevent + 5 ms while 100
//! volumes attach at once on a node that already has 100 NVMe volumes).
//!
//! Fixture: a fake sysfs shaped like the kernel 6.1 dump with `OTHERS` connected volumes
//! (controller, subsystem, multipath head and path each) and `ATTACHING` more whose
//! controllers are connected but whose namespaces have not appeared: what a node sees right
//! after it re-connects its volumes at boot. One burst: `ATTACHING` waits start; once all
//! are waiting, every namespace is created in the tree and then all their uevents (path
//! add, generic char device add, head add) are forwarded at once. A volume's latency is
//! from its head's `add` event being sent to its wait returning.
//!
//! Benchmarks (stable names, read by scripts/bench-report.sh):
//! - `device_wait/attach_100/indexed`: the node-io wait (one routed uevent hub, hinted
//!   re-reads). Criterion's time per iteration is the WORST latency of the burst's 100.
//! - `device_wait/attach_100/full_rescan`: the same burst with the former scheme: every wait
//!   has its own event stream and re-reads the whole NQN → device resolution on every NVMe
//!   block event. Same figure (worst latency of a burst).
//! - `device_wait/check/full_scan` and `device_wait/check/hinted`: one resolution of one
//!   volume's device with 200 volumes present, full scan vs the hinted read.
//!
//! A summary line per mode gives p50 / p99 / max over all bursts:
//! `device_wait summary: mode=indexed bursts=N volumes=.. p50_us=.. p99_us=.. max_us=..
//! found_before_event=.. burst_cpu_us=..`. `found_before_event` counts devices a safety poll
//! found before their event was sent (their latency counts as 0, so it should be 0 for the
//! figures to mean much); `burst_cpu_us` is the median CPU time (every core) one burst costs,
//! the work a loaded machine does not inflate as it does the latencies: on 2 cores the worst
//! latency cannot be below about half of it.
//!
//! Run: `cargo bench -p node-io --bench device_wait`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use node_io::sysfs::index::SubsystemHint;
use node_io::sysfs::resolve_block_device;
use node_io::testing::{FakeSys, Ns, NS1};
use node_io::uevent::Uevent;
use node_io::uevent_hub::UeventHub;
use node_io::wait::{wait_for_block_device, Waker};

const OTHERS: u32 = 100;
const ATTACHING: u32 = 100;
/// Time for every wait's first (full) check to finish before the namespaces appear, so the
/// burst measures the events, not 100 initial scans (each wait's later safety polls re-read
/// only its own objects).
const SETTLE: Duration = Duration::from_millis(1500);

fn nqn(i: u32) -> String {
    format!("nqn.2000-02.com.mikrotik:pvc-{i:04}")
}

fn ns(i: u32) -> Ns {
    Ns { minor: i, ..NS1 }
}

fn uevent(action: &str, devpath: &str, subsystem: &str) -> Uevent {
    let msg = format!(
        "{action}@{devpath}\0ACTION={action}\0DEVPATH={devpath}\0SUBSYSTEM={subsystem}\0SEQNUM=1\0"
    );
    Uevent::parse(msg.as_bytes()).unwrap()
}

/// The events the kernel sends when volume `i`'s namespace appears; the last is the head.
fn namespace_events(i: u32) -> [Uevent; 3] {
    [
        uevent(
            "add",
            &format!("/devices/virtual/nvme-fabrics/ctl/nvme{i}/nvme{i}c{i}n1"),
            "block",
        ),
        uevent(
            "add",
            &format!("/devices/virtual/nvme-subsystem/nvme-subsys{i}/ng{i}n1"),
            "nvme-generic",
        ),
        uevent(
            "add",
            &format!("/devices/virtual/nvme-subsystem/nvme-subsys{i}/nvme{i}n1"),
            "block",
        ),
    ]
}

fn tree() -> FakeSys {
    // tmpfs like sysfs: the figures are the reads, not ext4 allocating inodes per burst.
    let shm = std::path::Path::new("/dev/shm");
    let s = if shm.is_dir() {
        FakeSys::new_in(shm)
    } else {
        FakeSys::new()
    };
    for i in 0..OTHERS + ATTACHING {
        s.controller(i, &nqn(i), 4420, "live")
            .subsystem(i, &nqn(i), &[i]);
        if i < OTHERS {
            s.mp_head(i, &ns(i)).mp_path(i, i, &ns(i));
        }
    }
    s
}

fn remove_namespaces(s: &FakeSys, i: u32) {
    let _ = std::fs::remove_file(s.root().join(format!("block/nvme{i}n1")));
    let _ = std::fs::remove_file(s.root().join(format!("block/nvme{i}c{i}n1")));
    let _ = std::fs::remove_dir_all(s.subsys_dir(i).join(format!("nvme{i}n1")));
    let _ = std::fs::remove_dir_all(s.ctl_dir(i).join(format!("nvme{i}c{i}n1")));
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Indexed,
    FullRescan,
}

/// Where each burst's events go.
enum Fanout {
    /// One forwarder into the shared hub.
    Hub(mpsc::Sender<Uevent>),
    /// One stream per wait, as one netlink socket per wait had.
    PerWait(Vec<mpsc::Sender<Arc<Uevent>>>),
}

/// One burst: every volume's latency from just before its events are sent to its device
/// found, and how many were found before their events (by a safety poll racing the burst;
/// counted as 0).
fn burst(s: &FakeSys, mode: Mode, hub: Option<(&mpsc::Sender<Uevent>, &UeventHub)>) -> Burst {
    for k in 0..ATTACHING {
        namespace_dirs(s, OTHERS + k);
    }
    let root: PathBuf = s.root().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = Arc::new(AtomicUsize::new(0));
    let finish = Finish::new(ATTACHING as usize);
    let mut streams = Vec::new();
    let mut handles = Vec::new();
    for k in 0..ATTACHING {
        let i = OTHERS + k;
        let (root, ready, finish) = (root.clone(), ready.clone(), finish.clone());
        match mode {
            Mode::Indexed => {
                let hub = hub.expect("hub").1.clone();
                handles.push(std::thread::spawn(move || {
                    let mut waker = Waker::hub(hub);
                    let f = wait_for_block_device(&root, &nqn(i), deadline, &mut waker)
                        .expect("device found");
                    finish.done((i, Instant::now(), f.checks))
                }));
            }
            Mode::FullRescan => {
                let (tx, rx) = mpsc::channel::<Arc<Uevent>>();
                streams.push(tx);
                handles.push(std::thread::spawn(move || {
                    let mut checks = 0;
                    loop {
                        checks += 1;
                        if resolve_block_device(&root, &nqn(i)).unwrap().is_some() {
                            break;
                        }
                        if checks == 1 {
                            ready.fetch_add(1, Ordering::SeqCst);
                        }
                        loop {
                            let ev = rx.recv_timeout(Duration::from_secs(1)).ok();
                            if ev.is_none_or(|e| e.is_nvme_block_event()) {
                                break;
                            }
                        }
                    }
                    finish.done((i, Instant::now(), checks))
                }));
            }
        }
    }
    // Wait until every wait listens and has made its first check.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let n = match (mode, hub) {
            (Mode::Indexed, Some((_, h))) => h.subscribers(),
            _ => ready.load(Ordering::SeqCst),
        };
        if n == ATTACHING as usize {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(SETTLE);
    let fanout = match mode {
        Mode::Indexed => Fanout::Hub(hub.expect("hub").0.clone()),
        Mode::FullRescan => Fanout::PerWait(streams),
    };
    // The kernel: every namespace appears (its /sys/block links, the last step of
    // device_add), then all their events go out at once.
    for k in 0..ATTACHING {
        let i = OTHERS + k;
        s.block_link(
            &format!("nvme{i}c{i}n1"),
            &format!("nvme-fabrics/ctl/nvme{i}"),
        );
        s.block_link(
            &format!("nvme{i}n1"),
            &format!("nvme-subsystem/nvme-subsys{i}"),
        );
    }
    let cpu_before = process_cpu();
    let mut sent_at = vec![Instant::now(); ATTACHING as usize];
    for k in 0..ATTACHING {
        let i = OTHERS + k;
        sent_at[k as usize] = Instant::now();
        for ev in namespace_events(i) {
            match &fanout {
                Fanout::Hub(tx) => tx.send(ev).unwrap(),
                Fanout::PerWait(txs) => {
                    let ev = Arc::new(ev);
                    for tx in txs {
                        let _ = tx.send(ev.clone());
                    }
                }
            }
        }
    }
    finish.wait_all();
    let cpu = process_cpu().saturating_sub(cpu_before);
    finish.release(&handles);
    let found: Vec<(u32, Instant, u32)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut out = Vec::new();
    let mut early = 0;
    for (i, at, checks) in found {
        assert!(
            checks >= 2,
            "volume {i}: found by the first check, before it existed"
        );
        let sent = sent_at[(i - OTHERS) as usize];
        early += usize::from(at < sent);
        out.push(at.saturating_duration_since(sent));
    }
    for k in 0..ATTACHING {
        remove_namespaces(s, OTHERS + k);
    }
    Burst {
        latencies: out,
        early,
        cpu,
    }
}

/// A wait's thread reports when it has its device and then stays, parked, until the burst
/// ends, as the node's blocking-pool threads stay: a thread exiting (its stack unmapped) or
/// a shared lock taken mid-burst is not the wait's cost.
#[derive(Clone)]
struct Finish {
    left: Arc<AtomicUsize>,
    released: Arc<AtomicBool>,
    main: std::thread::Thread,
}

impl Finish {
    fn new(waits: usize) -> Self {
        Self {
            left: Arc::new(AtomicUsize::new(waits)),
            released: Arc::default(),
            main: std::thread::current(),
        }
    }

    /// In a wait's thread: counts it done and parks until [`Finish::release`]; returns `found`.
    fn done<T>(&self, found: T) -> T {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.main.unpark();
        }
        while !self.released.load(Ordering::SeqCst) {
            std::thread::park();
        }
        found
    }

    /// In the burst's thread: until every wait is done.
    fn wait_all(&self) {
        while self.left.load(Ordering::SeqCst) > 0 {
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }

    fn release<T>(&self, threads: &[std::thread::JoinHandle<T>]) {
        self.released.store(true, Ordering::SeqCst);
        for t in threads {
            t.thread().unpark();
        }
    }
}

/// One burst's outcome.
struct Burst {
    /// Each volume's latency from its events being sent to its wait returning.
    latencies: Vec<Duration>,
    /// Devices found before their events were sent (counted as 0).
    early: usize,
    /// CPU time of the whole process (every core) from the first event sent to the last
    /// wait returning: the burst's work, which a loaded machine does not inflate as it does
    /// the latencies.
    cpu: Duration,
}

/// CPU time of this process so far (all threads).
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Volume `i`'s head and path directories, not yet linked into /sys/block (invisible to a
/// resolution until [`FakeSys::block_link`]).
fn namespace_dirs(s: &FakeSys, i: u32) {
    let head = s.subsys_dir(i).join(format!("nvme{i}n1"));
    FakeSys::ns_attrs(&head, &ns(i), false);
    std::os::unix::fs::symlink(format!("../../nvme-subsys{i}"), head.join("device")).unwrap();
    let path = s.ctl_dir(i).join(format!("nvme{i}c{i}n1"));
    FakeSys::ns_attrs(&path, &ns(i), true);
    std::os::unix::fs::symlink(format!("../../nvme{i}"), path.join("device")).unwrap();
}

fn summary(mode: &str, all: &mut [Duration], bursts: usize, early: usize, cpu: &mut [Duration]) {
    if all.is_empty() {
        return;
    }
    all.sort();
    cpu.sort();
    let q = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize].as_micros();
    eprintln!(
        "device_wait summary: mode={mode} bursts={bursts} volumes={} p50_us={} p99_us={} \
         max_us={} found_before_event={early} burst_cpu_us={}",
        all.len(),
        q(0.5),
        q(0.99),
        q(1.0),
        cpu[cpu.len() / 2].as_micros()
    );
}

fn bench(c: &mut Criterion) {
    let s = tree();
    let (tx, rx) = mpsc::channel();
    let hub = UeventHub::forwarded(rx);
    let mut g = c.benchmark_group("device_wait/attach_100");
    // Each iteration is a whole burst (~0.5 s of wall time): few, flat samples.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(20));
    for (name, mode) in [
        ("indexed", Mode::Indexed),
        ("full_rescan", Mode::FullRescan),
    ] {
        let (mut all, mut bursts, mut early, mut cpu) = (Vec::new(), 0, 0, Vec::new());
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let b = burst(&s, mode, Some((&tx, &hub)));
                    total += b.latencies.iter().max().copied().unwrap_or_default();
                    all.extend(b.latencies);
                    bursts += 1;
                    early += b.early;
                    cpu.push(b.cpu);
                }
                total
            })
        });
        summary(name, &mut all, bursts, early, &mut cpu);
    }
    g.finish();

    // One check with 200 volumes present: what each wake costs a wait.
    let mut g = c.benchmark_group("device_wait/check");
    let one = nqn(OTHERS / 2);
    g.bench_function("full_scan", |b| {
        b.iter(|| black_box(resolve_block_device(s.root(), &one).unwrap()))
    });
    let (_, mut hint) = SubsystemHint::scan(s.root(), &one).unwrap();
    g.bench_function("hinted", |b| {
        b.iter(|| black_box(hint.resolve_block_device(s.root(), &one).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
