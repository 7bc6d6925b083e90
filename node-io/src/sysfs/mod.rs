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
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::dev_num::{parse_decimal, DevNum};
use crate::device_path::NvmeDevice;

pub(crate) mod attr;
mod controller;
pub mod index;

use attr::{parent_name, SysDir};
pub use controller::{
    controllers_for_nqn, disconnect_subsystem, list_controllers, list_subsystems, Controller,
    ControllerState, Subsystem, TransportAddress, Written,
};

#[derive(Debug, Error)]
pub enum SysfsError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("subsystem {nqn} has several namespaces ({names:?}); name the one to use")]
    AmbiguousNamespaces { nqn: String, names: Vec<String> },
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
    pub size_bytes: u64,
    /// A native-multipath head (true) or a controller-private namespace (false).
    pub multipath: bool,
    /// Paths whose controller is not going away, by controller instance.
    pub paths: Vec<PathInfo>,
    pub access: Access,
}

/// A namespace's identifiers as its block device reports them: `uuid` (e.g.
/// `afc78958-a1ea-4f47-8976-3ed6be4ecb93`) and `wwid` (e.g. `uuid.afc7…`, or `eui.…`/`nvme.…`
/// when the target gives no UUID); either is `None` when the attribute is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceIds {
    pub uuid: Option<String>,
    pub wwid: Option<String>,
}

impl BlockDevice {
    /// This namespace's identifiers, read fresh from `<sys>/block/<name>`; `Ok(None)` when
    /// the device is gone. Kept out of the resolution itself: no decision there depends on
    /// them, and each read is three syscalls every device-wait check would pay.
    pub fn ids(&self, sys_root: &Path) -> Result<Option<NamespaceIds>, SysfsError> {
        let Some(dir) = SysDir::open(sys_root.join("block").join(&self.name))? else {
            return Ok(None);
        };
        Ok(Some(NamespaceIds {
            uuid: dir.read("uuid")?,
            wwid: dir.read("wwid")?,
        }))
    }
}

/// Every usable namespace block device of subsystem `nqn`, sorted by nsid then name.
/// Devices whose every path is going away are left out.
pub fn list_block_devices(sys_root: &Path, nqn: &str) -> Result<Vec<BlockDevice>, SysfsError> {
    Ok(scan(sys_root, nqn)?.0)
}

/// The full scan behind [`list_block_devices`], with where `nqn` was found (the hint a
/// later [`index::SubsystemHint::list_block_devices`] re-reads). Only `subsysnqn` is read of
/// other subsystems' controllers, and a block entry is looked at only when the number in its
/// name is one of `nqn`'s subsystems or controllers (a head `nvme<S>n<N>`, a private
/// namespace `nvme<C>n<N>`, a path `nvme<S>c<C>n<N>`), so the cost of other volumes is a
/// directory listing and one small read per controller and subsystem.
pub(crate) fn scan(
    sys_root: &Path,
    nqn: &str,
) -> Result<(Vec<BlockDevice>, index::SubsystemHint), SysfsError> {
    let controllers = controller::controller_states_of(sys_root, nqn)?;
    let subsystems: BTreeMap<u32, Subsystem> = controller::list_subsystems_of(sys_root, Some(nqn))?
        .into_iter()
        .map(|s| (s.instance, s))
        .collect();
    let (mut namespaces, mut paths) = (Vec::new(), Vec::new());
    if let Some(block) = SysDir::open(sys_root.join("block"))? {
        for name in block.names()? {
            match NvmeDevice::parse(&name) {
                Ok(NvmeDevice::Namespace { instance, .. })
                    if subsystems.contains_key(&instance)
                        || controllers.contains_key(&instance) =>
                {
                    namespaces.extend(block.at(&name)?.map(|d| (name, d)));
                }
                // Listed is enough: only a path node's name is used.
                Ok(NvmeDevice::Path { subsys, .. }) if subsystems.contains_key(&subsys) => {
                    paths.push(name)
                }
                _ => {}
            }
        }
    }
    let devices = devices_from(nqn, &controllers, &subsystems, &namespaces, &paths)?;
    let hint = index::SubsystemHint::from_maps(&controllers, &subsystems);
    Ok((devices, hint))
}

/// The usable namespace block devices of `nqn` among the `/sys/block` entries `namespaces`
/// (heads and private namespaces, opened) and `path_nodes` (the names of multipath path
/// nodes present), given the states of `nqn`'s controllers and `nqn`'s subsystems (nothing
/// of other NQNs may be in the maps). Shared by the full scan and the hinted one, so both
/// decide alike.
fn devices_from(
    nqn: &str,
    controllers: &BTreeMap<u32, ControllerState>,
    subsystems: &BTreeMap<u32, Subsystem>,
    namespaces: &[(String, SysDir)],
    path_nodes: &[String],
) -> Result<Vec<BlockDevice>, SysfsError> {
    // Hidden path nodes, grouped by the head they serve: (subsys, ns) -> controllers.
    let mut mp_paths: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    for name in path_nodes {
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
    for (name, dir) in namespaces {
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
                    Ok(NvmeDevice::Controller { ctrl }) if controllers.contains_key(&ctrl) => {
                        (false, vec![ctrl])
                    }
                    _ => continue,
                },
            };
        let mut paths: Vec<PathInfo> = serving
            .into_iter()
            .filter_map(|c| controllers.get(&c).map(|state| (c, state)))
            .filter(|(_, state)| !state.is_gone())
            .map(|(controller, state)| PathInfo {
                controller,
                state: state.clone(),
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
        if dir.read("hidden")?.as_deref() == Some("1") {
            continue;
        }
        let Some(dev) = dir.parsed::<DevNum>("dev")? else {
            continue;
        };
        let Some(nsid) = dir.parsed::<u32>("nsid")? else {
            continue;
        };
        let Some(sectors) = dir.parsed::<u64>("size")? else {
            continue;
        };
        let size_bytes = sectors.checked_mul(512).ok_or_else(|| SysfsError::Parse {
            path: dir.path().join("size"),
            content: sectors.to_string(),
        })?;
        out.push(BlockDevice {
            name: format!("nvme{instance}n{ns}"),
            dev,
            nsid,
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
    choose(nqn, list_block_devices(sys_root, nqn)?)
}

/// The one namespace among `devices` (all of subsystem `nqn`), as [`resolve_block_device`].
pub(crate) fn choose(
    nqn: &str,
    devices: Vec<BlockDevice>,
) -> Result<Option<BlockDevice>, SysfsError> {
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
