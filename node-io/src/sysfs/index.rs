//! The NVMe sysfs tree indexed by what a uevent names: a subsystem `nvme-subsys<S>` or a
//! controller `nvme<C>`, and which NQN it serves.
//!
//! A uevent's DEVPATH names the object it is about (`.../nvme-subsys0/nvme0n1`,
//! `.../ctl/nvme3`), so a waiter for one NQN can re-read just that object's `subsysnqn` to
//! know whether the event concerns it, and then re-read only its own subsystem and
//! controllers instead of the whole tree. The index is a hint, sysfs the truth: every
//! object a hinted read uses is verified (its `subsysnqn` read again) in the same read, an
//! object that vanished or now serves another NQN is dropped, and a missing object only
//! delays an answer until the next full scan; it never makes one wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::attr::{read_attr, SysDir};
use super::controller::{
    controller_dir, read_controller_state, read_subsystem_listed, subsystem_dir,
};
use super::{choose, devices_from, scan, BlockDevice, ControllerState, Subsystem, SysfsError};
use crate::dev_num::parse_decimal;
use crate::device_path::NvmeDevice;

/// An NVMe kernel object a uevent can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NvmeObject {
    /// `nvme-subsys<S>`: the subsystem, and with native multipath its namespace heads.
    Subsystem(u32),
    /// `nvme<C>`: a controller, its hidden path nodes and its private namespaces.
    Controller(u32),
}

impl NvmeObject {
    /// The object a DEVPATH is about: its nearest component that names a subsystem or a
    /// controller (`/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1` → subsystem 0,
    /// `/devices/virtual/nvme-fabrics/ctl/nvme1/nvme0c1n1` → controller 1,
    /// `/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1p1` → controller 0).
    pub fn from_devpath(devpath: &str) -> Option<Self> {
        devpath.rsplit('/').find_map(|c| {
            if let Some(s) = c.strip_prefix("nvme-subsys").and_then(parse_decimal) {
                return Some(Self::Subsystem(s));
            }
            match NvmeDevice::parse(c) {
                Ok(NvmeDevice::Controller { ctrl }) => Some(Self::Controller(ctrl)),
                _ => None,
            }
        })
    }

    /// `<sys>/class/nvme-subsystem/nvme-subsys<S>` or `<sys>/class/nvme/nvme<C>`.
    pub fn sysfs_dir(&self, sys_root: &Path) -> PathBuf {
        match *self {
            Self::Subsystem(s) => subsystem_dir(sys_root, s),
            Self::Controller(c) => controller_dir(sys_root, c),
        }
    }

    /// The NQN the object serves now, read fresh; `None` when it is gone.
    pub fn subsysnqn(&self, sys_root: &Path) -> Result<Option<String>, SysfsError> {
        read_attr(&self.sysfs_dir(sys_root), "subsysnqn")
    }
}

/// Where one subsystem's objects were last seen. Built by a full scan
/// ([`SubsystemHint::scan`]), grown from uevents ([`SubsystemHint::learn`]), and re-read by
/// [`SubsystemHint::list_block_devices`], which also forgets what no longer serves the NQN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubsystemHint {
    pub subsystems: BTreeSet<u32>,
    pub controllers: BTreeSet<u32>,
}

impl SubsystemHint {
    pub(super) fn from_maps(
        controllers: &BTreeMap<u32, ControllerState>,
        subsystems: &BTreeMap<u32, Subsystem>,
    ) -> Self {
        Self {
            subsystems: subsystems.keys().copied().collect(),
            controllers: controllers
                .keys()
                .copied()
                .chain(
                    subsystems
                        .values()
                        .flat_map(|s| s.controllers.iter().copied()),
                )
                .collect(),
        }
    }

    /// A full scan for `nqn`: its devices (as [`super::list_block_devices`]) and the hint.
    pub fn scan(sys_root: &Path, nqn: &str) -> Result<(Vec<BlockDevice>, Self), SysfsError> {
        scan(sys_root, nqn)
    }

    /// Adds an object a uevent named (after checking that it serves the NQN).
    pub fn learn(&mut self, object: NvmeObject) {
        match object {
            NvmeObject::Subsystem(s) => self.subsystems.insert(s),
            NvmeObject::Controller(c) => self.controllers.insert(c),
        };
    }

    pub fn is_empty(&self) -> bool {
        self.subsystems.is_empty() && self.controllers.is_empty()
    }

    /// Every object of the hint.
    pub fn objects(&self) -> impl Iterator<Item = NvmeObject> + '_ {
        self.subsystems
            .iter()
            .map(|&s| NvmeObject::Subsystem(s))
            .chain(self.controllers.iter().map(|&c| NvmeObject::Controller(c)))
    }

    /// The usable block devices of `nqn` found under the hinted objects, read fresh: each
    /// subsystem and controller is checked to still serve `nqn` (and dropped from the hint
    /// otherwise), the subsystems' controller links are followed, and only their block
    /// devices are read. Equal to the full scan's answer whenever the hint holds `nqn`'s
    /// subsystem (the kernel links every controller of an NQN into its one subsystem) or all
    /// its controllers; an emptier hint can only find less.
    pub fn list_block_devices(
        &mut self,
        sys_root: &Path,
        nqn: &str,
    ) -> Result<Vec<BlockDevice>, SysfsError> {
        match ClassDirs::open(sys_root)? {
            Some(dirs) => self.list_in(&dirs, nqn),
            None => {
                // No NVMe controllers or no block devices at all.
                *self = Self::default();
                Ok(Vec::new())
            }
        }
    }

    /// [`SubsystemHint::list_block_devices`] from class directories already open.
    pub(crate) fn list_in(
        &mut self,
        dirs: &ClassDirs,
        nqn: &str,
    ) -> Result<Vec<BlockDevice>, SysfsError> {
        let ClassDirs {
            ctrl_class,
            subsys_class,
            block,
        } = dirs;
        let mut subsystems = BTreeMap::new();
        // Each subsystem directory's names, listed once: its controller links and its heads.
        let mut subsystem_names = Vec::new();
        for &s in &self.subsystems {
            let Some(class) = subsys_class else { break };
            let Some(dir) = class.at(&format!("nvme-subsys{s}"))? else {
                continue;
            };
            if let Some((sub, names)) = read_subsystem_listed(s, &dir, Some(nqn))? {
                subsystems.insert(s, sub);
                subsystem_names.push((s, names));
            }
        }
        let wanted: BTreeSet<u32> = self
            .controllers
            .iter()
            .copied()
            .chain(
                subsystems
                    .values()
                    .flat_map(|s| s.controllers.iter().copied()),
            )
            .collect();
        // Each controller's directory is opened once: its attributes and its listing are
        // then read relative to it, without walking the class symlink again.
        let mut controllers = BTreeMap::new();
        let mut controller_dirs = Vec::new();
        for c in wanted {
            let Some(dir) = ctrl_class.at(&format!("nvme{c}"))? else {
                continue;
            };
            if let Some(state) = read_controller_state(&dir, nqn)? {
                controllers.insert(c, state);
                controller_dirs.push((c, dir));
            }
        }
        // Block devices live under their parent object: heads under the subsystem, path
        // nodes and private namespaces under the controller. They count once their
        // /sys/block link exists (the kernel's device_add makes it last), as in the full scan.
        let mut names = BTreeSet::new();
        let mut path_nodes = BTreeSet::new();
        for (s, listed) in &subsystem_names {
            for name in listed {
                if let Ok(NvmeDevice::Namespace { instance, ns, .. }) = NvmeDevice::parse(name) {
                    if instance == *s {
                        names.insert(name.clone());
                        // Native multipath names the head's path through controller C
                        // `nvme<S>c<C>n<N>`: look those up instead of listing every controller.
                        path_nodes.extend(controllers.keys().map(|c| format!("nvme{s}c{c}n{ns}")));
                    }
                }
            }
        }
        if names.is_empty() {
            // No heads: without multipath the namespaces hang under their controllers.
            for (c, dir) in &controller_dirs {
                for name in dir.names()? {
                    match NvmeDevice::parse(&name) {
                        Ok(NvmeDevice::Namespace { instance, .. }) if instance == *c => {
                            names.insert(name);
                        }
                        Ok(NvmeDevice::Path { subsys, ctrl, .. })
                            if ctrl == *c && subsystems.contains_key(&subsys) =>
                        {
                            path_nodes.insert(name);
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut namespaces = Vec::new();
        for n in names {
            namespaces.extend(block.at(&n)?.map(|d| (n, d)));
        }
        let mut paths = Vec::new();
        for n in path_nodes {
            // Only the name counts for a path node: is it linked, not what it holds.
            if block.link_name(&n)?.is_some() {
                paths.push(n);
            }
        }
        let devices = devices_from(nqn, &controllers, &subsystems, &namespaces, &paths)?;
        *self = Self::from_maps(&controllers, &subsystems);
        Ok(devices)
    }

    /// [`super::resolve_block_device`] over the hinted objects only.
    pub fn resolve_block_device(
        &mut self,
        sys_root: &Path,
        nqn: &str,
    ) -> Result<Option<BlockDevice>, SysfsError> {
        let devices = self.list_block_devices(sys_root, nqn)?;
        choose(nqn, devices)
    }

    /// [`SubsystemHint::resolve_block_device`] from class directories already open.
    pub(crate) fn resolve_in(
        &mut self,
        dirs: &ClassDirs,
        nqn: &str,
    ) -> Result<Option<BlockDevice>, SysfsError> {
        let devices = self.list_in(dirs, nqn)?;
        choose(nqn, devices)
    }
}

/// The class directories a hinted read starts from, held open across the reads of one wait
/// (directories, not data: what is in them is read fresh every time).
pub(crate) struct ClassDirs {
    ctrl_class: SysDir,
    subsys_class: Option<SysDir>,
    block: SysDir,
}

impl ClassDirs {
    /// `None` when `<sys>/class/nvme` or `<sys>/block` does not exist.
    pub(crate) fn open(sys_root: &Path) -> Result<Option<Self>, SysfsError> {
        let (Some(ctrl_class), Some(block)) = (
            SysDir::open(sys_root.join("class/nvme"))?,
            SysDir::open(sys_root.join("block"))?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Self {
            ctrl_class,
            subsys_class: SysDir::open(sys_root.join("class/nvme-subsystem"))?,
            block,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_devpath_names_its_nearest_subsystem_or_controller() {
        for (path, want) in [
            (
                "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1",
                Some(NvmeObject::Subsystem(0)),
            ),
            (
                "/devices/virtual/nvme-fabrics/ctl/nvme1/nvme0c1n1",
                Some(NvmeObject::Controller(1)),
            ),
            (
                "/devices/virtual/nvme-fabrics/ctl/nvme12",
                Some(NvmeObject::Controller(12)),
            ),
            (
                "/devices/virtual/nvme-subsystem/nvme-subsys7",
                Some(NvmeObject::Subsystem(7)),
            ),
            (
                "/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p1",
                Some(NvmeObject::Controller(0)),
            ),
            ("/devices/virtual/block/loop3", None),
            ("/devices/virtual/nvme-subsystem/nvme-subsysX/nvme0n1", None),
        ] {
            assert_eq!(NvmeObject::from_devpath(path), want, "{path}");
        }
    }
}
