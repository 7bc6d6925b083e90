//! The volume context: everything a node needs to reach and treat a volume, written by the
//! controller at CreateVolume and read back by the node at NodeStage. Keys are a contract
//! between the two halves of the driver (and must never change meaning across versions);
//! they are defined once, in [`crate::volume::keys`].

use std::collections::HashMap;
use std::ops::RangeInclusive;

use node_io::nqn::Nqn;

use crate::volume::keys::*;
use crate::volume::{FsType, MigrationTimeout, NvmeAddress};

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
    #[error("volume context {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
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

/// The volume's backing file on the RDS (`volumeFile`): an absolute path of plain components
/// (no `.` or `..`, no control characters), at most 4095 bytes (PATH_MAX less the NUL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile(String);

impl VolumeFile {
    pub fn parse(value: &str) -> Result<Self, String> {
        let plain = value
            .split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..");
        if value.len() > 4095
            || !value.starts_with('/')
            || !plain
            || value.chars().any(char::is_control)
        {
            return Err(format!(
                "{} must be an absolute path of plain components (no '.', '..', empty \
                 components or control characters)",
                crate::error::echo(value)
            ));
        }
        Ok(VolumeFile(value.to_owned()))
    }

    /// The path without its leading `/`, to join under a local directory.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The typed volume context: every value validated by the type that holds it, before the node
/// saves or connects anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeContext {
    pub nvme_address: NvmeAddress,
    pub nvme_port: u16,
    pub nqn: Nqn,
    pub tunables: Tunables,
    pub migration_timeout: MigrationTimeout,
    pub fs_type: Option<FsType>,
    pub fresh: bool,
    pub volume_file: Option<VolumeFile>,
}

impl VolumeContext {
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert(NVME_ADDRESS.into(), self.nvme_address.to_string());
        m.insert(NVME_PORT.into(), self.nvme_port.to_string());
        m.insert(NQN.into(), self.nqn.to_string());
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
            self.migration_timeout.as_secs().to_string(),
        );
        if let Some(fs) = self.fs_type {
            m.insert(FS_TYPE.into(), fs.as_str().to_owned());
        }
        m.insert(FRESH.into(), self.fresh.to_string());
        if let Some(f) = &self.volume_file {
            m.insert(VOLUME_FILE.into(), f.as_str().to_owned());
        }
        m
    }

    /// Reads a context written by [`VolumeContext::to_map`], validating every value (an
    /// address, an NQN, a path that could carry a newline into a record or a comma into the
    /// kernel's connect string is refused, naming its key). Unknown keys (e.g. added by a CO)
    /// are ignored.
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
        let invalid = |key: &'static str| move |e: String| ContextError::Invalid { key, reason: e };
        let migration = MigrationTimeout::MIN_SECS as i64..=MigrationTimeout::MAX_SECS as i64;
        let migration_secs = in_range(MIGRATION_TIMEOUT_SECONDS, migration)? as u64;
        // Each value is range-checked first, so the narrowing below cannot wrap.
        Ok(VolumeContext {
            nvme_address: NvmeAddress::parse(get(NVME_ADDRESS)?)
                .map_err(|e| invalid(NVME_ADDRESS)(e.to_string()))?,
            nvme_port: in_range(NVME_PORT, 1..=65535)? as u16,
            nqn: Nqn::new(get(NQN)?)
                .map_err(|e| invalid(NQN)(crate::error::cap_message(e.to_string(), 300)))?,
            tunables: Tunables {
                ctrl_loss_tmo: in_range(CTRL_LOSS_TMO, CTRL_LOSS_TMO_RANGE)? as i32,
                reconnect_delay: in_range(RECONNECT_DELAY, RECONNECT_DELAY_RANGE)? as i32,
                keep_alive_tmo: in_range(KEEP_ALIVE_TMO, KEEP_ALIVE_TMO_RANGE)? as i32,
            },
            migration_timeout: MigrationTimeout::from_secs(migration_secs)
                .map_err(|e| invalid(MIGRATION_TIMEOUT_SECONDS)(e.to_string()))?,
            fs_type: match m.get(FS_TYPE) {
                None => None,
                Some(v) => {
                    FsType::parse_optional(v).map_err(|e| invalid(FS_TYPE)(e.to_string()))?
                }
            },
            fresh: m.get(FRESH).is_some_and(|v| v == "true"),
            volume_file: m
                .get(VOLUME_FILE)
                .map(|v| VolumeFile::parse(v))
                .transpose()
                .map_err(invalid(VOLUME_FILE))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> VolumeContext {
        VolumeContext {
            nvme_address: NvmeAddress::parse("10.0.0.5").unwrap(),
            nvme_port: 4420,
            nqn: Nqn::new("nqn.2000-02.com.mikrotik:pvc-1").unwrap(),
            tunables: Tunables::default(),
            migration_timeout: MigrationTimeout::default(),
            fs_type: Some(FsType::Xfs),
            fresh: true,
            volume_file: Some(VolumeFile::parse("/storage-pool/csi/pvc-1.img").unwrap()),
        }
    }

    #[test]
    fn context_round_trips_and_missing_fresh_is_never_fresh() {
        let c = good();
        let mut m = c.to_map();
        assert_eq!(VolumeContext::from_map(&m).unwrap(), c);
        m.remove(FRESH);
        assert!(!VolumeContext::from_map(&m).unwrap().fresh);
        m.remove(NQN);
        let e = VolumeContext::from_map(&m).unwrap_err();
        assert_eq!(e, ContextError::Missing { key: NQN });
        assert!(e.to_string().contains("nqn"), "{e}");
    }

    /// [`good`]'s context with `key` set to `value`, read back.
    fn good_with(key: &str, value: &str) -> Result<VolumeContext, ContextError> {
        let mut m = good().to_map();
        m.insert(key.into(), value.into());
        VolumeContext::from_map(&m)
    }

    /// Numbers out of range are refused, never wrapped; a value that would carry a line into
    /// a stage record, an option into the kernel's connect string, or a path out of its
    /// directory is refused. Each in one line naming its key.
    #[test]
    fn out_of_range_and_injecting_values_are_refused_naming_the_key() {
        let out_of_range = |e: &ContextError| {
            matches!(e, ContextError::OutOfRange { .. }) && e.to_string().contains("outside")
        };
        let invalid = |e: &ContextError| matches!(e, ContextError::Invalid { .. });
        type IsKind = fn(&ContextError) -> bool;
        let cases: [(&str, &str, IsKind); 18] = [
            (MIGRATION_TIMEOUT_SECONDS, "-1", out_of_range),
            (MIGRATION_TIMEOUT_SECONDS, "4294967596", out_of_range),
            (MIGRATION_TIMEOUT_SECONDS, "29", out_of_range),
            (CTRL_LOSS_TMO, "-2", out_of_range),
            (CTRL_LOSS_TMO, "4294967296", out_of_range),
            (RECONNECT_DELAY, "0", out_of_range),
            (KEEP_ALIVE_TMO, "3601", out_of_range),
            (NVME_PORT, "0", out_of_range),
            (NVME_PORT, "65536", out_of_range),
            (
                NVME_ADDRESS,
                "127.0.0.1\ntarget=/data/storage-pool/csi/pvc-a.img",
                invalid,
            ),
            (
                NVME_ADDRESS,
                "10.0.0.5,hostnqn=nqn.2014-08.org.nvmexpress:uuid:x",
                invalid,
            ),
            (NVME_ADDRESS, "", invalid),
            (
                NQN,
                "nqn.2000-02.com.mikrotik:pvc-1\naddress=10.9.9.9",
                invalid,
            ),
            (
                NQN,
                "nqn.2000-02.com.mikrotik:pvc-1,ctrl_loss_tmo=-1",
                invalid,
            ),
            (FS_TYPE, "ext4\n", invalid),
            (VOLUME_FILE, "/storage-pool/../../etc/passwd", invalid),
            (VOLUME_FILE, "/storage-pool/csi/a.img\ntarget=/x", invalid),
            (VOLUME_FILE, "relative.img", invalid),
        ];
        for (key, value, is_kind) in cases {
            let e = good_with(key, value).unwrap_err();
            let (ContextError::Missing { key: k }
            | ContextError::NotANumber { key: k, .. }
            | ContextError::OutOfRange { key: k, .. }
            | ContextError::Invalid { key: k, .. }) = &e;
            assert!(is_kind(&e) && *k == key, "{key}={value:?}: {e:?}");
            let msg = e.to_string();
            assert!(
                msg.contains(key) && !msg.contains('\n'),
                "{key}={value:?}: {msg}"
            );
        }
        let ctx = good_with(CTRL_LOSS_TMO, "-1").unwrap();
        assert_eq!(ctx.tunables.ctrl_loss_tmo, -1);
        let msg = good_with(NVME_ADDRESS, &"x".repeat(100_000))
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 500, "{} bytes", msg.len());
    }
}
