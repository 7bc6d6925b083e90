//! The one mapping from RouterOS client errors to the driver's errors (and so to gRPC codes),
//! each message naming the object and, where useful, what to do.
//!
//! What a gRPC message says reaches namespace users: the external-attacher copies it into the
//! VolumeAttachment's status, the provisioner into the claim's events, the kubelet into the
//! pod's. So the message carries RouterOS's own answer and what to do, never the RDS
//! credentials' details: no command line (it names file paths and slots of other volumes), and
//! for transport failures no SSH user, key file or key fingerprint. The whole error, command
//! included, goes to the controller's log (one line per mapped error) for the operator.

use tonic::Code;

use crate::rds::{RdsError, RdsErrorKind};

/// The CSI code for an RDS error of `kind`.
pub fn code(kind: RdsErrorKind) -> Code {
    match kind {
        RdsErrorKind::Transport => Code::Unavailable,
        RdsErrorKind::Timeout => Code::DeadlineExceeded,
        RdsErrorKind::NoSpace => Code::ResourceExhausted,
        RdsErrorKind::NotFound => Code::NotFound,
        RdsErrorKind::AlreadyExists => Code::AlreadyExists,
        RdsErrorKind::InUse => Code::FailedPrecondition,
        // RouterOS refusing a command we built is a driver bug, not the caller's fault.
        RdsErrorKind::Invalid | RdsErrorKind::Unknown => Code::Internal,
    }
}

/// Logs the whole error `e`, raised while working on `subject` (e.g. `volume pvc-1`), command
/// included, for the operator (once, when the controller error is made).
pub fn log(subject: &str, e: &RdsError) {
    match e.kind() {
        RdsErrorKind::NotFound | RdsErrorKind::AlreadyExists => {
            tracing::debug!(
                subject,
                command = e.command(),
                "RDS answered: {}",
                e.message()
            )
        }
        _ => tracing::warn!(
            subject,
            command = e.command(),
            "RDS command failed: {}",
            e.message()
        ),
    }
}

/// The message for `e` that is safe to show to namespace users: RouterOS's answer and what
/// to do, never the command line or the SSH details.
pub fn message(subject: &str, e: &RdsError) -> String {
    let said = |what: &str| format!("{subject}: RDS: {what}: {}", e.message());
    match e.kind() {
        RdsErrorKind::Transport => format!(
            "{subject}: the RDS cannot be reached, refused the controller's SSH login, or the \
             circuit breaker is open (the controller's log says which); check the RDS and \
             --rds-address; the CO will retry"
        ),
        RdsErrorKind::Timeout => {
            format!("{subject}: the RDS did not answer before the call's deadline")
        }
        RdsErrorKind::NoSpace => format!(
            "{}; free space in the RDS pool or use a smaller volume",
            said("not enough space")
        ),
        RdsErrorKind::NotFound => said("not found"),
        RdsErrorKind::AlreadyExists => said("already exists"),
        RdsErrorKind::InUse => format!("{}; it is still in use", said("in use")),
        RdsErrorKind::Invalid => said("invalid command"),
        RdsErrorKind::Unknown => said("unrecognised failure"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::ControllerError;

    fn map(e: RdsError, subject: &str) -> ControllerError {
        ControllerError::rds(subject, e)
    }

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

    #[test]
    fn messages_carry_routeros_answer_but_no_command_line() {
        let cmd =
            "/disk add type=file file-path=storage-pool/csi/pvc-9.img file-size=1G slot=pvc-9";
        let e = map(
            RdsError::new(RdsErrorKind::NoSpace, "", "failure: not enough space").with_command(cmd),
            "volume pvc-9",
        );
        let m = e.to_string();
        assert!(
            m.contains("not enough space") && m.contains("volume pvc-9"),
            "{m}"
        );
        assert!(!m.contains("/disk add") && !m.contains("file-path"), "{m}");
    }

    #[test]
    fn transport_messages_name_no_user_key_file_or_fingerprint() {
        // The transport's own wording for a refused login (rds/transport.rs).
        let e = RdsError::new(
            RdsErrorKind::Transport,
            "/disk print",
            "the RDS at 10.0.0.5:22 refused public-key login for user \"csi-admin\" with the key \
             in /etc/rds-csi/ssh/ssh-privatekey (SHA256:abcdef); add that public key to the user",
        );
        let m = map(e, "volume pvc-9").to_string();
        for secret in ["csi-admin", "/etc/rds-csi", "SHA256:", "/disk print"] {
            assert!(!m.contains(secret), "{secret} leaked: {m}");
        }
        assert!(m.contains("volume pvc-9") && m.contains("log"), "{m}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_login_reaches_users_without_the_user_or_key_file() {
        use crate::simulator::harness::{start_simulator, SimOptions};
        let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sim = start_simulator(dir.path(), SimOptions::default()).await;
        // A second simulator directory generates a different client key.
        let stranger = start_simulator(other.path(), SimOptions::default()).await;
        let mut cfg = sim.client_config("/storage-pool/csi");
        cfg.key_file = stranger.client_key().to_path_buf();
        let (user, key) = (cfg.user.clone(), cfg.key_file.display().to_string());
        let metrics = crate::observability::Metrics::new("controller");
        let rds = crate::rds::RdsClient::new(cfg, &metrics).unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let e = rds.health(deadline).await.unwrap_err();
        assert!(
            e.to_string().contains(&key),
            "the log keeps the detail: {e}"
        );
        let status = tonic::Status::from(map(e, "volume pvc-9"));
        assert_eq!(status.code(), Code::Unavailable);
        let m = status.message();
        assert!(
            !m.contains(&key) && !m.contains(&format!("{user:?}")),
            "{m}"
        );
        assert!(m.contains("volume pvc-9") && m.contains("SSH login"), "{m}");
    }
}
