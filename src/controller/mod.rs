//! CSI Controller service: volumes and snapshots on the RDS (over `rds/`), attachments and
//! fencing (over `attachment/`). Each RPC parses its request, takes the per-volume in-flight
//! guard, calls one function, and maps the error in one place.

mod assembly;
pub mod capabilities;
pub mod naming;
pub mod node_watch;
pub mod pagination;
pub mod params;
mod publish;
pub mod rds_errors;
mod run;
mod snapshots;
mod volumes;

#[cfg(test)]
mod kubernetes_tests;

use std::collections::HashMap;

use csi_proto::v1 as csi;
use csi_proto::v1::controller_server::Controller as CsiController;
use tonic::{Request, Response, Status};

use crate::attachment::{AttachmentMetrics, AttachmentTable, Operation};
use crate::deadline;
use crate::error::Error;
use crate::inflight::InFlight;
use crate::k8s::{AttachmentSource, EventSink, NodeDirectory};
use crate::rds::{RdsClient, Slot};

pub use assembly::{Assembly, RunningController};
pub use publish::{run_sweeper, PUBLISH_NQN};
pub use run::run;

/// Attachment fencing: the table, its metrics, and the Kubernetes seams it reports through.
pub struct Fencing {
    pub table: AttachmentTable,
    pub metrics: AttachmentMetrics,
    pub events: std::sync::Arc<dyn EventSink>,
    pub nodes: std::sync::Arc<dyn NodeDirectory>,
    /// Wakes the sweeper when a publish or unpublish may have changed the next deadline.
    pub wake_sweeper: tokio::sync::Notify,
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
        let started = std::time::Instant::now();
        let effects = self.fencing.table.restore(records);
        self.fencing
            .metrics
            .observe_operation(Operation::Restore, started.elapsed());
        self.apply(effects).await;
        self.fencing.wake_sweeper.notify_one();
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

    /// Nodes a volume is published to, from the attachment table (None: no record).
    fn published_nodes(&self, volume: &Slot) -> Option<Vec<String>> {
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

fn guard_key(kind: &str, id: &str) -> Result<String, Status> {
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!("{kind} is required")).into());
    }
    Ok(id.to_owned())
}

#[tonic::async_trait]
impl CsiController for Controller {
    async fn create_volume(
        &self,
        req: Request<csi::CreateVolumeRequest>,
    ) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let req = req.into_inner();
        let key = guard_key("volume name", &req.name)?;
        let _guard = self.inflight.try_acquire(&key)?;
        Ok(Response::new(self.create_volume(req, deadline).await?))
    }

    async fn delete_volume(
        &self,
        req: Request<csi::DeleteVolumeRequest>,
    ) -> Result<Response<csi::DeleteVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let req = req.into_inner();
        let _guard = self
            .inflight
            .try_acquire(&guard_key("volume_id", &req.volume_id)?)?;
        self.delete_volume(&req.volume_id, deadline).await?;
        Ok(Response::new(csi::DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        req: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerPublishVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let req = req.into_inner();
        let _guard = self
            .inflight
            .try_acquire(&guard_key("volume_id", &req.volume_id)?)?;
        Ok(Response::new(self.publish_volume(req, deadline).await?))
    }

    async fn controller_unpublish_volume(
        &self,
        req: Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let _guard = self
            .inflight
            .try_acquire(&guard_key("volume_id", &req.volume_id)?)?;
        self.unpublish_volume(req).await?;
        Ok(Response::new(csi::ControllerUnpublishVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        req: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<csi::ValidateVolumeCapabilitiesResponse>, Status> {
        let deadline = deadline::of(&req);
        Ok(Response::new(
            self.validate_capabilities(req.into_inner(), deadline)
                .await?,
        ))
    }

    async fn list_volumes(
        &self,
        req: Request<csi::ListVolumesRequest>,
    ) -> Result<Response<csi::ListVolumesResponse>, Status> {
        let deadline = deadline::of(&req);
        Ok(Response::new(
            self.list_volumes(req.into_inner(), deadline).await?,
        ))
    }

    async fn get_capacity(
        &self,
        req: Request<csi::GetCapacityRequest>,
    ) -> Result<Response<csi::GetCapacityResponse>, Status> {
        let deadline = deadline::of(&req);
        Ok(Response::new(
            self.get_capacity(req.into_inner(), deadline).await?,
        ))
    }

    async fn controller_get_capabilities(
        &self,
        _req: Request<csi::ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<csi::ControllerGetCapabilitiesResponse>, Status> {
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse {
            capabilities: Controller::capabilities(),
        }))
    }

    async fn create_snapshot(
        &self,
        req: Request<csi::CreateSnapshotRequest>,
    ) -> Result<Response<csi::CreateSnapshotResponse>, Status> {
        let deadline = deadline::of(&req);
        let req = req.into_inner();
        let _guard = self.inflight.try_acquire(&format!(
            "snapshot/{}",
            guard_key("snapshot name", &req.name)?
        ))?;
        Ok(Response::new(self.create_snapshot(req, deadline).await?))
    }

    async fn delete_snapshot(
        &self,
        req: Request<csi::DeleteSnapshotRequest>,
    ) -> Result<Response<csi::DeleteSnapshotResponse>, Status> {
        let deadline = deadline::of(&req);
        let req = req.into_inner();
        let _guard = self.inflight.try_acquire(&format!(
            "snapshot/{}",
            guard_key("snapshot_id", &req.snapshot_id)?
        ))?;
        self.delete_snapshot(&req.snapshot_id, deadline).await?;
        Ok(Response::new(csi::DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        req: Request<csi::ListSnapshotsRequest>,
    ) -> Result<Response<csi::ListSnapshotsResponse>, Status> {
        let deadline = deadline::of(&req);
        Ok(Response::new(
            self.list_snapshots(req.into_inner(), deadline).await?,
        ))
    }

    async fn controller_expand_volume(
        &self,
        req: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Result<Response<csi::ControllerExpandVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let req = req.into_inner();
        let _guard = self
            .inflight
            .try_acquire(&guard_key("volume_id", &req.volume_id)?)?;
        Ok(Response::new(self.expand_volume(req, deadline).await?))
    }

    async fn controller_get_volume(
        &self,
        req: Request<csi::ControllerGetVolumeRequest>,
    ) -> Result<Response<csi::ControllerGetVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        Ok(Response::new(
            self.get_volume(&req.into_inner().volume_id, deadline)
                .await?,
        ))
    }

    async fn controller_modify_volume(
        &self,
        _req: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Result<Response<csi::ControllerModifyVolumeResponse>, Status> {
        Err(Error::Unimplemented(
            "ControllerModifyVolume is not offered (MODIFY_VOLUME is not declared)".into(),
        )
        .into())
    }
}
