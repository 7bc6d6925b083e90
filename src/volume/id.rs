//! The volume id: the one rule both halves of the driver check it by.
//!
//! A volume id is the RDS slot of the volume's disk ([`crate::rds::Slot`]: 1–63 bytes of
//! `[a-z0-9-]`, starting and ending with a letter or digit), never one starting with
//! [`SNAPSHOT_SLOT_PREFIX`]. The node uses it as a file name under its state directory, which
//! the slot's allow-list makes safe (no `/`, no leading `.`). How a CO's volume *name* becomes
//! an id is the controller's business (`controller::naming`).

use std::fmt;

use crate::error::echo;
use crate::rds::Slot;

/// Slots starting with this are snapshots, never volumes.
pub const SNAPSHOT_SLOT_PREFIX: &str = "snap-";

/// A volume id of this driver (see the module notes for the rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId(Slot);

/// A string that cannot be a volume id of this driver — so no such volume exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidVolumeId {
    #[error("volume_id is required")]
    Empty,
    #[error(
        "volume_id {} is not a volume id of this driver: ids are RDS disk slots (at most 63 \
         lowercase letters, digits and '-', not starting with {SNAPSHOT_SLOT_PREFIX:?})",
        echo(.0)
    )]
    Foreign(String),
}

impl VolumeId {
    pub fn parse(id: &str) -> Result<Self, InvalidVolumeId> {
        if id.is_empty() {
            return Err(InvalidVolumeId::Empty);
        }
        Slot::new(id)
            .ok()
            .filter(|_| !id.starts_with(SNAPSHOT_SLOT_PREFIX))
            .map(VolumeId)
            .ok_or_else(|| InvalidVolumeId::Foreign(id.to_owned()))
    }

    /// The id of the volume whose disk is in `slot`, if `slot` is a volume's.
    pub fn from_slot(slot: Slot) -> Option<Self> {
        (!slot.as_str().starts_with(SNAPSHOT_SLOT_PREFIX)).then_some(VolumeId(slot))
    }

    /// The RDS slot of the volume's disk.
    pub fn slot(&self) -> &Slot {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for VolumeId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_volume_slots() {
        assert_eq!(
            VolumeId::parse("pvc-0b7c1e2a-1234").unwrap().as_str(),
            "pvc-0b7c1e2a-1234"
        );
        assert_eq!(VolumeId::parse(""), Err(InvalidVolumeId::Empty));
        for bad in [
            "../etc",
            ".hidden",
            "a/b",
            "PVC-1",
            "pvc_1",
            "snap-0123",
            "-pvc",
            &"a".repeat(64),
        ] {
            let e = VolumeId::parse(bad).unwrap_err();
            assert!(matches!(e, InvalidVolumeId::Foreign(_)), "{bad:?}");
            assert!(e.to_string().contains("volume_id"), "{e}");
        }
        assert!(VolumeId::from_slot(Slot::new("snap-1").unwrap()).is_none());
    }

    #[test]
    fn a_long_foreign_id_is_echoed_briefly() {
        let e = VolumeId::parse(&"A".repeat(10_000))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 500, "{} bytes", e.len());
        assert!(e.contains("(10000 bytes)"), "{e}");
    }
}
