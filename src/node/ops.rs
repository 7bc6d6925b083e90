//! The node's volume operations in typed form (no CSI types here): the [`Node`] and what its
//! operations share. Each family lives in its own module: [`super::stage`] (stage, unstage),
//! [`super::publish`] (publish, unpublish), [`super::stats`] and [`super::expand`], over a
//! [`Transport`] and node-io.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use node_io::dev_num::DevNum;
use node_io::mountinfo::{read_mountinfo, MountInfo, Pid};
use node_io::reader::DeviceReader;
use tokio::time::Instant;

use crate::inflight::InFlight;
use crate::node::error::NodeError;
use crate::node::host_identity::HostIdentity;
use crate::node::metrics::NodeMetrics;
use crate::node::mount;
use crate::node::stage_record::StageRecord;
use crate::node::transport::Transport;

/// Volume ids become file names under the state dir: a conservative allow-list.
pub fn check_volume_id(volume_id: &str) -> Result<(), NodeError> {
    if volume_id.is_empty() {
        return Err(NodeError::Missing { field: "volume_id" });
    }
    let ok = volume_id.len() <= 128
        && !volume_id.starts_with('.')
        && volume_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(NodeError::BadVolumeId {
            id: volume_id.to_owned(),
        });
    }
    Ok(())
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

impl Node {
    /// The mounts stacked at `path`, bottom first, in this plugin's mount namespace (where it
    /// mounts; propagated to the host).
    pub(super) fn mounts_at(&self, path: &Path) -> Result<Vec<MountInfo>, NodeError> {
        let table = read_mountinfo(&self.proc_root, Pid::Current).map_err(NodeError::Mountinfo)?;
        Ok(table.by_target(path).into_iter().cloned().collect())
    }

    /// Unmounts everything stacked at `path`.
    pub(super) async fn unmount_all(
        &self,
        path: &Path,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        for _ in 0..8 {
            if self.mounts_at(path)?.is_empty() {
                return Ok(());
            }
            mount::unmount(path, deadline)
                .await
                .map_err(|e| NodeError::Unmount(Box::new(e)))?;
        }
        Err(NodeError::StillMounted {
            path: path.to_owned(),
        })
    }

    /// The stage record of `volume_id`; NotStaged without one.
    pub(super) fn staged(&self, volume_id: &str) -> Result<StageRecord, NodeError> {
        StageRecord::load(&self.state_dir, volume_id)?.ok_or(NodeError::NotStaged)
    }
}

pub(super) fn dev_of(rdev: u64) -> DevNum {
    DevNum::new(rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids_are_safe_file_names() {
        assert!(check_volume_id("pvc-0b7c1e2a-1234").is_ok());
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(check_volume_id(bad).is_err(), "{bad:?}");
        }
    }
}
