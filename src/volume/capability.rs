//! The CSI volume capability (access type and access mode) and the rules of which ones this
//! driver honours — one parser and one set of rules for the controller and the node.
//!
//! Single-node modes for block and filesystem; MULTI_NODE_MULTI_WRITER (RWX) only for block
//! volumes, because two nodes mounting one filesystem corrupt it — the only safe RWX use is a
//! KubeVirt live migration of a raw disk, where QEMU hands over ownership
//! (docs/kubevirt-migration.md).

use csi::volume_capability::access_mode::Mode;
use csi_proto::v1 as csi;

use super::fs_type::{FsType, UnsupportedFsType};

/// The one message for a refused filesystem RWX request, wherever it is refused
/// (CreateVolume, ControllerPublish, the attachment table, NodeStage).
pub const RWX_FILESYSTEM_REFUSED: &str = "ReadWriteMany is supported only for Block volumes: \
it exists for KubeVirt live migration of block disks, where QEMU hands the disk over between \
two nodes; two nodes mounting one filesystem would corrupt it. Use volumeMode: Block, or \
ReadWriteOnce for a filesystem";

/// CSI's access type: a raw block device, or a filesystem mounted by the node
/// (Kubernetes `volumeMode: Block | Filesystem`, the names it is stored under, e.g. in the
/// node's stage records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessType {
    Block,
    #[serde(rename = "filesystem")]
    Mount,
}

/// A volume capability this driver honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub access_type: AccessType,
    pub access_mode: Mode,
    /// The capability's `fsType` (Mount only; `None` when not given).
    pub fs_type: Option<FsType>,
    /// The capability's mount flags (Mount only).
    pub mount_flags: Vec<String>,
}

/// Why a capability is refused: malformed (a required field missing) or well-formed but not
/// supported. ValidateVolumeCapabilities answers the latter as "not confirmed", never as an
/// error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("volume capability lacks an access type (block or mount)")]
    NoAccessType,
    #[error("volume capability lacks an access mode")]
    NoAccessMode,
    #[error(transparent)]
    FsType(#[from] UnsupportedFsType),
    #[error("{RWX_FILESYSTEM_REFUSED}")]
    FilesystemMultiNode,
    #[error(
        "access mode {} is not supported; use SINGLE_NODE_WRITER, SINGLE_NODE_READER_ONLY, or \
         MULTI_NODE_MULTI_WRITER with Block",
        .mode.as_str_name()
    )]
    UnsupportedMode { mode: Mode },
}

impl CapabilityError {
    /// Well-formed, but not something this driver offers.
    pub fn is_unsupported(&self) -> bool {
        !matches!(
            self,
            CapabilityError::NoAccessType | CapabilityError::NoAccessMode
        )
    }
}

impl Capability {
    /// Parses one capability's shape (access type, access mode, fsType) without the
    /// access-mode rules: ControllerPublish lets the attachment table apply those, so a
    /// refusal there is counted and reported like every other fencing decision.
    pub fn parse(cap: &csi::VolumeCapability) -> Result<Self, CapabilityError> {
        use csi::volume_capability::AccessType as At;
        let access_mode = cap
            .access_mode
            .as_ref()
            .and_then(|m| Mode::try_from(m.mode).ok())
            .filter(|m| *m != Mode::Unknown);
        let (access_type, fs_type, mount_flags) = match &cap.access_type {
            Some(At::Block(_)) => (AccessType::Block, Ok(None), Vec::new()),
            Some(At::Mount(m)) => (
                AccessType::Mount,
                FsType::parse_optional(&m.fs_type),
                m.mount_flags.clone(),
            ),
            None => return Err(CapabilityError::NoAccessType),
        };
        let access_mode = access_mode.ok_or(CapabilityError::NoAccessMode)?;
        Ok(Capability {
            access_type,
            access_mode,
            fs_type: fs_type?,
            mount_flags,
        })
    }

    /// The access-mode rules of the module notes.
    pub fn check_access_mode(&self) -> Result<(), CapabilityError> {
        match self.access_mode {
            Mode::SingleNodeWriter | Mode::SingleNodeReaderOnly => Ok(()),
            Mode::MultiNodeMultiWriter if self.is_block() => Ok(()),
            Mode::MultiNodeMultiWriter => Err(CapabilityError::FilesystemMultiNode),
            mode => Err(CapabilityError::UnsupportedMode { mode }),
        }
    }

    /// [`Self::parse`] and [`Self::check_access_mode`]: a capability this driver honours.
    pub fn parse_supported(cap: &csi::VolumeCapability) -> Result<Self, CapabilityError> {
        let c = Self::parse(cap)?;
        c.check_access_mode()?;
        Ok(c)
    }

    pub fn is_block(&self) -> bool {
        self.access_type == AccessType::Block
    }

    /// Whether more than one node may hold the volume (only ever RWX block).
    pub fn is_multi_node(&self) -> bool {
        self.access_mode == Mode::MultiNodeMultiWriter
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use csi::volume_capability::{AccessMode, AccessType as At, BlockVolume, MountVolume};

    pub fn cap(block: bool, mode: Mode, fs: &str) -> csi::VolumeCapability {
        csi::VolumeCapability {
            access_type: Some(if block {
                At::Block(BlockVolume {})
            } else {
                At::Mount(MountVolume {
                    fs_type: fs.into(),
                    mount_flags: vec!["noatime".into()],
                    ..Default::default()
                })
            }),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    #[test]
    fn rwx_is_block_only_with_the_one_kubevirt_message() {
        let c = Capability::parse_supported(&cap(true, Mode::MultiNodeMultiWriter, "")).unwrap();
        assert!(c.is_block() && c.is_multi_node());
        let e = Capability::parse_supported(&cap(false, Mode::MultiNodeMultiWriter, "ext4"))
            .unwrap_err();
        assert_eq!(e, CapabilityError::FilesystemMultiNode);
        assert!(e.is_unsupported());
        assert_eq!(e.to_string(), RWX_FILESYSTEM_REFUSED);
        assert!(e.to_string().contains("KubeVirt") && e.to_string().contains("Block"));
        // The shape alone is fine: the attachment table refuses it at publish.
        let shape = Capability::parse(&cap(false, Mode::MultiNodeMultiWriter, "ext4")).unwrap();
        assert!(shape.is_multi_node() && !shape.is_block());
    }

    #[test]
    fn supported_and_unsupported_shapes() {
        let c = Capability::parse_supported(&cap(false, Mode::SingleNodeWriter, "xfs")).unwrap();
        assert_eq!(c.fs_type, Some(FsType::Xfs));
        assert_eq!(c.mount_flags, ["noatime"]);
        assert_eq!(
            Capability::parse_supported(&cap(false, Mode::SingleNodeReaderOnly, ""))
                .unwrap()
                .fs_type,
            None
        );
        for (c, unsupported) in [
            (cap(false, Mode::SingleNodeWriter, "btrfs"), true),
            (cap(false, Mode::MultiNodeReaderOnly, ""), true),
            (cap(true, Mode::MultiNodeSingleWriter, ""), true),
            (cap(false, Mode::SingleNodeMultiWriter, ""), true),
            (cap(true, Mode::Unknown, ""), false),
        ] {
            let e = Capability::parse_supported(&c).unwrap_err();
            assert_eq!(e.is_unsupported(), unsupported, "{e}");
        }
        let no_type = csi::VolumeCapability {
            access_type: None,
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
        };
        assert_eq!(
            Capability::parse_supported(&no_type),
            Err(CapabilityError::NoAccessType)
        );
        let no_mode = csi::VolumeCapability {
            access_type: Some(At::Block(BlockVolume {})),
            access_mode: None,
        };
        assert_eq!(
            Capability::parse_supported(&no_mode),
            Err(CapabilityError::NoAccessMode)
        );
    }
}
