//! The controller's readiness (CSI Probe, `/readyz`): the RDS answered the last background
//! check of [`RdsMonitor`]. Read from memory, so a probe answers at once even while the RDS
//! hangs; no probe ever starts an SSH round trip of its own.

use crate::csi::identity::{Health, HealthCheck};
use crate::rds::{RdsMonitor, Reachability};

/// Ready when the last background check of the RDS succeeded.
pub struct RdsReadiness(pub RdsMonitor);

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
