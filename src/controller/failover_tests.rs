//! Two controller replicas over one RDS (the simulator), a model of the API server's
//! VolumeAttachments and of the external-attacher's Lease, and the external-attacher of each
//! pod: the leader is killed in the middle of a live migration.
//!
//! The models, and the upstream behaviour each one stands for:
//! - [`Lease`] and [`candidate`]: client-go's `tools/leaderelection` (`tryAcquireOrRenew`), which
//!   csi-lib-utils runs for every sidecar: every `RetryPeriod` the holder renews (`renewTime`
//!   changes); a candidate that is not the holder takes the Lease only once it has seen the
//!   record unchanged for `LeaseDuration` by its own clock (`observedTime`), or when it has no
//!   holder. A killed pod renews nothing.
//! - [`Cluster`]: the VolumeAttachments of the driver as the reflector's store holds them, with
//!   the external-attacher's order of writes: the VolumeAttachment exists before
//!   ControllerPublish and gets `status.attached: true` after it succeeds; ControllerUnpublish
//!   comes before the object is deleted (finalizer removed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use csi_proto::v1 as csi;
use csi_proto::v1::controller_server::Controller as CsiController;
use csi_proto::v1::volume_capability::access_mode::Mode;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::kubernetes_tests::cap;
use super::{Assembly, LeaderElection, RunningController};
use crate::attachment::{AccessMode, MigrationTimeout, RestoreRecord};
use crate::k8s::{
    AttachmentCache, AttachmentView, CachedAttachments, LeaseRecord, RecordedEvents, StaticNodes,
};
use crate::observability::Metrics;
use crate::rds::RdsClient;
use crate::simulator::harness::{start_simulator, SimHandle, SimOptions};

struct Va {
    volume: String,
    node: String,
    attached: bool,
    created: Instant,
}

/// The driver's VolumeAttachments in the API server, seen through a watch with no lag.
#[derive(Default)]
pub(crate) struct Cluster {
    vas: Mutex<BTreeMap<String, Va>>,
    changes: Mutex<Option<tokio::sync::watch::Sender<u64>>>,
}

impl Cluster {
    fn changed(&self) {
        if let Some(tx) = self.changes.lock().as_ref() {
            tx.send_modify(|n| *n += 1);
        }
    }
    pub(crate) fn create(&self, volume: &str, node: &str) {
        self.create_at(volume, node, Instant::now());
    }
    /// A VolumeAttachment created at `created` (its creationTimestamp).
    pub(crate) fn create_at(&self, volume: &str, node: &str, created: Instant) {
        self.vas.lock().insert(
            format!("{volume}/{node}"),
            Va {
                volume: volume.into(),
                node: node.into(),
                attached: false,
                created,
            },
        );
        self.changed();
    }
    pub(crate) fn set_attached(&self, volume: &str, node: &str) {
        if let Some(va) = self.vas.lock().get_mut(&format!("{volume}/{node}")) {
            va.attached = true;
        }
        self.changed();
    }
    pub(crate) fn delete(&self, volume: &str, node: &str) {
        self.vas.lock().remove(&format!("{volume}/{node}"));
        self.changed();
    }
}

impl AttachmentCache for Cluster {
    fn view(&self) -> Option<AttachmentView> {
        let vas = self.vas.lock();
        Some(AttachmentView {
            attached: vas
                .values()
                .filter(|v| v.attached)
                .map(|v| RestoreRecord {
                    volume: v.volume.clone(),
                    mode: AccessMode::RwxBlock,
                    migration_timeout: MigrationTimeout::default(),
                    node: v.node.clone(),
                    attached_at: v.created,
                })
                .collect(),
            present: vas
                .values()
                .map(|v| (v.volume.clone(), v.node.clone()))
                .collect::<BTreeSet<_>>(),
            warnings: Vec::new(),
        })
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut tx = self.changes.lock();
        tx.get_or_insert_with(|| tokio::sync::watch::channel(0).0)
            .subscribe()
    }
}

/// One follower's watch of the Lease.
type LeaseWatcher = tokio::sync::mpsc::UnboundedSender<Result<Option<LeaseRecord>, String>>;

/// The attacher's Lease object, with a watch for every follower.
struct Lease {
    record: Mutex<Option<LeaseRecord>>,
    duration: Duration,
    renewals: Mutex<u64>,
    watchers: Mutex<Vec<LeaseWatcher>>,
}

impl Lease {
    fn new(duration: Duration) -> Arc<Self> {
        Arc::new(Lease {
            record: Mutex::new(None),
            duration,
            renewals: Mutex::new(0),
            watchers: Mutex::new(Vec::new()),
        })
    }

    fn write(&self, holder: &str) {
        let n = {
            let mut r = self.renewals.lock();
            *r += 1;
            *r
        };
        let rec = Some(LeaseRecord {
            holder: Some(holder.into()),
            duration: self.duration,
            renew_time: Some(n.to_string()),
        });
        *self.record.lock() = rec.clone();
        self.watchers
            .lock()
            .retain(|w| w.send(Ok(rec.clone())).is_ok());
    }

    fn events(&self) -> crate::k8s::LeaseEvents {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = tx.send(Ok(self.record.lock().clone()));
        self.watchers.lock().push(tx);
        Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    }
}

/// One sidecar's leader election (client-go's loop), until `stop`.
async fn candidate(lease: Arc<Lease>, me: &'static str, retry: Duration, stop: CancellationToken) {
    let mut seen: Option<LeaseRecord> = None;
    let mut observed_at = Instant::now();
    loop {
        let now = Instant::now();
        let current = lease.record.lock().clone();
        if current != seen {
            seen = current.clone();
            observed_at = now;
        }
        let holder = current.as_ref().and_then(|r| r.holder.clone());
        let expired = now >= observed_at + lease.duration;
        if holder.as_deref() == Some(me) || holder.is_none() || expired {
            lease.write(me);
            seen = lease.record.lock().clone();
            observed_at = now;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

/// One replica: its controller and its pod's attacher.
struct Replica {
    running: RunningController,
    events: RecordedEvents,
    metrics: Metrics,
    attacher_stop: CancellationToken,
}

async fn replica(
    pod: &'static str,
    rds: RdsClient,
    cluster: Arc<Cluster>,
    lease: &Arc<Lease>,
    retry: Duration,
) -> Replica {
    let metrics = Metrics::new("controller");
    let events = RecordedEvents::default();
    let running = Assembly {
        rds,
        config: super::kubernetes_tests::config(),
        grace_period: Duration::from_secs(30),
        events: Arc::new(events.clone()),
        nodes: Arc::new(StaticNodes(
            ["node-a", "node-b", "node-c"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )),
        restore_from: Arc::new(CachedAttachments(cluster.clone())),
        consult_on_miss: true,
        node_events: None,
        attachment_cache: Some(cluster),
        leader_election: Some(LeaderElection {
            identity: pod.into(),
            lease: lease.events(),
        }),
        state: None,
    }
    .start(&metrics)
    .await
    .unwrap();
    let attacher_stop = CancellationToken::new();
    tokio::spawn(candidate(
        Arc::clone(lease),
        pod,
        retry,
        attacher_stop.clone(),
    ));
    Replica {
        running,
        events,
        metrics,
        attacher_stop,
    }
}

/// The value of the metric line `series` (name and labels) in `r`'s exposition.
fn metric(r: &Replica, series: &str) -> i64 {
    r.metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series}"))
}

const ACTIVE: &str = "rds_csi_migration_active_migrations";
const TIMED_OUT: &str = "rds_csi_migration_migrations_total{result=\"timeout\"}";
const SUCCEEDED: &str = "rds_csi_migration_migrations_total{result=\"success\"}";

fn soon() -> Option<Duration> {
    Some(Duration::from_secs(20))
}

fn req<T>(t: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(t);
    r.set_timeout(soon().unwrap());
    r
}

/// The external-attacher attaching `node`: the VolumeAttachment first, then ControllerPublish
/// (retried while UNAVAILABLE, as its rate limiter does), then `attached: true`.
async fn attach(
    r: &Replica,
    cluster: &Cluster,
    v: &csi::Volume,
    node: &str,
) -> Result<(), tonic::Status> {
    cluster.create(&v.volume_id, node);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let res = r
            .running
            .controller
            .controller_publish_volume(req(csi::ControllerPublishVolumeRequest {
                volume_id: v.volume_id.clone(),
                node_id: node.into(),
                volume_capability: Some(cap(true, Mode::MultiNodeMultiWriter)),
                volume_context: v.volume_context.clone(),
                ..Default::default()
            }))
            .await;
        match res {
            Ok(_) => {
                cluster.set_attached(&v.volume_id, node);
                return Ok(());
            }
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => return Err(s),
        }
    }
}

/// The ControllerUnpublish of `v` from `node`, as the external-attacher sends it.
pub(super) fn unpublish_req(v: &csi::Volume, node: &str) -> csi::ControllerUnpublishVolumeRequest {
    csi::ControllerUnpublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        node_id: node.into(),
        ..Default::default()
    }
}

/// The external-attacher detaching `node`: ControllerUnpublish, then the object goes.
async fn detach(r: &Replica, cluster: &Cluster, v: &csi::Volume, node: &str) {
    r.running
        .controller
        .controller_unpublish_volume(req(unpublish_req(v, node)))
        .await
        .unwrap();
    cluster.delete(&v.volume_id, node);
}

async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn migration_deadline(r: &Replica, volume: &str) -> Instant {
    r.running
        .controller
        .attachments()
        .snapshot()
        .get(volume)
        .and_then(|st| st.migration().map(|m| m.deadline))
        .expect("a migration in the table")
}

/// The Lease settings: the deployment's (10 s / 2 s, `RDS_CSI_FAILOVER_PRODUCTION=1`) or
/// scaled down for the test suite.
fn lease_settings() -> (Duration, Duration) {
    if std::env::var_os("RDS_CSI_FAILOVER_PRODUCTION").is_some() {
        (Duration::from_secs(10), Duration::from_secs(2))
    } else {
        (Duration::from_millis(1500), Duration::from_millis(300))
    }
}

/// A simulator in a fresh directory (removed after the simulator stops).
async fn simulator() -> (tempfile::TempDir, SimHandle) {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(&dir.path().join("sim"), SimOptions::default()).await;
    (dir, sim)
}

/// Two replicas over one RDS and cluster sharing one Lease: pod-a started first and leads,
/// pod-b started once pod-a leads.
async fn two_replicas(
    sim: &SimHandle,
    cluster: &Arc<Cluster>,
    lease_duration: Duration,
    retry: Duration,
) -> (Replica, Replica) {
    let lease = Lease::new(lease_duration);
    let m = Metrics::new("controller");
    let rds = RdsClient::new(sim.client_config("/storage-pool/csi"), &m).unwrap();
    let a = replica("pod-a", rds.clone(), cluster.clone(), &lease, retry).await;
    wait_for("pod-a leads", Duration::from_secs(5), || {
        a.running.leadership.is_leader()
    })
    .await;
    let b = replica("pod-b", rds, cluster.clone(), &lease, retry).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_migration_the_new_leader_fences_keeps_the_deadline_and_completes_it() {
    let (lease_duration, retry) = lease_settings();
    let (_dir, sim) = simulator().await;
    let cluster = Arc::new(Cluster::default());
    let (a, b) = two_replicas(&sim, &cluster, lease_duration, retry).await;
    assert!(!b.running.leadership.is_leader());

    // Not the leader: attachments are refused, retryably, naming the leader.
    let vol = a
        .running
        .controller
        .create_volume(req(csi::CreateVolumeRequest {
            name: "pvc-vm".into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![cap(true, Mode::MultiNodeMultiWriter)],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let refused = b
        .running
        .controller
        .controller_publish_volume(req(csi::ControllerPublishVolumeRequest {
            volume_id: vol.volume_id.clone(),
            node_id: "node-a".into(),
            volume_capability: Some(cap(true, Mode::MultiNodeMultiWriter)),
            volume_context: vol.volume_context.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(refused.message().contains("pod-a"), "{}", refused.message());

    // The VM runs on node-a; its live migration to node-b starts on the leader.
    attach(&a, &cluster, &vol, "node-a").await.unwrap();
    attach(&a, &cluster, &vol, "node-b").await.unwrap();
    let deadline_a = migration_deadline(&a, "pvc-vm");
    assert!(a.events.reasons().contains(&"MigrationStarted".to_string()));
    // pod-b mirrors it (warm), without posting anything.
    wait_for("pod-b warm", Duration::from_secs(5), || {
        b.running.controller.attachments().published_nodes("pvc-vm") == ["node-a", "node-b"]
    })
    .await;
    assert!(b.events.all().is_empty(), "{:?}", b.events.all());

    // The leader's pod dies: its attacher renews nothing any more, its driver is gone.
    let last_renewal = Instant::now();
    a.attacher_stop.cancel();
    let killed = Instant::now();
    a.running.stop().await;
    wait_for("pod-b leads", lease_duration * 3, || {
        b.running.leadership.is_leader()
    })
    .await;
    let failover = killed.elapsed();
    println!(
        "failover: {:.2} s (Lease duration {:?}, retry period {:?})",
        failover.as_secs_f64(),
        lease_duration,
        retry
    );
    assert!(
        last_renewal.elapsed() >= lease_duration - retry,
        "pod-b led before pod-a's claim could have lapsed"
    );

    // The new leader reports the migration it mirrored as one in progress.
    assert_eq!(metric(&b, ACTIVE), 1);
    // The new leader refuses a third node...
    let e = attach(&b, &cluster, &vol, "node-c").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("node-a") && e.message().contains("node-b"),
        "{}",
        e.message()
    );
    cluster.delete("pvc-vm", "node-c");
    // ...keeps the migration's deadline (never later; earlier only by the time between the
    // VolumeAttachment's creation and the publish)...
    let deadline_b = migration_deadline(&b, "pvc-vm");
    assert!(deadline_b <= deadline_a, "the deadline moved later");
    assert!(deadline_a - deadline_b < Duration::from_secs(1));
    // ...and completes the migration when the source detaches.
    detach(&b, &cluster, &vol, "node-a").await;
    assert_eq!(
        b.running.controller.attachments().published_nodes("pvc-vm"),
        ["node-b"]
    );
    let completed: Vec<_> = b
        .events
        .all()
        .into_iter()
        .filter(|(_, e)| e.reason.as_str() == "MigrationCompleted")
        .collect();
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert!(completed[0]
        .1
        .message
        .contains("source: node-a → target: node-b"));
    assert_eq!(
        (metric(&b, ACTIVE), metric(&b, SUCCEEDED)),
        (0, 1),
        "counted once, on the leader"
    );
    b.attacher_stop.cancel();
}

/// Both replicas sweep their tables at a migration's deadline, but only the leader reports
/// it: one MigrationFailed event, one `timeout` count, and the replica that does not lead
/// counts nothing (before, it counted the timeout too and took its gauge below zero).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_timeout_is_reported_by_the_leader_only() {
    let (lease_duration, retry) = lease_settings();
    let (_dir, sim) = simulator().await;
    let cluster = Arc::new(Cluster::default());
    // A live migration whose window (the default 300 s) ends in 6 s: after both replicas
    // have started and one leads.
    let deadline = Instant::now() + Duration::from_secs(6);
    let window = MigrationTimeout::default().as_duration();
    cluster.create_at("pvc-vm", "node-a", deadline - window * 2);
    cluster.set_attached("pvc-vm", "node-a");
    cluster.create_at("pvc-vm", "node-b", deadline - window);
    cluster.set_attached("pvc-vm", "node-b");
    let (a, b) = two_replicas(&sim, &cluster, lease_duration, retry).await;
    assert!(Instant::now() < deadline, "the set-up took too long");
    assert_eq!((metric(&a, ACTIVE), metric(&b, ACTIVE)), (1, 0));

    let timed_out = |r: &Replica| {
        r.running
            .controller
            .attachments()
            .migration_timed_out("pvc-vm")
    };
    wait_for("both tables time it out", Duration::from_secs(10), || {
        timed_out(&a) && timed_out(&b)
    })
    .await;
    wait_for("the leader's event", Duration::from_secs(5), || {
        a.events.reasons().contains(&"MigrationFailed".to_string())
    })
    .await;
    assert_eq!((metric(&a, TIMED_OUT), metric(&a, ACTIVE)), (1, 0));
    assert_eq!(
        (metric(&b, TIMED_OUT), metric(&b, ACTIVE)),
        (0, 0),
        "the replica that does not lead counted the timeout"
    );
    assert!(b.events.all().is_empty(), "{:?}", b.events.all());
    a.attacher_stop.cancel();
    b.attacher_stop.cancel();
}
