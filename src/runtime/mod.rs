//! The life of a process: its command line ([`cli`]), one bootstrap for every role ([`run_role`]) with one exit-code
//! convention, the serving loop of the controller and node (metrics endpoint, CSI socket, a
//! graceful stop on SIGTERM/SIGINT), and the one way to run blocking work under a deadline
//! ([`blocking_until`]).
//!
//! Exit codes (docs/cli.md, "Exit status"):
//! - 0: done as asked (a server stopped by SIGTERM/SIGINT after draining; a demo whose steps
//!   all passed; a doctor whose checks all passed);
//! - 1: the role started and then failed (serving broke, a demo step or a doctor check
//!   failed);
//! - 2: the role did not start: a flag, a file or the host is not as required, and the
//!   message names what to fix (clap's own usage errors exit 2 too).

pub mod cli;
pub mod preflight;

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::csi::endpoint::Endpoint;
use crate::csi::identity::HealthCheck;
use crate::csi::server::{self, ServeError};
use crate::observability::{http, Metrics};

/// Why a role ended other than as asked; [`RoleError::exit_code`] is the convention above.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The role did not start (exit 2): the message names the flag, file or host fact to fix.
    #[error("{0}")]
    Start(String),
    /// The role started and then failed (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl RoleError {
    pub const START_EXIT: u8 = 2;
    pub const FAILED_EXIT: u8 = 1;

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            RoleError::Start(_) => Self::START_EXIT,
            RoleError::Failed(_) => Self::FAILED_EXIT,
        })
    }
}

/// A configuration message (`?` on a `Result<_, String>` while setting up): did not start.
impl From<String> for RoleError {
    fn from(s: String) -> Self {
        RoleError::Start(s)
    }
}

impl From<&str> for RoleError {
    fn from(s: &str) -> Self {
        RoleError::Start(s.to_owned())
    }
}

/// Binding the socket or the metrics address, or installing the signal handlers, is part of
/// starting; only the gRPC server breaking while it serves is a failure after the start.
impl From<RunError> for RoleError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Serve(ServeError::Transport { .. }) => RoleError::Failed(e.to_string()),
            RunError::Serve(_) | RunError::Io(_) => RoleError::Start(e.to_string()),
        }
    }
}

/// Runs `body` on a fresh multi-threaded tokio runtime and returns its result once the
/// runtime (and every task it still holds) is gone. A runtime that cannot start is
/// [`RoleError::Start`].
pub fn block_on_role<T>(body: impl Future<Output = Result<T, RoleError>>) -> Result<T, RoleError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RoleError::Start(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(body);
    drop(runtime);
    result
}

/// The bootstrap of every role: runs `body` (see [`block_on_role`]) and turns its result
/// into the process's exit status, printing `rds-csi <role>: <reason>` on stderr when it
/// did not end as asked.
pub fn run_role(role: &str, body: impl Future<Output = Result<(), RoleError>>) -> ExitCode {
    exit_status(role, block_on_role(body))
}

/// The exit status of a role's result, printing the reason of a failure on stderr.
pub fn exit_status(role: &str, result: Result<(), RoleError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rds-csi {role}: {e}");
            e.exit_code()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct ServeConfig {
    pub endpoint: Endpoint,
    pub metrics_address: Option<SocketAddr>,
    pub drain: Duration,
}

/// Serves until SIGTERM/SIGINT (or `stop`), then drains in-flight RPCs and returns Ok:
/// the process exits 0 after a graceful stop.
pub async fn serve_until_stopped(
    cfg: ServeConfig,
    routes: Routes,
    metrics: Metrics,
    health: Arc<dyn HealthCheck>,
    stop: CancellationToken,
) -> Result<(), RunError> {
    server::cancel_on_signals(stop.clone())?;
    let listener = server::bind(&cfg.endpoint).await?;
    let http_task = match cfg.metrics_address {
        Some(addr) => Some(http::serve(addr, metrics, health, stop.clone()).await?.1),
        None => None,
    };
    let result = server::serve(listener, routes, stop.clone(), cfg.drain).await;
    stop.cancel();
    if let Some(t) = http_task {
        let _ = t.await;
    }
    tracing::info!("stopped");
    result.map_err(RunError::from)
}

/// Blocking work that did not give an answer: it outlived its deadline, or it panicked.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    #[error("{what} did not finish before the call's deadline; the device or the kernel may be unresponsive")]
    DeadlineExceeded { what: String },
    #[error("{what}: {detail}")]
    Panicked { what: String, detail: String },
}

/// DEADLINE_EXCEEDED for a deadline, INTERNAL for a panic.
impl From<BlockingError> for crate::error::Error {
    fn from(e: BlockingError) -> Self {
        match e {
            BlockingError::DeadlineExceeded { .. } => {
                crate::error::Error::DeadlineExceeded(e.to_string())
            }
            BlockingError::Panicked { .. } => crate::error::Error::Internal(e.to_string()),
        }
    }
}

/// Runs blocking work (a system call, a sysfs walk, a device probe) on tokio's blocking
/// threads and answers by `deadline` at the latest. `what` names the work in the error
/// (e.g. `volume pvc-1: probing nvme0n1`). A thread stuck in the kernel cannot be
/// cancelled: past the deadline it is left to finish on its own, and the caller is answered.
pub async fn blocking_until<T, E>(
    what: impl Into<String>,
    deadline: Instant,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<BlockingError> + Send + 'static,
{
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(BlockingError::Panicked {
            what: what.into(),
            detail: join.to_string(),
        }
        .into()),
        Err(_) => Err(BlockingError::DeadlineExceeded { what: what.into() }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn a_role_that_did_not_start_exits_2_and_one_that_failed_exits_1() {
        assert_eq!(RoleError::Start("x".into()).exit_code(), ExitCode::from(2));
        assert_eq!(RoleError::Failed("x".into()).exit_code(), ExitCode::from(1));
        assert_eq!(run_role("test", async { Ok(()) }), ExitCode::SUCCESS);
        assert_eq!(
            run_role("test", async { Err("--flag is required".into()) }),
            ExitCode::from(2)
        );
    }

    #[test]
    fn a_socket_that_cannot_be_bound_is_a_start_error() {
        let e: RoleError = RunError::Serve(ServeError::NotASocket { path: "/x".into() }).into();
        assert!(matches!(e, RoleError::Start(_)), "{e:?}");
    }

    #[tokio::test]
    async fn blocking_work_past_its_deadline_is_deadline_exceeded_naming_it() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let r: Result<(), Error> = blocking_until("volume v1: probing nvme0n1", deadline, || {
            std::thread::sleep(Duration::from_millis(500));
            Ok(())
        })
        .await;
        let e = r.unwrap_err();
        assert!(matches!(e, Error::DeadlineExceeded(_)), "{e:?}");
        assert!(e.to_string().contains("volume v1: probing nvme0n1"), "{e}");
    }

    #[tokio::test]
    async fn blocking_work_answers_its_own_result_and_a_panic_is_internal() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let ok: Result<u32, Error> = blocking_until("sum", deadline, || Ok(2 + 2)).await;
        assert_eq!(ok.unwrap(), 4);
        let e = blocking_until::<(), Error>("walk sysfs", deadline, || panic!("boom"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Internal(_)) && e.to_string().contains("walk sysfs"),
            "{e}"
        );
    }
}
