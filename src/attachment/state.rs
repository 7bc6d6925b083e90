//! The rules for one volume (`VolumeState`) and an unsharded map of volumes with its timer index
//! (`VolumeMap`). The sharded table locks one `VolumeMap` per shard; a benchmark can lock a
//! single one to compare against a global lock with exactly the same rules.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::effect::{Effect, FailReason, RefusalReason};
use super::error::AttachError;
use super::model::{AccessMode, MigrationTimeout, PublishRequest, RequestedAccess, RestoreRecord};

/// One node's attachment of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub node: String,
    pub attached_at: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Migration {
    started: Instant,
    timeout: MigrationTimeout,
    timed_out: bool,
}

impl Migration {
    fn deadline(&self) -> Instant {
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
/// Invariants (kept by every method, checked by the property tests): RWO has at most one node;
/// RWX block at most two, and exactly two iff a migration is recorded; `last_detach` is only
/// set while no node holds the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeState {
    id: Arc<str>,
    mode: AccessMode,
    timeout: MigrationTimeout,
    nodes: Vec<Attachment>,
    migration: Option<Migration>,
    /// When and from which node the volume was last fully detached (the grace window).
    last_detach: Option<(Instant, String)>,
}

/// How a node leaves a volume.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leave {
    Unpublish,
    NodeDeleted,
}

impl VolumeState {
    fn new(id: Arc<str>, mode: AccessMode, timeout: MigrationTimeout) -> Self {
        VolumeState {
            id,
            mode,
            timeout,
            nodes: Vec::with_capacity(1),
            migration: None,
            last_detach: None,
        }
    }

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

    /// The instant at which `sweep` has work for this volume: a migration deadline, or the end
    /// of a grace window.
    fn timer(&self, grace: Duration) -> Option<Instant> {
        match (&self.migration, &self.last_detach) {
            (Some(m), _) if !m.timed_out => Some(m.deadline()),
            // checked: an absurd grace period means a window that never lapses, not a panic.
            (None, Some((at, _))) => at.checked_add(grace),
            _ => None,
        }
    }

    /// No node and no grace window: the entry carries no information and is dropped.
    fn is_idle(&self) -> bool {
        self.nodes.is_empty() && self.last_detach.is_none()
    }

    /// Marks the migration timed out once its deadline has passed. Called at the start of every
    /// operation on the volume, so the result does not depend on when the sweep last ran.
    fn expire(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if let Some(m) = &mut self.migration {
            if !m.timed_out && now >= m.deadline() {
                m.timed_out = true;
                fx.push(Effect::MigrationFailed {
                    volume: self.id.to_string(),
                    source: self.nodes[0].node.clone(),
                    target: self.nodes[1].node.clone(),
                    reason: FailReason::Timeout,
                    elapsed: now.saturating_duration_since(m.started),
                });
            }
        }
    }

    fn publish(
        &mut self,
        mode: AccessMode,
        req: &PublishRequest<'_>,
        now: Instant,
        grace: Duration,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AttachError> {
        self.expire(now, fx);
        if self.nodes.iter().any(|a| a.node == req.node) {
            if self.mode != mode {
                fx.push(Effect::Refused {
                    volume: req.volume.to_owned(),
                    node: req.node.to_owned(),
                    reason: RefusalReason::IncompatibleMode,
                });
                return Err(AttachError::IncompatibleMode {
                    volume: req.volume.to_owned(),
                    node: req.node.to_owned(),
                    attached_as: self.mode,
                    requested: mode,
                });
            }
            return Ok(()); // idempotent: already published here
        }

        if self.nodes.is_empty() {
            // Free. The grace window only ever applies here — to a volume no node holds — so a
            // stale detach time can never let a node in beside (or instead of) a live holder.
            if let Some((at, previous_node)) = self.last_detach.take() {
                let since_detach = now.saturating_duration_since(at);
                if since_detach < grace && previous_node != req.node {
                    fx.push(Effect::GracePeriodUsed {
                        volume: req.volume.to_owned(),
                        node: req.node.to_owned(),
                        previous_node,
                        since_detach,
                    });
                }
            }
            self.mode = mode;
            self.timeout = req.migration_timeout;
            self.attach(req, now, fx);
            return Ok(());
        }

        let err = match self.migration {
            Some(m) => {
                let (source_node, target_node) =
                    (self.nodes[0].node.clone(), self.nodes[1].node.clone());
                if m.timed_out {
                    AttachError::MigrationTimedOut {
                        volume: req.volume.to_owned(),
                        requested: req.node.to_owned(),
                        source_node,
                        target_node,
                        timeout: m.timeout.as_duration(),
                    }
                } else {
                    AttachError::MigrationInProgress {
                        volume: req.volume.to_owned(),
                        requested: req.node.to_owned(),
                        source_node,
                        target_node,
                    }
                }
            }
            // One holder: a second node is a migration only if both sides say RWX block.
            None if self.mode == AccessMode::RwxBlock && mode == AccessMode::RwxBlock => {
                let m = Migration {
                    started: now,
                    timeout: self.timeout,
                    timed_out: false,
                };
                self.migration = Some(m);
                self.attach(req, now, fx);
                fx.push(Effect::MigrationStarted {
                    volume: req.volume.to_owned(),
                    source: self.nodes[0].node.clone(),
                    target: req.node.to_owned(),
                    timeout: m.timeout.as_duration(),
                });
                return Ok(());
            }
            None => AttachError::HeldByAnotherNode {
                volume: req.volume.to_owned(),
                requested: req.node.to_owned(),
                holder: self.nodes[0].node.clone(),
            },
        };
        fx.push(Effect::Conflict {
            volume: req.volume.to_owned(),
            requested_node: req.node.to_owned(),
            holders: err.holders(),
        });
        Err(err)
    }

    fn attach(&mut self, req: &PublishRequest<'_>, now: Instant, fx: &mut Vec<Effect>) {
        self.nodes.push(Attachment {
            node: req.node.to_owned(),
            attached_at: now,
        });
        fx.push(Effect::Attached {
            volume: req.volume.to_owned(),
            node: req.node.to_owned(),
        });
    }

    fn leave(
        &mut self,
        node: &str,
        how: Leave,
        now: Instant,
        grace: Duration,
        fx: &mut Vec<Effect>,
    ) {
        self.expire(now, fx);
        let Some(i) = self.nodes.iter().position(|a| a.node == node) else {
            return; // idempotent: not attached here
        };
        let gone = self.nodes.remove(i);
        let volume = self.id.to_string();
        fx.push(match how {
            Leave::Unpublish => Effect::Detached {
                volume: volume.clone(),
                node: gone.node.clone(),
            },
            Leave::NodeDeleted => Effect::StaleCleared {
                volume: volume.clone(),
                node: gone.node.clone(),
            },
        });
        if let Some(m) = self.migration.take() {
            // A timed-out migration already had its one result (at the sweep).
            if !m.timed_out {
                let other = self.nodes[0].node.clone();
                let (source, target) = if i == 0 {
                    (gone.node.clone(), other)
                } else {
                    (other, gone.node.clone())
                };
                let elapsed = now.saturating_duration_since(m.started);
                fx.push(match (how, i) {
                    (Leave::Unpublish, 0) => Effect::MigrationCompleted {
                        volume,
                        source,
                        target,
                        duration: elapsed,
                    },
                    (Leave::Unpublish, _) => Effect::MigrationFailed {
                        volume,
                        source,
                        target,
                        reason: FailReason::TargetDetached,
                        elapsed,
                    },
                    (Leave::NodeDeleted, _) => Effect::MigrationFailed {
                        volume,
                        source,
                        target,
                        reason: FailReason::NodeDeleted,
                        elapsed,
                    },
                });
            }
        }
        // Only an orderly full detach opens a handoff window; a deleted node hands nothing off.
        if self.nodes.is_empty() && how == Leave::Unpublish && !grace.is_zero() {
            self.last_detach = Some((now, gone.node));
        }
    }
}

/// Volumes by id plus the index of their timers (migration deadlines, grace-window ends), so
/// `sweep` and `next_deadline` never scan every volume.
#[derive(Debug)]
pub struct VolumeMap {
    volumes: HashMap<Arc<str>, VolumeState>,
    timers: BTreeSet<(Instant, Arc<str>)>,
    grace: Duration,
}

impl VolumeMap {
    pub fn new(grace_period: Duration) -> Self {
        VolumeMap {
            volumes: HashMap::new(),
            timers: BTreeSet::new(),
            grace: grace_period,
        }
    }

    pub fn grace_period(&self) -> Duration {
        self.grace
    }

    pub fn publish(
        &mut self,
        req: &PublishRequest<'_>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AttachError> {
        let mode = match req.access.mode(req.volume) {
            Ok(mode) => mode,
            Err(e) => {
                fx.push(Effect::Refused {
                    volume: req.volume.to_owned(),
                    node: req.node.to_owned(),
                    reason: RefusalReason::FilesystemRwx,
                });
                return Err(e);
            }
        };
        let grace = self.grace;
        match self.volumes.get_mut(req.volume) {
            Some(st) => {
                let before = st.timer(grace);
                let result = st.publish(mode, req, now, grace, fx);
                retime(&mut self.timers, st, before, grace);
                result
            }
            None => {
                let id: Arc<str> = Arc::from(req.volume);
                let mut st = VolumeState::new(Arc::clone(&id), mode, req.migration_timeout);
                st.attach(req, now, fx);
                self.volumes.insert(id, st);
                Ok(())
            }
        }
    }

    pub fn unpublish(&mut self, volume: &str, node: &str, now: Instant, fx: &mut Vec<Effect>) {
        self.leave(volume, node, Leave::Unpublish, now, fx);
    }

    fn leave(&mut self, volume: &str, node: &str, how: Leave, now: Instant, fx: &mut Vec<Effect>) {
        let grace = self.grace;
        let Some(st) = self.volumes.get_mut(volume) else {
            return;
        };
        let before = st.timer(grace);
        st.leave(node, how, now, grace, fx);
        retime(&mut self.timers, st, before, grace);
        if st.is_idle() {
            self.volumes.remove(volume);
        }
    }

    /// Times out migrations whose deadline passed and drops lapsed grace windows.
    pub fn sweep(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let grace = self.grace;
        while self.timers.first().is_some_and(|(at, _)| *at <= now) {
            let Some((at, id)) = self.timers.pop_first() else {
                break;
            };
            let Some(st) = self.volumes.get_mut(&id) else {
                continue;
            };
            st.expire(now, fx);
            if st.nodes.is_empty() {
                st.last_detach = None; // the grace window (this timer) has lapsed
            }
            debug_assert!(
                st.timer(grace) != Some(at),
                "a due timer is consumed by expiry"
            );
            // The popped timer was the volume's current one (already out of the index).
            retime(&mut self.timers, st, None, grace);
            if st.is_idle() {
                self.volumes.remove(&id);
            }
        }
    }

    /// Drops every attachment of `node` (the Kubernetes Node was deleted).
    pub fn clear_node(&mut self, node: &str, now: Instant, fx: &mut Vec<Effect>) {
        let held: Vec<Arc<str>> = self
            .volumes
            .values()
            .filter(|st| st.nodes.iter().any(|a| a.node == node))
            .map(|st| Arc::clone(&st.id))
            .collect();
        for id in held {
            self.leave(&id, node, Leave::NodeDeleted, now, fx);
        }
    }

    /// Re-applies one attachment found at start, at its own attach time and under the same
    /// rules as a publish. A second node of an RWX block volume resumes the migration with its
    /// original start; a record the rules refuse comes back as a `Conflict`/`Refused` effect.
    pub fn restore(&mut self, rec: &RestoreRecord, fx: &mut Vec<Effect>) {
        let req = PublishRequest {
            volume: &rec.volume,
            node: &rec.node,
            access: match rec.mode {
                AccessMode::Rwo => RequestedAccess::SingleNode,
                AccessMode::RwxBlock => RequestedAccess::MultiNodeBlock,
            },
            migration_timeout: rec.migration_timeout,
        };
        let mut inner = Vec::new();
        // A refusal is reported through its effect; there is no caller to return it to.
        let _ = self.publish(&req, rec.attached_at, &mut inner);
        for e in inner {
            match e {
                // Not a new attachment: it existed before the restart.
                Effect::Attached { .. } => {}
                Effect::MigrationStarted {
                    volume,
                    source,
                    target,
                    timeout,
                } => fx.push(Effect::MigrationResumed {
                    volume,
                    source,
                    target,
                    started: rec.attached_at,
                    deadline: rec.attached_at + timeout,
                }),
                other => fx.push(other),
            }
        }
    }

    /// The earliest instant at which `sweep` has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    pub fn get(&self, volume: &str) -> Option<&VolumeState> {
        self.volumes.get(volume)
    }

    pub fn iter(&self) -> impl Iterator<Item = &VolumeState> {
        self.volumes.values()
    }

    pub fn len(&self) -> usize {
        self.volumes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }
}

/// Keeps the timer index equal to each volume's current timer.
fn retime(
    timers: &mut BTreeSet<(Instant, Arc<str>)>,
    st: &VolumeState,
    before: Option<Instant>,
    grace: Duration,
) {
    let after = st.timer(grace);
    if before != after {
        if let Some(at) = before {
            timers.remove(&(at, Arc::clone(&st.id)));
        }
        if let Some(at) = after {
            timers.insert((at, Arc::clone(&st.id)));
        }
    }
}
