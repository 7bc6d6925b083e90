//! NodeExpandVolume: rescan the device, wait for the new size, grow the filesystem.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::node::mount;
use crate::node::ops::{with_volume, Node};
use crate::node::stage_record::Access;
use crate::node::transport::Target;

impl Node {
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
