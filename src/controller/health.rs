//! The controller's readiness (CSI Probe, `/readyz`): the RDS answered the last background
//! check of [`RdsMonitor`]. Read from memory, so a probe answers at once even while the RDS
//! hangs; no probe ever starts an SSH round trip of its own.

use crate::csi::identity::{Health, HealthCheck};
use tokio_util::sync::CancellationToken;

use crate::rds::monitor::{DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT};
use crate::rds::{RdsClient, RdsMonitor, Reachability};

/// Ready when the last background check of the RDS succeeded.
pub struct RdsReadiness(pub RdsMonitor);

impl RdsReadiness {
    /// Starts checking `rds` in the background, every [`DEFAULT_CHECK_INTERVAL`] and each
    /// check within [`DEFAULT_CHECK_TIMEOUT`], until `stop`.
    pub fn spawn(rds: RdsClient, stop: CancellationToken) -> Self {
        RdsReadiness(RdsMonitor::spawn(
            rds,
            DEFAULT_CHECK_INTERVAL,
            DEFAULT_CHECK_TIMEOUT,
            stop,
        ))
    }
}

#[tonic::async_trait]
impl HealthCheck for RdsReadiness {
    async fn check(&self) -> Health {
        match self.0.last() {
            Reachability::Up { .. } => Health::ready(),
            Reachability::NotChecked => {
                Health::not_ready("RDS not checked yet: the first background check is running")
            }
            Reachability::Down { cause, failures } => Health::not_ready(format!(
                "RDS unreachable ({failures} consecutive failed checks): {cause}"
            )),
        }
    }
}
