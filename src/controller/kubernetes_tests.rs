//! The controller's use of Kubernetes, with fakes of the traits and a real controller over the
//! RDS simulator: ControllerPublish consulting VolumeAttachments for a volume it does not know
//! (a leader change), and the node watch clearing a deleted node (never a NotReady one).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use csi_proto::v1 as csi;
use csi_proto::v1::volume_capability::access_mode::Mode;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::node_watch::{run_node_watch, GoneNodes};
use super::{Assembly, Controller, ControllerConfig, RunningController};
use crate::attachment::{AccessMode, MigrationTimeout, RestoreRecord};
use crate::error::Error;
use crate::k8s::{
    AttachmentSource, EventSink, NoAttachments, NodeDirectory, NodeEvent, NodeEvents,
    RecordedEvents, StaticNodes,
};
use crate::observability::Metrics;
use crate::rds::RdsClient;
use crate::simulator::harness::{start_simulator, SimHandle, SimOptions};

/// "Kubernetes" as the previous leader left it: VolumeAttachments per volume.
#[derive(Default)]
struct FakeKubernetes {
    records: Mutex<Vec<RestoreRecord>>,
    fail: Mutex<bool>,
    lookups: AtomicUsize,
}

#[tonic::async_trait]
impl AttachmentSource for FakeKubernetes {
    async fn attachments(&self) -> Result<Vec<RestoreRecord>, Error> {
        Ok(Vec::new()) // this replica started before the other one attached anything
    }
    async fn attachments_for_volume(
        &self,
        volume_id: &str,
    ) -> Result<Option<Vec<RestoreRecord>>, Error> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if *self.fail.lock() {
            return Err(Error::Unavailable(
                "cannot list VolumeAttachments: connection refused".into(),
            ));
        }
        Ok(Some(
            self.records
                .lock()
                .iter()
                .filter(|r| r.volume == volume_id)
                .cloned()
                .collect(),
        ))
    }
}

pub(crate) struct Rig {
    pub(crate) ctl: Arc<Controller>,
    pub(crate) events: RecordedEvents,
    _running: RunningController,
    _sim: SimHandle,
    _dir: tempfile::TempDir,
}

/// A controller over the simulator, assembled as `rds-csi controller` assembles it; with a
/// source, ControllerPublish consults it for volumes the table does not know.
pub(crate) async fn rig(source: Option<Arc<dyn AttachmentSource>>) -> Rig {
    rig_with(source, None, None, Duration::from_secs(30)).await
}

/// The controller configuration of the test rigs: MikroTik's NQN prefix, targets on
/// 127.0.0.1, no topology.
pub(super) fn config() -> ControllerConfig {
    ControllerConfig {
        nqn_prefix: "nqn.2000-02.com.mikrotik:".into(),
        default_nvme_address: Some("127.0.0.1".into()),
        topology: None,
    }
}

/// [`rig`], with `sink` instead of recording events in memory, and a Node watch fed by
/// `node_events` (nodes other than node-a, node-b and node-c do not exist).
pub(crate) async fn rig_with(
    source: Option<Arc<dyn AttachmentSource>>,
    sink: Option<Arc<dyn EventSink>>,
    node_events: Option<NodeEvents>,
    grace_period: Duration,
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(&dir.path().join("sim"), SimOptions::default()).await;
    let metrics = Metrics::new("controller");
    let rds = RdsClient::new(sim.client_config("/storage-pool/csi"), &metrics).unwrap();
    let events = RecordedEvents::default();
    let running = Assembly {
        rds,
        config: config(),
        grace_period,
        events: sink.unwrap_or_else(|| Arc::new(events.clone())),
        nodes: Arc::new(StaticNodes(
            ["node-a", "node-b", "node-c"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )),
        consult_on_miss: source.is_some(),
        restore_from: source.unwrap_or_else(|| Arc::new(NoAttachments)),
        node_events,
        attachment_cache: None,
        leader_election: None,
        state: None,
    }
    .start(&metrics)
    .await
    .unwrap();
    Rig {
        ctl: Arc::clone(&running.controller),
        events,
        _running: running,
        _sim: sim,
        _dir: dir,
    }
}

pub(crate) fn cap(block: bool, mode: Mode) -> csi::VolumeCapability {
    use csi::volume_capability::AccessType;
    csi::VolumeCapability {
        access_type: Some(if block {
            AccessType::Block(csi::volume_capability::BlockVolume {})
        } else {
            AccessType::Mount(csi::volume_capability::MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            })
        }),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(20)
}

/// A request through the CSI service, with the test's deadline.
fn request<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(deadline() - tokio::time::Instant::now());
    r
}

async fn create(r: &Rig, name: &str, c: &csi::VolumeCapability) -> csi::Volume {
    use csi_proto::v1::controller_server::Controller as _;
    r.ctl
        .create_volume(request(csi::CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![c.clone()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

async fn publish(
    r: &Rig,
    v: &csi::Volume,
    node: &str,
    c: &csi::VolumeCapability,
) -> Result<(), Error> {
    use csi_proto::v1::controller_server::Controller as _;
    r.ctl
        .controller_publish_volume(request(csi::ControllerPublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            node_id: node.into(),
            volume_capability: Some(c.clone()),
            volume_context: v.volume_context.clone(),
            ..Default::default()
        }))
        .await
        .map(|_| ())
        .map_err(|s| Error::from_code(s.code(), s.message().to_owned()))
}

pub(crate) fn record(volume: &str, node: &str, mode: AccessMode, age: Duration) -> RestoreRecord {
    RestoreRecord {
        volume: volume.into(),
        mode,
        migration_timeout: MigrationTimeout::default(),
        node: node.into(),
        attached_at: Instant::now() - age,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_of_a_volume_attached_only_in_kubernetes_to_a_second_node_is_refused() {
    let k8s = Arc::new(FakeKubernetes::default());
    let r = rig(Some(k8s.clone())).await;
    let rwo = cap(false, Mode::SingleNodeWriter);
    let v = create(&r, "pvc-leader", &rwo).await;
    // The previous leader attached it to node-a; this replica's table has never seen it.
    k8s.records.lock().push(record(
        "pvc-leader",
        "node-a",
        AccessMode::Rwo,
        Duration::from_secs(60),
    ));
    assert!(r.ctl.attachments().is_empty());

    let e = publish(&r, &v, "node-b", &rwo).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("node-a") && msg.contains("pvc-leader"),
        "{msg}"
    );
    assert_eq!(
        r.ctl.attachments().published_nodes("pvc-leader"),
        ["node-a"]
    );
    assert!(r
        .events
        .reasons()
        .contains(&"AttachmentConflict".to_string()));
    assert_eq!(k8s.lookups.load(Ordering::SeqCst), 1);

    // node-a itself (the attacher retrying after the leader change) is idempotent, and the
    // now-known volume is not looked up again.
    publish(&r, &v, "node-a", &rwo).await.unwrap();
    assert_eq!(k8s.lookups.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rwx_block_attached_elsewhere_in_kubernetes_makes_the_publish_a_migration_and_a_third_node_is_refused(
) {
    let k8s = Arc::new(FakeKubernetes::default());
    let r = rig(Some(k8s.clone())).await;
    let rwx = cap(true, Mode::MultiNodeMultiWriter);
    let v = create(&r, "pvc-vm", &rwx).await;
    k8s.records.lock().push(record(
        "pvc-vm",
        "node-a",
        AccessMode::RwxBlock,
        Duration::from_secs(600),
    ));
    publish(&r, &v, "node-b", &rwx).await.unwrap();
    assert_eq!(
        r.ctl.attachments().published_nodes("pvc-vm"),
        ["node-a", "node-b"],
        "node-a is the migration source"
    );
    assert!(r.events.reasons().contains(&"MigrationStarted".to_string()));
    let e = publish(&r, &v, "node-c", &rwx).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lookup_fails_the_publish_instead_of_guessing() {
    let k8s = Arc::new(FakeKubernetes::default());
    *k8s.fail.lock() = true;
    let r = rig(Some(k8s.clone())).await;
    let rwo = cap(false, Mode::SingleNodeWriter);
    let v = create(&r, "pvc-blind", &rwo).await;
    let e = publish(&r, &v, "node-a", &rwo).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    assert!(
        e.to_string().contains("pvc-blind") && e.to_string().contains("VolumeAttachments"),
        "{e}"
    );
    assert!(r.ctl.attachments().is_empty(), "nothing recorded");
    // Kubernetes is back: the retry succeeds.
    *k8s.fail.lock() = false;
    publish(&r, &v, "node-a", &rwo).await.unwrap();
}

async fn delete(r: &Rig, v: &csi::Volume) -> Result<(), Error> {
    use csi_proto::v1::controller_server::Controller as _;
    r.ctl
        .delete_volume(request(csi::DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        }))
        .await
        .map(|_| ())
        .map_err(|s| Error::from_code(s.code(), s.message().to_owned()))
}

/// A replica that does not lead serves DeleteVolume (the external-provisioner elects its own
/// leader) while its table, a background mirror of the VolumeAttachment cache, has not yet
/// seen a new attachment: the delete is judged against Kubernetes, never the lagging table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_refused_while_kubernetes_shows_the_volume_attached_though_the_table_lags() {
    let k8s = Arc::new(FakeKubernetes::default());
    let r = rig(Some(k8s.clone())).await;
    let rwo = cap(false, Mode::SingleNodeWriter);
    let v = create(&r, "pvc-lagging", &rwo).await;
    k8s.records.lock().push(record(
        "pvc-lagging",
        "node-a",
        AccessMode::Rwo,
        Duration::from_secs(5),
    ));
    assert!(
        r.ctl.attachments().is_empty(),
        "the table has not caught up"
    );

    let e = delete(&r, &v).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    assert!(
        e.to_string().contains("pvc-lagging") && e.to_string().contains("node-a"),
        "{e}"
    );

    // Kubernetes cannot be asked: UNAVAILABLE (retried), never a delete on a guess.
    let r2 = rig(Some(k8s.clone())).await;
    let v2 = create(&r2, "pvc-lagging", &rwo).await;
    *k8s.fail.lock() = true;
    let e = delete(&r2, &v2).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");

    // Detached in Kubernetes and unpublished here: the delete goes ahead.
    *k8s.fail.lock() = false;
    k8s.records.lock().clear();
    unpublish(&r, &v, "node-a").await;
    delete(&r, &v).await.unwrap();
    delete(&r2, &v2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_source_publish_uses_the_table_alone() {
    let r = rig(None).await;
    let rwo = cap(false, Mode::SingleNodeWriter);
    let v = create(&r, "pvc-plain", &rwo).await;
    publish(&r, &v, "node-b", &rwo).await.unwrap();
    assert_eq!(r.ctl.attachments().published_nodes("pvc-plain"), ["node-b"]);
}

/// Nodes that exist, changeable while the watch runs.
#[derive(Default)]
struct Nodes(Mutex<BTreeSet<String>>);

#[tonic::async_trait]
impl NodeDirectory for Nodes {
    async fn node_exists(&self, node_id: &str) -> Result<bool, Error> {
        Ok(self.0.lock().contains(node_id))
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_watch_clears_deleted_nodes_after_the_grace_period_and_never_updated_ones() {
    let r = rig(None).await;
    let age = Duration::from_secs(10);
    let _ = r.ctl.attachments().restore(vec![
        record("vol-a", "node-a", AccessMode::Rwo, age),
        record("vol-b", "node-b", AccessMode::Rwo, age),
        record("vol-z", "node-z", AccessMode::Rwo, age),
        record("vol-r", "node-r", AccessMode::Rwo, age),
    ]);
    let nodes = Arc::new(Nodes::default());
    nodes
        .0
        .lock()
        .extend(["node-a", "node-b", "node-r"].iter().map(|s| s.to_string()));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<NodeEvent, String>>();
    let stop = CancellationToken::new();
    let grace = Duration::from_millis(200);
    let task = tokio::spawn(run_node_watch(
        Arc::clone(&r.ctl),
        Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)),
        nodes.clone(),
        Arc::new(GoneNodes::default()),
        grace,
        stop.clone(),
    ));
    let send = |e: NodeEvent| tx.send(Ok(e)).unwrap();
    // The first list: node-z (restored from a VolumeAttachment) no longer exists.
    send(NodeEvent::ListStart);
    for n in ["node-a", "node-b", "node-r"] {
        send(NodeEvent::Listed(n.into()));
    }
    let t0 = Instant::now();
    send(NodeEvent::ListDone);
    // An update (NotReady, cordoned, being drained) is never a deletion.
    send(NodeEvent::Applied("node-a".into()));
    tx.send(Err("watch stream closed".into())).unwrap();
    // node-b is deleted; node-r is deleted and re-registers within the grace period.
    nodes.0.lock().remove("node-b");
    send(NodeEvent::Deleted("node-b".into()));
    send(NodeEvent::Deleted("node-r".into()));

    let table = r.ctl.attachments();
    let cleared = || -> Vec<String> {
        r.events
            .all()
            .into_iter()
            .filter(|(_, e)| e.reason.as_str() == "StaleAttachmentCleared")
            .map(|(v, _)| v)
            .collect()
    };
    // The event is recorded just after the table changes: wait for both (a loaded machine
    // can run this check in between).
    wait_for("node-z and node-b cleared", || {
        table.published_nodes("vol-z").is_empty()
            && table.published_nodes("vol-b").is_empty()
            && cleared().len() >= 2
    })
    .await;
    assert!(t0.elapsed() >= grace, "cleared before the grace period");
    let cleared = cleared();
    assert_eq!(
        cleared.iter().cloned().collect::<BTreeSet<_>>(),
        ["vol-b", "vol-z"].iter().map(|s| s.to_string()).collect()
    );
    // Give node-r's recheck time to run too: it exists, so it keeps its attachment.
    tokio::time::sleep(grace * 2).await;
    assert_eq!(table.published_nodes("vol-a"), ["node-a"]);
    assert_eq!(table.published_nodes("vol-r"), ["node-r"]);
    stop.cancel();
    task.await.unwrap();
}

async fn unpublish(r: &Rig, v: &csi::Volume, node: &str) {
    use csi_proto::v1::controller_server::Controller as _;
    r.ctl
        .controller_unpublish_volume(request(super::failover_tests::unpublish_req(v, node)))
        .await
        .unwrap();
}

/// The migration story an operator runs, with events posted through the kube-rs adapter to
/// a model of the events.k8s.io API: `kubectl describe pvc` shows every attach, every
/// migration and its direction; only a truly identical repeat joins a series.
#[cfg(feature = "kubernetes")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_pvc_shows_every_attach_and_both_migration_directions() {
    use crate::k8s::fake_api::{not_found, pv, Answer, EventsApi, FakeApi, DRIVER};
    use crate::k8s::kube::KubeEvents;
    let events_api = EventsApi::default();
    let api = FakeApi::with_events(&events_api, |s| match s.path.as_str() {
        "/api/v1/persistentvolumes/pvc-vm" => {
            Answer::Json(200, pv("pvc-vm", "pvc-vm", &["ReadWriteMany"], "Block"))
        }
        p => not_found("x", p),
    })
    .await;
    let metrics = Metrics::new("controller");
    let sink = Arc::new(KubeEvents::new(api.client(), DRIVER, &metrics, None));
    let r = rig_with(None, Some(sink.clone()), None, Duration::from_secs(30)).await;
    let rwx = cap(true, Mode::MultiNodeMultiWriter);
    let v = create(&r, "pvc-vm", &rwx).await;
    publish(&r, &v, "node-a", &rwx).await.unwrap();
    publish(&r, &v, "node-b", &rwx).await.unwrap(); // a → b
    unpublish(&r, &v, "node-a").await;
    publish(&r, &v, "node-a", &rwx).await.unwrap(); // b → a
    unpublish(&r, &v, "node-b").await;
    assert_eq!(sink.failures(), 0);

    let described = events_api.described("PersistentVolumeClaim", "vm-disk");
    let find = |reason: &str, note_part: &str| {
        described
            .iter()
            .filter(|(r, n, _, _)| r == reason && n.contains(note_part))
            .collect::<Vec<_>>()
    };
    // Attached to node-a, then to node-b: two events, each with its own node.
    let attached_a = find("VolumeAttached", "node: node-a");
    let attached_b = find("VolumeAttached", "node: node-b");
    assert_eq!(attached_b.len(), 1, "{described:#?}");
    assert_eq!(attached_b[0].3, "node-b", "the Node is the related object");
    // node-a attached twice with exactly the same note: one event, a series of 2.
    assert_eq!(attached_a.len(), 1, "{described:#?}");
    assert_eq!(attached_a[0].2, 2, "{described:#?}");
    // Both migrations, each with its direction.
    assert_eq!(
        find("MigrationStarted", "source: node-a, target: node-b").len(),
        1,
        "{described:#?}"
    );
    assert_eq!(
        find("MigrationStarted", "source: node-b, target: node-a").len(),
        1,
        "{described:#?}"
    );
    assert_eq!(
        find("MigrationCompleted", "source: node-a → target: node-b").len(),
        1
    );
    assert_eq!(
        find("MigrationCompleted", "source: node-b → target: node-a").len(),
        1
    );
    assert_eq!(find("VolumeDetached", "node: node-a").len(), 1);
    assert_eq!(find("VolumeDetached", "node: node-b").len(), 1);
    assert!(
        described
            .iter()
            .all(|(_, n, c, _)| *c == 1 || n == "node: node-a"),
        "nothing else was merged: {described:#?}"
    );
}

/// The Node-deletion sequence: node-z is deleted while it holds an RWO and an RWX block volume;
/// its attachments are cleared (StaleAttachmentCleared) while its VolumeAttachments linger in
/// Kubernetes until the force-detach. The next publishes are judged without the dead node: no
/// "attached to node-z" refusal, no migration window from node-z.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_stays_deleted_while_its_volume_attachments_linger() {
    let k8s = Arc::new(FakeKubernetes::default());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<NodeEvent, String>>();
    let r = rig_with(
        Some(k8s.clone()),
        None,
        Some(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        )),
        Duration::from_millis(200),
    )
    .await;
    let (rwo, rwx) = (
        cap(false, Mode::SingleNodeWriter),
        cap(true, Mode::MultiNodeMultiWriter),
    );
    let (v_rwo, v_rwx) = (
        create(&r, "pvc-db", &rwo).await,
        create(&r, "pvc-vm", &rwx).await,
    );
    let age = Duration::from_secs(60);
    k8s.records.lock().extend([
        record("pvc-db", "node-z", AccessMode::Rwo, age),
        record("pvc-vm", "node-z", AccessMode::RwxBlock, age),
    ]);
    // The controller learns of them (a publish elsewhere is refused while node-z exists).
    let e = publish(&r, &v_rwo, "node-a", &rwo).await.unwrap_err();
    assert!(e.to_string().contains("node-z"), "{e}");
    publish(&r, &v_rwx, "node-b", &rwx).await.unwrap(); // a migration from node-z
    publish(&r, &v_rwx, "node-b", &rwx).await.unwrap();
    // node-z is deleted: after the grace period, rechecked (it does not exist in this rig's
    // node directory), its attachments are cleared.
    tx.send(Ok(NodeEvent::Deleted("node-z".into()))).unwrap();
    let table = r.ctl.attachments();
    wait_for("node-z cleared", || {
        table.published_nodes("pvc-db").is_empty() && table.published_nodes("pvc-vm") == ["node-b"]
    })
    .await;
    assert!(r
        .events
        .reasons()
        .contains(&"StaleAttachmentCleared".to_string()));
    // The VolumeAttachments of node-z are still there; pvc-db is unknown to the table again.
    assert_eq!(k8s.records.lock().len(), 2);
    publish(&r, &v_rwo, "node-a", &rwo).await.unwrap();
    assert_eq!(table.published_nodes("pvc-db"), ["node-a"]);
    // pvc-vm: node-b holds it alone; a second node is a fresh migration from node-b, never a
    // window from node-z (the lingering record is not restored).
    publish(&r, &v_rwx, "node-c", &rwx).await.unwrap();
    assert_eq!(table.published_nodes("pvc-vm"), ["node-b", "node-c"]);
    // node-z registers again: its VolumeAttachments count again.
    tx.send(Ok(NodeEvent::Applied("node-z".into()))).unwrap();
    let v_other = create(&r, "pvc-other", &rwo).await;
    k8s.records
        .lock()
        .push(record("pvc-other", "node-z", AccessMode::Rwo, age));
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match publish(&r, &v_other, "node-a", &rwo).await {
            Err(e) if e.to_string().contains("node-z") => break,
            other => {
                assert!(
                    Instant::now() < until,
                    "node-z never counted again: {other:?}"
                );
                unpublish(&r, &v_other, "node-a").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
