//! NodeExpandVolume: rescan the device, wait for the new size, grow the filesystem.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use tokio::time::Instant;

use crate::node::error::NodeError;
use crate::node::mount;
use crate::node::ops::Node;
use crate::node::stats::stat_volume_path;
use crate::volume::AccessType;

impl Node {
    pub async fn expand(
        &self,
        volume_id: &str,
        path: &Path,
        required: u64,
        deadline: Instant,
    ) -> Result<u64, NodeError> {
        let md = stat_volume_path(path)?;
        let rec = self.staged(volume_id)?;
        let t = rec.target.clone();
        self.transport.rescan(&t, deadline).await?;
        let d = self.transport.wait_for_size(&t, required, deadline).await?;
        if rec.access == AccessType::Block || md.file_type().is_block_device() {
            return Ok(d.size_bytes);
        }
        // Only a filesystem on the volume's own device is grown: whatever else is mounted at
        // the path (another volume's, a stale mount) is left as it is.
        let mounted = self.mounts_at(path)?.pop();
        if let Some(m) = mounted.as_ref().filter(|m| m.dev != d.dev) {
            return Err(NodeError::NotOurMount {
                path: path.to_owned(),
                mounted: m.dev,
                source_name: m.source.to_string_lossy().into_owned(),
            });
        }
        let fs = mounted
            .map(|m| m.fs_type)
            .or(rec.fs_type.map(|f| f.as_str().to_owned()))
            .unwrap_or_default();
        match crate::volume::FsType::parse(&fs) {
            Ok(crate::volume::FsType::Ext4) => {
                mount::run_tool("resize2fs", &[&d.path.to_string_lossy()], deadline).await?
            }
            Ok(crate::volume::FsType::Xfs) => {
                mount::run_tool("xfs_growfs", &[&path.to_string_lossy()], deadline).await?
            }
            Err(_) => {
                return Err(NodeError::CannotGrow {
                    path: path.to_owned(),
                    fs,
                })
            }
        };
        Ok(d.size_bytes)
    }
}
