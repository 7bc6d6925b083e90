//! Kubernetes events for attachment effects: reasons (bounded, used as a metric label too),
//! types, and messages in the wording operators already know from the Go driver.

use std::time::Duration;

use super::effect::Effect;

pub const VOLUME_ATTACHED: &str = "VolumeAttached";
pub const VOLUME_DETACHED: &str = "VolumeDetached";
pub const ATTACHMENT_CONFLICT: &str = "AttachmentConflict";
pub const STALE_ATTACHMENT_CLEARED: &str = "StaleAttachmentCleared";
pub const MIGRATION_STARTED: &str = "MigrationStarted";
pub const MIGRATION_COMPLETED: &str = "MigrationCompleted";
pub const MIGRATION_FAILED: &str = "MigrationFailed";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventReason {
    VolumeAttached,
    VolumeDetached,
    AttachmentConflict,
    StaleAttachmentCleared,
    MigrationStarted,
    MigrationCompleted,
    MigrationFailed,
}

impl EventReason {
    pub const ALL: [EventReason; 7] = [
        EventReason::VolumeAttached,
        EventReason::VolumeDetached,
        EventReason::AttachmentConflict,
        EventReason::StaleAttachmentCleared,
        EventReason::MigrationStarted,
        EventReason::MigrationCompleted,
        EventReason::MigrationFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::VolumeAttached => VOLUME_ATTACHED,
            EventReason::VolumeDetached => VOLUME_DETACHED,
            EventReason::AttachmentConflict => ATTACHMENT_CONFLICT,
            EventReason::StaleAttachmentCleared => STALE_ATTACHMENT_CLEARED,
            EventReason::MigrationStarted => MIGRATION_STARTED,
            EventReason::MigrationCompleted => MIGRATION_COMPLETED,
            EventReason::MigrationFailed => MIGRATION_FAILED,
        }
    }

    pub fn event_type(self) -> EventType {
        match self {
            EventReason::AttachmentConflict | EventReason::MigrationFailed => EventType::Warning,
            _ => EventType::Normal,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    /// The value of a core/v1 Event's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub reason: EventReason,
    pub event_type: EventType,
    pub message: String,
    /// The node the event is about (the attached, detached, refused or cleared node; a
    /// migration's target): Kubernetes events name it as their related object, so events about
    /// different nodes are never folded into one series.
    pub node: String,
}

/// The event an effect posts (on the volume's PVC), if any. Grace-period use,
/// refusals without another node, and resumed migrations are metrics and logs only.
pub fn event_for(effect: &Effect) -> Option<Event> {
    let (reason, message, node) = match effect {
        Effect::Attached { node, .. } => {
            (EventReason::VolumeAttached, format!("node: {node}"), node)
        }
        Effect::Detached { node, .. } => {
            (EventReason::VolumeDetached, format!("node: {node}"), node)
        }
        Effect::Conflict {
            requested_node,
            holders,
            ..
        } => (
            EventReason::AttachmentConflict,
            format!(
                "node {requested_node} refused: attached to {}",
                holders.join(", ")
            ),
            requested_node,
        ),
        Effect::StaleCleared { node, .. } => (
            EventReason::StaleAttachmentCleared,
            format!("node: {node} (node deleted)"),
            node,
        ),
        Effect::MigrationStarted {
            source,
            target,
            timeout,
            ..
        } => (
            EventReason::MigrationStarted,
            format!(
                "source: {source}, target: {target}, timeout: {}",
                go_duration(*timeout)
            ),
            target,
        ),
        Effect::MigrationCompleted {
            source,
            target,
            duration,
            ..
        } => (
            EventReason::MigrationCompleted,
            format!(
                "source: {source} → target: {target} (duration: {})",
                go_duration(*duration)
            ),
            target,
        ),
        Effect::MigrationFailed {
            source,
            target,
            reason,
            elapsed,
            ..
        } => (
            EventReason::MigrationFailed,
            format!(
                "{} (source: {source}, target: {target}, elapsed: {})",
                reason.as_str(),
                go_duration(*elapsed)
            ),
            target,
        ),
        Effect::Refused { .. }
        | Effect::GracePeriodUsed { .. }
        | Effect::MigrationResumed { .. } => return None,
    };
    Some(Event {
        reason,
        event_type: reason.event_type(),
        message,
        node: node.clone(),
    })
}

/// Formats a duration like Go's `time.Duration.String()`: `5m0s`, `45s`, `1h0m0s`, `1.5s`,
/// `250ms`, `0s` — the form Kubernetes users read everywhere else.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (unit, per) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(nanos / per, nanos % per, per));
    }
    let secs = nanos / 1_000_000_000;
    let s = decimal(secs % 60, nanos % 1_000_000_000, 1_000_000_000);
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// `whole.frac` with `frac` expressed in units of 1/`per`, trailing zeros dropped.
fn decimal(whole: u128, frac: u128, per: u128) -> String {
    if frac == 0 {
        return whole.to_string();
    }
    let width = per.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}
