//! CSI Controller: volumes and snapshots on the RDS (over `rds/`), attachments and fencing
//! (over `attachment/`). As on the node, the service layer (`service.rs`) parses each request
//! into a typed one (`requests.rs`), takes the per-volume in-flight guard and calls one
//! operation of [`Controller`]; every error is a [`ControllerError`] whose code is chosen in
//! one table (`error.rs`).

mod assembly;
pub mod attachment_sync;
pub mod error;
mod files;
pub mod health;
mod inventory;
pub mod leader;
pub mod naming;
pub mod node_watch;
pub mod pagination;
pub mod params;
pub mod preflight;
mod publish;
pub mod rds_errors;
pub mod requests;
mod run;
mod service;
mod snapshots;
pub mod state_file;
mod sweeper;
mod volumes;

#[cfg(test)]
pub(crate) mod failover_tests;
#[cfg(test)]
pub(crate) mod kubernetes_tests;

use std::collections::HashMap;

use csi_proto::v1 as csi;

use crate::attachment::{AttachmentMetrics, AttachmentTable, Operation};
use crate::csi::inflight::InFlight;
use crate::error::Error;
use crate::k8s::{AttachmentSource, EventSink, NodeDirectory};
use crate::rds::RdsClient;
use crate::volume::VolumeId;

pub use assembly::{Assembly, LeaderElection, RunningController};
pub use error::ControllerError;
pub use health::RdsReadiness;
pub use inventory::{Capacity, Condition, VolumeStatus};
pub use publish::PUBLISH_NQN;
pub use run::{rds_config, run};
pub use snapshots::SnapshotInfo;
pub use sweeper::run_sweeper;
pub use volumes::CreatedVolume;

/// Attachment fencing: the table, its metrics, and the Kubernetes seams it reports through.
pub struct Fencing {
    pub table: AttachmentTable,
    pub metrics: AttachmentMetrics,
    /// Whether this replica leads: only the leader records `metrics` and posts `events`.
    pub leadership: std::sync::Arc<leader::Leadership>,
    pub events: std::sync::Arc<dyn EventSink>,
    pub nodes: std::sync::Arc<dyn NodeDirectory>,
    /// Wakes the sweeper when a publish or unpublish may have changed the next deadline.
    pub wake_sweeper: tokio::sync::Notify,
    /// Without Kubernetes: where the table is written after every Publish/Unpublish.
    pub persistence: Option<leader::Persistence>,
}

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// NQN of a volume = prefix + volume id.
    pub nqn_prefix: String,
    /// NVMe/TCP address nodes connect to, unless a StorageClass overrides it.
    pub default_nvme_address: Option<String>,
    /// Topology segments every volume is accessible from (None: no topology).
    pub topology: Option<HashMap<String, String>>,
}

pub struct Controller {
    rds: RdsClient,
    cfg: ControllerConfig,
    inflight: InFlight,
    fencing: Fencing,
    /// Consulted by ControllerPublish for volumes the table has no record of.
    attachment_source: Option<std::sync::Arc<dyn AttachmentSource>>,
    /// ListVolumes' and ListSnapshots' listings kept for their tokens' life (pagination.rs).
    volume_listings: pagination::Listings<(crate::volume::VolumeId, crate::rds::Disk)>,
    snapshot_listings: pagination::Listings<(String, naming::SnapshotId, crate::rds::Disk)>,
}

impl Controller {
    pub fn new(
        rds: RdsClient,
        cfg: ControllerConfig,
        inflight: InFlight,
        fencing: Fencing,
    ) -> Self {
        Controller {
            rds,
            cfg,
            inflight,
            fencing,
            attachment_source: None,
            volume_listings: Default::default(),
            snapshot_listings: Default::default(),
        }
    }

    /// Makes ControllerPublish consult `source` (VolumeAttachments) before applying the rules
    /// to a volume the table has no record of: after a leader change between controller
    /// replicas, this replica's table may not know what the previous leader attached.
    pub fn with_attachment_source(mut self, source: std::sync::Arc<dyn AttachmentSource>) -> Self {
        self.attachment_source = Some(source);
        self
    }

    pub fn attachments(&self) -> &AttachmentTable {
        &self.fencing.table
    }

    /// Re-applies attachments Kubernetes recorded (at start, or for one volume a publish
    /// found unknown), timed as a restore, and wakes the sweeper for any resumed migration.
    async fn restore_records(&self, records: Vec<crate::attachment::RestoreRecord>) {
        self.fence(Operation::Restore, |table, _| ((), table.restore(records)))
            .await;
    }

    /// Rebuilds the attachment table from what Kubernetes recorded (VolumeAttachments), so a
    /// restart keeps fencing and the original migration deadlines.
    pub async fn restore(&self, source: &dyn AttachmentSource) -> Result<usize, Error> {
        let records = source.attachments().await?;
        let n = records.len();
        self.restore_records(records).await;
        tracing::info!(
            attachments = n,
            volumes = self.fencing.table.len(),
            "attachment table rebuilt"
        );
        Ok(n)
    }

    /// The topology every volume is accessible from: `--topology`, or the default segment.
    fn segments(&self) -> std::collections::BTreeMap<String, String> {
        crate::volume::topology::segments_or_default(
            &self
                .cfg
                .topology
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        )
    }

    /// Nodes a volume is published to, from the attachment table (None: no record).
    fn published_nodes(&self, volume: &VolumeId) -> Option<Vec<String>> {
        Some(self.fencing.table.published_nodes(volume.as_str())).filter(|n| !n.is_empty())
    }

    pub fn capabilities() -> Vec<csi::ControllerServiceCapability> {
        use csi::controller_service_capability::{rpc::Type, Rpc, Type as Cap};
        [
            Type::CreateDeleteVolume,
            Type::PublishUnpublishVolume,
            Type::ListVolumesPublishedNodes,
            Type::ExpandVolume,
            Type::ListVolumes,
            Type::GetCapacity,
            Type::CreateDeleteSnapshot,
            Type::ListSnapshots,
            Type::CloneVolume,
            Type::GetVolume,
            Type::VolumeCondition,
        ]
        .into_iter()
        .map(|t| csi::ControllerServiceCapability {
            r#type: Some(Cap::Rpc(Rpc { r#type: t as i32 })),
        })
        .collect()
    }
}
