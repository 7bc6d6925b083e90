//! The filesystems this driver creates and mounts.

use std::fmt;

use crate::error::echo;

/// A filesystem this driver formats and mounts (StorageClass / capability `fsType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    Ext4,
    Xfs,
}

/// A `fsType` this driver does not create or mount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filesystem type {} is not supported; use {}", echo(.value), FsType::choices())]
pub struct UnsupportedFsType {
    pub value: String,
}

impl FsType {
    /// Every supported type, in the order messages list them.
    pub const ALL: [FsType; 2] = [FsType::Ext4, FsType::Xfs];

    /// The type `mkfs` and `mount` know it by.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }

    /// `ext4 or xfs`: the choices, for messages.
    pub fn choices() -> String {
        Self::ALL.map(FsType::as_str).join(" or ")
    }

    /// Parses a non-empty `fsType`.
    pub fn parse(value: &str) -> Result<Self, UnsupportedFsType> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
            .ok_or_else(|| UnsupportedFsType {
                value: value.to_owned(),
            })
    }

    /// Parses a `fsType` that may be empty (CSI: empty means "not specified").
    pub fn parse_optional(value: &str) -> Result<Option<Self>, UnsupportedFsType> {
        if value.is_empty() {
            Ok(None)
        } else {
            Self::parse(value).map(Some)
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_types_round_trip_and_others_are_named_with_the_choices() {
        for t in FsType::ALL {
            assert_eq!(FsType::parse(t.as_str()), Ok(t));
        }
        assert_eq!(FsType::parse_optional(""), Ok(None));
        let e = FsType::parse("btrfs").unwrap_err().to_string();
        assert_eq!(
            e,
            "filesystem type \"btrfs\" is not supported; use ext4 or xfs"
        );
        assert!(FsType::parse("EXT4").is_err());
    }
}
