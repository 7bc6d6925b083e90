//! The reconnect reconciler (nvme-tcp only): a background task that brings back staged
//! volumes whose controllers the kernel gave up on (ctrl_loss_tmo expired), and removes
//! controllers under the driver's prefix that no stage record owns — only when nothing
//! holds their device and the holder scan was complete.
//!
//! Records of an earlier boot are never reconnected, and are dropped when no NodeStage
//! confirms them within [`STALE_RECORD_GRACE`] of the plugin's start.
//!
//! The decision is a pure function ([`plan::plan`]) so it is tested on fake sysfs trees; the
//! task around it only performs the actions.

mod plan;

pub use plan::{plan, Action, Backoff, Inputs, Plan};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use node_io::sysfs;
use tokio_util::sync::CancellationToken;

use crate::node::ops::Node;
use crate::node::stage_record::StageRecord;
use crate::node::transport::{NvmeTcp, Target};

/// How long after the plugin starts a record of an earlier boot waits for the kubelet to
/// stage its volume again before it is dropped. After a reboot the kubelet stages what its
/// pods need within seconds of the plugin registering; ten minutes leaves room for a slow
/// node start, and a volume staged later simply writes a new record.
pub const STALE_RECORD_GRACE: Duration = Duration::from_secs(600);

pub struct Reconciler {
    node: Arc<Node>,
    nvme: NvmeTcp,
    interval: Duration,
    backoff: HashMap<String, Backoff>,
    orphans: BTreeSet<String>,
    started: Instant,
    grace: Duration,
}

impl Reconciler {
    pub fn new(node: Arc<Node>, nvme: NvmeTcp, interval: Duration) -> Self {
        Reconciler {
            node,
            nvme,
            interval,
            backoff: HashMap::new(),
            orphans: BTreeSet::new(),
            started: Instant::now(),
            grace: STALE_RECORD_GRACE,
        }
    }

    /// The grace period for records of earlier boots (tests shorten it).
    pub fn with_stale_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Runs passes every `interval` until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        tracing::info!(interval = ?self.interval, "reconnect reconciler started");
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
            // A pass is bounded, and stopping interrupts it between awaits.
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.pass() => {}
            }
        }
        tracing::info!("reconnect reconciler stopped");
    }

    pub async fn pass(&mut self) {
        let sys = self.nvme.sys_root.clone();
        let controllers = match tokio::task::spawn_blocking(move || sysfs::list_controllers(&sys))
            .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return tracing::warn!("reconciler: cannot list NVMe controllers: {e}"),
            Err(e) => return tracing::warn!("reconciler: {e}"),
        };
        let (records, unreadable) = match StageRecord::all(&self.node.state_dir, &self.node.boot) {
            Ok(r) => r,
            Err(e) => return tracing::warn!("reconciler: {e}"),
        };
        for e in &unreadable {
            tracing::warn!("reconciler: {e}; no orphan controller is disconnected while a record cannot be read");
        }
        let now = Instant::now();
        let p = plan(&Inputs {
            controllers: &controllers,
            records: &records,
            unreadable: unreadable.len(),
            prefix: &self.nvme.nqn_prefix,
            boot: &self.node.boot.id,
            orphans_last_pass: &self.orphans,
            backoff: &self.backoff,
            now,
            drop_stale: now >= self.started + self.grace,
        });
        self.orphans = p.orphans;
        let deadline = tokio::time::Instant::now()
            + self
                .interval
                .clamp(Duration::from_secs(5), Duration::from_secs(60));
        for a in p.actions {
            match a {
                Action::Reconnect { volume_id } => {
                    let Some(Target::NvmeTcp(t)) = records
                        .iter()
                        .find(|r| r.volume_id == volume_id)
                        .map(|r| &r.target)
                    else {
                        continue;
                    };
                    // An RPC on the volume owns it right now; the next pass looks again.
                    let Ok(_g) = self.node.inflight.try_acquire(&volume_id) else {
                        continue;
                    };
                    match self.nvme.connect(t, deadline).await {
                        Ok(()) => {
                            self.backoff.remove(&volume_id);
                            self.node.metrics.reconciler("reconnect", "ok");
                            tracing::info!(volume = %volume_id, nqn = %t.nqn, "reconnected a staged volume whose controller was lost");
                        }
                        Err(e) => {
                            let b = Backoff::after_failure(
                                self.backoff.get(&volume_id).copied(),
                                self.interval,
                                Instant::now(),
                            );
                            self.backoff.insert(volume_id.clone(), b);
                            self.node.metrics.reconciler("reconnect", "error");
                            tracing::warn!(volume = %volume_id, failures = b.failures, retry_in = ?b.next_at.saturating_duration_since(Instant::now()), "reconnect failed: {e}");
                        }
                    }
                }
                Action::DisconnectOrphan { nqn } => self.disconnect_orphan(&nqn, deadline).await,
                Action::DropStale { volume_id } => self.drop_stale(&volume_id),
            }
        }
        self.backoff
            .retain(|v, _| records.iter().any(|r| &r.volume_id == v));
    }

    /// Removes the record of `volume_id` if it is (still) from an earlier boot.
    fn drop_stale(&self, volume_id: &str) {
        // A NodeStage of the volume owns it right now; it replaces the record anyway.
        let Ok(_g) = self.node.inflight.try_acquire(volume_id) else {
            return;
        };
        match StageRecord::load(&self.node.state_dir, volume_id, &self.node.boot) {
            Ok(Some(r)) if !r.of_boot(&self.node.boot.id) => {
                match StageRecord::remove(&self.node.state_dir, volume_id) {
                    Ok(()) => {
                        self.node.metrics.reconciler("drop_stale_record", "ok");
                        tracing::info!(volume = %volume_id, staging_path = %r.staging_path.display(), target = %r.target,
                            "dropped a stage record from an earlier boot: no NodeStage confirmed it since the plugin started, so the volume is not wanted on this node");
                    }
                    Err(e) => {
                        self.node.metrics.reconciler("drop_stale_record", "error");
                        tracing::warn!(volume = %volume_id, "reconciler: {e}");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(volume = %volume_id, "reconciler: {e}"),
        }
    }

    async fn disconnect_orphan(&self, nqn: &str, deadline: tokio::time::Instant) {
        // NodeStage holds this key from before it saves its record until it has connected.
        let Ok(_g) = self.node.inflight.try_acquire(nqn) else {
            self.node.metrics.reconciler("skip_orphan_busy", "ok");
            return;
        };
        // Under the key, the records are final for this NQN: a stage that saved one since
        // this pass began has made the controller owned.
        match StageRecord::all(&self.node.state_dir, &self.node.boot) {
            Ok((_, unreadable)) if !unreadable.is_empty() => {
                return tracing::warn!(
                    nqn,
                    "reconciler: a stage record cannot be read; orphan left connected"
                )
            }
            Ok((records, _)) if records.iter().any(|r| r.target.key() == nqn) => {
                self.node.metrics.reconciler("skip_orphan_owned", "ok");
                return tracing::info!(
                    nqn,
                    "controller is owned by a volume staged since this pass began; left connected"
                );
            }
            Ok(_) => {}
            Err(e) => {
                return tracing::warn!(
                    nqn,
                    "reconciler: cannot re-read stage records, orphan left connected: {e}"
                )
            }
        }
        let device = match self.nvme.resolve(nqn) {
            Ok(d) => d,
            Err(e) => return tracing::warn!(nqn, "reconciler: orphan: {e}"),
        };
        if let Some(d) = device {
            let report = tokio::task::spawn_blocking(self.node.holder_scan(&d)).await;
            match report {
                Ok(Ok(r)) if r.is_empty() && r.is_complete() => {}
                Ok(Ok(r)) => {
                    self.node.metrics.reconciler("skip_orphan_held", "ok");
                    return tracing::warn!(nqn, device = %d.name, holders = ?r.processes, mounts = r.mounts.len(), claimed = r.claimed, skipped = r.skipped_pids.len(),
                        "controller under the prefix has no stage record but its device is in use (or the scan was incomplete); left connected");
                }
                Ok(Err(e)) => {
                    return tracing::warn!(
                        nqn,
                        "reconciler: holder scan failed, orphan left connected: {e}"
                    )
                }
                Err(e) => return tracing::warn!(nqn, "reconciler: {e}"),
            }
        }
        match self.nvme.disconnect(nqn, deadline).await {
            Ok(()) => {
                self.node.metrics.reconciler("disconnect_orphan", "ok");
                tracing::info!(nqn, "disconnected a controller no staged volume owns");
            }
            Err(e) => {
                self.node.metrics.reconciler("disconnect_orphan", "error");
                tracing::warn!(nqn, "reconciler: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
