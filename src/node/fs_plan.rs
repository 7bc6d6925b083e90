//! Filesystem planning: which filesystems this driver makes and mounts, and what NodeStage
//! does with a device given what a probe found on it.

use node_io::probe::{FsKind, PartitionTableKind, Probe};

use crate::volume::FsType;

/// The filesystem a probe found, if it is one this driver mounts.
fn mountable(kind: FsKind) -> Option<FsType> {
    match kind {
        FsKind::Ext4 => Some(FsType::Ext4),
        FsKind::Xfs => Some(FsType::Xfs),
        _ => None,
    }
}

/// What NodeStage does with a filesystem volume's device, decided from what is on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsPlan {
    Mount(FsType),
    /// `again`: redo an mkfs this node started and did not see finish (see
    /// [`plan_filesystem`]); the tool then overwrites what the interrupted run left.
    Format {
        fs: FsType,
        again: bool,
    },
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
        "holds {0}, which this driver does not mount (only {choices}); it is left untouched — \
         move the data or use another volume",
        choices = FsType::choices()
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
///
/// One exception, `formatting`: the stage record says this node started `mkfs` of that type
/// on this fresh volume (written durably before the tool ran) and never saw it finish — the
/// node was killed mid-mkfs. Nothing but that mkfs has written to the device since (a volume
/// is mounted only after its mkfs is recorded as finished), so what it left — data with no
/// known signature, or a partial filesystem of that type — is formatted again.
pub fn plan_filesystem(
    seen: &Probe,
    requested: Option<FsType>,
    fresh: bool,
    formatting: Option<FsType>,
) -> Result<FsPlan, FsRefusal> {
    if let (Some(fs), true) = (formatting, fresh) {
        let ours = match seen {
            Probe::Blank | Probe::Unknown => true,
            Probe::Filesystem(kind) => mountable(*kind) == Some(fs),
            _ => false,
        };
        if ours {
            return Ok(FsPlan::Format { fs, again: true });
        }
    }
    match seen {
        Probe::Blank if fresh => Ok(FsPlan::Format {
            fs: requested.unwrap_or(FsType::Ext4),
            again: false,
        }),
        Probe::Blank => Err(FsRefusal::BlankNotFresh),
        Probe::Filesystem(kind) => match (mountable(*kind), requested) {
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
    use crate::node::error::NodeError;
    use tonic::{Code, Status};

    /// The refusal as NodeStage answers it.
    fn plan(p: Probe, req: Option<FsType>, fresh: bool) -> Result<FsPlan, Status> {
        plan_filesystem(&p, req, fresh, None).map_err(|reason| {
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
            FsPlan::Format {
                fs: FsType::Xfs,
                again: false
            }
        );
        assert_eq!(
            plan(Probe::Blank, None, true).unwrap(),
            FsPlan::Format {
                fs: FsType::Ext4,
                again: false
            }
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

    /// The mark "this node started mkfs of this fresh volume" (and only it) lets what an
    /// interrupted mkfs left be formatted again; it never covers other content.
    #[test]
    fn an_interrupted_mkfs_of_this_node_is_redone_and_nothing_else() {
        let again = |p: Probe, fresh: bool| plan_filesystem(&p, None, fresh, Some(FsType::Xfs));
        for p in [Probe::Unknown, Probe::Blank, Probe::Filesystem(FsKind::Xfs)] {
            assert_eq!(
                again(p.clone(), true).unwrap(),
                FsPlan::Format {
                    fs: FsType::Xfs,
                    again: true
                },
                "{p:?}"
            );
        }
        for p in [
            Probe::Filesystem(FsKind::Ext4),
            Probe::Filesystem(FsKind::Btrfs),
            Probe::PartitionTable(PartitionTableKind::Gpt),
            Probe::Ambiguous(vec!["xfs".into(), "gpt".into()]),
        ] {
            assert!(
                !matches!(again(p.clone(), true), Ok(FsPlan::Format { .. })),
                "{p:?}"
            );
        }
        // Not fresh (a clone, a restore): the mark is no licence.
        assert!(again(Probe::Unknown, false).is_err());
        // Without the mark the rule stands: non-zero data is never formatted.
        assert!(plan_filesystem(&Probe::Unknown, Some(FsType::Xfs), true, None).is_err());
    }
}
