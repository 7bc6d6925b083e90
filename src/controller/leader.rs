//! Two controller replicas: which one's attachment table answers.
//!
//! Only ControllerPublish and ControllerUnpublish change the table, and only the
//! external-attacher calls them — the attacher that holds its Lease
//! (`external-attacher-leader-<driver name>`, holder = its pod's name). A Lease of the driver's
//! own could be held by the other pod, and then the leading attacher would call a driver that
//! refuses, forever. So the driver follows the attacher's Lease instead of holding one: this
//! replica leads while that Lease names this pod and its holder has renewed it within its
//! `leaseDurationSeconds`, as client-go's followers judge expiry (by the local time at which
//! the Lease was last seen to change, never by comparing clocks). The driver never writes the
//! Lease.
//!
//! Before it answers as the leader, the replica syncs its table with the VolumeAttachment
//! cache (warm already: a replica that does not lead mirrors the cache), so migrations keep
//! their deadlines. A replica that does not lead refuses Publish/Unpublish with UNAVAILABLE
//! (the attacher retries) and reports nothing of its table (no events, no attachment metrics:
//! it only mirrors what the leader did and reported); the other RPCs work on the RDS and are
//! served by any replica (their sidecars elect their own leaders).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::IntGauge;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::attachment_sync::AttachmentSync;
use super::Controller;
use crate::attachment::persist::{self, AttachmentStore};
use crate::k8s::{LeaseEvents, LeaseRecord};
use crate::observability::Metrics;

/// Gauge: 1 while this replica leads (answers ControllerPublish/Unpublish), else 0.
pub const LEADER_GAUGE: &str = "rds_csi_controller_leader";

/// The Lease name csi-lib-utils gives the external-attacher of `driver`:
/// `external-attacher-leader-` + the driver name with every character outside `[A-Za-z0-9-]`
/// replaced by `-` (and an `X` appended if that ends in `-`).
pub fn attacher_lease_name(driver: &str) -> String {
    sanitize(&format!("external-attacher-leader-{driver}"))
}

/// csi-lib-utils' `sanitizeName`, which the sidecars apply to their Lease name and identity.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.ends_with('-') {
        s.push('X');
    }
    s
}

/// What this replica knows of the Lease it follows.
#[derive(Debug, Default)]
struct Observed {
    record: Option<LeaseRecord>,
    /// When the record was last seen to change.
    at: Option<Instant>,
}

/// Whether this replica leads. Without leader election it always does.
pub struct Leadership {
    identity: Option<String>,
    observed: Mutex<Observed>,
    leader: AtomicBool,
    gauge: IntGauge,
}

impl Leadership {
    fn with(identity: Option<String>, leader: bool, metrics: &Metrics) -> Arc<Self> {
        let gauge = IntGauge::new(
            LEADER_GAUGE,
            "1 while this controller replica leads (answers ControllerPublish/Unpublish)",
        )
        .expect("a valid metric definition");
        metrics.register(Box::new(gauge.clone()));
        gauge.set(i64::from(leader));
        Arc::new(Leadership {
            identity,
            observed: Mutex::new(Observed::default()),
            leader: AtomicBool::new(leader),
            gauge,
        })
    }

    /// A single replica: always the leader.
    pub fn always(metrics: &Metrics) -> Arc<Self> {
        Self::with(None, true, metrics)
    }

    /// Follows a Lease as `identity` (this pod's name, sanitized as the sidecars do); not
    /// the leader until the Lease says so.
    pub fn following(identity: &str, metrics: &Metrics) -> Arc<Self> {
        Self::with(Some(sanitize(identity)), false, metrics)
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// The holder the Lease names now, if any.
    pub fn holder(&self) -> Option<String> {
        self.observed
            .lock()
            .record
            .as_ref()
            .and_then(|r| r.holder.clone())
    }

    /// Records a reading of the Lease seen at `now`.
    pub fn observe(&self, record: Option<LeaseRecord>, now: Instant) {
        let mut o = self.observed.lock();
        if o.record != record {
            o.record = record;
            o.at = Some(now);
        }
    }

    /// Whether the Lease names this replica and its holder's claim has not lapsed at `now`,
    /// and when that answer next changes by itself (the claim lapsing).
    pub fn judge(&self, now: Instant) -> (bool, Option<Instant>) {
        let o = self.observed.lock();
        let (Some(me), Some(r), Some(at)) = (&self.identity, &o.record, o.at) else {
            return (self.identity.is_none(), None);
        };
        if r.holder.as_deref() != Some(me.as_str()) {
            return (false, None);
        }
        let until = at + r.duration;
        (now < until, Some(until).filter(|u| now < *u))
    }

    fn set(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
        self.gauge.set(i64::from(leader));
    }

    /// Refusal of a table-changing RPC on a replica that does not lead.
    fn refusal(&self, rpc: &str) -> Status {
        let holder = self
            .holder()
            .map(|h| format!("the leader is {h}"))
            .unwrap_or_else(|| "no replica leads right now".to_owned());
        Status::unavailable(format!(
            "{rpc}: this controller replica does not lead ({holder}); the external-attacher of \
             the leading replica answers attachments; retry"
        ))
    }
}

/// Follows the Lease readings: leads once the Lease names this replica and the table is in
/// sync with the VolumeAttachment cache; stops leading as soon as it does not, or when the
/// holder's claim lapses without a renewal seen.
pub async fn run_leadership(
    leadership: Arc<Leadership>,
    mut events: LeaseEvents,
    sync: Arc<AttachmentSync>,
    stop: CancellationToken,
) {
    loop {
        let (should, lapses) = leadership.judge(Instant::now());
        if should != leadership.is_leader() {
            if should {
                // Warm already (mirrored at once while not leading); this pass closes the gap.
                match sync.sync(true, false) {
                    Some(n) => {
                        leadership.set(true);
                        report_active_migrations(sync.controller(), true);
                        tracing::info!(
                            corrections = n,
                            "this controller replica now leads: its attachment table is in sync \
                             with the VolumeAttachments; answering ControllerPublish/Unpublish"
                        );
                    }
                    None => tracing::warn!(
                        "the Lease names this replica, but the VolumeAttachment watch has not \
                         completed its first list: not answering attachments yet"
                    ),
                }
            } else {
                leadership.set(false);
                report_active_migrations(sync.controller(), false);
                tracing::warn!(
                    holder = leadership.holder(),
                    "this controller replica no longer leads: ControllerPublish/Unpublish are \
                     refused (UNAVAILABLE) here"
                );
            }
        }
        // Re-judge when the claim lapses, after a retry pause while waiting for the cache, or
        // at the next reading.
        let wait = match (should && !leadership.is_leader(), lapses) {
            (true, _) => Duration::from_millis(200),
            (false, Some(at)) => at.saturating_duration_since(Instant::now()),
            (false, None) => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            next = events.next() => match next {
                None => return,
                Some(Ok(record)) => leadership.observe(record, Instant::now()),
                Some(Err(e)) => tracing::warn!(
                    "watch of the attacher's Lease failed: {e}; retrying (leadership lapses if no \
                     renewal is seen within the Lease duration); check the controller's RBAC \
                     (leases: get, list, watch)"
                ),
            },
        }
    }
}

/// Sets `rds_csi_migration_active_migrations` to what this replica now reports: the
/// migrations in progress in its table when it leads (mirrored while it did not lead, so never
/// counted), none when it does not (the leader reports them). Called after the leadership
/// flag changed, so a migration that ends in between is not left counted.
fn report_active_migrations(ctl: &Controller, leader: bool) {
    let n = if leader {
        ctl.attachments()
            .snapshot()
            .values()
            .filter(|st| st.migration_in_progress())
            .count()
    } else {
        0
    };
    ctl.fencing
        .metrics
        .active_migrations
        .set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// Writes the attachment table to its store after every Publish/Unpublish, before the answer
/// (outside every shard lock: a snapshot, then the write on a blocking thread). Writes are
/// serialized; a failed write fails the RPC with UNAVAILABLE, and the CO's retry (idempotent
/// on the table) writes again.
pub struct Persistence {
    store: Arc<dyn AttachmentStore>,
    writing: tokio::sync::Mutex<()>,
}

impl Persistence {
    pub fn new(store: Arc<dyn AttachmentStore>) -> Self {
        Persistence {
            store,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    async fn save(&self, ctl: &Controller, rpc: &str) -> Result<(), Status> {
        let _one_at_a_time = self.writing.lock().await;
        let doc = persist::document(
            ctl.attachments().snapshot().values(),
            &persist::ClockPair::now(),
        );
        let store = Arc::clone(&self.store);
        let saved = tokio::task::spawn_blocking(move || store.save(&doc))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        saved.map_err(|e| {
            tracing::error!("{rpc}: the attachment table could not be saved: {e}");
            Status::unavailable(format!(
                "{rpc}: done in memory, but the controller's attachment state file could not be \
                 written ({e}); retry (check the state directory's disk)"
            ))
        })
    }
}

impl Controller {
    /// A fencing RPC (ControllerPublish/Unpublish, the only ones that change the table):
    /// refused, before its request is even read, unless this replica leads; once answered,
    /// the attachment table is saved (when kept on disk) before the answer is given. Every
    /// other RPC works on the RDS and is served by any replica.
    pub(super) async fn fenced<T>(
        &self,
        rpc: &'static str,
        call: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let leadership = &self.fencing.leadership;
        if !leadership.is_leader() {
            return Err(leadership.refusal(rpc));
        }
        let answer = call.await?;
        if let Some(p) = &self.fencing.persistence {
            p.save(self, rpc).await?;
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_name_and_identity_are_sanitized_as_the_sidecars_do() {
        assert_eq!(
            attacher_lease_name("rds.csi.mikrotik.com"),
            "external-attacher-leader-rds-csi-mikrotik-com"
        );
        assert_eq!(sanitize("pod_a."), "pod-a-X");
    }

    fn rec(holder: &str, renew: &str) -> Option<LeaseRecord> {
        Some(LeaseRecord {
            holder: Some(holder.into()),
            duration: Duration::from_secs(10),
            renew_time: Some(renew.into()),
        })
    }

    #[test]
    fn leads_while_the_lease_names_it_and_is_renewed_within_its_duration() {
        let l = Leadership::following("pod-b", &Metrics::new("controller"));
        let t0 = Instant::now();
        assert_eq!(l.judge(t0), (false, None), "no Lease seen yet");
        l.observe(rec("pod-a", "1"), t0);
        assert!(!l.judge(t0).0, "another holder");
        l.observe(rec("pod-b", "2"), t0);
        assert_eq!(l.judge(t0), (true, Some(t0 + Duration::from_secs(10))));
        // The same reading again is not a renewal: the claim still lapses 10 s after t0.
        l.observe(rec("pod-b", "2"), t0 + Duration::from_secs(8));
        assert!(!l.judge(t0 + Duration::from_secs(10)).0);
        // A renewal (renewTime changed) seen at t0+9 s extends it to t0+19 s.
        l.observe(rec("pod-b", "3"), t0 + Duration::from_secs(9));
        assert!(l.judge(t0 + Duration::from_secs(18)).0);
        assert!(!l.judge(t0 + Duration::from_secs(19)).0);
        l.observe(None, t0 + Duration::from_secs(20));
        assert!(!l.judge(t0 + Duration::from_secs(20)).0, "Lease deleted");
    }

    #[test]
    fn a_single_replica_always_leads() {
        let l = Leadership::always(&Metrics::new("controller"));
        assert!(l.is_leader());
        assert!(l.judge(Instant::now()).0);
    }
}
