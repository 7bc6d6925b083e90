//! The demo's scenario: volumes walked through their whole life over the real CSI sockets.
//! Every row of the table is the outcome of real RPCs (and, for node steps, real loop
//! devices, mkfs and mounts); nothing is assumed.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use csi::volume_capability::access_mode::Mode;
use csi_proto::v1 as csi;
use tonic::{Code, Status};

use super::report::{Kind, Report};
use super::stack::{Stack, NODE_IDS};
use crate::attachment::EventReason;
use crate::observability::Metrics;
use crate::volume::{keys, FsType};

const GIB: i64 = 1 << 30;
const A: usize = 0;
const B: usize = 1;
const FS_PATTERN_LEN: usize = 4 << 20;
const BLOCK_PATTERN_LEN: usize = 1 << 20;
const FS_FILE: &str = "demo-pattern.bin";

/// A volume as CreateVolume returned it, with the capability it is used with.
#[derive(Clone)]
struct Vol {
    id: String,
    ctx: HashMap<String, String>,
    cap: csi::VolumeCapability,
    block: bool,
}

/// What earlier steps took, so cleanup releases exactly that — also after a failure.
#[derive(Default)]
struct Taken {
    /// (node index, volume id, target path, block)
    node_published: Vec<(usize, String, PathBuf)>,
    /// (node index, volume id, staging path)
    staged: Vec<(usize, String, PathBuf)>,
    /// (volume id, node id)
    ctrl_published: Vec<(String, String)>,
    snapshots: Vec<String>,
    volumes: Vec<String>,
}

pub struct Scenario<'a> {
    stack: &'a mut Stack,
    work: PathBuf,
    taken: Taken,
    publish_ctx: HashMap<(String, usize), HashMap<String, String>>,
}

fn status(s: Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// A cleanup step's result: `done` when every call succeeded, else every failure.
fn all_ok(errors: Vec<String>, done: impl FnOnce() -> String) -> Result<((), String), String> {
    if errors.is_empty() {
        Ok(((), done()))
    } else {
        Err(errors.join("; "))
    }
}

fn mode_cap(access: csi::volume_capability::AccessType, mode: Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(access),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

fn xfs_rwo() -> csi::VolumeCapability {
    mode_cap(
        csi::volume_capability::AccessType::Mount(csi::volume_capability::MountVolume {
            fs_type: FsType::Xfs.as_str().into(),
            ..Default::default()
        }),
        Mode::SingleNodeWriter,
    )
}

fn block_rwx() -> csi::VolumeCapability {
    mode_cap(
        csi::volume_capability::AccessType::Block(csi::volume_capability::BlockVolume {}),
        Mode::MultiNodeMultiWriter,
    )
}

/// Deterministic pseudo-random bytes (xorshift64*): a pattern no filesystem or zeroed disk
/// reproduces by accident.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The path an earlier step produced. A node step only runs when that step succeeded
/// (a failure or a skip stops node steps first), so absence here is a bug in the scenario.
fn present(p: Option<&PathBuf>) -> Result<&PathBuf, String> {
    p.ok_or_else(|| "the step that makes this path did not run".to_string())
}

fn gib(bytes: i64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

/// `(source, fs type)` of the mount at `p` in this mount namespace.
fn mount_at(p: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // The last mount at a path is the visible one.
    info.lines()
        .rev()
        .filter(|l| l.split(' ').nth(4).map(Path::new) == Some(p))
        .filter_map(|l| {
            let (_, post) = l.split_once(" - ")?;
            let mut f = post.split(' ');
            let fs = f.next()?.to_owned();
            let src = f.next()?.to_owned();
            Some((src, fs))
        })
        .next()
}

/// The kernel name of the block device a device node points at (`loop3`).
fn device_name(node: &Path) -> Result<String, String> {
    let md = std::fs::metadata(node).map_err(|e| format!("stat {}: {e}", node.display()))?;
    if !md.file_type().is_block_device() {
        return Err(format!("{} is not a block device node", node.display()));
    }
    let (maj, min) = (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()));
    let link = std::fs::read_link(format!("/sys/dev/block/{maj}:{min}"))
        .map_err(|e| format!("/sys/dev/block/{maj}:{min}: {e}"))?;
    Ok(link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default())
}

fn fs_size(p: &Path) -> Result<u64, String> {
    let s = rustix::fs::statvfs(p).map_err(|e| format!("statvfs {}: {e}", p.display()))?;
    Ok(s.f_blocks * s.f_frsize)
}

/// Flushes a mounted filesystem's data and log to its device, as an application would
/// before asking for a snapshot: a CSI snapshot is a crash-consistent copy of the disk.
fn syncfs(p: &Path) -> Result<(), String> {
    let f = std::fs::File::open(p).map_err(|e| format!("open {}: {e}", p.display()))?;
    rustix::fs::syncfs(&f).map_err(|e| format!("syncfs {}: {e}", p.display()))
}

/// The value of one series in a Prometheus exposition (`name{labels}` exactly), 0 if absent.
pub fn metric(m: &Metrics, series: &str) -> f64 {
    m.render()
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn migration_metrics(m: &Metrics) -> String {
    format!(
        "rds_csi_migration_migrations_total{{result=\"success\"}}={}, rds_csi_migration_duration_seconds_count={}, rds_csi_migration_active_migrations={}",
        metric(m, "rds_csi_migration_migrations_total{result=\"success\"}"),
        metric(m, "rds_csi_migration_duration_seconds_count"),
        metric(m, "rds_csi_migration_active_migrations"),
    )
}

impl<'a> Scenario<'a> {
    pub fn new(stack: &'a mut Stack, work: &Path) -> Self {
        Scenario {
            stack,
            work: work.to_owned(),
            taken: Taken::default(),
            publish_ctx: HashMap::new(),
        }
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.work)
            .map(|r| format!("<work>/{}", r.display()))
            .unwrap_or_else(|_| p.display().to_string())
    }

    fn node_id(&self, n: usize) -> &'static str {
        self.stack.nodes[n].id
    }

    fn staging(&self, n: usize, vol: &str) -> PathBuf {
        self.stack.nodes[n].dir.join("staging").join(vol)
    }

    fn target(&self, n: usize, v: &Vol) -> PathBuf {
        let d = self.stack.nodes[n].dir.join("pods").join(&v.id);
        if v.block {
            d.join("dev")
        } else {
            d.join("mount")
        }
    }

    /// Events recorded for `volume` with `reason`, latest last.
    fn events(&self, volume: &str, reason: EventReason) -> Vec<String> {
        self.stack
            .events
            .all()
            .into_iter()
            .filter(|(v, e)| v == volume && e.reason == reason)
            .map(|(_, e)| {
                format!(
                    "{} {}: {}",
                    e.event_type.as_str(),
                    e.reason.as_str(),
                    e.message
                )
            })
            .collect()
    }

    // ---- RPCs, each recording what it took ------------------------------------------

    async fn create(
        &mut self,
        name: &str,
        bytes: i64,
        cap: csi::VolumeCapability,
        params: &[(&str, &str)],
        source: Option<csi::volume_content_source::Type>,
    ) -> Result<(Vol, String), String> {
        let block = matches!(
            cap.access_type,
            Some(csi::volume_capability::AccessType::Block(_))
        );
        self.taken.volumes.push(name.to_owned());
        let resp = self
            .stack
            .controller
            .create_volume(csi::CreateVolumeRequest {
                name: name.into(),
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: bytes,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![cap.clone()],
                parameters: params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                volume_content_source: source.map(|t| csi::VolumeContentSource { r#type: Some(t) }),
                ..Default::default()
            })
            .await
            .map_err(|s| format!("CreateVolume {name}: {}", status(s)))?
            .into_inner();
        let v = resp
            .volume
            .ok_or_else(|| format!("CreateVolume {name}: the response has no volume"))?;
        let detail = format!(
            "{} on the RDS, file {}",
            gib(v.capacity_bytes),
            v.volume_context
                .get(keys::VOLUME_FILE)
                .map(String::as_str)
                .unwrap_or("?")
        );
        Ok((
            Vol {
                id: v.volume_id,
                ctx: v.volume_context,
                cap,
                block,
            },
            detail,
        ))
    }

    async fn ctrl_publish(&mut self, v: &Vol, node: &str) -> Result<String, Status> {
        let pair = (v.id.clone(), node.to_owned());
        if !self.taken.ctrl_published.contains(&pair) {
            self.taken.ctrl_published.push(pair);
        }
        let r = self
            .stack
            .controller
            .controller_publish_volume(csi::ControllerPublishVolumeRequest {
                volume_id: v.id.clone(),
                node_id: node.into(),
                volume_capability: Some(v.cap.clone()),
                volume_context: v.ctx.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let nqn = r
            .publish_context
            .get(keys::NQN)
            .cloned()
            .unwrap_or_default();
        if let Some(n) = NODE_IDS.iter().position(|x| *x == node) {
            self.publish_ctx
                .insert((v.id.clone(), n), r.publish_context);
        }
        Ok(format!("granted; publish_context nqn={nqn}"))
    }

    async fn delete_snapshot(&mut self, id: &str) -> Result<(), String> {
        self.stack
            .controller
            .delete_snapshot(csi::DeleteSnapshotRequest {
                snapshot_id: id.to_owned(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| format!("DeleteSnapshot {id}: {}", status(e)))
    }

    async fn delete_volume(&mut self, id: &str) -> Result<(), String> {
        self.stack
            .controller
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: id.to_owned(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| format!("DeleteVolume {id}: {}", status(e)))
    }

    async fn ctrl_unpublish(&mut self, volume: &str, node: &str) -> Result<(), String> {
        self.stack
            .controller
            .controller_unpublish_volume(csi::ControllerUnpublishVolumeRequest {
                volume_id: volume.into(),
                node_id: node.into(),
                ..Default::default()
            })
            .await
            .map_err(|s| format!("ControllerUnpublish {volume} from {node}: {}", status(s)))?;
        self.taken
            .ctrl_published
            .retain(|(v, n)| !(v == volume && n == node));
        Ok(())
    }

    async fn stage(&mut self, n: usize, v: &Vol) -> Result<String, String> {
        let staging = self.staging(n, &v.id);
        self.taken.staged.push((n, v.id.clone(), staging.clone()));
        let publish_context = self
            .publish_ctx
            .get(&(v.id.clone(), n))
            .cloned()
            .unwrap_or_default();
        let node = self.node_id(n);
        self.stack.nodes[n]
            .client
            .node_stage_volume(csi::NodeStageVolumeRequest {
                volume_id: v.id.clone(),
                publish_context,
                staging_target_path: staging.to_string_lossy().into(),
                volume_capability: Some(v.cap.clone()),
                volume_context: v.ctx.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| format!("NodeStage {} on {node}: {}", v.id, status(s)))?;
        if v.block {
            return Ok("device attached (block: nothing to format or mount)".into());
        }
        let (src, fs) = mount_at(&staging).ok_or_else(|| {
            format!(
                "NodeStage {} on {node} answered OK but nothing is mounted at {}",
                v.id,
                staging.display()
            )
        })?;
        Ok(format!("{src} ({fs}) mounted at {}", self.rel(&staging)))
    }

    async fn publish(&mut self, n: usize, v: &Vol) -> Result<(PathBuf, String), String> {
        let (staging, target) = (self.staging(n, &v.id), self.target(n, v));
        self.taken
            .node_published
            .push((n, v.id.clone(), target.clone()));
        let node = self.node_id(n);
        self.stack.nodes[n]
            .client
            .node_publish_volume(csi::NodePublishVolumeRequest {
                volume_id: v.id.clone(),
                staging_target_path: staging.to_string_lossy().into(),
                target_path: target.to_string_lossy().into(),
                volume_capability: Some(v.cap.clone()),
                volume_context: v.ctx.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| format!("NodePublish {} on {node}: {}", v.id, status(s)))?;
        let what = if v.block {
            format!(
                "device node {} → /dev/{}",
                self.rel(&target),
                device_name(&target)?
            )
        } else {
            let (src, fs) = mount_at(&target).ok_or_else(|| {
                format!(
                    "NodePublish {} on {node} answered OK but nothing is mounted at {}",
                    v.id,
                    target.display()
                )
            })?;
            format!("{src} ({fs}) bind-mounted at {}", self.rel(&target))
        };
        Ok((target, what))
    }

    async fn unpublish(&mut self, n: usize, volume: &str, target: &Path) -> Result<(), String> {
        let node = self.node_id(n);
        self.stack.nodes[n]
            .client
            .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                volume_id: volume.into(),
                target_path: target.to_string_lossy().into(),
            })
            .await
            .map_err(|s| format!("NodeUnpublish {volume} on {node}: {}", status(s)))?;
        self.taken
            .node_published
            .retain(|(m, v, t)| !(*m == n && v == volume && t == target));
        Ok(())
    }

    async fn unstage(&mut self, n: usize, volume: &str, staging: &Path) -> Result<(), String> {
        let node = self.node_id(n);
        self.stack.nodes[n]
            .client
            .node_unstage_volume(csi::NodeUnstageVolumeRequest {
                volume_id: volume.into(),
                staging_target_path: staging.to_string_lossy().into(),
            })
            .await
            .map_err(|s| format!("NodeUnstage {volume} on {node}: {}", status(s)))?;
        self.taken
            .staged
            .retain(|(m, v, s)| !(*m == n && v == volume && s == staging));
        Ok(())
    }

    /// Stage + publish on node `n`; the detail of both.
    async fn attach(&mut self, n: usize, v: &Vol) -> Result<(PathBuf, String), String> {
        let staged = self.stage(n, v).await?;
        let (target, published) = self.publish(n, v).await?;
        Ok((target, format!("{staged}; {published}")))
    }

    // ---- the scenario ----------------------------------------------------------------

    pub async fn run(&mut self, r: &mut Report) {
        let fs = self.filesystem_volume(r).await;
        self.migration(r).await;
        if let Some((fs, target)) = fs {
            self.expand_snapshot_clone(r, &fs, target).await;
        } else {
            // Only reached after a failure: the row says what did not run.
            r.step::<(), _>(
                "ControllerExpand, NodeExpand, snapshot, restore, clone",
                Kind::Controller,
                async { Err("not run: pvc-demo-fs was not created".to_string()) },
            )
            .await;
        }
    }

    async fn filesystem_volume(&mut self, r: &mut Report) -> Option<(Vol, Option<PathBuf>)> {
        let v = r
            .step(
                "CreateVolume pvc-demo-fs (1 GiB, xfs, RWO)",
                Kind::Controller,
                self.create(
                    "pvc-demo-fs",
                    GIB,
                    xfs_rwo(),
                    &[(keys::FS_TYPE, FsType::Xfs.as_str())],
                    None,
                ),
            )
            .await?;
        r.step(
            "ControllerPublish pvc-demo-fs → demo-node-a",
            Kind::Controller,
            async {
                self.ctrl_publish(&v, NODE_IDS[A])
                    .await
                    .map(|d| ((), d))
                    .map_err(status)
            },
        )
        .await;
        r.step(
            "NodeStage pvc-demo-fs on demo-node-a (mkfs: blank+fresh)",
            Kind::Node,
            async { self.stage(A, &v).await.map(|d| ((), d)) },
        )
        .await;
        let target = r
            .step(
                "NodePublish pvc-demo-fs on demo-node-a",
                Kind::Node,
                self.publish(A, &v),
            )
            .await;
        {
            let t = target.as_ref();
            r.step(
                "write + read back 4 MiB through the mount",
                Kind::Node,
                async {
                    let t = present(t)?;
                    let f = t.join(FS_FILE);
                    let data = pattern(1, FS_PATTERN_LEN);
                    let mut file = std::fs::File::create(&f)
                        .map_err(|e| format!("create {}: {e}", f.display()))?;
                    file.write_all(&data)
                        .and_then(|_| file.sync_all())
                        .map_err(|e| format!("write {}: {e}", f.display()))?;
                    drop(file);
                    let back =
                        std::fs::read(&f).map_err(|e| format!("read {}: {e}", f.display()))?;
                    if back != data {
                        return Err(format!(
                            "{} reads back different bytes than were written",
                            f.display()
                        ));
                    }
                    Ok((
                        (),
                        format!("{} written, fsync'd, read back identical", FS_FILE),
                    ))
                },
            )
            .await;
        }
        Some((v, target))
    }

    async fn migration(&mut self, r: &mut Report) {
        let Some(v) = r
            .step(
                "CreateVolume pvc-demo-vm (1 GiB, RWX block, KubeVirt)",
                Kind::Controller,
                self.create(
                    "pvc-demo-vm",
                    GIB,
                    block_rwx(),
                    &[(keys::MIGRATION_TIMEOUT_SECONDS, "300")],
                    None,
                ),
            )
            .await
        else {
            return;
        };
        r.step(
            "ControllerPublish pvc-demo-vm → demo-node-a (VM runs)",
            Kind::Controller,
            async {
                self.ctrl_publish(&v, NODE_IDS[A])
                    .await
                    .map(|d| ((), d))
                    .map_err(status)
            },
        )
        .await;
        let source = r
            .step(
                "NodeStage+NodePublish pvc-demo-vm on demo-node-a",
                Kind::Node,
                self.attach(A, &v),
            )
            .await;
        {
            let dev = source.as_ref();
            r.step(
                "VM on demo-node-a writes 1 MiB to the raw device",
                Kind::Node,
                async {
                    let dev = present(dev)?;
                    let data = pattern(2, BLOCK_PATTERN_LEN);
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(dev)
                        .map_err(|e| format!("open {}: {e}", dev.display()))?;
                    f.write_all(&data)
                        .and_then(|_| f.sync_all())
                        .map_err(|e| format!("write {}: {e}", dev.display()))?;
                    Ok(((), format!("{} bytes at offset 0, fsync'd", data.len())))
                },
            )
            .await;
        }
        r.step(
            "ControllerPublish pvc-demo-vm → demo-node-b (migration)",
            Kind::Controller,
            async {
                self.ctrl_publish(&v, NODE_IDS[B]).await.map_err(status)?;
                let ev = self.events(&v.id, EventReason::MigrationStarted);
                let ev = ev.last().ok_or_else(|| {
                    format!(
                        "{} was granted to a second node but no MigrationStarted event was posted",
                        v.id
                    )
                })?;
                let active = metric(&self.stack.metrics, "rds_csi_migration_active_migrations");
                Ok((
                    (),
                    format!("event {ev}; rds_csi_migration_active_migrations={active}"),
                ))
            },
        )
        .await;
        r.step(
            "both nodes hold pvc-demo-vm (ControllerGetVolume)",
            Kind::Controller,
            async {
                let resp = self
                    .stack
                    .controller
                    .controller_get_volume(csi::ControllerGetVolumeRequest {
                        volume_id: v.id.clone(),
                    })
                    .await
                    .map_err(|s| format!("ControllerGetVolume {}: {}", v.id, status(s)))?
                    .into_inner();
                let mut nodes = resp
                    .status
                    .map(|s| s.published_node_ids)
                    .unwrap_or_default();
                nodes.sort();
                if nodes != [NODE_IDS[A], NODE_IDS[B]] {
                    return Err(format!(
                        "{} is published to {nodes:?}, expected both {} and {}",
                        v.id, NODE_IDS[A], NODE_IDS[B]
                    ));
                }
                Ok(((), format!("published_node_ids = {}", nodes.join(", "))))
            },
        )
        .await;
        let target = r
            .step(
                "NodeStage+NodePublish pvc-demo-vm on demo-node-b",
                Kind::Node,
                async {
                    let (t, d) = self.attach(B, &v).await?;
                    Ok((t, format!("{d} (its own loop device over the same file, as a second host has its own NVMe controller)")))
                },
            )
            .await;
        {
            let dev = target.as_ref();
            r.step(
                "demo-node-b reads what demo-node-a wrote",
                Kind::Node,
                async {
                    let dev = present(dev)?;
                    let want = pattern(2, BLOCK_PATTERN_LEN);
                    let mut got = vec![0u8; want.len()];
                    let mut f = std::fs::File::open(dev)
                        .map_err(|e| format!("open {}: {e}", dev.display()))?;
                    f.seek(SeekFrom::Start(0))
                        .and_then(|_| f.read_exact(&mut got))
                        .map_err(|e| format!("read {}: {e}", dev.display()))?;
                    if got != want {
                        return Err(format!(
                            "{} on demo-node-b does not show the bytes demo-node-a wrote",
                            dev.display()
                        ));
                    }
                    Ok(((), "1 MiB identical on the migration target".to_string()))
                },
            )
            .await;
        }
        r.step(
            "ControllerPublish pvc-demo-vm → demo-node-c refused",
            Kind::Controller,
            async {
                match self.ctrl_publish(&v, NODE_IDS[2]).await {
                    Ok(_) => Err(format!(
                        "{} was granted to a third node ({}) during a migration: fencing is broken",
                        v.id, NODE_IDS[2]
                    )),
                    Err(s) if s.code() == Code::FailedPrecondition => {
                        let ev = self.events(&v.id, EventReason::AttachmentConflict);
                        let msg: String = s.message().chars().take(110).collect();
                        Ok((
                            (),
                            format!(
                                "FAILED_PRECONDITION as expected: {msg}…{}",
                                ev.last()
                                    .map(|e| format!(
                                        "; event {}",
                                        e.split(':').next().unwrap_or("")
                                    ))
                                    .unwrap_or_default()
                            ),
                        ))
                    }
                    Err(s) => Err(format!("expected FAILED_PRECONDITION, got {}", status(s))),
                }
            },
        )
        .await;
        // The third node was never granted anything: nothing to clean up for it.
        self.taken
            .ctrl_published
            .retain(|(vol, n)| !(vol == &v.id && n == NODE_IDS[2]));
        {
            let t = source.as_ref();
            r.step(
                "source demo-node-a: NodeUnpublish+NodeUnstage",
                Kind::Node,
                async {
                    let t = present(t)?;
                    self.unpublish(A, &v.id, t).await?;
                    let staging = self.staging(A, &v.id);
                    self.unstage(A, &v.id, &staging).await?;
                    Ok((
                        (),
                        "holder scan complete and empty; loop device detached".to_string(),
                    ))
                },
            )
            .await;
        }
        r.step(
            "ControllerUnpublish pvc-demo-vm from demo-node-a",
            Kind::Controller,
            async {
                self.ctrl_unpublish(&v.id, NODE_IDS[A]).await?;
                let ev = self.events(&v.id, EventReason::MigrationCompleted);
                let ev = ev.last().ok_or_else(|| {
                    format!("the source let go of {} but no MigrationCompleted event was posted", v.id)
                })?;
                let ok = metric(
                    &self.stack.metrics,
                    "rds_csi_migration_migrations_total{result=\"success\"}",
                );
                if ok < 1.0 {
                    return Err("MigrationCompleted was posted but rds_csi_migration_migrations_total{result=\"success\"} is 0".into());
                }
                Ok(((), format!("event {ev}; {}", migration_metrics(&self.stack.metrics))))
            },
        )
        .await;
    }

    async fn expand_snapshot_clone(&mut self, r: &mut Report, fs: &Vol, target: Option<PathBuf>) {
        r.step(
            "ControllerExpand pvc-demo-fs 1 → 2 GiB",
            Kind::Controller,
            async {
                let resp = self
                    .stack
                    .controller
                    .controller_expand_volume(csi::ControllerExpandVolumeRequest {
                        volume_id: fs.id.clone(),
                        capacity_range: Some(csi::CapacityRange {
                            required_bytes: 2 * GIB,
                            limit_bytes: 0,
                        }),
                        volume_capability: Some(fs.cap.clone()),
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| format!("ControllerExpandVolume {}: {}", fs.id, status(s)))?
                    .into_inner();
                if resp.capacity_bytes < 2 * GIB {
                    return Err(format!(
                        "{} is {} bytes after the expansion, 2 GiB was asked",
                        fs.id, resp.capacity_bytes
                    ));
                }
                Ok((
                    (),
                    format!(
                        "RDS disk now {}, node_expansion_required={}",
                        gib(resp.capacity_bytes),
                        resp.node_expansion_required
                    ),
                ))
            },
        )
        .await;
        {
            let t = target.as_ref();
            r.step(
                "NodeExpand pvc-demo-fs (xfs_growfs online)",
                Kind::Node,
                async {
                    let t = present(t)?;
                    let before = fs_size(t)?;
                    let staging = self.staging(A, &fs.id);
                    let resp = self.stack.nodes[A]
                        .client
                        .node_expand_volume(csi::NodeExpandVolumeRequest {
                            volume_id: fs.id.clone(),
                            volume_path: t.to_string_lossy().into(),
                            capacity_range: Some(csi::CapacityRange {
                                required_bytes: 2 * GIB,
                                limit_bytes: 0,
                            }),
                            staging_target_path: staging.to_string_lossy().into(),
                            volume_capability: Some(fs.cap.clone()),
                            ..Default::default()
                        })
                        .await
                        .map_err(|s| format!("NodeExpand {}: {}", fs.id, status(s)))?
                        .into_inner();
                    let after = fs_size(t)?;
                    if after <= before {
                        return Err(format!(
                            "the filesystem at {} did not grow ({before} → {after} bytes)",
                            t.display()
                        ));
                    }
                    Ok((
                        (),
                        format!(
                            "device {}, filesystem {:.2} → {:.2} GiB while mounted",
                            gib(resp.capacity_bytes),
                            before as f64 / GIB as f64,
                            after as f64 / GIB as f64
                        ),
                    ))
                },
            )
            .await;
        }
        let snap = r
            .step("CreateSnapshot snapshot-demo-fs", Kind::Controller, async {
                if let Some(t) = &target {
                    syncfs(t)?;
                }
                self.taken.snapshots.push("snapshot-demo-fs".into());
                let s = self
                    .stack
                    .controller
                    .create_snapshot(csi::CreateSnapshotRequest {
                        source_volume_id: fs.id.clone(),
                        name: "snapshot-demo-fs".into(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| format!("CreateSnapshot of {}: {}", fs.id, status(s)))?
                    .into_inner()
                    .snapshot
                    .ok_or("CreateSnapshot: the response has no snapshot")?;
                // Track the id the driver chose (the name is only the request's).
                self.taken.snapshots.retain(|n| n != "snapshot-demo-fs");
                self.taken.snapshots.push(s.snapshot_id.clone());
                if !s.ready_to_use {
                    return Err(format!("snapshot {} is not ready_to_use", s.snapshot_id));
                }
                Ok((
                    s.snapshot_id.clone(),
                    format!(
                        "id {}, {}, ready_to_use{}",
                        s.snapshot_id,
                        gib(s.size_bytes),
                        if target.is_some() {
                            " (syncfs'd the mount first)"
                        } else {
                            ""
                        }
                    ),
                ))
            })
            .await;
        let copies: Vec<(&str, &str, Option<csi::volume_content_source::Type>)> = vec![
            (
                "pvc-demo-restore",
                "restore from the snapshot",
                snap.clone().map(|id| {
                    csi::volume_content_source::Type::Snapshot(
                        csi::volume_content_source::SnapshotSource { snapshot_id: id },
                    )
                }),
            ),
            (
                "pvc-demo-clone",
                "clone of pvc-demo-fs",
                Some(csi::volume_content_source::Type::Volume(
                    csi::volume_content_source::VolumeSource {
                        volume_id: fs.id.clone(),
                    },
                )),
            ),
        ];
        for (name, what, source) in copies {
            let Some(source) = source else {
                r.step::<(), _>(
                    format!("CreateVolume {name} ({what})"),
                    Kind::Controller,
                    async { Err("not run: there is no snapshot to restore from".to_string()) },
                )
                .await;
                continue;
            };
            if let (Some(t), false) = (&target, name.ends_with("restore")) {
                // The clone copies the live disk: flush first, as for the snapshot.
                if let Err(e) = syncfs(t) {
                    r.fail("syncfs before the clone", e);
                }
            }
            let Some(copy) = r
                .step(
                    format!("CreateVolume {name} ({what})"),
                    Kind::Controller,
                    async {
                        let (v, d) = self
                            .create(
                                name,
                                2 * GIB,
                                xfs_rwo(),
                                &[(keys::FS_TYPE, FsType::Xfs.as_str())],
                                Some(source),
                            )
                            .await?;
                        let fresh = v
                            .ctx
                            .get(keys::FRESH)
                            .cloned()
                            .unwrap_or_else(|| "?".into());
                        Ok((v, format!("{d}; fresh={fresh} (never formatted)")))
                    },
                )
                .await
            else {
                continue;
            };
            r.step(
                format!("ControllerPublish {name} → demo-node-a"),
                Kind::Controller,
                async {
                    self.ctrl_publish(&copy, NODE_IDS[A])
                        .await
                        .map(|d| ((), d))
                        .map_err(status)
                },
            )
            .await;
            r.step(
                format!("stage+publish {name}, read the data"),
                Kind::Node,
                async {
                    let (t, d) = self.attach(A, &copy).await?;
                    let f = t.join(FS_FILE);
                    let got = std::fs::read(&f).map_err(|e| {
                        format!("{name}: {} is missing on the copy: {e}", f.display())
                    })?;
                    if got != pattern(1, FS_PATTERN_LEN) {
                        return Err(format!(
                            "{name}: {} differs from what was written to pvc-demo-fs",
                            f.display()
                        ));
                    }
                    Ok(((), format!("{d}; {FS_FILE} identical to the source's")))
                },
            )
            .await;
        }
    }

    // ---- cleanup: always runs, releases exactly what was taken ----------------------

    pub async fn cleanup(&mut self, r: &mut Report) {
        let published = std::mem::take(&mut self.taken.node_published);
        if !published.is_empty() {
            r.step(
                format!("cleanup: NodeUnpublish ({} targets)", published.len()),
                Kind::Cleanup,
                async {
                    let mut errors = Vec::new();
                    for (n, v, t) in published.iter().rev() {
                        if let Err(e) = self.unpublish(*n, v, t).await {
                            errors.push(e);
                        }
                    }
                    all_ok(errors, || {
                        "targets unmounted / device nodes removed".to_string()
                    })
                },
            )
            .await;
        }
        let staged = std::mem::take(&mut self.taken.staged);
        if !staged.is_empty() {
            r.step(
                format!(
                    "cleanup: NodeUnstage ({} volumes, holder scan)",
                    staged.len()
                ),
                Kind::Cleanup,
                async {
                    let mut errors = Vec::new();
                    for (n, v, s) in staged.iter().rev() {
                        if let Err(e) = self.unstage(*n, v, s).await {
                            errors.push(e);
                        }
                    }
                    all_ok(errors, || {
                        "unmounted; holder scans complete and empty; loop devices detached"
                            .to_string()
                    })
                },
            )
            .await;
        }
        let ctrl = std::mem::take(&mut self.taken.ctrl_published);
        if !ctrl.is_empty() {
            r.step(
                format!("cleanup: ControllerUnpublish ({} attachments)", ctrl.len()),
                Kind::Cleanup,
                async {
                    let mut errors = Vec::new();
                    for (v, n) in ctrl.iter().rev() {
                        if let Err(e) = self.ctrl_unpublish(v, n).await {
                            errors.push(e);
                        }
                    }
                    let detached = self
                        .stack
                        .events
                        .reasons()
                        .iter()
                        .filter(|r| *r == EventReason::VolumeDetached.as_str())
                        .count();
                    all_ok(errors, || {
                        format!("attachment table empty; {detached} VolumeDetached events in all")
                    })
                },
            )
            .await;
        }
        let snaps = std::mem::take(&mut self.taken.snapshots);
        if !snaps.is_empty() {
            r.step(
                format!("cleanup: DeleteSnapshot ({})", snaps.len()),
                Kind::Cleanup,
                async {
                    let mut errors = Vec::new();
                    for s in &snaps {
                        if let Err(e) = self.delete_snapshot(s).await {
                            errors.push(e);
                        }
                    }
                    all_ok(errors, || snaps.join(", "))
                },
            )
            .await;
        }
        let vols = std::mem::take(&mut self.taken.volumes);
        if !vols.is_empty() {
            r.step(
                format!("cleanup: DeleteVolume ({})", vols.len()),
                Kind::Cleanup,
                async {
                    let mut errors = Vec::new();
                    for v in vols.iter().rev() {
                        if let Err(e) = self.delete_volume(v).await {
                            errors.push(e);
                        }
                    }
                    all_ok(errors, || vols.join(", "))
                },
            )
            .await;
        }
        r.step("the RDS is empty again", Kind::Cleanup, async {
            let left: Vec<String> = self
                .stack
                .sim
                .disks()
                .into_iter()
                .map(|d| d.slot.to_string())
                .collect();
            if !left.is_empty() {
                return Err(format!(
                    "disks left on the simulator: {}; they are removed with the work directory",
                    left.join(", ")
                ));
            }
            let listed = self
                .stack
                .controller
                .list_volumes(csi::ListVolumesRequest::default())
                .await
                .map_err(|s| format!("ListVolumes: {}", status(s)))?
                .into_inner()
                .entries
                .len();
            if listed != 0 {
                return Err(format!("ListVolumes still lists {listed} volumes"));
            }
            Ok((
                (),
                "no disks on the simulator; ListVolumes is empty".to_string(),
            ))
        })
        .await;
    }
}
