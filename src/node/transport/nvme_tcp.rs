//! NVMe/TCP: connect through `/dev/nvme-fabrics`, resolve the namespace's block device from
//! sysfs (multipath heads, renumbered controllers), delete and rescan controllers.

use std::net::IpAddr;
use std::path::PathBuf;

use node_io::dev_num::DevNum;
use node_io::fabrics::{self, ConnectOptions, FabricsError, Nqn, OptionValue};
use node_io::sysfs::{self, Controller, ControllerState};
use node_io::wait::{self, SizeError, WaitError, Waker};
use tokio::time::Instant;

use super::{blocking_until, blocking_wait, Device, NvmeTarget};
use crate::node::error::NodeError;
use crate::node::host_identity::HostIdentity;

#[derive(Debug, Clone)]
pub struct NvmeTcp {
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
    pub nqn_prefix: String,
    pub host: HostIdentity,
}

/// Does `nqn` fall under the driver's prefix? The ONE predicate every disconnect goes
/// through (hosts may boot from RDS disks under the same vendor prefix).
pub fn under_prefix(prefix: &str, nqn: &str) -> bool {
    !prefix.is_empty() && nqn.len() > prefix.len() && nqn.starts_with(prefix)
}

fn same_address(c: &Controller, address: &str, port: u16) -> bool {
    let Some(a) = &c.address else { return false };
    let host_eq = match (
        a.traddr.parse::<std::net::IpAddr>(),
        address.parse::<std::net::IpAddr>(),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.traddr == address,
    };
    host_eq && a.trsvcid.as_deref().is_none_or(|p| p == port.to_string())
}

impl NvmeTcp {
    /// Refuses NQNs outside `--nqn-prefix`: such a controller must never be disconnected
    /// by this driver, so it must not be connected by it either.
    pub fn check_disconnectable(&self, nqn: &str) -> Result<(), NodeError> {
        if under_prefix(&self.nqn_prefix, nqn) {
            Ok(())
        } else {
            Err(NodeError::OutsidePrefix {
                nqn: nqn.to_owned(),
                prefix: self.nqn_prefix.clone(),
            })
        }
    }

    fn device(&self, b: sysfs::BlockDevice) -> Device {
        Device {
            path: self.dev_root.join(&b.name),
            name: b.name,
            dev: b.dev,
            size_bytes: b.size_bytes,
        }
    }

    pub fn resolve(&self, nqn: &str) -> Result<Option<Device>, NodeError> {
        match sysfs::resolve_block_device(&self.sys_root, nqn) {
            Ok(d) => Ok(d.map(|b| self.device(b))),
            Err(e @ sysfs::SysfsError::AmbiguousNamespaces { .. }) => {
                Err(NodeError::AmbiguousNamespaces(e))
            }
            Err(e) => Err(NodeError::Sysfs(e)),
        }
    }

    /// The device numbers of every namespace block device of `nqn` now.
    pub fn kernel_devices(&self, nqn: &str) -> Result<Vec<DevNum>, NodeError> {
        let found = sysfs::list_block_devices(&self.sys_root, nqn).map_err(NodeError::Sysfs)?;
        Ok(found.into_iter().map(|b| b.dev).collect())
    }

    /// Controllers of `nqn` that are connected or reconnecting (not being deleted).
    fn usable_controllers(&self, nqn: &str) -> Result<Vec<Controller>, NodeError> {
        let mut c = sysfs::controllers_for_nqn(&self.sys_root, nqn).map_err(NodeError::Sysfs)?;
        c.retain(|c| !c.state.is_gone());
        Ok(c)
    }

    /// The connect string's options for `t` at `ip` (the kernel takes only numeric addresses).
    fn options(&self, t: &NvmeTarget, ip: IpAddr) -> Result<ConnectOptions, FabricsError> {
        let mut o = ConnectOptions::new(&ip.to_string(), t.port, t.nqn.as_str())?;
        o.hostnqn = Some(Nqn::new(self.host.host_nqn.clone())?);
        o.hostid = Some(OptionValue::new("hostid", self.host.host_id.clone())?);
        o.ctrl_loss_tmo = Some(t.tunables.ctrl_loss_tmo);
        o.reconnect_delay = u32::try_from(t.tunables.reconnect_delay).ok();
        o.keep_alive_tmo = u32::try_from(t.tunables.keep_alive_tmo).ok();
        Ok(o)
    }

    /// The kernel takes only a numeric `traddr` (it parses it with inet_pton): a host name
    /// in `nvmeAddress` is resolved here, on the node, at every connect, as nvme-cli does.
    /// Every address of the name counts when looking for an existing controller; the first
    /// (the resolver's preferred order) is the one connected.
    async fn resolve_address(
        &self,
        t: &NvmeTarget,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, NodeError> {
        if let Some(ip) = t.address.ip() {
            return Ok(vec![ip]);
        }
        let fail = |why: String| NodeError::Unresolvable {
            address: t.address.to_string(),
            why,
        };
        match tokio::time::timeout_at(
            deadline,
            tokio::net::lookup_host((t.address.as_str(), t.port)),
        )
        .await
        {
            Err(_) => Err(NodeError::LookupDeadline {
                address: t.address.to_string(),
            }),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Ok(Ok(addrs)) => {
                let mut ips: Vec<IpAddr> = Vec::new();
                for a in addrs {
                    if !ips.contains(&a.ip()) {
                        ips.push(a.ip());
                    }
                }
                if ips.is_empty() {
                    return Err(fail("no address".into()));
                }
                Ok(ips)
            }
        }
    }

    /// Connects unless a live or reconnecting controller for the same NQN and address exists.
    pub async fn connect(&self, t: &NvmeTarget, deadline: Instant) -> Result<(), NodeError> {
        let ips = self.resolve_address(t, deadline).await?;
        let existing = self.usable_controllers(t.nqn.as_str())?;
        if existing.iter().any(|c| {
            ips.iter()
                .any(|ip| same_address(c, &ip.to_string(), t.port))
        }) {
            return Ok(());
        }
        let ip = ips[0];
        if t.address.ip().is_none() {
            tracing::info!(nqn = %t.nqn, address = %t.address, ip = %ip, "resolved the RDS address");
        }
        let opts = self.options(t, ip).map_err(NodeError::ConnectOptions)?;
        let dev_root = self.dev_root.clone();
        let what = format!("connecting {} at {ip}:{}", t.nqn, t.port);
        let failed = |source| NodeError::ConnectFailed {
            nqn: t.nqn.to_string(),
            address: ip.to_string(),
            port: t.port,
            source,
        };
        let w = what.clone();
        match blocking_until(what, deadline, move || {
            Ok::<_, NodeError>(match fabrics::connect(&dev_root, &opts) {
                Ok(reply) => {
                    tracing::info!(
                        instance = reply.instance,
                        "{w}: connected as nvme{}",
                        reply.instance
                    );
                    Ok(())
                }
                // The kernel already has this exact controller: that is what we wanted.
                Err(FabricsError::AlreadyConnected) => Ok(()),
                Err(e) => Err(e),
            })
        })
        .await?
        {
            Ok(()) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }

    pub async fn attach(&self, t: &NvmeTarget, deadline: Instant) -> Result<Device, NodeError> {
        self.connect(t, deadline).await?;
        let (sys, nqn) = (self.sys_root.clone(), t.nqn.to_string());
        let std_deadline = deadline.into_std();
        let found = blocking_wait(
            format!("waiting for the device of {nqn}"),
            deadline,
            move || {
                let mut waker = Waker::open();
                wait::wait_for_block_device(&sys, &nqn, std_deadline, &mut waker).map_err(|e| {
                    match e {
                        WaitError::Timeout { .. } => NodeError::NoNamespace(e),
                        WaitError::Sysfs { .. } => NodeError::WaitState(e),
                    }
                })
            },
        )
        .await?;
        Ok(self.device(found.device))
    }

    /// Deletes EVERY controller of `nqn` (multipath has several) and waits until they are
    /// gone. Refused outside the prefix.
    pub async fn disconnect(&self, nqn: &str, deadline: Instant) -> Result<(), NodeError> {
        self.check_disconnectable(nqn)?;
        let (sys, nqn_s) = (self.sys_root.clone(), nqn.to_owned());
        blocking_until(format!("disconnecting {nqn}"), deadline, move || {
            let done = sysfs::disconnect_subsystem(&sys, &nqn_s).map_err(|source| {
                NodeError::Disconnect {
                    nqn: nqn_s.clone(),
                    source,
                }
            })?;
            for (c, _) in done {
                tracing::info!(controller = %c.name(), nqn = %nqn_s, "deleted controller");
            }
            Ok::<_, NodeError>(())
        })
        .await?;
        self.wait_gone(nqn, deadline).await
    }

    /// Waits until no controller of `nqn` is left, woken by uevents (polling only when
    /// netlink is unavailable).
    async fn wait_gone(&self, nqn: &str, deadline: Instant) -> Result<(), NodeError> {
        let (sys, nqn_s) = (self.sys_root.clone(), nqn.to_owned());
        let std_deadline = deadline.into_std();
        blocking_wait(
            format!("waiting for {nqn} to disconnect"),
            deadline,
            move || {
                wait::wait_for_controllers_gone(&sys, &nqn_s, std_deadline, &mut Waker::open())
                    .map(|_| ())
                    .map_err(NodeError::Detach)
            },
        )
        .await
    }

    /// Waits until the device of `nqn` is at least `bytes` long (the kernel applies a rescan
    /// asynchronously), woken by its `change` uevent.
    pub async fn wait_for_size(
        &self,
        nqn: &str,
        bytes: u64,
        deadline: Instant,
    ) -> Result<Device, NodeError> {
        let (sys, nqn_s) = (self.sys_root.clone(), nqn.to_owned());
        let std_deadline = deadline.into_std();
        let found = blocking_wait(format!("waiting for {nqn} to grow"), deadline, move || {
            wait::wait_for_size(&sys, &nqn_s, bytes, std_deadline, &mut Waker::open()).map_err(
                |e| match e {
                    SizeError::NoDevice { nqn } => NodeError::DeviceMissing { target: nqn },
                    e @ SizeError::TooSmall { .. } => NodeError::NotGrown(e),
                    e @ SizeError::Sysfs { .. } => NodeError::Size(e),
                },
            )
        })
        .await?;
        Ok(self.device(found.device))
    }

    pub async fn rescan(&self, nqn: &str, deadline: Instant) -> Result<(), NodeError> {
        let ctrls = self.usable_controllers(nqn)?;
        if ctrls.is_empty() {
            return Err(NodeError::DeviceMissing {
                target: nqn.to_owned(),
            });
        }
        let (sys, nqn_s) = (self.sys_root.clone(), nqn.to_owned());
        blocking_until(format!("rescanning {nqn}"), deadline, move || {
            for c in ctrls {
                c.rescan(&sys).map_err(|source| NodeError::Rescan {
                    nqn: nqn_s.clone(),
                    source,
                })?;
            }
            Ok(())
        })
        .await
    }

    pub fn condition(&self, nqn: &str) -> Option<String> {
        let ctrls = match sysfs::controllers_for_nqn(&self.sys_root, nqn) {
            Ok(c) => c,
            Err(e) => return Some(format!("cannot read the NVMe controllers of {nqn}: {e}")),
        };
        if ctrls.is_empty() {
            return Some(format!(
                "no NVMe controller for {nqn}: the connection was lost and ctrl_loss_tmo expired; the node's reconnect reconciler is retrying with backoff"
            ));
        }
        if ctrls.iter().any(|c| c.state == ControllerState::Live) {
            return None;
        }
        let list: Vec<String> = ctrls
            .iter()
            .map(|c| format!("{} ({})", c.name(), c.state))
            .collect();
        Some(format!(
            "no live NVMe controller for {nqn}: {}; I/O waits until the RDS answers again",
            list.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::context::Tunables;
    use crate::volume::NvmeAddress;
    use node_io::dev_num::DevNum;
    use node_io::testing::{FakeSys, NS1};
    use std::path::Path;
    use std::time::Duration;
    use tonic::Code;

    const PREFIX: &str = "nqn.2000-02.com.mikrotik:pvc-";
    const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-1";
    const OTHER: &str = "nqn.2000-02.com.mikrotik:pvc-2";
    const BOOT: &str = "nqn.2000-02.com.mikrotik:boot";

    fn nvme(s: &FakeSys, dev_root: &Path) -> NvmeTcp {
        NvmeTcp {
            sys_root: s.root().to_owned(),
            dev_root: dev_root.to_owned(),
            nqn_prefix: PREFIX.into(),
            host: HostIdentity {
                host_nqn: "nqn.2014-08.org.nvmexpress:uuid:6f1c0a4e-8a3b-4c1d-9e2f-0123456789ab"
                    .into(),
                host_id: "6f1c0a4e-8a3b-4c1d-9e2f-0123456789ab".into(),
            },
        }
    }

    fn target(nqn: &str, port: u16) -> NvmeTarget {
        NvmeTarget {
            nqn: Nqn::new(nqn).unwrap(),
            address: NvmeAddress::parse("127.0.0.1").unwrap(),
            port,
            tunables: Tunables::default(),
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(3)
    }

    #[test]
    fn resolves_the_multipath_head_not_a_hidden_path() {
        let s = FakeSys::multipath_y_of(NQN);
        let d = nvme(&s, Path::new("/dev")).resolve(NQN).unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.dev), ("nvme0n1", DevNum::new(259, 1)));
        assert_eq!(d.path, Path::new("/dev/nvme0n1"));
        assert_eq!(d.size_bytes, 131072 * 512);
    }

    #[test]
    fn after_renumbering_the_new_controllers_device_is_found() {
        // nvme0 lost and being deleted; the reconnect came back as nvme3 with nvme3n1.
        let s = FakeSys::renumbered(NQN);
        let d = nvme(&s, Path::new("/dev")).resolve(NQN).unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.dev), ("nvme3n1", DevNum::new(259, 7)));
    }

    #[tokio::test]
    async fn disconnect_deletes_every_controller_of_the_nqn_and_waits_until_gone() {
        let s = FakeSys::new();
        s.controller(0, NQN, 4420, "live")
            .controller(1, NQN, 4421, "connecting")
            .controller(2, OTHER, 4420, "live")
            .subsystem(0, NQN, &[0, 1])
            .mp_head(0, &NS1);
        let kernel = s.kernel_deletes(vec![0, 1, 2], Duration::from_secs(3));
        nvme(&s, Path::new("/dev"))
            .disconnect(NQN, soon())
            .await
            .unwrap();
        kernel.join().unwrap();
        for c in [0, 1] {
            assert_eq!(
                std::fs::read_to_string(s.ctl_dir(c).join("delete_controller")).unwrap(),
                "1"
            );
        }
        assert_eq!(
            std::fs::read_to_string(s.ctl_dir(2).join("delete_controller")).unwrap(),
            "",
            "other NQN untouched"
        );
        assert!(sysfs::controllers_for_nqn(s.root(), NQN)
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn disconnect_that_the_kernel_does_not_finish_is_an_error_not_success() {
        let s = FakeSys::new();
        s.controller(0, NQN, 4420, "live");
        let e = nvme(&s, Path::new("/dev"))
            .disconnect(NQN, Instant::now() + Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");
        assert!(
            e.to_string().contains("nvme0") && e.to_string().contains("pvc-1"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_disconnect_outside_the_prefix_is_refused_and_touches_nothing() {
        let s = FakeSys::new();
        s.controller(0, BOOT, 4420, "live");
        let n = nvme(&s, Path::new("/dev"));
        let e = n.disconnect(BOOT, soon()).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.to_string().contains("--nqn-prefix"), "{e}");
        assert_eq!(
            std::fs::read_to_string(s.ctl_dir(0).join("delete_controller")).unwrap(),
            ""
        );
        // The bare prefix is not "under" it either.
        assert!(
            !under_prefix(PREFIX, PREFIX) && !under_prefix("", NQN) && under_prefix(PREFIX, NQN)
        );
    }

    #[tokio::test]
    async fn an_existing_controller_for_the_same_address_counts_as_connected() {
        // dev_root without nvme-fabrics: any real connect attempt would fail.
        let dev = tempfile::tempdir().unwrap();
        let s = FakeSys::new();
        s.controller(0, NQN, 4420, "connecting");
        let n = nvme(&s, dev.path());
        n.connect(&target(NQN, 4420), soon()).await.unwrap();
        // Another port is another path: a connect is attempted (and fails here, naming it).
        let e = n.connect(&target(NQN, 4421), soon()).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e}");
        assert!(
            e.to_string().contains("nvme-fabrics") && e.to_string().contains("4421"),
            "{e}"
        );
        // A controller being deleted does not count.
        s.set_state(0, "deleting");
        assert!(n.connect(&target(NQN, 4420), soon()).await.is_err());
    }

    #[tokio::test]
    async fn a_host_name_is_resolved_before_it_reaches_the_kernel() {
        let dev = tempfile::tempdir().unwrap();
        let s = FakeSys::new();
        s.controller(0, NQN, 4420, "live");
        let n = nvme(&s, dev.path());
        // "localhost" names 127.0.0.1 (among others): the existing controller is found.
        let by_name = NvmeTarget {
            address: NvmeAddress::parse("localhost").unwrap(),
            ..target(NQN, 4420)
        };
        n.connect(&by_name, soon()).await.unwrap();
        // A connect that does go to the kernel carries the numeric address.
        let e = n
            .connect(
                &NvmeTarget {
                    port: 4421,
                    ..by_name
                },
                soon(),
            )
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(":4421") && !msg.contains("localhost:4421"),
            "{msg}"
        );
        // A name that does not resolve is UNAVAILABLE naming the name and the fix (or, where
        // the resolver hangs without a network, DEADLINE_EXCEEDED at the RPC's deadline).
        let bad = NvmeTarget {
            address: NvmeAddress::parse("no-such-rds.invalid").unwrap(),
            ..target(NQN, 4420)
        };
        let e = n.connect(&bad, soon()).await.unwrap_err();
        assert!(
            matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{e}"
        );
        assert!(
            e.to_string().contains("no-such-rds.invalid") && e.to_string().contains("nvmeAddress"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn rescan_writes_each_usable_controller() {
        let s = FakeSys::new();
        s.controller(0, NQN, 4420, "live")
            .controller(1, NQN, 4421, "deleting");
        nvme(&s, Path::new("/dev"))
            .rescan(NQN, soon())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(s.ctl_dir(0).join("rescan_controller")).unwrap(),
            "1"
        );
        assert_eq!(
            std::fs::read_to_string(s.ctl_dir(1).join("rescan_controller")).unwrap(),
            ""
        );
    }

    #[test]
    fn condition_reports_a_lost_or_not_live_controller() {
        let s = FakeSys::new();
        let n = nvme(&s, Path::new("/dev"));
        assert!(n.condition(NQN).unwrap().contains("ctrl_loss_tmo"));
        s.controller(0, NQN, 4420, "connecting");
        let m = n.condition(NQN).unwrap();
        assert!(m.contains("nvme0 (connecting)"), "{m}");
        s.controller(1, NQN, 4421, "live");
        assert_eq!(n.condition(NQN), None);
    }
}
