//! The NVMe/TCP address of the RDS (`nvmeAddress`): an IP address or a DNS host name.
//!
//! The node resolves a host name itself at every connect (the kernel takes only numeric
//! addresses), and the value travels through the volume context and the node's stage
//! records: the rule keeps anything else — control characters, commas, `=`, spaces — out of
//! the kernel's option string and out of every file the node writes.

use std::fmt;
use std::net::IpAddr;

use crate::error::echo;

/// RFC 1035 §2.3.4: a name is at most 253 bytes in text form, a label at most 63.
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// An IP address (v4 or v6) or a host name of letters, digits and '-' labels separated by
/// dots (RFC 1123 §2.1), at most 253 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NvmeAddress(String);

/// Why a string is not an NVMe/TCP address this driver accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is not an IP address or a host name (letters, digits and '-' in dot-separated labels \
     of at most {MAX_LABEL} bytes, {MAX_NAME} bytes in all)",
    echo(.value)
)]
pub struct InvalidAddress {
    pub value: String,
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= MAX_LABEL
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl NvmeAddress {
    pub fn parse(value: &str) -> Result<Self, InvalidAddress> {
        if value.parse::<IpAddr>().is_ok() || is_host_name(value) {
            Ok(NvmeAddress(value.to_owned()))
        } else {
            Err(InvalidAddress {
                value: value.to_owned(),
            })
        }
    }

    /// The address when it is numeric (no lookup needed).
    pub fn ip(&self) -> Option<IpAddr> {
        self.0.parse().ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NvmeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_and_host_names_pass_and_nothing_else() {
        for ok in [
            "10.0.0.5",
            "::1",
            "fd00::5",
            "rds",
            "rds-1.storage.example.com",
            "localhost",
        ] {
            assert_eq!(NvmeAddress::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "127.0.0.1\ntarget=/data/a.img",
            "10.0.0.5,hostnqn=x",
            "a b",
            "-rds",
            "rds..example",
            "rds.example.",
            "[::1]",
            &"a".repeat(64),
            &format!("{}.b", "a.".repeat(127)),
        ] {
            let e = NvmeAddress::parse(bad).unwrap_err().to_string();
            assert!(!e.contains('\n') && e.len() < 500, "{e}");
        }
    }
}
