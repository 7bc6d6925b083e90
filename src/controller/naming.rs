//! How volumes and snapshots are named on the RDS.
//!
//! RouterOS prints neither a disk's source nor its creation time, so everything the driver
//! must know later is encoded in names it chooses: the snapshot id carries its slot, source
//! volume and creation time, and the backing file path carries the same (so ListSnapshots can
//! rebuild ids from a plain `/disk print`) and a volume's content source (so a CreateVolume
//! retry with a different source is detected as ALREADY_EXISTS).

use std::fmt;

use super::error::ControllerError;
use crate::rds::{BasePath, RdsPath, Slot};
use crate::volume::VolumeId;
pub use crate::volume::SNAPSHOT_SLOT_PREFIX;

/// Snapshots live under `<base>/snapshots/<source volume>/`.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Where a volume's content came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Empty,
    Volume(VolumeId),
    Snapshot(SnapshotId),
}

impl Source {
    /// The suffix of the volume's file name that records the source.
    fn file_suffix(&self) -> String {
        match self {
            Source::Empty => String::new(),
            Source::Volume(v) => format!(".clone-of-{v}"),
            Source::Snapshot(s) => format!(".from-{}", s.slot),
        }
    }
}

/// A CreateVolume name and the volume id it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeName {
    name: String,
    id: VolumeId,
}

impl VolumeName {
    /// Validates a CO-chosen volume name as a volume id (and RDS slot).
    pub fn parse(name: &str) -> Result<Self, ControllerError> {
        if name.is_empty() {
            return Err(ControllerError::missing("volume name"));
        }
        let invalid = |reason: String| ControllerError::InvalidName {
            what: "volume",
            name: name.to_owned(),
            reason,
        };
        let slot = Slot::new(name)
            .map_err(|e| invalid(format!("cannot be used as an RDS disk slot: {e}")))?;
        let id = VolumeId::from_slot(slot).ok_or_else(|| {
            invalid(format!(
                "starts with {SNAPSHOT_SLOT_PREFIX:?}, which is reserved for snapshots"
            ))
        })?;
        Ok(VolumeName {
            name: name.to_owned(),
            id,
        })
    }

    /// The volume id (and RDS slot) the name maps to.
    pub fn id(&self) -> &VolumeId {
        &self.id
    }

    /// The name as the CO sent it.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

/// The snapshot slot for a CO-chosen snapshot name: deterministic, so a retried
/// CreateSnapshot finds the snapshot it made before.
pub fn snapshot_slot(name: &str) -> Result<Slot, ControllerError> {
    if name.is_empty() {
        return Err(ControllerError::missing("snapshot name"));
    }
    Ok(SnapshotId::slot_for_name(name))
}

/// The backing file of a volume in `dir` (the base path or a StorageClass volumePath).
pub fn volume_file(
    base: &BasePath,
    dir: &str,
    id: &VolumeId,
    source: &Source,
) -> Result<RdsPath, ControllerError> {
    let path = format!("{dir}/{id}{}.img", source.file_suffix());
    RdsPath::new(base, &path).map_err(|source| ControllerError::FilePath {
        volume: id.to_string(),
        path,
        source: Box::new(source),
    })
}

/// A snapshot's id: `<slot>:<source volume>:<creation unix seconds>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotId {
    pub slot: Slot,
    pub source: VolumeId,
    pub created_unix: u64,
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.slot, self.source, self.created_unix)
    }
}

impl SnapshotId {
    /// Parses an id this driver issued; `None` for anything else (it cannot exist).
    pub fn parse(id: &str) -> Option<Self> {
        let mut parts = id.split(':');
        let (slot, source, t) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !slot.starts_with(SNAPSHOT_SLOT_PREFIX) {
            return None;
        }
        if !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(SnapshotId {
            slot: Slot::new(slot).ok()?,
            source: VolumeId::parse(source).ok()?,
            created_unix: t.parse().ok()?,
        })
    }

    /// The snapshot slot for a CO-chosen snapshot name: deterministic, so a retried
    /// CreateSnapshot finds the snapshot it made before.
    pub fn slot_for_name(name: &str) -> Slot {
        // FNV-1a: stable across versions and platforms (std's hasher is not).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Slot::new(&format!("{SNAPSHOT_SLOT_PREFIX}{h:016x}")).expect("hex is a valid slot")
    }

    pub fn file(&self, base: &BasePath) -> Result<RdsPath, ControllerError> {
        let path = format!(
            "{base}/{SNAPSHOT_DIR}/{}/{}-{}.img",
            self.source, self.created_unix, self.slot
        );
        RdsPath::new(base, &path).map_err(|e| {
            ControllerError::internal(
                format!("snapshot {self}"),
                format!("file path {path:?}: {e}"),
            )
        })
    }

    /// Rebuilds the id of a snapshot disk from its slot and backing file path.
    pub fn from_disk(base: &BasePath, slot: &str, file_path: &str) -> Option<Self> {
        let rest = file_path
            .strip_prefix(&format!("{base}/{SNAPSHOT_DIR}/"))?
            .strip_suffix(".img")?;
        let (source, file) = rest.split_once('/')?;
        let (t, file_slot) = file.split_once('-')?;
        if file_slot != slot {
            return None;
        }
        SnapshotId::parse(&format!("{slot}:{source}:{t}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_round_trip_through_the_disk_listing() {
        let base = BasePath::new("/storage-pool/csi").unwrap();
        let id = SnapshotId {
            slot: SnapshotId::slot_for_name("snapshot-1234"),
            source: VolumeId::parse("pvc-abc").unwrap(),
            created_unix: 1_764_000_000,
        };
        assert_eq!(SnapshotId::parse(&id.to_string()), Some(id.clone()));
        let file = id.file(&base).unwrap();
        assert_eq!(
            SnapshotId::from_disk(&base, id.slot.as_str(), file.as_str()),
            Some(id.clone())
        );
        assert_eq!(
            SnapshotId::from_disk(&base, "snap-other", file.as_str()),
            None
        );
    }

    #[test]
    fn foreign_snapshot_ids_do_not_parse() {
        for bad in [
            "",
            "snap-1",
            "pvc-1:pvc-2:3",
            "snap-1:pvc-2:x",
            "snap-1:pvc-2:3:4",
            "snap-1:snap-2:3",
            "snap-1:PVC:3",
        ] {
            assert_eq!(SnapshotId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn snapshot_slot_is_deterministic_and_valid() {
        assert_eq!(
            SnapshotId::slot_for_name("a"),
            SnapshotId::slot_for_name("a")
        );
        assert_ne!(
            SnapshotId::slot_for_name("a"),
            SnapshotId::slot_for_name("b")
        );
    }

    #[test]
    fn volume_names_are_checked() {
        assert_eq!(
            VolumeName::parse("pvc-0a1b").unwrap().id().as_str(),
            "pvc-0a1b"
        );
        for bad in ["", "PVC", "pvc;rm", "snap-x", &"a".repeat(64)] {
            let e = VolumeName::parse(bad).unwrap_err();
            assert_eq!(
                tonic::Status::from(e).code(),
                tonic::Code::InvalidArgument,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_source_is_recorded_in_the_file_name() {
        let base = BasePath::new("/storage-pool/csi").unwrap();
        let v = VolumeId::parse("pvc-1").unwrap();
        let f = |s: &Source| {
            volume_file(&base, "/storage-pool/csi", &v, s)
                .unwrap()
                .to_string()
        };
        assert_eq!(f(&Source::Empty), "/storage-pool/csi/pvc-1.img");
        assert_eq!(
            f(&Source::Volume(VolumeId::parse("pvc-0").unwrap())),
            "/storage-pool/csi/pvc-1.clone-of-pvc-0.img"
        );
    }
}
