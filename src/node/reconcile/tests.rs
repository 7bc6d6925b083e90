//! The reconciler's task over a fake sysfs, pass by pass; the node's in-flight keys,
//! records and metrics are the real ones.

use super::*;
use crate::node::stage_record::{AccessType, BootId};
use crate::node::transport::NvmeTarget;
use crate::volume::context::Tunables;
use crate::volume::NvmeAddress;
use node_io::nqn::Nqn;
use node_io::testing::FakeSys;

const PREFIX: &str = "nqn.2000-02.com.mikrotik:pvc-";
const A: &str = "nqn.2000-02.com.mikrotik:pvc-a";
const ORPHAN: &str = "nqn.2000-02.com.mikrotik:pvc-orphan";
const EARLIER_BOOT: &str = "11111111-2222-4333-8444-555555555555";

fn rec(node: &Node, vol: &str, nqn: &str) -> StageRecord {
    nvme_record(vol, nqn, node.boot.id.clone())
}

/// The stage record of a filesystem volume on the NVMe/TCP target `nqn` at 127.0.0.1:4420,
/// staged in boot `boot_id` (shared with the plan's tests).
pub(super) fn nvme_record(vol: &str, nqn: &str, boot_id: BootId) -> StageRecord {
    StageRecord {
        volume_id: vol.into(),
        boot_id: Some(boot_id),
        target: Target::NvmeTcp(NvmeTarget {
            nqn: Nqn::new(nqn).unwrap(),
            address: NvmeAddress::parse("127.0.0.1").unwrap(),
            port: 4420,
            tunables: Tunables::default(),
        }),
        access: AccessType::Mount,
        staging_path: "/staging".into(),
        device: None,
        fs_type: None,
        formatting: None,
    }
}

/// A reconciler over a fake sysfs, driven pass by pass; the node's in-flight keys and
/// metrics are the real ones.
fn reconciler(
    s: &FakeSys,
    d: &std::path::Path,
) -> (Reconciler, Arc<Node>, crate::observability::Metrics) {
    use crate::node::{NodeConfig, NodePlugin, Transport, TransportConfig};
    let metrics = crate::observability::Metrics::new("node");
    let plugin = NodePlugin::new(
        NodeConfig {
            node_id: "worker-1".into(),
            driver_name: "rds.csi.mikrotik.com".into(),
            transport: TransportConfig::NvmeTcp,
            nqn_prefix: PREFIX.into(),
            state_dir: d.join("state"),
            host_nqn_file: d.join("hostnqn"),
            host_id_file: d.join("hostid"),
            proc_root: "/proc".into(),
            sys_root: s.root().to_owned(),
            dev_root: d.join("dev"),
            max_volumes: 8,
            topology: Default::default(),
            reconcile_interval: Some(Duration::from_secs(1)),
        },
        &metrics,
    )
    .unwrap();
    let node = Arc::clone(&plugin.node);
    let Transport::NvmeTcp(nvme) = &node.transport else {
        unreachable!("configured nvme-tcp")
    };
    let r = Reconciler::new(Arc::clone(&node), nvme.clone(), Duration::from_secs(1));
    (r, node, metrics)
}

fn actions(m: &crate::observability::Metrics, action: &str) -> u64 {
    m.render()
        .lines()
        .find(|l| {
            l.starts_with("rds_csi_node_reconciler_actions_total{")
                && l.contains(&format!("action=\"{action}\""))
                && l.contains("result=\"ok\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_orphan_is_never_disconnected_under_a_stage_of_its_nqn() {
    let d = tempfile::tempdir().unwrap();
    let s = FakeSys::new();
    s.controller(0, ORPHAN, 4420, "live");
    let deleted =
        || std::fs::read_to_string(s.ctl_dir(0).join("delete_controller")).unwrap() == "1";
    let (mut r, node, m) = reconciler(&s, d.path());
    r.pass().await; // first sighting: nothing yet
    assert!(!deleted());

    // A NodeStage of that NQN is running (it holds the NQN's key): left alone.
    let stage = node.inflight.try_acquire(ORPHAN).unwrap();
    r.pass().await;
    assert!(!deleted(), "disconnected under a running stage");
    assert_eq!(actions(&m, "skip_orphan_busy"), 1);
    drop(stage);

    // A stage finished between the pass's listing and the disconnect: its record wins.
    rec(&node, "pvc-orphan", ORPHAN)
        .save(&node.state_dir)
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    r.disconnect_orphan(ORPHAN, deadline).await;
    assert!(!deleted(), "disconnected a controller a record owns");
    assert_eq!(actions(&m, "skip_orphan_owned"), 1);
    StageRecord::remove(&node.state_dir, "pvc-orphan").unwrap();

    // Still an orphan on the next pass: disconnected.
    let kernel = s.kernel_deletes(vec![0], Duration::from_secs(5));
    r.pass().await;
    kernel.join().unwrap();
    assert!(deleted());
    assert_eq!(actions(&m, "disconnect_orphan"), 1);
}

/// The other side of the shared key: a stage that finds the reconciler on its target is
/// ABORTED (retried by the kubelet) naming the volume and the target, never run alongside.
#[tokio::test]
async fn a_stage_meeting_the_reconciler_on_its_target_is_aborted_naming_both() {
    use crate::node::stage::StageRequest;
    use crate::volume::context::VolumeContext;
    let d = tempfile::tempdir().unwrap();
    let s = FakeSys::new();
    let (_r, node, _m) = reconciler(&s, d.path());
    let held = node.inflight.try_acquire(ORPHAN).unwrap();
    let req = StageRequest {
        volume_id: "pvc-orphan".into(),
        staging_path: d.path().join("staging"),
        access: AccessType::Block,
        fs_type: None,
        mount_flags: Vec::new(),
        context: VolumeContext {
            nvme_address: NvmeAddress::parse("127.0.0.1").unwrap(),
            nvme_port: 4420,
            nqn: Nqn::new(ORPHAN).unwrap(),
            tunables: Tunables::default(),
            migration_timeout: Default::default(),
            fs_type: None,
            fresh: true,
            volume_file: None,
        },
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let e = node.stage(req, deadline).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Aborted, "{e}");
    let msg = e.on("pvc-orphan").to_string();
    assert!(msg.contains("pvc-orphan") && msg.contains(ORPHAN), "{msg}");
    assert!(
        StageRecord::load(&node.state_dir, "pvc-orphan", &node.boot)
            .unwrap()
            .is_none(),
        "nothing recorded while the target is busy"
    );
    drop(held);
}

/// What the reconciler wrote to `<dev>/nvme-fabrics` (a plain file here: any connect attempt
/// leaves its option string in it).
fn fabrics_writes(d: &std::path::Path) -> String {
    std::fs::read_to_string(d.join("dev/nvme-fabrics")).unwrap_or_default()
}

/// Issue 15.2, replayed: a record from an earlier boot and an empty sysfs. The reconciler
/// writes nothing to /dev/nvme-fabrics (the same record of this boot is reconnected, so the
/// test can see a connect), and drops the record once the grace period is over.
#[tokio::test]
async fn a_record_from_an_earlier_boot_is_never_reconnected_and_is_dropped_after_the_grace() {
    let d = tempfile::tempdir().unwrap();
    let s = FakeSys::new();
    let (r, node, m) = reconciler(&s, d.path());
    std::fs::create_dir_all(d.path().join("dev")).unwrap();
    std::fs::write(d.path().join("dev/nvme-fabrics"), "").unwrap();
    let old = StageRecord {
        boot_id: Some(BootId::parse(EARLIER_BOOT).unwrap()),
        ..rec(&node, "pvc-a", A)
    };
    old.save(&node.state_dir).unwrap();
    let mut r = r;
    for _ in 0..3 {
        r.pass().await;
    }
    assert_eq!(
        fabrics_writes(d.path()),
        "",
        "connected a record of an earlier boot"
    );
    assert!(StageRecord::load(&node.state_dir, "pvc-a", &node.boot)
        .unwrap()
        .is_some());

    // Once the grace is over the record goes, with a log line and a metric.
    let mut r = r.with_stale_grace(Duration::ZERO);
    r.pass().await;
    assert!(StageRecord::load(&node.state_dir, "pvc-a", &node.boot)
        .unwrap()
        .is_none());
    assert_eq!(actions(&m, "drop_stale_record"), 1);
    assert_eq!(fabrics_writes(d.path()), "");

    // The control: the same record of this boot is reconnected.
    rec(&node, "pvc-a", A).save(&node.state_dir).unwrap();
    r.pass().await;
    let w = fabrics_writes(d.path());
    assert!(w.contains(&format!("nqn={A}")), "{w:?}");
    assert!(
        StageRecord::load(&node.state_dir, "pvc-a", &node.boot)
            .unwrap()
            .is_some(),
        "kept"
    );
}
