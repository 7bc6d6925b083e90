//! CreateVolume, DeleteVolume, ControllerExpandVolume, ControllerGetVolume, ListVolumes,
//! ValidateVolumeCapabilities and GetCapacity over the RDS client.

use csi_proto::v1 as csi;
use tokio::time::Instant;

use super::capabilities::{self, Capability};
use super::naming::{self, SnapshotId, Source};
use super::params::VolumeParams;
use super::{pagination, rds_errors, Controller};
use crate::error::Error;
use crate::rds::{size, Disk, Nqn, NvmeExport, Port, Slot};
use crate::volume_context::VolumeContext;

fn capacity(range: Option<&csi::CapacityRange>, volume: &str) -> Result<(u64, u64), Error> {
    let (req, lim) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if req < 0 || lim < 0 {
        return Err(Error::InvalidArgument(format!(
            "volume {volume}: capacity_range must not be negative (required {req}, limit {lim})"
        )));
    }
    if lim > 0 && req > lim {
        return Err(Error::InvalidArgument(format!(
            "volume {volume}: required_bytes {req} exceeds limit_bytes {lim}"
        )));
    }
    Ok((req as u64, lim as u64))
}

fn plan(required: u64, limit: u64, volume: &str) -> Result<u64, Error> {
    size::plan_volume_size(required, limit).map_err(|e| {
        Error::OutOfRange(format!(
            "volume {volume}: {e}; volumes are at least 1 GiB and a multiple of 1 MiB"
        ))
    })
}

fn fits(size: u64, required: u64, limit: u64) -> bool {
    size >= required && (limit == 0 || size <= limit)
}

impl Controller {
    fn context(
        &self,
        slot: &Slot,
        p: &VolumeParams,
        fs: Option<String>,
        fresh: bool,
        file: &str,
    ) -> Result<VolumeContext, Error> {
        let nvme_address = p
            .nvme_address
            .clone()
            .or_else(|| self.cfg.default_nvme_address.clone())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "volume {slot}: no NVMe/TCP address: set the controller's --nvme-address or the StorageClass parameter nvmeAddress"
                ))
            })?;
        Ok(VolumeContext {
            nvme_address,
            nvme_port: p.nvme_port,
            nqn: self.nqn(slot)?.to_string(),
            tunables: p.tunables,
            migration_timeout_seconds: p.migration_timeout_seconds,
            fs_type: fs,
            fresh,
            volume_file: Some(file.to_owned()),
        })
    }

    pub(super) fn nqn(&self, slot: &Slot) -> Result<Nqn, Error> {
        Nqn::for_slot(&self.cfg.nqn_prefix, slot).map_err(|e| {
            Error::InvalidArgument(format!(
                "volume {slot}: cannot form its NQN from --nqn-prefix: {e}"
            ))
        })
    }

    /// The volume `id` names and its disk on the RDS, or NOT_FOUND.
    pub(super) async fn existing_volume(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<(Slot, Disk), Error> {
        let slot = naming::existing_volume_slot(id)
            .ok_or_else(|| Error::NotFound(format!("volume {id:?} does not exist")))?;
        let disk = self
            .rds
            .get_disk(&slot, deadline)
            .await
            .map_err(|e| rds_errors::map(e, &format!("volume {slot}")))?
            .ok_or_else(|| Error::NotFound(format!("volume {slot} does not exist on the RDS")))?;
        Ok((slot, disk))
    }

    fn volume(
        &self,
        disk: &Disk,
        slot: &Slot,
        ctx: &VolumeContext,
        source: &Source,
    ) -> csi::Volume {
        use csi::volume_content_source::{SnapshotSource, Type, VolumeSource};
        let content_source = match source {
            Source::Empty => None,
            Source::Volume(v) => Some(csi::VolumeContentSource {
                r#type: Some(Type::Volume(VolumeSource {
                    volume_id: v.to_string(),
                })),
            }),
            Source::Snapshot(s) => Some(csi::VolumeContentSource {
                r#type: Some(Type::Snapshot(SnapshotSource {
                    snapshot_id: s.to_string(),
                })),
            }),
        };
        csi::Volume {
            capacity_bytes: disk.size_bytes as i64,
            volume_id: slot.to_string(),
            volume_context: ctx.to_map(),
            content_source,
            accessible_topology: self.topology().into_iter().collect(),
        }
    }

    pub(super) fn topology(&self) -> Option<csi::Topology> {
        self.cfg.topology.as_ref().map(|segments| csi::Topology {
            segments: segments.clone(),
        })
    }

    async fn source_disk(
        &self,
        req: &csi::CreateVolumeRequest,
        volume: &Slot,
        deadline: Instant,
    ) -> Result<(Source, Option<Disk>), Error> {
        use csi::volume_content_source::Type;
        let Some(src) = req
            .volume_content_source
            .as_ref()
            .and_then(|s| s.r#type.as_ref())
        else {
            return Ok((Source::Empty, None));
        };
        let (source, slot, what) = match src {
            Type::Snapshot(s) => {
                let id = SnapshotId::parse(&s.snapshot_id).ok_or_else(|| {
                    Error::NotFound(format!(
                        "volume {volume}: source snapshot {:?} does not exist",
                        s.snapshot_id
                    ))
                })?;
                let slot = id.slot.clone();
                (Source::Snapshot(id), slot, "snapshot")
            }
            Type::Volume(v) => {
                let slot = naming::existing_volume_slot(&v.volume_id).ok_or_else(|| {
                    Error::NotFound(format!(
                        "volume {volume}: source volume {:?} does not exist",
                        v.volume_id
                    ))
                })?;
                (Source::Volume(slot.clone()), slot, "volume")
            }
        };
        let disk = self
            .rds
            .get_disk(&slot, deadline)
            .await
            .map_err(|e| rds_errors::map(e, &format!("volume {volume}")))?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "volume {volume}: source {what} {slot} does not exist on the RDS"
                ))
            })?;
        Ok((source, Some(disk)))
    }

    pub async fn create_volume(
        &self,
        req: csi::CreateVolumeRequest,
        deadline: Instant,
    ) -> Result<csi::CreateVolumeResponse, Error> {
        let slot = naming::volume_slot(&req.name)?;
        let caps = capabilities::require_supported(&req.volume_capabilities, slot.as_str())?;
        let params = VolumeParams::parse(&req.parameters, self.rds.base_path())?;
        let (required, limit) = capacity(req.capacity_range.as_ref(), slot.as_str())?;
        let mut size_bytes = plan(required, limit, slot.as_str())?;
        let fs = params.fs_type.clone().or_else(|| {
            caps.iter().find_map(|c| match &c.access {
                capabilities::AccessType::Mount { fs_type } => fs_type.clone(),
                _ => None,
            })
        });

        let (source, source_disk) = self.source_disk(&req, &slot, deadline).await?;
        if let Some(src) = &source_disk {
            // A copy is at least as large as its source; it may be grown to the request.
            if limit != 0 && src.size_bytes > limit {
                return Err(Error::OutOfRange(format!(
                    "volume {slot}: its source holds {} bytes, above limit_bytes {limit}",
                    src.size_bytes
                )));
            }
            size_bytes = size_bytes.max(src.size_bytes);
        }
        let dir = params
            .volume_dir
            .clone()
            .unwrap_or_else(|| self.rds.base_path().to_string());
        let path = naming::volume_file(self.rds.base_path(), &dir, &slot, &source)?;
        let ctx = self.context(&slot, &params, fs, source == Source::Empty, path.as_str())?;
        let subject = format!("volume {slot}");

        // /disk add is not idempotent: look first (DESIGN rule 2).
        if let Some(existing) = self
            .rds
            .get_disk(&slot, deadline)
            .await
            .map_err(|e| rds_errors::map(e, &subject))?
        {
            if existing.file_path.as_deref() != Some(path.as_str()) {
                return Err(Error::AlreadyExists(format!(
                    "volume {slot} already exists with backing file {:?}, not {path}: a different content source or volumePath was requested",
                    existing.file_path.as_deref().unwrap_or("-")
                )));
            }
            if !fits(existing.size_bytes, required, limit) {
                return Err(Error::AlreadyExists(format!(
                    "volume {slot} already exists with {} bytes, outside the requested range (required {required}, limit {limit})",
                    existing.size_bytes
                )));
            }
            tracing::info!(volume = %slot, bytes = existing.size_bytes, "CreateVolume: volume already exists with a compatible size; returning it");
            return Ok(csi::CreateVolumeResponse {
                volume: Some(self.volume(&existing, &slot, &ctx, &source)),
            });
        }

        let export = NvmeExport {
            port: Port::new(params.nvme_port)
                .map_err(|e| Error::InvalidArgument(format!("{subject}: {e}")))?,
            nqn: self.nqn(&slot)?,
        };
        let disk = match (&source, &source_disk) {
            (Source::Empty, _) => {
                self.rds
                    .create_disk(&path, size_bytes, &slot, &export, deadline)
                    .await
            }
            (_, Some(src)) => {
                let src_slot = Slot::new(&src.slot)
                    .map_err(|e| Error::Internal(format!("{subject}: source slot: {e}")))?;
                let grow = (size_bytes > src.size_bytes).then_some(size_bytes);
                self.rds
                    .copy_disk(&src_slot, &path, &slot, grow, Some(&export), deadline)
                    .await
            }
            (_, None) => unreachable!("a content source always has a source disk"),
        }
        .map_err(|e| rds_errors::map(e, &subject))?;
        if disk.size_bytes < required {
            // Never report success for a disk smaller than asked (DESIGN rule 1).
            return Err(Error::Internal(format!(
                "{subject}: the RDS created {} bytes for a request of {required}; refusing to report it",
                disk.size_bytes
            )));
        }
        tracing::info!(volume = %slot, bytes = disk.size_bytes, path = %path, source = ?source, "volume created");
        Ok(csi::CreateVolumeResponse {
            volume: Some(self.volume(&disk, &slot, &ctx, &source)),
        })
    }

    pub async fn delete_volume(&self, volume_id: &str, deadline: Instant) -> Result<(), Error> {
        if volume_id.is_empty() {
            return Err(Error::InvalidArgument("volume_id is required".into()));
        }
        let Some(slot) = naming::existing_volume_slot(volume_id) else {
            tracing::info!(
                volume = volume_id,
                "DeleteVolume: not a volume id of this driver; nothing to delete"
            );
            return Ok(());
        };
        if let Some(nodes) = self.published_nodes(&slot).filter(|n| !n.is_empty()) {
            return Err(Error::FailedPrecondition(format!(
                "volume {slot} is still published to {}; unpublish it first",
                nodes.join(", ")
            )));
        }
        self.rds
            .delete_disk(&slot, deadline)
            .await
            .map_err(|e| rds_errors::map(e, &format!("volume {slot}")))?;
        tracing::info!(volume = %slot, "volume deleted (disk, export and backing file)");
        Ok(())
    }

    pub async fn expand_volume(
        &self,
        req: csi::ControllerExpandVolumeRequest,
        deadline: Instant,
    ) -> Result<csi::ControllerExpandVolumeResponse, Error> {
        if req.volume_id.is_empty() {
            return Err(Error::InvalidArgument("volume_id is required".into()));
        }
        if req.capacity_range.is_none() {
            return Err(Error::InvalidArgument(format!(
                "volume {}: capacity_range is required",
                req.volume_id
            )));
        }
        let (slot, disk) = self.existing_volume(&req.volume_id, deadline).await?;
        let subject = format!("volume {slot}");
        let (required, limit) = capacity(req.capacity_range.as_ref(), slot.as_str())?;
        let block = req
            .volume_capability
            .as_ref()
            .map(capabilities::parse)
            .transpose()?
            .is_some_and(|c: Capability| c.is_block());
        let size = if disk.size_bytes >= required {
            // Already large enough (a retry, or a request below the current size): never shrink.
            disk.size_bytes
        } else {
            let target = plan(required, limit, slot.as_str())?;
            let grown = self
                .rds
                .resize_disk(&slot, target, deadline)
                .await
                .map_err(|e| rds_errors::map(e, &subject))?;
            tracing::info!(volume = %slot, from = disk.size_bytes, to = grown.size_bytes, "volume expanded on the RDS");
            grown.size_bytes
        };
        Ok(csi::ControllerExpandVolumeResponse {
            capacity_bytes: size as i64,
            node_expansion_required: !block,
        })
    }

    pub async fn get_volume(
        &self,
        volume_id: &str,
        deadline: Instant,
    ) -> Result<csi::ControllerGetVolumeResponse, Error> {
        use csi::controller_get_volume_response::VolumeStatus;
        if volume_id.is_empty() {
            return Err(Error::InvalidArgument("volume_id is required".into()));
        }
        let slot = naming::existing_volume_slot(volume_id)
            .ok_or_else(|| Error::NotFound(format!("volume {volume_id:?} does not exist")))?;
        let published = self.published_nodes(&slot).unwrap_or_default();
        let disk = self
            .rds
            .get_disk(&slot, deadline)
            .await
            .map_err(|e| rds_errors::map(e, &format!("volume {slot}")))?;
        let (capacity_bytes, condition) = match &disk {
            None if published.is_empty() => {
                return Err(Error::NotFound(format!("volume {slot} does not exist on the RDS")))
            }
            None => (
                0,
                csi::VolumeCondition {
                    abnormal: true,
                    message: format!(
                        "the disk of volume {slot} is missing on the RDS while it is published to {}",
                        published.join(", ")
                    ),
                },
            ),
            Some(d) => (d.size_bytes as i64, disk_condition(d)),
        };
        Ok(csi::ControllerGetVolumeResponse {
            volume: Some(csi::Volume {
                capacity_bytes,
                volume_id: slot.to_string(),
                ..Default::default()
            }),
            status: Some(VolumeStatus {
                published_node_ids: published,
                volume_condition: Some(condition),
            }),
        })
    }

    pub async fn list_volumes(
        &self,
        req: csi::ListVolumesRequest,
        deadline: Instant,
    ) -> Result<csi::ListVolumesResponse, Error> {
        use csi::list_volumes_response::{Entry, VolumeStatus};
        // Validate the token before doing any work.
        pagination::start_after(&req.starting_token)?;
        let disks = self
            .rds
            .list_all_disks(deadline)
            .await
            .map_err(|e| rds_errors::map(e, "ListVolumes"))?;
        let base = self.rds.base_path();
        let mut volumes: Vec<Disk> = disks
            .into_iter()
            .filter(|d| naming::existing_volume_slot(&d.slot).is_some())
            .filter(|d| {
                d.file_path
                    .as_deref()
                    .is_some_and(|p| base.contains_file_name(p.trim_start_matches('/')))
            })
            .collect();
        volumes.sort_by(|a, b| a.slot.cmp(&b.slot));
        let (page, next_token) = pagination::page(
            volumes,
            |d| d.slot.as_str(),
            req.max_entries,
            &req.starting_token,
        )?;
        let entries = page
            .into_iter()
            .map(|d| {
                let published = Slot::new(&d.slot)
                    .ok()
                    .and_then(|s| self.published_nodes(&s))
                    .unwrap_or_default();
                Entry {
                    volume: Some(csi::Volume {
                        capacity_bytes: d.size_bytes as i64,
                        volume_id: d.slot.clone(),
                        ..Default::default()
                    }),
                    status: Some(VolumeStatus {
                        published_node_ids: published,
                        volume_condition: Some(disk_condition(&d)),
                    }),
                }
            })
            .collect();
        Ok(csi::ListVolumesResponse {
            entries,
            next_token,
        })
    }

    pub async fn validate_capabilities(
        &self,
        req: csi::ValidateVolumeCapabilitiesRequest,
        deadline: Instant,
    ) -> Result<csi::ValidateVolumeCapabilitiesResponse, Error> {
        use csi::validate_volume_capabilities_response::Confirmed;
        if req.volume_id.is_empty() {
            return Err(Error::InvalidArgument("volume_id is required".into()));
        }
        if req.volume_capabilities.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "volume {}: volume_capabilities is required",
                req.volume_id
            )));
        }
        let (slot, _disk) = self.existing_volume(&req.volume_id, deadline).await?;
        for c in &req.volume_capabilities {
            let parsed = capabilities::parse(c)?;
            if let Err(why) = capabilities::supported(&parsed) {
                return Ok(csi::ValidateVolumeCapabilitiesResponse {
                    confirmed: None,
                    message: format!("volume {slot}: {why}"),
                });
            }
        }
        if !req.parameters.is_empty() {
            VolumeParams::parse(&req.parameters, self.rds.base_path())?;
        }
        Ok(csi::ValidateVolumeCapabilitiesResponse {
            confirmed: Some(Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: Default::default(),
            }),
            message: String::new(),
        })
    }

    pub async fn get_capacity(
        &self,
        req: csi::GetCapacityRequest,
        deadline: Instant,
    ) -> Result<csi::GetCapacityResponse, Error> {
        VolumeParams::parse(&req.parameters, self.rds.base_path())?;
        for c in &req.volume_capabilities {
            if capabilities::supported(&capabilities::parse(c)?).is_err() {
                // The spec: capacity for capabilities we cannot honour is zero.
                return Ok(csi::GetCapacityResponse::default());
            }
        }
        let pool = self
            .rds
            .pool_capacity(deadline)
            .await
            .map_err(|e| rds_errors::map(e, "GetCapacity"))?;
        // Volumes are whole MiB: report what can really be created.
        let usable = pool.free - pool.free % size::VOLUME_GRANULARITY;
        Ok(csi::GetCapacityResponse {
            available_capacity: usable as i64,
            maximum_volume_size: Some(usable as i64),
            minimum_volume_size: Some(size::MIN_VOLUME_BYTES as i64),
        })
    }
}

fn disk_condition(d: &Disk) -> csi::VolumeCondition {
    if d.is_disabled() {
        csi::VolumeCondition {
            abnormal: true,
            message: format!("disk {} is disabled on the RDS", d.slot),
        }
    } else if !d.nvme_tcp_export {
        csi::VolumeCondition {
            abnormal: true,
            message: format!("disk {} is not exported over NVMe/TCP on the RDS", d.slot),
        }
    } else {
        csi::VolumeCondition {
            abnormal: false,
            message: String::new(),
        }
    }
}
