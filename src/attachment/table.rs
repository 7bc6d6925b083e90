//! The lock-sharded attachment table: one `VolumeMap` per shard, chosen by a hash of the
//! volume id, so publishes of different volumes rarely share a lock and no lock is global.
//! The id is hashed once per call: the shard comes from the hash's high half, the shard's
//! bucket from its low bits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::effect::Effect;
use super::error::AttachError;
use super::hash::{hash_str, shard_of};
use super::model::{PublishRequest, RestoreRecord};
use super::state::VolumeState;
use super::volume_map::VolumeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// Rounded up to a power of two (the shard is picked with a mask).
    pub shards: usize,
    /// How long after a full detach a different node's attach counts as a handoff.
    pub grace_period: Duration,
}

impl TableConfig {
    pub const DEFAULT_SHARDS: usize = 64;
    pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            shards: Self::DEFAULT_SHARDS,
            grace_period: Self::DEFAULT_GRACE_PERIOD,
        }
    }
}

/// The result of a publish: what happened (always, refusals included) and whether it succeeded.
#[must_use]
#[derive(Debug)]
pub struct Outcome {
    pub effects: Vec<Effect>,
    pub result: Result<(), AttachError>,
}

pub struct AttachmentTable {
    shards: Box<[Shard]>,
    mask: usize,
}

/// One shard on its own cache lines (128 bytes: adjacent-line prefetch pairs them on x86), so
/// threads working on different shards do not bounce each other's lock word.
#[repr(align(128))]
struct Shard(Mutex<VolumeMap>);

impl Default for AttachmentTable {
    fn default() -> Self {
        Self::new(TableConfig::default())
    }
}

impl AttachmentTable {
    pub fn new(config: TableConfig) -> Self {
        let n = config.shards.max(1).next_power_of_two();
        AttachmentTable {
            shards: (0..n)
                .map(|_| Shard(Mutex::new(VolumeMap::new(config.grace_period))))
                .collect(),
            mask: n - 1,
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The volume's hash and its shard.
    fn shard(&self, volume: &str) -> (u64, &Mutex<VolumeMap>) {
        let hash = hash_str(volume);
        (hash, &self.shards[shard_of(hash, self.mask)].0)
    }

    pub fn publish(&self, req: &PublishRequest<'_>, now: Instant) -> Outcome {
        let mut effects = Vec::new();
        let (hash, shard) = self.shard(req.volume);
        let result = shard.lock().publish_hashed(hash, req, now, &mut effects);
        Outcome { effects, result }
    }

    /// Idempotent: an unknown volume or node is a success with no effects.
    pub fn unpublish(&self, volume: &str, node: &str, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        let (hash, shard) = self.shard(volume);
        shard
            .lock()
            .unpublish_hashed(hash, volume, node, now, &mut effects);
        effects
    }

    /// Times out migrations whose deadline passed and forgets lapsed grace windows. The
    /// controller calls it at `next_deadline()`; publishes also detect a passed deadline.
    pub fn sweep(&self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for Shard(shard) in self.shards.iter() {
            let mut map = shard.lock();
            if map.next_deadline().is_some_and(|at| at <= now) {
                map.sweep(now, &mut effects);
            }
        }
        effects
    }

    /// The earliest migration deadline or grace-window end, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.shards
            .iter()
            .filter_map(|s| s.0.lock().next_deadline())
            .min()
    }

    /// Drops every attachment of a deleted Kubernetes Node.
    pub fn clear_node(&self, node: &str, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for Shard(shard) in self.shards.iter() {
            shard.lock().clear_node(node, now, &mut effects);
        }
        effects
    }

    /// Rebuilds attachments found at start (VolumeAttachments), in attach-time order, so a
    /// volume on two nodes resumes its migration with the original start and deadline. Ties
    /// are broken by volume then node, so the result does not depend on the input order.
    /// Records the rules refuse come back as `Conflict`/`Refused` effects.
    pub fn restore(&self, mut records: Vec<RestoreRecord>) -> Vec<Effect> {
        records.sort_by(|a, b| {
            (a.attached_at, &a.volume, &a.node).cmp(&(b.attached_at, &b.volume, &b.node))
        });
        let mut effects = Vec::new();
        for rec in &records {
            self.shard(&rec.volume).1.lock().restore(rec, &mut effects);
        }
        effects
    }

    /// Whether the table has any record of the volume (a node, or an open grace window).
    pub fn contains(&self, volume: &str) -> bool {
        let (hash, shard) = self.shard(volume);
        shard.lock().contains_hashed(hash, volume)
    }

    /// Nodes the volume is published to, in attach order (for ListVolumes).
    pub fn published_nodes(&self, volume: &str) -> Vec<String> {
        let (hash, shard) = self.shard(volume);
        shard.lock().published_nodes_hashed(hash, volume)
    }

    /// Whether the volume's migration has been found timed out (by a sweep or an operation)
    /// and no node has detached since.
    pub fn migration_timed_out(&self, volume: &str) -> bool {
        let (hash, shard) = self.shard(volume);
        shard.lock().migration_timed_out_hashed(hash, volume)
    }

    /// A copy of every entry, by volume id (debugging and tests; locks one shard at a time).
    pub fn snapshot(&self) -> BTreeMap<String, VolumeState> {
        let mut out = BTreeMap::new();
        for Shard(shard) in self.shards.iter() {
            let map = shard.lock();
            out.extend(map.iter().map(|st| (st.id().to_owned(), st)));
        }
        out
    }

    /// Number of entries (volumes attached somewhere or inside a grace window).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
pub(super) fn shard_index_for_tests(volume: &str, mask: usize) -> usize {
    shard_of(hash_str(volume), mask)
}
