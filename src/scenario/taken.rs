//! What a scenario's calls took and have not released yet.

use std::path::{Path, PathBuf};

/// A node-side holding: `volume_id` staged or published on `node` at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub node: String,
    pub volume_id: String,
    pub path: PathBuf,
}

impl Held {
    pub fn new(node: &str, volume_id: &str, path: &Path) -> Self {
        Held {
            node: node.to_owned(),
            volume_id: volume_id.to_owned(),
            path: path.to_owned(),
        }
    }
}

/// What the calls so far took and have not released, in the order taken. Each is recorded
/// before its call is sent, so a call that failed or timed out half-way is released too.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Taken {
    pub node_published: Vec<Held>,
    pub staged: Vec<Held>,
    /// (volume id, node id)
    pub controller_published: Vec<(String, String)>,
    /// Snapshot ids (the request's name until CreateSnapshot answers with the id).
    pub snapshots: Vec<String>,
    /// Volume ids (the request's name until CreateVolume answers with the id).
    pub volumes: Vec<String>,
}

/// A kind of holding, released together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    NodePublished,
    Staged,
    ControllerPublished,
    Snapshots,
    Volumes,
}

impl Taken {
    pub fn count(&self, h: Holding) -> usize {
        match h {
            Holding::NodePublished => self.node_published.len(),
            Holding::Staged => self.staged.len(),
            Holding::ControllerPublished => self.controller_published.len(),
            Holding::Snapshots => self.snapshots.len(),
            Holding::Volumes => self.volumes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.node_published.is_empty()
            && self.staged.is_empty()
            && self.controller_published.is_empty()
            && self.snapshots.is_empty()
            && self.volumes.is_empty()
    }
}

pub(super) fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

pub(super) fn replace_or_push(list: &mut Vec<String>, old: &str, new: &str) {
    list.retain(|x| x != old && x != new);
    list.push(new.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdings_are_recorded_once_and_ids_replace_names() {
        let mut t = Taken::default();
        push_new(
            &mut t.controller_published,
            ("v".to_string(), "a".to_string()),
        );
        push_new(
            &mut t.controller_published,
            ("v".to_string(), "a".to_string()),
        );
        assert_eq!(t.count(Holding::ControllerPublished), 1);
        push_new(&mut t.volumes, "my volume".to_string());
        replace_or_push(&mut t.volumes, "my volume", "pvc-my-volume--0123");
        replace_or_push(&mut t.volumes, "pvc-my-volume--0123", "pvc-my-volume--0123");
        assert_eq!(t.volumes, ["pvc-my-volume--0123"]);
        assert!(!t.is_empty());
        assert!(Taken::default().is_empty());
    }
}
