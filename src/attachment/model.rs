//! The typed inputs of the attachment table: access modes, the migration timeout, a publish
//! request and a restore record.

use std::fmt;
use std::time::Instant;

use super::error::AttachError;
pub use crate::volume::MigrationTimeout;

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
