//! Typed RouterOS errors and the classifier that reads them out of command output
//! (docs/architecture.md, "Correctness rules", rule 3). Which stream carries the error text is not established, and RouterOS may
//! exit 0 after printing `failure: ...`, so both streams are read whatever the exit status.

use std::fmt;

use thiserror::Error;

/// What kind of failure an [`RdsError`] is, for mapping to gRPC codes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RdsErrorKind {
    NotFound,
    AlreadyExists,
    NoSpace,
    InUse,
    Invalid,
    Transport,
    Timeout,
    Unknown,
}

/// A failed RouterOS command. `command` is the command line (empty until attached with
/// [`RdsError::with_command`]); `message` is RouterOS's own text or the transport's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RdsError {
    #[error("RDS: not found: {message}{}", CommandSuffix(command))]
    NotFound { command: String, message: String },
    #[error("RDS: already exists: {message}{}", CommandSuffix(command))]
    AlreadyExists { command: String, message: String },
    #[error("RDS: not enough space: {message}{}", CommandSuffix(command))]
    NoSpace { command: String, message: String },
    #[error("RDS: in use: {message}{}", CommandSuffix(command))]
    InUse { command: String, message: String },
    #[error("RDS: invalid command: {message}{}", CommandSuffix(command))]
    Invalid { command: String, message: String },
    #[error("RDS: transport error: {message}{}", CommandSuffix(command))]
    Transport { command: String, message: String },
    #[error("RDS: timed out: {message}{}", CommandSuffix(command))]
    Timeout { command: String, message: String },
    #[error("RDS: unrecognised failure: {message}{}", CommandSuffix(command))]
    Unknown { command: String, message: String },
}

struct CommandSuffix<'a>(&'a str);

impl fmt::Display for CommandSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, " (command: {})", self.0)
        }
    }
}

impl RdsError {
    pub fn new(kind: RdsErrorKind, command: impl Into<String>, message: impl Into<String>) -> Self {
        let (command, message) = (command.into(), message.into());
        match kind {
            RdsErrorKind::NotFound => RdsError::NotFound { command, message },
            RdsErrorKind::AlreadyExists => RdsError::AlreadyExists { command, message },
            RdsErrorKind::NoSpace => RdsError::NoSpace { command, message },
            RdsErrorKind::InUse => RdsError::InUse { command, message },
            RdsErrorKind::Invalid => RdsError::Invalid { command, message },
            RdsErrorKind::Transport => RdsError::Transport { command, message },
            RdsErrorKind::Timeout => RdsError::Timeout { command, message },
            RdsErrorKind::Unknown => RdsError::Unknown { command, message },
        }
    }

    fn parts_mut(&mut self) -> (&mut String, &mut String) {
        match self {
            RdsError::NotFound { command, message }
            | RdsError::AlreadyExists { command, message }
            | RdsError::NoSpace { command, message }
            | RdsError::InUse { command, message }
            | RdsError::Invalid { command, message }
            | RdsError::Transport { command, message }
            | RdsError::Timeout { command, message }
            | RdsError::Unknown { command, message } => (command, message),
        }
    }

    fn parts(&self) -> (&str, &str) {
        match self {
            RdsError::NotFound { command, message }
            | RdsError::AlreadyExists { command, message }
            | RdsError::NoSpace { command, message }
            | RdsError::InUse { command, message }
            | RdsError::Invalid { command, message }
            | RdsError::Transport { command, message }
            | RdsError::Timeout { command, message }
            | RdsError::Unknown { command, message } => (command, message),
        }
    }

    pub fn kind(&self) -> RdsErrorKind {
        match self {
            RdsError::NotFound { .. } => RdsErrorKind::NotFound,
            RdsError::AlreadyExists { .. } => RdsErrorKind::AlreadyExists,
            RdsError::NoSpace { .. } => RdsErrorKind::NoSpace,
            RdsError::InUse { .. } => RdsErrorKind::InUse,
            RdsError::Invalid { .. } => RdsErrorKind::Invalid,
            RdsError::Transport { .. } => RdsErrorKind::Transport,
            RdsError::Timeout { .. } => RdsErrorKind::Timeout,
            RdsError::Unknown { .. } => RdsErrorKind::Unknown,
        }
    }

    pub fn command(&self) -> &str {
        self.parts().0
    }

    pub fn message(&self) -> &str {
        self.parts().1
    }

    /// Attaches the command line that failed, for logs and gRPC messages.
    pub fn with_command(mut self, command: impl Into<String>) -> Self {
        *self.parts_mut().0 = command.into();
        self
    }
}

/// Line prefixes RouterOS uses for a command it refused to parse or evaluate.
const INVALID_PREFIXES: &[&str] = &[
    "bad command name",
    "syntax error",
    "expected end of command",
    "expected command name",
    "input does not match any value of",
    "invalid value",
    "missing value",
    "ambiguous value",
    "unknown parameter",
];

/// Classifies the text after `failure:`. Not-found phrases are checked before "exists" so
/// that "does not exist" never reads as already-exists.
fn classify_failure(message: &str) -> RdsErrorKind {
    let m = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if has(&["not enough space", "no space", "out of space", "disk full"]) {
        RdsErrorKind::NoSpace
    } else if has(&["no such", "not found", "does not exist", "doesn't exist"]) {
        RdsErrorKind::NotFound
    } else if has(&["already exists", "already have", "exists"]) {
        RdsErrorKind::AlreadyExists
    } else if has(&["in use", "busy", "is used"]) {
        RdsErrorKind::InUse
    } else {
        RdsErrorKind::Unknown
    }
}

/// Recognises one line of output; only whole lines that *start* with a known phrase count,
/// so a field value that happens to contain "failure:" in `print` output is not an error.
fn classify_line(line: &str) -> Option<RdsErrorKind> {
    let lower = line.trim().to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("failure:") {
        return Some(classify_failure(rest));
    }
    if INVALID_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return Some(RdsErrorKind::Invalid);
    }
    if lower.starts_with("no such item") || lower.starts_with("no such file") {
        return Some(RdsErrorKind::NotFound);
    }
    if lower.starts_with("not enough space") {
        return Some(RdsErrorKind::NoSpace);
    }
    None
}

/// Decides whether a command succeeded. Error text on either stream wins over the exit
/// status; a non-zero exit with no recognised text is `Unknown` carrying the text. `None`
/// (no exit status reported) with no error text counts as success, because RouterOS's SSH
/// server is not known to always send one; the caller still parses stdout strictly.
pub fn classify_output(
    stdout: &str,
    stderr: &str,
    exit_status: Option<u32>,
) -> Result<(), RdsError> {
    for line in stderr.lines().chain(stdout.lines()) {
        if let Some(kind) = classify_line(line) {
            return Err(RdsError::new(kind, "", line.trim()));
        }
    }
    match exit_status {
        None | Some(0) => Ok(()),
        Some(code) => {
            let text: Vec<&str> = [stderr.trim(), stdout.trim()]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect();
            let message = if text.is_empty() {
                format!("exit status {code} with no output")
            } else {
                format!("exit status {code}: {}", text.join("\n"))
            };
            Err(RdsError::new(RdsErrorKind::Unknown, "", message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(stdout: &str, stderr: &str, status: Option<u32>) -> Option<RdsErrorKind> {
        classify_output(stdout, stderr, status)
            .err()
            .map(|e| e.kind())
    }

    #[test]
    fn failures_are_typed_on_either_stream_whatever_the_status() {
        use RdsErrorKind::*;
        let cases: [(RdsErrorKind, &[&str]); 6] = [
            (
                NotFound,
                &[
                    "failure: no such item",
                    "failure: file does not exist",
                    "no such item",
                    "no such item (4)",
                ],
            ),
            (
                AlreadyExists,
                &[
                    "failure: item with such name already exists",
                    "failure: already have disk with such slot",
                ],
            ),
            (NoSpace, &["failure: not enough space"]),
            (InUse, &["failure: disk is in use"]),
            (
                Invalid,
                &[
                    "bad command name x (line 1 column 7)",
                    "syntax error (line 1 column 5)",
                    "expected end of command (line 1 column 20)",
                    "input does not match any value of nvme-tcp-export",
                ],
            ),
            (Unknown, &["failure: something new"]),
        ];
        for (kind, text) in cases
            .into_iter()
            .flat_map(|(kind, texts)| texts.iter().map(move |text| (kind, *text)))
        {
            for status in [None, Some(0), Some(1)] {
                assert_eq!(
                    kind_of(text, "", status),
                    Some(kind),
                    "stdout {text:?} {status:?}"
                );
                assert_eq!(
                    kind_of("", text, status),
                    Some(kind),
                    "stderr {text:?} {status:?}"
                );
                let framed = format!("\r\n  {text}\r\n");
                assert_eq!(kind_of(&framed, "", status), Some(kind), "framed {text:?}");
            }
        }
    }

    #[test]
    fn message_and_command_are_carried() {
        let err = classify_output("", "failure: not enough space\n", Some(0))
            .unwrap_err()
            .with_command("/disk add type=file");
        assert_eq!(err.message(), "failure: not enough space");
        assert_eq!(err.command(), "/disk add type=file");
        assert_eq!(
            err.to_string(),
            "RDS: not enough space: failure: not enough space (command: /disk add type=file)"
        );
        let bare = RdsError::new(RdsErrorKind::Timeout, "", "no reply in 10s");
        assert_eq!(bare.to_string(), "RDS: timed out: no reply in 10s");
    }

    #[test]
    fn success_and_print_output_are_ok() {
        assert_eq!(classify_output("", "", Some(0)), Ok(()));
        assert_eq!(classify_output("", "", None), Ok(()));
        let print = "type=file slot=\"x\" comment=\"failure: no such item\"\n   size=1 024";
        assert_eq!(classify_output(print, "", Some(0)), Ok(()));
    }

    #[test]
    fn nonzero_exit_without_known_text_is_unknown_with_the_text() {
        let err = classify_output("weird", "stuff", Some(2)).unwrap_err();
        assert_eq!(err.kind(), RdsErrorKind::Unknown);
        assert_eq!(err.message(), "exit status 2: stuff\nweird");
        let err = classify_output("", "", Some(255)).unwrap_err();
        assert_eq!(err.message(), "exit status 255 with no output");
    }

    #[test]
    fn new_and_kind_agree_for_every_kind() {
        use RdsErrorKind::*;
        for kind in [
            NotFound,
            AlreadyExists,
            NoSpace,
            InUse,
            Invalid,
            Transport,
            Timeout,
            Unknown,
        ] {
            let err = RdsError::new(kind, "cmd", "msg");
            assert_eq!(err.kind(), kind);
            assert_eq!((err.command(), err.message()), ("cmd", "msg"));
        }
    }
}
