//! Keeps the attachment table and the VolumeAttachment cache in agreement.
//!
//! The table is what fences; Kubernetes' VolumeAttachments are what the external-attacher
//! did. They disagree when something happened that this replica did not answer: the other
//! replica attached or detached (this one is not the leader, or was not), or Kubernetes
//! force-detached a deleted Node's volume. A disagreement is either
//! - **missing**: an attached VolumeAttachment whose (volume, node) the table lacks: restored
//!   into the table (with its attach time, so a migration keeps its deadline), or
//! - **stale**: a table attachment with no VolumeAttachment at all for it: dropped from the
//!   table as a detach.
//!
//! Each correction is one log line and one count of `rds_csi_attachment_reconciled_total`
//! (label `action`: `restored` or `dropped`). On the leader, whose table also holds its own
//! answers that the watch has not shown yet, a disagreement is acted on only once it has
//! lasted [`SETTLE`]; a replica that is not the leader answers nothing, so it mirrors the
//! cache at once (and so is warm when it becomes the leader). Deleted Nodes' lingering
//! VolumeAttachments are never restored ([`GoneNodes`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{IntCounterVec, Opts};
use tokio_util::sync::CancellationToken;

use super::leader::Leadership;
use super::node_watch::GoneNodes;
use super::Controller;
use crate::attachment::{Effect, Operation, RestoreRecord, VolumeState};
use crate::k8s::{AttachmentCache, AttachmentView};
use crate::observability::Metrics;

/// Counter of table corrections from the VolumeAttachment cache, by `action`.
pub const RECONCILED_TOTAL: &str = "rds_csi_attachment_reconciled_total";

/// How long the leader lets a disagreement last before acting on it: far longer than the
/// watch's lag behind the attacher (milliseconds), far shorter than any migration timeout.
pub const SETTLE: Duration = Duration::from_secs(10);

/// How often the table is checked even without a change from the watch.
pub const PERIOD: Duration = Duration::from_secs(30);

/// One disagreement between the table and the cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disagreement {
    /// Attached in Kubernetes, not in the table.
    Missing { volume: String, node: String },
    /// In the table, no VolumeAttachment at all.
    Stale { volume: String, node: String },
}

/// The disagreements between `table` and `view`, leaving out deleted Nodes' attachments.
pub fn disagreements(
    table: &std::collections::BTreeMap<String, VolumeState>,
    view: &AttachmentView,
    gone: &GoneNodes,
) -> BTreeSet<Disagreement> {
    let mut out = BTreeSet::new();
    for r in &view.attached {
        let known = table
            .get(&r.volume)
            .is_some_and(|st| st.nodes().iter().any(|a| a.node == r.node));
        if !known && !gone.contains(&r.node) {
            out.insert(Disagreement::Missing {
                volume: r.volume.clone(),
                node: r.node.clone(),
            });
        }
    }
    for (volume, st) in table {
        for a in st.nodes() {
            if !view.present.contains(&(volume.clone(), a.node.clone())) {
                out.insert(Disagreement::Stale {
                    volume: volume.clone(),
                    node: a.node.clone(),
                });
            }
        }
    }
    out
}

/// Registers [`RECONCILED_TOTAL`] in `metrics`.
pub fn reconciled_counter(metrics: &Metrics) -> IntCounterVec {
    let c = IntCounterVec::new(
        Opts::new(
            RECONCILED_TOTAL,
            "Attachment table entries corrected from the VolumeAttachment watch (restored: \
             attached in Kubernetes but not in the table; dropped: in the table with no \
             VolumeAttachment)",
        ),
        &["action"],
    )
    .expect("a valid metric definition");
    metrics.register(Box::new(c.clone()));
    c
}

/// The reconciler of one controller with one cache.
pub struct AttachmentSync {
    ctl: Arc<Controller>,
    cache: Arc<dyn AttachmentCache>,
    gone: Arc<GoneNodes>,
    /// When each current disagreement was first seen.
    pending: Mutex<HashMap<Disagreement, Instant>>,
    reconciled: IntCounterVec,
}

impl AttachmentSync {
    pub fn new(
        ctl: Arc<Controller>,
        cache: Arc<dyn AttachmentCache>,
        gone: Arc<GoneNodes>,
        metrics: &Metrics,
    ) -> Self {
        AttachmentSync {
            ctl,
            cache,
            gone,
            pending: Mutex::new(HashMap::new()),
            reconciled: reconciled_counter(metrics),
        }
    }

    pub fn cache(&self) -> &Arc<dyn AttachmentCache> {
        &self.cache
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.ctl
    }

    /// Corrects the table from the cache: at once (`immediate`, a replica that answers
    /// nothing) or only disagreements older than [`SETTLE`] (the leader). Returns how many
    /// corrections were made, or `None` when the cache has not completed its first list.
    /// Effects update the attachment metrics only on the leader; no events are posted (the
    /// replica that answered the RPC posted them).
    pub fn sync(&self, immediate: bool, leader: bool) -> Option<usize> {
        let view = self.cache.view()?;
        let now = Instant::now();
        let table = self.ctl.attachments().snapshot();
        let found = disagreements(&table, &view, &self.gone);
        let due: Vec<Disagreement> = {
            let mut pending = self.pending.lock();
            pending.retain(|d, _| found.contains(d));
            found
                .into_iter()
                .filter(|d| {
                    let first = *pending.entry(d.clone()).or_insert(now);
                    immediate || now.duration_since(first) >= SETTLE
                })
                .collect()
        };
        if due.is_empty() {
            return Some(0);
        }
        let mut restore: Vec<RestoreRecord> = Vec::new();
        let mut effects: Vec<Effect> = Vec::new();
        for d in &due {
            match d {
                Disagreement::Missing { volume, node } => {
                    tracing::info!(
                        volume,
                        node,
                        "attached according to its VolumeAttachment but not in the attachment \
                         table; restored"
                    );
                    self.reconciled.with_label_values(&["restored"]).inc();
                    restore.extend(
                        view.attached
                            .iter()
                            .filter(|r| &r.volume == volume && &r.node == node)
                            .cloned(),
                    );
                }
                Disagreement::Stale { volume, node } => {
                    tracing::info!(
                        volume,
                        node,
                        "in the attachment table but no VolumeAttachment exists (detached by \
                         Kubernetes or another replica); dropped"
                    );
                    self.reconciled.with_label_values(&["dropped"]).inc();
                    effects.extend(self.ctl.attachments().unpublish(volume, node, now));
                }
            }
            self.pending.lock().remove(d);
        }
        let started = Instant::now();
        effects.extend(self.ctl.attachments().restore(restore));
        if leader {
            self.ctl
                .fencing
                .metrics
                .observe_operation(Operation::Restore, started.elapsed());
            self.ctl.fencing.metrics.record(&effects);
        }
        self.ctl.fencing.wake_sweeper.notify_one();
        Some(due.len())
    }

    /// Syncs whenever the cache changes (and every [`PERIOD`]) until `stop`.
    pub async fn run(self: Arc<Self>, leadership: Arc<Leadership>, stop: CancellationToken) {
        let mut changes = self.cache.changes();
        loop {
            // A disagreement waiting out SETTLE is looked at again when it is due.
            let wait = if self.pending.lock().is_empty() {
                PERIOD
            } else {
                SETTLE
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
            }
            // Let a burst of watch events settle into one pass.
            tokio::time::sleep(Duration::from_millis(50)).await;
            changes.borrow_and_update();
            let leader = leadership.is_leader();
            let _ = self.sync(!leader, leader);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attachment::{AccessMode, MigrationTimeout};
    use crate::controller::failover_tests::Cluster;
    use crate::controller::kubernetes_tests::rig;

    fn count(m: &Metrics, action: &str) -> u64 {
        m.render()
            .lines()
            .find(|l| l.starts_with(&format!("{RECONCILED_TOTAL}{{action=\"{action}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn table_and_cache_are_reconciled_with_a_count_and_gone_nodes_are_left_out() {
        let r = rig(None).await;
        let cluster = Arc::new(Cluster::default());
        let gone = Arc::new(GoneNodes::default());
        let m = Metrics::new("controller");
        let sync = AttachmentSync::new(Arc::clone(&r.ctl), cluster.clone(), gone.clone(), &m);
        let table = r.ctl.attachments();
        // Attached in Kubernetes (by another replica), unknown to the table.
        cluster.create("pvc-x", "node-a");
        cluster.set_attached("pvc-x", "node-a");
        // The leader waits for a disagreement to last (the watch may only be lagging)...
        assert_eq!(sync.sync(false, true), Some(0));
        assert!(table.published_nodes("pvc-x").is_empty());
        // ...a replica that answers nothing mirrors at once.
        assert_eq!(sync.sync(true, false), Some(1));
        assert_eq!(table.published_nodes("pvc-x"), ["node-a"]);
        assert_eq!(count(&m, "restored"), 1);
        // In the table, no VolumeAttachment at all: dropped as a detach.
        let _ = table.restore(vec![RestoreRecord {
            volume: "pvc-y".into(),
            mode: AccessMode::Rwo,
            migration_timeout: MigrationTimeout::default(),
            node: "node-b".into(),
            attached_at: Instant::now(),
        }]);
        assert_eq!(sync.sync(true, true), Some(1));
        assert!(table.published_nodes("pvc-y").is_empty());
        assert_eq!(count(&m, "dropped"), 1);
        // A deleted Node's lingering VolumeAttachment is never restored.
        gone.mark("node-z");
        cluster.create("pvc-z", "node-z");
        cluster.set_attached("pvc-z", "node-z");
        assert_eq!(sync.sync(true, true), Some(0));
        assert!(table.published_nodes("pvc-z").is_empty());
        // Agreement: nothing to do.
        assert_eq!(sync.sync(true, true), Some(0));
    }
}
