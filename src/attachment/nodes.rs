//! Node names interned per shard: an attachment records a 4-byte [`NodeId`] instead of its own
//! copy of the name, so attaching allocates nothing and comparing nodes reads no heap memory
//! (with a million volumes, a per-attachment name is a cache miss on every call).
//!
//! A name is kept while something refers to it (an attachment, or the node of a grace window)
//! and forgotten when the last reference goes, so the table holds no names of nodes long gone.

use hashbrown::HashTable;

use super::hash::hash_str;

/// A node name's index in its shard's [`NodeNames`]; meaningful only there, and only while
/// referenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NodeId(u32);

struct Slot {
    name: Box<str>,
    hash: u64,
    refs: u32,
}

#[derive(Default)]
pub(super) struct NodeNames {
    index: HashTable<NodeId>,
    slots: Vec<Slot>,
    free: Vec<NodeId>,
}

impl NodeNames {
    /// The id of `name` if something refers to it.
    pub(super) fn find(&self, name: &str) -> Option<NodeId> {
        let hash = hash_str(name);
        self.index
            .find(hash, |id| *self.slots[id.0 as usize].name == *name)
            .copied()
    }

    /// The id of `name`, interned if new, with one more reference.
    pub(super) fn acquire(&mut self, name: &str) -> NodeId {
        let hash = hash_str(name);
        let slots = &mut self.slots;
        if let Some(id) = self
            .index
            .find(hash, |id| *slots[id.0 as usize].name == *name)
        {
            slots[id.0 as usize].refs += 1;
            return *id;
        }
        let slot = Slot {
            name: name.into(),
            hash,
            refs: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                slots[id.0 as usize] = slot;
                id
            }
            None => {
                let id = NodeId(u32::try_from(slots.len()).expect("fewer than 2^32 node names"));
                slots.push(slot);
                id
            }
        };
        self.index
            .insert_unique(hash, id, |id| slots[id.0 as usize].hash);
        id
    }

    /// Drops one reference; the name is forgotten with its last one.
    pub(super) fn release(&mut self, id: NodeId) {
        let slot = &mut self.slots[id.0 as usize];
        slot.refs -= 1;
        if slot.refs > 0 {
            return;
        }
        let hash = slot.hash;
        slot.name = Box::default();
        if let Ok(entry) = self.index.find_entry(hash, |x| *x == id) {
            entry.remove();
        }
        self.free.push(id);
    }

    pub(super) fn name(&self, id: NodeId) -> &str {
        &self.slots[id.0 as usize].name
    }

    /// Names currently referenced (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_lives_while_referenced_and_its_slot_is_reused() {
        let mut n = NodeNames::default();
        let a = n.acquire("node-a");
        assert_eq!(n.acquire("node-a"), a);
        let b = n.acquire("node-b");
        assert_ne!(a, b);
        assert_eq!((n.name(a), n.name(b)), ("node-a", "node-b"));
        assert_eq!(n.find("node-a"), Some(a));
        n.release(a);
        assert_eq!(n.find("node-a"), Some(a), "one reference left");
        n.release(a);
        assert_eq!(n.find("node-a"), None);
        assert_eq!(n.len(), 1);
        let c = n.acquire("node-c");
        assert_eq!(c, a, "the freed slot is reused");
        assert_eq!(n.name(c), "node-c");
        assert_eq!(n.find("node-b"), Some(b));
    }
}
