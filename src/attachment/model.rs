//! The typed inputs of the attachment table: access modes, the migration timeout, a publish
//! request and a restore record.

use std::fmt;
use std::time::{Duration, Instant};

use super::error::AttachError;

/// How a volume may be shared between nodes, once the request has been validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// One node at a time (ReadWriteOnce and every single-node CSI access mode).
    Rwo,
    /// A raw block volume attached to several nodes; the table only ever allows two, and only
    /// as a KubeVirt live migration.
    RwxBlock,
}

impl fmt::Display for AccessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessMode::Rwo => "ReadWriteOnce",
            AccessMode::RwxBlock => "ReadWriteMany (block)",
        })
    }
}

/// What a publish asks for, as the CSI capability says it — before the table's rules decide
/// whether it is allowed. Filesystem RWX is representable here so it can be refused with a
/// typed error rather than silently treated as RWO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestedAccess {
    SingleNode,
    MultiNodeBlock,
    MultiNodeFilesystem,
}

impl RequestedAccess {
    /// The access mode this request resolves to, or the refusal of filesystem RWX.
    pub fn mode(self, volume: &str) -> Result<AccessMode, AttachError> {
        match self {
            RequestedAccess::SingleNode => Ok(AccessMode::Rwo),
            RequestedAccess::MultiNodeBlock => Ok(AccessMode::RwxBlock),
            RequestedAccess::MultiNodeFilesystem => Err(AttachError::FilesystemRwx {
                volume: volume.to_owned(),
            }),
        }
    }
}

/// How long an RWX block volume may stay attached to two nodes (`migrationTimeoutSeconds`).
///
/// Out-of-range values are an error, never clamped: a StorageClass typo must be seen, not
/// silently turned into a different fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MigrationTimeout(Duration);

impl MigrationTimeout {
    /// The StorageClass / volume-context parameter this value comes from.
    pub const PARAMETER: &'static str = "migrationTimeoutSeconds";
    pub const MIN_SECS: u64 = 30;
    pub const MAX_SECS: u64 = 3600;
    pub const DEFAULT_SECS: u64 = 300;

    pub fn from_secs(secs: u64) -> Result<Self, AttachError> {
        if (Self::MIN_SECS..=Self::MAX_SECS).contains(&secs) {
            Ok(MigrationTimeout(Duration::from_secs(secs)))
        } else {
            Err(AttachError::InvalidMigrationTimeout {
                value: secs.to_string(),
            })
        }
    }

    /// Parses the parameter's string value (whole seconds, surrounding spaces allowed).
    pub fn parse(value: &str) -> Result<Self, AttachError> {
        value
            .trim()
            .parse::<u64>()
            .map_err(|_| AttachError::InvalidMigrationTimeout {
                value: value.to_owned(),
            })
            .and_then(Self::from_secs)
    }

    /// The parameter if present, else the default.
    pub fn from_parameter(value: Option<&str>) -> Result<Self, AttachError> {
        value.map_or(Ok(Self::default()), Self::parse)
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl Default for MigrationTimeout {
    fn default() -> Self {
        MigrationTimeout(Duration::from_secs(Self::DEFAULT_SECS))
    }
}

/// One ControllerPublishVolume, translated.
#[derive(Clone, Copy, Debug)]
pub struct PublishRequest<'a> {
    pub volume: &'a str,
    pub node: &'a str,
    pub access: RequestedAccess,
    /// Used when this publish creates the volume's entry; a migration always uses the timeout
    /// recorded for the volume.
    pub migration_timeout: MigrationTimeout,
}

/// One attachment known to Kubernetes (a VolumeAttachment), used to rebuild the table at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreRecord {
    pub volume: String,
    pub mode: AccessMode,
    pub migration_timeout: MigrationTimeout,
    pub node: String,
    /// When the node attached (the VolumeAttachment's creation time, mapped onto `Instant`).
    pub attached_at: Instant,
}
