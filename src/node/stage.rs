//! NodeStageVolume: connect, probe, format only a blank fresh volume, mount at the staging
//! path — recording each step first, so a crash at any point leaves what the retry, the
//! unstage and the reconciler need.

use std::path::PathBuf;

use tokio::time::Instant;

use crate::node::error::NodeError;
use crate::node::fs_plan::{plan_filesystem, FsPlan};
use crate::node::mount::{self, parse_mount_options, MountOptions};
use crate::node::ops::{staging_mounted_elsewhere, Node};
use crate::node::stage_record::{AccessType, StageRecord, StagedDevice};
use crate::node::transport::{Device, Target};
use crate::volume::context::VolumeContext;
use crate::volume::FsType;

pub struct StageRequest {
    pub volume_id: String,
    pub staging_path: PathBuf,
    pub access: AccessType,
    pub fs_type: Option<FsType>,
    pub mount_flags: Vec<String>,
    pub context: VolumeContext,
}

impl Node {
    fn new_record(
        &self,
        r: &StageRequest,
        t: &Target,
        device: Option<&Device>,
        fs_type: Option<FsType>,
        formatting: Option<FsType>,
    ) -> StageRecord {
        StageRecord {
            volume_id: r.volume_id.clone(),
            boot_id: Some(self.boot.id.clone()),
            target: t.clone(),
            access: r.access,
            staging_path: r.staging_path.clone(),
            device: device.map(|d| StagedDevice {
                name: d.name.clone(),
                dev: d.dev,
            }),
            fs_type,
            formatting,
        }
    }

    /// Whether what record `e` describes is still in the kernel now: its device attached
    /// and, for a filesystem, mounted at its staging path. Only then may it refuse a stage
    /// that differs from it.
    async fn still_staged(&self, e: &StageRecord) -> Result<bool, NodeError> {
        let Some(d) = self.transport.resolve(&e.target).await? else {
            return Ok(false);
        };
        Ok(match e.access {
            AccessType::Block => true,
            AccessType::Mount => self
                .mounts_at(&e.staging_path)?
                .iter()
                .any(|m| m.dev == d.dev),
        })
    }

    pub async fn stage(&self, r: StageRequest, deadline: Instant) -> Result<(), NodeError> {
        let v = r.volume_id.as_str();
        // Every validation before the first side effect.
        let opts = parse_mount_options(&r.mount_flags)?;
        let t = self.transport.target(&r.context)?;
        // The reconciler disconnects orphans under this same key (the NQN): a stage and an
        // orphan disconnect of one target never interleave.
        let _target = self
            .inflight
            .try_acquire(&t.key())
            .map_err(|_| NodeError::TargetBusy { target: t.key() })?;
        let mut formatting = None;
        if let Some(e) = StageRecord::load(&self.state_dir, v, &self.boot)? {
            let same = e.target.key() == t.key()
                && e.staging_path == r.staging_path
                && e.access == r.access;
            if !e.of_boot(&self.boot.id) {
                tracing::info!(volume = %v, "replacing a stage record from an earlier boot");
            } else if same {
                // A retry: an mkfs it started and did not see finish may be redone.
                formatting = e.formatting;
            } else if self.still_staged(&e).await? {
                return Err(NodeError::StagedDifferently {
                    staged_target: e.target.key(),
                    staged_path: e.staging_path.clone(),
                    staged_access: e.access,
                    target: t.key(),
                    path: r.staging_path.clone(),
                    access: r.access,
                });
            } else {
                tracing::info!(volume = %v, staged_path = %e.staging_path.display(),
                    "the stage record names a stage the kernel no longer has (no device or no mount); replaced");
            }
        }
        // One target, one volume: a context naming another staged volume's disk would make
        // this volume's unstage disconnect that one.
        let (records, _) = StageRecord::all(&self.state_dir, &self.boot)?;
        if let Some(o) = records.iter().find(|o| {
            o.volume_id != r.volume_id && o.of_boot(&self.boot.id) && o.target.key() == t.key()
        }) {
            return Err(NodeError::TargetOfAnotherVolume {
                target: t.key(),
                volume: o.volume_id.clone(),
            });
        }
        // Recorded BEFORE connecting: a crash after the connect still leaves what unstage
        // and the reconciler need to find (and not orphan) the controller.
        self.new_record(&r, &t, None, r.fs_type, formatting)
            .save(&self.state_dir)?;
        let device = self.transport.attach(&t, deadline).await?;
        if r.access == AccessType::Block {
            // Nothing to format or mount: publish makes a device node from a fresh lookup.
            return self
                .new_record(&r, &t, Some(&device), None, None)
                .save(&self.state_dir);
        }
        if let Some(m) = self.mounts_at(&r.staging_path)?.last() {
            if m.dev == device.dev {
                let fs = FsType::parse(&m.fs_type).ok().or(r.fs_type);
                return self
                    .new_record(&r, &t, Some(&device), fs, None)
                    .save(&self.state_dir);
            }
            return Err(staging_mounted_elsewhere(&r.staging_path, m, device));
        }
        let (fs, formatted) = self
            .prepare_filesystem(&r, &t, &device, &opts, formatting, deadline)
            .await?;
        mount::ensure_dir(&r.staging_path)?;
        mount::mount_fs(&device.path, &r.staging_path, fs, &opts, deadline).await?;
        if fs == FsType::Xfs && !formatted {
            self.grow_xfs(v, &r.staging_path, deadline).await?;
        }
        self.new_record(&r, &t, Some(&device), Some(fs), None)
            .save(&self.state_dir)
    }

    /// Probes the device and formats it if (and only if) the plan says so; returns the
    /// filesystem to mount and whether it was just made. An existing ext4 smaller than its device (a restore or clone into
    /// a larger size, a volume grown while unstaged) is grown here, before its first mount.
    async fn prepare_filesystem(
        &self,
        r: &StageRequest,
        t: &Target,
        device: &Device,
        opts: &MountOptions,
        formatting: Option<FsType>,
        deadline: Instant,
    ) -> Result<(FsType, bool), NodeError> {
        let v = r.volume_id.as_str();
        let seen = self.probe(device, deadline).await?;
        let plan =
            plan_filesystem(&seen, r.fs_type, r.context.fresh, formatting).map_err(|reason| {
                NodeError::FormatRefused {
                    device: device.name.clone(),
                    reason,
                }
            })?;
        let (fs, formatted) = match plan {
            FsPlan::Format { fs, .. } => (fs, true),
            FsPlan::Mount(fs) => (fs, false),
        };
        // The kernel's own check of every option, before anything is formatted.
        mount::check_options(fs, opts, deadline).await?;
        match plan {
            FsPlan::Format { fs, again } => {
                // Durably first: only this mark allows a later retry to format a device that
                // holds data but no known signature (an mkfs cut short).
                self.new_record(r, t, Some(device), Some(fs), Some(fs))
                    .save(&self.state_dir)?;
                if again {
                    tracing::warn!(volume = %v, device = %device.name, fs = fs.as_str(), seen = ?seen,
                        "formatting again: this node started formatting this fresh volume and did not see mkfs finish");
                } else {
                    tracing::info!(volume = %v, device = %device.name, fs = fs.as_str(), "formatting a blank fresh volume");
                }
                mount::mkfs(&device.path, fs, again, deadline).await?;
                self.new_record(r, t, Some(device), Some(fs), None)
                    .save(&self.state_dir)?;
            }
            FsPlan::Mount(FsType::Ext4) => self.grow_ext4(v, device, deadline).await?,
            FsPlan::Mount(FsType::Xfs) => {}
        }
        Ok((fs, formatted))
    }
}
