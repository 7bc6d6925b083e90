//! The volume context: everything a node needs to reach and treat a volume, written by the
//! controller at CreateVolume and read back by the node at NodeStage. Keys are a contract
//! between the two halves of the driver (and must never change meaning across versions).

use std::collections::HashMap;

use crate::error::Error;

pub const NVME_ADDRESS: &str = "nvmeAddress";
pub const NVME_PORT: &str = "nvmePort";
pub const NQN: &str = "nqn";
pub const CTRL_LOSS_TMO: &str = "ctrlLossTmo";
pub const RECONNECT_DELAY: &str = "reconnectDelay";
pub const KEEP_ALIVE_TMO: &str = "keepAliveTmo";
pub const MIGRATION_TIMEOUT_SECONDS: &str = "migrationTimeoutSeconds";
pub const FS_TYPE: &str = "fsType";
/// "true" only for a volume created empty: the node may format it if (and only if) the
/// device is also blank. Clones and restores are never fresh.
pub const FRESH: &str = "fresh";
/// The volume's backing file path on the RDS (e.g. `/storage-pool/csi/pvc-1.img`). Used only
/// by the node's development `loop` transport, which attaches the simulator's file directly.
pub const VOLUME_FILE: &str = "volumeFile";

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

    /// Reads a context written by [`VolumeContext::to_map`]; `volume_id` names the volume in
    /// errors. Unknown keys (e.g. added by a CO) are ignored.
    pub fn from_map(volume_id: &str, m: &HashMap<String, String>) -> Result<Self, Error> {
        let get = |k: &str| {
            m.get(k).map(String::as_str).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "volume {volume_id}: volume context lacks {k:?}; was the volume created by this driver?"
                ))
            })
        };
        let num = |k: &str| -> Result<i64, Error> {
            let v = get(k)?;
            v.parse().map_err(|_| {
                Error::InvalidArgument(format!(
                    "volume {volume_id}: volume context {k}={v:?} is not a number"
                ))
            })
        };
        let port = num(NVME_PORT)?;
        Ok(VolumeContext {
            nvme_address: get(NVME_ADDRESS)?.to_owned(),
            nvme_port: u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "volume {volume_id}: nvmePort {port} is not a TCP port"
                    ))
                })?,
            nqn: get(NQN)?.to_owned(),
            tunables: Tunables {
                ctrl_loss_tmo: num(CTRL_LOSS_TMO)? as i32,
                reconnect_delay: num(RECONNECT_DELAY)? as i32,
                keep_alive_tmo: num(KEEP_ALIVE_TMO)? as i32,
            },
            migration_timeout_seconds: num(MIGRATION_TIMEOUT_SECONDS)? as u32,
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
        assert_eq!(VolumeContext::from_map("pvc-1", &m).unwrap(), c);
        m.remove(FRESH);
        assert!(!VolumeContext::from_map("pvc-1", &m).unwrap().fresh);
        m.remove(NQN);
        let e = VolumeContext::from_map("pvc-1", &m).unwrap_err();
        assert!(e.to_string().contains("pvc-1") && e.to_string().contains("nqn"));
    }
}
