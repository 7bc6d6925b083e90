//! Backing files the RDS keeps apart from their disks: the leftovers of a create or delete
//! that stopped half-way, and the room in the pool a new file needs. A file that any disk
//! uses is never removed.

use std::collections::HashMap;

use tokio::time::Instant;

use super::error::ControllerError;
use super::naming;
use super::Controller;
use crate::rds::{RdsError, RdsErrorKind, RdsPath};
use crate::volume::VolumeId;

impl Controller {
    /// Every disk's backing file, by path, with the slot of the disk that uses it.
    async fn files_in_use(
        &self,
        subject: &str,
        deadline: Instant,
    ) -> Result<HashMap<String, String>, ControllerError> {
        Ok(self
            .rds
            .list_all_disks(deadline)
            .await
            .map_err(|e| ControllerError::rds(subject, e))?
            .into_iter()
            .filter_map(|d| Some((d.file_path?, d.slot)))
            .collect())
    }

    /// Explains a `/disk add` that RouterOS refused as existing while no disk is in the
    /// volume's slot: the file at `path` is another disk's, or a leftover no disk uses.
    /// Anything else keeps RouterOS's answer.
    pub(super) async fn explain_add_conflict(
        &self,
        id: &VolumeId,
        path: &RdsPath,
        refused: RdsError,
        deadline: Instant,
    ) -> ControllerError {
        let subject = format!("volume {id}");
        // RouterOS answers "already exists" for a file at the path, "in use" for a file a
        // disk holds (the simulator's wording; both kinds are checked).
        if !matches!(
            refused.kind(),
            RdsErrorKind::AlreadyExists | RdsErrorKind::InUse
        ) {
            return ControllerError::rds(subject, refused);
        }
        let owners = match self.files_in_use(&subject, deadline).await {
            Ok(o) => o,
            Err(e) => return e,
        };
        if let Some(disk) = owners.get(path.as_str()) {
            return ControllerError::FileOfAnotherDisk {
                volume: id.to_string(),
                path: path.to_string(),
                disk: disk.clone(),
            };
        }
        match self.rds.file_exists(path, deadline).await {
            Ok(true) => {
                tracing::warn!(volume = %id, file = %path, "CreateVolume: a file no disk uses is in the way; left for the operator to check and remove");
                ControllerError::LeftoverFile {
                    volume: id.to_string(),
                    path: path.to_string(),
                }
            }
            Ok(false) => ControllerError::rds(subject, refused),
            Err(e) => ControllerError::rds(subject, e),
        }
    }

    /// For a DeleteVolume whose disk is already gone: removes the backing files of `id` an
    /// earlier, half-finished delete left, in whatever directory (a StorageClass volumePath)
    /// and under whatever source suffix (clone, restore). Returns what it removed.
    pub(super) async fn remove_leftover_files(
        &self,
        id: &VolumeId,
        deadline: Instant,
    ) -> Result<Vec<RdsPath>, ControllerError> {
        let subject = format!("volume {id}");
        let candidates: Vec<RdsPath> = self
            .rds
            .files_of_slot(id.slot(), deadline)
            .await
            .map_err(|e| ControllerError::rds(subject.clone(), e))?
            .into_iter()
            .filter(|p| naming::is_volume_file_of(id, p.as_str().rsplit('/').next().unwrap_or("")))
            .collect();
        self.remove_unused(&subject, candidates, deadline).await
    }

    /// Removes each of `files` that no disk uses (logging the ones left alone).
    pub(super) async fn remove_unused(
        &self,
        subject: &str,
        files: Vec<RdsPath>,
        deadline: Instant,
    ) -> Result<Vec<RdsPath>, ControllerError> {
        if files.is_empty() {
            return Ok(files);
        }
        let owners = self.files_in_use(subject, deadline).await?;
        let mut removed = Vec::new();
        for f in files {
            if let Some(disk) = owners.get(f.as_str()) {
                tracing::warn!(subject, file = %f, disk, "a file named like this object's backing file is used by another disk; left alone");
                continue;
            }
            self.rds
                .remove_file(&f, deadline)
                .await
                .map_err(|e| ControllerError::rds(subject, e))?;
            removed.push(f);
        }
        Ok(removed)
    }

    /// Refuses, before any command that would fail half-way, a disk of `size` bytes (OUT_OF_RANGE
    /// when the whole pool is smaller) or one that needs `added` more bytes than the pool has
    /// free (RESOURCE_EXHAUSTED).
    pub(super) async fn ensure_room(
        &self,
        subject: &str,
        size: u64,
        added: u64,
        deadline: Instant,
    ) -> Result<(), ControllerError> {
        let pool = self
            .rds
            .pool_capacity(deadline)
            .await
            .map_err(|e| ControllerError::rds(subject, e))?;
        if size > pool.size {
            return Err(ControllerError::SizeOutOfRange {
                subject: subject.to_owned(),
                reason: format!(
                    "{size} bytes is more than the whole RDS pool holds ({} bytes); ask for less",
                    pool.size
                ),
            });
        }
        if added > pool.free {
            return Err(ControllerError::NoSpace {
                subject: subject.to_owned(),
                reason: format!(
                    "needs {added} bytes but the RDS pool has {} bytes free; free space in the \
                     pool or ask for less",
                    pool.free
                ),
            });
        }
        Ok(())
    }
}
