//! NVMe discovery from sysfs, read fresh on every call.
//!
//! Layout (kernel 6.1, see the reference dump):
//! - `<sys>/class/nvme/nvme<C>` → controller directory (subsysnqn, transport, address,
//!   state, cntlid, hostnqn, dev).
//! - `<sys>/class/nvme-subsystem/nvme-subsys<S>` → subsystem directory, with a symlink per
//!   controller (`nvme0 -> ../../nvme-fabrics/ctl/nvme0`).
//! - `<sys>/block/<name>` → namespace block devices. With native multipath the head
//!   `nvme<S>n<N>` lives under the subsystem (its `device` link names `nvme-subsys<S>`) and
//!   each controller has a hidden path node `nvme<S>c<C>n<N>` with no `/dev` node. Without
//!   multipath each controller owns `nvme<C>n<N>` (its `device` link names `nvme<C>`).
//!
//! The `device` link, not the number in the name, decides which case applies: `nvme0n1`
//! can be subsystem 0's head or controller 0's private namespace.
//!
//! Entries can vanish between listing a directory and reading it (a controller being
//! deleted); such entries are skipped, not reported as errors.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::dev_num::{parse_decimal, DevNum};
use crate::device_path::NvmeDevice;

#[derive(Debug, Error)]
pub enum SysfsError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("subsystem {nqn} has several namespaces ({names:?}); name the one to use")]
    AmbiguousNamespaces { nqn: String, names: Vec<String> },
}

/// `state` of a controller (drivers/nvme/host/core.c, `nvme_sysfs_show_state`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControllerState {
    New,
    Live,
    Resetting,
    Connecting,
    Deleting,
    DeletingNoIo,
    Dead,
    Other(String),
}

impl ControllerState {
    pub fn parse(s: &str) -> Self {
        match s {
            "new" => Self::New,
            "live" => Self::Live,
            "resetting" => Self::Resetting,
            "connecting" => Self::Connecting,
            "deleting" => Self::Deleting,
            "deleting (no IO)" => Self::DeletingNoIo,
            "dead" => Self::Dead,
            other => Self::Other(other.to_string()),
        }
    }

    /// Going away: its paths must not be used or waited for.
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Deleting | Self::DeletingNoIo | Self::Dead)
    }
}

impl fmt::Display for ControllerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::New => "new",
            Self::Live => "live",
            Self::Resetting => "resetting",
            Self::Connecting => "connecting",
            Self::Deleting => "deleting",
            Self::DeletingNoIo => "deleting (no IO)",
            Self::Dead => "dead",
            Self::Other(s) => s,
        })
    }
}

/// The `address` attribute of a fabrics controller:
/// `traddr=127.0.0.1,trsvcid=4420,src_addr=127.0.0.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportAddress {
    pub traddr: String,
    pub trsvcid: Option<String>,
    pub src_addr: Option<String>,
    /// Keys this parser does not model (`host_traddr`, `host_iface`, ...).
    pub other: Vec<(String, String)>,
}

impl TransportAddress {
    /// `None` when the text is not a `key=value` list with a `traddr` (PCIe controllers
    /// print a PCI address here).
    pub fn parse(s: &str) -> Option<Self> {
        let mut traddr = None;
        let mut trsvcid = None;
        let mut src_addr = None;
        let mut other = Vec::new();
        for token in s.trim_end().split(',') {
            let (k, v) = token.split_once('=')?;
            let v = v.to_string();
            match k {
                "traddr" => traddr = Some(v),
                "trsvcid" => trsvcid = Some(v),
                "src_addr" => src_addr = Some(v),
                _ => other.push((k.to_string(), v)),
            }
        }
        Some(Self {
            traddr: traddr?,
            trsvcid,
            src_addr,
            other,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// `nvme<instance>`.
    pub instance: u32,
    pub subsysnqn: String,
    pub transport: String,
    /// The `address` file as the kernel wrote it (newline removed).
    pub address_raw: String,
    pub address: Option<TransportAddress>,
    pub state: ControllerState,
    pub cntlid: Option<u16>,
    pub hostnqn: Option<String>,
    pub dev: Option<DevNum>,
}

impl Controller {
    pub fn name(&self) -> String {
        format!("nvme{}", self.instance)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsystem {
    /// `nvme-subsys<instance>`.
    pub instance: u32,
    pub subsysnqn: String,
    /// Instances of the controllers linked into the subsystem, sorted.
    pub controllers: Vec<u32>,
}

/// One controller's path to a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub controller: u32,
    pub state: ControllerState,
}

/// Whether I/O to a block device can make progress now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// At least one path's controller is live.
    Live,
    /// No live path, but a controller is connecting/resetting/new: I/O waits.
    Connecting,
}

/// A namespace block device with a `/dev` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name, e.g. `nvme0n1`; the node is `<dev>/<name>`.
    pub name: String,
    pub dev: DevNum,
    pub nsid: u32,
    pub uuid: Option<String>,
    pub wwid: Option<String>,
    pub size_bytes: u64,
    /// A native-multipath head (true) or a controller-private namespace (false).
    pub multipath: bool,
    /// Paths whose controller is not going away, by controller instance.
    pub paths: Vec<PathInfo>,
    pub access: Access,
}

/// All controllers under `<sys>/class/nvme`, sorted by instance. Missing class
/// directory (nvme not loaded) yields an empty list.
pub fn list_controllers(sys_root: &Path) -> Result<Vec<Controller>, SysfsError> {
    let mut out = Vec::new();
    for (name, dir) in list_dir(&sys_root.join("class/nvme"))? {
        let Ok(NvmeDevice::Controller { ctrl }) = NvmeDevice::parse(&name) else {
            continue;
        };
        if let Some(c) = read_controller(ctrl, &dir)? {
            out.push(c);
        }
    }
    out.sort_by_key(|c| c.instance);
    Ok(out)
}

/// Controllers whose `subsysnqn` is `nqn`, in every state.
pub fn controllers_for_nqn(sys_root: &Path, nqn: &str) -> Result<Vec<Controller>, SysfsError> {
    let mut all = list_controllers(sys_root)?;
    all.retain(|c| c.subsysnqn == nqn);
    Ok(all)
}

/// All subsystems under `<sys>/class/nvme-subsystem`, sorted by instance.
pub fn list_subsystems(sys_root: &Path) -> Result<Vec<Subsystem>, SysfsError> {
    let mut out = Vec::new();
    for (name, dir) in list_dir(&sys_root.join("class/nvme-subsystem"))? {
        let Some(instance) = name.strip_prefix("nvme-subsys").and_then(parse_decimal) else {
            continue;
        };
        let Some(subsysnqn) = read_attr(&dir, "subsysnqn")? else {
            continue;
        };
        let mut controllers: Vec<u32> = list_dir(&dir)?
            .into_iter()
            .filter_map(|(n, _)| match NvmeDevice::parse(&n) {
                Ok(NvmeDevice::Controller { ctrl }) => Some(ctrl),
                _ => None,
            })
            .collect();
        controllers.sort_unstable();
        out.push(Subsystem {
            instance,
            subsysnqn,
            controllers,
        });
    }
    out.sort_by_key(|s| s.instance);
    Ok(out)
}

/// Every usable namespace block device of subsystem `nqn`, sorted by nsid then name.
/// Devices whose every path is going away are left out.
pub fn list_block_devices(sys_root: &Path, nqn: &str) -> Result<Vec<BlockDevice>, SysfsError> {
    let controllers: BTreeMap<u32, Controller> = list_controllers(sys_root)?
        .into_iter()
        .map(|c| (c.instance, c))
        .collect();
    let subsystems: BTreeMap<u32, Subsystem> = list_subsystems(sys_root)?
        .into_iter()
        .map(|s| (s.instance, s))
        .collect();
    let block_dir = sys_root.join("block");
    let entries = list_dir(&block_dir)?;
    // Hidden path nodes, grouped by the head they serve: (subsys, ns) -> controllers.
    let mut mp_paths: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    for (name, _) in &entries {
        if let Ok(NvmeDevice::Path {
            subsys,
            ctrl,
            ns,
            partition: None,
        }) = NvmeDevice::parse(name)
        {
            mp_paths.entry((subsys, ns)).or_default().push(ctrl);
        }
    }
    let mut out = Vec::new();
    for (name, dir) in &entries {
        let Ok(NvmeDevice::Namespace {
            instance,
            ns,
            partition: None,
        }) = NvmeDevice::parse(name)
        else {
            continue;
        };
        let Some(parent) = parent_name(dir)? else {
            continue;
        };
        let (multipath, serving): (bool, Vec<u32>) =
            match parent.strip_prefix("nvme-subsys").and_then(parse_decimal) {
                Some(s) => {
                    let Some(sub) = subsystems.get(&s).filter(|sub| sub.subsysnqn == nqn) else {
                        continue;
                    };
                    // Prefer the path nodes of this head; fall back to the subsystem's
                    // controllers if the kernel has not created them (yet).
                    let paths = mp_paths
                        .get(&(s, ns))
                        .cloned()
                        .unwrap_or_else(|| sub.controllers.clone());
                    (true, paths)
                }
                None => match NvmeDevice::parse(&parent) {
                    Ok(NvmeDevice::Controller { ctrl }) => match controllers.get(&ctrl) {
                        Some(c) if c.subsysnqn == nqn => (false, vec![ctrl]),
                        _ => continue,
                    },
                    _ => continue,
                },
            };
        let mut paths: Vec<PathInfo> = serving
            .into_iter()
            .filter_map(|c| controllers.get(&c))
            .filter(|c| !c.state.is_gone())
            .map(|c| PathInfo {
                controller: c.instance,
                state: c.state.clone(),
            })
            .collect();
        paths.sort_by_key(|p| p.controller);
        let access = if paths.iter().any(|p| p.state == ControllerState::Live) {
            Access::Live
        } else if paths.is_empty() {
            continue;
        } else {
            Access::Connecting
        };
        if read_attr(dir, "hidden")?.as_deref() == Some("1") {
            continue;
        }
        let Some(dev) = read_parsed::<DevNum>(dir, "dev")? else {
            continue;
        };
        let Some(nsid) = read_parsed::<u32>(dir, "nsid")? else {
            continue;
        };
        let Some(sectors) = read_parsed::<u64>(dir, "size")? else {
            continue;
        };
        let size_bytes = sectors.checked_mul(512).ok_or_else(|| SysfsError::Parse {
            path: dir.join("size"),
            content: sectors.to_string(),
        })?;
        out.push(BlockDevice {
            name: format!("nvme{instance}n{ns}"),
            dev,
            nsid,
            uuid: read_attr(dir, "uuid")?,
            wwid: read_attr(dir, "wwid")?,
            size_bytes,
            multipath,
            paths,
            access,
        });
    }
    out.sort_by(|a, b| (a.nsid, &a.name).cmp(&(b.nsid, &b.name)));
    Ok(out)
}

/// The block device of subsystem `nqn`, looked up fresh. `Ok(None)` when no usable
/// device exists (not connected, still scanning, or only deleting controllers).
/// Without multipath one namespace shows up once per controller; the copy with a live
/// path and the lowest name is chosen. Several distinct namespaces are an error.
pub fn resolve_block_device(sys_root: &Path, nqn: &str) -> Result<Option<BlockDevice>, SysfsError> {
    let devices = list_block_devices(sys_root, nqn)?;
    let mut nsids: Vec<u32> = devices.iter().map(|d| d.nsid).collect();
    nsids.dedup();
    if nsids.len() > 1 {
        return Err(SysfsError::AmbiguousNamespaces {
            nqn: nqn.to_string(),
            names: devices.into_iter().map(|d| d.name).collect(),
        });
    }
    Ok(pick(devices))
}

/// Like [`resolve_block_device`] for namespace `nsid` of a multi-namespace subsystem.
pub fn resolve_namespace(
    sys_root: &Path,
    nqn: &str,
    nsid: u32,
) -> Result<Option<BlockDevice>, SysfsError> {
    let mut devices = list_block_devices(sys_root, nqn)?;
    devices.retain(|d| d.nsid == nsid);
    Ok(pick(devices))
}

fn pick(devices: Vec<BlockDevice>) -> Option<BlockDevice> {
    // Sorted by name already; prefer a live copy.
    let live = devices.iter().position(|d| d.access == Access::Live);
    let i = live.unwrap_or(0);
    devices.into_iter().nth(i)
}

fn read_controller(instance: u32, dir: &Path) -> Result<Option<Controller>, SysfsError> {
    // subsysnqn and state are what every decision needs; without them the controller
    // is treated as already gone.
    let (Some(subsysnqn), Some(state)) = (read_attr(dir, "subsysnqn")?, read_attr(dir, "state")?)
    else {
        return Ok(None);
    };
    let address_raw = read_attr(dir, "address")?.unwrap_or_default();
    Ok(Some(Controller {
        instance,
        subsysnqn,
        transport: read_attr(dir, "transport")?.unwrap_or_default(),
        address: TransportAddress::parse(&address_raw),
        address_raw,
        state: ControllerState::parse(&state),
        cntlid: read_parsed(dir, "cntlid")?,
        hostnqn: read_attr(dir, "hostnqn")?,
        dev: read_parsed(dir, "dev")?,
    }))
}

/// `(name, path)` of every entry; a missing directory is empty.
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, SysfsError> {
    let io_err = |source| SysfsError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err)?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// An attribute with its trailing newline removed; `None` if the file is gone.
fn read_attr(dir: &Path, attr: &str) -> Result<Option<String>, SysfsError> {
    let path = dir.join(attr);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let s = String::from_utf8_lossy(&bytes);
            Ok(Some(s.strip_suffix('\n').unwrap_or(&s).to_string()))
        }
        // ENODEV: the kernel object was removed while we held the directory.
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV) => {
            Ok(None)
        }
        Err(source) => Err(SysfsError::Io { path, source }),
    }
}

fn read_parsed<T: std::str::FromStr>(dir: &Path, attr: &str) -> Result<Option<T>, SysfsError> {
    let Some(s) = read_attr(dir, attr)? else {
        return Ok(None);
    };
    // Plain decimal or major:minor only: reject signs and spaces FromStr might allow.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return Err(SysfsError::Parse {
            path: dir.join(attr),
            content: s,
        });
    }
    s.parse().map(Some).map_err(|_| SysfsError::Parse {
        path: dir.join(attr),
        content: s,
    })
}

/// The kernel object a block device hangs under: the `device` link's last component,
/// else the parent of the canonical directory. `None` if the entry vanished.
fn parent_name(block_entry: &Path) -> Result<Option<String>, SysfsError> {
    let link = block_entry.join("device");
    let target = match std::fs::read_link(&link) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        // Not a symlink (EINVAL): fall through to the canonical path.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
        Err(source) => return Err(SysfsError::Io { path: link, source }),
    };
    let target = match target {
        Some(t) => t,
        None => match std::fs::canonicalize(block_entry) {
            Ok(p) => match p.parent() {
                Some(parent) => parent.to_path_buf(),
                None => return Ok(None),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SysfsError::Io {
                    path: block_entry.to_path_buf(),
                    source,
                })
            }
        },
    };
    Ok(target
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_controller_states() {
        for s in [
            "new",
            "live",
            "resetting",
            "connecting",
            "deleting",
            "deleting (no IO)",
            "dead",
        ] {
            let st = ControllerState::parse(s);
            assert!(!matches!(st, ControllerState::Other(_)), "{s}");
            assert_eq!(st.to_string(), s);
        }
        assert_eq!(
            ControllerState::parse("frozen"),
            ControllerState::Other("frozen".into())
        );
        assert!(ControllerState::Deleting.is_gone());
        assert!(ControllerState::DeletingNoIo.is_gone());
        assert!(ControllerState::Dead.is_gone());
        assert!(!ControllerState::Connecting.is_gone());
    }

    #[test]
    fn parses_transport_addresses() {
        let a =
            TransportAddress::parse("traddr=127.0.0.1,trsvcid=4420,src_addr=127.0.0.1\n").unwrap();
        assert_eq!(a.traddr, "127.0.0.1");
        assert_eq!(a.trsvcid.as_deref(), Some("4420"));
        assert_eq!(a.src_addr.as_deref(), Some("127.0.0.1"));
        let b = TransportAddress::parse("traddr=10.0.0.5,trsvcid=4421").unwrap();
        assert_eq!(b.src_addr, None);
        let c = TransportAddress::parse("traddr=fd00::1,trsvcid=4420,host_iface=eth0").unwrap();
        assert_eq!(c.other, [("host_iface".to_string(), "eth0".to_string())]);
        assert_eq!(TransportAddress::parse("0000:01:00.0"), None);
        assert_eq!(TransportAddress::parse(""), None);
        assert_eq!(TransportAddress::parse("trsvcid=4420"), None);
    }
}
