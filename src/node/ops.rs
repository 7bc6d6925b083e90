//! The node's volume operations in typed form (no CSI types here): stage, unstage, publish,
//! unpublish, stats and expand, over a [`Transport`] and node-io.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use node_io::dev_num::DevNum;
use node_io::health;
use node_io::holders::{self, HolderReport, ScanMode};
use node_io::mountinfo::{read_mountinfo, MountInfo, Pid};
use node_io::probe::{self, FsKind, Probe};
use node_io::reader::DeviceReader;
use tokio::time::Instant;

use crate::error::Error;
use crate::inflight::InFlight;
use crate::node::host_identity::HostIdentity;
use crate::node::metrics::NodeMetrics;
use crate::node::mount::{self, parse_mount_flags};
use crate::node::stage_record::{Access, StageRecord};
use crate::node::transport::{blocking_until, Device, Target, Transport};
use crate::volume_context::VolumeContext;

/// Filesystems this driver creates and mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub fn parse(volume_id: &str, s: &str) -> Result<Option<Self>, Error> {
        match s {
            "" => Ok(None),
            "ext4" => Ok(Some(FsType::Ext4)),
            "xfs" => Ok(Some(FsType::Xfs)),
            other => Err(Error::InvalidArgument(format!(
                "volume {volume_id}: filesystem {other:?} is not supported; use ext4 or xfs"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
    fn of(kind: FsKind) -> Option<Self> {
        match kind {
            FsKind::Ext4 => Some(FsType::Ext4),
            FsKind::Xfs => Some(FsType::Xfs),
            _ => None,
        }
    }
}

/// What NodeStage does with a filesystem volume's device, decided from what is on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsPlan {
    Mount(FsType),
    Format(FsType),
}

/// Formatting is allowed ONLY for a device proven blank (every probed byte zero) of a volume
/// created empty (`fresh`). Everything else either mounts what is there or is refused —
/// an earlier driver lost data by formatting what a misread probe called empty.
pub fn plan_filesystem(
    volume_id: &str,
    device: &str,
    seen: &Probe,
    requested: Option<FsType>,
    fresh: bool,
) -> Result<FsPlan, Error> {
    let refuse = |what: String| {
        Err(Error::FailedPrecondition(format!(
            "volume {volume_id}: device {device} {what}; nothing was formatted"
        )))
    };
    match seen {
        Probe::Blank if fresh => Ok(FsPlan::Format(requested.unwrap_or(FsType::Ext4))),
        Probe::Blank => refuse(
            "is blank (all zeros) but the volume is not marked fresh (it was created from a snapshot or clone, \
             or its context lacks fresh=true), so it is not formatted: a blank clone means the copy on the RDS \
             is incomplete — check the disk on the RDS, or create the volume empty"
                .into(),
        ),
        Probe::Filesystem(kind) => match (FsType::of(*kind), requested) {
            (Some(found), None) => Ok(FsPlan::Mount(found)),
            (Some(found), Some(req)) if found == req => Ok(FsPlan::Mount(found)),
            (Some(found), Some(req)) => refuse(format!(
                "holds {} but fsType {} was requested; it is not reformatted — set fsType to {} or use another volume",
                found.as_str(),
                req.as_str(),
                found.as_str()
            )),
            (None, _) => refuse(format!(
                "holds {kind}, which this driver does not mount (ext4, xfs only); it is left untouched — \
                 move the data or use another volume"
            )),
        },
        Probe::PartitionTable(kind) => refuse(format!(
            "has a {kind} partition table; this driver uses whole-disk filesystems and leaves it untouched — \
             inspect it on the node (blkid, fdisk -l) or use another volume"
        )),
        Probe::Ambiguous(sigs) => refuse(format!(
            "carries several signatures that do not belong together ({}); it is left untouched — inspect it \
             (wipefs -n) before deciding what it holds",
            sigs.join(", ")
        )),
        Probe::Unknown => refuse(
            "holds non-zero data with no known signature (it may be a raw database, encrypted data, or a \
             partial copy); it is left untouched — inspect it or use another volume"
                .into(),
        ),
    }
}

/// Volume ids become file names under the state dir: a conservative allow-list.
pub fn check_volume_id(volume_id: &str) -> Result<(), Error> {
    if volume_id.is_empty() {
        return Err(Error::InvalidArgument("volume_id is required".into()));
    }
    let ok = volume_id.len() <= 128
        && !volume_id.starts_with('.')
        && volume_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "volume_id {volume_id:?} must be at most 128 characters of letters, digits, '-', '_' and '.', \
             not starting with '.'"
        )));
    }
    Ok(())
}

pub struct StageRequest {
    pub volume_id: String,
    pub staging_path: PathBuf,
    pub access: Access,
    pub fs_type: Option<FsType>,
    pub mount_flags: Vec<String>,
    pub context: VolumeContext,
}

pub struct PublishRequest {
    pub volume_id: String,
    pub staging_path: PathBuf,
    pub target_path: PathBuf,
    pub access: Access,
    pub readonly: bool,
    pub mount_flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub bytes_total: u64,
    pub bytes_available: Option<u64>,
    pub bytes_used: Option<u64>,
    /// (total, available, used), filesystems only.
    pub inodes: Option<(u64, u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub abnormal: bool,
    pub message: String,
}

pub struct Node {
    pub node_id: String,
    pub max_volumes: u32,
    pub topology: BTreeMap<String, String>,
    pub state_dir: PathBuf,
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub transport: Transport,
    pub host: HostIdentity,
    pub reader: DeviceReader,
    pub metrics: NodeMetrics,
    pub inflight: InFlight,
}

/// How long a NodeGetVolumeStats health read may take before the device counts as stuck.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(2);

impl Node {
    fn mounts_at(&self, path: &Path) -> Result<Vec<MountInfo>, Error> {
        // Our own mount namespace: where this plugin mounts (propagated to the host).
        let table = read_mountinfo(&self.proc_root, Pid::Current)
            .map_err(|e| Error::Internal(format!("reading mountinfo: {e}")))?;
        Ok(table.by_target(path).into_iter().cloned().collect())
    }

    /// Unmounts everything stacked at `path`.
    async fn unmount_all(
        &self,
        volume_id: &str,
        path: &Path,
        deadline: Instant,
    ) -> Result<(), Error> {
        for _ in 0..8 {
            if self.mounts_at(path)?.is_empty() {
                return Ok(());
            }
            mount::unmount(path, deadline).await.map_err(|e| {
                Error::Internal(format!(
                    "volume {volume_id}: {e}; the volume stays mounted, the call is retried"
                ))
            })?;
        }
        Err(Error::Internal(format!(
            "volume {volume_id}: {} is still mounted after 8 unmounts; inspect the mounts on the node",
            path.display()
        )))
    }

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

    async fn holders(&self, v: &str, d: &Device, deadline: Instant) -> Result<HolderReport, Error> {
        let (proc_root, sys_root, name, path, vv) = (
            self.proc_root.clone(),
            self.sys_root.clone(),
            d.name.clone(),
            d.path.clone(),
            v.to_owned(),
        );
        // The scan reads /proc and two mount namespaces; the kernel's exclusive-open claim
        // covers every namespace.
        blocking_until(format!("volume {v}: scanning holders of {}", d.name), deadline, move || {
            holders::holder_report_with_claim(&proc_root, &sys_root, &name, &path, ScanMode::default()).map_err(|e| {
                Error::Internal(format!(
                    "volume {vv}: cannot tell who holds {name} ({e}); the device stays connected, NodeUnstageVolume is retried"
                ))
            })
        })
        .await
    }

    fn staged(&self, volume_id: &str) -> Result<StageRecord, Error> {
        StageRecord::load(&self.state_dir, volume_id)?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "volume {volume_id} is not staged on this node (no stage record); NodeStageVolume must succeed first"
            ))
        })
    }

    pub async fn publish(&self, r: PublishRequest, deadline: Instant) -> Result<(), Error> {
        let v = r.volume_id.as_str();
        let rec = self.staged(v)?;
        if rec.access != r.access {
            return Err(Error::FailedPrecondition(format!(
                "volume {v} was staged for {:?} access but is published for {:?}",
                rec.access, r.access
            )));
        }
        match r.access {
            Access::Filesystem => self.publish_fs(&r, deadline).await,
            Access::Block => self.publish_block(&r, &rec).await,
        }
    }

    async fn publish_fs(&self, r: &PublishRequest, deadline: Instant) -> Result<(), Error> {
        let v = r.volume_id.as_str();
        let mut opts = parse_mount_flags(v, &r.mount_flags)?;
        if r.readonly {
            opts.flags |= libc::MS_RDONLY;
        }
        let Some(staged) = self.mounts_at(&r.staging_path)?.last().cloned() else {
            return Err(Error::FailedPrecondition(format!(
                "volume {v}: staging path {} is not mounted; NodeStageVolume must run again",
                r.staging_path.display()
            )));
        };
        if let Some(m) = self.mounts_at(&r.target_path)?.last() {
            if m.dev != staged.dev {
                return Err(Error::FailedPrecondition(format!(
                    "volume {v}: target {} is already mounted from {} but the staged volume is {}; unpublish it first",
                    r.target_path.display(),
                    m.dev,
                    staged.dev
                )));
            }
            let is_ro = m.mount_options.iter().any(|o| o == "ro");
            if is_ro != (opts.flags & libc::MS_RDONLY != 0) {
                return Err(Error::AlreadyExists(format!(
                    "volume {v}: target {} is already published {} ; unpublish it before publishing {}",
                    r.target_path.display(),
                    if is_ro { "read-only" } else { "read-write" },
                    if is_ro { "read-write" } else { "read-only" }
                )));
            }
            return Ok(());
        }
        mount::ensure_dir(&r.target_path)?;
        mount::bind_mount(&r.staging_path, &r.target_path, opts.flags, deadline)
            .await
            .map_err(|e| with_volume(v, e))
    }

    async fn publish_block(&self, r: &PublishRequest, rec: &StageRecord) -> Result<(), Error> {
        let v = r.volume_id.as_str();
        let t = Target::from_record(rec);
        let d = self.transport.resolve(v, &t).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "volume {v}: its device ({}) is not present on this node; unstage and stage the volume again",
                rec.target
            ))
        })?;
        if let Some(parent) = r.target_path.parent() {
            mount::ensure_dir(parent)?;
        }
        let p = &r.target_path;
        let io = |what: &str, e: std::io::Error| {
            Error::Internal(format!("volume {v}: {what} {}: {e}", p.display()))
        };
        match std::fs::symlink_metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot inspect", e)),
            Ok(md) if md.file_type().is_block_device() => {
                if dev_of(md.rdev()) == d.dev {
                    return Ok(());
                }
                // Renumbered after a reconnect: the old node points at another (or no) disk.
                tracing::warn!(volume = %v, target = %p.display(), old = %dev_of(md.rdev()), new = %d.dev, "repairing a block node after renumbering");
                std::fs::remove_file(p).map_err(|e| io("cannot remove the stale device node", e))?;
            }
            Ok(md) if md.is_file() => std::fs::remove_file(p).map_err(|e| io("cannot replace the file", e))?,
            Ok(md) if md.is_dir() => {
                if !self.mounts_at(p)?.is_empty() {
                    return Err(Error::FailedPrecondition(format!(
                        "volume {v}: block target {} is a mounted directory; unpublish it first",
                        p.display()
                    )));
                }
                std::fs::remove_dir(p).map_err(|e| io("cannot replace the directory (not empty?)", e))?;
            }
            Ok(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "volume {v}: block target {} exists and is neither a device node, a file nor a directory",
                    p.display()
                )))
            }
        }
        // A device node of our own, not a bind mount of /dev/<name>: it keeps naming the
        // same major:minor, and the CO's bind of it into the pod works like any node.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.as_path(),
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o660),
            rustix::fs::makedev(d.dev.major, d.dev.minor),
        )
        .map_err(|e| io("mknod", e.into()))?;
        // mknod applies the umask; the mode is part of the contract.
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| io("chmod", e))
    }

    pub async fn unpublish(
        &self,
        volume_id: &str,
        target: &Path,
        deadline: Instant,
    ) -> Result<(), Error> {
        let md = match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error::Internal(format!(
                    "volume {volume_id}: cannot inspect {}: {e}",
                    target.display()
                )))
            }
            Ok(md) => md,
        };
        let rm = |r: std::io::Result<()>| {
            r.or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| {
                Error::Internal(format!(
                    "volume {volume_id}: cannot remove {}: {e}",
                    target.display()
                ))
            })
        };
        if md.is_dir() {
            self.unmount_all(volume_id, target, deadline).await?;
            rm(std::fs::remove_dir(target))
        } else {
            // A block node we made (or a file): unlinking it never touches the device.
            rm(std::fs::remove_file(target))
        }
    }

    pub async fn stats(
        &self,
        volume_id: &str,
        path: &Path,
        deadline: Instant,
    ) -> Result<(Usage, Condition), Error> {
        let md = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!(
                    "volume {volume_id}: volume path {} does not exist",
                    path.display()
                )))
            }
            Err(e) => {
                return Err(Error::Internal(format!(
                    "volume {volume_id}: cannot stat {}: {e}",
                    path.display()
                )))
            }
            Ok(md) => md,
        };
        let short = deadline.min(Instant::now() + Duration::from_secs(10));
        let (usage, path_dev) = if md.file_type().is_block_device() {
            let dev = dev_of(md.rdev());
            let sectors =
                std::fs::read_to_string(self.sys_root.join(format!("dev/block/{dev}/size")))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            (
                Usage {
                    bytes_total: sectors * 512,
                    bytes_available: None,
                    bytes_used: None,
                    inodes: None,
                },
                Some(dev),
            )
        } else {
            let p = path.to_owned();
            let vv = volume_id.to_owned();
            let s = blocking_until(
                format!("volume {volume_id}: statfs {}", path.display()),
                short,
                move || {
                    rustix::fs::statvfs(&p).map_err(|e| {
                        Error::Internal(format!("volume {vv}: statfs {}: {e}", p.display()))
                    })
                },
            )
            .await?;
            let f = s.f_frsize.max(1);
            let usage = Usage {
                bytes_total: s.f_blocks * f,
                bytes_available: Some(s.f_bavail * f),
                bytes_used: Some(s.f_blocks.saturating_sub(s.f_bfree) * f),
                inodes: Some((s.f_files, s.f_ffree, s.f_files.saturating_sub(s.f_ffree))),
            };
            (usage, self.mounts_at(path)?.last().map(|m| m.dev))
        };
        let condition = self.condition(volume_id, path, path_dev, short).await;
        Ok((usage, condition))
    }

    async fn condition(
        &self,
        v: &str,
        path: &Path,
        path_dev: Option<DevNum>,
        deadline: Instant,
    ) -> Condition {
        let bad = |message: String| Condition {
            abnormal: true,
            message,
        };
        let rec = match StageRecord::load(&self.state_dir, v) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return bad(format!(
                    "volume {v} has no stage record on this node; it was not staged by this plugin"
                ))
            }
            Err(e) => return bad(e.to_string()),
        };
        let t = Target::from_record(&rec);
        let d = match self.transport.resolve(v, &t).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return bad(format!(
                    "the device of volume {v} (staged as {} {}) is gone{}; if it does not come back, unpublish and unstage it, then stage it again",
                    rec.device,
                    rec.dev,
                    self.transport.condition(&t).map(|c| format!(": {c}")).unwrap_or_default()
                ))
            }
            Err(e) => return bad(e.to_string()),
        };
        if let Some(c) = self.transport.condition(&t) {
            return bad(format!("volume {v} on {}: {c}", d.name));
        }
        match path_dev {
            Some(pd) if pd != d.dev => {
                return bad(format!(
                    "stale: {} is backed by {pd} but the device of volume {v} is now {} ({}) — it was renumbered \
                     after a reconnect; restart the pod so the volume is unpublished, unstaged and staged again",
                    path.display(),
                    d.name,
                    d.dev
                ))
            }
            None => return bad(format!("volume {v}: {} is not mounted", path.display())),
            _ => {}
        }
        let (reader, dp) = (self.reader.clone(), d.path.clone());
        let until = deadline.min(Instant::now() + HEALTH_READ_TIMEOUT);
        let std_until = until.into_std();
        let read = tokio::task::spawn_blocking(move || {
            health::read_latency(&reader, dp.as_path(), std_until)
        })
        .await;
        match read {
            Ok(Ok(lat)) => {
                self.metrics
                    .read_latency(self.transport.kind(), lat.as_secs_f64());
                Condition {
                    abnormal: false,
                    message: format!(
                        "device {} ({}) answered a 4 KiB read in {:.3} ms",
                        d.name,
                        d.dev,
                        lat.as_secs_f64() * 1e3
                    ),
                }
            }
            Ok(Err(e)) => {
                if let health::HealthError::Stuck { waited, .. } = &e {
                    self.metrics
                        .read_latency(self.transport.kind(), waited.as_secs_f64());
                }
                bad(format!("volume {v}: {e}"))
            }
            Err(e) => bad(format!("volume {v}: health read failed: {e}")),
        }
    }

    pub async fn expand(
        &self,
        volume_id: &str,
        path: &Path,
        required: u64,
        deadline: Instant,
    ) -> Result<u64, Error> {
        let v = volume_id;
        let md = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!(
                    "volume {v}: volume path {} does not exist",
                    path.display()
                )))
            }
            Err(e) => {
                return Err(Error::Internal(format!(
                    "volume {v}: cannot stat {}: {e}",
                    path.display()
                )))
            }
            Ok(md) => md,
        };
        let rec = self.staged(v)?;
        let t = Target::from_record(&rec);
        self.transport.rescan(v, &t, deadline).await?;
        // The kernel applies a rescan asynchronously on NVMe: wait for the new size.
        let d = loop {
            let d = self.transport.resolve(v, &t).await?.ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "volume {v}: its device is gone; unstage and stage it again"
                ))
            })?;
            if d.size_bytes >= required || Instant::now() >= deadline {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if d.size_bytes < required {
            return Err(Error::Unavailable(format!(
                "volume {v}: device {} is {} bytes after a rescan, {required} were asked; has the RDS grown the disk yet? retried",
                d.name, d.size_bytes
            )));
        }
        if rec.access == Access::Block || md.file_type().is_block_device() {
            return Ok(d.size_bytes);
        }
        let fs = self
            .mounts_at(path)?
            .last()
            .map(|m| m.fs_type.clone())
            .or(rec.fs_type.clone())
            .unwrap_or_default();
        match fs.as_str() {
            "ext4" => mount::run_tool("resize2fs", &[&d.path.to_string_lossy()], deadline).await,
            "xfs" => mount::run_tool("xfs_growfs", &[&path.to_string_lossy()], deadline).await,
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "volume {v}: {} holds {other:?}, which this driver cannot grow (ext4, xfs)",
                    path.display()
                )))
            }
        }
        .map_err(|e| with_volume(v, e))?;
        Ok(d.size_bytes)
    }
}

fn dev_of(rdev: u64) -> DevNum {
    DevNum::new(rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

/// Prefixes a lower-level error's message with the volume, keeping its code.
fn with_volume(v: &str, e: Error) -> Error {
    let m = |s: String| format!("volume {v}: {s}");
    match e {
        Error::InvalidArgument(s) => Error::InvalidArgument(m(s)),
        Error::FailedPrecondition(s) => Error::FailedPrecondition(m(s)),
        Error::DeadlineExceeded(s) => Error::DeadlineExceeded(m(s)),
        Error::Unavailable(s) => Error::Unavailable(m(s)),
        Error::Internal(s) => Error::Internal(m(s)),
        other => other,
    }
}

/// The FAILED_PRECONDITION message of an unstage refused because the device is held.
pub fn describe_holders(
    v: &str,
    d: &Device,
    r: &HolderReport,
    access: Access,
    staging: &Path,
) -> String {
    let mut parts = Vec::new();
    if !r.processes.is_empty() {
        let p: Vec<String> = r
            .processes
            .iter()
            .map(|h| format!("pid {} ({}) fd {}", h.pid, h.comm, h.fd))
            .collect();
        parts.push(format!("held by {}", p.join(", ")));
    }
    if !r.mounts.is_empty() {
        let m: Vec<String> = r
            .mounts
            .iter()
            .map(|m| m.mount_point.display().to_string())
            .collect();
        parts.push(format!("mounted at {}", m.join(", ")));
    }
    if !r.sysfs_holders.is_empty() {
        parts.push(format!(
            "used by kernel device(s) {}",
            r.sysfs_holders.join(", ")
        ));
    }
    if r.claimed {
        parts.push(
            "mounted or claimed where the scan cannot see it (the kernel refuses an exclusive \
             open: EBUSY; e.g. a mount in another mount namespace, or an O_EXCL opener)"
                .to_owned(),
        );
    }
    if !r.skipped_pids.is_empty() {
        let s: Vec<String> = r
            .skipped_pids
            .iter()
            .take(5)
            .map(|s| format!("pid {}: {}", s.pid, s.error))
            .collect();
        parts.push(format!(
            "{} process(es) could not be inspected ({}), so the scan is incomplete — the node plugin needs hostPID and CAP_SYS_PTRACE",
            r.skipped_pids.len(),
            s.join("; ")
        ));
    }
    let after = match access {
        Access::Filesystem => format!(
            "The filesystem at {} is already unmounted and needs no re-mount: the retry only disconnects.",
            staging.display()
        ),
        Access::Block => "Nothing needs to be re-published: the retry only disconnects.".to_owned(),
    };
    format!(
        "device {} ({}) of volume {v} is still in use: {}. The device stays connected; stop those processes \
         (or remove the mounts/holders) and NodeUnstageVolume is retried. {after}",
        d.name,
        d.dev,
        parts.join("; "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_io::probe::PartitionTableKind;

    fn plan(p: Probe, req: Option<FsType>, fresh: bool) -> Result<FsPlan, Error> {
        plan_filesystem("pvc-1", "nvme1n1", &p, req, fresh)
    }

    #[test]
    fn only_a_blank_fresh_device_is_formatted() {
        assert_eq!(
            plan(Probe::Blank, Some(FsType::Xfs), true).unwrap(),
            FsPlan::Format(FsType::Xfs)
        );
        assert_eq!(
            plan(Probe::Blank, None, true).unwrap(),
            FsPlan::Format(FsType::Ext4)
        );
        let e = plan(Probe::Blank, Some(FsType::Ext4), false).unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)));
        let m = e.to_string();
        assert!(
            m.contains("pvc-1")
                && m.contains("nvme1n1")
                && m.contains("not marked fresh")
                && m.contains("nothing was formatted"),
            "{m}"
        );
    }

    #[test]
    fn existing_filesystems_mount_and_mismatches_are_refused() {
        assert_eq!(
            plan(Probe::Filesystem(FsKind::Ext4), None, false).unwrap(),
            FsPlan::Mount(FsType::Ext4)
        );
        assert_eq!(
            plan(Probe::Filesystem(FsKind::Xfs), Some(FsType::Xfs), true).unwrap(),
            FsPlan::Mount(FsType::Xfs)
        );
        let m = plan(Probe::Filesystem(FsKind::Xfs), Some(FsType::Ext4), true)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("holds xfs") && m.contains("fsType ext4") && m.contains("not reformatted"),
            "{m}"
        );
    }

    #[test]
    fn anything_unclear_is_refused_whatever_fresh_says() {
        for p in [
            Probe::Unknown,
            Probe::Ambiguous(vec!["ext4".into(), "gpt".into()]),
            Probe::PartitionTable(PartitionTableKind::Gpt),
            Probe::Filesystem(FsKind::Btrfs),
            Probe::Filesystem(FsKind::Luks),
            Probe::Filesystem(FsKind::Ext3),
        ] {
            for fresh in [true, false] {
                let e = plan(p.clone(), Some(FsType::Ext4), fresh).unwrap_err();
                assert!(matches!(e, Error::FailedPrecondition(_)), "{p:?}");
                assert!(e.to_string().contains("nothing was formatted"), "{e}");
            }
        }
    }

    #[test]
    fn volume_ids_are_safe_file_names() {
        assert!(check_volume_id("pvc-0b7c1e2a-1234").is_ok());
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(check_volume_id(bad).is_err(), "{bad:?}");
        }
    }
}
