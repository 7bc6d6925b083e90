//! Filesystem planning: which filesystems this driver makes and mounts, and what NodeStage
//! does with a device given what a probe found on it.

use node_io::probe::{FsKind, PartitionTableKind, Probe};

use crate::node::error::NodeError;

/// Filesystems this driver creates and mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    /// `""` is None (the driver's default applies); anything but ext4/xfs is refused.
    pub fn parse(s: &str) -> Result<Option<Self>, NodeError> {
        match s {
            "" => Ok(None),
            "ext4" => Ok(Some(FsType::Ext4)),
            "xfs" => Ok(Some(FsType::Xfs)),
            other => Err(NodeError::UnsupportedFs { fs: other.into() }),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
    fn of(kind: FsKind) -> Option<Self> {
        match kind {
            FsKind::Ext4 => Some(FsType::Ext4),
            FsKind::Xfs => Some(FsType::Xfs),
            _ => None,
        }
    }
}

/// What NodeStage does with a filesystem volume's device, decided from what is on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsPlan {
    Mount(FsType),
    Format(FsType),
}

/// Why NodeStage refuses to format or mount what it found on a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsRefusal {
    #[error(
        "is blank (all zeros) but the volume is not marked fresh (it was created from a snapshot or clone, \
         or its context lacks fresh=true), so it is not formatted: a blank clone means the copy on the RDS \
         is incomplete — check the disk on the RDS, or create the volume empty"
    )]
    BlankNotFresh,
    #[error(
        "holds {} but fsType {} was requested; it is not reformatted — set fsType to {} or use another volume",
        .found.as_str(), .requested.as_str(), .found.as_str()
    )]
    OtherFilesystem { found: FsType, requested: FsType },
    #[error(
        "holds {0}, which this driver does not mount (ext4, xfs only); it is left untouched — \
         move the data or use another volume"
    )]
    UnsupportedFilesystem(FsKind),
    #[error(
        "has a {0} partition table; this driver uses whole-disk filesystems and leaves it untouched — \
         inspect it on the node (blkid, fdisk -l) or use another volume"
    )]
    PartitionTable(PartitionTableKind),
    #[error(
        "carries several signatures that do not belong together ({}); it is left untouched — inspect it \
         (wipefs -n) before deciding what it holds",
        .0.join(", ")
    )]
    Ambiguous(Vec<String>),
    #[error(
        "holds non-zero data with no known signature (it may be a raw database, encrypted data, or a \
         partial copy); it is left untouched — inspect it or use another volume"
    )]
    Unknown,
}

/// Formatting is allowed ONLY for a device proven blank (every probed byte zero) of a volume
/// created empty (`fresh`). Everything else either mounts what is there or is refused —
/// an earlier driver lost data by formatting what a misread probe called empty.
pub fn plan_filesystem(
    seen: &Probe,
    requested: Option<FsType>,
    fresh: bool,
) -> Result<FsPlan, FsRefusal> {
    match seen {
        Probe::Blank if fresh => Ok(FsPlan::Format(requested.unwrap_or(FsType::Ext4))),
        Probe::Blank => Err(FsRefusal::BlankNotFresh),
        Probe::Filesystem(kind) => match (FsType::of(*kind), requested) {
            (Some(found), None) => Ok(FsPlan::Mount(found)),
            (Some(found), Some(req)) if found == req => Ok(FsPlan::Mount(found)),
            (Some(found), Some(requested)) => Err(FsRefusal::OtherFilesystem { found, requested }),
            (None, _) => Err(FsRefusal::UnsupportedFilesystem(*kind)),
        },
        Probe::PartitionTable(kind) => Err(FsRefusal::PartitionTable(*kind)),
        Probe::Ambiguous(sigs) => Err(FsRefusal::Ambiguous(sigs.clone())),
        Probe::Unknown => Err(FsRefusal::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    /// The refusal as NodeStage answers it.
    fn plan(p: Probe, req: Option<FsType>, fresh: bool) -> Result<FsPlan, Status> {
        plan_filesystem(&p, req, fresh).map_err(|reason| {
            Status::from(
                NodeError::FormatRefused {
                    device: "nvme1n1".into(),
                    reason,
                }
                .on("pvc-1"),
            )
        })
    }

    #[test]
    fn only_a_blank_fresh_device_is_formatted() {
        assert_eq!(
            plan(Probe::Blank, Some(FsType::Xfs), true).unwrap(),
            FsPlan::Format(FsType::Xfs)
        );
        assert_eq!(
            plan(Probe::Blank, None, true).unwrap(),
            FsPlan::Format(FsType::Ext4)
        );
        let e = plan(Probe::Blank, Some(FsType::Ext4), false).unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        let m = e.message();
        assert!(
            m.contains("pvc-1")
                && m.contains("nvme1n1")
                && m.contains("not marked fresh")
                && m.contains("nothing was formatted"),
            "{m}"
        );
    }

    #[test]
    fn existing_filesystems_mount_and_mismatches_are_refused() {
        assert_eq!(
            plan(Probe::Filesystem(FsKind::Ext4), None, false).unwrap(),
            FsPlan::Mount(FsType::Ext4)
        );
        assert_eq!(
            plan(Probe::Filesystem(FsKind::Xfs), Some(FsType::Xfs), true).unwrap(),
            FsPlan::Mount(FsType::Xfs)
        );
        let e = plan(Probe::Filesystem(FsKind::Xfs), Some(FsType::Ext4), true).unwrap_err();
        let m = e.message();
        assert!(
            m.contains("holds xfs") && m.contains("fsType ext4") && m.contains("not reformatted"),
            "{m}"
        );
    }

    #[test]
    fn anything_unclear_is_refused_whatever_fresh_says() {
        for p in [
            Probe::Unknown,
            Probe::Ambiguous(vec!["ext4".into(), "gpt".into()]),
            Probe::PartitionTable(PartitionTableKind::Gpt),
            Probe::Filesystem(FsKind::Btrfs),
            Probe::Filesystem(FsKind::Luks),
            Probe::Filesystem(FsKind::Ext3),
        ] {
            for fresh in [true, false] {
                let e = plan(p.clone(), Some(FsType::Ext4), fresh).unwrap_err();
                assert_eq!(e.code(), Code::FailedPrecondition, "{p:?}");
                assert!(e.message().contains("nothing was formatted"), "{e}");
            }
        }
    }
}
