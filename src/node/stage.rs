//! NodeStageVolume and NodeUnstageVolume: connect, probe, format only a blank fresh volume,
//! mount at the staging path; and back, refusing while anything holds the device.

use std::path::{Path, PathBuf};

use node_io::probe::{self, Probe};
use tokio::time::Instant;

use crate::node::error::NodeError;
use crate::node::fs_plan::{plan_filesystem, FsPlan, FsType};
use crate::node::holders::describe_holders;
use crate::node::mount::{self, parse_mount_flags};
use crate::node::ops::Node;
use crate::node::stage_record::{Access, StageRecord};
use crate::node::transport::{blocking_until, Device, Target};
use crate::volume_context::{Tunables, VolumeContext};

pub struct StageRequest {
    pub volume_id: String,
    pub staging_path: PathBuf,
    pub access: Access,
    pub fs_type: Option<FsType>,
    pub mount_flags: Vec<String>,
    pub context: VolumeContext,
}

impl Node {
    fn record(
        &self,
        r: &StageRequest,
        t: &Target,
        device: Option<&Device>,
        fs: Option<FsType>,
    ) -> StageRecord {
        let (address, port, tunables) = match t {
            Target::NvmeTcp(n) => (n.address.clone(), n.port, n.tunables),
            Target::LoopFile(_) => (String::new(), 0, Tunables::default()),
        };
        StageRecord {
            volume_id: r.volume_id.clone(),
            target: t.key(),
            access: r.access,
            staging_path: r.staging_path.clone(),
            device: device.map(|d| d.name.clone()).unwrap_or_default(),
            dev: device.map(|d| d.dev.to_string()).unwrap_or_default(),
            fs_type: fs.map(|f| f.as_str().to_owned()),
            address,
            port,
            ctrl_loss_tmo: tunables.ctrl_loss_tmo,
            reconnect_delay: tunables.reconnect_delay,
            keep_alive_tmo: tunables.keep_alive_tmo,
        }
    }

    async fn probe(&self, d: &Device, deadline: Instant) -> Result<Probe, NodeError> {
        let (reader, path, device) = (self.reader.clone(), d.path.clone(), d.name.clone());
        let std_deadline = deadline.into_std();
        blocking_until(format!("probing {}", d.name), deadline, move || {
            probe::probe_device(&reader, &path, std_deadline)
                .map_err(|source| NodeError::NotReadable { device, source })
        })
        .await
    }

    pub async fn stage(&self, r: StageRequest, deadline: Instant) -> Result<(), NodeError> {
        let v = r.volume_id.as_str();
        // Every validation before the first side effect.
        let opts = parse_mount_flags(&r.mount_flags)?;
        let t = self.transport.target(&r.context)?;
        // The reconciler disconnects orphans under this same key (the NQN): a stage and an
        // orphan disconnect of one target never interleave.
        let _target = self
            .inflight
            .try_acquire(&t.key())
            .map_err(|_| NodeError::TargetBusy { target: t.key() })?;
        let existing = StageRecord::load(&self.state_dir, v)?;
        if let Some(e) = &existing {
            if e.target != t.key() || e.staging_path != r.staging_path || e.access != r.access {
                return Err(NodeError::StagedDifferently {
                    staged_target: e.target.clone(),
                    staged_path: e.staging_path.clone(),
                    staged_access: e.access,
                    target: t.key(),
                    path: r.staging_path.clone(),
                    access: r.access,
                });
            }
        } else {
            // Recorded BEFORE connecting: a crash after the connect still leaves what
            // unstage and the reconciler need to find (and not orphan) the controller.
            self.record(&r, &t, None, r.fs_type).save(&self.state_dir)?;
        }
        let device = self.transport.attach(&t, deadline).await?;
        if r.access == Access::Block {
            // Nothing to format or mount: publish makes a device node from a fresh lookup.
            return self
                .record(&r, &t, Some(&device), None)
                .save(&self.state_dir);
        }
        if let Some(m) = self.mounts_at(&r.staging_path)?.last() {
            if m.dev == device.dev {
                let fs = FsType::parse(&m.fs_type).ok().flatten().or(r.fs_type);
                return self.record(&r, &t, Some(&device), fs).save(&self.state_dir);
            }
            return Err(NodeError::StagingMountedElsewhere {
                path: r.staging_path.clone(),
                mounted: m.dev,
                source_name: m.source.to_string_lossy().into_owned(),
                device: device.name,
                dev: device.dev,
            });
        }
        let seen = self.probe(&device, deadline).await?;
        let plan = plan_filesystem(&seen, r.fs_type, r.context.fresh).map_err(|reason| {
            NodeError::FormatRefused {
                device: device.name.clone(),
                reason,
            }
        })?;
        let fs = match plan {
            FsPlan::Format(fs) => {
                tracing::info!(volume = %v, device = %device.name, fs = fs.as_str(), "formatting a blank fresh volume");
                mount::mkfs(&device.path, fs, deadline).await?;
                fs
            }
            FsPlan::Mount(fs) => fs,
        };
        mount::ensure_dir(&r.staging_path)?;
        mount::mount_fs(&device.path, &r.staging_path, fs, &opts, deadline).await?;
        self.record(&r, &t, Some(&device), Some(fs))
            .save(&self.state_dir)
    }

    pub async fn unstage(
        &self,
        volume_id: &str,
        staging_path: &Path,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        let v = volume_id;
        self.unmount_all(staging_path, deadline).await?;
        let Some(rec) = StageRecord::load(&self.state_dir, v)? else {
            tracing::info!(volume = %v, "unstage: no stage record; nothing mounted at the staging path, done");
            return Ok(());
        };
        if rec.staging_path != staging_path {
            self.unmount_all(&rec.staging_path, deadline).await?;
        }
        let t = self.transport.recorded_target(&rec);
        if let Some(d) = self.transport.resolve(&t).await? {
            let report = self.holders(&d, deadline).await?;
            if !report.is_empty() || !report.is_complete() {
                return Err(NodeError::InUse(describe_holders(
                    &d,
                    &report,
                    rec.access,
                    staging_path,
                )));
            }
        }
        self.transport.detach(&t, deadline).await?;
        StageRecord::remove(&self.state_dir, v)
    }
}
