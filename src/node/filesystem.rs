//! What NodeStage does to a volume's filesystem besides mounting it: probing the device, and
//! growing a filesystem that is smaller than its device before the volume is handed out.
//!
//! A filesystem smaller than its device happens when a volume is restored or cloned into a
//! larger size (the copy carries the source's filesystem) or grown while unstaged. The CO
//! believes the volume has its full size and never asks to resize it, so the node grows it at
//! stage: ext4 offline before the mount (`e2fsck -f -p`, which resize2fs requires, then
//! `resize2fs`: an online grow needs CAP_SYS_RESOURCE on top of CAP_SYS_ADMIN), xfs online
//! after it (`xfs_growfs`: xfs grows only mounted).

use std::path::Path;

use node_io::probe::{self, Probe};
use tokio::time::Instant;

use crate::node::error::NodeError;
use crate::node::mount::{run_tool, run_tool_status};
use crate::node::ops::Node;
use crate::node::transport::{blocking_until, Device};

/// The size in bytes of the ext4 filesystem described by `dumpe2fs -h` output.
fn ext4_bytes(dumpe2fs: &str) -> Option<u64> {
    let field = |name: &str| {
        dumpe2fs.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    field("Block count")?.checked_mul(field("Block size")?)
}

impl Node {
    pub(super) async fn probe(&self, d: &Device, deadline: Instant) -> Result<Probe, NodeError> {
        let (reader, path, device) = (self.reader.clone(), d.path.clone(), d.name.clone());
        let std_deadline = deadline.into_std();
        blocking_until(format!("probing {}", d.name), deadline, move || {
            probe::probe_device(&reader, &path, std_deadline)
                .map_err(|source| NodeError::NotReadable { device, source })
        })
        .await
    }

    /// Grows the (unmounted) ext4 on `d` to the device's size if it is smaller.
    pub(super) async fn grow_ext4(
        &self,
        volume_id: &str,
        d: &Device,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        let dev = d.path.to_string_lossy().into_owned();
        let info = run_tool("dumpe2fs", &["-h", &dev], deadline).await?;
        let Some(fs_bytes) = ext4_bytes(&info) else {
            return Err(NodeError::ToolOutput {
                command: format!("dumpe2fs -h {dev}"),
                missing: "Block count and Block size",
            });
        };
        if fs_bytes >= d.size_bytes {
            return Ok(());
        }
        tracing::info!(volume = %volume_id, device = %d.name, filesystem_bytes = fs_bytes, device_bytes = d.size_bytes,
            "the ext4 is smaller than its device (restored or cloned into a larger size, or grown while unstaged): growing it before the mount");
        // resize2fs works only on a checked filesystem; -p repairs only what is safe to
        // repair unattended (exit 1: repaired; 2 and up: it needs a person).
        let (status, out) = run_tool_status("e2fsck", &["-f", "-p", &dev], deadline).await?;
        if !matches!(status.code(), Some(0 | 1)) {
            return Err(NodeError::NeedsFsck {
                device: d.name.clone(),
                status,
                output: out,
            });
        }
        run_tool("resize2fs", &[&dev], deadline).await?;
        Ok(())
    }

    /// Grows the xfs mounted at `path` to its device's size (xfs_growfs does nothing when it
    /// already fills it).
    pub(super) async fn grow_xfs(
        &self,
        volume_id: &str,
        path: &Path,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        let size = |p: &Path| rustix::fs::statvfs(p).map(|s| s.f_blocks * s.f_frsize).ok();
        let before = size(path);
        run_tool("xfs_growfs", &[&path.to_string_lossy()], deadline).await?;
        let after = size(path);
        if after > before {
            tracing::info!(volume = %volume_id, before = ?before, after = ?after,
                "grew the xfs to its device's size (restored or cloned into a larger size, or grown while unstaged)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ext4_size_is_block_count_times_block_size() {
        let out = "dumpe2fs 1.47.0 (5-Feb-2023)\nFilesystem volume name:   <none>\n\
                   Block count:              262144\nReserved block count:     13107\n\
                   Block size:               4096\n";
        assert_eq!(ext4_bytes(out), Some(1 << 30));
        assert_eq!(ext4_bytes("Block count: 5\n"), None);
    }
}
