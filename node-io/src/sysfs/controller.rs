//! The controller and subsystem model: read from `<sys>/class/nvme` and
//! `<sys>/class/nvme-subsystem`, and the two actions a controller takes (delete, rescan).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::attr::{write_attr, SysDir};
use super::SysfsError;
use crate::dev_num::{parse_decimal, DevNum};
use crate::device_path::NvmeDevice;

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

/// What a write to a controller's action attribute did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The kernel took the write.
    Done,
    /// The controller vanished before the write (deleted meanwhile): nothing to do.
    Gone,
}

impl Controller {
    pub fn name(&self) -> String {
        format!("nvme{}", self.instance)
    }

    /// `<sys>/class/nvme/nvme<instance>`.
    pub fn sysfs_dir(&self, sys_root: &Path) -> PathBuf {
        controller_dir(sys_root, self.instance)
    }

    /// Deletes the controller: writes `1` to its `delete_controller` (what `nvme disconnect`
    /// does). The kernel answers when the controller is deleted, so this blocks until then;
    /// its block devices go away with it. A controller already gone is [`Written::Gone`].
    ///
    /// Errors: [`SysfsError::Write`] with the attribute's path (EACCES without root,
    /// EBUSY/EINVAL from the kernel).
    pub fn disconnect(&self, sys_root: &Path) -> Result<Written, SysfsError> {
        self.act(sys_root, "delete_controller")
    }

    /// Makes the kernel re-read the controller's namespaces (size changes, new or removed
    /// namespaces): writes `1` to `rescan_controller`. The kernel applies it asynchronously;
    /// a size change shows in the namespace's `size` attribute and a `change` uevent.
    pub fn rescan(&self, sys_root: &Path) -> Result<Written, SysfsError> {
        self.act(sys_root, "rescan_controller")
    }

    fn act(&self, sys_root: &Path, attr: &str) -> Result<Written, SysfsError> {
        match write_attr(&self.sysfs_dir(sys_root), attr, b"1")? {
            true => Ok(Written::Done),
            false => Ok(Written::Gone),
        }
    }
}

/// Deletes every controller of subsystem `nqn` that is not already going away (native
/// multipath has one per path), one after the other, and says what each write did. Blocks
/// until the kernel has deleted them. The first failing write ends the call with its error;
/// controllers deleted before it stay deleted.
pub fn disconnect_subsystem(
    sys_root: &Path,
    nqn: &str,
) -> Result<Vec<(Controller, Written)>, SysfsError> {
    let mut out = Vec::new();
    for c in controllers_for_nqn(sys_root, nqn)? {
        if c.state.is_gone() {
            continue;
        }
        let w = c.disconnect(sys_root)?;
        out.push((c, w));
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsystem {
    /// `nvme-subsys<instance>`.
    pub instance: u32,
    pub subsysnqn: String,
    /// Instances of the controllers linked into the subsystem, sorted.
    pub controllers: Vec<u32>,
}

/// All controllers under `<sys>/class/nvme`, sorted by instance. Missing class
/// directory (nvme not loaded) yields an empty list.
pub fn list_controllers(sys_root: &Path) -> Result<Vec<Controller>, SysfsError> {
    list_controllers_of(sys_root, None)
}

/// Controllers whose `subsysnqn` is `nqn`, in every state. Only `subsysnqn` is read of the
/// other subsystems' controllers.
pub fn controllers_for_nqn(sys_root: &Path, nqn: &str) -> Result<Vec<Controller>, SysfsError> {
    list_controllers_of(sys_root, Some(nqn))
}

pub(super) fn list_controllers_of(
    sys_root: &Path,
    nqn: Option<&str>,
) -> Result<Vec<Controller>, SysfsError> {
    let controller = |name: &str| match NvmeDevice::parse(name) {
        Ok(NvmeDevice::Controller { ctrl }) => Some(ctrl),
        _ => None,
    };
    list_class(sys_root, "class/nvme", nqn, controller, read_controller)
}

/// Reads one class object (instance, its directory, the NQN it must serve): `None` if gone
/// or serving another NQN.
type ReadObject<T> = fn(u32, &SysDir, Option<&str>) -> Result<Option<T>, SysfsError>;

/// The objects of the sysfs class directory `class` that serve `nqn` (all without one), read
/// by `read` from their directories, sorted by instance. A name `instance_of` does not take is
/// not one of the class's objects; an object gone before its read is left out.
fn list_class<T>(
    sys_root: &Path,
    class: &str,
    nqn: Option<&str>,
    instance_of: impl Fn(&str) -> Option<u32>,
    read: ReadObject<T>,
) -> Result<Vec<T>, SysfsError> {
    let mut out = Vec::new();
    let Some(class) = SysDir::open(sys_root.join(class))? else {
        return Ok(Vec::new());
    };
    for name in class.names()? {
        let Some(instance) = instance_of(&name) else {
            continue;
        };
        if !serves(&class, &name, nqn)? {
            continue;
        }
        if let Some(dir) = class.at(&name)? {
            if let Some(object) = read(instance, &dir, nqn)? {
                out.push((instance, object));
            }
        }
    }
    out.sort_by_key(|(instance, _)| *instance);
    Ok(out.into_iter().map(|(_, object)| object).collect())
}

/// Whether the object `name` in `class` serves `nqn` (always true without one): ONE read
/// relative to the class directory, so other NQNs' objects cost a single open.
fn serves(class: &SysDir, name: &str, nqn: Option<&str>) -> Result<bool, SysfsError> {
    match nqn {
        None => Ok(true),
        Some(nqn) => Ok(class.read(&format!("{name}/subsysnqn"))?.as_deref() == Some(nqn)),
    }
}

/// All subsystems under `<sys>/class/nvme-subsystem`, sorted by instance.
pub fn list_subsystems(sys_root: &Path) -> Result<Vec<Subsystem>, SysfsError> {
    list_subsystems_of(sys_root, None)
}

pub(super) fn list_subsystems_of(
    sys_root: &Path,
    nqn: Option<&str>,
) -> Result<Vec<Subsystem>, SysfsError> {
    let subsystem = |name: &str| name.strip_prefix("nvme-subsys").and_then(parse_decimal);
    list_class(
        sys_root,
        "class/nvme-subsystem",
        nqn,
        subsystem,
        read_subsystem,
    )
}

/// The state of every controller of `nqn`, by instance: two small reads per controller of
/// `nqn`, one per other controller.
pub(super) fn controller_states_of(
    sys_root: &Path,
    nqn: &str,
) -> Result<BTreeMap<u32, ControllerState>, SysfsError> {
    let mut out = BTreeMap::new();
    let Some(class) = SysDir::open(sys_root.join("class/nvme"))? else {
        return Ok(out);
    };
    for name in class.names()? {
        let Ok(NvmeDevice::Controller { ctrl }) = NvmeDevice::parse(&name) else {
            continue;
        };
        if !serves(&class, &name, Some(nqn))? {
            continue;
        }
        if let Some(state) = class.read(&format!("{name}/state"))? {
            out.insert(ctrl, ControllerState::parse(&state));
        }
    }
    Ok(out)
}

/// The state of the controller whose directory is `dir` if it serves `nqn` (`None`: gone
/// or another NQN).
pub(super) fn read_controller_state(
    dir: &SysDir,
    nqn: &str,
) -> Result<Option<ControllerState>, SysfsError> {
    if dir.read("subsysnqn")?.as_deref() != Some(nqn) {
        return Ok(None);
    }
    Ok(dir.read("state")?.map(|s| ControllerState::parse(&s)))
}

/// `<sys>/class/nvme/nvme<instance>`.
pub(super) fn controller_dir(sys_root: &Path, instance: u32) -> PathBuf {
    sys_root.join(format!("class/nvme/nvme{instance}"))
}

/// `<sys>/class/nvme-subsystem/nvme-subsys<instance>`.
pub(super) fn subsystem_dir(sys_root: &Path, instance: u32) -> PathBuf {
    sys_root.join(format!("class/nvme-subsystem/nvme-subsys{instance}"))
}

/// The subsystem at `dir`, `None` if it is gone or (with `nqn`) serves another NQN.
pub(super) fn read_subsystem(
    instance: u32,
    dir: &SysDir,
    nqn: Option<&str>,
) -> Result<Option<Subsystem>, SysfsError> {
    Ok(read_subsystem_listed(instance, dir, nqn)?.map(|(s, _)| s))
}

/// [`read_subsystem`] and the names in `dir` it listed (its controller links and namespace
/// heads), for a caller that needs both from one listing.
pub(super) fn read_subsystem_listed(
    instance: u32,
    dir: &SysDir,
    nqn: Option<&str>,
) -> Result<Option<(Subsystem, Vec<String>)>, SysfsError> {
    let Some(subsysnqn) = dir.read("subsysnqn")? else {
        return Ok(None);
    };
    if nqn.is_some_and(|n| n != subsysnqn) {
        return Ok(None);
    }
    let names = dir.names()?;
    let mut controllers: Vec<u32> = names
        .iter()
        .filter_map(|n| match NvmeDevice::parse(n) {
            Ok(NvmeDevice::Controller { ctrl }) => Some(ctrl),
            _ => None,
        })
        .collect();
    controllers.sort_unstable();
    let sub = Subsystem {
        instance,
        subsysnqn,
        controllers,
    };
    Ok(Some((sub, names)))
}

/// The controller at `dir`, `None` if it is gone or (with `nqn`) serves another NQN.
fn read_controller(
    instance: u32,
    dir: &SysDir,
    nqn: Option<&str>,
) -> Result<Option<Controller>, SysfsError> {
    // subsysnqn and state are what every decision needs; without them the controller
    // is treated as already gone.
    let Some(subsysnqn) = dir.read("subsysnqn")? else {
        return Ok(None);
    };
    if nqn.is_some_and(|n| n != subsysnqn) {
        return Ok(None);
    }
    let Some(state) = dir.read("state")? else {
        return Ok(None);
    };
    let address_raw = dir.read("address")?.unwrap_or_default();
    Ok(Some(Controller {
        instance,
        subsysnqn,
        transport: dir.read("transport")?.unwrap_or_default(),
        address: TransportAddress::parse(&address_raw),
        address_raw,
        state: ControllerState::parse(&state),
        cntlid: dir.parsed("cntlid")?,
        hostnqn: dir.read("hostnqn")?,
        dev: dir.parsed("dev")?,
    }))
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
