//! The RDS checked in the background: a task asks `/system identity print` every
//! `interval`, each check under its own deadline, and keeps the last result. Readiness
//! (`/readyz`, the CSI Probe) reads that result and answers at once, however long a hung RDS
//! takes to fail; the `rds_csi_rds_up` gauge and the logs say when an outage starts and ends.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::RdsClient;

/// Time between two checks.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Deadline of one check: a check that has no answer by then is a failure (and counts on the
/// circuit breaker, see [`super::breaker`]).
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of the last check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// No check has finished yet (the first one starts at once).
    NotChecked,
    /// The RDS answered; `identity` is its `/system identity` name.
    Up { identity: String },
    /// The last check failed with `cause`; `failures` consecutive checks failed.
    Down { cause: String, failures: u32 },
}

impl Reachability {
    pub fn is_up(&self) -> bool {
        matches!(self, Reachability::Up { .. })
    }
}

/// A handle on the background check; cheap to clone. The task stops with the token given to
/// [`RdsMonitor::spawn`].
#[derive(Clone)]
pub struct RdsMonitor {
    last: watch::Receiver<Reachability>,
}

impl RdsMonitor {
    /// Starts checking `rds` now and then every `interval`, each check with a `timeout`
    /// deadline, until `stop` fires; sets the client's `rds_csi_rds_up` gauge.
    pub fn spawn(
        rds: RdsClient,
        interval: Duration,
        timeout: Duration,
        stop: CancellationToken,
    ) -> RdsMonitor {
        let (tx, rx) = watch::channel(Reachability::NotChecked);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut outage_started: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let started = Instant::now();
                let result = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = rds.health(started + timeout) => r,
                };
                let next = match result {
                    Ok(identity) => {
                        rds.set_up(true);
                        if let Some(since) = outage_started.take() {
                            tracing::info!(
                                rds = %rds.address(),
                                identity,
                                outage_seconds = since.elapsed().as_secs_f64(),
                                "RDS reachable again"
                            );
                        } else if !tx.borrow().is_up() {
                            tracing::info!(rds = %rds.address(), identity, "RDS reachable");
                        }
                        Reachability::Up { identity }
                    }
                    Err(e) => {
                        rds.set_up(false);
                        let failures = match &*tx.borrow() {
                            Reachability::Down { failures, .. } => failures + 1,
                            _ => 1,
                        };
                        if outage_started.is_none() {
                            outage_started = Some(started);
                            tracing::warn!(
                                rds = %rds.address(),
                                cause = %e,
                                took_seconds = started.elapsed().as_secs_f64(),
                                "RDS unreachable: a background check failed; volumes cannot be \
                                 created, deleted, expanded or snapshotted until it answers"
                            );
                        } else {
                            tracing::debug!(rds = %rds.address(), cause = %e, failures, "RDS still unreachable");
                        }
                        Reachability::Down {
                            cause: e.to_string(),
                            failures,
                        }
                    }
                };
                tx.send_replace(next);
            }
        });
        RdsMonitor { last: rx }
    }

    /// The outcome of the last finished check; never waits.
    pub fn last(&self) -> Reachability {
        self.last.borrow().clone()
    }

    /// Waits until the last outcome satisfies `f` (tests and start-up waits bound it with a
    /// timeout); returns it. `None` when the task has stopped.
    pub async fn wait_for(&self, f: impl FnMut(&Reachability) -> bool) -> Option<Reachability> {
        let mut rx = self.last.clone();
        rx.wait_for(f).await.ok().map(|r| r.clone())
    }
}
