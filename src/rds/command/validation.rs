//! The allow-list checks every value passes, the error naming the rule broken, and the
//! quoting every interpolated value gets.

use thiserror::Error;

use super::NqnError;

/// A value refused by an allow-list; the message names the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} {value:?}: {ch:?} at byte {index} is not allowed (allowed: {allowed})")]
    ForbiddenChar {
        what: &'static str,
        value: String,
        ch: char,
        index: usize,
        allowed: &'static str,
    },
    #[error("{what} {value:?} must start and end with a lowercase letter or digit")]
    BadEdge { what: &'static str, value: String },
    #[error(transparent)]
    Nqn(#[from] NqnError),
    #[error("path {value:?} is not absolute")]
    NotAbsolute { value: String },
    #[error("path {value:?}: component {index} ({component:?}) {reason}")]
    BadComponent {
        value: String,
        index: usize,
        component: String,
        reason: &'static str,
    },
    #[error("path {value:?} is not inside the base path {base:?}")]
    OutsideBase { value: String, base: String },
    #[error("port 0 is not a usable TCP port")]
    ZeroPort,
    #[error("a disk size of 0 bytes is not allowed")]
    ZeroSize,
}

pub(super) fn check_chars(
    what: &'static str,
    value: &str,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), ValidationError> {
    match value.char_indices().find(|&(_, c)| !ok(c)) {
        Some((index, ch)) => Err(ValidationError::ForbiddenChar {
            what,
            value: value.to_string(),
            ch,
            index,
            allowed,
        }),
        None => Ok(()),
    }
}

pub(super) fn check_len(
    what: &'static str,
    value: &str,
    max: usize,
) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { what });
    }
    if value.len() > max {
        return Err(ValidationError::TooLong {
            what,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// Double-quotes a value for the RouterOS CLI. The allow-lists already exclude every
/// character that needs escaping; escaping anyway keeps quoting safe on its own.
pub(super) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_even_if_allow_lists_were_loosened() {
        assert_eq!(quote(r#"a"b\c$d"#), r#""a\"b\\c\$d""#);
        assert_eq!(quote("pvc-1"), "\"pvc-1\"");
    }
}
