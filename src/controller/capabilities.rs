//! Volume capabilities: which access types and modes this driver can honour.
//!
//! RWO (single-node modes) for block and filesystem; RWX (MULTI_NODE_MULTI_WRITER) only for
//! block volumes, because two nodes mounting one filesystem corrupt it — the only safe RWX use
//! is a KubeVirt live migration of a raw disk, where QEMU hands over ownership.

use csi::volume_capability::access_mode::Mode;
use csi_proto::v1 as csi;

use crate::controller::params::SUPPORTED_FS_TYPES;
use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessType {
    Block,
    Mount { fs_type: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub access: AccessType,
    pub mode: Mode,
}

impl Capability {
    pub fn is_block(&self) -> bool {
        self.access == AccessType::Block
    }
    /// Whether more than one node may hold the volume (only ever RWX block).
    pub fn is_multi_node(&self) -> bool {
        self.mode == Mode::MultiNodeMultiWriter
    }
}

pub const RWX_FILESYSTEM_REFUSED: &str = "ReadWriteMany is supported only for Block volumes: \
it exists for KubeVirt live migration of block disks, where QEMU hands the disk over between \
two nodes; two nodes mounting one filesystem would corrupt it. Use volumeMode: Block, or \
ReadWriteOnce for a filesystem";

/// Parses one capability; a malformed one (no access type or mode) is INVALID_ARGUMENT.
pub fn parse(cap: &csi::VolumeCapability) -> Result<Capability, Error> {
    use csi::volume_capability::AccessType as At;
    let access = match &cap.access_type {
        Some(At::Block(_)) => AccessType::Block,
        Some(At::Mount(m)) => AccessType::Mount {
            fs_type: Some(m.fs_type.clone()).filter(|f| !f.is_empty()),
        },
        None => {
            return Err(Error::InvalidArgument(
                "volume capability lacks an access type (block or mount)".into(),
            ))
        }
    };
    let mode = cap
        .access_mode
        .as_ref()
        .and_then(|m| Mode::try_from(m.mode).ok())
        .filter(|m| *m != Mode::Unknown)
        .ok_or_else(|| Error::InvalidArgument("volume capability lacks an access mode".into()))?;
    Ok(Capability { access, mode })
}

/// Why a well-formed capability is not supported, or Ok.
pub fn supported(c: &Capability) -> Result<(), String> {
    if let AccessType::Mount { fs_type: Some(fs) } = &c.access {
        if !SUPPORTED_FS_TYPES.contains(&fs.as_str()) {
            return Err(format!(
                "filesystem type {fs:?} is not supported; use ext4 or xfs"
            ));
        }
    }
    match c.mode {
        Mode::SingleNodeWriter | Mode::SingleNodeReaderOnly => Ok(()),
        Mode::MultiNodeMultiWriter if c.is_block() => Ok(()),
        Mode::MultiNodeMultiWriter => Err(RWX_FILESYSTEM_REFUSED.into()),
        other => Err(format!(
            "access mode {} is not supported; use SINGLE_NODE_WRITER, SINGLE_NODE_READER_ONLY, or MULTI_NODE_MULTI_WRITER with Block",
            other.as_str_name()
        )),
    }
}

/// Parses and checks a request's capabilities: at least one, all supported.
pub fn require_supported(
    caps: &[csi::VolumeCapability],
    volume: &str,
) -> Result<Vec<Capability>, Error> {
    if caps.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "volume {volume}: volume_capabilities is required"
        )));
    }
    caps.iter()
        .map(|c| {
            let c = parse(c)?;
            supported(&c)
                .map_err(|why| Error::InvalidArgument(format!("volume {volume}: {why}")))?;
            Ok(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi::volume_capability::{AccessMode, AccessType as At, BlockVolume, MountVolume};

    pub fn cap(block: bool, mode: Mode, fs: &str) -> csi::VolumeCapability {
        csi::VolumeCapability {
            access_type: Some(if block {
                At::Block(BlockVolume {})
            } else {
                At::Mount(MountVolume {
                    fs_type: fs.into(),
                    ..Default::default()
                })
            }),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    #[test]
    fn rwx_is_block_only_with_a_kubevirt_hint() {
        assert!(require_supported(&[cap(true, Mode::MultiNodeMultiWriter, "")], "v").is_ok());
        let e =
            require_supported(&[cap(false, Mode::MultiNodeMultiWriter, "ext4")], "v").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        assert!(
            e.to_string().contains("KubeVirt") && e.to_string().contains("Block"),
            "{e}"
        );
    }

    #[test]
    fn supported_and_unsupported_shapes() {
        assert!(require_supported(&[cap(false, Mode::SingleNodeWriter, "")], "v").is_ok());
        assert!(require_supported(&[cap(false, Mode::SingleNodeWriter, "xfs")], "v").is_ok());
        assert!(require_supported(&[cap(false, Mode::SingleNodeWriter, "btrfs")], "v").is_err());
        assert!(require_supported(&[cap(false, Mode::MultiNodeReaderOnly, "")], "v").is_err());
        assert!(require_supported(&[], "v").is_err());
        let no_mode = csi::VolumeCapability {
            access_type: Some(At::Block(BlockVolume {})),
            access_mode: None,
        };
        assert!(require_supported(&[no_mode], "v").is_err());
    }
}
