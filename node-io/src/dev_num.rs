//! A device number (`major:minor`), as printed by the kernel in sysfs `dev` files,
//! mountinfo and uevents.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A Linux device number split into major and minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

/// `s` is not a `major:minor` pair of decimal numbers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid device number {input:?}: expected MAJOR:MINOR")]
pub struct DevNumError {
    pub input: String,
}

impl DevNum {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }
}

impl FromStr for DevNum {
    type Err = DevNumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DevNumError {
            input: s.to_string(),
        };
        let (maj, min) = s.split_once(':').ok_or_else(err)?;
        Ok(Self {
            major: parse_decimal(maj).ok_or_else(err)?,
            minor: parse_decimal(min).ok_or_else(err)?,
        })
    }
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Plain ASCII decimal only: `u32::from_str` would also accept a leading `+`.
pub(crate) fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_major_minor() {
        let d: DevNum = "259:1".parse().unwrap();
        assert_eq!(d, DevNum::new(259, 1));
        assert_eq!(d.to_string(), "259:1");
    }

    #[test]
    fn rejects_malformed_device_numbers() {
        for bad in [
            "",
            "259",
            "259:",
            ":1",
            "+1:2",
            "1:2:3",
            "a:b",
            "1: 2",
            "99999999999:0",
        ] {
            assert!(bad.parse::<DevNum>().is_err(), "{bad:?} accepted");
        }
    }
}
