//! NodeUnstageVolume: unmount the staging path, then disconnect the device unless anything on
//! the host still holds it.
//!
//! Nothing is unmounted or disconnected on the word of a record alone: a mount is unmounted
//! only if its device is one of the volume's (one the kernel attributes to its target now, or
//! the one recorded at stage if no other live device has its number), and a record from an
//! earlier boot describes nothing the kernel still has. Mounts are found in mountinfo, never
//! by stat — a path whose filesystem was shut down after its device was lost answers stat
//! with EIO, yet must still be unmounted.

use std::path::Path;

use node_io::dev_num::DevNum;
use tokio::time::Instant;

use crate::node::error::NodeError;
use crate::node::holders::describe_holders;
use crate::node::mount;
use crate::node::ops::Node;
use crate::node::stage_record::StageRecord;

impl Node {
    /// Unmounts everything stacked at `path`, each mount only if `ours` says its device is
    /// the volume's; a mount of another device is refused and left alone.
    pub(super) async fn unmount_ours(
        &self,
        path: &Path,
        ours: &[DevNum],
        deadline: Instant,
    ) -> Result<(), NodeError> {
        for _ in 0..8 {
            let Some(top) = self.mounts_at(path)?.pop() else {
                return Ok(());
            };
            if !ours.contains(&top.dev) {
                return Err(NodeError::NotOurMount {
                    path: path.to_owned(),
                    mounted: top.dev,
                    source_name: top.source.to_string_lossy().into_owned(),
                });
            }
            mount::unmount(path, deadline)
                .await
                .map_err(|e| NodeError::Unmount(Box::new(e)))?;
        }
        Err(NodeError::StillMounted {
            path: path.to_owned(),
        })
    }

    pub async fn unstage(
        &self,
        volume_id: &str,
        staging_path: &Path,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        let v = volume_id;
        let rec = StageRecord::load(&self.state_dir, v, &self.boot)?;
        let Some(rec) = rec.filter(|r| r.of_boot(&self.boot.id)) else {
            // Nothing of this volume is staged in this boot. Whatever is mounted at the
            // staging path is not known to be the volume's: refused, never unmounted.
            self.unmount_ours(staging_path, &[], deadline).await?;
            if StageRecord::remove(&self.state_dir, v).is_ok() {
                tracing::info!(volume = %v, "unstage: no stage record of this boot (a record of an earlier boot, if any, is removed); nothing to do");
            }
            return Ok(());
        };
        let ours = self.devices_of_record(&rec)?;
        self.unmount_ours(staging_path, &ours, deadline).await?;
        if rec.staging_path != staging_path {
            self.unmount_ours(&rec.staging_path, &ours, deadline)
                .await?;
        }
        // Resolved after the unmounts: over a lost target an unmount waits until the kernel
        // fails its writes (at ctrl_loss_tmo), and the device may be gone by then.
        if let Some(d) = self.transport.resolve(&rec.target).await? {
            match self.holders(&d, deadline).await {
                Ok(report) if !report.is_empty() || !report.is_complete() => {
                    return Err(NodeError::InUse(describe_holders(
                        &d,
                        &report,
                        rec.access,
                        staging_path,
                    )));
                }
                Ok(_) => {}
                // A device that went away during the scan has nothing left to protect.
                Err(e) => match self.transport.resolve(&rec.target).await? {
                    Some(now) if now.dev == d.dev => return Err(e),
                    _ => tracing::info!(volume = %v, device = %d.name,
                        "unstage: the device went away during the holder scan; nothing can hold it now"),
                },
            }
        }
        self.transport.detach(&rec.target, deadline).await?;
        StageRecord::remove(&self.state_dir, v)
    }
}
