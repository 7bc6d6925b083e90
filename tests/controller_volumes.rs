//! CSI Controller volume and snapshot RPCs over a real unix socket, against the RDS
//! simulator over real SSH: success, idempotency and every error code.

mod common;

use common::controller::*;
use csi_proto::v1 as csi;
use rds_csi::rds::size::{GIB, MIB};
use tonic::Code;

const GI: i64 = GIB as i64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_and_a_half_gib_volume_is_never_rounded_down() {
    let mut c = start().await;
    let req = create_req("pvc-onehalf", GI + GI / 2, rwo());
    let v = c.create(req).await.unwrap();
    assert_eq!(v.capacity_bytes, GI + GI / 2);
    let disk = c
        .sim
        .disks()
        .into_iter()
        .find(|d| d.slot == "pvc-onehalf")
        .unwrap();
    assert_eq!(
        disk.size_bytes as i64, v.capacity_bytes,
        "reports what was really created"
    );
    // An odd byte count rounds up to the next MiB, never down.
    let v = c
        .create(create_req("pvc-odd", GI + 1, rwo()))
        .await
        .unwrap();
    assert_eq!(v.capacity_bytes, GI + MIB as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_idempotent_and_an_incompatible_retry_is_already_exists() {
    let mut c = start().await;
    let a = c
        .create(create_req("pvc-idem", 2 * GI, rwo()))
        .await
        .unwrap();
    let b = c
        .create(create_req("pvc-idem", 2 * GI, rwo()))
        .await
        .unwrap();
    assert_eq!(a, b, "same volume, same context");
    assert_eq!(c.disk_adds(), 1);
    let e = c
        .create(create_req("pvc-idem", 3 * GI, rwo()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("pvc-idem"));
    // A retry whose range the existing 2 GiB volume satisfies is the same volume, not a new
    // one (CSI: compatible means within the range, not the same number)...
    let mut smaller = create_req("pvc-idem", GI, rwo());
    smaller.capacity_range.as_mut().unwrap().limit_bytes = 4 * GI;
    let same = c.create(smaller).await.unwrap();
    assert_eq!(same, a);
    // ...and one whose limit it exceeds is ALREADY_EXISTS.
    let mut capped = create_req("pvc-idem", GI, rwo());
    capped.capacity_range.as_mut().unwrap().limit_bytes = GI + GI / 2;
    assert_eq!(
        c.create(capped).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    assert_eq!(c.disk_adds(), 1, "no retry created a disk");
    // A different content source is incompatible too.
    let clone = from_volume(create_req("pvc-idem", 2 * GI, rwo()), "pvc-idem");
    assert_eq!(
        c.create(clone).await.unwrap_err().code(),
        Code::AlreadyExists
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_before_anything_reaches_the_rds() {
    let mut c = start().await;
    let before = c.sim.commands().len();
    let cases: Vec<(csi::CreateVolumeRequest, Code, &str)> = vec![
        // CSI v1.12: names are any Unicode up to 128 bytes without control characters.
        (
            create_req("pvc\u{1}bad", GI, rwo()),
            Code::InvalidArgument,
            "U+0001",
        ),
        (
            create_req(&"n".repeat(129), GI, rwo()),
            Code::InvalidArgument,
            "at most 128",
        ),
        (create_req("", GI, rwo()), Code::InvalidArgument, "name"),
        (
            create_req("pvc-nocaps", GI, rwo()),
            Code::InvalidArgument,
            "volume_capabilities",
        ),
        (
            create_req(
                "pvc-fsrwx",
                GI,
                mount_cap(csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter),
            ),
            Code::InvalidArgument,
            "KubeVirt",
        ),
        (
            {
                let mut r = create_req("pvc-limit", GI, rwo());
                r.capacity_range = Some(csi::CapacityRange {
                    required_bytes: 0,
                    limit_bytes: 512 * MIB as i64,
                });
                r
            },
            Code::OutOfRange,
            "1 GiB",
        ),
        (
            with_param(
                create_req("pvc-param", GI, rwo()),
                "migrationTimeoutSeconds",
                "10",
            ),
            Code::InvalidArgument,
            "30 to 3600",
        ),
        (
            with_param(create_req("pvc-param2", GI, rwo()), "bogus", "1"),
            Code::InvalidArgument,
            "bogus",
        ),
        (
            with_param(
                create_req("pvc-path", GI, rwo()),
                "volumePath",
                "/storage-pool/csi2",
            ),
            Code::InvalidArgument,
            "volumePath",
        ),
    ];
    for (mut req, code, word) in cases {
        if req.name == "pvc-nocaps" {
            req.volume_capabilities.clear();
        }
        let e = c.create(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), code, "{}: {e:?}", req.name);
        assert!(e.message().contains(word), "{}: {}", req.name, e.message());
    }
    assert_eq!(
        c.sim.commands().len(),
        before,
        "nothing was sent: {:?}",
        &c.sim.commands()[before..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_carries_what_the_node_needs_and_only_empty_volumes_are_fresh() {
    let mut c = start().await;
    let v = c.create(create_req("pvc-ctx", GI, rwo())).await.unwrap();
    let ctx = &v.volume_context;
    assert_eq!(ctx["nqn"], "nqn.2000-02.com.mikrotik:pvc-ctx");
    assert_eq!(ctx["nvmeAddress"], "127.0.0.1");
    assert_eq!(ctx["nvmePort"], "4420");
    assert_eq!(ctx["migrationTimeoutSeconds"], "300");
    assert_eq!(ctx["fresh"], "true");
    for k in ["ctrlLossTmo", "reconnectDelay", "keepAliveTmo"] {
        assert!(ctx.contains_key(k), "{k}");
    }
    // A clone and a restore are never fresh, even though they are new disks.
    let clone = from_volume(create_req("pvc-clone", GI, rwo()), "pvc-ctx");
    let cv = c.create(clone).await.unwrap();
    assert_eq!(cv.volume_context["fresh"], "false");
    assert!(cv.content_source.is_some());
    let snap = c.snapshot("snapshot-ctx", "pvc-ctx").await.unwrap();
    let restore = from_snapshot(create_req("pvc-restore", 2 * GI, rwo()), &snap.snapshot_id);
    let rv = c.create(restore).await.unwrap();
    assert_eq!(rv.volume_context["fresh"], "false");
    assert_eq!(
        rv.capacity_bytes,
        2 * GI,
        "a restore is grown to the request"
    );
    // A missing source is NOT_FOUND.
    let missing = from_snapshot(
        create_req("pvc-nosrc", GI, rwo()),
        "snap-0000000000000000:pvc-ctx:1",
    );
    assert_eq!(c.create(missing).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_disk_and_file_and_unknown_ids_succeed() {
    let mut c = start().await;
    c.create(create_req("pvc-del", GI, rwo())).await.unwrap();
    let file = c.sim.data_dir().join("storage-pool/csi/pvc-del.img");
    assert!(file.exists(), "{}", file.display());
    c.delete("pvc-del").await.unwrap();
    assert!(c.sim.disks().is_empty());
    assert!(!file.exists());
    for id in ["pvc-del", "pvc-never", "Not/A Volume"] {
        c.delete(id).await.unwrap();
    }
    let e = c.delete("").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_capabilities_confirms_only_what_is_safe() {
    let mut c = start().await;
    c.create(create_req("pvc-val", GI, rwo())).await.unwrap();
    let val = |cap| validate_req("pvc-val", vec![cap]);
    let r = c.validate(val(rwo())).await.unwrap();
    assert!(r.confirmed.is_some());
    let r = c.validate(val(rwx_block())).await.unwrap();
    assert!(r.confirmed.is_some(), "RWX block is confirmed");
    let fs_rwx = mount_cap(csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter);
    let r = c.validate(val(fs_rwx)).await.unwrap();
    assert!(
        r.confirmed.is_none() && r.message.contains("Block"),
        "{}",
        r.message
    );
    let mut unknown = val(rwo());
    unknown.volume_id = "pvc-missing".into();
    let e = c.validate(unknown).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let mut nocaps = val(rwo());
    nocaps.volume_capabilities.clear();
    let e = c.validate(nocaps).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_volumes_pages_through_concurrent_creates_without_repeats() {
    let mut c = start().await;
    for i in 0..5 {
        c.create(create_req(&format!("pvc-list-{i}"), GI, rwo()))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut page_no = 0;
    loop {
        let r = c.list_volumes(2, &token).await.unwrap();
        seen.extend(r.entries.into_iter().map(|e| e.volume.unwrap().volume_id));
        if page_no == 0 {
            // A create between pages must not make the listing repeat or skip earlier entries.
            c.create(create_req("pvc-list-9", GI, rwo())).await.unwrap();
        }
        page_no += 1;
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted, seen, "no repeats");
    for i in 0..5 {
        assert!(seen.contains(&format!("pvc-list-{i}")), "{seen:?}");
    }
    let e = c.list_volumes(1, "invalid-token").await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_the_pools_free_space() {
    let mut c = start().await;
    assert_eq!(c.capacity().await, 100 * GI);
    c.create(create_req("pvc-cap", 10 * GI, rwo()))
        .await
        .unwrap();
    assert_eq!(c.capacity().await, 90 * GI);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_grows_byte_exact_never_shrinks_and_asks_the_node_for_filesystems() {
    let mut c = start().await;
    c.create(create_req("pvc-grow", GI, rwo())).await.unwrap();
    let exp = |bytes: i64, cap: Option<csi::VolumeCapability>| {
        let mut r = expand_req("pvc-grow", bytes);
        r.volume_capability = cap;
        r
    };
    let r = c.expand(exp(3 * GI + GI / 2, Some(rwo()))).await.unwrap();
    assert_eq!(r.capacity_bytes, 3 * GI + GI / 2);
    assert!(r.node_expansion_required);
    let r = c.expand(exp(2 * GI, Some(rwo()))).await.unwrap();
    assert_eq!(
        r.capacity_bytes,
        3 * GI + GI / 2,
        "never shrinks; idempotent"
    );
    let r = c.expand(exp(4 * GI, Some(rwx_block()))).await.unwrap();
    assert!(!r.node_expansion_required, "block needs no node step");
    let mut missing = exp(4 * GI, None);
    missing.volume_id = "pvc-nope".into();
    let e = c.expand(missing).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_idempotent_by_name_listable_and_deletable() {
    let mut c = start().await;
    c.create(create_req("pvc-src", GI, rwo())).await.unwrap();
    c.create(create_req("pvc-src2", GI, rwo())).await.unwrap();
    let a = c.snapshot("snapshot-a", "pvc-src").await.unwrap();
    assert!(a.ready_to_use);
    assert_eq!(a.source_volume_id, "pvc-src");
    assert_eq!(a.size_bytes, GI);
    let again = c.snapshot("snapshot-a", "pvc-src").await.unwrap();
    assert_eq!(a, again, "same name, same snapshot (id and creation time)");
    let e = c.snapshot("snapshot-a", "pvc-src2").await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(
        c.snapshot("snapshot-x", "pvc-none")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let b = c.snapshot("snapshot-b", "pvc-src2").await.unwrap();
    // The snapshot disk is not exported.
    let sdisk = c
        .sim
        .disks()
        .into_iter()
        .find(|d| a.snapshot_id.starts_with(&d.slot))
        .unwrap();
    assert!(!sdisk.nvme_tcp_export);

    let all = c.list_snapshots(Default::default()).await.unwrap().entries;
    assert_eq!(all.len(), 2);
    let by_id = c.list_snapshots(csi::ListSnapshotsRequest {
        snapshot_id: b.snapshot_id.clone(),
        ..Default::default()
    });
    let by_id = by_id.await.unwrap().entries;
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].snapshot.as_ref().unwrap(), &b);
    let by_src = c.list_snapshots(csi::ListSnapshotsRequest {
        source_volume_id: "pvc-src".into(),
        ..Default::default()
    });
    assert_eq!(by_src.await.unwrap().entries.len(), 1);
    let page = c.list_snapshots(list_snapshots_req(1, "")).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    let page2 = c.list_snapshots(list_snapshots_req(1, &page.next_token));
    let page2 = page2.await.unwrap();
    assert_eq!(page2.entries.len(), 1);
    assert_ne!(page.entries[0], page2.entries[0]);
    let none = c.list_snapshots(csi::ListSnapshotsRequest {
        snapshot_id: "no-such-snapshot".into(),
        ..Default::default()
    });
    assert!(none.await.unwrap().entries.is_empty());

    c.delete_snapshot(&a.snapshot_id).await.unwrap();
    c.delete_snapshot(&a.snapshot_id).await.unwrap();
    let left = c.list_snapshots(Default::default()).await.unwrap();
    assert_eq!(left.entries.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_after_disk_add_never_makes_a_duplicate_or_loses_the_disk() {
    let mut c = start().await;
    c.sim.fault("only=disk-add drop-after-exec=1");
    let v = c.create(create_req("pvc-lost", GI, rwo())).await.unwrap();
    assert_eq!(v.capacity_bytes, GI);
    let again = c.create(create_req("pvc-lost", GI, rwo())).await.unwrap();
    assert_eq!(again, v);
    assert_eq!(c.sim.disks().len(), 1);
    assert_eq!(c.disk_adds(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_is_resource_exhausted_and_an_unreachable_rds_is_unavailable() {
    let mut c = start().await;
    c.sim.fault("disk-full=yes");
    let e = c
        .create(create_req("pvc-full", GI, rwo()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("pvc-full"));
    c.sim.fault("clear");
    // Refused connections trip the breaker: calls then fail fast with UNAVAILABLE.
    c.sim.fault("refuse-connections=yes");
    c.sim.fault("drop-next=1");
    let mut last = None;
    for _ in 0..8 {
        let e = c
            .create(create_req("pvc-down", GI, rwo()))
            .await
            .unwrap_err();
        last = Some(e.code());
        if e.code() == Code::Unavailable {
            break;
        }
    }
    assert_eq!(last, Some(Code::Unavailable));
    assert!(c.sim.disks().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_operation_on_the_same_volume_is_aborted_at_once() {
    let c = start().await;
    c.sim.fault("latency=1500ms");
    let mut a = c.client.clone();
    let mut b = c.client.clone();
    let first =
        tokio::spawn(async move { a.create_volume(create_req("pvc-busy", GI, rwo())).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let t = std::time::Instant::now();
    let e = b
        .create_volume(create_req("pvc-busy", GI, rwo()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert!(
        t.elapsed() < std::time::Duration::from_millis(500),
        "answered at once"
    );
    first.await.unwrap().unwrap();
    assert_eq!(c.metric("rds_csi_inflight_rejections_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_volume_reports_condition_and_publication() {
    let mut c = start().await;
    let v = c.create(create_req("pvc-get", GI, rwo())).await.unwrap();
    let r = c.get_volume("pvc-get").await.unwrap();
    assert!(
        !r.status
            .as_ref()
            .unwrap()
            .volume_condition
            .as_ref()
            .unwrap()
            .abnormal
    );
    c.publish(&v, "node-a", rwo()).await.unwrap();
    let r = c.get_volume("pvc-get").await.unwrap();
    assert_eq!(
        r.status.as_ref().unwrap().published_node_ids,
        vec!["node-a".to_string()]
    );
    // The disk vanishes on the RDS behind our back while published: abnormal, not NOT_FOUND.
    c.sim.ssh_exec("/disk remove [find slot=\"pvc-get\"]").await;
    let r = c.get_volume("pvc-get").await.unwrap();
    let cond = r.status.unwrap().volume_condition.unwrap();
    assert!(
        cond.abnormal && cond.message.contains("missing"),
        "{}",
        cond.message
    );
    let e = c.get_volume("pvc-other").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

/// The CO's deadline (gRPC `grpc-timeout`, what the external-provisioner's --timeout sets)
/// bounds the whole RPC: with the RDS answering slowly, CreateVolume returns
/// DEADLINE_EXCEEDED at the deadline instead of holding the call (and the sidecar) open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_deadline_bounds_create_volume_end_to_end() {
    let mut c = start().await;
    c.sim.fault("latency=5s");
    let mut req = tonic::Request::new(create_req("pvc-slow", GI, rwo()));
    req.set_timeout(std::time::Duration::from_secs(2));
    let started = std::time::Instant::now();
    let e = c.client.create_volume(req).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    assert!(e.message().contains("pvc-slow"), "names the volume: {e:?}");
    c.sim.fault("clear");
    // The retry the CO makes next finds no half-made volume to trip over.
    c.create(create_req("pvc-slow", GI, rwo())).await.unwrap();
}

/// Issue 19.6: CreateVolume looks for its disk once before `/disk add` (the controller's look
/// decides idempotency; the RDS client does not repeat it), for an empty volume and for a
/// clone. Counted on the commands the simulator received over SSH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_volume_looks_for_its_disk_once_before_adding_it() {
    let mut c = start().await;
    let looks_before_add = |cmds: &[String], slot: &str| -> usize {
        let add = cmds
            .iter()
            .position(|x| x.starts_with("/disk add"))
            .unwrap_or_else(|| panic!("no /disk add in {cmds:?}"));
        cmds[..add]
            .iter()
            .filter(|x| x.starts_with("/disk print") && x.contains(slot))
            .count()
    };
    let before = c.sim.commands().len();
    c.create(create_req("pvc-onelook", GI, rwo()))
        .await
        .unwrap();
    let cmds = c.sim.commands()[before..].to_vec();
    assert_eq!(looks_before_add(&cmds, "pvc-onelook"), 1, "{cmds:#?}");

    let before = c.sim.commands().len();
    let clone = from_volume(create_req("pvc-onelook-clone", GI, rwo()), "pvc-onelook");
    c.create(clone).await.unwrap();
    let cmds = c.sim.commands()[before..].to_vec();
    assert_eq!(looks_before_add(&cmds, "pvc-onelook-clone"), 1, "{cmds:#?}");
    // A retry still finds the disk and adds nothing.
    c.create(create_req("pvc-onelook", GI, rwo()))
        .await
        .unwrap();
    assert_eq!(c.disk_adds(), 2);
}
