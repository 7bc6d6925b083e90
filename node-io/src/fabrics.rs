//! NVMe/TCP connect options for `/dev/nvme-fabrics`, and the kernel's reply.
//!
//! The kernel parses one `write()` of `key=value,key=value` (drivers/nvme/host/fabrics.c,
//! `nvmf_parse_options`), so a value holding `,` `=` or whitespace would inject or
//! truncate options. Values are therefore validated newtypes: a `ConnectOptions` that
//! exists always renders to a safe string.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use crate::nqn::{Nqn, NqnError, NQN_MAX_LEN};

/// The NVMe/TCP port (IANA-assigned to NVMe over Fabrics; the NVMe/TCP transport
/// specification's default `trsvcid`). RouterOS exports disks on it unless told otherwise.
pub const NVME_TCP_PORT: u16 = 4420;

#[derive(Debug, Error)]
pub enum FabricsError {
    #[error(
        "{field} value {value:?} is empty or contains ',', '=', whitespace or a control character"
    )]
    InvalidValue { field: &'static str, value: String },
    #[error(transparent)]
    InvalidNqn(#[from] NqnError),
    #[error("unexpected reply from nvme-fabrics: {0:?}")]
    BadReply(String),
    #[error("controller already connected (EALREADY)")]
    AlreadyConnected,
    #[error("short write to nvme-fabrics: {written} of {len} bytes")]
    ShortWrite { written: usize, len: usize },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn check_value(field: &'static str, value: &str) -> Result<(), FabricsError> {
    let bad = |c: char| c == ',' || c == '=' || c.is_whitespace() || c.is_control();
    if value.is_empty() || value.chars().any(bad) {
        return Err(FabricsError::InvalidValue {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// A plain option value (address, host id) checked against the separator rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OptionValue(String);

impl OptionValue {
    pub fn new(field: &'static str, s: impl Into<String>) -> Result<Self, FabricsError> {
        let s = s.into();
        check_value(field, &s)?;
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Options for one NVMe/TCP connect. The transport is always `tcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    pub traddr: OptionValue,
    pub trsvcid: u16,
    pub nqn: Nqn,
    pub hostnqn: Option<Nqn>,
    pub hostid: Option<OptionValue>,
    /// Seconds; negative means reconnect forever (kernel semantics).
    pub ctrl_loss_tmo: Option<i32>,
    pub reconnect_delay: Option<u32>,
    pub keep_alive_tmo: Option<u32>,
    pub nr_io_queues: Option<u32>,
}

impl ConnectOptions {
    /// Options with the required fields; set the optional ones on the returned value.
    pub fn new(traddr: &str, trsvcid: u16, nqn: &str) -> Result<Self, FabricsError> {
        Ok(Self {
            traddr: OptionValue::new("traddr", traddr)?,
            trsvcid,
            nqn: Nqn::new(nqn)?,
            hostnqn: None,
            hostid: None,
            ctrl_loss_tmo: None,
            reconnect_delay: None,
            keep_alive_tmo: None,
            nr_io_queues: None,
        })
    }
}

impl fmt::Display for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "transport=tcp,traddr={},trsvcid={},nqn={}",
            self.traddr, self.trsvcid, self.nqn
        )?;
        if let Some(v) = &self.hostnqn {
            write!(f, ",hostnqn={v}")?;
        }
        if let Some(v) = &self.hostid {
            write!(f, ",hostid={v}")?;
        }
        if let Some(v) = self.ctrl_loss_tmo {
            write!(f, ",ctrl_loss_tmo={v}")?;
        }
        if let Some(v) = self.reconnect_delay {
            write!(f, ",reconnect_delay={v}")?;
        }
        if let Some(v) = self.keep_alive_tmo {
            write!(f, ",keep_alive_tmo={v}")?;
        }
        if let Some(v) = self.nr_io_queues {
            write!(f, ",nr_io_queues={v}")?;
        }
        Ok(())
    }
}

/// The kernel's answer to a successful connect: `instance=N,cntlid=M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectReply {
    /// The new controller is `nvme<instance>`.
    pub instance: u32,
    pub cntlid: u16,
}

impl ConnectReply {
    pub fn parse(reply: &str) -> Result<Self, FabricsError> {
        let bad = || FabricsError::BadReply(reply.to_string());
        let body = reply.strip_suffix('\n').unwrap_or(reply);
        let (mut instance, mut cntlid) = (None, None);
        for token in body.split(',') {
            let (k, v) = token.split_once('=').ok_or_else(bad)?;
            let slot = match k {
                "instance" => &mut instance,
                "cntlid" => &mut cntlid,
                // Newer kernels may add keys; they do not change what we need.
                _ => continue,
            };
            if slot.is_some() {
                return Err(bad());
            }
            *slot = Some(crate::dev_num::parse_decimal(v).ok_or_else(bad)?);
        }
        Ok(Self {
            instance: instance.ok_or_else(bad)?,
            cntlid: cntlid.and_then(|c| u16::try_from(c).ok()).ok_or_else(bad)?,
        })
    }
}

/// Connect by writing `opts` to `<dev_root>/nvme-fabrics` and reading the reply.
/// Blocks for as long as the kernel's connect takes; callers run it off the async
/// runtime with their own deadline.
pub fn connect(dev_root: &Path, opts: &ConnectOptions) -> Result<ConnectReply, FabricsError> {
    let path = dev_root.join("nvme-fabrics");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| FabricsError::Io {
            op: "open",
            path: path.clone(),
            source,
        })?;
    connect_on(&mut file, &path, opts)
}

/// The protocol of [`connect`] on any read/write handle (tests use a fake device).
fn connect_on<F: Read + Write>(
    dev: &mut F,
    path: &Path,
    opts: &ConnectOptions,
) -> Result<ConnectReply, FabricsError> {
    let line = opts.to_string();
    // The kernel parses exactly one write(), so it must not be split.
    let written = match dev.write(line.as_bytes()) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EALREADY) => {
            return Err(FabricsError::AlreadyConnected)
        }
        Err(source) => {
            return Err(FabricsError::Io {
                op: "write",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if written != line.len() {
        return Err(FabricsError::ShortWrite {
            written,
            len: line.len(),
        });
    }
    let mut reply = String::new();
    dev.read_to_string(&mut reply)
        .map_err(|source| FabricsError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?;
    ConnectReply::parse(&reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NQN: &str = "nqn.2024-01.io.example:vol1";
    const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:0e0e0e0e-1111-2222-3333-444444444444";

    #[test]
    fn renders_the_minimal_string() {
        let o = ConnectOptions::new("127.0.0.1", 4420, NQN).unwrap();
        assert_eq!(
            o.to_string(),
            "transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=nqn.2024-01.io.example:vol1"
        );
    }

    #[test]
    fn renders_every_option_in_order() {
        let mut o = ConnectOptions::new("fd00::1", 4421, NQN).unwrap();
        o.hostnqn = Some(Nqn::new(HOSTNQN).unwrap());
        o.hostid =
            Some(OptionValue::new("hostid", "0e0e0e0e-1111-2222-3333-444444444444").unwrap());
        o.ctrl_loss_tmo = Some(-1);
        o.reconnect_delay = Some(2);
        o.keep_alive_tmo = Some(5);
        o.nr_io_queues = Some(4);
        assert_eq!(
            o.to_string(),
            format!(
                "transport=tcp,traddr=fd00::1,trsvcid=4421,nqn={NQN},hostnqn={HOSTNQN},\
                 hostid=0e0e0e0e-1111-2222-3333-444444444444,ctrl_loss_tmo=-1,\
                 reconnect_delay=2,keep_alive_tmo=5,nr_io_queues=4"
            )
        );
    }

    #[test]
    fn rejects_values_that_could_inject_options() {
        for bad in [
            "",
            "1.2.3.4,nqn=x",
            "a=b",
            "a b",
            "a\tb",
            "a\nb",
            "a\u{7f}",
            "a\u{a0}b",
        ] {
            assert!(
                matches!(
                    ConnectOptions::new(bad, 4420, NQN),
                    Err(FabricsError::InvalidValue {
                        field: "traddr",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        for bad in ["nqn.x,hostnqn=y", "nqn.a b", "nqn.a=b", "nqn.\n"] {
            assert!(Nqn::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_invalid_nqn_is_refused_by_the_options() {
        assert!(matches!(
            ConnectOptions::new("10.0.0.1", NVME_TCP_PORT, "iqn.2024-01.x:y"),
            Err(FabricsError::InvalidNqn(_))
        ));
    }

    #[test]
    fn parses_kernel_replies() {
        let want = ConnectReply {
            instance: 0,
            cntlid: 1,
        };
        assert_eq!(ConnectReply::parse("instance=0,cntlid=1").unwrap(), want);
        assert_eq!(ConnectReply::parse("instance=0,cntlid=1\n").unwrap(), want);
        assert_eq!(
            ConnectReply::parse("cntlid=2,instance=11,future=x\n").unwrap(),
            ConnectReply {
                instance: 11,
                cntlid: 2
            }
        );
        for bad in [
            "",
            "\n",
            "instance=0",
            "cntlid=1",
            "instance=0,cntlid=70000",
            "instance=-1,cntlid=1",
            "instance=0,cntlid=1,instance=2",
            "instance=0,cntlid=1\n\n",
            "instance=0;cntlid=1",
            "instance=0,cntlid=1,junk",
        ] {
            assert!(
                matches!(ConnectReply::parse(bad), Err(FabricsError::BadReply(_))),
                "{bad:?}"
            );
        }
    }

    /// A stand-in for /dev/nvme-fabrics: records the write, then returns a reply.
    struct FakeFabrics {
        written: Vec<u8>,
        writes: usize,
        write_err: Option<i32>,
        reply: io::Cursor<Vec<u8>>,
    }

    impl FakeFabrics {
        fn new(reply: &str, write_err: Option<i32>) -> Self {
            Self {
                written: Vec::new(),
                writes: 0,
                write_err,
                reply: io::Cursor::new(reply.as_bytes().to_vec()),
            }
        }
    }

    impl Write for FakeFabrics {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            if let Some(e) = self.write_err {
                return Err(io::Error::from_raw_os_error(e));
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Read for FakeFabrics {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reply.read(buf)
        }
    }

    #[test]
    fn connect_writes_once_and_parses_the_reply() {
        let opts = ConnectOptions::new("127.0.0.1", 4420, NQN).unwrap();
        let mut dev = FakeFabrics::new("instance=3,cntlid=7\n", None);
        let r = connect_on(&mut dev, Path::new("/dev/nvme-fabrics"), &opts).unwrap();
        assert_eq!(
            r,
            ConnectReply {
                instance: 3,
                cntlid: 7
            }
        );
        assert_eq!(dev.writes, 1);
        assert_eq!(dev.written, opts.to_string().into_bytes());
    }

    #[test]
    fn connect_maps_ealready_and_other_errors() {
        let opts = ConnectOptions::new("127.0.0.1", 4420, NQN).unwrap();
        let mut dev = FakeFabrics::new("", Some(libc::EALREADY));
        assert!(matches!(
            connect_on(&mut dev, Path::new("f"), &opts),
            Err(FabricsError::AlreadyConnected)
        ));
        let mut dev = FakeFabrics::new("", Some(libc::EINVAL));
        match connect_on(&mut dev, Path::new("f"), &opts) {
            Err(FabricsError::Io {
                op: "write",
                source,
                ..
            }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EINVAL))
            }
            other => panic!("{other:?}"),
        }
        // A refused connect leaves an empty reply.
        let mut dev = FakeFabrics::new("", None);
        assert!(matches!(
            connect_on(&mut dev, Path::new("f"), &opts),
            Err(FabricsError::BadReply(_))
        ));
    }

    #[test]
    fn connect_reports_a_missing_device_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ConnectOptions::new("127.0.0.1", 4420, NQN).unwrap();
        match connect(dir.path(), &opts) {
            Err(FabricsError::Io {
                op: "open", path, ..
            }) => {
                assert_eq!(path, dir.path().join("nvme-fabrics"))
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn replies_never_panic(s in "\\PC*") {
            let _ = ConnectReply::parse(&s);
        }

        #[test]
        fn rendered_options_split_back_into_the_same_pairs(
            traddr in "[0-9a-f.:]{1,39}",
            port in any::<u16>(),
            suffix in "[a-z0-9.:-]{1,50}",
            tmo in proptest::option::of(any::<i32>()),
        ) {
            let nqn = format!("nqn.2024-01.io.example:{suffix}");
            let mut o = ConnectOptions::new(&traddr, port, &nqn).unwrap();
            o.ctrl_loss_tmo = tmo;
            let s = o.to_string();
            let pairs: Vec<(&str, &str)> = s.split(',').map(|p| p.split_once('=').unwrap()).collect();
            prop_assert_eq!(pairs[1], ("traddr", traddr.as_str()));
            prop_assert_eq!(pairs[2].1.parse::<u16>().unwrap(), port);
            prop_assert_eq!(pairs.len(), 4 + usize::from(tmo.is_some()));
        }
    }
}
