//! Attachment-table publish/unpublish throughput and tail latency: the lock-sharded table
//! against a single global lock with the same rules (one `Mutex<VolumeMap>`), on 10 k and 1 M
//! volumes, from 1 and 2 threads.
//!
//! One iteration = unpublish + publish of a random pre-attached RWO volume on its node, so the
//! table keeps its size and every call does real work (detach, grace-window timer insert,
//! re-attach, timer removal). Per-op latencies are taken in the loop (one clock read per op,
//! the same overhead for both tables) and printed as p50/p99/p99.9 after criterion's figures.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parking_lot::Mutex;
use rds_csi::attachment::{
    AttachmentTable, Effect, MigrationTimeout, PublishRequest, RequestedAccess, TableConfig,
    VolumeMap,
};

/// The baseline: exactly the table's rules, behind one lock.
struct GlobalLock(Mutex<VolumeMap>);

trait Table: Sync {
    fn publish(&self, r: &PublishRequest<'_>, now: Instant) -> Vec<Effect>;
    fn unpublish(&self, volume: &str, node: &str, now: Instant) -> Vec<Effect>;
}

impl Table for AttachmentTable {
    fn publish(&self, r: &PublishRequest<'_>, now: Instant) -> Vec<Effect> {
        let out = AttachmentTable::publish(self, r, now);
        assert!(out.result.is_ok());
        out.effects
    }
    fn unpublish(&self, volume: &str, node: &str, now: Instant) -> Vec<Effect> {
        AttachmentTable::unpublish(self, volume, node, now)
    }
}

impl Table for GlobalLock {
    fn publish(&self, r: &PublishRequest<'_>, now: Instant) -> Vec<Effect> {
        // Effects are collected under the lock and returned, as the sharded table does.
        let mut fx = Vec::new();
        let result = self.0.lock().publish(r, now, &mut fx);
        assert!(result.is_ok());
        fx
    }
    fn unpublish(&self, volume: &str, node: &str, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.0.lock().unpublish(volume, node, now, &mut fx);
        fx
    }
}

const NODES: usize = 50;

fn node(i: usize) -> String {
    format!("worker-{:02}", i % NODES)
}

/// Volume ids shaped like Kubernetes PV names (`pvc-` + a UUID).
fn ids(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            format!(
                "pvc-{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                x >> 32,
                (x >> 16) & 0xffff,
                x & 0xfff,
                i & 0xfff,
                i
            )
        })
        .collect()
}

fn request<'a>(volume: &'a str, node: &'a str) -> PublishRequest<'a> {
    PublishRequest {
        volume,
        node,
        access: RequestedAccess::SingleNode,
        migration_timeout: MigrationTimeout::default(),
    }
}

/// Accumulated over every sample of one benchmark (warm-up included; same for both tables).
#[derive(Default)]
struct Stats {
    ops: u64,
    elapsed: Duration,
    latencies_ns: Vec<u32>,
}

/// Latency samples kept per benchmark: enough for a stable p99.9, bounded memory.
const MAX_SAMPLES: usize = 4_000_000;

fn run<T: Table>(
    table: &T,
    ids: &[String],
    nodes: &[String],
    threads: usize,
    iters: u64,
    now: Instant,
    stats: &Mutex<Stats>,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            // Each thread works on its own volumes (i ≡ t mod threads): contention comes from
            // the locks, not from two threads fighting over one volume's rules.
            let n = iters / threads as u64 + u64::from((t as u64) < iters % threads as u64);
            s.spawn(move || {
                let per = ids.len() / threads;
                let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ ((t as u64 + 1) * 0x9e37_79b9);
                let mut lat = Vec::with_capacity((2 * n as usize).min(MAX_SAMPLES / threads));
                let mut t0 = Instant::now();
                for _ in 0..n {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let i = (rng as usize % per) * threads + t;
                    let (v, nd) = (&ids[i], &nodes[i % NODES]);
                    black_box(table.unpublish(v, nd, now));
                    let t1 = Instant::now();
                    black_box(table.publish(&request(v, nd), now));
                    let t2 = Instant::now();
                    if lat.len() + 2 <= lat.capacity() {
                        lat.push((t1 - t0).as_nanos() as u32);
                        lat.push((t2 - t1).as_nanos() as u32);
                    }
                    t0 = t2;
                }
                let mut st = stats.lock();
                let room = MAX_SAMPLES.saturating_sub(st.latencies_ns.len());
                st.latencies_ns.extend(lat.into_iter().take(room));
            });
        }
    });
    let elapsed = start.elapsed();
    let mut st = stats.lock();
    st.ops += 2 * iters;
    st.elapsed += elapsed;
    elapsed
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Row {
    ops_per_sec: f64,
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
        p50: pct(&st.latencies_ns, 0.50),
        p99: pct(&st.latencies_ns, 0.99),
        p999: pct(&st.latencies_ns, 0.999),
    })
}

fn populate<T: Table>(table: &T, ids: &[String], nodes: &[String], now: Instant) {
    for (i, v) in ids.iter().enumerate() {
        table.publish(&request(v, &nodes[i % NODES]), now);
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

    for volumes in [10_000usize, 1_000_000] {
        let ids = Arc::new(ids(volumes));
        // Populated once per group; the loop keeps the size constant.
        let setup = Instant::now();
        let sharded = AttachmentTable::new(TableConfig::default());
        populate(&sharded, &ids, &nodes, now);
        let global = GlobalLock(Mutex::new(VolumeMap::new(
            TableConfig::DEFAULT_GRACE_PERIOD,
        )));
        populate(&global, &ids, &nodes, now);
        eprintln!(
            "setup: {volumes} volumes x 2 tables in {:.2}s",
            setup.elapsed().as_secs_f64()
        );

        let mut g = c.benchmark_group(format!("attachment/{volumes}_volumes"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            // One iteration is an unpublish and a publish.
            .throughput(Throughput::Elements(2));
        for threads in [1usize, 2] {
            for kind in kinds() {
                let stats = Mutex::new(Stats::default());
                g.bench_with_input(
                    BenchmarkId::new(kind, format!("{threads}t")),
                    &threads,
                    |b, &th| {
                        b.iter_custom(|iters| match kind {
                            "sharded" => run(&sharded, &ids, &nodes, th, iters, now, &stats),
                            _ => run(&global, &ids, &nodes, th, iters, now, &stats),
                        })
                    },
                );
                let Some(row) = summarize(stats) else {
                    continue;
                };
                eprintln!(
                    "  {kind:>7} {volumes:>7} volumes {threads}t: {:>10.0} ops/s  p50 {} ns  p99 {} ns  p99.9 {} ns",
                    row.ops_per_sec, row.p50, row.p99, row.p999
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
    for volumes in [10_000usize, 1_000_000] {
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

criterion_group!(benches, bench);
criterion_main!(benches);
