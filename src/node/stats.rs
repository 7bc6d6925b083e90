//! NodeGetVolumeStats: usage from the device or statfs, and the volume's condition from a
//! fresh device resolution and a health read under a deadline.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use node_io::dev_num::DevNum;
use node_io::health;
use tokio::time::Instant;

use crate::node::error::{show, NodeError};
use crate::node::ops::{dev_of, Node};
use crate::node::transport::blocking_until;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub bytes_total: u64,
    pub bytes_available: Option<u64>,
    pub bytes_used: Option<u64>,
    /// (total, available, used), filesystems only.
    pub inodes: Option<(u64, u64, u64)>,
}

impl Usage {
    /// Nothing known (a dead path).
    const NONE: Usage = Usage {
        bytes_total: 0,
        bytes_available: None,
        bytes_used: None,
        inodes: None,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub abnormal: bool,
    pub message: String,
}

/// How long a NodeGetVolumeStats health read may take before the device counts as stuck.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(2);

impl Node {
    pub async fn stats(
        &self,
        volume_id: &str,
        path: &Path,
        deadline: Instant,
    ) -> Result<(Usage, Condition), NodeError> {
        let short = deadline.min(Instant::now() + Duration::from_secs(10));
        // A stat can hang on a device that stopped answering: bounded like every other read.
        let p = path.to_owned();
        let md = blocking_until(format!("stat {}", show(path)), short, move || {
            Ok::<_, NodeError>(std::fs::metadata(&p))
        })
        .await?;
        let md = match md {
            Ok(md) => md,
            Err(e) if is_dead(&e) => return Ok((Usage::NONE, dead_path(volume_id, path, &e))),
            Err(e) => return Err(stat_error(path, e)),
        };
        let (usage, path_dev) = if md.file_type().is_block_device() {
            let dev = dev_of(md.rdev());
            // A device gone since (its node left behind) reports 0 bytes; its condition
            // says why.
            let bytes = node_io::block::size_bytes(&self.sys_root, dev).unwrap_or(0);
            (
                Usage {
                    bytes_total: bytes,
                    bytes_available: None,
                    bytes_used: None,
                    inodes: None,
                },
                Some(dev),
            )
        } else {
            let p = path.to_owned();
            let s = blocking_until(format!("statfs {}", show(path)), short, move || {
                Ok::<_, NodeError>(rustix::fs::statvfs(&p).map_err(std::io::Error::from))
            })
            .await?;
            let s = match s {
                Ok(s) => s,
                Err(e) if is_dead(&e) => return Ok((Usage::NONE, dead_path(volume_id, path, &e))),
                Err(source) => {
                    return Err(NodeError::Io {
                        what: "statfs",
                        path: path.to_owned(),
                        source,
                    })
                }
            };
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
        let rec = match self.record(v) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return bad(format!(
                    "volume {v} has no stage record on this node; it was not staged by this plugin"
                ))
            }
            Err(e) => return bad(e.to_string()),
        };
        let t = rec.target.clone();
        let d = match self.transport.resolve(&t).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return bad(format!(
                    "the device of volume {v} (staged as {}) is gone{}; if it does not come back, unpublish and unstage it, then stage it again",
                    rec.device
                        .as_ref()
                        .map_or("an unknown device".to_owned(), |d| format!("{} {}", d.name, d.dev)),
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
}

/// Whether `e` says the filesystem under a path is gone (shut down after its device was
/// lost, a dead network mount): EIO, ENOTCONN, ESTALE, EUCLEAN.
pub(super) fn is_dead(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::ENOTCONN | libc::ESTALE | libc::EUCLEAN)
    )
}

/// The condition of a volume whose path answers with a dead-filesystem error.
fn dead_path(volume_id: &str, path: &Path, e: &std::io::Error) -> Condition {
    Condition {
        abnormal: true,
        message: format!(
            "volume {volume_id}: {} answers {e}: its filesystem was shut down, most likely because \
             its device was lost; unpublish and unstage the volume (both still work), then stage it again",
            path.display()
        ),
    }
}

fn stat_error(path: &Path, e: std::io::Error) -> NodeError {
    if e.kind() == std::io::ErrorKind::NotFound {
        NodeError::PathNotFound {
            path: path.to_owned(),
        }
    } else {
        NodeError::Io {
            what: "cannot stat",
            path: path.to_owned(),
            source: e,
        }
    }
}

/// The metadata of a CO-given volume path: NOT_FOUND when it does not exist.
pub(super) fn stat_volume_path(path: &Path) -> Result<std::fs::Metadata, NodeError> {
    std::fs::metadata(path).map_err(|e| stat_error(path, e))
}
