//! Prometheus metrics of the attachment table, updated from returned effects (outside the
//! shard locks). Labels are bounded: results, statuses, operations and event reasons — never
//! volume or node ids.

use std::time::{Duration, Instant};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
};

use super::effect::{Effect, FailReason};
use super::events::EventReason;
use crate::observability::metrics::Metrics;

pub const MIGRATIONS_TOTAL: &str = "rds_csi_migration_migrations_total";
pub const MIGRATION_DURATION_SECONDS: &str = "rds_csi_migration_duration_seconds";
pub const ACTIVE_MIGRATIONS: &str = "rds_csi_migration_active_migrations";
pub const ATTACH_TOTAL: &str = "rds_csi_attachment_attach_total";
pub const DETACH_TOTAL: &str = "rds_csi_attachment_detach_total";
pub const CONFLICTS_TOTAL: &str = "rds_csi_attachment_conflicts_total";
pub const GRACE_PERIOD_USED_TOTAL: &str = "rds_csi_attachment_grace_period_used_total";
pub const STALE_CLEARED_TOTAL: &str = "rds_csi_attachment_stale_cleared_total";
pub const OPERATION_DURATION_SECONDS: &str = "rds_csi_attachment_operation_duration_seconds";
pub const EVENTS_POSTED_TOTAL: &str = "rds_csi_events_posted_total";

/// Every metric registered by [`AttachmentMetrics::new`] (docs are checked against this list).
pub const NAMES: [&str; 10] = [
    MIGRATIONS_TOTAL,
    MIGRATION_DURATION_SECONDS,
    ACTIVE_MIGRATIONS,
    ATTACH_TOTAL,
    DETACH_TOTAL,
    CONFLICTS_TOTAL,
    GRACE_PERIOD_USED_TOTAL,
    STALE_CLEARED_TOTAL,
    OPERATION_DURATION_SECONDS,
    EVENTS_POSTED_TOTAL,
];

/// Migration windows are tens of seconds to minutes (the timeout is 30 s – 1 h).
const MIGRATION_BUCKETS: [f64; 8] = [15.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0];
/// A table operation is an in-memory update: microseconds unless a lock is contended.
const OPERATION_BUCKETS: [f64; 12] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.1,
    1.0,
];

/// A table call, the label of `rds_csi_attachment_operation_duration_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Publish,
    Unpublish,
    Sweep,
    ClearNode,
    Restore,
}

impl Operation {
    pub const ALL: [Operation; 5] = [
        Operation::Publish,
        Operation::Unpublish,
        Operation::Sweep,
        Operation::ClearNode,
        Operation::Restore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Publish => "publish",
            Operation::Unpublish => "unpublish",
            Operation::Sweep => "sweep",
            Operation::ClearNode => "clear_node",
            Operation::Restore => "restore",
        }
    }
}

#[derive(Clone)]
pub struct AttachmentMetrics {
    pub migrations: IntCounterVec,
    pub migration_duration: Histogram,
    pub active_migrations: IntGauge,
    pub attach: IntCounterVec,
    pub detach: IntCounterVec,
    pub conflicts: IntCounter,
    pub grace_period_used: IntCounter,
    pub stale_cleared: IntCounter,
    pub operation_duration: HistogramVec,
    pub events_posted: IntCounterVec,
}

fn counter_vec(name: &str, help: &str, label: &str, values: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), &[label]).expect("static metric definition");
    // Pre-create every bounded label value so dashboards see zeros, not missing series.
    for value in values {
        v.with_label_values(&[*value]);
    }
    v
}

impl AttachmentMetrics {
    /// Registers the metrics in `metrics`' registry (panics if called twice on one registry).
    pub fn new(metrics: &Metrics) -> Self {
        let reasons: Vec<&str> = EventReason::ALL.iter().map(|r| r.as_str()).collect();
        let ops: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        let m = AttachmentMetrics {
            migrations: counter_vec(
                MIGRATIONS_TOTAL,
                "Live migrations (two-node windows of RWX block volumes) ended, by result",
                "result",
                &["success", "failed", "timeout"],
            ),
            migration_duration: Histogram::with_opts(
                HistogramOpts::new(
                    MIGRATION_DURATION_SECONDS,
                    "How long a volume stayed attached to two nodes, whatever the result",
                )
                .buckets(MIGRATION_BUCKETS.to_vec()),
            )
            .expect("static metric definition"),
            active_migrations: IntGauge::new(
                ACTIVE_MIGRATIONS,
                "Live migrations in progress (window open, not timed out)",
            )
            .expect("static metric definition"),
            attach: counter_vec(
                ATTACH_TOTAL,
                "Attach attempts that changed or were refused by the attachment table, by status",
                "status",
                &["success", "conflict", "error"],
            ),
            detach: counter_vec(
                DETACH_TOTAL,
                "Detaches applied to the attachment table, by status (stale: node deleted)",
                "status",
                &["success", "stale"],
            ),
            conflicts: IntCounter::new(
                CONFLICTS_TOTAL,
                "Publishes refused because other node(s) hold the volume",
            )
            .expect("static metric definition"),
            grace_period_used: IntCounter::new(
                GRACE_PERIOD_USED_TOTAL,
                "Volumes taken over by a new node within the grace period after a full detach",
            )
            .expect("static metric definition"),
            stale_cleared: IntCounter::new(
                STALE_CLEARED_TOTAL,
                "Attachments dropped because their Kubernetes Node was deleted",
            )
            .expect("static metric definition"),
            operation_duration: HistogramVec::new(
                HistogramOpts::new(
                    OPERATION_DURATION_SECONDS,
                    "Time spent in an attachment-table call, by operation",
                )
                .buckets(OPERATION_BUCKETS.to_vec()),
                &["operation"],
            )
            .expect("static metric definition"),
            events_posted: counter_vec(
                EVENTS_POSTED_TOTAL,
                "Kubernetes events posted for attachments and migrations, by reason",
                "reason",
                &reasons,
            ),
        };
        for op in ops {
            m.operation_duration.with_label_values(&[op]);
        }
        metrics.register(Box::new(m.migrations.clone()));
        metrics.register(Box::new(m.migration_duration.clone()));
        metrics.register(Box::new(m.active_migrations.clone()));
        metrics.register(Box::new(m.attach.clone()));
        metrics.register(Box::new(m.detach.clone()));
        metrics.register(Box::new(m.conflicts.clone()));
        metrics.register(Box::new(m.grace_period_used.clone()));
        metrics.register(Box::new(m.stale_cleared.clone()));
        metrics.register(Box::new(m.operation_duration.clone()));
        metrics.register(Box::new(m.events_posted.clone()));
        m
    }

    /// Applies the effects of one table call.
    pub fn record(&self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Attached { .. } => self.attach.with_label_values(&["success"]).inc(),
                Effect::Conflict { .. } => {
                    self.attach.with_label_values(&["conflict"]).inc();
                    self.conflicts.inc();
                }
                Effect::Refused { .. } => self.attach.with_label_values(&["error"]).inc(),
                Effect::Detached { .. } => self.detach.with_label_values(&["success"]).inc(),
                Effect::StaleCleared { .. } => {
                    self.detach.with_label_values(&["stale"]).inc();
                    self.stale_cleared.inc();
                }
                Effect::GracePeriodUsed { .. } => self.grace_period_used.inc(),
                Effect::MigrationStarted { .. } | Effect::MigrationResumed { .. } => {
                    self.active_migrations.inc()
                }
                Effect::MigrationCompleted { duration, .. } => {
                    self.migration_ended("success", *duration)
                }
                Effect::MigrationFailed {
                    reason, elapsed, ..
                } => self.migration_ended(
                    match reason {
                        FailReason::Timeout => "timeout",
                        FailReason::TargetDetached | FailReason::NodeDeleted => "failed",
                    },
                    *elapsed,
                ),
            }
        }
    }

    fn migration_ended(&self, result: &str, elapsed: Duration) {
        self.migrations.with_label_values(&[result]).inc();
        self.migration_duration.observe(elapsed.as_secs_f64());
        // Every ending was preceded by exactly one start/resume, so the gauge stays >= 0.
        self.active_migrations.dec();
    }

    pub fn observe_operation(&self, op: Operation, elapsed: Duration) {
        self.operation_duration
            .with_label_values(&[op.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    /// Runs one table call and records its duration (the table itself never reads the clock).
    pub fn timed<T>(&self, op: Operation, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.observe_operation(op, start.elapsed());
        out
    }

    /// Counts an event the Kubernetes sink actually posted.
    pub fn event_posted(&self, reason: EventReason) {
        self.events_posted
            .with_label_values(&[reason.as_str()])
            .inc();
    }
}
