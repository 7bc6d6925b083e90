//! RouterOS client benchmarks:
//! - parsing a 10 000-disk `print detail` listing into disks: today's borrowing scanner
//!   (`parse_disks`), beside the parser it replaced (kept in tests/routeros_reference/, the
//!   oracle of tests/routeros_parse_oracle.rs) on the same text in the same run;
//! - 32 concurrent `print` commands against the simulator over real SSH, over ONE reused
//!   connection (what `RdsClient` does) vs a new SSH connection per command (what a naive
//!   `ssh rds '<cmd>'` per call costs).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "../tests/routeros_reference/mod.rs"]
mod routeros_reference;
use rds_csi::observability::Metrics;
use rds_csi::rds::command::MIKROTIK_NQN_PREFIX;
use rds_csi::rds::{
    parse_disks, parse_items, render_disk_list, slot_nqn, Disk, NvmeExport, Port, RdsClient,
    RdsPath, Slot,
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

const CONCURRENT: usize = 32;

fn concurrent_prints(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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
            .create_disk(&path, 1 << 30, &slot, &export, deadline())
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

criterion_group!(benches, parse_listing, concurrent_prints);
criterion_main!(benches);
