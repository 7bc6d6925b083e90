//! One way to put a controller together, used by `rds-csi controller`, the demo and the tests,
//! so that what they run is the same thing: the attachment table and its metrics, the in-flight
//! guard, the table rebuilt before anything is served, the deadline sweeper, and (with
//! Kubernetes) the Node watch.

use std::sync::Arc;
use std::time::Duration;

use csi_proto::v1::controller_server::ControllerServer;
use csi_proto::v1::identity_server::IdentityServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use super::attachment_sync::AttachmentSync;
use super::leader::{run_leadership, Leadership, Persistence};
use super::node_watch::{run_node_watch, GoneNodes, WithoutGoneNodes};
use super::{run_sweeper, Controller, ControllerConfig, Fencing};
use crate::attachment::persist::{self, AttachmentStore};
use crate::attachment::{AttachmentMetrics, AttachmentTable, RestoreRecord, TableConfig};
use crate::csi::identity::{HealthCheck, IdentityService};
use crate::csi::inflight::InFlight;
use crate::error::Error;
use crate::k8s::{
    AttachmentCache, AttachmentSource, EventSink, FixedAttachments, LeaseEvents, NodeDirectory,
    NodeEvents,
};
use crate::observability::rpc::Traced;
use crate::observability::Metrics;
use crate::rds::RdsClient;

/// The parts a controller is built from. Kubernetes is reached only through the three seams
/// (`events`, `nodes`, `restore_from`) and the node events.
pub struct Assembly {
    pub rds: RdsClient,
    pub config: ControllerConfig,
    /// How long after a full detach a different node's attach counts as a handoff
    /// (`--attachment-grace-period`); also the wait before a deleted Node's attachments are
    /// cleared.
    pub grace_period: Duration,
    pub events: Arc<dyn EventSink>,
    pub nodes: Arc<dyn NodeDirectory>,
    /// What the attachment table is rebuilt from before the controller serves.
    pub restore_from: Arc<dyn AttachmentSource>,
    /// Whether ControllerPublish consults `restore_from` for a volume the table has no record
    /// of (with Kubernetes: another replica may have attached it).
    pub consult_on_miss: bool,
    /// Node events (with Kubernetes): the attachments of deleted Nodes are cleared.
    pub node_events: Option<NodeEvents>,
    /// The VolumeAttachment cache (with Kubernetes): the table is reconciled with it, and
    /// `restore_from` should read from it ([`crate::k8s::CachedAttachments`]).
    pub attachment_cache: Option<Arc<dyn AttachmentCache>>,
    /// Two replicas: follow the external-attacher's Lease (needs `attachment_cache`).
    pub leader_election: Option<LeaderElection>,
    /// Without Kubernetes: the table's durable store, restored at start (instead of
    /// `restore_from`) and written after every Publish/Unpublish.
    pub state: Option<Arc<dyn AttachmentStore>>,
}

/// Leader election by following the external-attacher's Lease (see [`super::leader`]).
pub struct LeaderElection {
    /// This pod's name: the identity the sidecars hold the Lease under.
    pub identity: String,
    /// Readings of the attacher's Lease.
    pub lease: LeaseEvents,
}

/// How long start-up waits for the VolumeAttachment watch's first list.
pub const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// A started controller: the CSI service and the background tasks it owns (the deadline
/// sweeper, the Node watch). Dropping it stops the tasks; [`RunningController::stop`] also
/// waits for them.
pub struct RunningController {
    pub controller: Arc<Controller>,
    pub leadership: Arc<Leadership>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Assembly {
    /// Builds the controller, rebuilds its attachment table from `restore_from` (an error
    /// here means fencing would start blind: the caller must not serve), and starts its
    /// background tasks. Metrics register in `metrics`.
    pub async fn start(self, metrics: &Metrics) -> Result<RunningController, Error> {
        if self.leader_election.is_some() && self.attachment_cache.is_none() {
            return Err(Error::Internal(
                "leader election needs the VolumeAttachment cache (a replica must be warm before \
                 it leads)"
                    .into(),
            ));
        }
        let leadership = match &self.leader_election {
            Some(le) => Leadership::following(&le.identity, metrics),
            None => Leadership::always(metrics),
        };
        if let Some(cache) = &self.attachment_cache {
            wait_for_first_list(cache.as_ref()).await?;
        }
        let fencing = Fencing {
            table: AttachmentTable::new(TableConfig {
                grace_period: self.grace_period,
                ..TableConfig::default()
            }),
            metrics: AttachmentMetrics::new(metrics),
            leadership: Arc::clone(&leadership),
            events: self.events,
            nodes: Arc::clone(&self.nodes),
            wake_sweeper: tokio::sync::Notify::new(),
            persistence: self.state.clone().map(Persistence::new),
        };
        let inflight = {
            let c = metrics.inflight_rejections.clone();
            InFlight::new().with_reject_hook(move || c.inc())
        };
        // Deleted Nodes' attachments, once cleared, are never restored again.
        let gone = Arc::new(GoneNodes::default());
        let inner = match &self.state {
            Some(store) => Arc::new(FixedAttachments(saved_attachments(store.as_ref())?)),
            None => self.restore_from,
        };
        let restore_from: Arc<dyn AttachmentSource> = Arc::new(WithoutGoneNodes {
            inner,
            gone: Arc::clone(&gone),
        });
        let mut controller = Controller::new(self.rds, self.config, inflight, fencing);
        if self.consult_on_miss {
            controller = controller.with_attachment_source(Arc::clone(&restore_from));
        }
        let controller = Arc::new(controller);
        controller.restore(restore_from.as_ref()).await?;
        let stop = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(run_sweeper(
            Arc::clone(&controller),
            stop.clone(),
        ))];
        if let Some(events) = self.node_events {
            tasks.push(tokio::spawn(run_node_watch(
                Arc::clone(&controller),
                events,
                self.nodes,
                Arc::clone(&gone),
                self.grace_period,
                stop.clone(),
            )));
        }
        if let Some(cache) = self.attachment_cache {
            let sync = Arc::new(AttachmentSync::new(
                Arc::clone(&controller),
                cache,
                gone,
                metrics,
            ));
            tasks.push(tokio::spawn(
                Arc::clone(&sync).run(Arc::clone(&leadership), stop.clone()),
            ));
            if let Some(le) = self.leader_election {
                tasks.push(tokio::spawn(run_leadership(
                    Arc::clone(&leadership),
                    le.lease,
                    sync,
                    stop.clone(),
                )));
            }
        }
        Ok(RunningController {
            controller,
            leadership,
            stop,
            tasks,
        })
    }
}

impl RunningController {
    /// The CSI Controller service, to add to a tonic router: every RPC traced, and
    /// ControllerPublish/Unpublish answered only while this replica leads.
    pub fn service(&self) -> ControllerServer<Traced<Controller>> {
        ControllerServer::new(Traced::controller(Arc::clone(&self.controller)))
    }

    /// The controller's gRPC routes: the Identity service (named `driver_name`, its Probe
    /// answered by `health`) and [`Self::service`].
    pub fn routes(&self, driver_name: String, health: Arc<dyn HealthCheck>) -> Routes {
        Routes::new(IdentityServer::new(IdentityService::new(
            driver_name,
            true,
            health,
        )))
        .add_service(self.service())
    }

    /// Stops the background tasks and waits for them.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

/// The attachments of the state file, or why the controller must not start.
fn saved_attachments(store: &dyn AttachmentStore) -> Result<Vec<RestoreRecord>, Error> {
    let refuse = |why: String| {
        Error::FailedPrecondition(format!(
            "the attachment state file {}: {why}. The controller does not start with an \
             empty table, which would fence nothing: restore the file from a backup, or move it \
             aside only if no volume is attached anywhere",
            store.describe()
        ))
    };
    let Some(doc) = store.load().map_err(&refuse)? else {
        tracing::info!(
            file = store.describe(),
            "no attachment state file yet; starting empty"
        );
        return Ok(Vec::new());
    };
    let records =
        persist::records(&doc, &persist::ClockPair::now()).map_err(|e| refuse(e.to_string()))?;
    tracing::info!(
        file = store.describe(),
        attachments = records.len(),
        "attachment table restored from the state file"
    );
    Ok(records)
}

/// Waits until the cache has completed its first list (the table is rebuilt from it).
async fn wait_for_first_list(cache: &dyn AttachmentCache) -> Result<(), Error> {
    let mut changes = cache.changes();
    let waited = tokio::time::timeout(CACHE_SYNC_TIMEOUT, async {
        while cache.view().is_none() {
            if changes.changed().await.is_err() {
                return false;
            }
        }
        true
    })
    .await;
    match waited {
        Ok(true) => Ok(()),
        _ => Err(Error::Unavailable(format!(
            "the VolumeAttachment and PersistentVolume watches did not complete their first list \
             within {}s; check that the API server is reachable and the controller's RBAC \
             (volumeattachments, persistentvolumes: list, watch)",
            CACHE_SYNC_TIMEOUT.as_secs()
        ))),
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
