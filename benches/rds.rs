//! RouterOS client benchmarks:
//! - parsing a 10 000-disk `print detail` listing into disks: today's borrowing scanner
//!   (`parse_disks`), beside the parser it replaced (kept in tests/routeros_reference/, the
//!   oracle of tests/routeros_parse_oracle.rs) on the same text in the same run;
//! - a whole 10,000-disk listing in 100-entry pages through the controller's listing
//!   generations (one parse per listing, not one per page);
//! - 32 concurrent `print` commands against the simulator over real SSH, over ONE reused
//!   connection (what `RdsClient` does) vs a new SSH connection per command (what a naive
//!   `ssh rds '<cmd>'` per call costs);
//! - 32 concurrent creates as CreateVolume issues them (one `/disk print` look-up, `/disk add`,
//!   the look after), over ONE reused connection vs a new SSH connection per command. The
//!   disks are deleted between iterations, outside the timing; the simulator's state is on
//!   tmpfs (/dev/shm) when there is one, so its fsync per add does not dominate.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "../tests/routeros_reference/mod.rs"]
mod routeros_reference;
use rds_csi::controller::pagination::Listings;
use rds_csi::observability::Metrics;
use rds_csi::rds::command::{Command, MIKROTIK_NQN_PREFIX};
use rds_csi::rds::{
    parse_disks, parse_items, render_disk_list, slot_nqn, Disk, LookFirst, NvmeExport, Port,
    RdsClient, RdsPath, Slot,
};
use rds_csi::simulator::harness::{start_simulator, SimOptions};

fn listing(n: usize) -> String {
    let disks: Vec<Disk> = (0..n)
        .map(|i| {
            let slot = format!("pvc-{i:08x}-a8bf-572e-9120-464c4d99f12f");
            let mut d = Disk::file(
                &slot,
                &format!("/storage-pool/csi/{slot}.img"),
                (i as u64 + 1) << 30,
            );
            d.nvme_tcp_export = true;
            d.nvme_tcp_port = Some(4420);
            d.nvme_tcp_nqn = Some(format!("{MIKROTIK_NQN_PREFIX}{slot}"));
            d
        })
        .collect();
    render_disk_list(&disks)
}

fn parse_listing(c: &mut Criterion) {
    let text = listing(10_000);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    g.bench_function("10000_disk_listing", |b| {
        b.iter(|| {
            let disks = parse_disks(&text).unwrap();
            assert_eq!(disks.len(), 10_000);
            disks
        })
    });
    // Owned items (every field copied), then disks: what callers of `parse_items` pay.
    g.bench_function("10000_disk_listing_owned_items", |b| {
        b.iter(|| {
            let disks = Disk::from_items(&parse_items(&text).unwrap()).unwrap();
            assert_eq!(disks.len(), 10_000);
            disks
        })
    });
    g.bench_function("10000_disk_listing_old_parser", |b| {
        b.iter(|| {
            let items = routeros_reference::parse_items(&text).unwrap();
            let disks = routeros_reference::disks_from_items(&items).unwrap();
            assert_eq!(disks.len(), 10_000);
            disks
        })
    });
    g.finish();
}

/// A whole paginated listing of 10,000 disks in 100-entry pages through the controller's
/// listing generations (controller/pagination.rs): the fetch parses the listing once; each
/// page is a binary search and a copy. Before issue 19.2 every page fetched and parsed: 100
/// parses per listing.
fn paginated_listing(c: &mut Criterion) {
    let text = listing(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("list_pages");
    g.sample_size(10);
    g.bench_function("10000_disks_in_100_entry_pages", |b| {
        b.iter(|| {
            let listings: Listings<Disk> = Listings::default();
            let (mut token, mut seen) = (String::new(), 0);
            rt.block_on(async {
                loop {
                    let (page, next) = listings
                        .page(
                            "volumes",
                            100,
                            &token,
                            |d| d.slot.as_str(),
                            || async {
                                let mut disks = parse_disks(&text).unwrap();
                                disks.sort_by(|a, b| a.slot.cmp(&b.slot));
                                Ok(disks)
                            },
                        )
                        .await
                        .unwrap();
                    seen += page.len();
                    if next.is_empty() {
                        break;
                    }
                    token = next;
                }
            });
            assert_eq!((seen, listings.fetches()), (10_000, 1));
        })
    });
    g.finish();
}

const CONCURRENT: usize = 32;

/// A multi-thread tokio runtime with two workers.
fn two_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn concurrent_prints(c: &mut Criterion) {
    let rt = two_worker_runtime();
    let dir = tempfile::tempdir().unwrap();
    let sim = rt.block_on(start_simulator(dir.path(), SimOptions::default()));
    let base = "/storage-pool/csi";
    let slot = Slot::new("pvc-bench").unwrap();
    let shared_metrics = Metrics::new("bench");
    let shared = RdsClient::new(sim.client_config(base), &shared_metrics).unwrap();
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(30);
    rt.block_on(async {
        let path = RdsPath::volume_file(shared.base_path(), &slot).unwrap();
        let export = NvmeExport {
            port: Port::default(),
            nqn: slot_nqn(MIKROTIK_NQN_PREFIX, &slot).unwrap(),
        };
        shared
            .create_disk(&path, 1 << 30, &slot, &export, LookFirst::Yes, deadline())
            .await
            .unwrap();
    });

    let mut g = c.benchmark_group("print_x32");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("one_reused_connection", |b| {
        b.iter(|| {
            rt.block_on(async {
                let calls: Vec<_> = (0..CONCURRENT)
                    .map(|_| {
                        let (c, s) = (shared.clone(), slot.clone());
                        tokio::spawn(async move { c.get_disk(&s, deadline()).await })
                    })
                    .collect();
                for call in calls {
                    assert!(call.await.unwrap().unwrap().is_some());
                }
            })
        })
    });
    g.bench_function("new_connection_per_command", |b| {
        b.iter(|| {
            rt.block_on(async {
                let calls: Vec<_> = (0..CONCURRENT)
                    .map(|_| {
                        // A fresh client has no connection: each command pays a handshake.
                        let c = RdsClient::new(sim.client_config(base), &Metrics::new("bench"))
                            .unwrap();
                        let s = slot.clone();
                        tokio::spawn(async move { c.get_disk(&s, deadline()).await })
                    })
                    .collect();
                for call in calls {
                    assert!(call.await.unwrap().unwrap().is_some());
                }
            })
        })
    });
    g.finish();
    assert_eq!(
        shared.connections_opened(),
        1,
        "the shared client reused its connection"
    );
    rt.block_on(sim.shutdown());
}

fn concurrent_creates(c: &mut Criterion) {
    let rt = two_worker_runtime();
    // The simulator persists its state with an fsync per `/disk add` and `/disk remove`: on
    // this machine's shared virtual disk that is ~3 ms, which would time the disk, not SSH.
    // Its state lives on tmpfs when there is one (an RDS commits its own way; unknown here).
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let sim = std::sync::Arc::new(rt.block_on(start_simulator(
        dir.path(),
        SimOptions {
            pool_size: 1 << 50,
            ..SimOptions::default()
        },
    )));
    let base = "/storage-pool/csi";
    let metrics = Metrics::new("bench");
    let shared = RdsClient::new(sim.client_config(base), &metrics).unwrap();
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(60);
    let mut round = 0u64;
    // Slot, path and export of the i-th create of a round.
    let target = |round: u64, i: usize| {
        let slot = Slot::new(&format!("pvc-create-{round}-{i}")).unwrap();
        let path = RdsPath::volume_file(shared.base_path(), &slot).unwrap();
        let export = NvmeExport {
            port: Port::default(),
            nqn: slot_nqn(MIKROTIK_NQN_PREFIX, &slot).unwrap(),
        };
        (slot, path, export)
    };
    let mut timed = |b: &mut criterion::Bencher, reuse: bool| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let targets: Vec<_> = (0..CONCURRENT).map(|i| target(round, i)).collect();
                let start = std::time::Instant::now();
                rt.block_on(async {
                    let calls: Vec<_> = targets
                        .iter()
                        .cloned()
                        .map(|(slot, path, export)| {
                            let (c, sim) = (shared.clone(), sim.clone());
                            tokio::spawn(async move {
                                if reuse {
                                    assert!(c.get_disk(&slot, deadline()).await.unwrap().is_none());
                                    c.create_disk(
                                        &path,
                                        1 << 30,
                                        &slot,
                                        &export,
                                        LookFirst::No,
                                        deadline(),
                                    )
                                    .await
                                    .unwrap();
                                } else {
                                    // The same three commands, each over its own connection.
                                    let look = Command::print_disk(&slot);
                                    let add = Command::create_disk(&path, 1 << 30, &slot, &export)
                                        .unwrap();
                                    for cmd in [&look, &add, &look] {
                                        let (_, err, status) = sim.ssh_exec(cmd.as_str()).await;
                                        assert_eq!(status, Some(0), "{err}");
                                    }
                                }
                            })
                        })
                        .collect();
                    for call in calls {
                        call.await.unwrap();
                    }
                });
                total += start.elapsed();
                rt.block_on(async {
                    for (slot, _, _) in &targets {
                        shared.delete_disk(slot, deadline()).await.unwrap();
                    }
                });
            }
            total
        })
    };
    let mut g = c.benchmark_group("create_x32");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("one_reused_connection", |b| timed(b, true));
    g.bench_function("new_connection_per_command", |b| timed(b, false));
    g.finish();
    assert!(
        shared.connections_opened() <= 1,
        "the shared client reused its connection"
    );
    if let Ok(sim) = std::sync::Arc::try_unwrap(sim) {
        rt.block_on(sim.shutdown());
    }
}

criterion_group!(
    benches,
    parse_listing,
    paginated_listing,
    concurrent_prints,
    concurrent_creates
);
criterion_main!(benches);
