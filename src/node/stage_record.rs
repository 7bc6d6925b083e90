//! What NodeUnstage (and the reconnect reconciler) need to know about a staged volume, kept
//! on disk so it survives plugin restarts and needs no volume context.
//!
//! One small `key=value` file per volume in `<state-dir>/staged/<volume-id>`, written
//! atomically (temp + rename). The volume id was validated before it is used as a file name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::node::error::NodeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Block,
    Filesystem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRecord {
    pub volume_id: String,
    /// NQN of the NVMe/TCP subsystem, or the loop backing file with the loop transport.
    pub target: String,
    pub access: Access,
    pub staging_path: PathBuf,
    /// Kernel name of the device when staged (informational: always re-resolved).
    pub device: String,
    /// `major:minor` when staged (checked against the fresh resolution).
    pub dev: String,
    pub fs_type: Option<String>,
    /// Connection parameters, so a reconnect needs no volume context.
    pub address: String,
    pub port: u16,
    pub ctrl_loss_tmo: i32,
    pub reconnect_delay: i32,
    pub keep_alive_tmo: i32,
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("staged")
}

fn file(state_dir: &Path, volume_id: &str) -> PathBuf {
    dir(state_dir).join(volume_id)
}

impl StageRecord {
    fn render(&self) -> String {
        let mut s = String::new();
        let mut kv = |k: &str, v: &str| {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\n');
        };
        kv("volume_id", &self.volume_id);
        kv("target", &self.target);
        kv(
            "access",
            match self.access {
                Access::Block => "block",
                Access::Filesystem => "filesystem",
            },
        );
        kv("staging_path", &self.staging_path.to_string_lossy());
        kv("device", &self.device);
        kv("dev", &self.dev);
        kv("fs_type", self.fs_type.as_deref().unwrap_or(""));
        kv("address", &self.address);
        kv("port", &self.port.to_string());
        kv("ctrl_loss_tmo", &self.ctrl_loss_tmo.to_string());
        kv("reconnect_delay", &self.reconnect_delay.to_string());
        kv("keep_alive_tmo", &self.keep_alive_tmo.to_string());
        s
    }

    fn parse(text: &str, path: &Path) -> Result<Self, NodeError> {
        let bad = |what: &str| NodeError::RecordDamaged {
            path: path.to_owned(),
            what: what.to_owned(),
        };
        let m: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| m.get(k).copied().ok_or_else(|| bad(&format!("no {k}")));
        let num = |k: &str| {
            get(k)?
                .parse::<i64>()
                .map_err(|_| bad(&format!("{k} is not a number")))
        };
        Ok(StageRecord {
            volume_id: get("volume_id")?.to_owned(),
            target: get("target")?.to_owned(),
            access: match get("access")? {
                "block" => Access::Block,
                "filesystem" => Access::Filesystem,
                _ => return Err(bad("unknown access")),
            },
            staging_path: PathBuf::from(get("staging_path")?),
            device: get("device")?.to_owned(),
            dev: get("dev")?.to_owned(),
            fs_type: Some(get("fs_type")?.to_owned()).filter(|s| !s.is_empty()),
            address: get("address")?.to_owned(),
            port: u16::try_from(num("port")?).map_err(|_| bad("port out of range"))?,
            ctrl_loss_tmo: num("ctrl_loss_tmo")? as i32,
            reconnect_delay: num("reconnect_delay")? as i32,
            keep_alive_tmo: num("keep_alive_tmo")? as i32,
        })
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), NodeError> {
        let d = dir(state_dir);
        let io = |source: std::io::Error| NodeError::Io {
            what: "cannot write the stage record under",
            path: d.clone(),
            source,
        };
        std::fs::create_dir_all(&d).map_err(io)?;
        let path = file(state_dir, &self.volume_id);
        let tmp = d.join(format!(".{}.tmp", self.volume_id));
        std::fs::write(&tmp, self.render()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    pub fn load(state_dir: &Path, volume_id: &str) -> Result<Option<Self>, NodeError> {
        let path = file(state_dir, volume_id);
        match std::fs::read_to_string(&path) {
            Ok(t) => Self::parse(&t, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(NodeError::Io {
                what: "cannot read",
                path,
                source,
            }),
        }
    }

    pub fn remove(state_dir: &Path, volume_id: &str) -> Result<(), NodeError> {
        let path = file(state_dir, volume_id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NodeError::Io {
                what: "cannot remove the stage record",
                path,
                source,
            }),
        }
    }

    /// Every staged volume (for the reconnect reconciler).
    pub fn all(state_dir: &Path) -> Result<Vec<Self>, NodeError> {
        let d = dir(state_dir);
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(NodeError::Io {
                    what: "cannot list",
                    path: d,
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Some(r) = Self::load(state_dir, &name)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> StageRecord {
        StageRecord {
            volume_id: "pvc-1".into(),
            target: "nqn.2000-02.com.mikrotik:pvc-1".into(),
            access: Access::Filesystem,
            staging_path: "/var/lib/kubelet/plugins/x/globalmount".into(),
            device: "nvme1n1".into(),
            dev: "259:3".into(),
            fs_type: Some("ext4".into()),
            address: "10.0.0.5".into(),
            port: 4420,
            ctrl_loss_tmo: 600,
            reconnect_delay: 2,
            keep_alive_tmo: 5,
        }
    }

    #[test]
    fn records_round_trip_and_survive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        rec().save(d.path()).unwrap();
        assert_eq!(StageRecord::load(d.path(), "pvc-1").unwrap(), Some(rec()));
        assert_eq!(StageRecord::all(d.path()).unwrap(), vec![rec()]);
        StageRecord::remove(d.path(), "pvc-1").unwrap();
        StageRecord::remove(d.path(), "pvc-1").unwrap();
        assert_eq!(StageRecord::load(d.path(), "pvc-1").unwrap(), None);
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("staged")).unwrap();
        std::fs::write(d.path().join("staged/pvc-2"), "volume_id=pvc-2\n").unwrap();
        let e = StageRecord::load(d.path(), "pvc-2").unwrap_err();
        assert!(e.to_string().contains("staged/pvc-2"), "{e}");
    }
}
