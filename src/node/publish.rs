//! NodePublishVolume and NodeUnpublishVolume: a bind mount of the staging mount
//! (filesystem) or a device node of the volume's major:minor (block) at the target path.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::time::Instant;

use crate::error::Error;
use crate::node::mount::{self, parse_mount_flags};
use crate::node::ops::{dev_of, with_volume, Node};
use crate::node::stage_record::{Access, StageRecord};
use crate::node::transport::Target;

pub struct PublishRequest {
    pub volume_id: String,
    pub staging_path: PathBuf,
    pub target_path: PathBuf,
    pub access: Access,
    pub readonly: bool,
    pub mount_flags: Vec<String>,
}

impl Node {
    pub async fn publish(&self, r: PublishRequest, deadline: Instant) -> Result<(), Error> {
        let v = r.volume_id.as_str();
        let rec = self.staged(v)?;
        if rec.access != r.access {
            return Err(Error::FailedPrecondition(format!(
                "volume {v} was staged for {:?} access but is published for {:?}",
                rec.access, r.access
            )));
        }
        match r.access {
            Access::Filesystem => self.publish_fs(&r, deadline).await,
            Access::Block => self.publish_block(&r, &rec).await,
        }
    }

    async fn publish_fs(&self, r: &PublishRequest, deadline: Instant) -> Result<(), Error> {
        let v = r.volume_id.as_str();
        let mut opts = parse_mount_flags(v, &r.mount_flags)?;
        if r.readonly {
            opts.flags |= libc::MS_RDONLY;
        }
        let Some(staged) = self.mounts_at(&r.staging_path)?.last().cloned() else {
            return Err(Error::FailedPrecondition(format!(
                "volume {v}: staging path {} is not mounted; NodeStageVolume must run again",
                r.staging_path.display()
            )));
        };
        if let Some(m) = self.mounts_at(&r.target_path)?.last() {
            if m.dev != staged.dev {
                return Err(Error::FailedPrecondition(format!(
                    "volume {v}: target {} is already mounted from {} but the staged volume is {}; unpublish it first",
                    r.target_path.display(),
                    m.dev,
                    staged.dev
                )));
            }
            let is_ro = m.mount_options.iter().any(|o| o == "ro");
            if is_ro != (opts.flags & libc::MS_RDONLY != 0) {
                return Err(Error::AlreadyExists(format!(
                    "volume {v}: target {} is already published {} ; unpublish it before publishing {}",
                    r.target_path.display(),
                    if is_ro { "read-only" } else { "read-write" },
                    if is_ro { "read-write" } else { "read-only" }
                )));
            }
            return Ok(());
        }
        mount::ensure_dir(&r.target_path)?;
        mount::bind_mount(&r.staging_path, &r.target_path, opts.flags, deadline)
            .await
            .map_err(|e| with_volume(v, e))
    }

    async fn publish_block(&self, r: &PublishRequest, rec: &StageRecord) -> Result<(), Error> {
        let v = r.volume_id.as_str();
        let t = Target::from_record(rec);
        let d = self.transport.resolve(v, &t).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "volume {v}: its device ({}) is not present on this node; unstage and stage the volume again",
                rec.target
            ))
        })?;
        if let Some(parent) = r.target_path.parent() {
            mount::ensure_dir(parent)?;
        }
        let p = &r.target_path;
        let io = |what: &str, e: std::io::Error| {
            Error::Internal(format!("volume {v}: {what} {}: {e}", p.display()))
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
                std::fs::remove_file(p).map_err(|e| io("cannot remove the stale device node", e))?;
            }
            Ok(md) if md.is_file() => std::fs::remove_file(p).map_err(|e| io("cannot replace the file", e))?,
            Ok(md) if md.is_dir() => {
                if !self.mounts_at(p)?.is_empty() {
                    return Err(Error::FailedPrecondition(format!(
                        "volume {v}: block target {} is a mounted directory; unpublish it first",
                        p.display()
                    )));
                }
                std::fs::remove_dir(p).map_err(|e| io("cannot replace the directory (not empty?)", e))?;
            }
            Ok(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "volume {v}: block target {} exists and is neither a device node, a file nor a directory",
                    p.display()
                )))
            }
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

    pub async fn unpublish(
        &self,
        volume_id: &str,
        target: &Path,
        deadline: Instant,
    ) -> Result<(), Error> {
        let md = match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error::Internal(format!(
                    "volume {volume_id}: cannot inspect {}: {e}",
                    target.display()
                )))
            }
            Ok(md) => md,
        };
        let rm = |r: std::io::Result<()>| {
            r.or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| {
                Error::Internal(format!(
                    "volume {volume_id}: cannot remove {}: {e}",
                    target.display()
                ))
            })
        };
        if md.is_dir() {
            self.unmount_all(volume_id, target, deadline).await?;
            rm(std::fs::remove_dir(target))
        } else {
            // A block node we made (or a file): unlinking it never touches the device.
            rm(std::fs::remove_file(target))
        }
    }
}
