//! Issue 19.2: a paginated ListVolumes / ListSnapshots fetches the RDS's disks once per
//! listing, not once per page — counted on the commands the simulator received over real
//! SSH, with the controller served on a real unix socket.

mod common;

use common::controller::*;
use csi_proto::v1 as csi;
use rds_csi::rds::size::GIB;
use rds_csi::simulator::harness::{SimDisk, SimOptions};

const GI: i64 = GIB as i64;

fn seeded_volumes(n: usize) -> Vec<SimDisk> {
    (0..n)
        .map(|i| {
            let slot = format!("pvc-{i:08x}-a8bf-572e-9120-464c4d99f12f");
            SimDisk {
                file_path: format!("{BASE}/{slot}.img"),
                size_bytes: GIB,
                nvme_tcp_export: true,
                nvme_tcp_port: Some(4420),
                nvme_tcp_nqn: Some(format!("{NQN_PREFIX}{slot}")),
                slot,
            }
        })
        .collect()
}

fn prints(c: &Ctl, what: impl Fn(&str) -> bool) -> usize {
    c.sim
        .commands()
        .iter()
        .filter(|x| x.starts_with("/disk print") && what(x))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_volumes_in_100_entry_pages_are_fetched_once() {
    let mut c = start_with(CtlOptions {
        sim: SimOptions {
            pool_size: 20_000 * GIB,
            disks: seeded_volumes(10_000),
            ..SimOptions::default()
        },
        ..CtlOptions::default()
    })
    .await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = c.list_volumes(100, &token).await.unwrap();
        assert!(r.entries.len() <= 100);
        seen.extend(r.entries.into_iter().map(|e| e.volume.unwrap().volume_id));
        pages += 1;
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    assert_eq!(pages, 100);
    assert_eq!(seen.len(), 10_000);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "every volume once, in order");
    assert_eq!(
        prints(&c, |x| x == "/disk print detail"),
        1,
        "one listing of every disk for 100 pages"
    );
    // A second listing is a new generation: one more fetch, not one per page.
    let r = c.list_volumes(5_000, "").await.unwrap();
    let r2 = c.list_volumes(5_000, &r.next_token).await.unwrap();
    assert!(r2.next_token.is_empty());
    assert_eq!(r.entries.len() + r2.entries.len(), 10_000);
    assert_eq!(prints(&c, |x| x == "/disk print detail"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_in_pages_are_fetched_once_and_a_filter_keeps_its_own_listing() {
    let mut c = start().await;
    for v in ["pvc-lsa", "pvc-lsb"] {
        c.create(create_req(v, GI, rwo())).await.unwrap();
    }
    for i in 0..6 {
        let source = if i % 2 == 0 { "pvc-lsa" } else { "pvc-lsb" };
        c.snapshot(&format!("snapshot-{i}"), source).await.unwrap();
    }
    let snapshot_lists = |c: &Ctl| prints(c, |x| x.contains("where slot~"));
    let before = snapshot_lists(&c);
    let list = |source: &str, token: String| csi::ListSnapshotsRequest {
        max_entries: 2,
        starting_token: token,
        source_volume_id: source.into(),
        ..Default::default()
    };
    let mut all = Vec::new();
    let mut token = String::new();
    let mut first_token = String::new();
    loop {
        let r = c.list_snapshots(list("", token)).await.unwrap();
        all.extend(r.entries.into_iter().map(|e| e.snapshot.unwrap()));
        if first_token.is_empty() {
            first_token = r.next_token.clone();
        }
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    assert_eq!(all.len(), 6);
    assert_eq!(snapshot_lists(&c) - before, 1, "3 pages, one fetch");
    // The unfiltered listing's token on a filtered listing reads that filter's snapshots
    // only (after the token's id), from its own fetch.
    let r = c
        .list_snapshots(list("pvc-lsb", first_token))
        .await
        .unwrap();
    assert!(!r.entries.is_empty());
    assert!(
        r.entries
            .iter()
            .all(|e| e.snapshot.as_ref().unwrap().source_volume_id == "pvc-lsb"),
        "{r:?}"
    );
    assert_eq!(snapshot_lists(&c) - before, 2);
}
