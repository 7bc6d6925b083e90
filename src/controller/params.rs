//! StorageClass parameters, parsed once into a typed struct with clear INVALID_ARGUMENT
//! errors next to each field. The keys, ranges and accepted values are the shared facts of
//! `crate::volume` and `crate::volume::context`.

use std::collections::HashMap;

use crate::error::echo;
use crate::rds::{BasePath, RdsPath};
use crate::volume::context::{
    Tunables, CTRL_LOSS_TMO_RANGE, KEEP_ALIVE_TMO_RANGE, RECONNECT_DELAY_RANGE,
};
use crate::volume::keys::{self, *};
use crate::volume::NvmeAddress;
use crate::volume::{FsType, MigrationTimeout};

/// A StorageClass parameter the driver refuses (INVALID_ARGUMENT), naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidParameter {
    #[error("StorageClass parameter {key}={} is invalid: expected {expected}", echo(.value))]
    Value {
        key: &'static str,
        value: String,
        expected: String,
    },
    #[error("StorageClass parameter {0}")]
    MigrationTimeout(#[from] crate::volume::InvalidMigrationTimeout),
    #[error("StorageClass parameter {FS_TYPE}: {0}")]
    FsType(#[from] crate::volume::UnsupportedFsType),
    #[error(
        "unknown StorageClass parameter {}; known parameters: {}",
        echo(.0),
        STORAGE_CLASS_PARAMETERS.join(", ")
    )]
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeParams {
    /// Directory on the RDS for the volume's file; the configured base path when absent.
    pub volume_dir: Option<String>,
    pub nvme_address: Option<NvmeAddress>,
    pub nvme_port: u16,
    pub tunables: Tunables,
    pub migration_timeout: MigrationTimeout,
    pub fs_type: Option<FsType>,
}

impl Default for VolumeParams {
    fn default() -> Self {
        VolumeParams {
            volume_dir: None,
            nvme_address: None,
            nvme_port: node_io::fabrics::NVME_TCP_PORT,
            tunables: Tunables::default(),
            migration_timeout: MigrationTimeout::default(),
            fs_type: None,
        }
    }
}

fn invalid(key: &'static str, value: &str, expected: impl Into<String>) -> InvalidParameter {
    InvalidParameter::Value {
        key,
        value: value.to_owned(),
        expected: expected.into(),
    }
}

fn in_range(
    key: &'static str,
    value: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, InvalidParameter> {
    let (lo, hi) = (*range.start(), *range.end());
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| invalid(key, value, format!("an integer from {lo} to {hi}")))
}

impl VolumeParams {
    pub fn parse(
        params: &HashMap<String, String>,
        base: &BasePath,
    ) -> Result<Self, InvalidParameter> {
        let mut p = VolumeParams::default();
        // Sorted, so the first error reported is deterministic.
        let mut keys: Vec<_> = params.iter().collect();
        keys.sort();
        for (k, v) in keys {
            match k.as_str() {
                VOLUME_PATH => {
                    let v = v.trim_end_matches('/');
                    if v != base.to_string() {
                        // Component-wise containment: /pool/csi2 is not inside /pool/csi.
                        RdsPath::new(base, v).map_err(|e| {
                            invalid(
                                VOLUME_PATH,
                                v,
                                format!("a directory inside the driver's base path {base} ({e})"),
                            )
                        })?;
                    }
                    p.volume_dir = Some(v.to_owned());
                }
                NVME_ADDRESS => {
                    p.nvme_address = Some(
                        NvmeAddress::parse(v)
                            .map_err(|_| invalid(NVME_ADDRESS, v, "a host name or IP address"))?,
                    );
                }
                NVME_PORT => p.nvme_port = in_range(NVME_PORT, v, 1..=65535)? as u16,
                CTRL_LOSS_TMO => {
                    p.tunables.ctrl_loss_tmo =
                        in_range(CTRL_LOSS_TMO, v, CTRL_LOSS_TMO_RANGE)? as i32
                }
                RECONNECT_DELAY => {
                    p.tunables.reconnect_delay =
                        in_range(RECONNECT_DELAY, v, RECONNECT_DELAY_RANGE)? as i32
                }
                KEEP_ALIVE_TMO => {
                    p.tunables.keep_alive_tmo =
                        in_range(KEEP_ALIVE_TMO, v, KEEP_ALIVE_TMO_RANGE)? as i32
                }
                MIGRATION_TIMEOUT_SECONDS => p.migration_timeout = MigrationTimeout::parse(v)?,
                FS_TYPE => p.fs_type = Some(FsType::parse(v)?),
                other if other.starts_with(keys::PROVISIONER_KEY_PREFIX) => {}
                other => return Err(InvalidParameter::Unknown(other.to_owned())),
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> BasePath {
        BasePath::new("/storage-pool/csi").unwrap()
    }

    fn parse(kv: &[(&str, &str)]) -> Result<VolumeParams, InvalidParameter> {
        let m = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        VolumeParams::parse(&m, &base())
    }

    #[test]
    fn defaults_and_provisioner_keys() {
        let p = parse(&[
            ("csi.storage.k8s.io/pvc/name", "data"),
            ("csi.storage.k8s.io/pv/name", "pvc-1"),
        ])
        .unwrap();
        assert_eq!(p.migration_timeout.as_secs(), 300);
        assert_eq!(p.nvme_port, 4420);
        assert_eq!(p.tunables, Tunables::default());
    }

    #[test]
    fn every_parameter_parses() {
        let p = parse(&[
            ("volumePath", "/storage-pool/csi/fast"),
            ("nvmeAddress", "10.1.2.3"),
            ("nvmePort", "4421"),
            ("ctrlLossTmo", "-1"),
            ("reconnectDelay", "5"),
            ("keepAliveTmo", "10"),
            ("migrationTimeoutSeconds", "600"),
            ("fsType", "xfs"),
        ])
        .unwrap();
        assert_eq!(p.volume_dir.as_deref(), Some("/storage-pool/csi/fast"));
        assert_eq!(p.nvme_port, 4421);
        assert_eq!(p.tunables.ctrl_loss_tmo, -1);
        assert_eq!(p.migration_timeout.as_secs(), 600);
        assert_eq!(p.fs_type, Some(FsType::Xfs));
    }

    #[test]
    fn migration_timeout_out_of_range_is_refused_not_clamped() {
        for v in ["29", "3601", "0", "-5", "5m", ""] {
            let e = parse(&[("migrationTimeoutSeconds", v)]).unwrap_err();
            assert!(matches!(e, InvalidParameter::MigrationTimeout(_)));
            assert!(e.to_string().contains("30 to 3600"), "{e}");
        }
        assert_eq!(
            parse(&[("migrationTimeoutSeconds", "30")])
                .unwrap()
                .migration_timeout
                .as_secs(),
            30
        );
        assert_eq!(
            parse(&[("migrationTimeoutSeconds", "3600")])
                .unwrap()
                .migration_timeout
                .as_secs(),
            3600
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_invalid_argument_naming_the_key() {
        for (k, v) in [
            ("volumeSize", "1"),
            ("volumePath", "/storage-pool/csi2"),
            ("volumePath", "/storage-pool/csi/../x"),
            ("volumePath", "/other"),
            ("nvmeAddress", "1.2.3.4;reboot"),
            ("nvmePort", "70000"),
            ("fsType", "btrfs"),
            ("keepAliveTmo", "0"),
        ] {
            let e = parse(&[(k, v)]).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
    }
}
