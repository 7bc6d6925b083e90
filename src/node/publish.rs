//! NodePublishVolume: a bind mount of the staging mount (filesystem) or a device node of the
//! volume's major:minor (block) at the target path — each only after checking that what it
//! hands out is the volume's device now.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use node_io::mount::MountFlags;
use tokio::time::Instant;

use crate::node::error::NodeError;
use crate::node::mount::{self, parse_mount_options};
use crate::node::ops::{dev_of, staging_mounted_elsewhere, Node};
use crate::node::stage_record::{AccessType, StageRecord};

pub struct PublishRequest {
    pub volume_id: String,
    pub staging_path: PathBuf,
    pub target_path: PathBuf,
    pub access: AccessType,
    pub readonly: bool,
    pub mount_flags: Vec<String>,
}

impl Node {
    pub async fn publish(&self, r: PublishRequest, deadline: Instant) -> Result<(), NodeError> {
        let rec = self.staged(&r.volume_id)?;
        if rec.access != r.access {
            return Err(NodeError::AccessMismatch {
                staged: rec.access,
                requested: r.access,
            });
        }
        match r.access {
            AccessType::Mount => self.publish_fs(&r, &rec, deadline).await,
            // Refused before anything is made: a device node cannot be read-only for one
            // pod, and an OK would hand out a writable device.
            AccessType::Block if r.readonly => Err(NodeError::ReadOnlyBlock),
            AccessType::Block => self.publish_block(&r, &rec).await,
        }
    }

    async fn publish_fs(
        &self,
        r: &PublishRequest,
        rec: &StageRecord,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        let mut opts = parse_mount_options(&r.mount_flags)?;
        if r.readonly {
            opts.flags |= MountFlags::RDONLY;
        }
        if rec.staging_path != r.staging_path {
            return Err(NodeError::StagedElsewhere {
                path: r.staging_path.clone(),
                staged_path: rec.staging_path.clone(),
            });
        }
        let Some(staged) = self.mounts_at(&r.staging_path)?.last().cloned() else {
            return Err(NodeError::StagingNotMounted {
                path: r.staging_path.clone(),
            });
        };
        // The staging mount is bound into the pod only if it is the volume's device now: a
        // mount left from before a renumbering (or put there by something else) is not.
        let d = self.transport.resolve_present(&rec.target).await?;
        if staged.dev != d.dev {
            return Err(staging_mounted_elsewhere(&r.staging_path, &staged, d));
        }
        if let Some(m) = self.mounts_at(&r.target_path)?.last() {
            if m.dev != staged.dev {
                return Err(NodeError::TargetMountedElsewhere {
                    target: r.target_path.clone(),
                    mounted: m.dev,
                    staged: staged.dev,
                });
            }
            let read_only = m.mount_options.iter().any(|o| o == "ro");
            if read_only != opts.flags.contains(MountFlags::RDONLY) {
                return Err(NodeError::PublishedDifferently {
                    target: r.target_path.clone(),
                    read_only,
                });
            }
            return Ok(());
        }
        mount::ensure_dir(&r.target_path)?;
        mount::bind_mount(&r.staging_path, &r.target_path, opts.flags, deadline).await
    }

    async fn publish_block(&self, r: &PublishRequest, rec: &StageRecord) -> Result<(), NodeError> {
        let v = r.volume_id.as_str();
        let d = self.transport.resolve_present(&rec.target).await?;
        if let Some(parent) = r.target_path.parent() {
            mount::ensure_dir(parent)?;
        }
        let p = &r.target_path;
        let io = |what: &'static str, source: std::io::Error| NodeError::Io {
            what,
            path: p.clone(),
            source,
        };
        match std::fs::symlink_metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot inspect", e)),
            Ok(md) if md.file_type().is_block_device() => {
                if dev_of(md.rdev()) == d.dev {
                    return Ok(());
                }
                // Renumbered after a reconnect: the old node points at another (or no) disk.
                tracing::warn!(volume = %v, target = %p.display(), old = %dev_of(md.rdev()), new = %d.dev, "repairing a block node after renumbering");
                std::fs::remove_file(p)
                    .map_err(|e| io("cannot remove the stale device node", e))?;
            }
            // Never deleted or replaced: it is not ours (a pod's data, a leftover of another
            // driver).
            Ok(md) if md.is_file() => {
                return Err(NodeError::BlockTargetIsFile { target: p.clone() })
            }
            Ok(md) if md.is_dir() => {
                if !self.mounts_at(p)?.is_empty() {
                    return Err(NodeError::BlockTargetMounted { target: p.clone() });
                }
                std::fs::remove_dir(p)
                    .map_err(|e| io("cannot replace the directory (not empty?)", e))?;
            }
            Ok(_) => return Err(NodeError::BlockTargetUnexpected { target: p.clone() }),
        }
        // A device node of our own, not a bind mount of /dev/<name>: it keeps naming the
        // same major:minor, and the CO's bind of it into the pod works like any node.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.as_path(),
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o660),
            rustix::fs::makedev(d.dev.major, d.dev.minor),
        )
        .map_err(|e| io("mknod", e.into()))?;
        // mknod applies the umask; the mode is part of the contract.
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| io("chmod", e))
    }
}
