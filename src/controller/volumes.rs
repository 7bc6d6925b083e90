//! CreateVolume, DeleteVolume and ControllerExpandVolume over the RDS client.

use tokio::time::Instant;

use super::error::ControllerError;
use super::naming::{self, SnapshotId, Source};
use super::params::VolumeParams;
use super::requests::{CapacityRange, CreateVolume, Expand, SourceRef, VolumeRef};
use super::Controller;
use crate::rds::{size, slot_nqn, Disk, LookFirst, Nqn, NvmeExport, Port};
use crate::volume::context::{VolumeContext, VolumeFile};
use crate::volume::{AccessType, NvmeAddress, VolumeId};

/// A volume as CreateVolume reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedVolume {
    pub id: VolumeId,
    pub capacity_bytes: u64,
    pub context: VolumeContext,
    pub source: Source,
}

fn plan(capacity: &CapacityRange, subject: &str) -> Result<u64, ControllerError> {
    size::plan_volume_size(capacity.required, capacity.limit).map_err(|e| {
        ControllerError::SizeOutOfRange {
            subject: subject.to_owned(),
            reason: format!("{e}; volumes are at least 1 GiB and a multiple of 1 MiB"),
        }
    })
}

impl Controller {
    fn context(
        &self,
        id: &VolumeId,
        p: &VolumeParams,
        req: &CreateVolume,
        fresh: bool,
        file: &str,
    ) -> Result<VolumeContext, ControllerError> {
        // The --nvme-address default passes the same rule as the parameter.
        let nvme_address = p
            .nvme_address
            .clone()
            .or_else(|| {
                self.cfg
                    .default_nvme_address
                    .as_deref()
                    .and_then(|a| NvmeAddress::parse(a).ok())
            })
            .ok_or_else(|| ControllerError::NoNvmeAddress {
                volume: id.to_string(),
            })?;
        // The StorageClass fsType wins; else the first mount capability that names one.
        let fs_type = p.fs_type.or_else(|| {
            req.capabilities
                .iter()
                .filter(|c| c.access_type == AccessType::Mount)
                .find_map(|c| c.fs_type)
        });
        Ok(VolumeContext {
            nvme_address,
            nvme_port: p.nvme_port,
            nqn: self.nqn(id)?,
            tunables: p.tunables,
            migration_timeout: p.migration_timeout,
            fs_type,
            fresh,
            // The file path was built from a checked RdsPath: the rule holds unless a bug broke it.
            volume_file: Some(VolumeFile::parse(file).map_err(|reason| {
                ControllerError::Internal {
                    subject: format!("volume {id}"),
                    reason,
                }
            })?),
        })
    }

    /// The NQN the volume's disk is exported under: `--nqn-prefix` + id.
    pub(super) fn nqn(&self, id: &VolumeId) -> Result<Nqn, ControllerError> {
        slot_nqn(&self.cfg.nqn_prefix, id.slot()).map_err(|source| ControllerError::NqnPrefix {
            volume: id.to_string(),
            source,
        })
    }

    /// The disk of the volume `volume` names, or NOT_FOUND.
    pub(super) async fn existing_disk<'a>(
        &self,
        volume: &'a VolumeRef,
        deadline: Instant,
    ) -> Result<(&'a VolumeId, Disk), ControllerError> {
        let id = volume.existing()?;
        let disk = self
            .rds
            .get_disk(id.slot(), deadline)
            .await
            .map_err(|e| ControllerError::rds(format!("volume {id}"), e))?
            .ok_or_else(|| ControllerError::VolumeNotFound {
                id: id.to_string(),
                on_rds: true,
            })?;
        Ok((id, disk))
    }

    /// The content source's disk (None for an empty volume), or NOT_FOUND.
    async fn source_disk(
        &self,
        req: &CreateVolume,
        deadline: Instant,
    ) -> Result<(Source, Option<Disk>), ControllerError> {
        let subject = format!("volume {}", req.name.id());
        let not_found = |what, id: &str, on_rds| ControllerError::SourceNotFound {
            subject: subject.clone(),
            what,
            id: id.to_owned(),
            on_rds,
        };
        let (source, slot, what) = match &req.source {
            None => return Ok((Source::Empty, None)),
            Some(SourceRef::Snapshot { id, parsed }) => {
                let s: &SnapshotId = parsed
                    .as_ref()
                    .ok_or_else(|| not_found("snapshot", id, false))?;
                (Source::Snapshot(s.clone()), s.slot.clone(), "snapshot")
            }
            Some(SourceRef::Volume(v)) => {
                let id = match v {
                    VolumeRef::Ours(id) => id,
                    VolumeRef::Foreign(s) => return Err(not_found("volume", s, false)),
                };
                (Source::Volume(id.clone()), id.slot().clone(), "volume")
            }
        };
        let disk = self
            .rds
            .get_disk(&slot, deadline)
            .await
            .map_err(|e| ControllerError::rds(subject.clone(), e))?
            .ok_or_else(|| not_found(what, slot.as_str(), true))?;
        Ok((source, Some(disk)))
    }

    /// CreateVolume: looks before it adds (`/disk add` is not idempotent), so a retry with
    /// the same name and a compatible size returns the same volume.
    pub async fn create(
        &self,
        req: CreateVolume,
        deadline: Instant,
    ) -> Result<CreatedVolume, ControllerError> {
        let id = req.name.id().clone();
        let subject = format!("volume {id}");
        let ours = self.segments();
        if !req.requisite.is_empty()
            && !req
                .requisite
                .iter()
                .any(|t| crate::volume::topology::accessible_from(&ours, t))
        {
            return Err(ControllerError::Inaccessible {
                volume: id.to_string(),
                ours: format!("{ours:?}"),
            });
        }
        let capacity = req.capacity;
        let mut size_bytes = plan(&capacity, &subject)?;

        let (source, source_disk) = self.source_disk(&req, deadline).await?;
        if let Some(src) = &source_disk {
            // A copy is at least as large as its source; it may be grown to the request.
            if capacity.limit != 0 && src.size_bytes > capacity.limit {
                return Err(ControllerError::SizeOutOfRange {
                    subject,
                    reason: format!(
                        "its source holds {} bytes, above limit_bytes {}",
                        src.size_bytes, capacity.limit
                    ),
                });
            }
            size_bytes = size_bytes.max(src.size_bytes);
        }
        let params = &req.params;
        let dir = params
            .volume_dir
            .clone()
            .unwrap_or_else(|| self.rds.base_path().to_string());
        let path = naming::volume_file(self.rds.base_path(), &dir, &id, &source)?;
        let context = self.context(&id, params, &req, source == Source::Empty, path.as_str())?;
        let created = |disk: &Disk| CreatedVolume {
            id: id.clone(),
            capacity_bytes: disk.size_bytes,
            context: context.clone(),
            source: source.clone(),
        };

        // /disk add is not idempotent: look first (docs/architecture.md, "Data flow").
        if let Some(existing) = self
            .rds
            .get_disk(id.slot(), deadline)
            .await
            .map_err(|e| ControllerError::rds(subject.clone(), e))?
        {
            if existing.file_path.as_deref() != Some(path.as_str()) {
                return Err(ControllerError::Exists {
                    subject,
                    reason: format!(
                        "with backing file {:?}, not {path}: a different content source or volumePath was requested",
                        existing.file_path.as_deref().unwrap_or("-")
                    ),
                });
            }
            if !capacity.fits(existing.size_bytes) {
                return Err(ControllerError::Exists {
                    subject,
                    reason: format!(
                        "with {} bytes, outside the requested range (required {}, limit {})",
                        existing.size_bytes, capacity.required, capacity.limit
                    ),
                });
            }
            tracing::info!(volume = %id, bytes = existing.size_bytes, "CreateVolume: volume already exists with a compatible size; returning it");
            return Ok(created(&existing));
        }

        let export = NvmeExport {
            port: Port::new(params.nvme_port)
                .map_err(|e| ControllerError::internal(subject.clone(), e.to_string()))?,
            nqn: self.nqn(&id)?,
        };
        // Room first: RouterOS may fail a `/disk add` that does not fit half-way.
        self.ensure_room(&subject, size_bytes, size_bytes, deadline)
            .await?;
        let added = match &source_disk {
            None => {
                // The look above found the slot empty: no second look before the add.
                self.rds
                    .create_disk(
                        &path,
                        size_bytes,
                        id.slot(),
                        &export,
                        LookFirst::No,
                        deadline,
                    )
                    .await
            }
            Some(src) => {
                let src_slot = crate::rds::Slot::new(&src.slot).map_err(|e| {
                    ControllerError::internal(subject.clone(), format!("source slot: {e}"))
                })?;
                let grow = (size_bytes > src.size_bytes).then_some(size_bytes);
                self.rds
                    .copy_disk(
                        &src_slot,
                        &path,
                        id.slot(),
                        grow,
                        Some(&export),
                        LookFirst::No,
                        deadline,
                    )
                    .await
            }
        };
        let disk = match added {
            Ok(d) => d,
            Err(e) => return Err(self.explain_add_conflict(&id, &path, e, deadline).await),
        };
        if disk.size_bytes < capacity.required {
            // Never report success for a disk smaller than asked (sizes are byte-exact).
            return Err(ControllerError::internal(
                subject,
                format!(
                    "the RDS created {} bytes for a request of {}; refusing to report it",
                    disk.size_bytes, capacity.required
                ),
            ));
        }
        tracing::info!(volume = %id, bytes = disk.size_bytes, path = %path, source = ?source, "volume created");
        Ok(created(&disk))
    }

    /// DeleteVolume: refused while published; an id this driver never issued is deleted
    /// already.
    pub async fn delete(
        &self,
        volume: &VolumeRef,
        deadline: Instant,
    ) -> Result<(), ControllerError> {
        let id = match volume {
            VolumeRef::Ours(id) => id,
            VolumeRef::Foreign(s) => {
                tracing::info!(
                    volume = %crate::error::echo(s),
                    "DeleteVolume: not a volume id of this driver; nothing to delete"
                );
                return Ok(());
            }
        };
        // The table may lag Kubernetes on a replica that does not lead (it mirrors the
        // VolumeAttachment cache in the background): a volume it has no record of is looked
        // up first, so a delete never goes ahead on a table that has not caught up.
        self.consult_kubernetes(id.as_str()).await?;
        if let Some(nodes) = self.published_nodes(id) {
            return Err(ControllerError::StillPublished {
                volume: id.to_string(),
                nodes,
            });
        }
        let subject = format!("volume {id}");
        let deleted = self
            .rds
            .delete_disk(id.slot(), deadline)
            .await
            .map_err(|e| ControllerError::rds(subject.clone(), e))?;
        if let Some(file) = deleted {
            tracing::info!(volume = %id, file = %file, "volume deleted (disk, export and backing file)");
            return Ok(());
        }
        // No disk: already deleted, never created, or an earlier delete stopped between the
        // disk and its file — which may live under a volumePath or carry a clone suffix.
        let removed = self.remove_leftover_files(id, deadline).await?;
        if removed.is_empty() {
            tracing::info!(volume = %id, "DeleteVolume: the volume has no disk and no backing file on the RDS (already deleted, or never created); nothing to delete");
        } else {
            tracing::info!(volume = %id, files = ?removed.iter().map(|f| f.as_str()).collect::<Vec<_>>(), "DeleteVolume: the disk was already gone; removed the backing file an earlier delete left behind");
        }
        Ok(())
    }

    /// ControllerExpandVolume: grows the disk byte-exact, never shrinks; returns the size.
    pub async fn expand(&self, req: &Expand, deadline: Instant) -> Result<u64, ControllerError> {
        let (id, disk) = self.existing_disk(&req.volume, deadline).await?;
        let subject = format!("volume {id}");
        if disk.size_bytes >= req.capacity.required {
            // Already large enough (a retry, or a request below the current size): never shrink.
            return Ok(disk.size_bytes);
        }
        let target = plan(&req.capacity, &subject)?;
        self.ensure_room(&subject, target, target - disk.size_bytes, deadline)
            .await?;
        let grown = self
            .rds
            .resize_disk(id.slot(), target, deadline)
            .await
            .map_err(|e| ControllerError::rds(subject, e))?;
        tracing::info!(volume = %id, from = disk.size_bytes, to = grown.size_bytes, "volume expanded on the RDS");
        Ok(grown.size_bytes)
    }
}
