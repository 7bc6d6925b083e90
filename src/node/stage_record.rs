//! What NodeUnstage (and the reconnect reconciler) need to know about a staged volume, kept
//! on disk so it survives plugin restarts and needs no volume context.
//!
//! One JSON file per volume, `<state-dir>/staged/<volume-id>`, versioned ([`VERSION`]) and
//! written durably ([`crate::node::durable`]). A record is input like any request: reading
//! it refuses unknown or repeated fields, and every value passes the same validated types
//! as the RPC inputs (the NQN, the address, the paths), so a record that was tampered with,
//! truncated or written by a bug is refused with a message saying what to do — never
//! misread. Records of the first format (`key=value` lines) still load, through the same
//! checks and stricter parsing (a repeated key is refused, not "last one wins").
//!
//! Each record carries the boot it was written in ([`BootId`]): kernel state it describes
//! (a connection, a mount) cannot outlive a reboot, so a record from an earlier boot is a
//! memory, never a reason to reconnect or to refuse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use node_io::dev_num::DevNum;
use node_io::nqn::Nqn;
use serde::{Deserialize, Serialize};

use crate::node::durable;
use crate::node::error::NodeError;
use crate::node::ops::check_volume_id;
use crate::node::paths::checked_path;
use crate::node::transport::{NvmeTarget, Target};
use crate::volume::context::{
    Tunables, CTRL_LOSS_TMO_RANGE, KEEP_ALIVE_TMO_RANGE, RECONNECT_DELAY_RANGE,
};
use crate::volume::{FsType, NvmeAddress};

/// The record format written today.
pub const VERSION: u32 = 2;

pub use crate::volume::AccessType;

/// The kernel's id of the running boot (`<proc>/sys/kernel/random/boot_id`, a UUID that
/// changes at every boot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootId(String);

impl BootId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let uuid = s.len() == 36
            && s.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        if uuid {
            Ok(BootId(s.to_ascii_lowercase()))
        } else {
            Err(format!("boot id {} is not a UUID", crate::error::echo(s)))
        }
    }

    /// The running boot's id, from `<proc_root>/sys/kernel/random/boot_id`.
    pub fn current(proc_root: &Path) -> Result<Self, NodeError> {
        let path = proc_root.join("sys/kernel/random/boot_id");
        let text = read_proc(&path, "cannot read the boot id")?;
        Self::parse(&text).map_err(|what| NodeError::RecordDamaged { path, what })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A /proc file's text; `Io` naming it and `what` failed otherwise.
fn read_proc(path: &Path, what: &'static str) -> Result<String, NodeError> {
    std::fs::read_to_string(path).map_err(|source| NodeError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The running boot, as the node checks records against it.
#[derive(Debug, Clone)]
pub struct Boot {
    pub id: BootId,
    /// When it started (`btime` in `<proc>/stat`): a record of the first format, which has
    /// no boot id, belongs to this boot only if its file was written after this.
    pub started: SystemTime,
}

impl Boot {
    pub fn current(proc_root: &Path) -> Result<Self, NodeError> {
        let id = BootId::current(proc_root)?;
        let path = proc_root.join("stat");
        let stat = read_proc(&path, "cannot read")?;
        let btime = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| NodeError::RecordDamaged {
                path: path.clone(),
                what: "no btime line".into(),
            })?;
        Ok(Boot {
            id,
            started: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(btime),
        })
    }
}

/// The device a volume had when staged (informational: always re-resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedDevice {
    /// Kernel name, e.g. `nvme1n1`, `loop3`.
    pub name: String,
    pub dev: DevNum,
}

/// One staged volume, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRecord {
    pub volume_id: String,
    /// The boot the record was written in; None for a first-format record written before
    /// the running boot began.
    pub boot_id: Option<BootId>,
    /// What the transport attached; with the connect parameters, so a reconnect needs no
    /// volume context.
    pub target: Target,
    pub access: AccessType,
    pub staging_path: PathBuf,
    pub device: Option<StagedDevice>,
    pub fs_type: Option<FsType>,
    /// NodeStage started `mkfs` of this type on this fresh volume and has not seen it finish:
    /// the one case where a device with data but no known signature may be formatted again.
    pub formatting: Option<FsType>,
}

// ---- the on-disk form (version 2)

/// The values of a record before validation. With `B = String` (the boot id required), the
/// on-disk form of version 2; the first format (`key=value` lines, version 1) has no boot id:
/// `B = Option<String>`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile<B> {
    version: u32,
    volume_id: String,
    boot_id: B,
    target: TargetFile,
    access: AccessType,
    staging_path: String,
    device: Option<DeviceFile>,
    fs_type: Option<String>,
    formatting: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum TargetFile {
    NvmeTcp {
        nqn: String,
        address: String,
        port: u16,
        ctrl_loss_tmo: i32,
        reconnect_delay: i32,
        keep_alive_tmo: i32,
    },
    LoopFile {
        path: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceFile {
    name: String,
    dev: String,
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("staged")
}

fn file(state_dir: &Path, volume_id: &str) -> PathBuf {
    dir(state_dir).join(volume_id)
}

/// A kernel block device name: `[a-z0-9]`, at most 32 bytes (DISK_NAME_LEN).
fn check_device_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(format!(
            "device {} is not a kernel block device name",
            crate::error::echo(name)
        ))
    }
}

fn in_range(name: &str, v: i64, range: std::ops::RangeInclusive<i64>) -> Result<i32, String> {
    if range.contains(&v) {
        Ok(v as i32)
    } else {
        Err(format!("{name}={v} is outside {range:?}"))
    }
}

impl<B: Into<Option<String>>> RecordFile<B> {
    /// Every value through its validated type; `file_id` is the id the file is named after.
    fn validate(self, file_id: &str) -> Result<StageRecord, String> {
        let e = |what: &str, err: String| format!("{what}: {err}");
        check_volume_id(&self.volume_id).map_err(|err| e("volume_id", err.to_string()))?;
        if self.volume_id != file_id {
            return Err(format!(
                "it names volume {} but is the record of {file_id}",
                crate::error::echo(&self.volume_id)
            ));
        }
        let target = match self.target {
            TargetFile::NvmeTcp {
                nqn,
                address,
                port,
                ctrl_loss_tmo,
                reconnect_delay,
                keep_alive_tmo,
            } => {
                if port == 0 {
                    return Err("port 0".into());
                }
                Target::NvmeTcp(NvmeTarget {
                    nqn: Nqn::new(&nqn).map_err(|err| e("nqn", err.to_string()))?,
                    address: NvmeAddress::parse(&address)
                        .map_err(|err| e("address", err.to_string()))?,
                    port,
                    tunables: Tunables {
                        ctrl_loss_tmo: in_range(
                            "ctrl_loss_tmo",
                            ctrl_loss_tmo.into(),
                            CTRL_LOSS_TMO_RANGE,
                        )?,
                        reconnect_delay: in_range(
                            "reconnect_delay",
                            reconnect_delay.into(),
                            RECONNECT_DELAY_RANGE,
                        )?,
                        keep_alive_tmo: in_range(
                            "keep_alive_tmo",
                            keep_alive_tmo.into(),
                            KEEP_ALIVE_TMO_RANGE,
                        )?,
                    },
                })
            }
            TargetFile::LoopFile { path } => {
                Target::LoopFile(checked_path("target", &path).map_err(|err| err.to_string())?)
            }
        };
        let device = match self.device {
            None => None,
            Some(d) => {
                check_device_name(&d.name)?;
                let dev = d.dev.parse::<DevNum>().map_err(|_| {
                    format!("dev {} is not major:minor", crate::error::echo(&d.dev))
                })?;
                Some(StagedDevice { name: d.name, dev })
            }
        };
        let fs = |what: &str, v: Option<String>| {
            v.map(|v| FsType::parse(&v).map_err(|err| e(what, err.to_string())))
                .transpose()
        };
        Ok(StageRecord {
            volume_id: self.volume_id,
            boot_id: self
                .boot_id
                .into()
                .map(|b| BootId::parse(&b))
                .transpose()
                .map_err(|err| e("boot_id", err))?,
            target,
            access: self.access,
            staging_path: checked_path("staging_path", &self.staging_path)
                .map_err(|err| err.to_string())?,
            device,
            fs_type: fs("fs_type", self.fs_type)?,
            formatting: fs("formatting", self.formatting)?,
        })
    }
}

impl RecordFile<String> {
    fn from_json(text: &str) -> Result<Self, String> {
        let f: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if f.version != VERSION {
            return Err(format!(
                "format version {} is not {VERSION}, the one this plugin reads (was it written by a newer version?)",
                f.version
            ));
        }
        Ok(f)
    }
}

impl RecordFile<Option<String>> {
    /// The first format: one `key=value` per line, every key exactly once.
    fn from_lines(text: &str) -> Result<Self, String> {
        const KEYS: [&str; 12] = [
            "volume_id",
            "target",
            "access",
            "staging_path",
            "device",
            "dev",
            "fs_type",
            "address",
            "port",
            "ctrl_loss_tmo",
            "reconnect_delay",
            "keep_alive_tmo",
        ];
        let mut m: BTreeMap<&str, &str> = BTreeMap::new();
        for line in text.lines() {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {} is not key=value", crate::error::echo(line)))?;
            if !KEYS.contains(&k) {
                return Err(format!("unknown field {}", crate::error::echo(k)));
            }
            if m.insert(k, v).is_some() {
                return Err(format!("field {k} appears twice"));
            }
        }
        let get = |k: &str| m.get(k).copied().ok_or_else(|| format!("no {k}"));
        let num = |k: &str| {
            get(k)?
                .parse::<i64>()
                .map_err(|_| format!("{k} is not a number"))
        };
        let target = get("target")?;
        let target = if target.starts_with("nqn.") {
            let tunable = |k: &str| -> Result<i32, String> {
                i32::try_from(num(k)?).map_err(|_| format!("{k} is out of range"))
            };
            TargetFile::NvmeTcp {
                nqn: target.to_owned(),
                address: get("address")?.to_owned(),
                port: u16::try_from(num("port")?).map_err(|_| "port out of range".to_string())?,
                ctrl_loss_tmo: tunable("ctrl_loss_tmo")?,
                reconnect_delay: tunable("reconnect_delay")?,
                keep_alive_tmo: tunable("keep_alive_tmo")?,
            }
        } else {
            TargetFile::LoopFile {
                path: target.to_owned(),
            }
        };
        let device = match (get("device")?, get("dev")?) {
            ("", "") => None,
            (name, dev) => Some(DeviceFile {
                name: name.to_owned(),
                dev: dev.to_owned(),
            }),
        };
        Ok(RecordFile {
            version: 1,
            volume_id: get("volume_id")?.to_owned(),
            boot_id: None,
            target,
            access: match get("access")? {
                "block" => AccessType::Block,
                "filesystem" => AccessType::Mount,
                other => return Err(format!("unknown access {}", crate::error::echo(other))),
            },
            staging_path: get("staging_path")?.to_owned(),
            device,
            fs_type: Some(get("fs_type")?.to_owned()).filter(|s| !s.is_empty()),
            formatting: None,
        })
    }
}

impl StageRecord {
    fn to_file(&self) -> RecordFile<String> {
        RecordFile {
            version: VERSION,
            volume_id: self.volume_id.clone(),
            boot_id: self
                .boot_id
                .as_ref()
                .map(|b| b.as_str().to_owned())
                .unwrap_or_default(),
            target: match &self.target {
                Target::NvmeTcp(t) => TargetFile::NvmeTcp {
                    nqn: t.nqn.to_string(),
                    address: t.address.to_string(),
                    port: t.port,
                    ctrl_loss_tmo: t.tunables.ctrl_loss_tmo,
                    reconnect_delay: t.tunables.reconnect_delay,
                    keep_alive_tmo: t.tunables.keep_alive_tmo,
                },
                Target::LoopFile(p) => TargetFile::LoopFile {
                    path: p.to_string_lossy().into_owned(),
                },
            },
            access: self.access,
            staging_path: self.staging_path.to_string_lossy().into_owned(),
            device: self.device.as_ref().map(|d| DeviceFile {
                name: d.name.clone(),
                dev: d.dev.to_string(),
            }),
            fs_type: self.fs_type.map(|f| f.as_str().to_owned()),
            formatting: self.formatting.map(|f| f.as_str().to_owned()),
        }
    }

    /// Whether the record was written in the running boot.
    pub fn of_boot(&self, boot: &BootId) -> bool {
        self.boot_id.as_ref() == Some(boot)
    }

    /// Writes the record durably (temp file, fsync, rename, fsync of the directory). A
    /// record is always written with a boot id: `save` is given the running one.
    pub fn save(&self, state_dir: &Path) -> Result<(), NodeError> {
        let d = dir(state_dir);
        let text = serde_json::to_string_pretty(&self.to_file()).expect("plain data serializes");
        durable::write(&file(state_dir, &self.volume_id), text.as_bytes()).map_err(|source| {
            NodeError::Io {
                what: "cannot write the stage record under",
                path: d,
                source,
            }
        })
    }

    /// The record of `volume_id`, validated; None when there is none. A record of the first
    /// format has no boot id: it is taken as the running boot's (`boot`) only if its file was
    /// modified after that boot started.
    pub fn load(state_dir: &Path, volume_id: &str, boot: &Boot) -> Result<Option<Self>, NodeError> {
        let path = file(state_dir, volume_id);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(NodeError::Io {
                    what: "cannot read",
                    path,
                    source,
                })
            }
        };
        let damaged = |what: String| NodeError::RecordDamaged {
            path: path.clone(),
            what,
        };
        let text = String::from_utf8(text).map_err(|_| damaged("it is not UTF-8".into()))?;
        let legacy = !text.trim_start().starts_with('{');
        let mut rec = if legacy {
            RecordFile::from_lines(&text).and_then(|r| r.validate(volume_id))
        } else {
            RecordFile::from_json(&text).and_then(|r| r.validate(volume_id))
        }
        .map_err(damaged)?;
        if legacy {
            let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if written.is_some_and(|w| w >= boot.started) {
                rec.boot_id = Some(boot.id.clone());
            }
        }
        Ok(Some(rec))
    }

    pub fn remove(state_dir: &Path, volume_id: &str) -> Result<(), NodeError> {
        let path = file(state_dir, volume_id);
        durable::remove(&path).map_err(|source| NodeError::Io {
            what: "cannot remove the stage record",
            path,
            source,
        })
    }

    /// Every record (for the reconnect reconciler): the valid ones, and the errors of those
    /// that could not be read (the reconciler must not act as if those did not exist).
    pub fn all(state_dir: &Path, boot: &Boot) -> Result<(Vec<Self>, Vec<NodeError>), NodeError> {
        let d = dir(state_dir);
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()))
            }
            Err(source) => {
                return Err(NodeError::Io {
                    what: "cannot list",
                    path: d,
                    source,
                })
            }
        };
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if check_volume_id(&name).is_err() {
                bad.push(NodeError::RecordDamaged {
                    path: e.path(),
                    what: "its name is not a volume id".into(),
                });
                continue;
            }
            match Self::load(state_dir, &name, boot) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => bad.push(e),
            }
        }
        out.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
        Ok((out, bad))
    }
}

#[cfg(test)]
mod tests;
