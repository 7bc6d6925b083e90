//! The node's volume operations in typed form (no CSI types here): the [`Node`] and what its
//! operations share. Each family lives in its own module: [`super::stage`] (stage, unstage),
//! [`super::publish`] (publish, unpublish), [`super::stats`] and [`super::expand`], over a
//! [`Transport`] and node-io.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use node_io::dev_num::DevNum;
use node_io::mountinfo::{read_mountinfo, MountInfo, Pid};
use node_io::reader::DeviceReader;

use crate::csi::inflight::InFlight;
use crate::node::error::NodeError;
use crate::node::host_identity::HostIdentity;
use crate::node::metrics::NodeMetrics;
use crate::node::stage_record::{Boot, StageRecord};
use crate::node::transport::{Device, Transport};

/// The one volume-id rule (`crate::volume::VolumeId`: ids are RDS slots). Volume ids become
/// file names under the state dir, which the rule makes safe (no `/`, no leading `.`).
pub fn check_volume_id(volume_id: &str) -> Result<(), NodeError> {
    match crate::volume::VolumeId::parse(volume_id) {
        Ok(_) => Ok(()),
        Err(crate::volume::InvalidVolumeId::Empty) => {
            Err(NodeError::Missing { field: "volume_id" })
        }
        Err(e) => Err(NodeError::BadVolumeId(e)),
    }
}

pub struct Node {
    pub node_id: String,
    pub max_volumes: u32,
    pub topology: BTreeMap<String, String>,
    pub state_dir: PathBuf,
    /// The running boot, read at start: records of other boots are not trusted.
    pub boot: Boot,
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

    /// The stage record of `volume_id` if it was written in the running boot. A record of an
    /// earlier boot describes a connection and mounts that the reboot ended: it is ignored
    /// (with a log line) until NodeStage replaces it or the reconciler drops it.
    pub fn record(&self, volume_id: &str) -> Result<Option<StageRecord>, NodeError> {
        let rec = StageRecord::load(&self.state_dir, volume_id, &self.boot)?;
        Ok(rec.filter(|r| {
            let current = r.of_boot(&self.boot.id);
            if !current {
                tracing::info!(volume = %volume_id, "the stage record is from an earlier boot; ignored (nothing it describes survived the reboot)");
            }
            current
        }))
    }

    /// The device numbers that are volume `rec`'s now: every device the kernel attributes to
    /// its target, and the one recorded at stage unless a live device of something else has
    /// that number now. A device lost under a mount keeps its number until the unmount (so
    /// a dead path is still the volume's); a number another volume's device carries now is
    /// never taken on the record's word.
    pub(super) fn devices_of_record(&self, rec: &StageRecord) -> Result<Vec<DevNum>, NodeError> {
        let mut ours = self.transport.kernel_devices(&rec.target)?;
        if let Some(d) = rec.device.as_ref().filter(|d| !ours.contains(&d.dev)) {
            let live = node_io::block::size_bytes(&self.sys_root, d.dev).is_ok_and(|b| b > 0);
            if live {
                tracing::warn!(volume = %rec.volume_id, recorded = %d.dev, name = %d.name,
                    "the recorded device number belongs to another live device now; not taken as the volume's");
            } else {
                ours.push(d.dev);
            }
        }
        Ok(ours)
    }

    /// The stage record of `volume_id` in the running boot; NotStaged without one.
    pub(super) fn staged(&self, volume_id: &str) -> Result<StageRecord, NodeError> {
        self.record(volume_id)?.ok_or(NodeError::NotStaged)
    }
}

/// The staging path `path` holds mount `m`, not the volume's `device` (a mount left from
/// before a renumbering, or put there by something else).
pub(super) fn staging_mounted_elsewhere(path: &Path, m: &MountInfo, device: Device) -> NodeError {
    NodeError::StagingMountedElsewhere {
        path: path.to_path_buf(),
        mounted: m.dev,
        source_name: m.source.to_string_lossy().into_owned(),
        device: device.name,
        dev: device.dev,
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
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(64), "PVC_1"] {
            assert!(check_volume_id(bad).is_err(), "{bad:?}");
        }
    }
}
