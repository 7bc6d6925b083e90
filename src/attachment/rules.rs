//! The rules for one volume, on the table's compact form of it ([`Entry`]): nodes by
//! [`NodeId`], at most two holders inline. Node names are read from the shard's
//! [`NodeNames`] only to fill effects and errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::key::Key;

use super::effect::{Effect, FailReason, RefusalReason};
use super::error::AttachError;
use super::model::{AccessMode, MigrationTimeout, PublishRequest};
use super::nodes::{NodeId, NodeNames};
use super::state::{Attachment, Migration, VolumeState};

/// One node's attachment.
#[derive(Clone, Copy, Debug)]
struct Held {
    node: NodeId,
    attached_at: Instant,
}

/// The attached nodes in attach order: at most two (RWO one; RWX block two only during a
/// migration), so they live inline.
#[derive(Clone, Copy, Debug, Default)]
struct Holders([Option<Held>; 2]);

impl Holders {
    fn len(&self) -> usize {
        self.iter().count()
    }

    fn is_empty(&self) -> bool {
        self.0[0].is_none()
    }

    fn iter(&self) -> impl Iterator<Item = &Held> {
        self.0.iter().map_while(Option::as_ref)
    }

    fn node(&self, i: usize) -> NodeId {
        self.0[i].expect("holder index within the holders").node
    }

    fn position(&self, node: NodeId) -> Option<usize> {
        self.iter().position(|h| h.node == node)
    }

    fn push(&mut self, held: Held) {
        let i = self.len();
        assert!(i < 2, "the rules never attach a third node");
        self.0[i] = Some(held);
    }

    fn remove(&mut self, i: usize) -> Held {
        let gone = self.0[i].take().expect("holder index within the holders");
        if i == 0 {
            self.0[0] = self.0[1].take();
        }
        gone
    }
}

/// How a node leaves a volume.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Leave {
    Unpublish,
    NodeDeleted,
}

/// Everything the table knows about one volume (see [`VolumeState`] for the invariants).
#[derive(Debug)]
pub(super) struct Entry {
    /// `hash::hash_str(id)`, kept so the shard's table never rehashes an id.
    pub(super) hash: u64,
    pub(super) id: Key,
    mode: AccessMode,
    timeout: MigrationTimeout,
    holders: Holders,
    migration: Option<Migration>,
    /// When and from which node the volume was last fully detached (the grace window).
    last_detach: Option<(Instant, NodeId)>,
}

impl Entry {
    pub(super) fn new(hash: u64, id: Key, mode: AccessMode, timeout: MigrationTimeout) -> Self {
        Entry {
            hash,
            id,
            mode,
            timeout,
            holders: Holders::default(),
            migration: None,
            last_detach: None,
        }
    }

    /// The caller's copy, node names spelled out.
    pub(super) fn view(&self, names: &NodeNames) -> VolumeState {
        VolumeState {
            id: Arc::from(self.id.as_str()),
            mode: self.mode,
            timeout: self.timeout,
            nodes: self
                .holders
                .iter()
                .map(|h| Attachment {
                    node: names.name(h.node).to_owned(),
                    attached_at: h.attached_at,
                })
                .collect(),
            migration: self.migration,
            last_detach: self
                .last_detach
                .map(|(at, node)| (at, names.name(node).to_owned())),
        }
    }

    pub(super) fn holds(&self, node: NodeId) -> bool {
        self.holders.position(node).is_some()
    }

    /// Attached node names, in attach order.
    pub(super) fn node_names(&self, names: &NodeNames) -> Vec<String> {
        self.holders
            .iter()
            .map(|h| names.name(h.node).to_owned())
            .collect()
    }

    pub(super) fn migration_timed_out(&self) -> bool {
        self.migration.is_some_and(|m| m.timed_out)
    }

    /// The instant at which `sweep` has work for this volume: a migration deadline, or the end
    /// of a grace window.
    pub(super) fn timer(&self, grace: Duration) -> Option<Instant> {
        match (&self.migration, &self.last_detach) {
            (Some(m), _) if !m.timed_out => Some(m.deadline()),
            // checked: an absurd grace period means a window that never lapses, not a panic.
            (None, Some((at, _))) => at.checked_add(grace),
            _ => None,
        }
    }

    /// No node and no grace window: the entry carries no information and is dropped.
    pub(super) fn is_idle(&self) -> bool {
        self.holders.is_empty() && self.last_detach.is_none()
    }

    /// Ends a lapsed grace window (the sweep found its timer due).
    pub(super) fn end_grace_window(&mut self, names: &mut NodeNames) {
        if self.holders.is_empty() {
            if let Some((_, node)) = self.last_detach.take() {
                names.release(node);
            }
        }
    }

    /// Marks the migration timed out once its deadline has passed. Called at the start of every
    /// operation on the volume, so the result does not depend on when the sweep last ran.
    /// `volume` is this entry's id (the caller's copy: reading it from the entry would decode
    /// it).
    pub(super) fn expire(
        &mut self,
        volume: &str,
        now: Instant,
        names: &NodeNames,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(m) = &mut self.migration {
            if !m.timed_out && now >= m.deadline() {
                m.timed_out = true;
                fx.push(Effect::MigrationFailed {
                    volume: volume.to_owned(),
                    source: names.name(self.holders.node(0)).to_owned(),
                    target: names.name(self.holders.node(1)).to_owned(),
                    reason: FailReason::Timeout,
                    elapsed: now.saturating_duration_since(m.started),
                });
            }
        }
    }

    /// `node` is the requesting node's id if the shard knows its name (else it holds nothing
    /// here).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish(
        &mut self,
        mode: AccessMode,
        req: &PublishRequest<'_>,
        node: Option<NodeId>,
        now: Instant,
        grace: Duration,
        names: &mut NodeNames,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AttachError> {
        self.expire(req.volume, now, names, fx);
        if node.is_some_and(|n| self.holds(n)) {
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

        if self.holders.is_empty() {
            // Free. The grace window only ever applies here — to a volume no node holds — so a
            // stale detach time can never let a node in beside (or instead of) a live holder.
            let window = self.last_detach.take();
            if let Some((at, previous)) = window {
                let since_detach = now.saturating_duration_since(at);
                if since_detach < grace && node != Some(previous) {
                    fx.push(Effect::GracePeriodUsed {
                        volume: req.volume.to_owned(),
                        node: req.node.to_owned(),
                        previous_node: names.name(previous).to_owned(),
                        since_detach,
                    });
                }
            }
            self.mode = mode;
            self.timeout = req.migration_timeout;
            self.attach(req, now, names, fx);
            // After the attach, so a node re-attaching keeps its name interned throughout.
            if let Some((_, previous)) = window {
                names.release(previous);
            }
            return Ok(());
        }

        let err = match self.migration {
            Some(m) => {
                let source_node = names.name(self.holders.node(0)).to_owned();
                let target_node = names.name(self.holders.node(1)).to_owned();
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
                self.attach(req, now, names, fx);
                fx.push(Effect::MigrationStarted {
                    volume: req.volume.to_owned(),
                    source: names.name(self.holders.node(0)).to_owned(),
                    target: req.node.to_owned(),
                    timeout: m.timeout.as_duration(),
                });
                return Ok(());
            }
            None => AttachError::HeldByAnotherNode {
                volume: req.volume.to_owned(),
                requested: req.node.to_owned(),
                holder: names.name(self.holders.node(0)).to_owned(),
            },
        };
        fx.push(Effect::Conflict {
            volume: req.volume.to_owned(),
            requested_node: req.node.to_owned(),
            holders: err.holders(),
        });
        Err(err)
    }

    pub(super) fn attach(
        &mut self,
        req: &PublishRequest<'_>,
        now: Instant,
        names: &mut NodeNames,
        fx: &mut Vec<Effect>,
    ) {
        self.holders.push(Held {
            node: names.acquire(req.node),
            attached_at: now,
        });
        fx.push(Effect::Attached {
            volume: req.volume.to_owned(),
            node: req.node.to_owned(),
        });
    }

    /// `volume` is this entry's id; `node` as in [`Entry::publish`]: `None` holds nothing here.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn leave(
        &mut self,
        volume: &str,
        node: Option<NodeId>,
        how: Leave,
        now: Instant,
        grace: Duration,
        names: &mut NodeNames,
        fx: &mut Vec<Effect>,
    ) {
        self.expire(volume, now, names, fx);
        let Some(i) = node.and_then(|n| self.holders.position(n)) else {
            return; // idempotent: not attached here
        };
        let gone = self.holders.remove(i);
        let volume = volume.to_owned();
        let gone_name = names.name(gone.node).to_owned();
        fx.push(match how {
            Leave::Unpublish => Effect::Detached {
                volume: volume.clone(),
                node: gone_name.clone(),
            },
            Leave::NodeDeleted => Effect::StaleCleared {
                volume: volume.clone(),
                node: gone_name.clone(),
            },
        });
        if let Some(m) = self.migration.take() {
            // A timed-out migration already had its one result (at the sweep).
            if !m.timed_out {
                let other = names.name(self.holders.node(0)).to_owned();
                let (source, target) = if i == 0 {
                    (gone_name, other)
                } else {
                    (other, gone_name)
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
        // The window keeps the holder's reference to the node's name.
        if self.holders.is_empty() && how == Leave::Unpublish && !grace.is_zero() {
            self.last_detach = Some((now, gone.node));
        } else {
            names.release(gone.node);
        }
    }
}
