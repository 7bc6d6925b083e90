//! The Node watch loop: clears the attachments of Kubernetes Nodes that are gone. `k8s/` yields
//! the node events (a kube-rs watcher in production, a channel in tests); the decisions are
//! here: which nodes are gone ([`NodeWatch`]), a grace period, and a recheck by name before
//! anything is cleared.
//!
//! A cleared node stays cleared: its VolumeAttachments linger until Kubernetes force-detaches
//! them (about 6 minutes after the Node is gone), and restoring from them would fence the
//! volume to a dead node again. [`GoneNodes`] remembers the cleared nodes until a Node of the
//! same name is seen again, and [`WithoutGoneNodes`] leaves their attachments out of every
//! restore.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Controller;
use crate::attachment::RestoreRecord;
use crate::error::Error;
use crate::k8s::{AttachmentSource, NodeDirectory, NodeEvent, NodeEvents};

/// Nodes whose attachments were cleared because the Node was deleted, until a Node of that
/// name exists again.
#[derive(Debug, Default)]
pub struct GoneNodes(Mutex<HashSet<String>>);

impl GoneNodes {
    pub fn mark(&self, node: &str) {
        self.0.lock().insert(node.to_owned());
    }

    /// The node exists (again): its attachments count from now on.
    pub fn unmark(&self, node: &str) {
        if self.0.lock().remove(node) {
            tracing::info!(node, "Node exists again; its VolumeAttachments count again");
        }
    }

    pub fn contains(&self, node: &str) -> bool {
        self.0.lock().contains(node)
    }
}

/// An attachment source that leaves out the attachments of [`GoneNodes`] (logged).
pub struct WithoutGoneNodes {
    pub inner: Arc<dyn AttachmentSource>,
    pub gone: Arc<GoneNodes>,
}

impl WithoutGoneNodes {
    fn keep(&self, records: Vec<RestoreRecord>) -> Vec<RestoreRecord> {
        records
            .into_iter()
            .filter(|r| {
                let gone = self.gone.contains(&r.node);
                if gone {
                    tracing::info!(
                        volume = r.volume,
                        node = r.node,
                        "VolumeAttachment of a deleted Node (already cleared) is not restored; \
                         Kubernetes detaches it"
                    );
                }
                !gone
            })
            .collect()
    }
}

#[tonic::async_trait]
impl AttachmentSource for WithoutGoneNodes {
    async fn attachments(&self) -> Result<Vec<RestoreRecord>, Error> {
        Ok(self.keep(self.inner.attachments().await?))
    }

    async fn attachments_for_volume(
        &self,
        volume_id: &str,
    ) -> Result<Option<Vec<RestoreRecord>>, Error> {
        Ok(self
            .inner
            .attachments_for_volume(volume_id)
            .await?
            .map(|r| self.keep(r)))
    }
}

/// Which nodes are gone, from the node watch. A node counts as deleted when the API server
/// reports its deletion, or when a complete (re)list no longer contains a node that was known
/// or that holds attachments (deletions missed while the watch was down, or while the controller
/// was not running). The caller waits the grace period and checks again before clearing.
#[derive(Debug, Default)]
pub struct NodeWatch {
    known: BTreeSet<String>,
    listing: Option<BTreeSet<String>>,
}

impl NodeWatch {
    /// Feeds one event; returns the nodes found gone by it. `holding` is asked only at the end
    /// of a (re)list: the nodes the attachment table has attachments on.
    pub fn on_event(
        &mut self,
        event: NodeEvent,
        holding: impl FnOnce() -> BTreeSet<String>,
    ) -> Vec<String> {
        match event {
            NodeEvent::Applied(n) => {
                self.known.insert(n);
                Vec::new()
            }
            NodeEvent::Deleted(n) => {
                self.known.remove(&n);
                vec![n]
            }
            NodeEvent::ListStart => {
                self.listing = Some(BTreeSet::new());
                Vec::new()
            }
            NodeEvent::Listed(n) => {
                self.listing.get_or_insert_with(BTreeSet::new).insert(n);
                Vec::new()
            }
            NodeEvent::ListDone => {
                let listed = self.listing.take().unwrap_or_default();
                let mut candidates = std::mem::take(&mut self.known);
                candidates.extend(holding());
                let gone = candidates.difference(&listed).cloned().collect();
                self.known = listed;
                gone
            }
        }
    }
}

/// After the grace period the node is looked up again: only a node that still does not exist is
/// cleared (one re-registered under the same name keeps its attachments), and an error looking
/// it up clears nothing (the next relist finds it again if it is really gone).
pub fn clear_after_recheck(still_exists: &Result<bool, Error>) -> bool {
    matches!(still_exists, Ok(false))
}

/// Nodes the attachment table has attachments on.
fn holding_nodes(ctl: &Controller) -> BTreeSet<String> {
    ctl.attachments()
        .snapshot()
        .values()
        .flat_map(|st| st.nodes().iter().map(|a| a.node.clone()))
        .collect()
}

/// Watches Nodes through `events` and clears the attachments of deleted ones, a grace period
/// after the deletion and only if the node still does not exist then. Returns when `stop` is
/// cancelled or the stream ends.
pub async fn run_node_watch(
    ctl: Arc<Controller>,
    mut events: NodeEvents,
    nodes: Arc<dyn NodeDirectory>,
    gone: Arc<GoneNodes>,
    grace: Duration,
    stop: CancellationToken,
) {
    let mut watch = NodeWatch::default();
    let pending: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = events.next() => next,
        };
        let ev = match next {
            None => return,
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                tracing::warn!(
                    "Node watch failed: {e}; retrying with backoff (deleted nodes are found when \
                     it recovers); check the controller's RBAC (nodes: list, watch)"
                );
                continue;
            }
        };
        if let NodeEvent::Applied(n) | NodeEvent::Listed(n) = &ev {
            gone.unmark(n);
        }
        for node in watch.on_event(ev, || holding_nodes(&ctl)) {
            if !pending.lock().insert(node.clone()) {
                continue;
            }
            tracing::info!(
                node,
                grace_seconds = grace.as_secs(),
                "Node deleted; its attachments are cleared after the grace period if it is still gone"
            );
            let (ctl, nodes, pending, gone, stop) = (
                Arc::clone(&ctl),
                Arc::clone(&nodes),
                Arc::clone(&pending),
                Arc::clone(&gone),
                stop.clone(),
            );
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(grace) => {}
                }
                let exists = nodes.node_exists(&node).await;
                if clear_after_recheck(&exists) {
                    gone.mark(&node);
                    let n = ctl.clear_node(&node).await;
                    tracing::info!(node, cleared = n, "attachments of deleted node cleared");
                } else {
                    match exists {
                        Ok(_) => tracing::info!(
                            node,
                            "Node exists again (re-registered); its attachments are kept"
                        ),
                        Err(e) => tracing::warn!(
                            node,
                            "cannot confirm that Node {node:?} is gone: {e}; its attachments are \
                             kept until the next relist finds it missing"
                        ),
                    }
                }
                pending.lock().remove(&node);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_deleted_nodes_are_gone_never_updated_ones() {
        let mut w = NodeWatch::default();
        let none = || BTreeSet::new();
        assert!(w.on_event(NodeEvent::ListStart, none).is_empty());
        assert!(w
            .on_event(NodeEvent::Listed("node-a".into()), none)
            .is_empty());
        assert!(w
            .on_event(NodeEvent::Listed("node-b".into()), none)
            .is_empty());
        assert!(w.on_event(NodeEvent::ListDone, none).is_empty());
        // Updates (a NotReady status, a cordon, a deletionTimestamp with finalizers pending) are
        // all "applied": the node still exists.
        assert!(w
            .on_event(NodeEvent::Applied("node-a".into()), none)
            .is_empty());
        assert_eq!(
            w.on_event(NodeEvent::Deleted("node-b".into()), none),
            vec!["node-b".to_string()]
        );
    }

    #[test]
    fn a_relist_finds_nodes_deleted_while_unwatched_including_ones_holding_attachments() {
        let mut w = NodeWatch::default();
        w.on_event(NodeEvent::ListStart, BTreeSet::new);
        w.on_event(NodeEvent::Listed("node-a".into()), BTreeSet::new);
        w.on_event(NodeEvent::Listed("node-b".into()), BTreeSet::new);
        // First list: node-z holds attachments restored from VolumeAttachments but no longer exists.
        assert_eq!(
            w.on_event(NodeEvent::ListDone, || set(&["node-a", "node-z"])),
            vec!["node-z".to_string()]
        );
        // The watch breaks; node-b is deleted meanwhile; the relist no longer has it.
        w.on_event(NodeEvent::ListStart, BTreeSet::new);
        w.on_event(NodeEvent::Listed("node-a".into()), BTreeSet::new);
        assert_eq!(
            w.on_event(NodeEvent::ListDone, BTreeSet::new),
            vec!["node-b".to_string()]
        );
        // A relist with everything present finds nothing.
        w.on_event(NodeEvent::ListStart, BTreeSet::new);
        w.on_event(NodeEvent::Listed("node-a".into()), BTreeSet::new);
        assert!(w
            .on_event(NodeEvent::ListDone, || set(&["node-a"]))
            .is_empty());
    }

    #[test]
    fn a_node_is_cleared_only_if_still_absent_after_the_grace_period() {
        assert!(clear_after_recheck(&Ok(false)));
        assert!(!clear_after_recheck(&Ok(true)), "re-registered node");
        assert!(!clear_after_recheck(&Err(Error::Unavailable(
            "api down".into()
        ))));
    }
}
