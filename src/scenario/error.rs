//! What a failed CSI call says: the call and its object, and the gRPC status.

use std::time::Duration;

use thiserror::Error;
use tonic::Code;

/// A CSI call that did not succeed. The text names the call and its object, e.g.
/// `NodeStage pvc-1 on node-a: FailedPrecondition: ...`.
#[derive(Debug, Clone, Error)]
pub enum CallError {
    /// The plugin answered with an error status.
    #[error("{call}: {code:?}: {message}")]
    Status {
        call: String,
        code: Code,
        message: String,
    },
    /// No answer (not even DEADLINE_EXCEEDED) within the deadline and its grace.
    #[error("{call}: no answer within {timeout:?}")]
    Timeout { call: String, timeout: Duration },
    /// The scenario names a node the client has no endpoint for.
    #[error("{call}: no CSI endpoint for node {node}")]
    NoNode { call: String, node: String },
    /// The answer is OK but lacks what the call must return.
    #[error("{call}: {what}")]
    Malformed { call: String, what: &'static str },
}

impl CallError {
    /// The gRPC code the plugin answered with (None: it did not answer with a status).
    pub fn code(&self) -> Option<Code> {
        match self {
            CallError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The plugin's status message (empty when it did not answer with a status).
    pub fn message(&self) -> &str {
        match self {
            CallError::Status { message, .. } => message,
            _ => "",
        }
    }

    /// `Code: message` without the call: for a row that already names the call.
    pub fn status_text(&self) -> String {
        match self {
            CallError::Status { code, message, .. } => format!("{code:?}: {message}"),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_call_and_keep_the_code() {
        let e = CallError::Status {
            call: "NodeUnstage pvc-1 on node-a".into(),
            code: Code::FailedPrecondition,
            message: "held open by pid 7 (sleep)".into(),
        };
        assert_eq!(
            e.to_string(),
            "NodeUnstage pvc-1 on node-a: FailedPrecondition: held open by pid 7 (sleep)"
        );
        assert_eq!(e.code(), Some(Code::FailedPrecondition));
        assert_eq!(
            e.status_text(),
            "FailedPrecondition: held open by pid 7 (sleep)"
        );
        let t = CallError::Timeout {
            call: "ListVolumes".into(),
            timeout: Duration::from_secs(3),
        };
        assert_eq!(t.code(), None);
        assert_eq!(t.message(), "");
        assert_eq!(t.status_text(), "ListVolumes: no answer within 3s");
    }
}
