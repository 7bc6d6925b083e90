//! The volume context: everything a node needs to reach and treat a volume, written by the
//! controller at CreateVolume and read back by the node at NodeStage. Keys are a contract
//! between the two halves of the driver (and must never change meaning across versions);
//! they are defined once, in [`crate::volume::keys`].

use std::collections::HashMap;
use std::ops::RangeInclusive;

use crate::volume::keys::*;
use crate::volume::MigrationTimeout;

/// A volume context this driver cannot use: the key, and what is wrong with its value.
/// Every case is INVALID_ARGUMENT at NodeStage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("volume context lacks {key:?}; was the volume created by this driver?")]
    Missing { key: &'static str },
    #[error("volume context {key}={} is not a number", crate::error::echo(.value))]
    NotANumber { key: &'static str, value: String },
    #[error(
        "volume context {key}={value} is outside {min}..={max}; recreate the PersistentVolume \
         from a StorageClass this driver accepts"
    )]
    OutOfRange {
        key: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
}

// Accepted values, shared by the StorageClass parser (which writes them) and the reader
// below (which refuses anything else rather than wrapping it into a different number).
pub const CTRL_LOSS_TMO_RANGE: RangeInclusive<i64> = -1..=86400;
pub const RECONNECT_DELAY_RANGE: RangeInclusive<i64> = 1..=3600;
pub const KEEP_ALIVE_TMO_RANGE: RangeInclusive<i64> = 1..=3600;

/// Connection tunables for the kernel's NVMe/TCP host (seconds; -1 = forever for ctrl_loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunables {
    pub ctrl_loss_tmo: i32,
    pub reconnect_delay: i32,
    pub keep_alive_tmo: i32,
}

impl Default for Tunables {
    fn default() -> Self {
        // Survive a short RDS reboot or link flap without failing I/O, but give up on a
        // target that is truly gone so the node can report it.
        Tunables {
            ctrl_loss_tmo: 600,
            reconnect_delay: 2,
            keep_alive_tmo: 5,
        }
    }
}

/// The typed volume context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeContext {
    pub nvme_address: String,
    pub nvme_port: u16,
    pub nqn: String,
    pub tunables: Tunables,
    pub migration_timeout_seconds: u32,
    pub fs_type: Option<String>,
    pub fresh: bool,
    pub volume_file: Option<String>,
}

impl VolumeContext {
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert(NVME_ADDRESS.into(), self.nvme_address.clone());
        m.insert(NVME_PORT.into(), self.nvme_port.to_string());
        m.insert(NQN.into(), self.nqn.clone());
        m.insert(
            CTRL_LOSS_TMO.into(),
            self.tunables.ctrl_loss_tmo.to_string(),
        );
        m.insert(
            RECONNECT_DELAY.into(),
            self.tunables.reconnect_delay.to_string(),
        );
        m.insert(
            KEEP_ALIVE_TMO.into(),
            self.tunables.keep_alive_tmo.to_string(),
        );
        m.insert(
            MIGRATION_TIMEOUT_SECONDS.into(),
            self.migration_timeout_seconds.to_string(),
        );
        if let Some(fs) = &self.fs_type {
            m.insert(FS_TYPE.into(), fs.clone());
        }
        m.insert(FRESH.into(), self.fresh.to_string());
        if let Some(f) = &self.volume_file {
            m.insert(VOLUME_FILE.into(), f.clone());
        }
        m
    }

    /// Reads a context written by [`VolumeContext::to_map`]. Unknown keys (e.g. added by a
    /// CO) are ignored.
    pub fn from_map(m: &HashMap<String, String>) -> Result<Self, ContextError> {
        let get = |key: &'static str| {
            m.get(key)
                .map(String::as_str)
                .ok_or(ContextError::Missing { key })
        };
        let num = |key: &'static str| -> Result<i64, ContextError> {
            let v = get(key)?;
            v.parse().map_err(|_| ContextError::NotANumber {
                key,
                value: v.to_owned(),
            })
        };
        let in_range =
            |key: &'static str, range: RangeInclusive<i64>| -> Result<i64, ContextError> {
                let n = num(key)?;
                if range.contains(&n) {
                    Ok(n)
                } else {
                    Err(ContextError::OutOfRange {
                        key,
                        value: n,
                        min: *range.start(),
                        max: *range.end(),
                    })
                }
            };
        let migration = MigrationTimeout::MIN_SECS as i64..=MigrationTimeout::MAX_SECS as i64;
        // Each value is range-checked first, so the narrowing below cannot wrap.
        Ok(VolumeContext {
            nvme_address: get(NVME_ADDRESS)?.to_owned(),
            nvme_port: in_range(NVME_PORT, 1..=65535)? as u16,
            nqn: get(NQN)?.to_owned(),
            tunables: Tunables {
                ctrl_loss_tmo: in_range(CTRL_LOSS_TMO, CTRL_LOSS_TMO_RANGE)? as i32,
                reconnect_delay: in_range(RECONNECT_DELAY, RECONNECT_DELAY_RANGE)? as i32,
                keep_alive_tmo: in_range(KEEP_ALIVE_TMO, KEEP_ALIVE_TMO_RANGE)? as i32,
            },
            migration_timeout_seconds: in_range(MIGRATION_TIMEOUT_SECONDS, migration)? as u32,
            fs_type: m.get(FS_TYPE).cloned(),
            fresh: m.get(FRESH).is_some_and(|v| v == "true"),
            volume_file: m.get(VOLUME_FILE).cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_round_trips_and_missing_fresh_is_never_fresh() {
        let c = VolumeContext {
            nvme_address: "10.0.0.5".into(),
            nvme_port: 4420,
            nqn: "nqn.2000-02.com.mikrotik:pvc-1".into(),
            tunables: Tunables::default(),
            migration_timeout_seconds: 300,
            fs_type: Some("xfs".into()),
            fresh: true,
            volume_file: Some("/storage-pool/csi/pvc-1.img".into()),
        };
        let mut m = c.to_map();
        assert_eq!(VolumeContext::from_map(&m).unwrap(), c);
        m.remove(FRESH);
        assert!(!VolumeContext::from_map(&m).unwrap().fresh);
        m.remove(NQN);
        let e = VolumeContext::from_map(&m).unwrap_err();
        assert_eq!(e, ContextError::Missing { key: NQN });
        assert!(e.to_string().contains("nqn"), "{e}");
    }

    #[test]
    fn out_of_range_numbers_are_refused_not_wrapped() {
        let good = VolumeContext {
            nvme_address: "10.0.0.1".into(),
            nvme_port: 4420,
            nqn: "nqn.2000-02.com.mikrotik:pvc-1".into(),
            tunables: Tunables::default(),
            migration_timeout_seconds: 300,
            fs_type: None,
            fresh: false,
            volume_file: None,
        };
        for (key, value) in [
            (MIGRATION_TIMEOUT_SECONDS, "-1"),
            (MIGRATION_TIMEOUT_SECONDS, "4294967596"),
            (MIGRATION_TIMEOUT_SECONDS, "29"),
            (CTRL_LOSS_TMO, "-2"),
            (CTRL_LOSS_TMO, "4294967296"),
            (RECONNECT_DELAY, "0"),
            (KEEP_ALIVE_TMO, "3601"),
            (NVME_PORT, "0"),
            (NVME_PORT, "65536"),
        ] {
            let mut m = good.to_map();
            m.insert(key.into(), value.into());
            let e = VolumeContext::from_map(&m).unwrap_err();
            assert!(
                matches!(e, ContextError::OutOfRange { key: k, .. } if k == key),
                "{key}={value}: {e:?}"
            );
            let msg = e.to_string();
            assert!(msg.contains(key) && msg.contains("outside"), "{msg}");
        }
        let mut m = good.to_map();
        m.insert(CTRL_LOSS_TMO.into(), "-1".into());
        let ctx = VolumeContext::from_map(&m).unwrap();
        assert_eq!(ctx.tunables.ctrl_loss_tmo, -1);
    }
}
