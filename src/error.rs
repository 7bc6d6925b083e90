//! The driver's typed errors and their one mapping to gRPC status codes.
//!
//! Every RPC handler returns `Result<_, Error>`; `impl From<Error> for tonic::Status` is the
//! only place a code is chosen, so the codes follow the CSI spec in one reviewable table.
//!
//! Messages echo at most a few hundred bytes of any input: an input is shown through
//! [`Echo`], and the mapping to [`Status`] caps the whole message at
//! [`MAX_STATUS_MESSAGE_BYTES`] as a last resort (docs/architecture.md, "Failure handling").

use std::fmt;

use tonic::{Code, Status};

/// The most bytes of one input an error message shows (escaped, quoted form).
pub const MAX_ECHO_BYTES: usize = 200;

/// The most bytes of any gRPC status message this driver returns. Messages are built to stay
/// far below it; the cap only keeps a message that echoes several long inputs bounded.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 2048;

/// An input shown inside an error message: Debug-quoted like `{:?}` (so control characters
/// are visible, never raw), cut at a character boundary to at most [`MAX_ECHO_BYTES`] bytes of
/// output, and — when cut — followed by how long the input really was:
/// `"aaaa…" (300 bytes)`.
#[derive(Clone, Copy)]
pub struct Echo<'a>(pub &'a str);

/// Shorthand for [`Echo`]: `format!("volume name {} is invalid", echo(name))`.
pub fn echo(input: &str) -> Echo<'_> {
    Echo(input)
}

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escape = |c: char| -> String {
            if c == '\'' {
                c.to_string()
            } else {
                c.escape_debug().collect()
            }
        };
        let whole: usize = self.0.chars().map(|c| escape(c).len()).sum();
        if whole + 2 <= MAX_ECHO_BYTES {
            return write!(f, "\"{}\"", self.0.chars().map(escape).collect::<String>());
        }
        // Cut: leave room for the ellipsis and the closing quote.
        let room = MAX_ECHO_BYTES - 2 - '…'.len_utf8();
        let mut shown = String::with_capacity(room);
        for e in self.0.chars().map(escape) {
            if shown.len() + e.len() > room {
                break;
            }
            shown.push_str(&e);
        }
        write!(f, "\"{shown}…\" ({} bytes)", self.0.len())
    }
}

impl fmt::Debug for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `message` cut to at most `max` bytes at a character boundary, saying how long it was.
pub fn cap_message(message: String, max: usize) -> String {
    if message.len() <= max {
        return message;
    }
    let total = message.len();
    let marker = format!("… (message cut from {total} bytes)");
    let mut end = max.saturating_sub(marker.len());
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = message;
    out.truncate(end);
    out.push_str(&marker);
    out
}

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
    /// The variant for `code` (a layer's own table chose the code), carrying `message`.
    pub fn from_code(code: Code, message: String) -> Self {
        match code {
            Code::InvalidArgument => Error::InvalidArgument(message),
            Code::Aborted => Error::Aborted(message),
            Code::NotFound => Error::NotFound(message),
            Code::AlreadyExists => Error::AlreadyExists(message),
            Code::FailedPrecondition => Error::FailedPrecondition(message),
            Code::OutOfRange => Error::OutOfRange(message),
            Code::ResourceExhausted => Error::ResourceExhausted(message),
            Code::Unavailable => Error::Unavailable(message),
            Code::DeadlineExceeded => Error::DeadlineExceeded(message),
            Code::Unimplemented => Error::Unimplemented(message),
            _ => Error::Internal(message),
        }
    }

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
        status(e.code(), e.to_string())
    }
}

/// The gRPC status for a code a layer's table chose, its message capped at
/// [`MAX_STATUS_MESSAGE_BYTES`]. Every error of the driver reaches the CO through here.
pub fn status(code: Code, message: String) -> Status {
    Status::new(code, cap_message(message, MAX_STATUS_MESSAGE_BYTES))
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
    fn a_short_input_is_echoed_like_debug() {
        assert_eq!(echo("pvc-1").to_string(), "\"pvc-1\"");
        assert_eq!(echo("a\nb\"c").to_string(), format!("{:?}", "a\nb\"c"));
        assert_eq!(echo("ünï").to_string(), "\"ünï\"");
        assert_eq!(echo("it's").to_string(), "\"it's\"");
    }

    #[test]
    fn a_long_input_is_cut_at_a_char_boundary_and_its_length_named() {
        for input in [
            "a".repeat(10_000),
            "名".repeat(1_000),
            "\u{1}".repeat(1_000),
            format!("{}ü", "a".repeat(MAX_ECHO_BYTES - 3)),
        ] {
            let shown = echo(&input).to_string();
            let quoted = shown.rsplit_once(" (").map_or(shown.as_str(), |(q, _)| q);
            assert!(quoted.len() <= MAX_ECHO_BYTES, "{} bytes", quoted.len());
            assert!(quoted.ends_with("…\""), "{shown}");
            assert!(
                shown.ends_with(&format!(" ({} bytes)", input.len())),
                "{shown}"
            );
        }
        // Exactly at the limit: shown whole, no length note.
        let fits = "b".repeat(MAX_ECHO_BYTES - 2);
        assert_eq!(echo(&fits).to_string(), format!("\"{fits}\""));
    }

    #[test]
    fn every_status_message_is_capped() {
        let huge = format!("volume {}: x", "名".repeat(100_000));
        let s = Status::from(Error::InvalidArgument(huge.clone()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().len() <= MAX_STATUS_MESSAGE_BYTES,
            "{}",
            s.message().len()
        );
        assert!(
            s.message().starts_with("volume 名"),
            "{}",
            &s.message()[..20]
        );
        assert!(
            s.message()
                .ends_with(&format!("(message cut from {} bytes)", huge.len())),
            "{}",
            s.message()
        );
        let short = Status::from(Error::NotFound("volume \"x\" does not exist".into()));
        assert_eq!(short.message(), "volume \"x\" does not exist");
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
            assert_eq!(Error::from_code(code, "y".into()).code(), code);
            assert_eq!(Status::from(e).code(), code);
        }
    }
}
