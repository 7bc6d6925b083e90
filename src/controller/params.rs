//! StorageClass parameters, parsed once into a typed struct with clear INVALID_ARGUMENT
//! errors next to each field.

use std::collections::HashMap;

use crate::error::Error;
use crate::rds::{BasePath, RdsPath};
use crate::volume_context::{
    Tunables, CTRL_LOSS_TMO_RANGE, KEEP_ALIVE_TMO_RANGE, RECONNECT_DELAY_RANGE,
};

pub const VOLUME_PATH: &str = "volumePath";
pub const NVME_ADDRESS: &str = "nvmeAddress";
pub const NVME_PORT: &str = "nvmePort";
pub const CTRL_LOSS_TMO: &str = "ctrlLossTmo";
pub const RECONNECT_DELAY: &str = "reconnectDelay";
pub const KEEP_ALIVE_TMO: &str = "keepAliveTmo";
pub const MIGRATION_TIMEOUT_SECONDS: &str = "migrationTimeoutSeconds";
pub const FS_TYPE: &str = "fsType";

/// Every StorageClass parameter this driver reads (docs are checked against this list).
pub const ALL: &[&str] = &[
    VOLUME_PATH,
    NVME_ADDRESS,
    NVME_PORT,
    CTRL_LOSS_TMO,
    RECONNECT_DELAY,
    KEEP_ALIVE_TMO,
    MIGRATION_TIMEOUT_SECONDS,
    FS_TYPE,
];

/// Keys the external-provisioner adds itself (PVC/PV names with --extra-create-metadata).
const PROVISIONER_KEY_PREFIX: &str = "csi.storage.k8s.io/";

pub const DEFAULT_MIGRATION_TIMEOUT_SECONDS: u32 = 300;
pub use crate::volume_context::MIGRATION_TIMEOUT_RANGE;
pub const DEFAULT_NVME_PORT: u16 = 4420;
pub const SUPPORTED_FS_TYPES: &[&str] = &["ext4", "xfs"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeParams {
    /// Directory on the RDS for the volume's file; the configured base path when absent.
    pub volume_dir: Option<String>,
    pub nvme_address: Option<String>,
    pub nvme_port: u16,
    pub tunables: Tunables,
    pub migration_timeout_seconds: u32,
    pub fs_type: Option<String>,
}

fn invalid(key: &str, value: &str, expected: &str) -> Error {
    Error::InvalidArgument(format!(
        "StorageClass parameter {key}={value:?} is invalid: expected {expected}"
    ))
}

fn in_range(key: &str, value: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, Error> {
    int_in(key, value, *range.start(), *range.end())
}

fn int_in(key: &str, value: &str, lo: i64, hi: i64) -> Result<i64, Error> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| (lo..=hi).contains(v))
        .ok_or_else(|| invalid(key, value, &format!("an integer from {lo} to {hi}")))
}

/// A host name or IP address: letters, digits, '.', '-', ':' (IPv6), nothing else.
fn valid_address(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':')
}

impl VolumeParams {
    pub fn parse(params: &HashMap<String, String>, base: &BasePath) -> Result<Self, Error> {
        let mut p = VolumeParams {
            volume_dir: None,
            nvme_address: None,
            nvme_port: DEFAULT_NVME_PORT,
            tunables: Tunables::default(),
            migration_timeout_seconds: DEFAULT_MIGRATION_TIMEOUT_SECONDS,
            fs_type: None,
        };
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
                                k,
                                v,
                                &format!("a directory inside the driver's base path {base} ({e})"),
                            )
                        })?;
                    }
                    p.volume_dir = Some(v.to_owned());
                }
                NVME_ADDRESS => {
                    if !valid_address(v) {
                        return Err(invalid(k, v, "a host name or IP address"));
                    }
                    p.nvme_address = Some(v.clone());
                }
                NVME_PORT => p.nvme_port = int_in(k, v, 1, 65535)? as u16,
                CTRL_LOSS_TMO => {
                    p.tunables.ctrl_loss_tmo = in_range(k, v, CTRL_LOSS_TMO_RANGE)? as i32
                }
                RECONNECT_DELAY => {
                    p.tunables.reconnect_delay = in_range(k, v, RECONNECT_DELAY_RANGE)? as i32
                }
                KEEP_ALIVE_TMO => {
                    p.tunables.keep_alive_tmo = in_range(k, v, KEEP_ALIVE_TMO_RANGE)? as i32
                }
                MIGRATION_TIMEOUT_SECONDS => {
                    let n = v.trim().parse::<u32>().ok();
                    match n {
                        Some(n) if MIGRATION_TIMEOUT_RANGE.contains(&n) => {
                            p.migration_timeout_seconds = n
                        }
                        _ => {
                            return Err(invalid(
                                k,
                                v,
                                "whole seconds from 30 to 3600 (default 300); values outside the range are refused, not clamped",
                            ))
                        }
                    }
                }
                FS_TYPE => {
                    if !SUPPORTED_FS_TYPES.contains(&v.as_str()) {
                        return Err(invalid(k, v, "ext4 or xfs"));
                    }
                    p.fs_type = Some(v.clone());
                }
                other if other.starts_with(PROVISIONER_KEY_PREFIX) => {}
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown StorageClass parameter {other:?}; known parameters: {}",
                        ALL.join(", ")
                    )))
                }
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

    fn parse(kv: &[(&str, &str)]) -> Result<VolumeParams, Error> {
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
        assert_eq!(p.migration_timeout_seconds, 300);
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
        assert_eq!(p.migration_timeout_seconds, 600);
        assert_eq!(p.fs_type.as_deref(), Some("xfs"));
    }

    #[test]
    fn migration_timeout_out_of_range_is_refused_not_clamped() {
        for v in ["29", "3601", "0", "-5", "5m", ""] {
            let e = parse(&[("migrationTimeoutSeconds", v)]).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)));
            assert!(e.to_string().contains("30 to 3600"), "{e}");
        }
        assert_eq!(
            parse(&[("migrationTimeoutSeconds", "30")])
                .unwrap()
                .migration_timeout_seconds,
            30
        );
        assert_eq!(
            parse(&[("migrationTimeoutSeconds", "3600")])
                .unwrap()
                .migration_timeout_seconds,
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
            assert!(matches!(e, Error::InvalidArgument(_)));
            assert!(e.to_string().contains(k), "{e}");
        }
    }
}
