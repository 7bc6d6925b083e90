//! NVMe Qualified Names (NVMe Base Specification 2.0, §4.5): the name of an NVMe subsystem
//! or host, `nqn.YYYY-MM.<reverse domain>:<unique>`, at most 223 bytes.
//!
//! One type for every NQN the driver builds or sends: a volume's subsystem NQN (the
//! controller puts it into RouterOS commands, the node into the kernel's connect string) and
//! the host NQN. It lives in node-io because an NQN is an NVMe fact — not a RouterOS, CSI or
//! Kubernetes one — and node-io is the one crate both halves of the driver build on.
//!
//! The spec allows any UTF-8 in the unique part; this allow-list is deliberately narrower
//! (domain `[A-Za-z0-9.-]`, unique part `[A-Za-z0-9.:_-]`), so an NQN is safe unescaped both
//! in the kernel's comma-separated `key=value` connect string and inside a quoted RouterOS
//! CLI value. NQNs merely *read* from sysfs (other subsystems' controllers) stay strings:
//! they are data, never sent anywhere.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// NVMe Base Specification 2.0, §4.5: an NQN is at most 223 bytes (the kernel's
/// `NVMF_NQN_SIZE` is 223 plus the NUL).
pub const NQN_MAX_LEN: usize = 223;

const DOMAIN_ALLOWED: &str = "letters, digits, '.', '-'";
const UNIQUE_ALLOWED: &str = "letters, digits, '.', ':', '_', '-'";

/// Why a string is not an NQN this driver accepts; the message names the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NqnError {
    #[error("NQN is empty")]
    Empty,
    #[error("NQN is {len} bytes long; at most {NQN_MAX_LEN} are allowed")]
    TooLong { len: usize },
    #[error("{part} {value:?}: {ch:?} at byte {index} is not allowed (allowed: {allowed})")]
    ForbiddenChar {
        part: &'static str,
        value: String,
        ch: char,
        index: usize,
        allowed: &'static str,
    },
    #[error(
        "NQN {value:?} does not have the form nqn.YYYY-MM.<reverse-domain>:<unique>: {reason}"
    )]
    Format { value: String, reason: &'static str },
}

/// A validated NVMe Qualified Name (see the module notes for the rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nqn(String);

fn is_unique_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '_' | '-')
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
}

fn check_chars(
    part: &'static str,
    value: &str,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), NqnError> {
    match value.char_indices().find(|&(_, c)| !ok(c)) {
        Some((index, ch)) => Err(NqnError::ForbiddenChar {
            part,
            value: value.to_string(),
            ch,
            index,
            allowed,
        }),
        None => Ok(()),
    }
}

impl Nqn {
    pub fn new(value: impl AsRef<str>) -> Result<Self, NqnError> {
        let value = value.as_ref();
        if value.is_empty() {
            return Err(NqnError::Empty);
        }
        if value.len() > NQN_MAX_LEN {
            return Err(NqnError::TooLong { len: value.len() });
        }
        // Whole-value check first, so a hostile character is reported as such.
        check_chars("NQN", value, UNIQUE_ALLOWED, is_unique_char)?;
        let format = |reason| NqnError::Format {
            value: value.to_string(),
            reason,
        };
        let rest = value
            .strip_prefix("nqn.")
            .ok_or(format("missing \"nqn.\" prefix"))?;
        let date = rest.get(..7).ok_or(format("missing YYYY-MM date"))?;
        let date_ok = date.bytes().enumerate().all(|(i, b)| {
            if i == 4 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
        let month_ok = matches!(
            date.get(5..7).and_then(|m| m.parse::<u8>().ok()),
            Some(1..=12)
        );
        if !date_ok || !month_ok {
            return Err(format("date is not YYYY-MM"));
        }
        let rest = rest[7..]
            .strip_prefix('.')
            .ok_or(format("no '.' after the date"))?;
        let (domain, unique) = rest
            .split_once(':')
            .ok_or(format("no ':' before the unique part"))?;
        if domain.is_empty() {
            return Err(format("empty domain"));
        }
        if unique.is_empty() {
            return Err(format("empty unique part"));
        }
        check_chars("NQN domain", domain, DOMAIN_ALLOWED, is_domain_char)?;
        Ok(Nqn(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Nqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Nqn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Nqn {
    type Err = NqnError;
    fn from_str(s: &str) -> Result<Self, NqnError> {
        Nqn::new(s)
    }
}

impl TryFrom<&str> for Nqn {
    type Error = NqnError;
    fn try_from(s: &str) -> Result<Self, NqnError> {
        Nqn::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "nqn.2000-02.com.mikrotik:";

    #[test]
    fn the_two_spec_forms_are_accepted() {
        assert!(Nqn::new("nqn.2000-02.com.mikrotik:pvc-test-123").is_ok());
        assert!(
            Nqn::new("nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427")
                .is_ok()
        );
        assert!(Nqn::new(String::from("nqn.2000-02.com.mikrotik:a")).is_ok());
    }

    #[test]
    fn the_length_limit_is_223_bytes() {
        let max = format!("{PREFIX}{}", "a".repeat(NQN_MAX_LEN - PREFIX.len()));
        assert_eq!(Nqn::new(&max).unwrap().as_str(), max);
        assert_eq!(
            Nqn::new(format!("{max}a")),
            Err(NqnError::TooLong {
                len: NQN_MAX_LEN + 1
            })
        );
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "",
            "iqn.2024-01.x:y",
            "NQN.2024-01.x:y",
            "nq.2000-02.com.mikrotik:x",
            "nqn.200-02.com.mikrotik:x",
            "nqn.2000-13.com.mikrotik:x",
            "nqn.2000-02com.mikrotik:x",
            "nqn.2000-02.com.mikrotik",
            "nqn.2014-08.org.nvmexpress.discovery",
            "nqn.2000-02.:x",
            "nqn.2000-02.com.mikrotik:",
            "nqn.2000-02.com_x:y",
            "nqn.",
        ] {
            assert!(Nqn::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn separators_of_the_connect_string_and_cli_metacharacters_are_refused() {
        for h in [
            ",", "=", " ", "\t", "\n", "\0", "\"", "\\", "$", "[", "]", ";", "/", "\u{a0}", "é",
        ] {
            for v in [
                format!("{PREFIX}pvc{h}1"),
                format!("{PREFIX}pvc-1,hostnqn{h}x"),
                format!("nqn.2000-02.com{h}x:pvc"),
            ] {
                assert!(
                    matches!(Nqn::new(&v), Err(NqnError::ForbiddenChar { .. })),
                    "{v:?}"
                );
            }
        }
    }
}
