//! The controller's typed requests, parsed from the CSI messages by the service layer
//! (`service.rs`): every INVALID_ARGUMENT a request can earn is decided here, before any
//! lookup, so the operations below take only well-formed values.

use std::collections::BTreeMap;

use csi_proto::v1 as csi;

use super::error::ControllerError;
use super::naming::{self, SnapshotId, VolumeName};
use super::params::VolumeParams;
use crate::rds::{BasePath, Slot};
use crate::volume::keys::MIGRATION_TIMEOUT_SECONDS;
use crate::volume::{Capability, CapabilityError, MigrationTimeout, VolumeId};

/// A volume id from a request: one this driver issued, or one it never did (so no such
/// volume exists: NOT_FOUND, or nothing to do for a delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeRef {
    Ours(VolumeId),
    Foreign(String),
}

impl VolumeRef {
    /// A non-empty `volume_id` field.
    pub fn parse(id: &str) -> Result<Self, ControllerError> {
        if id.is_empty() {
            return Err(ControllerError::missing("volume_id"));
        }
        Ok(VolumeId::parse(id).map_or_else(|_| VolumeRef::Foreign(id.to_owned()), VolumeRef::Ours))
    }

    pub fn as_str(&self) -> &str {
        match self {
            VolumeRef::Ours(id) => id.as_str(),
            VolumeRef::Foreign(s) => s,
        }
    }

    /// The id, or NOT_FOUND for an id this driver never issued.
    pub fn existing(&self) -> Result<&VolumeId, ControllerError> {
        match self {
            VolumeRef::Ours(id) => Ok(id),
            VolumeRef::Foreign(s) => Err(ControllerError::VolumeNotFound {
                id: s.clone(),
                on_rds: false,
            }),
        }
    }
}

/// CSI's capacity range in bytes: `limit` 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapacityRange {
    pub required: u64,
    pub limit: u64,
}

impl CapacityRange {
    pub fn parse(
        range: Option<&csi::CapacityRange>,
        subject: &str,
    ) -> Result<Self, ControllerError> {
        let (req, lim) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
        let invalid = |reason: String| ControllerError::CapacityRange {
            subject: subject.to_owned(),
            reason,
        };
        if req < 0 || lim < 0 {
            return Err(invalid(format!(
                "capacity_range must not be negative (required {req}, limit {lim})"
            )));
        }
        // A well-formed range no size satisfies: CSI's "unsupported capacity" (OUT_OF_RANGE,
        // CreateVolume and ControllerExpandVolume Errors), not a malformed field.
        if lim > 0 && req > lim {
            return Err(ControllerError::SizeOutOfRange {
                subject: subject.to_owned(),
                reason: format!("required_bytes {req} exceeds limit_bytes {lim}"),
            });
        }
        Ok(CapacityRange {
            required: req as u64,
            limit: lim as u64,
        })
    }

    /// Whether a volume of `size` bytes satisfies the range.
    pub fn fits(&self, size: u64) -> bool {
        size >= self.required && (self.limit == 0 || size <= self.limit)
    }
}

/// Where a new volume's content comes from, as the request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    Volume(VolumeRef),
    /// `None`: an id this driver never issued (so it does not exist).
    Snapshot {
        id: String,
        parsed: Option<SnapshotId>,
    },
}

/// CreateVolume.
#[derive(Debug, Clone)]
pub struct CreateVolume {
    pub name: VolumeName,
    pub capabilities: Vec<Capability>,
    pub params: VolumeParams,
    pub capacity: CapacityRange,
    pub source: Option<SourceRef>,
    /// CSI `accessibility_requirements.requisite`: the volume must be accessible from one.
    pub requisite: Vec<BTreeMap<String, String>>,
}

/// Parses a request's list of capabilities: at least one, each well-formed and supported.
fn supported_capabilities(
    caps: &[csi::VolumeCapability],
    subject: &str,
) -> Result<Vec<Capability>, ControllerError> {
    if caps.is_empty() {
        return Err(ControllerError::Missing {
            subject: Some(subject.to_owned()),
            field: "volume_capabilities",
        });
    }
    caps.iter()
        .map(|c| {
            Capability::parse_supported(c).map_err(|source| ControllerError::Capability {
                subject: subject.to_owned(),
                source,
            })
        })
        .collect()
}

impl CreateVolume {
    pub fn parse(r: csi::CreateVolumeRequest, base: &BasePath) -> Result<Self, ControllerError> {
        let name = VolumeName::parse(&r.name)?;
        let subject = format!("volume {}", name.id());
        let capabilities = supported_capabilities(&r.volume_capabilities, &subject)?;
        let params = VolumeParams::parse(&r.parameters, base)?;
        let capacity = CapacityRange::parse(r.capacity_range.as_ref(), &subject)?;
        use csi::volume_content_source::Type;
        let source = match r.volume_content_source.and_then(|s| s.r#type) {
            None => None,
            Some(Type::Volume(v)) => Some(SourceRef::Volume(VolumeRef::parse(&v.volume_id)?)),
            Some(Type::Snapshot(s)) => {
                if s.snapshot_id.is_empty() {
                    return Err(ControllerError::Missing {
                        subject: Some(subject),
                        field: "volume_content_source.snapshot.snapshot_id",
                    });
                }
                Some(SourceRef::Snapshot {
                    parsed: SnapshotId::parse(&s.snapshot_id),
                    id: s.snapshot_id,
                })
            }
        };
        let requisite = r
            .accessibility_requirements
            .map(|t| {
                t.requisite
                    .into_iter()
                    .map(|t| t.segments.into_iter().collect())
                    .collect()
            })
            .unwrap_or_default();
        Ok(CreateVolume {
            name,
            capabilities,
            params,
            capacity,
            source,
            requisite,
        })
    }
}

/// ControllerPublishVolume.
#[derive(Debug, Clone)]
pub struct Publish {
    pub volume: VolumeRef,
    pub node: String,
    pub capability: Capability,
    pub migration_timeout: MigrationTimeout,
}

impl Publish {
    pub fn parse(r: &csi::ControllerPublishVolumeRequest) -> Result<Self, ControllerError> {
        let volume = VolumeRef::parse(&r.volume_id)?;
        let subject = || Some(format!("volume {}", volume.as_str()));
        if r.node_id.is_empty() {
            return Err(ControllerError::Missing {
                subject: subject(),
                field: "node_id",
            });
        }
        let cap = r
            .volume_capability
            .as_ref()
            .ok_or(ControllerError::Missing {
                subject: subject(),
                field: "volume_capability",
            })?;
        // The shape only: the attachment table applies the access-mode rules.
        let capability = Capability::parse(cap).map_err(|source| ControllerError::Capability {
            subject: format!("volume {}", volume.as_str()),
            source,
        })?;
        let migration_timeout = MigrationTimeout::from_parameter(
            r.volume_context
                .get(MIGRATION_TIMEOUT_SECONDS)
                .map(String::as_str),
        )
        .map_err(|source| ControllerError::MigrationTimeout {
            volume: volume.as_str().to_owned(),
            source,
        })?;
        Ok(Publish {
            volume,
            node: r.node_id.clone(),
            capability,
            migration_timeout,
        })
    }
}

/// ControllerUnpublishVolume. `node` `None`: from every node (the spec's empty node id).
#[derive(Debug, Clone)]
pub struct Unpublish {
    pub volume: VolumeRef,
    pub node: Option<String>,
}

impl Unpublish {
    pub fn parse(r: &csi::ControllerUnpublishVolumeRequest) -> Result<Self, ControllerError> {
        Ok(Unpublish {
            volume: VolumeRef::parse(&r.volume_id)?,
            node: Some(r.node_id.clone()).filter(|n| !n.is_empty()),
        })
    }
}

/// ControllerExpandVolume.
#[derive(Debug, Clone)]
pub struct Expand {
    pub volume: VolumeRef,
    pub capacity: CapacityRange,
    /// A block volume needs no node step after the RDS grows it.
    pub block: bool,
}

impl Expand {
    pub fn parse(r: &csi::ControllerExpandVolumeRequest) -> Result<Self, ControllerError> {
        let volume = VolumeRef::parse(&r.volume_id)?;
        let subject = format!("volume {}", volume.as_str());
        let range = r.capacity_range.as_ref().ok_or(ControllerError::Missing {
            subject: Some(subject.clone()),
            field: "capacity_range",
        })?;
        let capacity = CapacityRange::parse(Some(range), &subject)?;
        let block = match &r.volume_capability {
            None => false,
            Some(c) => Capability::parse(c)
                .map_err(|source| ControllerError::Capability {
                    subject: subject.clone(),
                    source,
                })?
                .is_block(),
        };
        Ok(Expand {
            volume,
            capacity,
            block,
        })
    }
}

/// ValidateVolumeCapabilities: the volume and the first capability this driver does not
/// honour (answered as "not confirmed", never as an error).
#[derive(Debug, Clone)]
pub struct Validate {
    pub volume: VolumeRef,
    pub unsupported: Option<CapabilityError>,
}

impl Validate {
    pub fn parse(
        r: &csi::ValidateVolumeCapabilitiesRequest,
        base: &BasePath,
    ) -> Result<Self, ControllerError> {
        let volume = VolumeRef::parse(&r.volume_id)?;
        let subject = format!("volume {}", volume.as_str());
        if r.volume_capabilities.is_empty() {
            return Err(ControllerError::Missing {
                subject: Some(subject),
                field: "volume_capabilities",
            });
        }
        let mut unsupported = None;
        for c in &r.volume_capabilities {
            match Capability::parse_supported(c) {
                Ok(_) => {}
                Err(e) if e.is_unsupported() => {
                    unsupported.get_or_insert(e);
                }
                Err(source) => {
                    return Err(ControllerError::Capability {
                        subject: subject.clone(),
                        source,
                    })
                }
            }
        }
        if !r.parameters.is_empty() {
            VolumeParams::parse(&r.parameters, base)?;
        }
        Ok(Validate {
            volume,
            unsupported,
        })
    }
}

/// GetCapacity: the StorageClass parameters, and whether every capability asked about is
/// one this driver honours (if not, the capacity for it is zero).
#[derive(Debug, Clone)]
pub struct GetCapacity {
    pub params: VolumeParams,
    pub supported: bool,
}

impl GetCapacity {
    pub fn parse(r: &csi::GetCapacityRequest, base: &BasePath) -> Result<Self, ControllerError> {
        let params = VolumeParams::parse(&r.parameters, base)?;
        let mut supported = true;
        for c in &r.volume_capabilities {
            match Capability::parse_supported(c) {
                Ok(_) => {}
                Err(e) if e.is_unsupported() => supported = false,
                Err(source) => {
                    return Err(ControllerError::Capability {
                        subject: "GetCapacity".into(),
                        source,
                    })
                }
            }
        }
        Ok(GetCapacity { params, supported })
    }
}

/// A page of a listing: at most `max_entries` (0: all) after `starting_token`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub max_entries: i32,
    pub starting_token: String,
}

impl Page {
    pub fn parse(max_entries: i32, starting_token: &str) -> Result<Self, ControllerError> {
        if max_entries < 0 {
            return Err(ControllerError::NegativeMaxEntries(max_entries));
        }
        // Validate the token before doing any work.
        super::pagination::start_after(starting_token).map_err(ControllerError::Pagination)?;
        Ok(Page {
            max_entries,
            starting_token: starting_token.to_owned(),
        })
    }
}

/// CreateSnapshot.
#[derive(Debug, Clone)]
pub struct CreateSnapshot {
    /// The CO's name, as given (for messages).
    pub name: String,
    /// The snapshot's slot, derived from the name.
    pub slot: Slot,
    pub source: VolumeRef,
}

impl CreateSnapshot {
    pub fn parse(r: &csi::CreateSnapshotRequest) -> Result<Self, ControllerError> {
        let slot = naming::snapshot_slot(&r.name)?;
        if r.source_volume_id.is_empty() {
            return Err(ControllerError::Missing {
                subject: Some(format!("snapshot {}", crate::error::echo(&r.name))),
                field: "source_volume_id",
            });
        }
        Ok(CreateSnapshot {
            name: r.name.clone(),
            slot,
            source: VolumeRef::parse(&r.source_volume_id)?,
        })
    }
}

/// DeleteSnapshot: `None` for an id this driver never issued (nothing to delete).
pub fn snapshot_ref(id: &str) -> Result<Option<SnapshotId>, ControllerError> {
    if id.is_empty() {
        return Err(ControllerError::missing("snapshot_id"));
    }
    Ok(SnapshotId::parse(id))
}

/// ListSnapshots.
#[derive(Debug, Clone)]
pub struct ListSnapshots {
    /// Only this snapshot (`Some(None)`: an id this driver never issued, which matches nothing).
    pub snapshot: Option<Option<SnapshotId>>,
    pub source_volume: Option<String>,
    pub page: Page,
}

impl ListSnapshots {
    pub fn parse(r: &csi::ListSnapshotsRequest) -> Result<Self, ControllerError> {
        Ok(ListSnapshots {
            snapshot: (!r.snapshot_id.is_empty()).then(|| SnapshotId::parse(&r.snapshot_id)),
            source_volume: Some(r.source_volume_id.clone()).filter(|s| !s.is_empty()),
            page: Page::parse(r.max_entries, &r.starting_token)?,
        })
    }
}
