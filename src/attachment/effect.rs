//! What a table call did, returned to the caller so events, metrics and logs happen outside the
//! shard lock.

use std::time::{Duration, Instant};

/// Why a migration ended without the source detaching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// The target detached first: the migration was rolled back, the source keeps the volume.
    TargetDetached,
    /// The deadline passed with both nodes attached.
    Timeout,
    /// One of the two nodes was deleted from the cluster.
    NodeDeleted,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::TargetDetached => "target detached before the source (rolled back)",
            FailReason::Timeout => "migration timed out",
            FailReason::NodeDeleted => "a node of the migration was deleted",
        }
    }
}

/// Why a publish was refused for a reason other than another node holding the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    FilesystemRwx,
    IncompatibleMode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Attached {
        volume: String,
        node: String,
    },
    Detached {
        volume: String,
        node: String,
    },
    /// A publish refused because other node(s) hold the volume.
    Conflict {
        volume: String,
        requested_node: String,
        holders: Vec<String>,
    },
    /// A publish refused for a reason that involves no other node.
    Refused {
        volume: String,
        node: String,
        reason: RefusalReason,
    },
    /// A different node took over a volume fully detached `since_detach` ago (within the
    /// handoff grace period).
    GracePeriodUsed {
        volume: String,
        node: String,
        previous_node: String,
        since_detach: Duration,
    },
    MigrationStarted {
        volume: String,
        source: String,
        target: String,
        timeout: Duration,
    },
    /// A migration found in progress by `restore` (a controller restart); it keeps its
    /// original start and deadline.
    MigrationResumed {
        volume: String,
        source: String,
        target: String,
        started: Instant,
        deadline: Instant,
    },
    MigrationCompleted {
        volume: String,
        source: String,
        target: String,
        duration: Duration,
    },
    MigrationFailed {
        volume: String,
        source: String,
        target: String,
        reason: FailReason,
        elapsed: Duration,
    },
    /// An attachment dropped because its node was deleted from the cluster.
    StaleCleared {
        volume: String,
        node: String,
    },
}

impl Effect {
    pub fn volume(&self) -> &str {
        match self {
            Effect::Attached { volume, .. }
            | Effect::Detached { volume, .. }
            | Effect::Conflict { volume, .. }
            | Effect::Refused { volume, .. }
            | Effect::GracePeriodUsed { volume, .. }
            | Effect::MigrationStarted { volume, .. }
            | Effect::MigrationResumed { volume, .. }
            | Effect::MigrationCompleted { volume, .. }
            | Effect::MigrationFailed { volume, .. }
            | Effect::StaleCleared { volume, .. } => volume,
        }
    }
}
