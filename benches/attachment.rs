//! Attachment-table throughput and tail latency under a controller-like mix: the lock-sharded
//! table against a single global lock with the same rules (one `Mutex<VolumeMap>`), on 10 k
//! and 1 M volumes, from 1 and 2 threads.
//!
//! Volumes come in three kinds (by index): 80 % ReadWriteOnce volumes that pods detach and
//! re-attach, 10 % ReadWriteOnce volumes held for good (the targets of conflicting publishes),
//! 10 % RWX block VM disks that live-migrate back and forth between two nodes. One iteration is
//! one step of two calls, drawn at random:
//! - 8 in 10: detach + re-attach a random re-attached volume of the thread's share (real work:
//!   detach, grace-window timer insert, re-attach, timer removal);
//! - 1 in 10: a conflict: another node's publish of a random held volume, refused with the
//!   holder named, then the holder's repeat publish (idempotent) — both threads pick held
//!   volumes from the same set, so they meet on the same volumes and locks;
//! - 1 in 10: one step of a VM disk's migration: start it (the target attaches) and have a
//!   third node refused, then finish it (the source detaches) or, one time in four, roll it
//!   back (the target detaches) and re-publish to the node that kept it.
//!
//! Every call's result is checked against the rules (a refusal where one is due, success
//! otherwise), so the bench cannot run faster by skipping work. Per-call latencies are taken
//! in the loop (one clock read per call, the same overhead for both tables) and printed as
//! p50/p99/p99.9 after criterion's figures.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parking_lot::Mutex;
use rds_csi::attachment::{
    AttachError, AttachmentTable, Effect, MigrationTimeout, PublishRequest, RequestedAccess,
    TableConfig, VolumeMap,
};

/// The baseline: exactly the table's rules, behind one lock.
struct GlobalLock(Mutex<VolumeMap>);

trait Table: Sync {
    fn publish(&self, r: &PublishRequest<'_>, now: Instant) -> (Vec<Effect>, bool);
    fn unpublish(&self, volume: &str, node: &str, now: Instant) -> Vec<Effect>;
}

impl Table for AttachmentTable {
    fn publish(&self, r: &PublishRequest<'_>, now: Instant) -> (Vec<Effect>, bool) {
        let out = AttachmentTable::publish(self, r, now);
        (out.effects, ok(out.result))
    }
    fn unpublish(&self, volume: &str, node: &str, now: Instant) -> Vec<Effect> {
        AttachmentTable::unpublish(self, volume, node, now)
    }
}

impl Table for GlobalLock {
    fn publish(&self, r: &PublishRequest<'_>, now: Instant) -> (Vec<Effect>, bool) {
        // Effects are collected under the lock and returned, as the sharded table does.
        let mut fx = Vec::new();
        let result = self.0.lock().publish(r, now, &mut fx);
        (fx, ok(result))
    }
    fn unpublish(&self, volume: &str, node: &str, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.0.lock().unpublish(volume, node, now, &mut fx);
        fx
    }
}

/// Success, or a refusal the mix expects (another node holds the volume, or a migration is in
/// progress); anything else is a bug in the bench or the table.
fn ok(result: Result<(), AttachError>) -> bool {
    match result {
        Ok(()) => true,
        Err(AttachError::HeldByAnotherNode { .. } | AttachError::MigrationInProgress { .. }) => {
            false
        }
        Err(e) => panic!("unexpected refusal: {e}"),
    }
}

const NODES: usize = 50;

fn node(i: usize) -> String {
    format!("worker-{:02}", i % NODES)
}

/// The id of volume `i`, shaped like a Kubernetes PV name (`pvc-` + a UUID), written into
/// `buf`. The loop builds each request's id afresh, as a gRPC decoder hands the controller a
/// fresh string: reading a million pre-built ids would put a cache miss in every call that
/// no real request has.
fn id_into(i: usize, buf: &mut [u8; 40]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let groups: [(u64, usize); 5] = [
        (x >> 32, 8),
        ((x >> 16) & 0xffff, 4),
        (0x4000 | (x & 0xfff), 4),
        (0x8000 | (i as u64 & 0xfff), 4),
        (i as u64 & 0xffff_ffff_ffff, 12),
    ];
    buf[..4].copy_from_slice(b"pvc-");
    let mut at = 4;
    for (g, (value, digits)) in groups.into_iter().enumerate() {
        if g > 0 {
            buf[at] = b'-';
            at += 1;
        }
        for d in (0..digits).rev() {
            buf[at] = HEX[(value >> (4 * d)) as usize & 0xf];
            at += 1;
        }
    }
    std::str::from_utf8(&buf[..at]).expect("hex digits and dashes")
}

fn id(i: usize) -> String {
    id_into(i, &mut [0; 40]).to_owned()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// ReadWriteOnce, detached and re-attached by the loop.
    Reattached,
    /// ReadWriteOnce, attached for good: other nodes' publishes are refused.
    Held,
    /// RWX block, migrated between its home node and the next one.
    VmDisk,
}

fn kind(i: usize) -> Kind {
    match i % 10 {
        0 => Kind::VmDisk,
        1 => Kind::Held,
        _ => Kind::Reattached,
    }
}

fn request<'a>(volume: &'a str, node: &'a str, kind: Kind) -> PublishRequest<'a> {
    PublishRequest {
        volume,
        node,
        access: match kind {
            Kind::VmDisk => RequestedAccess::MultiNodeBlock,
            _ => RequestedAccess::SingleNode,
        },
        migration_timeout: MigrationTimeout::default(),
    }
}

/// Accumulated over every sample of one benchmark (warm-up included; same for both tables).
#[derive(Default)]
struct Stats {
    ops: u64,
    refused: u64,
    elapsed: Duration,
    /// CPU time of the loop threads: on a machine shared with other work, ops per CPU-second
    /// says what the table costs when wall-clock throughput only says how busy the machine was.
    cpu: Duration,
    latencies_ns: Vec<u32>,
}

/// CPU time consumed by the calling thread so far.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Latency samples kept per benchmark: enough for a stable p99.9, bounded memory.
const MAX_SAMPLES: usize = 4_000_000;

/// One thread's share: the volumes it re-attaches and migrates (so a VM disk's migration
/// steps stay in order), and where each of its VM disks stands.
struct Share {
    reattached: Vec<usize>,
    vm_disks: Vec<usize>,
    /// Per VM disk: bit 0 = migrating, bit 1 = the partner node holds it, bits 2.. = count.
    vm_state: Vec<u32>,
}

fn shares(volumes: usize, threads: usize) -> Vec<Mutex<Share>> {
    (0..threads)
        .map(|t| {
            let mine = (0..volumes).filter(|i| (i / 10) % threads == t);
            let reattached: Vec<usize> = mine
                .clone()
                .filter(|&i| kind(i) == Kind::Reattached)
                .collect();
            let vm_disks: Vec<usize> = mine.filter(|&i| kind(i) == Kind::VmDisk).collect();
            let vm_state = vec![0; vm_disks.len()];
            Mutex::new(Share {
                reattached,
                vm_disks,
                vm_state,
            })
        })
        .collect()
}

struct Fixture<'a> {
    nodes: &'a [String],
    held: &'a [usize],
    now: Instant,
}

impl Fixture<'_> {
    fn home(&self, i: usize) -> &str {
        &self.nodes[i % NODES]
    }
    fn partner(&self, i: usize) -> &str {
        &self.nodes[(i + 1) % NODES]
    }
    fn third(&self, i: usize) -> &str {
        &self.nodes[(i + 2) % NODES]
    }

    /// One step of two calls; returns how many were refused (as the rules require).
    fn step<T: Table>(
        &self,
        table: &T,
        share: &mut Share,
        rng: u64,
        lat: &mut Lat,
        buf: &mut [u8; 40],
    ) -> u64 {
        let now = self.now;
        let pick = (rng >> 8) as usize;
        match rng % 10 {
            0..=7 => {
                let i = share.reattached[pick % share.reattached.len()];
                let v = id_into(i, buf);
                let home = self.home(i);
                black_box(lat.time(|| table.unpublish(v, home, now)));
                let (fx, ok) = lat.time(|| table.publish(&request(v, home, Kind::Reattached), now));
                assert!(ok, "{v} re-attaches to {home}");
                black_box(fx);
                0
            }
            8 => {
                let i = self.held[pick % self.held.len()];
                let v = id_into(i, buf);
                let home = self.home(i);
                let other = self.partner(i);
                let (fx, ok) = lat.time(|| table.publish(&request(v, other, Kind::Held), now));
                assert!(!ok, "{other} must not take {v} from {home}");
                black_box(fx);
                let (fx, ok) = lat.time(|| table.publish(&request(v, home, Kind::Held), now));
                assert!(ok, "{home} keeps {v}");
                black_box(fx);
                1
            }
            _ => {
                let k = pick % share.vm_disks.len();
                let i = share.vm_disks[k];
                let v = id_into(i, buf);
                let st = share.vm_state[k];
                let (holder, partner) = if st & 2 == 0 {
                    (self.home(i), self.partner(i))
                } else {
                    (self.partner(i), self.home(i))
                };
                if st & 1 == 0 {
                    // Start: the target attaches; a third node is refused meanwhile.
                    let (fx, ok) =
                        lat.time(|| table.publish(&request(v, partner, Kind::VmDisk), now));
                    assert!(ok, "{partner} joins {v} as migration target");
                    black_box(fx);
                    let third = self.third(i);
                    let (fx, ok) =
                        lat.time(|| table.publish(&request(v, third, Kind::VmDisk), now));
                    assert!(!ok, "{third} is refused during the migration of {v}");
                    black_box(fx);
                    share.vm_state[k] = st | 1;
                    1
                } else {
                    let count = st >> 2;
                    // Finish (the source detaches) or, one time in four, roll back.
                    let (leaves, stays) = if count % 4 == 3 {
                        (partner, holder)
                    } else {
                        (holder, partner)
                    };
                    black_box(lat.time(|| table.unpublish(v, leaves, now)));
                    let (fx, ok) =
                        lat.time(|| table.publish(&request(v, stays, Kind::VmDisk), now));
                    assert!(ok, "{stays} keeps {v}");
                    black_box(fx);
                    let swapped = u32::from(stays != holder) << 1;
                    share.vm_state[k] = ((count + 1) << 2) | ((st & 2) ^ swapped);
                    0
                }
            }
        }
    }
}

/// Per-call latency samples of one thread.
struct Lat {
    samples: Vec<u32>,
}

impl Lat {
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let t0 = Instant::now();
        let r = f();
        if self.samples.len() < self.samples.capacity() {
            self.samples.push(t0.elapsed().as_nanos() as u32);
        }
        r
    }
}

fn run<T: Table>(
    table: &T,
    fx: &Fixture<'_>,
    shares: &[Mutex<Share>],
    iters: u64,
    stats: &Mutex<Stats>,
) -> Duration {
    let threads = shares.len();
    let start = Instant::now();
    let refused = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .iter()
            .enumerate()
            .map(|(t, share)| {
                let n = iters / threads as u64 + u64::from((t as u64) < iters % threads as u64);
                s.spawn(move || {
                    let cpu0 = thread_cpu_time();
                    let mut share = share.lock();
                    let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ ((t as u64 + 1) * 0x9e37_79b9);
                    let mut lat = Lat {
                        samples: Vec::with_capacity((2 * n as usize).min(MAX_SAMPLES / threads)),
                    };
                    let mut refused = 0;
                    let mut buf = [0u8; 40];
                    for _ in 0..n {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        refused += fx.step(table, &mut share, rng, &mut lat, &mut buf);
                    }
                    let mut st = stats.lock();
                    st.cpu += thread_cpu_time() - cpu0;
                    let room = MAX_SAMPLES.saturating_sub(st.latencies_ns.len());
                    st.latencies_ns.extend(lat.samples.into_iter().take(room));
                    refused
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    let elapsed = start.elapsed();
    let mut st = stats.lock();
    st.ops += 2 * iters;
    st.refused += refused;
    st.elapsed += elapsed;
    elapsed
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Row {
    ops_per_sec: f64,
    ops_per_cpu_sec: f64,
    refused_share: f64,
    p50: u32,
    p99: u32,
    p999: u32,
}

/// `None` when the benchmark did not run (excluded by a criterion filter).
fn summarize(stats: Mutex<Stats>) -> Option<Row> {
    let mut st = stats.into_inner();
    if st.latencies_ns.is_empty() || st.elapsed.is_zero() {
        return None;
    }
    st.latencies_ns.sort_unstable();
    Some(Row {
        ops_per_sec: st.ops as f64 / st.elapsed.as_secs_f64(),
        ops_per_cpu_sec: st.ops as f64 / st.cpu.as_secs_f64(),
        refused_share: st.refused as f64 / st.ops as f64,
        p50: pct(&st.latencies_ns, 0.50),
        p99: pct(&st.latencies_ns, 0.99),
        p999: pct(&st.latencies_ns, 0.999),
    })
}

fn populate<T: Table>(table: &T, volumes: usize, nodes: &[String], now: Instant) {
    for i in 0..volumes {
        let (_, ok) = table.publish(&request(&id(i), &nodes[i % NODES], kind(i)), now);
        assert!(ok);
    }
}

/// Table sizes; `ATT_VOLUMES=10000` (a comma-separated list) runs only those (profiling).
fn sizes() -> Vec<usize> {
    match std::env::var("ATT_VOLUMES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("ATT_VOLUMES: comma-separated counts")
            })
            .collect(),
        Err(_) => vec![10_000, 1_000_000],
    }
}

/// Run order; `ATT_GLOBAL_FIRST=1` reverses it to check that order does not decide the result.
fn kinds() -> [&'static str; 2] {
    if std::env::var_os("ATT_GLOBAL_FIRST").is_some() {
        ["global", "sharded"]
    } else {
        ["sharded", "global"]
    }
}

fn bench(c: &mut Criterion) {
    let nodes: Vec<String> = (0..NODES).map(node).collect();
    let now = Instant::now();
    let mut rows: BTreeMap<(usize, usize, &'static str), Row> = BTreeMap::new();

    for volumes in sizes() {
        let held: Vec<usize> = (0..volumes).filter(|&i| kind(i) == Kind::Held).collect();
        let fixture = Fixture {
            nodes: &nodes,
            held: &held,
            now,
        };
        // Populated once per group; the loop keeps every volume attached between steps.
        let setup = Instant::now();
        let sharded = AttachmentTable::new(TableConfig::default());
        populate(&sharded, volumes, &nodes, now);
        let global = GlobalLock(Mutex::new(VolumeMap::new(
            TableConfig::DEFAULT_GRACE_PERIOD,
        )));
        populate(&global, volumes, &nodes, now);
        eprintln!(
            "setup: {volumes} volumes x 2 tables in {:.2}s",
            setup.elapsed().as_secs_f64()
        );

        let mut g = c.benchmark_group(format!("attachment/{volumes}_volumes"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            // One iteration is two calls (publish or unpublish).
            .throughput(Throughput::Elements(2));
        for threads in [1usize, 2] {
            for kind in kinds() {
                let shares = shares(volumes, threads);
                let stats = Mutex::new(Stats::default());
                g.bench_with_input(
                    BenchmarkId::new(kind, format!("{threads}t")),
                    &threads,
                    |b, _| {
                        b.iter_custom(|iters| match kind {
                            "sharded" => run(&sharded, &fixture, &shares, iters, &stats),
                            _ => run(&global, &fixture, &shares, iters, &stats),
                        })
                    },
                );
                for share in &shares {
                    let mut share = share.lock();
                    match kind {
                        "sharded" => reset_vm_disks(&sharded, &fixture, &mut share),
                        _ => reset_vm_disks(&global, &fixture, &mut share),
                    }
                }
                let Some(row) = summarize(stats) else {
                    continue;
                };
                eprintln!(
                    "  {kind:>7} {volumes:>7} volumes {threads}t: {:>10.0} ops/s  p50 {} ns  p99 {} ns  p99.9 {} ns  ({:.1} % refused)  {:.0} ops per CPU-second",
                    row.ops_per_sec, row.p50, row.p99, row.p999, 100.0 * row.refused_share, row.ops_per_cpu_sec
                );
                rows.insert((volumes, threads, kind), row);
            }
        }
        g.finish();
        assert_eq!(
            sharded.len(),
            volumes,
            "the loop keeps every volume attached"
        );
    }

    eprintln!("\nsummary (ops/s over all samples; latency per publish or unpublish call):");
    eprintln!(
        "{:>9} {:>3} | {:>11} {:>8} | {:>11} {:>8} | {:>6}",
        "volumes", "thr", "sharded/s", "p99 ns", "global/s", "p99 ns", "ratio"
    );
    for volumes in sizes() {
        for threads in [1usize, 2] {
            let (Some(s), Some(g)) = (
                rows.get(&(volumes, threads, "sharded")),
                rows.get(&(volumes, threads, "global")),
            ) else {
                continue; // a filter left out one side; no ratio to show
            };
            eprintln!(
                "{volumes:>9} {threads:>3} | {:>11.0} {:>8} | {:>11.0} {:>8} | {:>6.2}",
                s.ops_per_sec,
                s.p99,
                g.ops_per_sec,
                g.p99,
                s.ops_per_sec / g.ops_per_sec
            );
        }
    }
}

/// Brings every VM disk of `share` back to its home node alone, as `populate` left it, so
/// the next run (a new share, from state 0) starts where its state says.
fn reset_vm_disks<T: Table>(table: &T, fx: &Fixture<'_>, share: &mut Share) {
    for (k, &i) in share.vm_disks.iter().enumerate() {
        let st = share.vm_state[k];
        let v = &id(i);
        let (holder, partner) = if st & 2 == 0 {
            (fx.home(i), fx.partner(i))
        } else {
            (fx.partner(i), fx.home(i))
        };
        if st & 1 != 0 {
            table.unpublish(v, partner, fx.now); // roll back: the holder keeps it
        }
        if holder != fx.home(i) {
            let (_, ok) = table.publish(&request(v, fx.home(i), Kind::VmDisk), fx.now);
            assert!(ok, "{v} migrates home");
            table.unpublish(v, holder, fx.now);
        }
        share.vm_state[k] = 0;
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
