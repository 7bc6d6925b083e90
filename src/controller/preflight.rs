//! The controller's preflight: the RDS answers over SSH with the pinned host key and the
//! configured key, and its pool has room.

use std::time::Duration;

use tokio::time::Instant;

use crate::observability::Metrics;
use crate::rds::{HostKeyPolicy, RdsClient, RdsConfig, RdsErrorKind};
use crate::runtime::cli::ControllerArgs;
use crate::runtime::preflight::{Check, Report};
use crate::runtime::RoleError;

/// Deadline of each RDS check: longer than the SSH connect timeout, so a refused or hung
/// RDS fails with the transport's own explanation.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(15);
/// Below this much free space the pool check fails: not even a 1 GiB volume fits.
pub const MIN_FREE_BYTES: u64 = 1 << 30;
/// Below this share of free space the pool check warns.
pub const WARN_FREE_PERCENT: u64 = 10;

/// `rds-csi doctor controller`: the controller's own flags (and `RDS_CSI_*` environment).
pub async fn run(a: ControllerArgs) -> Result<Report, RoleError> {
    let cfg = crate::controller::rds_config(&a)?;
    Ok(checks(cfg).await)
}

/// The RDS checks of `cfg`, each under [`CHECK_DEADLINE`].
pub async fn checks(cfg: RdsConfig) -> Report {
    let address = cfg.address.clone();
    let insecure = cfg.host_key == HostKeyPolicy::InsecureSkip;
    let pool = cfg.pool.clone();
    let rds = match RdsClient::new(cfg, &Metrics::new("doctor")) {
        Ok(c) => c,
        Err(e) => {
            return Report(vec![Check::fail(
                "rds-ssh",
                e.message().to_owned(),
                "fix --rds-key-file or --rds-host-key as the message says",
            )])
        }
    };
    let mut out = Vec::new();
    match rds.health(Instant::now() + CHECK_DEADLINE).await {
        Ok(identity) if insecure => out.push(Check::warn(
            "rds-ssh",
            format!(
                "the RDS at {address} answers as {identity:?}, but its host key is NOT verified \
                 (--rds-insecure-skip-host-key-check)"
            ),
            "pin the key with --rds-host-key (`ssh-keyscan <rds> | ssh-keygen -lf -` prints \
             its fingerprint)",
        )),
        Ok(identity) => out.push(Check::pass(
            "rds-ssh",
            format!(
                "the RDS at {address} answers as {identity:?} with the pinned host key and the \
                 configured SSH key"
            ),
        )),
        Err(e) => {
            let msg = e.message();
            let remedy = if msg.contains("does not match the pinned key") {
                "if the RDS's host key was changed on purpose, pin the new one with \
                 --rds-host-key; otherwise treat it as an attack and do not unpin"
            } else if msg.contains("refused public-key login") || msg.contains("authentication") {
                "add the public key of --rds-key-file to --rds-user on the RDS \
                 (`/user ssh-keys import`)"
            } else if e.kind() == RdsErrorKind::Timeout {
                "the RDS accepts no SSH session in time: check --rds-address (the SSH port), the \
                 network and the RDS's SSH service (`/ip service print`)"
            } else {
                "check --rds-address, the network between here and the RDS, and its SSH service \
                 (`/ip service print` on the RDS)"
            };
            out.push(Check::fail("rds-ssh", msg.to_owned(), remedy));
            // Without a session there is nothing more to ask.
            return Report(out);
        }
    }
    out.push(
        match rds.pool_capacity(Instant::now() + CHECK_DEADLINE).await {
            Ok(c) => {
                let pct = c.free.saturating_mul(100) / c.size.max(1);
                let detail = format!(
                    "pool {pool}: {} free of {} ({pct}%)",
                    gib(c.free),
                    gib(c.size)
                );
                if c.free < MIN_FREE_BYTES {
                    Check::fail(
                        "rds-pool",
                        detail,
                        "free space on the pool: delete unused volumes and snapshots, or grow it",
                    )
                } else if pct < WARN_FREE_PERCENT {
                    Check::warn(
                        "rds-pool",
                        detail,
                        "plan for more space: CreateVolume fails when the pool is full",
                    )
                } else {
                    Check::pass("rds-pool", detail)
                }
            }
            Err(e) => Check::fail(
                "rds-pool",
                format!("cannot read the pool {pool}: {}", e.message()),
                "check --volume-base-path: its first component must be a mount point on the RDS \
             (`/disk print` shows them)",
            ),
        },
    );
    Report(out)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}
