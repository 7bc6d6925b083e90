//! An unsharded map of volumes with its timer index and its node names (`VolumeMap`). The
//! sharded table locks one per shard; a benchmark can lock a single one to compare against a
//! global lock with exactly the same rules.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::effect::{Effect, RefusalReason};
use super::error::AttachError;
use super::hash::hash_str;
use super::key::Key;
use super::model::{AccessMode, PublishRequest, RequestedAccess, RestoreRecord};
use super::nodes::NodeNames;
use super::rules::{Entry, Leave};
use super::state::VolumeState;

/// Volumes by id plus the index of their timers (migration deadlines, grace-window ends), so
/// `sweep` and `next_deadline` never scan every volume.
pub struct VolumeMap {
    /// Entries by `hash_str(id)`, which each entry keeps.
    volumes: HashTable<Entry>,
    timers: BTreeSet<(Instant, Key)>,
    names: NodeNames,
    grace: Duration,
}

impl std::fmt::Debug for VolumeMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeMap")
            .field("volumes", &self.volumes.len())
            .field("timers", &self.timers.len())
            .field("grace", &self.grace)
            .finish()
    }
}

impl VolumeMap {
    pub fn new(grace_period: Duration) -> Self {
        VolumeMap {
            volumes: HashTable::new(),
            timers: BTreeSet::new(),
            names: NodeNames::default(),
            grace: grace_period,
        }
    }

    pub fn grace_period(&self) -> Duration {
        self.grace
    }

    fn entry(&self, hash: u64, volume: &str) -> Option<&Entry> {
        self.volumes.find(hash, |e| e.id.is(volume))
    }

    pub fn publish(
        &mut self,
        req: &PublishRequest<'_>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AttachError> {
        self.publish_hashed(hash_str(req.volume), req, now, fx)
    }

    /// [`VolumeMap::publish`] with `hash = hash_str(req.volume)` already computed.
    pub(super) fn publish_hashed(
        &mut self,
        hash: u64,
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
        let node = self.names.find(req.node);
        match self.volumes.find_mut(hash, |e| e.id.is(req.volume)) {
            Some(e) => {
                let before = e.timer(grace);
                let result = e.publish(mode, req, node, now, grace, &mut self.names, fx);
                retime(&mut self.timers, e, before, grace);
                result
            }
            None => {
                let mut e = Entry::new(hash, Key::new(req.volume), mode, req.migration_timeout);
                e.attach(req, now, &mut self.names, fx);
                self.volumes.insert_unique(hash, e, |e| e.hash);
                Ok(())
            }
        }
    }

    pub fn unpublish(&mut self, volume: &str, node: &str, now: Instant, fx: &mut Vec<Effect>) {
        self.unpublish_hashed(hash_str(volume), volume, node, now, fx);
    }

    /// [`VolumeMap::unpublish`] with `hash = hash_str(volume)` already computed.
    pub(super) fn unpublish_hashed(
        &mut self,
        hash: u64,
        volume: &str,
        node: &str,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        self.leave(hash, volume, node, Leave::Unpublish, now, fx);
    }

    fn leave(
        &mut self,
        hash: u64,
        volume: &str,
        node: &str,
        how: Leave,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let grace = self.grace;
        let node = self.names.find(node);
        let Ok(mut slot) = self.volumes.find_entry(hash, |e| e.id.is(volume)) else {
            return;
        };
        let e = slot.get_mut();
        let before = e.timer(grace);
        e.leave(volume, node, how, now, grace, &mut self.names, fx);
        retime(&mut self.timers, e, before, grace);
        if e.is_idle() {
            slot.remove();
        }
    }

    /// Times out migrations whose deadline passed and drops lapsed grace windows.
    pub fn sweep(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let grace = self.grace;
        while self.timers.first().is_some_and(|(at, _)| *at <= now) {
            let Some((at, id)) = self.timers.pop_first() else {
                break;
            };
            let volume = id.as_str();
            let Ok(mut slot) = self.volumes.find_entry(hash_str(volume), |e| e.id == id) else {
                continue;
            };
            let e = slot.get_mut();
            e.expire(volume, now, &self.names, fx);
            e.end_grace_window(&mut self.names); // the grace window (this timer) has lapsed
            debug_assert!(
                e.timer(grace) != Some(at),
                "a due timer is consumed by expiry"
            );
            // The popped timer was the volume's current one (already out of the index).
            retime(&mut self.timers, e, None, grace);
            if e.is_idle() {
                slot.remove();
            }
        }
    }

    /// Drops every attachment of `node` (the Kubernetes Node was deleted).
    pub fn clear_node(&mut self, node: &str, now: Instant, fx: &mut Vec<Effect>) {
        let Some(id) = self.names.find(node) else {
            return; // no volume of this map is attached to it
        };
        let held: Vec<(u64, Key)> = self
            .volumes
            .iter()
            .filter(|e| e.holds(id))
            .map(|e| (e.hash, e.id.clone()))
            .collect();
        for (hash, volume) in held {
            self.leave(hash, volume.as_str(), node, Leave::NodeDeleted, now, fx);
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

    /// A copy of what the map knows about `volume`.
    pub fn get(&self, volume: &str) -> Option<VolumeState> {
        self.get_hashed(hash_str(volume), volume)
    }

    pub(super) fn get_hashed(&self, hash: u64, volume: &str) -> Option<VolumeState> {
        self.entry(hash, volume).map(|e| e.view(&self.names))
    }

    pub(super) fn contains_hashed(&self, hash: u64, volume: &str) -> bool {
        self.entry(hash, volume).is_some()
    }

    /// Nodes the volume is published to, in attach order.
    pub(super) fn published_nodes_hashed(&self, hash: u64, volume: &str) -> Vec<String> {
        self.entry(hash, volume)
            .map(|e| e.node_names(&self.names))
            .unwrap_or_default()
    }

    pub(super) fn migration_timed_out_hashed(&self, hash: u64, volume: &str) -> bool {
        self.entry(hash, volume)
            .is_some_and(Entry::migration_timed_out)
    }

    /// Copies of every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = VolumeState> + '_ {
        self.volumes.iter().map(|e| e.view(&self.names))
    }

    pub fn len(&self) -> usize {
        self.volumes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }

    /// Node names the map holds (tests: names go with their last reference).
    #[cfg(test)]
    pub(super) fn node_names_held(&self) -> usize {
        self.names.len()
    }
}

/// Keeps the timer index equal to each volume's current timer.
fn retime(
    timers: &mut BTreeSet<(Instant, Key)>,
    e: &Entry,
    before: Option<Instant>,
    grace: Duration,
) {
    let after = e.timer(grace);
    if before != after {
        if let Some(at) = before {
            timers.remove(&(at, e.id.clone()));
        }
        if let Some(at) = after {
            timers.insert((at, e.id.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attachment::MigrationTimeout;

    fn publish(m: &mut VolumeMap, volume: &str, node: &str, access: RequestedAccess, now: Instant) {
        let req = PublishRequest {
            volume,
            node,
            access,
            migration_timeout: MigrationTimeout::default(),
        };
        m.publish(&req, now, &mut Vec::new()).unwrap();
    }

    #[test]
    fn node_names_go_with_their_last_reference() {
        let now = Instant::now();
        let grace = Duration::from_secs(30);
        let mut m = VolumeMap::new(grace);
        let fx = &mut Vec::new();
        publish(&mut m, "v1", "a", RequestedAccess::SingleNode, now);
        publish(&mut m, "v2", "a", RequestedAccess::SingleNode, now);
        publish(&mut m, "v3", "b", RequestedAccess::MultiNodeBlock, now);
        publish(&mut m, "v3", "c", RequestedAccess::MultiNodeBlock, now);
        assert_eq!(m.node_names_held(), 3);
        m.unpublish("v1", "a", now, fx);
        m.unpublish("v2", "a", now, fx);
        assert_eq!(m.node_names_held(), 3, "grace windows still name a");
        m.sweep(now + grace, fx);
        assert_eq!(m.node_names_held(), 2, "a is forgotten with its windows");
        m.clear_node("c", now + grace, fx);
        assert_eq!(m.node_names_held(), 1, "a deleted node leaves no window");
        m.unpublish("v3", "b", now + grace, fx);
        m.sweep(now + grace * 2, fx);
        assert_eq!((m.node_names_held(), m.len()), (0, 0));
        // A node that takes over within the window: the previous node's name goes.
        publish(&mut m, "v4", "a", RequestedAccess::SingleNode, now);
        m.unpublish("v4", "a", now, fx);
        publish(&mut m, "v4", "b", RequestedAccess::SingleNode, now);
        assert_eq!(m.node_names_held(), 1);
        assert_eq!(m.get("v4").unwrap().nodes()[0].node, "b");
    }
}
