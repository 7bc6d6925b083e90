//! Strict parsing of NVMe device names and `/dev` paths.
//!
//! Names follow the kernel's own formats (drivers/nvme/host/core.c, multipath.c):
//! `nvme<C>` controller char device, `nvme<S>n<N>` namespace block device (S is the
//! subsystem instance with native multipath, the controller instance without),
//! `nvme<S>c<C>n<N>` hidden multipath path node, and `p<P>` partitions of either.
//! Anything else is rejected, so a caller never acts on a device it misread.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use thiserror::Error;

const DEV_PREFIX: &str = "/dev/";
const BY_ID_DIR: &str = "disk/by-id/";

/// A parsed NVMe device name, or a `/dev/disk/by-id` link still to be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NvmeDevice {
    /// `nvme<C>`: the controller's character device.
    Controller { ctrl: u32 },
    /// `nvme<S>n<N>[p<P>]`: a namespace block device (the multipath head, or a
    /// controller-private namespace when native multipath is off).
    Namespace {
        instance: u32,
        ns: u32,
        partition: Option<u32>,
    },
    /// `nvme<S>c<C>n<N>[p<P>]`: one controller's path to a multipath namespace.
    Path {
        subsys: u32,
        ctrl: u32,
        ns: u32,
        partition: Option<u32>,
    },
    /// `/dev/disk/by-id/<link>`: a udev link, named but not resolved here.
    ByIdLink(String),
}

/// Why a string is not an NVMe device name or path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{input:?} is not an NVMe device name or path: {reason}")]
pub struct DevicePathError {
    pub input: String,
    pub reason: &'static str,
}

impl NvmeDevice {
    /// Parse a bare kernel name (`nvme0n1`) or a `/dev/...` path.
    pub fn parse(input: &str) -> Result<Self, DevicePathError> {
        let err = |reason| DevicePathError {
            input: input.to_string(),
            reason,
        };
        let name = input.strip_prefix(DEV_PREFIX).unwrap_or(input);
        if let (true, Some(link)) = (input.starts_with(DEV_PREFIX), name.strip_prefix(BY_ID_DIR)) {
            validate_link_name(link).map_err(err)?;
            return Ok(Self::ByIdLink(link.to_string()));
        }
        parse_kernel_name(name).map_err(err)
    }

    /// The path of this device's node under `dev_root` (normally `/dev`).
    pub fn dev_path(&self, dev_root: &Path) -> PathBuf {
        match self {
            Self::ByIdLink(link) => dev_root.join(BY_ID_DIR).join(link),
            other => dev_root.join(other.to_string()),
        }
    }

    /// The partition number, for partition devices.
    pub fn partition(&self) -> Option<u32> {
        match self {
            Self::Namespace { partition, .. } | Self::Path { partition, .. } => *partition,
            _ => None,
        }
    }

    /// The whole-disk device a partition belongs to (itself when not a partition).
    pub fn whole_disk(&self) -> Self {
        match self {
            Self::Namespace { instance, ns, .. } => Self::Namespace {
                instance: *instance,
                ns: *ns,
                partition: None,
            },
            Self::Path {
                subsys, ctrl, ns, ..
            } => Self::Path {
                subsys: *subsys,
                ctrl: *ctrl,
                ns: *ns,
                partition: None,
            },
            other => other.clone(),
        }
    }

    /// True for namespace heads / private namespaces and hidden paths, with or
    /// without partition: the names that appear under `/sys/block`.
    pub fn is_block(&self) -> bool {
        matches!(self, Self::Namespace { .. } | Self::Path { .. })
    }
}

impl FromStr for NvmeDevice {
    type Err = DevicePathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for NvmeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |f: &mut fmt::Formatter<'_>, p: &Option<u32>| match p {
            Some(p) => write!(f, "p{p}"),
            None => Ok(()),
        };
        match self {
            Self::Controller { ctrl } => write!(f, "nvme{ctrl}"),
            Self::Namespace {
                instance,
                ns,
                partition,
            } => {
                write!(f, "nvme{instance}n{ns}")?;
                part(f, partition)
            }
            Self::Path {
                subsys,
                ctrl,
                ns,
                partition,
            } => {
                write!(f, "nvme{subsys}c{ctrl}n{ns}")?;
                part(f, partition)
            }
            Self::ByIdLink(link) => write!(f, "{DEV_PREFIX}{BY_ID_DIR}{link}"),
        }
    }
}

fn validate_link_name(link: &str) -> Result<(), &'static str> {
    if link.is_empty() {
        return Err("empty by-id link name");
    }
    if link == "." || link == ".." {
        return Err("by-id link name is a relative directory");
    }
    if link.contains('/') || link.bytes().any(|b| b.is_ascii_control()) {
        return Err("by-id link name contains '/' or a control character");
    }
    Ok(())
}

fn parse_kernel_name(name: &str) -> Result<NvmeDevice, &'static str> {
    let rest = name.strip_prefix("nvme").ok_or("not an nvme device")?;
    let (first, rest) = take_number(rest)?;
    if rest.is_empty() {
        return Ok(NvmeDevice::Controller { ctrl: first });
    }
    let (ctrl, rest) = match rest.strip_prefix('c') {
        Some(r) => {
            let (c, r) = take_number(r)?;
            (Some(c), r)
        }
        None => (None, rest),
    };
    let rest = rest.strip_prefix('n').ok_or("unexpected characters")?;
    let (ns, rest) = take_number(rest)?;
    // The kernel allocates namespace head instances and partitions from 1.
    if ns == 0 {
        return Err("namespace number 0 does not exist");
    }
    let partition = match rest {
        "" => None,
        r => {
            let r = r.strip_prefix('p').ok_or("unexpected characters")?;
            let (p, r) = take_number(r)?;
            if !r.is_empty() {
                return Err("trailing characters");
            }
            if p == 0 {
                return Err("partition number 0 does not exist");
            }
            Some(p)
        }
    };
    Ok(match ctrl {
        Some(ctrl) => NvmeDevice::Path {
            subsys: first,
            ctrl,
            ns,
            partition,
        },
        None => NvmeDevice::Namespace {
            instance: first,
            ns,
            partition,
        },
    })
}

/// A canonical decimal (no sign, no leading zero) at the start of `s`.
fn take_number(s: &str) -> Result<(u32, &str), &'static str> {
    let len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, rest) = s.split_at(len);
    if digits.is_empty() {
        return Err("missing number");
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err("number with a leading zero");
    }
    let n = digits.parse().map_err(|_| "number out of range")?;
    Ok((n, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ns(instance: u32, ns: u32, partition: Option<u32>) -> NvmeDevice {
        NvmeDevice::Namespace {
            instance,
            ns,
            partition,
        }
    }

    #[test]
    fn parses_every_kernel_name_form() {
        assert_eq!(
            NvmeDevice::parse("nvme0").unwrap(),
            NvmeDevice::Controller { ctrl: 0 }
        );
        assert_eq!(NvmeDevice::parse("nvme0n1").unwrap(), ns(0, 1, None));
        assert_eq!(
            NvmeDevice::parse("/dev/nvme12n3p4").unwrap(),
            ns(12, 3, Some(4))
        );
        assert_eq!(
            NvmeDevice::parse("nvme0c1n1").unwrap(),
            NvmeDevice::Path {
                subsys: 0,
                ctrl: 1,
                ns: 1,
                partition: None
            }
        );
        assert_eq!(
            NvmeDevice::parse("/dev/nvme2c10n7p1").unwrap(),
            NvmeDevice::Path {
                subsys: 2,
                ctrl: 10,
                ns: 7,
                partition: Some(1)
            }
        );
        assert_eq!(
            NvmeDevice::parse(&format!("nvme{}n{}", u32::MAX, u32::MAX)).unwrap(),
            ns(u32::MAX, u32::MAX, None)
        );
    }

    #[test]
    fn by_id_link_keeps_the_link_name() {
        let d = NvmeDevice::parse("/dev/disk/by-id/nvme-uuid.afc78958-a1ea").unwrap();
        assert_eq!(d, NvmeDevice::ByIdLink("nvme-uuid.afc78958-a1ea".into()));
        assert_eq!(d.to_string(), "/dev/disk/by-id/nvme-uuid.afc78958-a1ea");
        assert_eq!(
            d.dev_path(Path::new("/x/dev")),
            PathBuf::from("/x/dev/disk/by-id/nvme-uuid.afc78958-a1ea")
        );
    }

    #[test]
    fn rejects_non_nvme_and_malformed_names_naming_the_input() {
        let cases = [
            "",
            "nvme",
            "/dev/",
            "sda",
            "/dev/sda1",
            "nvme01n1",
            "nvme0n01",
            "nvme0n1p01",
            "nvme0n",
            "nvmen1",
            "nvme0n1p",
            "nvme0c1",
            "nvme0cn1",
            "nvme0n0",
            "nvme0n1p0",
            "nvme0n1x",
            "nvme0n1p1p2",
            "nvme0n1 ",
            " nvme0n1",
            "nvme+1n1",
            "nvme4294967296n1",
            "nvme0n4294967296",
            "nvme-fabrics",
            "nvme-subsys0",
            "ng0n1",
            "/dev/../nvme0n1",
            "/dev//nvme0n1",
            "dev/nvme0n1",
            "/sys/block/nvme0n1",
            "disk/by-id/nvme-x",
            "/dev/disk/by-id/",
            "/dev/disk/by-id/..",
            "/dev/disk/by-id/../../sda",
            "/dev/disk/by-id/a\nb",
            "nvme\u{0663}n1",
        ];
        for bad in cases {
            let err = NvmeDevice::parse(bad).expect_err(bad);
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn partition_helpers() {
        let p = NvmeDevice::parse("nvme0c1n1p2").unwrap();
        assert_eq!(p.partition(), Some(2));
        assert_eq!(p.whole_disk().to_string(), "nvme0c1n1");
        assert!(p.is_block());
        assert!(!NvmeDevice::parse("nvme3").unwrap().is_block());
    }

    fn valid_device() -> impl Strategy<Value = NvmeDevice> {
        let part = proptest::option::of(1u32..);
        prop_oneof![
            any::<u32>().prop_map(|ctrl| NvmeDevice::Controller { ctrl }),
            (any::<u32>(), 1u32.., part.clone()).prop_map(|(i, n, p)| ns(i, n, p)),
            (any::<u32>(), any::<u32>(), 1u32.., part).prop_map(|(s, c, n, p)| {
                NvmeDevice::Path {
                    subsys: s,
                    ctrl: c,
                    ns: n,
                    partition: p,
                }
            }),
            "[A-Za-z0-9._:-]{1,40}"
                .prop_filter("not a dot dir", |s| s != "." && s != "..")
                .prop_map(NvmeDevice::ByIdLink),
        ]
    }

    proptest! {
        #[test]
        fn display_round_trips(dev in valid_device()) {
            let rendered = dev.to_string();
            prop_assert_eq!(NvmeDevice::parse(&rendered).unwrap(), dev.clone());
            if !matches!(dev, NvmeDevice::ByIdLink(_)) {
                let with_dev = format!("/dev/{rendered}");
                prop_assert_eq!(NvmeDevice::parse(&with_dev).unwrap(), dev);
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC*") {
            if let Ok(d) = NvmeDevice::parse(&s) {
                // Whatever is accepted renders to a name that parses to the same value.
                prop_assert_eq!(NvmeDevice::parse(&d.to_string()).unwrap(), d);
            }
        }

        #[test]
        fn nvme_shaped_strings_never_panic(s in "(/dev/)?nvme[0-9cnp]{0,12}") {
            let _ = NvmeDevice::parse(&s);
        }
    }
}
