//! Everything the controller needs from Kubernetes, behind traits, so the rest of the driver
//! is testable without an API server. `--no-kubernetes` uses the in-process implementations
//! here; the kube-rs adapters implement the same traits against a real cluster.

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::attachment::{Event, EventType, RestoreRecord};
use crate::error::Error;

#[cfg(feature = "kubernetes")]
pub mod cache;
#[cfg(feature = "kubernetes")]
pub mod convert;
#[cfg(all(test, feature = "kubernetes"))]
pub(crate) mod fake_api;
#[cfg(feature = "kubernetes")]
pub mod kube;
#[cfg(feature = "kubernetes")]
pub mod lease;
#[cfg(feature = "kubernetes")]
pub mod recorder;

/// What a watch of Node objects saw, reduced to what deciding "this node is gone" needs. Only
/// metadata is watched, so a NotReady node (a status condition) cannot even be seen, let alone
/// cleared. The kube-rs adapter yields these from a watcher; the controller decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// Added or modified (including a node with `deletionTimestamp` set that still exists:
    /// it is not gone until the API server says it was deleted).
    Applied(String),
    /// The API server reports the Node object deleted.
    Deleted(String),
    /// A (re)list starts.
    ListStart,
    /// One node of the (re)list.
    Listed(String),
    /// The (re)list is complete.
    ListDone,
}

/// A stream of node events; an `Err` is a watch failure (the watcher retries with backoff and
/// relists, so the stream goes on).
pub type NodeEvents =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<NodeEvent, String>> + Send>>;

/// What the driver's VolumeAttachments say now, from a watch-backed cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachmentView {
    /// The attached ones (`status.attached: true`), as restore records.
    pub attached: Vec<RestoreRecord>,
    /// (volume, node) of every VolumeAttachment of the driver that exists, attached or not
    /// (being attached, being detached): a table entry with none is one Kubernetes has detached.
    pub present: BTreeSet<(String, String)>,
    /// VolumeAttachments of the driver that cannot be fenced as they should (the PV they name
    /// is missing or not this driver's) or are fenced with a fallback (an invalid migration
    /// timeout): what the operator should fix.
    pub warnings: Vec<AttachmentWarning>,
}

/// One [`AttachmentView::warnings`] entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentWarning {
    /// The volume, when the VolumeAttachment's PV names one of this driver.
    pub volume: Option<String>,
    /// What is wrong and the next step, naming the objects.
    pub message: String,
}

/// A watch-backed cache of the driver's VolumeAttachments (and the PVs they name), kept by a
/// watch that resumes from its last resourceVersion and relists when the API server says the
/// version is gone (`410 Gone`).
pub trait AttachmentCache: Send + Sync + 'static {
    /// `None` until the first complete list.
    fn view(&self) -> Option<AttachmentView>;
    /// A counter that moves whenever the view may have changed.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// The cache as an [`AttachmentSource`]: restores and per-volume lookups come from memory, never
/// from a list of the cluster's VolumeAttachments. Not synced yet is UNAVAILABLE (retried).
/// The view's warnings are logged with the restore they concern (all of them at start, a
/// volume's own at its lookup).
pub struct CachedAttachments(pub Arc<dyn AttachmentCache>);

impl CachedAttachments {
    fn view(&self) -> Result<AttachmentView, Error> {
        self.0.view().ok_or_else(|| {
            Error::Unavailable(
                "the VolumeAttachment watch has not completed its first list yet; retry shortly \
                 (check the controller's RBAC: volumeattachments and persistentvolumes list, watch)"
                    .into(),
            )
        })
    }
}

fn log_warnings<'a>(warnings: impl Iterator<Item = &'a AttachmentWarning>) {
    for w in warnings {
        tracing::warn!(volume = w.volume, "{}", w.message);
    }
}

#[tonic::async_trait]
impl AttachmentSource for CachedAttachments {
    async fn attachments(&self) -> Result<Vec<RestoreRecord>, Error> {
        let view = self.view()?;
        log_warnings(view.warnings.iter());
        Ok(view.attached)
    }

    async fn attachments_for_volume(
        &self,
        volume_id: &str,
    ) -> Result<Option<Vec<RestoreRecord>>, Error> {
        let view = self.view()?;
        log_warnings(
            view.warnings
                .iter()
                .filter(|w| w.volume.as_deref() == Some(volume_id)),
        );
        Ok(Some(
            view.attached
                .into_iter()
                .filter(|r| r.volume == volume_id)
                .collect(),
        ))
    }
}

/// One reading of a coordination.k8s.io Lease (`None` when it does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// `spec.holderIdentity`.
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds`: how long the holder's claim lasts after its last renewal.
    pub duration: std::time::Duration,
    /// `spec.renewTime` as written (it changes on every renewal).
    pub renew_time: Option<String>,
}

/// Readings of one Lease, each time it changes; `Err` is a watch failure (retried).
pub type LeaseEvents =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Option<LeaseRecord>, String>> + Send>>;

/// Posts events about a volume (on its PVC). Failures are logged, never returned as errors:
/// an event that cannot be posted must not fail the RPC that caused it. Returns whether the
/// event was posted (only posted events are counted in `rds_csi_events_posted_total`).
#[tonic::async_trait]
pub trait EventSink: Send + Sync + 'static {
    async fn post(&self, volume_id: &str, event: &Event) -> bool;
}

/// Whether a node exists (ControllerPublish to an unknown node is NOT_FOUND).
#[tonic::async_trait]
pub trait NodeDirectory: Send + Sync + 'static {
    async fn node_exists(&self, node_id: &str) -> Result<bool, Error>;
}

/// The attachments Kubernetes records (VolumeAttachments of this driver with attached=true,
/// with their PVs' access mode and migration timeout), to rebuild the table at start.
#[tonic::async_trait]
pub trait AttachmentSource: Send + Sync + 'static {
    async fn attachments(&self) -> Result<Vec<RestoreRecord>, Error>;

    /// The attachments Kubernetes records for one volume, consulted by ControllerPublish for a
    /// volume the table has no record of (another controller replica may have attached it while
    /// this one was not the leader). `Ok(None)`: this source cannot look up one volume, and
    /// the table's own state is used as it is.
    async fn attachments_for_volume(
        &self,
        _volume_id: &str,
    ) -> Result<Option<Vec<RestoreRecord>>, Error> {
        Ok(None)
    }
}

/// `--no-kubernetes`: events go to the log.
pub struct LogEvents;

#[tonic::async_trait]
impl EventSink for LogEvents {
    async fn post(&self, volume_id: &str, event: &Event) -> bool {
        match event.event_type {
            EventType::Warning => tracing::warn!(
                volume = volume_id,
                reason = event.reason.as_str(),
                "{}",
                event.message
            ),
            EventType::Normal => tracing::info!(
                volume = volume_id,
                reason = event.reason.as_str(),
                "{}",
                event.message
            ),
        }
        true
    }
}

/// `--no-kubernetes --static-nodes a,b`: the nodes that exist.
pub struct StaticNodes(pub BTreeSet<String>);

#[tonic::async_trait]
impl NodeDirectory for StaticNodes {
    async fn node_exists(&self, node_id: &str) -> Result<bool, Error> {
        Ok(self.0.contains(node_id))
    }
}

/// `--no-kubernetes`: nothing to rebuild from (fencing starts empty and works in memory).
pub struct NoAttachments;

#[tonic::async_trait]
impl AttachmentSource for NoAttachments {
    async fn attachments(&self) -> Result<Vec<RestoreRecord>, Error> {
        Ok(Vec::new())
    }
}

/// Keeps every event in memory, for tests and the demo's report.
#[derive(Clone, Default)]
pub struct RecordedEvents(pub Arc<Mutex<Vec<(String, Event)>>>);

impl RecordedEvents {
    pub fn reasons(&self) -> Vec<String> {
        self.0
            .lock()
            .iter()
            .map(|(_, e)| e.reason.as_str().to_owned())
            .collect()
    }
    pub fn all(&self) -> Vec<(String, Event)> {
        self.0.lock().clone()
    }
}

#[tonic::async_trait]
impl EventSink for RecordedEvents {
    async fn post(&self, volume_id: &str, event: &Event) -> bool {
        LogEvents.post(volume_id, event).await;
        self.0.lock().push((volume_id.to_owned(), event.clone()));
        true
    }
}

/// A fixed list of attachments (tests: a restart mid-migration from VolumeAttachment data).
pub struct FixedAttachments(pub Vec<RestoreRecord>);

#[tonic::async_trait]
impl AttachmentSource for FixedAttachments {
    async fn attachments(&self) -> Result<Vec<RestoreRecord>, Error> {
        Ok(self.0.clone())
    }
}
