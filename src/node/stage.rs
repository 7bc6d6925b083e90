//! NodeStageVolume and NodeUnstageVolume: connect, probe, format only a blank fresh volume,
//! mount at the staging path; and back, refusing while anything holds the device.

use std::path::{Path, PathBuf};

use node_io::probe::{self, Probe};
use tokio::time::Instant;

use crate::error::Error;
use crate::node::fs_plan::{plan_filesystem, FsPlan, FsType};
use crate::node::holders::describe_holders;
use crate::node::mount::{self, parse_mount_flags};
use crate::node::ops::{with_volume, Node};
use crate::node::stage_record::{Access, StageRecord};
use crate::node::transport::{blocking_until, Device, Target};
use crate::volume_context::VolumeContext;

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
        StageRecord {
            volume_id: r.volume_id.clone(),
            target: t.id.clone(),
            access: r.access,
            staging_path: r.staging_path.clone(),
            device: device.map(|d| d.name.clone()).unwrap_or_default(),
            dev: device.map(|d| d.dev.to_string()).unwrap_or_default(),
            fs_type: fs.map(|f| f.as_str().to_owned()),
            address: t.address.clone(),
            port: t.port,
            ctrl_loss_tmo: t.tunables.ctrl_loss_tmo,
            reconnect_delay: t.tunables.reconnect_delay,
            keep_alive_tmo: t.tunables.keep_alive_tmo,
        }
    }

    async fn probe(&self, volume_id: &str, d: &Device, deadline: Instant) -> Result<Probe, Error> {
        let (reader, path, v, name) = (
            self.reader.clone(),
            d.path.clone(),
            volume_id.to_owned(),
            d.name.clone(),
        );
        let std_deadline = deadline.into_std();
        blocking_until(format!("volume {volume_id}: probing {}", d.name), deadline, move || {
            probe::probe_device(&reader, &path, std_deadline).map_err(|e| {
                Error::Unavailable(format!(
                    "volume {v}: device {name} cannot be read yet ({e}); nothing was formatted, NodeStageVolume is retried"
                ))
            })
        })
        .await
    }

    pub async fn stage(&self, r: StageRequest, deadline: Instant) -> Result<(), Error> {
        let v = r.volume_id.as_str();
        // Every validation before the first side effect.
        let opts = parse_mount_flags(v, &r.mount_flags)?;
        let t = self.transport.target(v, &r.context)?;
        // The reconciler disconnects orphans under this same key (the NQN): a stage and an
        // orphan disconnect of one target never interleave.
        let _target = self.inflight.try_acquire(&t.id).map_err(|_| {
            Error::Aborted(format!(
                "volume {v}: the node is busy with its target {} (the reconciler is checking or \
                 disconnecting a controller of it); NodeStageVolume is retried",
                t.id
            ))
        })?;
        let existing = StageRecord::load(&self.state_dir, v)?;
        if let Some(e) = &existing {
            if e.target != t.id || e.staging_path != r.staging_path || e.access != r.access {
                let msg = format!(
                    "volume {v} is already staged on this node from {} at {} ({:?}); the request names {} at {} ({:?}); \
                     unstage it first",
                    e.target,
                    e.staging_path.display(),
                    e.access,
                    t.id,
                    r.staging_path.display(),
                    r.access
                );
                // CSI: staged at this very path but incompatible is ALREADY_EXISTS; staged
                // elsewhere on the node is a precondition the CO must clear first.
                return Err(if e.staging_path == r.staging_path {
                    Error::AlreadyExists(msg)
                } else {
                    Error::FailedPrecondition(msg)
                });
            }
        } else {
            // Recorded BEFORE connecting: a crash after the connect still leaves what
            // unstage and the reconciler need to find (and not orphan) the controller.
            self.record(&r, &t, None, r.fs_type).save(&self.state_dir)?;
        }
        let device = self.transport.attach(v, &t, deadline).await?;
        if r.access == Access::Block {
            // Nothing to format or mount: publish makes a device node from a fresh lookup.
            return self
                .record(&r, &t, Some(&device), None)
                .save(&self.state_dir);
        }
        if let Some(m) = self.mounts_at(&r.staging_path)?.last() {
            if m.dev == device.dev {
                let fs = FsType::parse(v, &m.fs_type).ok().flatten().or(r.fs_type);
                return self.record(&r, &t, Some(&device), fs).save(&self.state_dir);
            }
            return Err(Error::FailedPrecondition(format!(
                "volume {v}: staging path {} is mounted from {} ({}) but the volume's device is now {} ({}); \
                 unstage the volume and stage it again",
                r.staging_path.display(),
                m.dev,
                m.source.to_string_lossy(),
                device.name,
                device.dev
            )));
        }
        let seen = self.probe(v, &device, deadline).await?;
        let plan = plan_filesystem(v, &device.name, &seen, r.fs_type, r.context.fresh)?;
        let fs = match plan {
            FsPlan::Format(fs) => {
                tracing::info!(volume = %v, device = %device.name, fs = fs.as_str(), "formatting a blank fresh volume");
                mount::mkfs(&device.path, fs.as_str(), deadline).await?;
                fs
            }
            FsPlan::Mount(fs) => fs,
        };
        mount::ensure_dir(&r.staging_path)?;
        mount::mount_fs(&device.path, &r.staging_path, fs.as_str(), &opts, deadline)
            .await
            .map_err(|e| with_volume(v, e))?;
        self.record(&r, &t, Some(&device), Some(fs))
            .save(&self.state_dir)
    }

    pub async fn unstage(
        &self,
        volume_id: &str,
        staging_path: &Path,
        deadline: Instant,
    ) -> Result<(), Error> {
        let v = volume_id;
        self.unmount_all(v, staging_path, deadline).await?;
        let Some(rec) = StageRecord::load(&self.state_dir, v)? else {
            tracing::info!(volume = %v, "unstage: no stage record; nothing mounted at the staging path, done");
            return Ok(());
        };
        if rec.staging_path != staging_path {
            self.unmount_all(v, &rec.staging_path, deadline).await?;
        }
        let t = Target::from_record(&rec);
        if let Some(d) = self.transport.resolve(v, &t).await? {
            let report = self.holders(v, &d, deadline).await?;
            if !report.is_empty() || !report.is_complete() {
                return Err(Error::FailedPrecondition(describe_holders(
                    v,
                    &d,
                    &report,
                    rec.access,
                    staging_path,
                )));
            }
        }
        self.transport.detach(v, &t, deadline).await?;
        StageRecord::remove(&self.state_dir, v)
    }
}
