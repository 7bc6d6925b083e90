//! Parsing of kernel `NETLINK_KOBJECT_UEVENT` messages.
//!
//! The kernel sends `ACTION@DEVPATH\0KEY=VALUE\0...`. udev re-broadcasts its own events on
//! the same protocol with a binary header starting `libudev\0`; those are rejected with a
//! distinct error so a listener can drop them quietly (we only trust the kernel's view).

use std::fmt;

use thiserror::Error;

use crate::dev_num::DevNum;
use crate::device_path::NvmeDevice;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Add,
    Remove,
    Change,
    Bind,
    Unbind,
    Move,
    Online,
    Offline,
    Other(String),
}

impl Action {
    fn parse(s: &str) -> Self {
        match s {
            "add" => Self::Add,
            "remove" => Self::Remove,
            "change" => Self::Change,
            "bind" => Self::Bind,
            "unbind" => Self::Unbind,
            "move" => Self::Move,
            "online" => Self::Online,
            "offline" => Self::Offline,
            other => Self::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Change => "change",
            Self::Bind => "bind",
            Self::Unbind => "unbind",
            Self::Move => "move",
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Other(s) => s,
        })
    }
}

/// One kernel uevent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: Action,
    /// Path below `/sys`, e.g. `/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1`.
    pub devpath: String,
    pub subsystem: Option<String>,
    pub devname: Option<String>,
    pub devtype: Option<String>,
    /// Present only when the event carries both MAJOR and MINOR (hidden multipath path
    /// nodes have neither).
    pub dev: Option<DevNum>,
    pub seqnum: Option<u64>,
    /// Every KEY=VALUE pair in message order, including the ones decoded above.
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UeventError {
    #[error("udev (libudev) message, not a kernel uevent")]
    Udev,
    #[error("empty uevent message")]
    Empty,
    #[error("uevent header {0:?} is not ACTION@DEVPATH")]
    BadHeader(String),
    #[error("uevent is not valid UTF-8")]
    NotUtf8,
    #[error("uevent field {0:?} is not KEY=VALUE")]
    BadField(String),
    #[error("uevent field {key} has invalid value {value:?}")]
    BadValue { key: &'static str, value: String },
    #[error("uevent header says {header:?} but {key} says {field:?}")]
    Inconsistent {
        key: &'static str,
        header: String,
        field: String,
    },
}

impl Uevent {
    pub fn parse(msg: &[u8]) -> Result<Self, UeventError> {
        if msg.starts_with(b"libudev\0") {
            return Err(UeventError::Udev);
        }
        let mut parts = msg.split(|&b| b == 0).filter(|p| !p.is_empty());
        let header = parts.next().ok_or(UeventError::Empty)?;
        let header = std::str::from_utf8(header).map_err(|_| UeventError::NotUtf8)?;
        let (action, devpath) = header
            .split_once('@')
            .filter(|(a, p)| !a.is_empty() && p.starts_with('/'))
            .ok_or_else(|| UeventError::BadHeader(header.to_string()))?;
        let mut ev = Uevent {
            action: Action::parse(action),
            devpath: devpath.to_string(),
            subsystem: None,
            devname: None,
            devtype: None,
            dev: None,
            seqnum: None,
            env: Vec::new(),
        };
        let (mut major, mut minor) = (None, None);
        for part in parts {
            let part = std::str::from_utf8(part).map_err(|_| UeventError::NotUtf8)?;
            let (k, v) = part
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| UeventError::BadField(part.to_string()))?;
            let check = |key: &'static str, header: &str| {
                if v == header {
                    Ok(())
                } else {
                    Err(UeventError::Inconsistent {
                        key,
                        header: header.to_string(),
                        field: v.to_string(),
                    })
                }
            };
            match k {
                "ACTION" => check("ACTION", action)?,
                "DEVPATH" => check("DEVPATH", devpath)?,
                "SUBSYSTEM" => ev.subsystem = Some(v.to_string()),
                "DEVNAME" => ev.devname = Some(v.to_string()),
                "DEVTYPE" => ev.devtype = Some(v.to_string()),
                "MAJOR" => major = Some(num("MAJOR", v)?),
                "MINOR" => minor = Some(num("MINOR", v)?),
                "SEQNUM" => {
                    ev.seqnum = Some(v.parse().ok().filter(|_| is_digits(v)).ok_or_else(|| {
                        UeventError::BadValue {
                            key: "SEQNUM",
                            value: v.to_string(),
                        }
                    })?)
                }
                _ => {}
            }
            ev.env.push((k.to_string(), v.to_string()));
        }
        if let (Some(major), Some(minor)) = (major, minor) {
            ev.dev = Some(DevNum { major, minor });
        }
        Ok(ev)
    }

    /// The kernel name: the last component of DEVPATH (`nvme0c1n1`).
    pub fn kernel_name(&self) -> &str {
        self.devpath.rsplit('/').next().unwrap_or("")
    }

    /// A block-subsystem event for an NVMe namespace, multipath path node or partition.
    /// Uses the DEVPATH name because hidden path nodes carry no DEVNAME.
    pub fn is_nvme_block_event(&self) -> bool {
        self.subsystem.as_deref() == Some("block")
            && NvmeDevice::parse(self.kernel_name()).is_ok_and(|d| d.is_block())
    }

    /// An event for an NVMe controller (`nvme` subsystem, `nvme<C>`): connect, state
    /// change, delete.
    pub fn is_nvme_controller_event(&self) -> bool {
        self.subsystem.as_deref() == Some("nvme")
            && matches!(
                NvmeDevice::parse(self.kernel_name()),
                Ok(NvmeDevice::Controller { .. })
            )
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn is_digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

fn num(key: &'static str, v: &str) -> Result<u32, UeventError> {
    crate::dev_num::parse_decimal(v).ok_or_else(|| UeventError::BadValue {
        key,
        value: v.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(parts: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    }

    /// The uevent of a well-formed message made of `parts`.
    fn parsed(parts: &[&str]) -> Uevent {
        Uevent::parse(&msg(parts)).unwrap()
    }

    #[test]
    fn parses_a_namespace_head_add() {
        let ev = parsed(&[
            "add@/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1",
            "ACTION=add",
            "DEVPATH=/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1",
            "SUBSYSTEM=block",
            "MAJOR=259",
            "MINOR=1",
            "DEVNAME=nvme0n1",
            "DEVTYPE=disk",
            "DISKSEQ=2",
            "SEQNUM=2231",
        ]);
        assert_eq!(ev.action, Action::Add);
        assert_eq!(
            ev.devpath,
            "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1"
        );
        assert_eq!(ev.subsystem.as_deref(), Some("block"));
        assert_eq!(ev.devname.as_deref(), Some("nvme0n1"));
        assert_eq!(ev.devtype.as_deref(), Some("disk"));
        assert_eq!(ev.dev, Some(DevNum::new(259, 1)));
        assert_eq!(ev.seqnum, Some(2231));
        assert_eq!(ev.get("DISKSEQ"), Some("2"));
        assert!(ev.is_nvme_block_event());
        assert!(!ev.is_nvme_controller_event());
    }

    #[test]
    fn hidden_path_node_without_devname_is_an_nvme_block_event() {
        let ev = parsed(&[
            "remove@/devices/virtual/nvme-fabrics/ctl/nvme1/nvme0c1n1",
            "ACTION=remove",
            "SUBSYSTEM=block",
            "DEVTYPE=disk",
            "SEQNUM=9",
        ]);
        assert_eq!(ev.action, Action::Remove);
        assert_eq!(ev.dev, None);
        assert_eq!(ev.kernel_name(), "nvme0c1n1");
        assert!(ev.is_nvme_block_event());
    }

    #[test]
    fn controller_and_foreign_events_are_classified() {
        let ctrl = parsed(&[
            "change@/devices/virtual/nvme-fabrics/ctl/nvme3",
            "SUBSYSTEM=nvme",
            "NVME_EVENT=connected",
            "MAJOR=247",
            "MINOR=3",
        ]);
        assert_eq!(ctrl.action, Action::Change);
        assert!(ctrl.is_nvme_controller_event());
        assert!(!ctrl.is_nvme_block_event());
        let sda = parsed(&[
            "add@/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda",
            "SUBSYSTEM=block",
            "DEVNAME=sda",
        ]);
        assert!(!sda.is_nvme_block_event());
        let ng = parsed(&["add@/devices/x/ng0n1", "SUBSYSTEM=nvme-generic"]);
        assert!(!ng.is_nvme_block_event() && !ng.is_nvme_controller_event());
    }

    #[test]
    fn every_action_name_is_recognised() {
        for (name, want) in [
            ("add", Action::Add),
            ("remove", Action::Remove),
            ("change", Action::Change),
            ("bind", Action::Bind),
            ("unbind", Action::Unbind),
            ("move", Action::Move),
            ("online", Action::Online),
            ("offline", Action::Offline),
            ("frob", Action::Other("frob".into())),
        ] {
            let ev = parsed(&[&format!("{name}@/devices/x")]);
            assert_eq!(ev.action, want);
            assert_eq!(ev.action.to_string(), name);
        }
    }

    #[test]
    fn rejects_udev_and_malformed_messages() {
        let mut udev = b"libudev\0".to_vec();
        udev.extend_from_slice(&[0xfe, 0xed, 0xca, 0xfe, 0, 0, 0, 0]);
        assert_eq!(Uevent::parse(&udev), Err(UeventError::Udev));
        let bad_header = |h: &str| UeventError::BadHeader(h.into());
        let bad_value = |key, value: &str| UeventError::BadValue {
            key,
            value: value.into(),
        };
        let inconsistent = |key, header: &str, field: &str| UeventError::Inconsistent {
            key,
            header: header.into(),
            field: field.into(),
        };
        for (message, want) in [
            (&b""[..], UeventError::Empty),
            (b"\0\0", UeventError::Empty),
            (b"add\0", bad_header("add")),
            (b"@/x\0", bad_header("@/x")),
            (b"add@x\0", bad_header("add@x")),
            (
                b"add@/x\0NOEQUALS\0",
                UeventError::BadField("NOEQUALS".into()),
            ),
            (b"add@/x\0MAJOR=abc\0", bad_value("MAJOR", "abc")),
            (b"add@/x\0SEQNUM=+5\0", bad_value("SEQNUM", "+5")),
            (
                b"add@/x\0ACTION=remove\0",
                inconsistent("ACTION", "add", "remove"),
            ),
            (b"add@/x\0DEVPATH=/y\0", inconsistent("DEVPATH", "/x", "/y")),
            (b"add@/x\0\xff=1\0", UeventError::NotUtf8),
        ] {
            let shown = String::from_utf8_lossy(message);
            assert_eq!(Uevent::parse(message), Err(want), "{shown:?}");
        }
    }

    #[test]
    fn only_major_without_minor_gives_no_dev() {
        let ev = parsed(&["add@/x", "MAJOR=8"]);
        assert_eq!(ev.dev, None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Uevent::parse(&bytes);
        }

        #[test]
        fn structured_garbage_never_panics(parts in proptest::collection::vec("[a-zA-Z@/=0-9]{0,12}", 0..8)) {
            let joined = parts.join("\0");
            let _ = Uevent::parse(joined.as_bytes());
        }
    }
}
