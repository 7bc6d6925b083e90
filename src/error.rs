//! The driver's typed errors and their one mapping to gRPC status codes.
//!
//! Every RPC handler returns `Result<_, Error>`; `impl From<Error> for tonic::Status` is the
//! only place a code is chosen, so the codes follow the CSI spec in one reviewable table.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required field is missing or a value is malformed (CSI: INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArgument(String),
    /// Another operation on the same volume is still running (CSI: ABORTED).
    #[error(
        "an operation on volume {volume_id:?} is already in progress; retry after it finishes"
    )]
    OperationPending { volume_id: String },
    /// The request cannot continue as given, e.g. a stale pagination token (CSI: ABORTED).
    #[error("{0}")]
    Aborted(String),
    /// The object does not exist (CSI: NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The object exists with incompatible properties (CSI: ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String),
    /// The system is not in the state the call needs (CSI: FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A size outside what the backend can honour (CSI: OUT_OF_RANGE).
    #[error("{0}")]
    OutOfRange(String),
    /// Out of capacity (CSI: RESOURCE_EXHAUSTED).
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency (the RDS, the kernel) cannot be reached right now (UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// The caller's deadline passed before the operation finished (DEADLINE_EXCEEDED).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The RPC or option is not offered by this driver (UNIMPLEMENTED).
    #[error("{0}")]
    Unimplemented(String),
    /// Anything else; the message says what failed (INTERNAL).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::OperationPending { .. } | Error::Aborted(_) => Code::Aborted,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::OutOfRange(_) => Code::OutOfRange,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_operation_is_aborted_and_names_the_volume() {
        let s: Status = Error::OperationPending {
            volume_id: "pvc-1".into(),
        }
        .into();
        assert_eq!(s.code(), Code::Aborted);
        assert!(s.message().contains("pvc-1"), "{}", s.message());
    }

    #[test]
    fn every_variant_maps_to_its_csi_code() {
        let cases = [
            (Error::InvalidArgument("x".into()), Code::InvalidArgument),
            (Error::Aborted("x".into()), Code::Aborted),
            (Error::NotFound("x".into()), Code::NotFound),
            (Error::AlreadyExists("x".into()), Code::AlreadyExists),
            (
                Error::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (Error::OutOfRange("x".into()), Code::OutOfRange),
            (
                Error::ResourceExhausted("x".into()),
                Code::ResourceExhausted,
            ),
            (Error::Unavailable("x".into()), Code::Unavailable),
            (Error::DeadlineExceeded("x".into()), Code::DeadlineExceeded),
            (Error::Unimplemented("x".into()), Code::Unimplemented),
            (Error::Internal("x".into()), Code::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(Status::from(e).code(), code);
        }
    }
}
