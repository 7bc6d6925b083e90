//! The controller's answers at the edges of the CSI spec that an independent conformance run
//! and a fault campaign once found wrong, each failing input kept as a test next to new
//! inputs of the same kind: names CSI allows, codes in the spec's order, topology, deletes
//! that leak no file, room checked before commands, leftover files, honest logs and short
//! messages. Real unix socket, simulator over real SSH.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::controller::*;
use csi_proto::v1 as csi;
use rds_csi::rds::size::GIB;
use rds_csi::simulator::harness::SimOptions;
use tonic::Code;

const GI: i64 = GIB as i64;

fn clone_of(name: &str, source: &str) -> csi::CreateVolumeRequest {
    from_volume(create_req(name, GI, rwo()), source)
}

fn restore_of(name: &str, snapshot_id: &str) -> csi::CreateVolumeRequest {
    from_snapshot(create_req(name, GI, rwo()), snapshot_id)
}

fn in_dir(r: csi::CreateVolumeRequest, dir: &str) -> csi::CreateVolumeRequest {
    with_param(r, "volumePath", dir)
}

impl Ctl {
    /// The `.img` files under the simulator's pool, as RDS paths.
    fn img_files(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else if p.extension().is_some_and(|x| x == "img") {
                    out.push(format!("/{}", p.strip_prefix(root).unwrap().display()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.sim.data_dir(), &self.sim.data_dir(), &mut out);
        out.sort();
        out
    }

    /// A 1G disk in `slot` backed by `file`, added over SSH as an operator would.
    async fn add_disk_by_hand(&self, file: &str, slot: &str) {
        let cmd = format!("/disk add type=file file-path=\"{file}\" file-size=1G slot=\"{slot}\"");
        let (out, err, _) = self.sim.ssh_exec(&cmd).await;
        assert!(
            !out.contains("failure") && !err.contains("failure"),
            "{out}{err}"
        );
    }

    fn host_path(&self, rds_path: &str) -> PathBuf {
        self.sim.data_dir().join(rds_path.trim_start_matches('/'))
    }
}

// ---- 16.1 names -----------------------------------------------------------------------------

/// CSI v1.12 CreateVolumeRequest.name: any Unicode string of at most 128 bytes without the
/// banned control characters. The inputs the conformance run found refused, then new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_csi_allows_creates_a_volume_and_a_retry_finds_it() {
    let mut c = start().await;
    let names: Vec<String> = vec![
        // Refused before:
        "sanity-x-1A2B3C4D".into(),
        "Vol".into(),
        "vol".into(),
        "vol+1".into(),
        "vol_1".into(),
        "ünïcødé-名前".into(),
        "a".repeat(64),
        "a".repeat(128),
        // New inputs of the same kind:
        "snap-not-a-snapshot".into(),
        "with\ttab and spaces".into(),
        "名".repeat(42),
        "VOL".into(),
        "pvc-0b7c1e2a-1234-4cde-8f00-0123456789ab".into(),
    ];
    let mut ids = HashMap::new();
    for name in &names {
        let v = c
            .create(create_req(name, GI, rwo()))
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e:?}"));
        assert_eq!(v.capacity_bytes, GI);
        assert!(
            v.volume_context["nqn"].ends_with(&format!(":{}", v.volume_id)),
            "{v:?}"
        );
        if let Some(other) = ids.insert(v.volume_id.clone(), name.clone()) {
            panic!("{name:?} and {other:?} share volume {}", v.volume_id);
        }
        // Idempotency: the same name finds the same disk (look before add).
        let again = c.create(create_req(name, GI, rwo())).await.unwrap();
        assert_eq!(again, v, "{name:?}");
    }
    assert_eq!(c.disk_adds(), names.len(), "one /disk add per name");
    // Names that are already valid ids keep exactly today's id.
    assert!(
        ids.contains_key("vol") && ids.contains_key("pvc-0b7c1e2a-1234-4cde-8f00-0123456789ab")
    );
    // Case matters: Vol, VOL and vol are three volumes (asserted distinct above).
    assert_eq!(ids.len(), names.len());
    // Every new id's NQN is under the node's default --nqn-prefix.
    for id in ids.keys() {
        assert!(id.starts_with("pvc-") || id == "vol", "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_crafted_as_another_names_id_gets_its_own_volume() {
    let mut c = start().await;
    let victim = c.create(create_req("Vol", GI, rwo())).await.unwrap();
    // Asking for the victim's id as a name, twice the size: never the victim's disk.
    let crafted = c
        .create(create_req(&victim.volume_id, 2 * GI, rwo()))
        .await
        .unwrap();
    assert_ne!(crafted.volume_id, victim.volume_id);
    assert_eq!(crafted.capacity_bytes, 2 * GI);
    // And the crafted id as a name again is yet another volume.
    let again = c
        .create(create_req(&crafted.volume_id, GI, rwo()))
        .await
        .unwrap();
    assert!(again.volume_id != crafted.volume_id && again.volume_id != victim.volume_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_control_characters_or_over_128_bytes_stay_invalid_argument() {
    let mut c = start().await;
    for (name, word) in [
        ("bad\u{1}name".to_string(), "U+0001"),
        ("\u{7f}".into(), "U+007F"),
        ("esc\u{1b}[31m".into(), "U+001B"),
        ("c1\u{85}".into(), "U+0085"),
        ("a".repeat(129), "at most 128"),
        ("名".repeat(43), "at most 128"),
    ] {
        let e = c.create(create_req(&name, GI, rwo())).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name:?}: {e:?}");
        assert!(e.message().contains(word), "{word} not in {}", e.message());
        let e = c.snapshot(&name, "pvc-any").await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "snapshot {name:?}");
    }
    assert!(c.sim.commands().is_empty(), "{:?}", c.sim.commands());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_snapshot_name_csi_allows_snapshots_and_restores() {
    let mut c = start().await;
    let src = c.create(create_req("source", GI, rwo())).await.unwrap();
    let mut seen = Vec::new();
    for (i, name) in [
        "CreateSnapshot-1A2B3C4D".to_string(),
        "createsnapshot-1a2b3c4d".into(),
        "snapshot with spaces ✓".into(),
        "s".repeat(128),
    ]
    .into_iter()
    .enumerate()
    {
        let s = c
            .client
            .create_snapshot(snap_req(&name, &src.volume_id))
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e:?}"))
            .into_inner()
            .snapshot
            .unwrap();
        assert!(s.snapshot_id.len() <= 128, "{}", s.snapshot_id);
        let again = c.snapshot(&name, &src.volume_id).await.unwrap();
        assert_eq!(again, s, "{name:?}");
        assert!(!seen.contains(&s.snapshot_id), "{name:?}");
        seen.push(s.snapshot_id.clone());
        let restored = c
            .create(restore_of(&format!("Restore #{i}"), &s.snapshot_id))
            .await
            .unwrap();
        assert_eq!(restored.volume_context["fresh"], "false");
    }
}

// ---- 16.2 codes in the spec's order -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_source_that_does_not_exist_is_not_found_whatever_the_name() {
    let mut c = start().await;
    for (name, req) in [
        // The conformance run's case: a name refused before, a missing snapshot.
        ("sanity-x-1A2B3C4D", "snap-0000000000000000:pvc-x:1"),
        ("Vol", "not-a-snapshot-id-of-ours"),
        ("vol_1", "snap-0123:PVC_X:1"),
    ] {
        let e = c.create(restore_of(name, req)).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{name:?} ← {req:?}: {e:?}");
        assert!(e.message().contains("does not exist"), "{}", e.message());
    }
    for source in ["pvc-absent", "Not A Volume", "snap-1"] {
        let e = c.create(clone_of("Clone", source)).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{source:?}: {e:?}");
    }
    assert_eq!(c.disk_adds(), 0);
}

// ---- 16.3 topology ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_report_the_topology_nodes_report_and_unreachable_requisites_are_refused() {
    use rds_csi::volume::topology::{DEFAULT_KEY, DEFAULT_VALUE};
    let mut c = start().await;
    let v = c.create(create_req("topo", GI, rwo())).await.unwrap();
    let want: HashMap<String, String> = [(DEFAULT_KEY.into(), DEFAULT_VALUE.into())].into();
    assert_eq!(
        v.accessible_topology,
        [csi::Topology {
            segments: want.clone()
        }]
    );
    let with = |requisite: Vec<HashMap<String, String>>| {
        let mut r = create_req("topo-req", GI, rwo());
        r.accessibility_requirements = Some(csi::TopologyRequirement {
            requisite: requisite
                .into_iter()
                .map(|segments| csi::Topology { segments })
                .collect(),
            preferred: Vec::new(),
        });
        r
    };
    // What csi-sanity sends: the node's own topology as the requisite.
    c.create(with(vec![want.clone()])).await.unwrap();
    let zone: HashMap<String, String> =
        [("topology.kubernetes.io/zone".into(), "z9".into())].into();
    let other: HashMap<String, String> = [(DEFAULT_KEY.into(), "elsewhere".into())].into();
    for requisite in [vec![zone.clone()], vec![other.clone()], vec![zone, other]] {
        let mut r = with(requisite.clone());
        r.name = "topo-far".into();
        let e = c.create(r).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{requisite:?}: {e:?}");
        assert!(e.message().contains("--topology"), "{}", e.message());
    }
}

// ---- 16.4 delete never leaks ------------------------------------------------------------------

/// The fault campaign's input: a volume under volumePath=/storage-pool/csi/sub, one failed
/// file removal, DeleteVolume (error), DeleteVolume again: the file must be gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_delete_removes_the_file_under_a_volume_path() {
    let mut c = start().await;
    let v = c
        .create(in_dir(
            create_req("pvc-sub", GI, rwo()),
            "/storage-pool/csi/sub",
        ))
        .await
        .unwrap();
    assert_eq!(c.img_files(), ["/storage-pool/csi/sub/pvc-sub.img"]);
    c.sim.fault("only=file-remove fail-next=1");
    let e = c.delete(&v.volume_id).await.unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    assert!(c.sim.disks().is_empty(), "the disk went first");
    c.delete(&v.volume_id).await.unwrap();
    assert!(c.img_files().is_empty(), "{:?}", c.img_files());
}

/// New inputs of the same kind: a clone and a restore (their files carry a source suffix),
/// an encoded name under a volumePath, and a lost answer instead of a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_delete_removes_clone_restore_and_encoded_name_files() {
    let mut c = start().await;
    let src = c.create(create_req("pvc-src", GI, rwo())).await.unwrap();
    let snap = c
        .snapshot("snap-for-restore", &src.volume_id)
        .await
        .unwrap();
    let clone = c
        .create(clone_of("pvc-clone", &src.volume_id))
        .await
        .unwrap();
    let restore = c
        .create(in_dir(
            restore_of("Restored Vol", &snap.snapshot_id),
            "/storage-pool/csi/r",
        ))
        .await
        .unwrap();
    let before = c.img_files();
    for (v, fault) in [
        (&clone, "only=file-remove fail-next=1"),
        (&restore, "only=file-remove drop-after-exec=1"),
    ] {
        let file = before
            .iter()
            .find(|f| f.contains(&format!("/{}.", v.volume_id)))
            .unwrap()
            .clone();
        c.sim.fault(fault);
        // A lost answer may already have removed the file; either way the retry succeeds.
        let _ = c.delete(&v.volume_id).await;
        c.sim.fault("clear");
        c.delete(&v.volume_id).await.unwrap();
        assert!(!c.img_files().contains(&file), "{file} leaked");
    }
    // The source and the snapshot are untouched.
    let left = c.img_files();
    assert!(left.iter().any(|f| f.ends_with("/pvc-src.img")), "{left:?}");
    assert!(left.iter().any(|f| f.contains("/snapshots/")), "{left:?}");
}

/// DeleteSnapshot uses the path the id knows, not `<base>/<slot>.img`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_snapshot_delete_removes_the_file_its_id_names() {
    let mut c = start().await;
    let src = c.create(create_req("pvc-s", GI, rwo())).await.unwrap();
    for (name, fault) in [
        ("snap-a", "only=file-remove fail-next=1"),
        ("Snapshot B", "only=file-remove drop-after-exec=1"),
    ] {
        let s = c.snapshot(name, &src.volume_id).await.unwrap();
        let del = csi::DeleteSnapshotRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        };
        c.sim.fault(fault);
        let _ = c.client.delete_snapshot(del.clone()).await;
        c.sim.fault("clear");
        c.client.delete_snapshot(del).await.unwrap();
        let left = c.img_files();
        assert_eq!(left, ["/storage-pool/csi/pvc-s.img"], "{name}: {left:?}");
    }
}

/// A file named like the volume's but used by another disk is never removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_never_removes_a_file_another_disk_uses() {
    let c = start().await;
    // A disk in another slot whose file is named like volume pvc-x's.
    c.add_disk_by_hand("/storage-pool/csi/pvc-x.img", "other")
        .await;
    let mut client = c.client.clone();
    client.delete_volume(delete_req("pvc-x")).await.unwrap();
    assert_eq!(c.img_files(), ["/storage-pool/csi/pvc-x.img"]);
}

// ---- 16.5 room before commands ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_beyond_the_pool_or_its_free_space_are_refused_before_any_command() {
    let mut c = start_with(CtlOptions {
        sim: SimOptions {
            pool_size: 10 * GIB,
            ..SimOptions::default()
        },
        ..CtlOptions::default()
    })
    .await;
    let mutations = |c: &Ctl| {
        c.sim
            .commands()
            .iter()
            .filter(|x| x.starts_with("/disk add") || x.starts_with("/disk set"))
            .count()
    };
    for (name, size, code) in [
        ("bigger-than-pool", 11 * GI, Code::OutOfRange),
        ("way-bigger", 1000 * GI, Code::OutOfRange),
    ] {
        let e = c.create(create_req(name, size, rwo())).await.unwrap_err();
        assert_eq!(e.code(), code, "{name}: {e:?}");
        assert!(e.message().contains("whole RDS pool"), "{}", e.message());
    }
    let v = c.create(create_req("eight", 8 * GI, rwo())).await.unwrap();
    let e = c
        .create(create_req("three", 3 * GI, rwo()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("free"), "{}", e.message());
    // A clone and a snapshot of the 8 GiB volume do not fit either.
    let e = c.create(clone_of("copy", &v.volume_id)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let e = c.snapshot("snap", &v.volume_id).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // Growing past the free space, or past the pool.
    let expand = |bytes: i64| expand_req(&v.volume_id, bytes);
    let e = c.expand(expand(11 * GI)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    let e = c.expand(expand(10 * GI + 1)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    c.create(create_req("one", GI, rwo())).await.unwrap();
    let e = c.expand(expand(10 * GI)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(
        mutations(&c),
        2,
        "only the two creates that fit reached the RDS"
    );
    // What fits still works.
    c.expand(expand(9 * GI)).await.unwrap();
}

// ---- 16.6 a leftover file at a new volume's path ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_file_is_named_with_what_to_do_and_never_removed() {
    let mut c = start().await;
    for (req, path) in [
        (
            create_req("pvc-left", GI, rwo()),
            "/storage-pool/csi/pvc-left.img",
        ),
        (
            in_dir(
                create_req("pvc-left-sub", GI, rwo()),
                "/storage-pool/csi/sub",
            ),
            "/storage-pool/csi/sub/pvc-left-sub.img",
        ),
        (
            create_req("Left Over", GI, rwo()),
            "", // filled in below from the id the name maps to
        ),
    ] {
        let path = if path.is_empty() {
            // The id of a name is deterministic: learn it from a throwaway create and delete.
            let v = c.create(req.clone()).await.unwrap();
            c.delete(&v.volume_id).await.unwrap();
            format!("/storage-pool/csi/{}.img", v.volume_id)
        } else {
            path.to_string()
        };
        let host = c.host_path(&path);
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(&host, b"something someone may need").unwrap();
        for _ in 0..2 {
            let e = c.create(req.clone()).await.unwrap_err();
            assert_eq!(e.code(), Code::FailedPrecondition, "{path}: {e:?}");
            let m = e.message();
            assert!(
                m.contains(&path) && m.contains("/file remove") && m.contains("no disk uses it"),
                "{m}"
            );
        }
        assert_eq!(
            std::fs::read(&host).unwrap(),
            b"something someone may need",
            "never removed"
        );
        std::fs::remove_file(&host).unwrap();
        c.create(req).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_volumes_path_used_by_another_disk_names_that_disk() {
    let mut c = start().await;
    c.add_disk_by_hand("/storage-pool/csi/pvc-taken.img", "intruder")
        .await;
    let e = c
        .create(create_req("pvc-taken", GI, rwo()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("disk intruder"), "{}", e.message());
}

// ---- 16.7 the DeleteVolume log says what happened ---------------------------------------------

#[test]
fn delete_volume_logs_what_really_happened() {
    let logs = common::logs::Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    // One thread: every task logs through the subscriber set above.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = start().await;
        let v = c.create(create_req("pvc-log", GI, rwo())).await.unwrap();
        logs.take();
        for id in ["pvc-never-created", "pvc-also-never", "Not An Id"] {
            c.delete(id).await.unwrap();
            let l = logs.take();
            assert!(
                !l.contains("volume deleted") && (l.contains("nothing to delete")),
                "{id}: {l}"
            );
        }
        c.delete(&v.volume_id).await.unwrap();
        let l = logs.take();
        assert!(
            l.contains("volume deleted (disk, export and backing file)"),
            "{l}"
        );
        let v = c.create(create_req("pvc-log2", GI, rwo())).await.unwrap();
        c.sim.fault("only=file-remove fail-next=1");
        let _ = c.delete(&v.volume_id).await;
        logs.take();
        c.delete(&v.volume_id).await.unwrap();
        let l = logs.take();
        assert!(
            l.contains("removed the backing file an earlier delete left behind")
                && !l.contains("volume deleted (disk"),
            "{l}"
        );
    });
}

// ---- 16.8 messages echo at most a few hundred bytes of any input ------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_error_echoes_more_than_a_few_hundred_bytes_of_an_input() {
    let mut c = start().await;
    let v = c.create(create_req("pvc-echo", GI, rwo())).await.unwrap();
    let huge = "x".repeat(100_000);
    let mut statuses: Vec<(&str, tonic::Status)> = Vec::new();
    statuses.push((
        "CreateVolume name",
        c.create(create_req(&huge, GI, rwo())).await.unwrap_err(),
    ));
    let mut r = create_req("pvc-p", GI, rwo());
    r.parameters.insert(huge.clone(), "1".into());
    statuses.push(("CreateVolume parameter key", c.create(r).await.unwrap_err()));
    let mut r = create_req("pvc-p", GI, rwo());
    r.parameters
        .insert("nvmeAddress".into(), format!("{huge};"));
    statuses.push((
        "CreateVolume parameter value",
        c.create(r).await.unwrap_err(),
    ));
    statuses.push((
        "CreateVolume source",
        c.create(clone_of("pvc-c", &huge)).await.unwrap_err(),
    ));
    statuses.push((
        "ControllerPublish volume_id",
        c.client
            .controller_publish_volume(csi::ControllerPublishVolumeRequest {
                volume_id: huge.clone(),
                ..publish_req(&v, "node-a", rwo())
            })
            .await
            .unwrap_err(),
    ));
    statuses.push((
        "ControllerPublish node_id",
        c.publish(&v, &huge, rwo()).await.unwrap_err(),
    ));
    let mut p = publish_req(&v, "node-a", rwo());
    p.volume_context
        .insert("migrationTimeoutSeconds".into(), huge.clone());
    statuses.push((
        "ControllerPublish context",
        c.client.controller_publish_volume(p).await.unwrap_err(),
    ));
    statuses.push((
        "ControllerGetVolume",
        c.client
            .controller_get_volume(csi::ControllerGetVolumeRequest {
                volume_id: huge.clone(),
            })
            .await
            .unwrap_err(),
    ));
    statuses.push((
        "ListVolumes token",
        c.client
            .list_volumes(csi::ListVolumesRequest {
                max_entries: 1,
                starting_token: huge.clone(),
            })
            .await
            .unwrap_err(),
    ));
    statuses.push((
        "CreateSnapshot source",
        c.snapshot("s", &huge).await.unwrap_err(),
    ));
    for (what, s) in statuses {
        assert!(
            s.message().len() <= 1024,
            "{what}: {} bytes: {}",
            s.message().len(),
            &s.message()[..200]
        );
        assert!(s.message().len() > 10, "{what}: {s:?}");
    }
}
