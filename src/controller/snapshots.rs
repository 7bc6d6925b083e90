//! CreateSnapshot, DeleteSnapshot and ListSnapshots. A snapshot is a non-exported copy-from
//! disk; its id and file path carry its source and creation time (see `naming`).

use tokio::time::Instant;

use super::error::ControllerError;
use super::naming::{SnapshotId, SNAPSHOT_SLOT_PREFIX};
use super::requests::{CreateSnapshot, ListSnapshots};
use super::Controller;
use crate::error::echo;
use crate::rds::{Disk, LookFirst, SlotPrefix};

/// A snapshot as the snapshot RPCs report it. The copy completes before
/// `/disk add copy-from` returns, so a snapshot is always ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    pub size_bytes: u64,
}

fn info(id: SnapshotId, disk: &Disk) -> SnapshotInfo {
    SnapshotInfo {
        id,
        size_bytes: disk.size_bytes,
    }
}

impl Controller {
    /// CreateSnapshot: idempotent by name (the slot is derived from it).
    pub async fn snapshot(
        &self,
        req: &CreateSnapshot,
        deadline: Instant,
    ) -> Result<SnapshotInfo, ControllerError> {
        let slot = &req.slot;
        let subject = format!("snapshot {} ({slot})", echo(&req.name));
        let source = req
            .source
            .existing()
            .map_err(|_| ControllerError::SourceNotFound {
                subject: subject.clone(),
                what: "volume",
                id: req.source.as_str().to_owned(),
                on_rds: false,
            })?;

        if let Some(existing) = self
            .rds
            .get_disk(slot, deadline)
            .await
            .map_err(|e| ControllerError::rds(subject.clone(), e))?
        {
            let id = existing
                .file_path
                .as_deref()
                .and_then(|p| SnapshotId::from_disk(self.rds.base_path(), &existing.slot, p))
                .ok_or_else(|| {
                    ControllerError::internal(
                        subject.clone(),
                        format!("disk {slot} exists but is not a snapshot of this driver"),
                    )
                })?;
            if &id.source != source {
                return Err(ControllerError::Exists {
                    subject,
                    reason: format!("for source volume {}, not {source}", id.source),
                });
            }
            return Ok(info(id, &existing));
        }

        let source_disk = self
            .rds
            .get_disk(source.slot(), deadline)
            .await
            .map_err(|e| ControllerError::rds(subject.clone(), e))?
            .ok_or_else(|| ControllerError::SourceNotFound {
                subject: subject.clone(),
                what: "volume",
                id: source.to_string(),
                on_rds: true,
            })?;
        // A snapshot is a full copy: room first (CSI: not enough space is RESOURCE_EXHAUSTED).
        self.ensure_room(
            &subject,
            source_disk.size_bytes,
            source_disk.size_bytes,
            deadline,
        )
        .await?;
        let id = SnapshotId {
            slot: slot.clone(),
            source: source.clone(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let path = id.file(self.rds.base_path())?;
        let disk = self
            .rds
            .copy_disk(
                source.slot(),
                &path,
                slot,
                None,
                None,
                LookFirst::Yes,
                deadline,
            )
            .await
            .map_err(|e| ControllerError::rds(subject, e))?;
        tracing::info!(snapshot = %id, bytes = disk.size_bytes, "snapshot created");
        Ok(info(id, &disk))
    }

    /// DeleteSnapshot: an id this driver never issued is deleted already.
    pub async fn remove_snapshot(
        &self,
        id: Option<&SnapshotId>,
        deadline: Instant,
    ) -> Result<(), ControllerError> {
        let Some(id) = id else {
            tracing::info!("DeleteSnapshot: not a snapshot id of this driver; nothing to delete");
            return Ok(());
        };
        let subject = format!("snapshot {id}");
        let deleted = self
            .rds
            .delete_disk(&id.slot, deadline)
            .await
            .map_err(|e| ControllerError::rds(subject.clone(), e))?;
        if let Some(file) = deleted {
            tracing::info!(snapshot = %id, file = %file, "snapshot deleted (disk and backing file)");
            return Ok(());
        }
        // No disk: the id still says where its file lives, in case an earlier delete
        // stopped between the disk and the file.
        let file = id.file(self.rds.base_path())?;
        let exists = self
            .rds
            .file_exists(&file, deadline)
            .await
            .map_err(|e| ControllerError::rds(subject.clone(), e))?;
        if !exists {
            tracing::info!(snapshot = %id, "DeleteSnapshot: the snapshot has no disk and no backing file on the RDS (already deleted, or never created); nothing to delete");
            return Ok(());
        }
        let removed = self.remove_unused(&subject, vec![file], deadline).await?;
        tracing::info!(snapshot = %id, files = ?removed.iter().map(|f| f.as_str()).collect::<Vec<_>>(), "DeleteSnapshot: the disk was already gone; removed the backing file an earlier delete left behind");
        Ok(())
    }

    /// ListSnapshots: by id, by source volume, or all; one page, ordered by id.
    pub async fn snapshots(
        &self,
        req: &ListSnapshots,
        deadline: Instant,
    ) -> Result<(Vec<SnapshotInfo>, String), ControllerError> {
        // The listing is fetched once per generation, not once per page (pagination.rs);
        // the key keeps a token of one filter from reading another's generation.
        let key = format!(
            "snapshots id={} source={}",
            match &req.snapshot {
                None => "*".to_string(),
                Some(None) => "-".to_string(),
                Some(Some(id)) => id.to_string(),
            },
            req.source_volume.as_deref().unwrap_or("*"),
        );
        let base = self.rds.base_path();
        let fetch = || async {
            let mut found: Vec<(SnapshotId, Disk)> = match &req.snapshot {
                // An id we never issued simply matches nothing.
                Some(None) => Vec::new(),
                // By id: one lookup.
                Some(Some(id)) => self
                    .rds
                    .get_disk(&id.slot, deadline)
                    .await
                    .map_err(|e| ControllerError::rds(format!("snapshot {id}"), e))?
                    .into_iter()
                    .filter_map(|d| {
                        let actual = SnapshotId::from_disk(base, &d.slot, d.file_path.as_deref()?)?;
                        (&actual == id).then_some((actual, d))
                    })
                    .collect(),
                None => {
                    let prefix =
                        SlotPrefix::new(SNAPSHOT_SLOT_PREFIX).expect("static prefix is valid");
                    self.rds
                        .list_disks(&prefix, deadline)
                        .await
                        .map_err(|e| ControllerError::rds("ListSnapshots", e))?
                        .into_iter()
                        .filter_map(|d| {
                            let id = SnapshotId::from_disk(base, &d.slot, d.file_path.as_deref()?)?;
                            Some((id, d))
                        })
                        .collect()
                }
            };
            if let Some(source) = &req.source_volume {
                found.retain(|(id, _)| id.source.as_str() == source);
            }
            let mut found: Vec<(String, SnapshotId, Disk)> = found
                .into_iter()
                .map(|(id, d)| (id.to_string(), id, d))
                .collect();
            found.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(found)
        };
        let (page, next_token) = self
            .snapshot_listings
            .page(
                &key,
                req.page.max_entries,
                &req.page.starting_token,
                |e| e.0.as_str(),
                fetch,
            )
            .await?;
        Ok((
            page.into_iter().map(|(_, id, d)| info(id, &d)).collect(),
            next_token,
        ))
    }
}
