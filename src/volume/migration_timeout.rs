//! How long an RWX block volume may stay attached to two nodes during a KubeVirt live
//! migration (`migrationTimeoutSeconds`): docs/kubevirt-migration.md.

use std::time::Duration;

use super::keys::MIGRATION_TIMEOUT_SECONDS;
use crate::error::echo;

/// The live-migration window: whole seconds from [`Self::MIN_SECS`] to [`Self::MAX_SECS`],
/// [`Self::DEFAULT_SECS`] when not given.
///
/// Out-of-range values are an error, never clamped: a StorageClass typo must be seen, not
/// silently turned into a different fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MigrationTimeout(Duration);

/// A `migrationTimeoutSeconds` value outside the accepted range or not a number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}={} is not a whole number of seconds from {} to {} (the default is {}); values outside \
     the range are refused, not clamped",
    MigrationTimeout::PARAMETER,
    echo(.value),
    MigrationTimeout::MIN_SECS,
    MigrationTimeout::MAX_SECS,
    MigrationTimeout::DEFAULT_SECS
)]
pub struct InvalidMigrationTimeout {
    pub value: String,
}

impl MigrationTimeout {
    /// The StorageClass / volume-context key this value comes from.
    pub const PARAMETER: &'static str = MIGRATION_TIMEOUT_SECONDS;
    pub const MIN_SECS: u64 = 30;
    pub const MAX_SECS: u64 = 3600;
    pub const DEFAULT_SECS: u64 = 300;

    pub fn from_secs(secs: u64) -> Result<Self, InvalidMigrationTimeout> {
        if (Self::MIN_SECS..=Self::MAX_SECS).contains(&secs) {
            Ok(MigrationTimeout(Duration::from_secs(secs)))
        } else {
            Err(InvalidMigrationTimeout {
                value: secs.to_string(),
            })
        }
    }

    /// Parses the parameter's string value (whole seconds, surrounding spaces allowed).
    pub fn parse(value: &str) -> Result<Self, InvalidMigrationTimeout> {
        let invalid = || InvalidMigrationTimeout {
            value: value.to_owned(),
        };
        let secs = value.trim().parse::<u64>().map_err(|_| invalid())?;
        Self::from_secs(secs).map_err(|_| invalid())
    }

    /// The parameter if present, else the default.
    pub fn from_parameter(value: Option<&str>) -> Result<Self, InvalidMigrationTimeout> {
        value.map_or(Ok(Self::default()), Self::parse)
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl Default for MigrationTimeout {
    fn default() -> Self {
        MigrationTimeout(Duration::from_secs(Self::DEFAULT_SECS))
    }
}

impl std::fmt::Display for MigrationTimeout {
    /// Whole seconds, as the parameter is written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_inclusive_and_out_of_range_is_refused_not_clamped() {
        assert_eq!(MigrationTimeout::parse("30").unwrap().as_secs(), 30);
        assert_eq!(MigrationTimeout::parse(" 3600 ").unwrap().as_secs(), 3600);
        assert_eq!(
            MigrationTimeout::from_parameter(None).unwrap().as_secs(),
            300
        );
        for bad in [
            "29",
            "3601",
            "0",
            "-5",
            "5m",
            "",
            "4294967596",
            "abc",
            "300s",
        ] {
            let e = MigrationTimeout::parse(bad).unwrap_err();
            assert_eq!(e.value, bad);
            let msg = e.to_string();
            assert!(
                msg.contains("migrationTimeoutSeconds") && msg.contains("30 to 3600"),
                "{msg}"
            );
        }
    }

    #[test]
    fn it_renders_as_the_parameter_is_written() {
        let t = MigrationTimeout::parse("600").unwrap();
        assert_eq!(t.to_string(), "600");
        assert_eq!(MigrationTimeout::parse(&t.to_string()), Ok(t));
    }
}
