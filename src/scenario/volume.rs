//! A volume as a scenario holds it: what CreateVolume answered and the capability it is used
//! with.

use std::collections::HashMap;

use csi::volume_capability::access_mode::Mode;
use csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use csi_proto::v1 as csi;

/// A volume CreateVolume returned, with the one capability the scenario uses it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub id: String,
    /// `volume_context` as CreateVolume returned it; passed on to every later call.
    pub context: HashMap<String, String>,
    pub capability: csi::VolumeCapability,
    /// Bytes the controller reports it created (at least the request).
    pub capacity_bytes: i64,
}

impl Volume {
    /// A raw block volume (`AccessType::Block`), not a filesystem.
    pub fn is_block(&self) -> bool {
        matches!(self.capability.access_type, Some(AccessType::Block(_)))
    }

    /// One value of the volume context, if present.
    pub fn context_value(&self, key: &str) -> Option<&str> {
        self.context.get(key).map(String::as_str)
    }
}

/// What a new volume is filled from (CSI `VolumeContentSource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSource {
    /// Restore of the snapshot with this id.
    Snapshot(String),
    /// Clone of the volume with this id.
    Volume(String),
}

impl From<ContentSource> for csi::VolumeContentSource {
    fn from(s: ContentSource) -> Self {
        use csi::volume_content_source::{SnapshotSource, Type, VolumeSource};
        csi::VolumeContentSource {
            r#type: Some(match s {
                ContentSource::Snapshot(snapshot_id) => {
                    Type::Snapshot(SnapshotSource { snapshot_id })
                }
                ContentSource::Volume(volume_id) => Type::Volume(VolumeSource { volume_id }),
            }),
        }
    }
}

/// A filesystem capability: `fs_type` (`ext4`, `xfs`) with access `mode`.
pub fn mount_capability(fs_type: &str, mode: Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs_type.into(),
            ..Default::default()
        })),
    }
}

/// A raw block capability with access `mode`.
pub fn block_capability(mode: Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(cap: csi::VolumeCapability) -> Volume {
        Volume {
            id: "pvc-1".into(),
            context: HashMap::from([("nqn".to_string(), "nqn.x:pvc-1".to_string())]),
            capability: cap,
            capacity_bytes: 1 << 30,
        }
    }

    #[test]
    fn capabilities_say_what_they_are() {
        let fs = vol(mount_capability("xfs", Mode::SingleNodeWriter));
        assert!(!fs.is_block());
        let Some(AccessType::Mount(m)) = &fs.capability.access_type else {
            panic!("{fs:?}")
        };
        assert_eq!(m.fs_type, "xfs");
        let b = vol(block_capability(Mode::MultiNodeMultiWriter));
        assert!(b.is_block());
        assert_eq!(
            b.capability.access_mode.unwrap().mode,
            Mode::MultiNodeMultiWriter as i32
        );
        assert_eq!(b.context_value("nqn"), Some("nqn.x:pvc-1"));
        assert_eq!(b.context_value("fresh"), None);
    }

    #[test]
    fn content_sources_map_to_the_csi_types() {
        use csi::volume_content_source::Type;
        let s: csi::VolumeContentSource = ContentSource::Snapshot("snap-1".into()).into();
        assert!(matches!(s.r#type, Some(Type::Snapshot(x)) if x.snapshot_id == "snap-1"));
        let v: csi::VolumeContentSource = ContentSource::Volume("pvc-2".into()).into();
        assert!(matches!(v.r#type, Some(Type::Volume(x)) if x.volume_id == "pvc-2"));
    }
}
