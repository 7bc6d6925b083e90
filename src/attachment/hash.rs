//! One hash of a volume id (or node name) per call: the sharded table picks the shard from its
//! high half and the shard's hash table its bucket from the low bits, so a publish hashes the
//! id once. foldhash (fast, well distributed, what hashbrown uses by default), with a fixed
//! seed: ids come from the CO, not from an attacker, and a fixed seed keeps shard placement
//! reproducible.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;

const STATE: FixedState = FixedState::with_seed(0x5eed_a77a_c4ed_0001);

pub(super) fn hash_str(s: &str) -> u64 {
    STATE.hash_one(s)
}

/// The shard of a hash (`mask` = shards - 1): bits 32 and up, which the shard's own table
/// (low bits for the bucket, the top 7 bits for its tag) does not use to tell entries apart.
pub(super) fn shard_of(hash: u64, mask: usize) -> usize {
    (hash >> 32) as usize & mask
}
