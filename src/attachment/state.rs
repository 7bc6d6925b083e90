//! What the table knows about a volume, as callers see it: [`VolumeState`], a copy taken by
//! [`AttachmentTable::snapshot`](super::AttachmentTable::snapshot) with node names spelled out.
//! The table itself keeps a compact form (`rules::Entry`) and applies the rules there.

use std::sync::Arc;
use std::time::Instant;

use super::model::{AccessMode, MigrationTimeout};

/// One node's attachment of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub node: String,
    pub attached_at: Instant,
}

/// A two-node window of an RWX block volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Migration {
    pub(super) started: Instant,
    pub(super) timeout: MigrationTimeout,
    pub(super) timed_out: bool,
}

impl Migration {
    pub(super) fn deadline(&self) -> Instant {
        self.started + self.timeout.as_duration()
    }
}

/// A migration as seen from outside: the source is the first node, the target the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationView<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub started: Instant,
    pub deadline: Instant,
    pub timeout: MigrationTimeout,
    pub timed_out: bool,
}

/// Everything the table knows about one volume.
///
/// Invariants (kept by every rule, checked by the property tests): RWO has at most one node;
/// RWX block at most two, and exactly two iff a migration is recorded; `last_detach` is only
/// set while no node holds the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeState {
    pub(super) id: Arc<str>,
    pub(super) mode: AccessMode,
    pub(super) timeout: MigrationTimeout,
    pub(super) nodes: Vec<Attachment>,
    pub(super) migration: Option<Migration>,
    /// When and from which node the volume was last fully detached (the grace window).
    pub(super) last_detach: Option<(Instant, String)>,
}

impl VolumeState {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn mode(&self) -> AccessMode {
        self.mode
    }

    pub fn migration_timeout(&self) -> MigrationTimeout {
        self.timeout
    }

    /// Attached nodes, in attach order.
    pub fn nodes(&self) -> &[Attachment] {
        &self.nodes
    }

    pub fn migration(&self) -> Option<MigrationView<'_>> {
        self.migration.map(|m| MigrationView {
            source: &self.nodes[0].node,
            target: &self.nodes[1].node,
            started: m.started,
            deadline: m.deadline(),
            timeout: m.timeout,
            timed_out: m.timed_out,
        })
    }

    /// A migration whose window is still open (not yet timed out).
    pub fn migration_in_progress(&self) -> bool {
        self.migration.is_some_and(|m| !m.timed_out)
    }

    pub fn last_detach(&self) -> Option<Instant> {
        self.last_detach.as_ref().map(|(at, _)| *at)
    }
}
