//! The reconnect reconciler (nvme-tcp only): a background task that brings back staged
//! volumes whose controllers the kernel gave up on (ctrl_loss_tmo expired), and removes
//! controllers under the driver's prefix that no stage record owns — only when nothing
//! holds their device and the holder scan was complete.
//!
//! The decision is a pure function of (records, controllers, memory of the last pass, now)
//! so it is tested on fake sysfs trees; the task around it only performs the actions.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use node_io::holders::{self, ScanMode};
use node_io::sysfs::{self, Controller};
use tokio_util::sync::CancellationToken;

use crate::node::ops::Node;
use crate::node::stage_record::StageRecord;
use crate::node::transport::{under_prefix, NvmeTarget, NvmeTcp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The volume is staged but its NQN has no controller left: connect it again.
    Reconnect { volume_id: String },
    /// A controller under the prefix that no record owns, seen in two passes in a row.
    DisconnectOrphan { nqn: String },
}

/// Per-volume retry state after failed reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub failures: u32,
    pub next_at: Instant,
}

impl Backoff {
    /// Exponential from `base`, at most ten minutes.
    pub fn after_failure(prev: Option<Backoff>, base: Duration, now: Instant) -> Backoff {
        let failures = prev.map_or(0, |b| b.failures) + 1;
        let delay = base
            .saturating_mul(1u32 << (failures - 1).min(16))
            .min(Duration::from_secs(600));
        Backoff {
            failures,
            next_at: now + delay,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Orphan NQNs seen in this pass (the next pass acts on those seen twice).
    pub orphans: BTreeSet<String>,
}

/// Decides one pass. `controllers` must be listed BEFORE `records` are read: NodeStage
/// saves its record before it connects, so a controller listed first whose record is not
/// found afterwards really has no owner (and a second pass must agree before acting).
pub fn plan(
    records: &[StageRecord],
    controllers: &[Controller],
    prefix: &str,
    orphans_last_pass: &BTreeSet<String>,
    backoff: &HashMap<String, Backoff>,
    now: Instant,
) -> Plan {
    let mut out = Plan::default();
    for r in records {
        // Loop-transport records, or foreign NQNs, are not ours to reconnect.
        if r.address.is_empty() || !under_prefix(prefix, &r.target) {
            continue;
        }
        let connected = controllers
            .iter()
            .any(|c| c.subsysnqn == r.target && !c.state.is_gone());
        let waiting = backoff.get(&r.volume_id).is_some_and(|b| b.next_at > now);
        if !connected && !waiting {
            out.actions.push(Action::Reconnect {
                volume_id: r.volume_id.clone(),
            });
        }
    }
    for c in controllers {
        let owned = records.iter().any(|r| r.target == c.subsysnqn);
        if owned || c.state.is_gone() || !under_prefix(prefix, &c.subsysnqn) {
            continue;
        }
        if out.orphans.insert(c.subsysnqn.clone()) && orphans_last_pass.contains(&c.subsysnqn) {
            out.actions.push(Action::DisconnectOrphan {
                nqn: c.subsysnqn.clone(),
            });
        }
    }
    out
}

pub struct Reconciler {
    node: Arc<Node>,
    nvme: NvmeTcp,
    interval: Duration,
    backoff: HashMap<String, Backoff>,
    orphans: BTreeSet<String>,
}

impl Reconciler {
    pub fn new(node: Arc<Node>, nvme: NvmeTcp, interval: Duration) -> Self {
        Reconciler {
            node,
            nvme,
            interval,
            backoff: HashMap::new(),
            orphans: BTreeSet::new(),
        }
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
        let records = match StageRecord::all(&self.node.state_dir) {
            Ok(r) => r,
            Err(e) => return tracing::warn!("reconciler: {e}"),
        };
        let p = plan(
            &records,
            &controllers,
            &self.nvme.nqn_prefix,
            &self.orphans,
            &self.backoff,
            Instant::now(),
        );
        self.orphans = p.orphans;
        let deadline = tokio::time::Instant::now()
            + self
                .interval
                .clamp(Duration::from_secs(5), Duration::from_secs(60));
        for a in p.actions {
            match a {
                Action::Reconnect { volume_id } => {
                    let Some(rec) = records.iter().find(|r| r.volume_id == volume_id) else {
                        continue;
                    };
                    // An RPC on the volume owns it right now; the next pass looks again.
                    let Ok(_g) = self.node.inflight.try_acquire(&volume_id) else {
                        continue;
                    };
                    match self
                        .nvme
                        .connect(&NvmeTarget::from_record(rec), deadline)
                        .await
                    {
                        Ok(()) => {
                            self.backoff.remove(&volume_id);
                            self.node.metrics.reconciler("reconnect", "ok");
                            tracing::info!(volume = %volume_id, nqn = %rec.target, "reconnected a staged volume whose controller was lost");
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
            }
        }
        self.backoff
            .retain(|v, _| records.iter().any(|r| &r.volume_id == v));
    }

    async fn disconnect_orphan(&self, nqn: &str, deadline: tokio::time::Instant) {
        // NodeStage holds this key from before it saves its record until it has connected.
        let Ok(_g) = self.node.inflight.try_acquire(nqn) else {
            self.node.metrics.reconciler("skip_orphan_busy", "ok");
            return;
        };
        // Under the key, the records are final for this NQN: a stage that saved one since
        // this pass began has made the controller owned.
        match StageRecord::all(&self.node.state_dir) {
            Ok(records) if records.iter().any(|r| r.target == nqn) => {
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
            let (proc_root, sys_root, name, path) = (
                self.node.proc_root.clone(),
                self.node.sys_root.clone(),
                d.name.clone(),
                d.path.clone(),
            );
            let report = tokio::task::spawn_blocking(move || {
                holders::holder_report_with_claim(
                    &proc_root,
                    &sys_root,
                    &name,
                    &path,
                    ScanMode::default(),
                )
            })
            .await;
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
mod tests {
    use super::*;
    use crate::node::stage_record::Access;
    use node_io::testing::{FakeSys, NS1};

    const PREFIX: &str = "nqn.2000-02.com.mikrotik:pvc-";
    const A: &str = "nqn.2000-02.com.mikrotik:pvc-a";
    const B: &str = "nqn.2000-02.com.mikrotik:pvc-b";
    const ORPHAN: &str = "nqn.2000-02.com.mikrotik:pvc-orphan";
    const BOOT: &str = "nqn.2000-02.com.mikrotik:boot-disk";

    fn rec(vol: &str, nqn: &str) -> StageRecord {
        StageRecord {
            volume_id: vol.into(),
            target: nqn.into(),
            access: Access::Filesystem,
            staging_path: "/staging".into(),
            device: String::new(),
            dev: String::new(),
            fs_type: None,
            address: "127.0.0.1".into(),
            port: 4420,
            ctrl_loss_tmo: 600,
            reconnect_delay: 2,
            keep_alive_tmo: 5,
        }
    }

    fn controllers(s: &FakeSys) -> Vec<Controller> {
        sysfs::list_controllers(s.root()).unwrap()
    }

    #[test]
    fn a_staged_volume_without_controller_is_reconnected_and_a_live_one_is_left_alone() {
        let s = FakeSys::new();
        s.controller(0, B, 4420, "live")
            .subsystem(0, B, &[0])
            .private_ns(0, &NS1);
        let recs = [rec("pvc-a", A), rec("pvc-b", B)];
        let p = plan(
            &recs,
            &controllers(&s),
            PREFIX,
            &BTreeSet::new(),
            &HashMap::new(),
            Instant::now(),
        );
        assert_eq!(
            p.actions,
            vec![Action::Reconnect {
                volume_id: "pvc-a".into()
            }]
        );
        assert!(p.orphans.is_empty());
    }

    #[test]
    fn a_controller_being_deleted_counts_as_lost_and_a_connecting_one_as_present() {
        let s = FakeSys::new();
        s.controller(0, A, 4420, "deleting")
            .controller(1, B, 4420, "connecting");
        let recs = [rec("pvc-a", A), rec("pvc-b", B)];
        let p = plan(
            &recs,
            &controllers(&s),
            PREFIX,
            &BTreeSet::new(),
            &HashMap::new(),
            Instant::now(),
        );
        assert_eq!(
            p.actions,
            vec![Action::Reconnect {
                volume_id: "pvc-a".into()
            }]
        );
    }

    #[test]
    fn reconnects_back_off_exponentially() {
        let s = FakeSys::new();
        let now = Instant::now();
        let base = Duration::from_secs(30);
        let b1 = Backoff::after_failure(None, base, now);
        let b2 = Backoff::after_failure(Some(b1), base, now);
        assert_eq!((b1.next_at - now, b2.next_at - now), (base, base * 2));
        let b9 = (0..9)
            .fold(None, |b, _| Some(Backoff::after_failure(b, base, now)))
            .unwrap();
        assert_eq!(b9.next_at - now, Duration::from_secs(600), "capped");
        let backoff = HashMap::from([("pvc-a".to_string(), b2)]);
        let recs = [rec("pvc-a", A)];
        assert!(plan(
            &recs,
            &controllers(&s),
            PREFIX,
            &BTreeSet::new(),
            &backoff,
            now
        )
        .actions
        .is_empty());
        let later = now + base * 2;
        assert_eq!(
            plan(
                &recs,
                &controllers(&s),
                PREFIX,
                &BTreeSet::new(),
                &backoff,
                later
            )
            .actions
            .len(),
            1
        );
    }

    #[test]
    fn an_orphan_is_disconnected_only_when_seen_twice_and_never_outside_the_prefix() {
        let s = FakeSys::new();
        s.controller(0, ORPHAN, 4420, "live")
            .controller(1, ORPHAN, 4421, "live")
            .controller(2, BOOT, 4420, "live")
            .subsystem(0, ORPHAN, &[0, 1])
            .mp_head(0, &NS1);
        let ctrls = controllers(&s);
        let first = plan(
            &[],
            &ctrls,
            PREFIX,
            &BTreeSet::new(),
            &HashMap::new(),
            Instant::now(),
        );
        assert!(
            first.actions.is_empty(),
            "a stage may be between connect and record"
        );
        assert_eq!(first.orphans, BTreeSet::from([ORPHAN.to_string()]));
        let second = plan(
            &[],
            &ctrls,
            PREFIX,
            &first.orphans,
            &HashMap::new(),
            Instant::now(),
        );
        assert_eq!(
            second.actions,
            vec![Action::DisconnectOrphan { nqn: ORPHAN.into() }],
            "one action per NQN, boot disk untouched"
        );
        // A record appearing in between (stage finished) owns it.
        let owned = plan(
            &[rec("pvc-orphan", ORPHAN)],
            &ctrls,
            PREFIX,
            &first.orphans,
            &HashMap::new(),
            Instant::now(),
        );
        assert!(owned.actions.is_empty() && owned.orphans.is_empty());
    }

    #[test]
    fn loop_records_are_not_reconnected() {
        // A loop record's target is its backing file: never under the NQN prefix.
        let r = rec("pvc-a", "/data/pvc-a.img");
        let p = plan(
            &[r],
            &[],
            PREFIX,
            &BTreeSet::new(),
            &HashMap::new(),
            Instant::now(),
        );
        assert!(p.actions.is_empty());
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
        rec("pvc-orphan", ORPHAN).save(&node.state_dir).unwrap();
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
        use crate::volume_context::{Tunables, VolumeContext};
        let d = tempfile::tempdir().unwrap();
        let s = FakeSys::new();
        let (_r, node, _m) = reconciler(&s, d.path());
        let held = node.inflight.try_acquire(ORPHAN).unwrap();
        let req = StageRequest {
            volume_id: "pvc-orphan".into(),
            staging_path: d.path().join("staging"),
            access: Access::Block,
            fs_type: None,
            mount_flags: Vec::new(),
            context: VolumeContext {
                nvme_address: "127.0.0.1".into(),
                nvme_port: 4420,
                nqn: ORPHAN.into(),
                tunables: Tunables::default(),
                migration_timeout_seconds: 300,
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
            StageRecord::load(&node.state_dir, "pvc-orphan")
                .unwrap()
                .is_none(),
            "nothing recorded while the target is busy"
        );
        drop(held);
    }
}
