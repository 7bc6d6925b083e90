//! ControllerPublishVolume / ControllerUnpublishVolume over the attachment table, and the
//! background sweep that ends migrations at their deadline.

use std::sync::Arc;
use std::time::Duration;

use csi_proto::v1 as csi;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::capabilities::{self, AccessType};
use super::Controller;
use crate::attachment::{
    event_for, Effect, MigrationTimeout, Operation, PublishRequest, RequestedAccess,
};
use crate::error::Error;
use crate::volume_context::MIGRATION_TIMEOUT_SECONDS;

/// Keys of the publish context handed to the node.
pub const PUBLISH_NQN: &str = "nqn";

impl Controller {
    /// Records metrics and posts events for `effects`, outside any table lock. Event failures
    /// are the sink's to log; they never fail the RPC.
    pub(super) async fn apply(&self, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        self.fencing.metrics.record(&effects);
        for e in &effects {
            if let Some(ev) = event_for(e) {
                let volume = e.volume();
                if self.fencing.events.post(volume, &ev).await {
                    self.fencing.metrics.event_posted(ev.reason);
                }
            }
        }
    }

    pub async fn publish_volume(
        &self,
        req: csi::ControllerPublishVolumeRequest,
        deadline: Instant,
    ) -> Result<csi::ControllerPublishVolumeResponse, Error> {
        if req.volume_id.is_empty() {
            return Err(Error::InvalidArgument("volume_id is required".into()));
        }
        if req.node_id.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "volume {}: node_id is required",
                req.volume_id
            )));
        }
        let cap = req.volume_capability.as_ref().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "volume {}: volume_capability is required",
                req.volume_id
            ))
        })?;
        let cap = capabilities::parse(cap)?;
        let (slot, _disk) = self.existing_volume(&req.volume_id, deadline).await?;
        if !self.fencing.nodes.node_exists(&req.node_id).await? {
            return Err(Error::NotFound(format!(
                "node {:?} does not exist; volume {slot} cannot be published to it",
                req.node_id
            )));
        }
        let access = match (&cap.access, cap.is_multi_node()) {
            (_, false) => RequestedAccess::SingleNode,
            (AccessType::Block, true) => RequestedAccess::MultiNodeBlock,
            (AccessType::Mount { .. }, true) => RequestedAccess::MultiNodeFilesystem,
        };
        let timeout = MigrationTimeout::from_parameter(
            req.volume_context
                .get(MIGRATION_TIMEOUT_SECONDS)
                .map(String::as_str),
        )?;
        self.consult_kubernetes(slot.as_str()).await?;
        let started = std::time::Instant::now();
        let outcome = self.fencing.table.publish(
            &PublishRequest {
                volume: slot.as_str(),
                node: &req.node_id,
                access,
                migration_timeout: timeout,
            },
            started,
        );
        self.fencing
            .metrics
            .observe_operation(Operation::Publish, started.elapsed());
        self.apply(outcome.effects).await;
        self.fencing.wake_sweeper.notify_one();
        outcome.result?;
        let nqn = self.nqn(&slot)?;
        Ok(csi::ControllerPublishVolumeResponse {
            publish_context: [(PUBLISH_NQN.to_owned(), nqn.to_string())].into(),
        })
    }

    /// For a volume the table has no record of (no node, no grace window), restores what
    /// Kubernetes records for it first, so a publish after a leader change is judged against
    /// the attachments the previous leader made. A lookup failure fails the publish
    /// (UNAVAILABLE, retried by the attacher): fencing never guesses.
    async fn consult_kubernetes(&self, volume: &str) -> Result<(), Error> {
        let Some(source) = &self.attachment_source else {
            return Ok(());
        };
        if self.fencing.table.contains(volume) {
            return Ok(());
        }
        let records = match source.attachments_for_volume(volume).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "volume {volume}: cannot check its VolumeAttachments before publishing it \
                     (this controller has no record of it, e.g. after a leader change): {e}"
                )))
            }
        };
        let records: Vec<_> = records.into_iter().filter(|r| r.volume == volume).collect();
        if records.is_empty() {
            return Ok(());
        }
        tracing::info!(
            volume,
            nodes = ?records.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(),
            "volume unknown to this controller is attached according to Kubernetes; restored"
        );
        self.restore_records(records).await;
        Ok(())
    }

    /// Drops every attachment of a deleted Kubernetes Node (StaleAttachmentCleared events;
    /// a migration it was part of fails). Returns how many attachments were dropped.
    pub async fn clear_node(&self, node: &str) -> usize {
        let now = std::time::Instant::now();
        let effects = self.fencing.table.clear_node(node, now);
        self.fencing
            .metrics
            .observe_operation(Operation::ClearNode, now.elapsed());
        let n = effects
            .iter()
            .filter(|e| matches!(e, Effect::StaleCleared { .. }))
            .count();
        self.apply(effects).await;
        self.fencing.wake_sweeper.notify_one();
        n
    }

    pub async fn unpublish_volume(
        &self,
        req: csi::ControllerUnpublishVolumeRequest,
    ) -> Result<(), Error> {
        if req.volume_id.is_empty() {
            return Err(Error::InvalidArgument("volume_id is required".into()));
        }
        let now = std::time::Instant::now();
        let effects = if req.node_id.is_empty() {
            // The spec: an empty node id means "from every node".
            let nodes = self.fencing.table.published_nodes(&req.volume_id);
            let mut all = Vec::new();
            for n in nodes {
                all.extend(self.fencing.table.unpublish(&req.volume_id, &n, now));
            }
            all
        } else {
            self.fencing
                .table
                .unpublish(&req.volume_id, &req.node_id, now)
        };
        self.fencing
            .metrics
            .observe_operation(Operation::Unpublish, now.elapsed());
        self.apply(effects).await;
        self.fencing.wake_sweeper.notify_one();
        Ok(())
    }
}

/// Ends migrations at their deadline (and forgets lapsed grace windows) without waiting for
/// the next publish: sleeps until the table's earliest deadline, or until a publish or
/// unpublish changes it.
pub async fn run_sweeper(ctl: Arc<Controller>, stop: CancellationToken) {
    loop {
        let next = ctl.fencing.table.next_deadline();
        let sleep = match next {
            Some(at) => at.saturating_duration_since(std::time::Instant::now()),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctl.fencing.wake_sweeper.notified() => continue,
            _ = tokio::time::sleep(sleep) => {}
        }
        let now = std::time::Instant::now();
        let effects = ctl.fencing.table.sweep(now);
        ctl.fencing
            .metrics
            .observe_operation(Operation::Sweep, now.elapsed());
        ctl.apply(effects).await;
    }
}
