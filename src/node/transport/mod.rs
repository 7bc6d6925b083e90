//! How a volume's block device reaches this node: NVMe/TCP through the kernel (production)
//! or a loop device over the simulator's backing file (development and tests).
//!
//! Both answer the same questions — attach, resolve, detach, rescan — and resolve the device
//! FRESH on every call: controllers renumber after a reconnect, loop numbers are reused after
//! a detach, so a cached name can point at someone else's disk.

mod loop_device;
mod nvme_tcp;

use std::path::PathBuf;

use node_io::dev_num::DevNum;
use tokio::time::Instant;

use crate::error::Error;
use crate::node::mount::run_tool;
use crate::node::stage_record::StageRecord;
use crate::volume_context::{Tunables, VolumeContext};

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

/// What identifies a volume's device to a transport, plus how to (re)connect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The subsystem NQN (nvme-tcp) or the backing file's path on this node (loop).
    pub id: String,
    pub address: String,
    pub port: u16,
    pub tunables: Tunables,
}

impl Target {
    pub fn from_record(r: &StageRecord) -> Self {
        Target {
            id: r.target.clone(),
            address: r.address.clone(),
            port: r.port,
            tunables: Tunables {
                ctrl_loss_tmo: r.ctrl_loss_tmo,
                reconnect_delay: r.reconnect_delay,
                keep_alive_tmo: r.keep_alive_tmo,
            },
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
    pub fn target(&self, volume_id: &str, ctx: &VolumeContext) -> Result<Target, Error> {
        let id = match self {
            Transport::NvmeTcp(n) => {
                n.check_disconnectable(volume_id, &ctx.nqn)?;
                ctx.nqn.clone()
            }
            Transport::Loop(l) => l
                .backing_file(volume_id, ctx)?
                .to_string_lossy()
                .into_owned(),
        };
        Ok(Target {
            id,
            address: ctx.nvme_address.clone(),
            port: ctx.nvme_port,
            tunables: ctx.tunables,
        })
    }

    /// Makes the device present (idempotent) and returns it, within `deadline`.
    pub async fn attach(
        &self,
        volume_id: &str,
        t: &Target,
        deadline: Instant,
    ) -> Result<Device, Error> {
        match self {
            Transport::NvmeTcp(n) => n.attach(volume_id, t, deadline).await,
            Transport::Loop(l) => l.attach(volume_id, t, deadline).await,
        }
    }

    /// The device now, or None when it is not present.
    pub async fn resolve(&self, volume_id: &str, t: &Target) -> Result<Option<Device>, Error> {
        let this = self.clone();
        let (v, id) = (volume_id.to_owned(), t.id.clone());
        // sysfs reads do not block on the device, but keep them off the async threads.
        tokio::task::spawn_blocking(move || match &this {
            Transport::NvmeTcp(n) => n.resolve(&v, &id),
            Transport::Loop(l) => l.resolve(&v, &id),
        })
        .await
        .map_err(|e| Error::Internal(format!("volume {volume_id}: resolving the device: {e}")))?
    }

    /// Removes the device and waits until it is gone.
    pub async fn detach(
        &self,
        volume_id: &str,
        t: &Target,
        deadline: Instant,
    ) -> Result<(), Error> {
        match self {
            Transport::NvmeTcp(n) => n.disconnect(volume_id, &t.id, deadline).await,
            Transport::Loop(l) => l.detach(volume_id, &t.id, deadline).await,
        }
    }

    /// Makes the kernel re-read the device size (after the RDS grew the file).
    pub async fn rescan(
        &self,
        volume_id: &str,
        t: &Target,
        deadline: Instant,
    ) -> Result<(), Error> {
        match self {
            Transport::NvmeTcp(n) => n.rescan(volume_id, &t.id, deadline).await,
            Transport::Loop(l) => {
                let d = l
                    .resolve(volume_id, &t.id)?
                    .ok_or_else(|| not_attached(volume_id, &t.id))?;
                run_tool("losetup", &["-c", &d.path.to_string_lossy()], deadline).await?;
                Ok(())
            }
        }
    }

    /// Why the transport path is unhealthy (nvme: no live controller), or None.
    pub fn condition(&self, t: &Target) -> Option<String> {
        match self {
            Transport::NvmeTcp(n) => n.condition(&t.id),
            Transport::Loop(_) => None,
        }
    }
}

fn not_attached(volume_id: &str, id: &str) -> Error {
    Error::FailedPrecondition(format!(
        "volume {volume_id}: no device is attached for {id}; stage the volume again"
    ))
}

/// The one blocking helper (crate::runtime), under the name node code uses.
pub(crate) use crate::runtime::blocking_until;
