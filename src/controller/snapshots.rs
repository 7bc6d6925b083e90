//! CreateSnapshot, DeleteSnapshot and ListSnapshots. A snapshot is a non-exported copy-from
//! disk; its id and file path carry its source and creation time (see `naming`).

use csi_proto::v1 as csi;
use tokio::time::Instant;

use super::naming::{self, SnapshotId, SNAPSHOT_SLOT_PREFIX};
use super::{pagination, rds_errors, Controller};
use crate::error::Error;
use crate::rds::{Disk, SlotPrefix};

fn snapshot(id: &SnapshotId, disk: &Disk) -> csi::Snapshot {
    csi::Snapshot {
        size_bytes: disk.size_bytes as i64,
        snapshot_id: id.to_string(),
        source_volume_id: id.source.to_string(),
        creation_time: Some(prost_types::Timestamp {
            seconds: id.created_unix as i64,
            nanos: 0,
        }),
        // The copy completes before `/disk add copy-from` returns.
        ready_to_use: true,
        group_snapshot_id: String::new(),
    }
}

impl Controller {
    pub async fn create_snapshot(
        &self,
        req: csi::CreateSnapshotRequest,
        deadline: Instant,
    ) -> Result<csi::CreateSnapshotResponse, Error> {
        if req.name.is_empty() {
            return Err(Error::InvalidArgument("snapshot name is required".into()));
        }
        if req.source_volume_id.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "snapshot {}: source_volume_id is required",
                req.name
            )));
        }
        let slot = SnapshotId::slot_for_name(&req.name);
        let subject = format!("snapshot {} ({slot})", req.name);
        let source = naming::existing_volume_slot(&req.source_volume_id).ok_or_else(|| {
            Error::NotFound(format!(
                "{subject}: source volume {:?} does not exist",
                req.source_volume_id
            ))
        })?;

        if let Some(existing) = self
            .rds
            .get_disk(&slot, deadline)
            .await
            .map_err(|e| rds_errors::map(e, &subject))?
        {
            let id = existing
                .file_path
                .as_deref()
                .and_then(|p| SnapshotId::from_disk(self.rds.base_path(), &existing.slot, p))
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "{subject}: disk {slot} exists but is not a snapshot of this driver"
                    ))
                })?;
            if id.source != source {
                return Err(Error::AlreadyExists(format!(
                    "{subject} already exists for source volume {}, not {source}",
                    id.source
                )));
            }
            return Ok(csi::CreateSnapshotResponse {
                snapshot: Some(snapshot(&id, &existing)),
            });
        }

        self.rds
            .get_disk(&source, deadline)
            .await
            .map_err(|e| rds_errors::map(e, &subject))?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{subject}: source volume {source} does not exist on the RDS"
                ))
            })?;
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
            .copy_disk(&source, &path, &slot, None, None, deadline)
            .await
            .map_err(|e| rds_errors::map(e, &subject))?;
        tracing::info!(snapshot = %id, bytes = disk.size_bytes, "snapshot created");
        Ok(csi::CreateSnapshotResponse {
            snapshot: Some(snapshot(&id, &disk)),
        })
    }

    pub async fn delete_snapshot(&self, snapshot_id: &str, deadline: Instant) -> Result<(), Error> {
        if snapshot_id.is_empty() {
            return Err(Error::InvalidArgument("snapshot_id is required".into()));
        }
        let Some(id) = SnapshotId::parse(snapshot_id) else {
            tracing::info!(
                snapshot = snapshot_id,
                "DeleteSnapshot: not a snapshot id of this driver; nothing to delete"
            );
            return Ok(());
        };
        self.rds
            .delete_disk(&id.slot, deadline)
            .await
            .map_err(|e| rds_errors::map(e, &format!("snapshot {id}")))?;
        tracing::info!(snapshot = %id, "snapshot deleted");
        Ok(())
    }

    pub async fn list_snapshots(
        &self,
        req: csi::ListSnapshotsRequest,
        deadline: Instant,
    ) -> Result<csi::ListSnapshotsResponse, Error> {
        use csi::list_snapshots_response::Entry;
        pagination::start_after(&req.starting_token)?;
        let base = self.rds.base_path();
        let mut found: Vec<(SnapshotId, Disk)> = if !req.snapshot_id.is_empty() {
            // By id: one lookup; an id we never issued simply matches nothing.
            match SnapshotId::parse(&req.snapshot_id) {
                None => Vec::new(),
                Some(id) => self
                    .rds
                    .get_disk(&id.slot, deadline)
                    .await
                    .map_err(|e| rds_errors::map(e, &format!("snapshot {id}")))?
                    .into_iter()
                    .filter_map(|d| {
                        let actual = SnapshotId::from_disk(base, &d.slot, d.file_path.as_deref()?)?;
                        (actual == id).then_some((actual, d))
                    })
                    .collect(),
            }
        } else {
            let prefix = SlotPrefix::new(SNAPSHOT_SLOT_PREFIX).expect("static prefix is valid");
            self.rds
                .list_disks(&prefix, deadline)
                .await
                .map_err(|e| rds_errors::map(e, "ListSnapshots"))?
                .into_iter()
                .filter_map(|d| {
                    let id = SnapshotId::from_disk(base, &d.slot, d.file_path.as_deref()?)?;
                    Some((id, d))
                })
                .collect()
        };
        if !req.source_volume_id.is_empty() {
            found.retain(|(id, _)| id.source.as_str() == req.source_volume_id);
        }
        let mut found: Vec<(String, SnapshotId, Disk)> = found
            .into_iter()
            .map(|(id, d)| (id.to_string(), id, d))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let (page, next_token) = pagination::page(
            found,
            |e| e.0.as_str(),
            req.max_entries,
            &req.starting_token,
        )?;
        Ok(csi::ListSnapshotsResponse {
            entries: page
                .into_iter()
                .map(|(_, id, d)| Entry {
                    snapshot: Some(snapshot(&id, &d)),
                })
                .collect(),
            next_token,
        })
    }
}
