//! The node plugin's metrics. Labels are bounded: `op` is one of the Node RPCs, `result` is
//! `ok` or a gRPC code name, `action` one of the reconciler's actions.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts};
use tonic::Code;

use crate::observability::Metrics;

pub const OPERATIONS: &str = "rds_csi_node_operations_total";
pub const STAGE_DURATION: &str = "rds_csi_node_stage_duration_seconds";
pub const READ_LATENCY: &str = "rds_csi_node_device_read_latency_seconds";
pub const RECONCILER_ACTIONS: &str = "rds_csi_node_reconciler_actions_total";
/// Buckets of [`STAGE_DURATION`], in seconds: 50 ms to two minutes (a connect, device wait
/// and mkfs of a large volume).
const STAGE_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Buckets of [`READ_LATENCY`], in seconds: from a healthy 4 KiB read (~100 µs) to the
/// health read's own deadline.
const READ_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 2.0,
];
/// Every metric registered by [`NodeMetrics::new`] (docs are checked against this list).
pub const NAMES: &[&str] = &[OPERATIONS, STAGE_DURATION, READ_LATENCY, RECONCILER_ACTIONS];

#[derive(Clone)]
pub struct NodeMetrics {
    operations: IntCounterVec,
    pub stage_duration: Histogram,
    read_latency: HistogramVec,
    reconciler: IntCounterVec,
}

/// A gRPC code as a bounded label value.
pub fn result_label(code: Option<Code>) -> &'static str {
    match code {
        None => "ok",
        Some(Code::InvalidArgument) => "invalid_argument",
        Some(Code::Aborted) => "aborted",
        Some(Code::NotFound) => "not_found",
        Some(Code::AlreadyExists) => "already_exists",
        Some(Code::FailedPrecondition) => "failed_precondition",
        Some(Code::OutOfRange) => "out_of_range",
        Some(Code::ResourceExhausted) => "resource_exhausted",
        Some(Code::Unavailable) => "unavailable",
        Some(Code::DeadlineExceeded) => "deadline_exceeded",
        Some(Code::Unimplemented) => "unimplemented",
        Some(Code::Internal) => "internal",
        Some(_) => "other",
    }
}

impl NodeMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let operations = metrics.add(IntCounterVec::new(
            Opts::new(
                OPERATIONS,
                "Node RPCs by operation and result (ok or the gRPC code)",
            ),
            &["op", "result"],
        ));
        let stage_duration = metrics.add(Histogram::with_opts(
            HistogramOpts::new(
                STAGE_DURATION,
                "Duration of successful NodeStageVolume calls (connect, wait, probe, mkfs, mount)",
            )
            .buckets(STAGE_BUCKETS.to_vec()),
        ));
        let read_latency = metrics.add(HistogramVec::new(
            HistogramOpts::new(
                READ_LATENCY,
                "Latency of the 4 KiB health read made by NodeGetVolumeStats, by transport",
            )
            .buckets(READ_BUCKETS.to_vec()),
            &["transport"],
        ));
        let reconciler = metrics.add(IntCounterVec::new(
            Opts::new(
                RECONCILER_ACTIONS,
                "Reconnect-reconciler actions by action and result",
            ),
            &["action", "result"],
        ));
        NodeMetrics {
            operations,
            stage_duration,
            read_latency,
            reconciler,
        }
    }

    pub fn operation(&self, op: &'static str, code: Option<Code>) {
        self.operations
            .with_label_values(&[op, result_label(code)])
            .inc();
    }

    pub fn read_latency(&self, transport: &'static str, seconds: f64) {
        self.read_latency
            .with_label_values(&[transport])
            .observe(seconds);
    }

    /// `action`: `reconnect` | `disconnect_orphan` | `skip_orphan_held` | `skip_orphan_busy` |
    /// `skip_orphan_owned` | `drop_stale_record`; `result`: `ok` | `error`.
    pub fn reconciler(&self, action: &'static str, result: &'static str) {
        self.reconciler.with_label_values(&[action, result]).inc();
    }
}
