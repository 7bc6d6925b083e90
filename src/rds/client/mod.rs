//! The RDS client the controller calls: typed operations over [`SshTransport`], each under
//! the caller's deadline, with retries only where they are safe and mutations of
//! unknown outcome resolved by looking (docs/architecture.md, "Correctness rules", rules 5
//! and 2), a circuit breaker, and metrics.
//!
//! Retry policy:
//! - reads (`print`) are retried after any transport failure, including a lost answer;
//! - any command is retried when nothing was sent (no connection, channel refused);
//! - a mutation whose answer was lost is never re-sent: `create_disk`, `copy_disk`,
//!   `resize_disk` and `delete_disk` look at the disk to learn what happened. The only
//!   exception is `/file remove [find name=..]`, which is idempotent (an empty `find`
//!   removes nothing), so sending it twice cannot do harm.
//!
//! Here: the configuration and the handle. The operations by what they act on: `disks`
//! (get, list, create, copy, resize, delete), `files` (backing files), `status` (identity
//! and pool capacity); `call` sends one command with its retries, breaker and metrics;
//! `metrics` registers the RDS series.

mod call;
mod disks;
mod files;
mod metrics;
mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::breaker::{Breaker, BreakerState};
use super::command::{BasePath, Command, MountPoint};
use super::error::{RdsError, RdsErrorKind};
use super::hostkey::{HostKeyPolicy, Pin};
use super::transport::{SshTransport, TransportConfig};
use super::ValidationError;
use crate::observability::Metrics;
use metrics::RdsMetrics;

pub use disks::LookFirst;
pub use metrics::{BREAKER_STATE, COMMANDS_TOTAL, COMMAND_DURATION, POOL_FREE, POOL_SIZE, RDS_UP};

pub const DEFAULT_MAX_CONCURRENT_COMMANDS: usize = 8;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(30);
/// A 10 000-disk `print detail` is about 7.5 MB; a runaway answer is still bounded.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 32 << 20;

/// How to reach and use the RDS.
#[derive(Debug, Clone)]
pub struct RdsConfig {
    /// `host` or `host:port` (port 22 by default).
    pub address: String,
    pub user: String,
    /// OpenSSH private key (ed25519 or RSA), unencrypted.
    pub key_file: PathBuf,
    pub host_key: HostKeyPolicy,
    pub base_path: BasePath,
    /// The pool the base path lives on (for capacity).
    pub pool: MountPoint,
    pub max_concurrent_commands: usize,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    pub max_output_bytes: usize,
}

impl RdsConfig {
    /// A configuration with the defaults above; the pool is the base path's first component.
    pub fn new(
        address: impl Into<String>,
        user: impl Into<String>,
        key_file: impl Into<PathBuf>,
        host_key: HostKeyPolicy,
        base_path: BasePath,
    ) -> Self {
        RdsConfig {
            address: address.into(),
            user: user.into(),
            key_file: key_file.into(),
            host_key,
            pool: base_path.mount_point(),
            base_path,
            max_concurrent_commands: DEFAULT_MAX_CONCURRENT_COMMANDS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive: DEFAULT_KEEPALIVE,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// `host:port` from `host`, `host:port`, `[v6]` or `[v6]:port`.
fn with_default_port(address: &str) -> String {
    let a = address.trim();
    let has_port = if let Some(rest) = a.strip_prefix('[') {
        rest.contains("]:")
    } else {
        a.matches(':').count() == 1
    };
    if has_port {
        a.to_string()
    } else if a.matches(':').count() > 1 && !a.starts_with('[') {
        format!("[{a}]:22")
    } else {
        format!("{a}:22")
    }
}

struct Inner {
    cfg: RdsConfig,
    transport: SshTransport,
    breaker: Breaker,
    metrics: RdsMetrics,
}

fn invalid(command: &str, e: ValidationError) -> RdsError {
    RdsError::new(RdsErrorKind::Invalid, command, e.to_string())
}

fn unparsable(command: &Command, e: impl std::fmt::Display) -> RdsError {
    RdsError::new(
        RdsErrorKind::Unknown,
        command.as_str(),
        format!("could not read the RDS's answer: {e}"),
    )
}

/// A cheap-to-clone handle on one shared SSH connection to the RDS.
#[derive(Clone)]
pub struct RdsClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RdsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdsClient")
            .field("address", &self.inner.transport.address())
            .field("user", &self.inner.cfg.user)
            .finish_non_exhaustive()
    }
}

impl RdsClient {
    /// Loads the key and checks the pin; does not connect (the first command does), so a
    /// down RDS never stops the process from starting. Registers the RDS metrics: create
    /// one client per [`Metrics`] and clone it.
    pub fn new(cfg: RdsConfig, metrics: &Metrics) -> Result<Self, RdsError> {
        let key = russh::keys::load_secret_key(&cfg.key_file, None).map_err(|e| {
            RdsError::new(
                RdsErrorKind::Invalid,
                "",
                format!(
                    "cannot load the SSH private key {}: {e}; it must be an unencrypted \
                     OpenSSH-format ed25519 or RSA key readable by this process",
                    cfg.key_file.display()
                ),
            )
        })?;
        let pin =
            Pin::parse(&cfg.host_key).map_err(|m| RdsError::new(RdsErrorKind::Invalid, "", m))?;
        let transport = SshTransport::new(TransportConfig {
            address: with_default_port(&cfg.address),
            user: cfg.user.clone(),
            key: Arc::new(key),
            key_file: cfg.key_file.display().to_string(),
            pin,
            max_concurrent: cfg.max_concurrent_commands,
            connect_timeout: cfg.connect_timeout,
            keepalive: cfg.keepalive,
            max_output_bytes: cfg.max_output_bytes,
        });
        let inner = Inner {
            breaker: Breaker::new(cfg.breaker_threshold, cfg.breaker_cooldown),
            metrics: RdsMetrics::register(metrics),
            transport,
            cfg,
        };
        Ok(RdsClient {
            inner: Arc::new(inner),
        })
    }

    /// The RDS's `host:port`, as connected to.
    pub fn address(&self) -> &str {
        self.inner.transport.address()
    }

    pub fn base_path(&self) -> &BasePath {
        &self.inner.cfg.base_path
    }

    /// SSH sessions opened so far; stays at 1 while the connection is healthy.
    pub fn connections_opened(&self) -> u64 {
        self.inner.transport.connects()
    }

    /// Sets `rds_csi_rds_up` (the background monitor's verdict).
    pub(crate) fn set_up(&self, up: bool) {
        self.inner.metrics.up.set(up as i64);
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_port_22_by_default() {
        assert_eq!(with_default_port("rds"), "rds:22");
        assert_eq!(with_default_port("10.0.0.1:2222"), "10.0.0.1:2222");
        assert_eq!(with_default_port("[::1]:2222"), "[::1]:2222");
        assert_eq!(with_default_port("[::1]"), "[::1]:22");
        assert_eq!(with_default_port("fe80::1"), "[fe80::1]:22");
    }
}
