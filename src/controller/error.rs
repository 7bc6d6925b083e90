//! The controller's typed errors and their one code decision ([`ControllerError::code`]).
//!
//! Each variant carries what the message needs (the object, the value, the next step); the
//! code follows the CSI spec (v1.12, "Error Scheme" and each RPC's error table). Errors of the
//! layers below keep their own tables and are delegated to: the RouterOS client's
//! (`rds_errors`), the attachment rules' ([`AttachError::code`]) and Kubernetes lookups'
//! (`k8s`, already a driver [`Error`]).

use tonic::{Code, Status};

use super::params::InvalidParameter;
use crate::attachment::AttachError;
use crate::error::{echo, Error};
use crate::rds::{NqnError, RdsError, ValidationError};
use crate::volume::{CapabilityError, InvalidMigrationTimeout};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    // ---- INVALID_ARGUMENT: the request is malformed ----
    /// A required field is empty. `subject` names the object when one is known.
    #[error("{}{field} is required", Prefix(.subject))]
    Missing {
        subject: Option<String>,
        field: &'static str,
    },
    /// A CreateVolume / CreateSnapshot name the CSI spec does not allow.
    #[error("{what} name {}: {reason}", echo(.name))]
    InvalidName {
        what: &'static str,
        name: String,
        reason: String,
    },
    /// A malformed capacity range (a negative byte count). A well-formed range no size
    /// satisfies (required > limit) is [`ControllerError::SizeOutOfRange`].
    #[error("{subject}: {reason}")]
    CapacityRange { subject: String, reason: String },
    #[error("{subject}: {source}")]
    Capability {
        subject: String,
        #[source]
        source: CapabilityError,
    },
    #[error(transparent)]
    Parameter(#[from] InvalidParameter),
    #[error("volume {volume}: volume context {source}")]
    MigrationTimeout {
        volume: String,
        #[source]
        source: InvalidMigrationTimeout,
    },
    #[error(
        "volume {volume}: no NVMe/TCP address: set the controller's --nvme-address or the \
         StorageClass parameter nvmeAddress"
    )]
    NoNvmeAddress { volume: String },
    #[error("volume {volume}: cannot form its NQN from --nqn-prefix: {source}")]
    NqnPrefix {
        volume: String,
        #[source]
        source: NqnError,
    },
    #[error("volume {volume}: file path {}: {source}", echo(.path))]
    FilePath {
        volume: String,
        path: String,
        #[source]
        source: Box<ValidationError>,
    },
    #[error("max_entries {0} is negative")]
    NegativeMaxEntries(i32),

    // ---- NOT_FOUND ----
    /// `id` names no volume of this driver, or its disk is gone from the RDS.
    #[error("volume {} does not exist{}", echo(.id), OnRds(*.on_rds))]
    VolumeNotFound { id: String, on_rds: bool },
    /// A CreateVolume / CreateSnapshot content source that does not exist.
    #[error("{subject}: source {what} {} does not exist{}", echo(.id), OnRds(*.on_rds))]
    SourceNotFound {
        subject: String,
        what: &'static str,
        id: String,
        on_rds: bool,
    },
    #[error("node {} does not exist; volume {volume} cannot be published to it", echo(.node))]
    NodeNotFound { node: String, volume: String },

    // ---- ALREADY_EXISTS: same name, incompatible properties ----
    #[error("{subject} already exists {reason}")]
    Exists { subject: String, reason: String },

    // ---- OUT_OF_RANGE / RESOURCE_EXHAUSTED: sizes ----
    /// A size no volume of this driver can have.
    #[error("{subject}: {reason}")]
    SizeOutOfRange { subject: String, reason: String },
    /// More than the pool has free now.
    #[error("{subject}: {reason}")]
    NoSpace { subject: String, reason: String },
    /// CSI: the volume cannot be provisioned in any requisite topology (RESOURCE_EXHAUSTED).
    #[error(
        "volume {volume}: volumes of this driver are accessible from {ours}, which none of the \
         requisite topologies includes; set the same --topology on the controller and the nodes"
    )]
    Inaccessible { volume: String, ours: String },

    // ---- FAILED_PRECONDITION ----
    #[error("volume {volume} is still published to {}; unpublish it first", .nodes.join(", "))]
    StillPublished { volume: String, nodes: Vec<String> },
    /// A file is already at the new volume's path and no disk uses it: a leftover of a
    /// create that failed half-way. Never removed by the driver on its own.
    #[error(
        "volume {volume}: the file {path} already exists on the RDS but no disk uses it (a \
         leftover of an earlier create that failed half-way, or a file put there by hand); check \
         that it holds nothing you need, remove it on the RDS (/file remove [find \
         name=\"{}\"]), and CreateVolume is retried",
        .path.trim_start_matches('/')
    )]
    LeftoverFile { volume: String, path: String },
    /// The new volume's path is the backing file of another disk.
    #[error(
        "volume {volume}: the file {path} on the RDS is the backing file of disk {disk}; it is \
         left alone — delete that disk if it is not needed, or use another volumePath"
    )]
    FileOfAnotherDisk {
        volume: String,
        path: String,
        disk: String,
    },

    // ---- UNIMPLEMENTED ----
    #[error("{0}")]
    Unimplemented(&'static str),

    // ---- INTERNAL: the driver or the RDS broke an invariant ----
    #[error("{subject}: {reason}")]
    Internal { subject: String, reason: String },

    // ---- delegated to the layers' own tables ----
    /// A RouterOS command failed while working on `subject`. The message carries RouterOS's
    /// answer, never the command line or SSH details (it reaches namespace users).
    #[error("{}", super::rds_errors::message(.subject, .source))]
    Rds {
        subject: String,
        #[source]
        source: RdsError,
    },
    #[error(transparent)]
    Attach(Box<AttachError>),
    /// A Kubernetes lookup failed (its code was chosen by `k8s`: UNAVAILABLE).
    #[error("{context}{source}")]
    Kubernetes {
        context: String,
        #[source]
        source: Error,
    },
    /// A pagination token this driver did not issue (ABORTED), from `pagination`.
    #[error(transparent)]
    Pagination(Error),
}

/// `"<subject>: "` or nothing.
struct Prefix<'a>(&'a Option<String>);

impl std::fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(s) => write!(f, "{s}: "),
            None => Ok(()),
        }
    }
}

struct OnRds(bool);

impl std::fmt::Display for OnRds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 {
            f.write_str(" on the RDS")
        } else {
            Ok(())
        }
    }
}

impl ControllerError {
    /// The one code decision of the controller.
    pub fn code(&self) -> Code {
        use ControllerError as E;
        match self {
            E::Missing { .. }
            | E::InvalidName { .. }
            | E::CapacityRange { .. }
            | E::Capability { .. }
            | E::Parameter(_)
            | E::MigrationTimeout { .. }
            | E::NoNvmeAddress { .. }
            | E::NqnPrefix { .. }
            | E::FilePath { .. }
            | E::NegativeMaxEntries(_) => Code::InvalidArgument,
            E::VolumeNotFound { .. } | E::SourceNotFound { .. } | E::NodeNotFound { .. } => {
                Code::NotFound
            }
            E::Exists { .. } => Code::AlreadyExists,
            E::SizeOutOfRange { .. } => Code::OutOfRange,
            E::NoSpace { .. } | E::Inaccessible { .. } => Code::ResourceExhausted,
            E::StillPublished { .. } | E::LeftoverFile { .. } | E::FileOfAnotherDisk { .. } => {
                Code::FailedPrecondition
            }
            E::Unimplemented(_) => Code::Unimplemented,
            E::Internal { .. } => Code::Internal,
            E::Rds { source, .. } => super::rds_errors::code(source.kind()),
            E::Attach(e) => e.code(),
            E::Kubernetes { source, .. } | E::Pagination(source) => source.code(),
        }
    }

    /// A RouterOS failure while working on `subject` (e.g. `volume pvc-1`); the whole
    /// error, command included, goes to the controller's log.
    pub fn rds(subject: impl Into<String>, source: RdsError) -> Self {
        let subject = subject.into();
        super::rds_errors::log(&subject, &source);
        ControllerError::Rds { subject, source }
    }

    pub fn missing(field: &'static str) -> Self {
        ControllerError::Missing {
            subject: None,
            field,
        }
    }

    pub fn internal(subject: impl Into<String>, reason: impl Into<String>) -> Self {
        ControllerError::Internal {
            subject: subject.into(),
            reason: reason.into(),
        }
    }
}

impl From<AttachError> for ControllerError {
    fn from(e: AttachError) -> Self {
        ControllerError::Attach(Box::new(e))
    }
}

impl From<ControllerError> for Status {
    fn from(e: ControllerError) -> Self {
        crate::error::status(e.code(), e.to_string())
    }
}

impl From<ControllerError> for Error {
    fn from(e: ControllerError) -> Self {
        Error::from_code(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rds::RdsErrorKind;
    use crate::volume::MigrationTimeout;

    /// Every variant, with the code the CSI spec asks for and a word its message must hold.
    #[test]
    fn every_variant_maps_to_its_csi_code_and_names_its_object() {
        let s = || "volume pvc-1".to_string();
        let cases: Vec<(ControllerError, Code, &str)> = vec![
            (
                ControllerError::Missing {
                    subject: Some(s()),
                    field: "node_id",
                },
                Code::InvalidArgument,
                "volume pvc-1: node_id is required",
            ),
            (
                ControllerError::missing("volume_id"),
                Code::InvalidArgument,
                "volume_id is required",
            ),
            (
                ControllerError::InvalidName {
                    what: "volume",
                    name: "a\u{1}".into(),
                    reason: "control characters are not allowed".into(),
                },
                Code::InvalidArgument,
                "\\u{1}",
            ),
            (
                ControllerError::CapacityRange {
                    subject: s(),
                    reason: "capacity_range must not be negative (required -1, limit 0)".into(),
                },
                Code::InvalidArgument,
                "negative",
            ),
            (
                ControllerError::Capability {
                    subject: s(),
                    source: CapabilityError::FilesystemMultiNode,
                },
                Code::InvalidArgument,
                "KubeVirt",
            ),
            (
                ControllerError::Parameter(InvalidParameter::Unknown("bogus".into())),
                Code::InvalidArgument,
                "bogus",
            ),
            (
                ControllerError::MigrationTimeout {
                    volume: "pvc-1".into(),
                    source: MigrationTimeout::parse("9").unwrap_err(),
                },
                Code::InvalidArgument,
                "30 to 3600",
            ),
            (
                ControllerError::NoNvmeAddress {
                    volume: "pvc-1".into(),
                },
                Code::InvalidArgument,
                "--nvme-address",
            ),
            (
                ControllerError::NqnPrefix {
                    volume: "pvc-1".into(),
                    source: NqnError::Empty,
                },
                Code::InvalidArgument,
                "--nqn-prefix",
            ),
            (
                ControllerError::FilePath {
                    volume: "pvc-1".into(),
                    path: "/x".into(),
                    source: Box::new(ValidationError::ZeroPort),
                },
                Code::InvalidArgument,
                "/x",
            ),
            (
                ControllerError::NegativeMaxEntries(-1),
                Code::InvalidArgument,
                "-1",
            ),
            (
                ControllerError::VolumeNotFound {
                    id: "pvc-1".into(),
                    on_rds: true,
                },
                Code::NotFound,
                "volume \"pvc-1\" does not exist on the RDS",
            ),
            (
                ControllerError::SourceNotFound {
                    subject: s(),
                    what: "snapshot",
                    id: "snap-1".into(),
                    on_rds: false,
                },
                Code::NotFound,
                "snap-1",
            ),
            (
                ControllerError::NodeNotFound {
                    node: "node-x".into(),
                    volume: "pvc-1".into(),
                },
                Code::NotFound,
                "node-x",
            ),
            (
                ControllerError::Exists {
                    subject: s(),
                    reason: "with 1 bytes".into(),
                },
                Code::AlreadyExists,
                "pvc-1",
            ),
            (
                ControllerError::SizeOutOfRange {
                    subject: s(),
                    reason: "too big".into(),
                },
                Code::OutOfRange,
                "pvc-1",
            ),
            (
                ControllerError::NoSpace {
                    subject: s(),
                    reason: "full".into(),
                },
                Code::ResourceExhausted,
                "pvc-1",
            ),
            (
                ControllerError::Inaccessible {
                    volume: "pvc-1".into(),
                    ours: "{zone=a}".into(),
                },
                Code::ResourceExhausted,
                "--topology",
            ),
            (
                ControllerError::StillPublished {
                    volume: "pvc-1".into(),
                    nodes: vec!["node-a".into()],
                },
                Code::FailedPrecondition,
                "node-a",
            ),
            (
                ControllerError::LeftoverFile {
                    volume: "pvc-1".into(),
                    path: "/storage-pool/csi/pvc-1.img".into(),
                },
                Code::FailedPrecondition,
                "/file remove [find name=\"storage-pool/csi/pvc-1.img\"]",
            ),
            (
                ControllerError::FileOfAnotherDisk {
                    volume: "pvc-1".into(),
                    path: "/storage-pool/csi/pvc-1.img".into(),
                    disk: "other".into(),
                },
                Code::FailedPrecondition,
                "disk other",
            ),
            (
                ControllerError::Unimplemented("ControllerModifyVolume is not offered"),
                Code::Unimplemented,
                "ControllerModifyVolume",
            ),
            (
                ControllerError::internal(s(), "broken"),
                Code::Internal,
                "pvc-1",
            ),
            (
                ControllerError::rds(s(), RdsError::new(RdsErrorKind::NoSpace, "/disk add", "x")),
                Code::ResourceExhausted,
                "free space",
            ),
            (
                ControllerError::from(AttachError::FilesystemRwx {
                    volume: "pvc-1".into(),
                }),
                Code::InvalidArgument,
                "KubeVirt",
            ),
            (
                ControllerError::Kubernetes {
                    context: "volume pvc-1: ".into(),
                    source: Error::Unavailable("API down".into()),
                },
                Code::Unavailable,
                "API down",
            ),
            (
                ControllerError::Pagination(Error::Aborted("token".into())),
                Code::Aborted,
                "token",
            ),
        ];
        for (e, code, word) in cases {
            let s = Status::from(e);
            assert_eq!(s.code(), code, "{}", s.message());
            assert!(
                s.message().contains(word),
                "{word:?} not in {}",
                s.message()
            );
        }
    }

    #[test]
    fn a_long_name_is_echoed_briefly() {
        let e = ControllerError::InvalidName {
            what: "volume",
            name: "n".repeat(100_000),
            reason: "at most 128 bytes are allowed".into(),
        };
        let s = Status::from(e);
        assert!(s.message().len() < 400, "{}", s.message().len());
        assert!(s.message().contains("(100000 bytes)"), "{}", s.message());
    }
}
