//! The one mapping from RouterOS client errors to the driver's errors (and so to gRPC codes),
//! each message naming the object and, where useful, what to do.

use crate::error::Error;
use crate::rds::{RdsError, RdsErrorKind};

/// Maps `e`, raised while working on `subject` (e.g. `volume pvc-1`), to a driver error.
pub fn map(e: RdsError, subject: &str) -> Error {
    let msg = format!("{subject}: {e}");
    match e.kind() {
        RdsErrorKind::Transport => Error::Unavailable(format!(
            "{msg}; the RDS is unreachable or the circuit breaker is open — check the RDS and --rds-address; the CO will retry"
        )),
        RdsErrorKind::Timeout => Error::DeadlineExceeded(format!(
            "{msg}; the RDS did not answer before the call's deadline"
        )),
        RdsErrorKind::NoSpace => Error::ResourceExhausted(format!(
            "{msg}; free space in the RDS pool or use a smaller volume"
        )),
        RdsErrorKind::NotFound => Error::NotFound(msg),
        RdsErrorKind::AlreadyExists => Error::AlreadyExists(msg),
        RdsErrorKind::InUse => Error::FailedPrecondition(format!("{msg}; it is still in use")),
        // RouterOS refusing a command we built is a driver bug, not the caller's fault.
        RdsErrorKind::Invalid | RdsErrorKind::Unknown => Error::Internal(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn kinds_map_to_the_csi_codes() {
        let cases = [
            (RdsErrorKind::Transport, Code::Unavailable),
            (RdsErrorKind::Timeout, Code::DeadlineExceeded),
            (RdsErrorKind::NoSpace, Code::ResourceExhausted),
            (RdsErrorKind::NotFound, Code::NotFound),
            (RdsErrorKind::AlreadyExists, Code::AlreadyExists),
            (RdsErrorKind::InUse, Code::FailedPrecondition),
            (RdsErrorKind::Invalid, Code::Internal),
            (RdsErrorKind::Unknown, Code::Internal),
        ];
        for (kind, code) in cases {
            let e = map(RdsError::new(kind, "/disk print", "x"), "volume pvc-9");
            assert!(e.to_string().contains("volume pvc-9"));
            assert_eq!(tonic::Status::from(e).code(), code, "{kind:?}");
        }
    }
}
