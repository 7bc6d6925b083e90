//! One RouterOS command on the shared connection: admitted by the circuit breaker, retried
//! where the module docs say it is safe, counted and timed.

use std::time::Duration;

use tokio::time::Instant;

use super::RdsClient;
use crate::rds::breaker::{Breaker, BreakerState};
use crate::rds::command::Command;
use crate::rds::error::{classify_output, RdsError, RdsErrorKind};
use crate::rds::transport::ExecError;

/// Attempts per command when retrying is safe.
const MAX_ATTEMPTS: u32 = 3;
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Mutation,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Mutation => "mutation",
        }
    }
}

/// A failed call, and whether a mutation may have happened anyway.
pub(super) struct CallError {
    pub(super) err: RdsError,
    pub(super) outcome_unknown: bool,
}

impl From<CallError> for RdsError {
    fn from(e: CallError) -> Self {
        e.err
    }
}

impl RdsClient {
    pub(super) async fn read(&self, cmd: &Command, deadline: Instant) -> Result<String, RdsError> {
        self.call(cmd, Kind::Read, deadline)
            .await
            .map_err(RdsError::from)
    }

    pub(super) async fn mutate(
        &self,
        cmd: &Command,
        deadline: Instant,
    ) -> Result<String, CallError> {
        self.call(cmd, Kind::Mutation, deadline).await
    }

    /// One command with its metrics.
    async fn call(
        &self,
        cmd: &Command,
        kind: Kind,
        deadline: Instant,
    ) -> Result<String, CallError> {
        let started = Instant::now();
        let result = self.attempts(cmd, kind, deadline).await;
        let m = &self.inner.metrics;
        m.duration
            .with_label_values(&[kind.label()])
            .observe(started.elapsed().as_secs_f64());
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => match e.err.kind() {
                RdsErrorKind::Timeout => "timeout",
                RdsErrorKind::Transport => "transport",
                _ => "error",
            },
        };
        m.commands.with_label_values(&[kind.label(), label]).inc();
        if let Err(e) = &result {
            tracing::debug!(command = %cmd, error = %e.err, "RDS command failed");
        }
        result
    }

    async fn attempts(
        &self,
        cmd: &Command,
        kind: Kind,
        deadline: Instant,
    ) -> Result<String, CallError> {
        let inner = &*self.inner;
        let fail = |err: RdsError, outcome_unknown: bool| CallError {
            err,
            outcome_unknown,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Err(rejected) = inner.breaker.admit(Instant::now()) {
                self.export_breaker(None);
                return Err(fail(
                    RdsError::new(
                        RdsErrorKind::Transport,
                        cmd.as_str(),
                        format!(
                            "the RDS at {} is unreachable: {} consecutive transport failures \
                             opened the circuit breaker; failing fast for {:.1}s more, then one \
                             probe is let through; check the RDS and the network",
                            inner.transport.address(),
                            inner.breaker.threshold(),
                            rejected.retry_in.as_secs_f64()
                        ),
                    ),
                    false,
                ));
            }
            self.export_breaker(None);
            let mut pending = Abandoned(Some(&inner.breaker));
            let exec = inner.transport.exec(cmd.as_str(), deadline).await;
            pending.0 = None;
            let (err, may_retry, outcome_unknown) = match exec {
                Ok(out) => {
                    inner.breaker.record_success();
                    self.export_breaker(None);
                    return classify_output(&out.stdout, &out.stderr, out.exit_status)
                        .map(|()| out.stdout)
                        .map_err(|e| fail(e.with_command(cmd.as_str()), false));
                }
                Err(ExecError::NotSent { err, retryable }) => {
                    inner.breaker.record_transport_failure(Instant::now());
                    self.export_breaker(Some(&err));
                    (err, retryable, false)
                }
                Err(ExecError::OutcomeUnknown(err)) => {
                    inner.breaker.record_transport_failure(Instant::now());
                    self.export_breaker(Some(&err));
                    (err, kind == Kind::Read, kind == Kind::Mutation)
                }
                Err(ExecError::Timeout(err)) => {
                    // An RDS that accepts TCP but never completes SSH (or never answers)
                    // shows only as timeouts: they count, or a hung RDS never opens it.
                    inner.breaker.record_transport_failure(Instant::now());
                    self.export_breaker(Some(&err));
                    return Err(fail(err, kind == Kind::Mutation));
                }
                Err(ExecError::TooLarge(err)) => {
                    inner.breaker.record_success();
                    self.export_breaker(None);
                    return Err(fail(err, kind == Kind::Mutation));
                }
            };
            let backoff = RETRY_BACKOFF * attempt;
            if !may_retry || attempt >= MAX_ATTEMPTS || Instant::now() + backoff >= deadline {
                return Err(fail(err, outcome_unknown));
            }
            tracing::debug!(command = %cmd, error = %err, attempt, "retrying RDS command");
            tokio::time::sleep(backoff).await;
        }
    }

    /// Sets the breaker gauge and logs a change of state: opening (or reopening after a
    /// failed probe) at warn with `cause`, the failure that did it; closing at info.
    fn export_breaker(&self, cause: Option<&RdsError>) {
        let inner = &*self.inner;
        let now = inner.breaker.state();
        let before = inner.metrics.breaker.get();
        inner.metrics.breaker.set(now as i64);
        if before == now as i64 {
            return;
        }
        let rds = inner.transport.address();
        let cause = cause.map(|e| e.message()).unwrap_or("");
        match now {
            BreakerState::Open => tracing::warn!(
                rds = %rds,
                cause = %cause,
                threshold = inner.breaker.threshold(),
                cooldown_seconds = inner.cfg.breaker_cooldown.as_secs_f64(),
                "RDS circuit breaker open: calls fail fast until one probe after the cooldown \
                 succeeds; check the RDS and the network"
            ),
            BreakerState::HalfOpen => {
                tracing::info!(rds = %rds, "RDS circuit breaker half-open: one probe call let through")
            }
            BreakerState::Closed => {
                tracing::info!(rds = %rds, "RDS circuit breaker closed: the RDS answers again")
            }
        }
    }
}

/// Armed while an admitted call runs: if the caller drops the future (a cancelled RPC),
/// the breaker learns the call was abandoned, so a half-open probe slot is not lost.
struct Abandoned<'a>(Option<&'a Breaker>);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            b.record_abandoned();
        }
    }
}
