//! NodeUnpublishVolume: undo what publish made at the target path, and nothing else.
//!
//! Mounts are found in mountinfo (never by stat: the filesystem of a volume whose device was
//! lost answers stat with EIO, and the pod must still be able to terminate), and one is
//! unmounted only if its device is the volume's — one the kernel attributes to the volume's
//! target now, or the one recorded at stage if no other live device has its number.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use node_io::dev_num::DevNum;
use tokio::time::Instant;

use crate::node::error::NodeError;
use crate::node::ops::Node;

impl Node {
    /// The device numbers that are this volume's now, from its stage record of this boot
    /// checked against the kernel.
    fn devices_of(&self, volume_id: &str) -> Result<Vec<DevNum>, NodeError> {
        match self.record(volume_id)? {
            Some(rec) => self.devices_of_record(&rec),
            None => Ok(Vec::new()),
        }
    }

    pub async fn unpublish(
        &self,
        volume_id: &str,
        target: &Path,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        let io = |what: &'static str, source: std::io::Error| NodeError::Io {
            what,
            path: target.to_owned(),
            source,
        };
        if !self.mounts_at(target)?.is_empty() {
            let ours = self.devices_of(volume_id)?;
            self.unmount_ours(target, &ours, deadline).await?;
        }
        let md = match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("cannot inspect", e)),
            Ok(md) => md,
        };
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("cannot remove", e)),
            _ => Ok(()),
        };
        let t = md.file_type();
        if t.is_dir() {
            gone(std::fs::remove_dir(target))
        } else if t.is_block_device() {
            // A device node publish made: unlinking it never touches the device.
            gone(std::fs::remove_file(target))
        } else {
            // Not something publish makes: left alone; nothing of the volume is there.
            tracing::warn!(volume = %volume_id, target = %target.display(),
                "unpublish: the target is neither a directory nor a device node; left alone");
            Ok(())
        }
    }
}
