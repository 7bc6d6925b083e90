//! The RDS client's metrics: names (documented in docs/operations.md) and their registration.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

use crate::observability::Metrics;

pub const BREAKER_STATE: &str = "rds_csi_rds_breaker_state";
pub const RDS_UP: &str = "rds_csi_rds_up";
pub const COMMANDS_TOTAL: &str = "rds_csi_rds_commands_total";
pub const COMMAND_DURATION: &str = "rds_csi_rds_command_duration_seconds";
/// Size and free space of the pool as last read (GetCapacity, which the external-provisioner
/// polls with --enable-capacity); 0 until the first read.
pub const POOL_SIZE: &str = "rds_csi_rds_pool_size_bytes";
pub const POOL_FREE: &str = "rds_csi_rds_pool_free_bytes";

pub(super) struct RdsMetrics {
    pub(super) commands: IntCounterVec,
    pub(super) duration: HistogramVec,
    pub(super) breaker: IntGauge,
    /// Set by [`super::RdsMonitor`]'s background checks.
    pub(super) up: IntGauge,
    pub(super) pool_size: IntGauge,
    pub(super) pool_free: IntGauge,
}

impl RdsMetrics {
    pub(super) fn register(metrics: &Metrics) -> Self {
        let commands = metrics.add(IntCounterVec::new(
            Opts::new(
                COMMANDS_TOTAL,
                "RouterOS commands sent to the RDS, by kind and result",
            ),
            &["kind", "result"],
        ));
        let duration = metrics.add(HistogramVec::new(
            HistogramOpts::new(
                COMMAND_DURATION,
                "Time from issuing a RouterOS command to its answer, retries included",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["kind"],
        ));
        let gauge = |name: &str, help: &str| metrics.add(IntGauge::new(name, help));
        let breaker = gauge(
            BREAKER_STATE,
            "RDS circuit breaker: 0 closed, 1 open (failing fast), 2 half-open (probing)",
        );
        let up = gauge(
            RDS_UP,
            "1 when the last background check of the RDS (SSH, /system identity print) \
             succeeded, 0 when it failed or none has finished yet",
        );
        let pool_size = gauge(
            POOL_SIZE,
            "Size of the RDS pool in bytes, as last read by GetCapacity (0: not read yet)",
        );
        let pool_free = gauge(
            POOL_FREE,
            "Free space of the RDS pool in bytes, as last read by GetCapacity (0: not read yet)",
        );
        // Every series exists from the start, so dashboards and alerts see zeros, not gaps.
        for kind in ["read", "mutation"] {
            duration.with_label_values(&[kind]);
            for result in ["ok", "error", "timeout", "transport"] {
                commands.with_label_values(&[kind, result]);
            }
        }
        RdsMetrics {
            commands,
            duration,
            breaker,
            up,
            pool_size,
            pool_free,
        }
    }
}
