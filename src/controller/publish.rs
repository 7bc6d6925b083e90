//! ControllerPublishVolume / ControllerUnpublishVolume over the attachment table.

use tokio::time::Instant;

use super::error::ControllerError;
use super::requests::{Publish, Unpublish};
use super::Controller;
use crate::attachment::{
    event_for, AttachmentTable, Effect, Operation, PublishRequest, RequestedAccess,
};
use crate::rds::Nqn;
use crate::volume::AccessType;

/// Keys of the publish context handed to the node.
pub const PUBLISH_NQN: &str = crate::volume::keys::NQN;

impl Controller {
    /// Records metrics and posts events for `effects`, outside any table lock, on the replica
    /// that leads only: the others mirror what the leader did, and reporting it twice would
    /// double every count on the dashboards. Event failures are the sink's to log; they never
    /// fail the RPC.
    pub(super) async fn apply(&self, effects: Vec<Effect>) {
        if effects.is_empty() || !self.fencing.leadership.is_leader() {
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

    /// The bookkeeping around every attachment-table call: runs `call` (given the table and
    /// `now`), times it as `op`, turns its effects into metrics and events after the shard
    /// lock is released, and wakes the sweeper (the next deadline may have changed).
    pub(super) async fn fence<T>(
        &self,
        op: Operation,
        call: impl FnOnce(&AttachmentTable, std::time::Instant) -> (T, Vec<Effect>),
    ) -> T {
        let now = std::time::Instant::now();
        let (out, effects) = call(&self.fencing.table, now);
        self.fencing.metrics.observe_operation(op, now.elapsed());
        self.apply(effects).await;
        self.fencing.wake_sweeper.notify_one();
        out
    }

    /// ControllerPublishVolume: the attachment rules decide; the RDS is not changed. Returns
    /// the NQN the node connects to.
    pub async fn publish(&self, req: &Publish, deadline: Instant) -> Result<Nqn, ControllerError> {
        let (id, _disk) = self.existing_disk(&req.volume, deadline).await?;
        let exists = self
            .fencing
            .nodes
            .node_exists(&req.node)
            .await
            .map_err(|source| ControllerError::Kubernetes {
                context: format!("volume {id}: "),
                source,
            })?;
        if !exists {
            return Err(ControllerError::NodeNotFound {
                node: req.node.clone(),
                volume: id.to_string(),
            });
        }
        let access = match (req.capability.access_type, req.capability.is_multi_node()) {
            (_, false) => RequestedAccess::SingleNode,
            (AccessType::Block, true) => RequestedAccess::MultiNodeBlock,
            (AccessType::Mount, true) => RequestedAccess::MultiNodeFilesystem,
        };
        self.consult_kubernetes(id.as_str()).await?;
        let publish = PublishRequest {
            volume: id.as_str(),
            node: &req.node,
            access,
            migration_timeout: req.migration_timeout,
        };
        self.fence(Operation::Publish, |table, now| {
            let outcome = table.publish(&publish, now);
            (outcome.result, outcome.effects)
        })
        .await?;
        self.nqn(id)
    }

    /// For a volume the table has no record of (no node, no grace window), restores what
    /// Kubernetes records for it first, so a publish after a leader change is judged against
    /// the attachments the previous leader made, and a DeleteVolume served by a replica whose
    /// mirror of the VolumeAttachment cache has not caught up yet still sees them. A lookup
    /// failure fails the call (UNAVAILABLE, retried by the sidecar): fencing never guesses.
    pub(super) async fn consult_kubernetes(&self, volume: &str) -> Result<(), ControllerError> {
        let Some(source) = &self.attachment_source else {
            return Ok(());
        };
        if self.fencing.table.contains(volume) {
            return Ok(());
        }
        let records = match source.attachments_for_volume(volume).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(source) => {
                return Err(ControllerError::Kubernetes {
                    context: format!(
                        "volume {volume}: cannot check its VolumeAttachments (this controller \
                         has no record of it, e.g. after a leader change): "
                    ),
                    source: crate::error::Error::Unavailable(source.to_string()),
                })
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
        self.fence(Operation::ClearNode, |table, now| {
            let effects = table.clear_node(node, now);
            let n = effects
                .iter()
                .filter(|e| matches!(e, Effect::StaleCleared { .. }))
                .count();
            (n, effects)
        })
        .await
    }

    /// ControllerUnpublishVolume: idempotent; ends a migration the node was part of.
    pub async fn unpublish(&self, req: &Unpublish) -> Result<(), ControllerError> {
        let volume = req.volume.as_str();
        self.fence(Operation::Unpublish, |table, now| {
            let effects = match &req.node {
                Some(node) => table.unpublish(volume, node, now),
                // The spec: an empty node id means "from every node".
                None => table
                    .published_nodes(volume)
                    .iter()
                    .flat_map(|n| table.unpublish(volume, n, now))
                    .collect(),
            };
            ((), effects)
        })
        .await;
        Ok(())
    }
}
