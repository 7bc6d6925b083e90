//! How a volume's block device reaches this node: NVMe/TCP through the kernel (production)
//! or a loop device over the simulator's backing file (development and tests).
//!
//! Both answer the same questions — attach, resolve, detach, rescan — and resolve the device
//! FRESH on every call: controllers renumber after a reconnect, loop numbers are reused after
//! a detach, so a cached name can point at someone else's disk.

mod loop_device;
mod nvme_tcp;

use std::fmt;
use std::path::PathBuf;

use node_io::dev_num::DevNum;
use tokio::time::Instant;

use crate::node::error::NodeError;
use crate::node::mount::run_tool;
use crate::volume::context::{Tunables, VolumeContext};
use crate::volume::NvmeAddress;
use node_io::nqn::Nqn;

/// How long past its deadline a node-io wait (which answers by its deadline itself, within
/// milliseconds) is given to say what it saw before the blocking guard answers with a bare
/// "deadline exceeded": on a loaded node the guard's timer could win that race, and the
/// answer would lose the controllers, states and sizes the wait names.
const WAIT_REPORT_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// [`blocking_until`] for a node-io wait that honours `deadline` itself: the
/// guard (for a thread stuck in a sysfs read) fires [`WAIT_REPORT_GRACE`] later.
async fn blocking_wait<T: Send + 'static>(
    what: String,
    deadline: Instant,
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    blocking_until(what, deadline + WAIT_REPORT_GRACE, f).await
}

pub use self::loop_device::LoopDevices;
pub use self::nvme_tcp::{under_prefix, NvmeTcp};

/// A volume's block device as resolved just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Kernel name (`nvme1n1`, `loop3`).
    pub name: String,
    pub dev: DevNum,
    pub size_bytes: u64,
    /// `<dev-root>/<name>`.
    pub path: PathBuf,
}

/// What a transport attaches for a volume, in that transport's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An NVMe/TCP subsystem on the RDS, and how to (re)connect to it.
    NvmeTcp(NvmeTarget),
    /// The backing file on this node that a loop device serves (development transport):
    /// an absolute path under `--loop-data-dir`.
    LoopFile(PathBuf),
}

/// An NVMe/TCP subsystem and the connect parameters the reconciler needs to bring it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeTarget {
    pub nqn: Nqn,
    /// An IP address or a host name, resolved on the node at every connect.
    pub address: NvmeAddress,
    pub port: u16,
    pub tunables: Tunables,
}

impl Target {
    /// The transport that attaches this target (`nvme-tcp` or `loop`).
    pub fn kind(&self) -> &'static str {
        match self {
            Target::NvmeTcp(_) => "nvme-tcp",
            Target::LoopFile(_) => "loop",
        }
    }

    /// The key a stage and the reconciler share to exclude each other on one target, and
    /// the target's name in records: the NQN, or the backing file's path.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::NvmeTcp(t) => f.write_str(t.nqn.as_str()),
            Target::LoopFile(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Transport {
    NvmeTcp(NvmeTcp),
    Loop(LoopDevices),
}

impl Transport {
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::NvmeTcp(_) => "nvme-tcp",
            Transport::Loop(_) => "loop",
        }
    }

    /// The target of a volume from its context (nvme: NQN, checked against the prefix so
    /// that whatever we connect we can also disconnect; loop: the backing file).
    pub fn target(&self, ctx: &VolumeContext) -> Result<Target, NodeError> {
        Ok(match self {
            Transport::NvmeTcp(n) => {
                n.check_disconnectable(ctx.nqn.as_str())?;
                Target::NvmeTcp(NvmeTarget {
                    nqn: ctx.nqn.clone(),
                    address: ctx.nvme_address.clone(),
                    port: ctx.nvme_port,
                    tunables: ctx.tunables,
                })
            }
            Transport::Loop(l) => Target::LoopFile(l.backing_file(ctx.volume_file.as_ref())?),
        })
    }

    fn mismatch(&self, t: &Target) -> NodeError {
        NodeError::WrongTransport {
            target: t.to_string(),
            target_kind: t.kind(),
            transport: self.kind(),
        }
    }

    /// Makes the device present (idempotent) and returns it, within `deadline`.
    pub async fn attach(&self, t: &Target, deadline: Instant) -> Result<Device, NodeError> {
        match (self, t) {
            (Transport::NvmeTcp(n), Target::NvmeTcp(t)) => n.attach(t, deadline).await,
            (Transport::Loop(l), Target::LoopFile(f)) => l.attach(f, deadline).await,
            _ => Err(self.mismatch(t)),
        }
    }

    /// The device now; `DeviceMissing` naming the target when it is not present.
    pub async fn resolve_present(&self, t: &Target) -> Result<Device, NodeError> {
        self.resolve(t).await?.ok_or_else(|| not_attached(t))
    }

    /// The device now, or None when it is not present.
    pub async fn resolve(&self, t: &Target) -> Result<Option<Device>, NodeError> {
        let (this, target) = (self.clone(), t.clone());
        // sysfs reads do not block on the device, but keep them off the async threads.
        tokio::task::spawn_blocking(move || match (&this, &target) {
            (Transport::NvmeTcp(n), Target::NvmeTcp(t)) => n.resolve(t.nqn.as_str()),
            (Transport::Loop(l), Target::LoopFile(f)) => l.resolve(f),
            _ => Err(this.mismatch(&target)),
        })
        .await
        .map_err(|source| NodeError::Task {
            what: format!("resolving the device of {t}"),
            source,
        })?
    }

    /// Every device number the kernel attributes to `t` now, one being detached included (a
    /// loop device waiting for its last close over the target's file; every namespace device
    /// of the NVMe subsystem). Read from sysfs, never from a record.
    pub fn kernel_devices(&self, t: &Target) -> Result<Vec<DevNum>, NodeError> {
        match (self, t) {
            (Transport::NvmeTcp(n), Target::NvmeTcp(t)) => n.kernel_devices(t.nqn.as_str()),
            (Transport::Loop(l), Target::LoopFile(f)) => l.kernel_devices(f),
            _ => Err(self.mismatch(t)),
        }
    }

    /// Removes the device and waits until it is gone.
    pub async fn detach(&self, t: &Target, deadline: Instant) -> Result<(), NodeError> {
        match (self, t) {
            (Transport::NvmeTcp(n), Target::NvmeTcp(t)) => {
                n.disconnect(t.nqn.as_str(), deadline).await
            }
            (Transport::Loop(l), Target::LoopFile(f)) => l.detach(f, deadline).await,
            _ => Err(self.mismatch(t)),
        }
    }

    /// Makes the kernel re-read the device size (after the RDS grew the file).
    pub async fn rescan(&self, t: &Target, deadline: Instant) -> Result<(), NodeError> {
        match (self, t) {
            (Transport::NvmeTcp(n), Target::NvmeTcp(t)) => n.rescan(t.nqn.as_str(), deadline).await,
            (Transport::Loop(l), Target::LoopFile(f)) => {
                let d = l.resolve(f)?.ok_or_else(|| not_attached(t))?;
                run_tool("losetup", &["-c", &d.path.to_string_lossy()], deadline).await?;
                Ok(())
            }
            _ => Err(self.mismatch(t)),
        }
    }

    /// The device once it is at least `bytes` long, after a [`Self::rescan`]: NVMe applies a
    /// rescan asynchronously (waited for by uevent); a loop device's size is set by the time
    /// `losetup -c` returns.
    pub async fn wait_for_size(
        &self,
        t: &Target,
        bytes: u64,
        deadline: Instant,
    ) -> Result<Device, NodeError> {
        match (self, t) {
            (Transport::NvmeTcp(n), Target::NvmeTcp(t)) => {
                n.wait_for_size(t.nqn.as_str(), bytes, deadline).await
            }
            (Transport::Loop(l), Target::LoopFile(f)) => {
                let d = l.resolve(f)?.ok_or_else(|| not_attached(t))?;
                if d.size_bytes < bytes {
                    return Err(NodeError::LoopNotGrown {
                        device: d.name,
                        size: d.size_bytes,
                        required: bytes,
                    });
                }
                Ok(d)
            }
            _ => Err(self.mismatch(t)),
        }
    }

    /// Why the transport path is unhealthy (nvme: no live controller), or None.
    pub fn condition(&self, t: &Target) -> Option<String> {
        match (self, t) {
            (Transport::NvmeTcp(n), Target::NvmeTcp(t)) => n.condition(t.nqn.as_str()),
            (Transport::Loop(_), Target::LoopFile(_)) => None,
            _ => Some(self.mismatch(t).to_string()),
        }
    }
}

fn not_attached(t: &Target) -> NodeError {
    NodeError::DeviceMissing {
        target: t.to_string(),
    }
}

/// The one blocking helper (crate::runtime), under the name node code uses.
pub(crate) use crate::runtime::blocking_until;
