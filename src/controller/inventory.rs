//! What the controller reports about volumes without changing them: ControllerGetVolume,
//! ListVolumes, the existence check of ValidateVolumeCapabilities, and GetCapacity.

use tokio::time::Instant;

use super::error::ControllerError;
use super::requests::{GetCapacity, Page, VolumeRef};
use super::Controller;
use crate::rds::{size, Disk};
use crate::volume::VolumeId;

/// The health of a volume's disk, as CSI's VolumeCondition reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Condition {
    pub abnormal: bool,
    pub message: String,
}

/// One volume as ControllerGetVolume and ListVolumes report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStatus {
    pub id: String,
    pub capacity_bytes: u64,
    pub published_nodes: Vec<String>,
    pub condition: Condition,
}

/// What GetCapacity reports, in bytes (sizes `None`: not reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    pub available: u64,
    pub maximum_volume: Option<u64>,
    pub minimum_volume: Option<u64>,
}

fn disk_condition(d: &Disk) -> Condition {
    if d.is_disabled() {
        Condition {
            abnormal: true,
            message: format!("disk {} is disabled on the RDS", d.slot),
        }
    } else if !d.nvme_tcp_export {
        Condition {
            abnormal: true,
            message: format!("disk {} is not exported over NVMe/TCP on the RDS", d.slot),
        }
    } else {
        Condition::default()
    }
}

impl Controller {
    /// ControllerGetVolume. A published volume whose disk is gone is reported abnormal, not
    /// NOT_FOUND: the CO must learn that a node holds a volume that no longer exists.
    pub async fn describe(
        &self,
        volume: &VolumeRef,
        deadline: Instant,
    ) -> Result<VolumeStatus, ControllerError> {
        let id = volume.existing()?;
        let published = self.published_nodes(id).unwrap_or_default();
        let disk = self
            .rds
            .get_disk(id.slot(), deadline)
            .await
            .map_err(|e| ControllerError::rds(format!("volume {id}"), e))?;
        let (capacity_bytes, condition) = match &disk {
            None if published.is_empty() => {
                return Err(ControllerError::VolumeNotFound {
                    id: id.to_string(),
                    on_rds: true,
                })
            }
            None => (
                0,
                Condition {
                    abnormal: true,
                    message: format!(
                        "the disk of volume {id} is missing on the RDS while it is published to {}",
                        published.join(", ")
                    ),
                },
            ),
            Some(d) => (d.size_bytes, disk_condition(d)),
        };
        Ok(VolumeStatus {
            id: id.to_string(),
            capacity_bytes,
            published_nodes: published,
            condition,
        })
    }

    /// ListVolumes: the volumes of this driver under the base path, by id, one page.
    pub async fn volumes(
        &self,
        page: &Page,
        deadline: Instant,
    ) -> Result<(Vec<VolumeStatus>, String), ControllerError> {
        // The listing is fetched once per generation, not once per page (pagination.rs).
        let fetch = || async {
            let disks = self
                .rds
                .list_all_disks(deadline)
                .await
                .map_err(|e| ControllerError::rds("ListVolumes", e))?;
            let base = self.rds.base_path();
            let mut volumes: Vec<(VolumeId, Disk)> = disks
                .into_iter()
                .filter(|d| {
                    d.file_path
                        .as_deref()
                        .is_some_and(|p| base.contains_file_name(p.trim_start_matches('/')))
                })
                .filter_map(|d| Some((VolumeId::parse(&d.slot).ok()?, d)))
                .collect();
            volumes.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(volumes)
        };
        let (page, next_token) = self
            .volume_listings
            .page(
                "volumes",
                page.max_entries,
                &page.starting_token,
                |(id, _)| id.as_str(),
                fetch,
            )
            .await?;
        let entries = page
            .into_iter()
            .map(|(id, d)| VolumeStatus {
                published_nodes: self.published_nodes(&id).unwrap_or_default(),
                id: id.to_string(),
                capacity_bytes: d.size_bytes,
                condition: disk_condition(&d),
            })
            .collect();
        Ok((entries, next_token))
    }

    /// ValidateVolumeCapabilities' part that needs the RDS: the volume exists.
    pub async fn check_exists(
        &self,
        volume: &VolumeRef,
        deadline: Instant,
    ) -> Result<VolumeId, ControllerError> {
        let (id, _disk) = self.existing_disk(volume, deadline).await?;
        Ok(id.clone())
    }

    /// GetCapacity: the pool's free space in whole MiB (what can really be created); zero
    /// for capabilities this driver cannot honour (the spec).
    pub async fn capacity(
        &self,
        req: &GetCapacity,
        deadline: Instant,
    ) -> Result<Capacity, ControllerError> {
        if !req.supported {
            return Ok(Capacity::default());
        }
        let pool = self
            .rds
            .pool_capacity(deadline)
            .await
            .map_err(|e| ControllerError::rds("GetCapacity", e))?;
        let usable = pool.free - pool.free % size::VOLUME_GRANULARITY;
        Ok(Capacity {
            available: usable,
            maximum_volume: Some(usable),
            minimum_volume: Some(size::MIN_VOLUME_BYTES),
        })
    }
}
