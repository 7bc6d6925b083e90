//! Refusals of the attachment rules. Each one names the volume, the node(s) involved and what
//! the operator can do; `From<AttachError> for crate::error::Error` picks the gRPC code.

use std::time::Duration;

use super::events::go_duration;
use super::model::AccessMode;
use tonic::Code;

use crate::error::Error;
use crate::volume::RWX_FILESYSTEM_REFUSED;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// A single-node volume is held by another node.
    #[error(
        "volume {volume:?} is attached to node {holder:?} and can be attached to one node at a \
         time: node {requested:?} cannot attach it while {holder:?} holds it. Detach it from \
         {holder:?} first (stop the pod using it there), or wait for that detach to finish and retry"
    )]
    HeldByAnotherNode {
        volume: String,
        requested: String,
        holder: String,
    },
    /// An RWX block volume is already attached to two nodes (a live migration).
    #[error(
        "volume {volume:?} is already attached to two nodes, {source_node:?} (migration source) and \
         {target_node:?} (migration target): node {requested:?} cannot be a third. Wait for the live \
         migration to finish or fail (one of the nodes detaches), then retry"
    )]
    MigrationInProgress {
        volume: String,
        requested: String,
        source_node: String,
        target_node: String,
    },
    /// The live migration's window passed with both nodes still attached.
    #[error(
        "the live migration of volume {volume:?} from node {source_node:?} to node {target_node:?} timed \
         out after {}: node {requested:?} cannot attach it until {source_node:?} or {target_node:?} \
         detaches. Finish or cancel the migration (detach one of the two nodes), then retry",
        go_duration(*.timeout)
    )]
    MigrationTimedOut {
        volume: String,
        requested: String,
        source_node: String,
        target_node: String,
        timeout: Duration,
    },
    /// Filesystem volumes are never shared between nodes.
    #[error("volume {volume:?}: {RWX_FILESYSTEM_REFUSED}")]
    FilesystemRwx { volume: String },
    /// The same node asks again with a different access mode.
    #[error(
        "volume {volume:?} is already published to node {node:?} as {attached_as}, which is \
         incompatible with the requested {requested}; unpublish it first"
    )]
    IncompatibleMode {
        volume: String,
        node: String,
        attached_as: AccessMode,
        requested: AccessMode,
    },
}

impl AttachError {
    /// The nodes that hold the volume, for refusals caused by other nodes.
    pub fn holders(&self) -> Vec<String> {
        match self {
            AttachError::HeldByAnotherNode { holder, .. } => vec![holder.clone()],
            AttachError::MigrationInProgress {
                source_node,
                target_node,
                ..
            }
            | AttachError::MigrationTimedOut {
                source_node,
                target_node,
                ..
            } => {
                vec![source_node.clone(), target_node.clone()]
            }
            AttachError::IncompatibleMode { node, .. } => vec![node.clone()],
            AttachError::FilesystemRwx { .. } => Vec::new(),
        }
    }
}

impl AttachError {
    /// The one code decision for the attachment rules (CSI ControllerPublishVolume).
    pub fn code(&self) -> Code {
        match self {
            AttachError::HeldByAnotherNode { .. }
            | AttachError::MigrationInProgress { .. }
            | AttachError::MigrationTimedOut { .. } => Code::FailedPrecondition,
            // CSI: published at this node with an incompatible capability is ALREADY_EXISTS.
            AttachError::IncompatibleMode { .. } => Code::AlreadyExists,
            AttachError::FilesystemRwx { .. } => Code::InvalidArgument,
        }
    }
}

impl From<AttachError> for Error {
    fn from(e: AttachError) -> Self {
        Error::from_code(e.code(), e.to_string())
    }
}
