//! The CSI Controller service: each RPC parses its request into a typed one
//! (`requests.rs`), takes the volume's in-flight guard, calls one [`Controller`] operation and
//! turns the result into the CSI response. CSI types stop here. ControllerPublish and
//! ControllerUnpublish run only on the leading replica (`leader.rs`, [`Controller::fenced`]).

use csi_proto::v1 as csi;
use csi_proto::v1::controller_server::Controller as CsiController;
use tonic::{Request, Response, Status};

use super::error::ControllerError;
use super::inventory::VolumeStatus;
use super::naming::Source;
use super::requests::{
    snapshot_ref, CreateSnapshot, CreateVolume, Expand, GetCapacity, ListSnapshots, Page, Publish,
    Unpublish, Validate, VolumeRef,
};
use super::snapshots::SnapshotInfo;
use super::volumes::CreatedVolume;
use super::{Controller, PUBLISH_NQN};
use crate::csi::deadline;

fn bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The guard key of a snapshot (volumes use their id).
fn snapshot_key(slot: &crate::rds::Slot) -> String {
    format!("snapshot/{slot}")
}

impl Controller {
    fn csi_volume(&self, v: CreatedVolume) -> csi::Volume {
        use csi::volume_content_source::{SnapshotSource, Type, VolumeSource};
        let content_source = match v.source {
            Source::Empty => None,
            Source::Volume(id) => Some(Type::Volume(VolumeSource {
                volume_id: id.to_string(),
            })),
            Source::Snapshot(s) => Some(Type::Snapshot(SnapshotSource {
                snapshot_id: s.to_string(),
            })),
        };
        csi::Volume {
            capacity_bytes: bytes(v.capacity_bytes),
            volume_id: v.id.to_string(),
            volume_context: v.context.to_map(),
            content_source: content_source.map(|t| csi::VolumeContentSource { r#type: Some(t) }),
            accessible_topology: self.topology().into_iter().collect(),
        }
    }

    fn topology(&self) -> Option<csi::Topology> {
        Some(csi::Topology {
            segments: self.segments().into_iter().collect(),
        })
    }
}

fn csi_condition(c: super::Condition) -> csi::VolumeCondition {
    csi::VolumeCondition {
        abnormal: c.abnormal,
        message: c.message,
    }
}

fn csi_snapshot(s: SnapshotInfo) -> csi::Snapshot {
    csi::Snapshot {
        size_bytes: bytes(s.size_bytes),
        snapshot_id: s.id.to_string(),
        source_volume_id: s.id.source.to_string(),
        creation_time: Some(prost_types::Timestamp {
            seconds: i64::try_from(s.id.created_unix).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    }
}

fn listed_volume(v: VolumeStatus) -> csi::list_volumes_response::Entry {
    use csi::list_volumes_response::{Entry, VolumeStatus as Status};
    Entry {
        volume: Some(csi::Volume {
            capacity_bytes: bytes(v.capacity_bytes),
            volume_id: v.id,
            ..Default::default()
        }),
        status: Some(Status {
            published_node_ids: v.published_nodes,
            volume_condition: Some(csi_condition(v.condition)),
        }),
    }
}

#[tonic::async_trait]
impl CsiController for Controller {
    async fn create_volume(
        &self,
        req: Request<csi::CreateVolumeRequest>,
    ) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let req = CreateVolume::parse(req.into_inner(), self.rds.base_path())?;
        let _guard = self.inflight.try_acquire(req.name.id().as_str())?;
        let v = self.create(req, deadline).await?;
        Ok(Response::new(csi::CreateVolumeResponse {
            volume: Some(self.csi_volume(v)),
        }))
    }

    async fn delete_volume(
        &self,
        req: Request<csi::DeleteVolumeRequest>,
    ) -> Result<Response<csi::DeleteVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let volume = VolumeRef::parse(&req.get_ref().volume_id)?;
        let _guard = self.inflight.try_acquire(volume.as_str())?;
        self.delete(&volume, deadline).await?;
        Ok(Response::new(csi::DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        req: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerPublishVolumeResponse>, Status> {
        self.fenced("ControllerPublishVolume", async {
            let deadline = deadline::of(&req);
            let req = Publish::parse(req.get_ref())?;
            let _guard = self.inflight.try_acquire(req.volume.as_str())?;
            let nqn = self.publish(&req, deadline).await?;
            Ok(Response::new(csi::ControllerPublishVolumeResponse {
                publish_context: [(PUBLISH_NQN.to_owned(), nqn.to_string())].into(),
            }))
        })
        .await
    }

    async fn controller_unpublish_volume(
        &self,
        req: Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerUnpublishVolumeResponse>, Status> {
        self.fenced("ControllerUnpublishVolume", async {
            let req = Unpublish::parse(req.get_ref())?;
            let _guard = self.inflight.try_acquire(req.volume.as_str())?;
            self.unpublish(&req).await?;
            Ok(Response::new(csi::ControllerUnpublishVolumeResponse {}))
        })
        .await
    }

    async fn validate_volume_capabilities(
        &self,
        req: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<csi::ValidateVolumeCapabilitiesResponse>, Status> {
        use csi::validate_volume_capabilities_response::Confirmed;
        let deadline = deadline::of(&req);
        let r = req.into_inner();
        let parsed = Validate::parse(&r, self.rds.base_path())?;
        let id = self.check_exists(&parsed.volume, deadline).await?;
        Ok(Response::new(match parsed.unsupported {
            Some(why) => csi::ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: format!("volume {id}: {why}"),
            },
            None => csi::ValidateVolumeCapabilitiesResponse {
                confirmed: Some(Confirmed {
                    volume_context: r.volume_context,
                    volume_capabilities: r.volume_capabilities,
                    parameters: r.parameters,
                    mutable_parameters: Default::default(),
                }),
                message: String::new(),
            },
        }))
    }

    async fn list_volumes(
        &self,
        req: Request<csi::ListVolumesRequest>,
    ) -> Result<Response<csi::ListVolumesResponse>, Status> {
        let deadline = deadline::of(&req);
        let page = Page::parse(req.get_ref().max_entries, &req.get_ref().starting_token)?;
        let (volumes, next_token) = self.volumes(&page, deadline).await?;
        Ok(Response::new(csi::ListVolumesResponse {
            entries: volumes.into_iter().map(listed_volume).collect(),
            next_token,
        }))
    }

    async fn get_capacity(
        &self,
        req: Request<csi::GetCapacityRequest>,
    ) -> Result<Response<csi::GetCapacityResponse>, Status> {
        let deadline = deadline::of(&req);
        let req = GetCapacity::parse(req.get_ref(), self.rds.base_path())?;
        let c = self.capacity(&req, deadline).await?;
        Ok(Response::new(csi::GetCapacityResponse {
            available_capacity: bytes(c.available),
            maximum_volume_size: c.maximum_volume.map(bytes),
            minimum_volume_size: c.minimum_volume.map(bytes),
        }))
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
        let req = CreateSnapshot::parse(req.get_ref())?;
        let _guard = self.inflight.try_acquire(&snapshot_key(&req.slot))?;
        let s = self.snapshot(&req, deadline).await?;
        Ok(Response::new(csi::CreateSnapshotResponse {
            snapshot: Some(csi_snapshot(s)),
        }))
    }

    async fn delete_snapshot(
        &self,
        req: Request<csi::DeleteSnapshotRequest>,
    ) -> Result<Response<csi::DeleteSnapshotResponse>, Status> {
        let deadline = deadline::of(&req);
        let id = snapshot_ref(&req.get_ref().snapshot_id)?;
        let _guard = id
            .as_ref()
            .map(|id| self.inflight.try_acquire(&snapshot_key(&id.slot)))
            .transpose()?;
        self.remove_snapshot(id.as_ref(), deadline).await?;
        Ok(Response::new(csi::DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        req: Request<csi::ListSnapshotsRequest>,
    ) -> Result<Response<csi::ListSnapshotsResponse>, Status> {
        let deadline = deadline::of(&req);
        let req = ListSnapshots::parse(req.get_ref())?;
        let (snapshots, next_token) = self.snapshots(&req, deadline).await?;
        Ok(Response::new(csi::ListSnapshotsResponse {
            entries: snapshots
                .into_iter()
                .map(|s| csi::list_snapshots_response::Entry {
                    snapshot: Some(csi_snapshot(s)),
                })
                .collect(),
            next_token,
        }))
    }

    async fn controller_expand_volume(
        &self,
        req: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Result<Response<csi::ControllerExpandVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let req = Expand::parse(req.get_ref())?;
        let _guard = self.inflight.try_acquire(req.volume.as_str())?;
        let size = self.expand(&req, deadline).await?;
        Ok(Response::new(csi::ControllerExpandVolumeResponse {
            capacity_bytes: bytes(size),
            node_expansion_required: !req.block,
        }))
    }

    async fn controller_get_volume(
        &self,
        req: Request<csi::ControllerGetVolumeRequest>,
    ) -> Result<Response<csi::ControllerGetVolumeResponse>, Status> {
        use csi::controller_get_volume_response::VolumeStatus as Status;
        let deadline = deadline::of(&req);
        let volume = VolumeRef::parse(&req.get_ref().volume_id)?;
        let v = self.describe(&volume, deadline).await?;
        Ok(Response::new(csi::ControllerGetVolumeResponse {
            volume: Some(csi::Volume {
                capacity_bytes: bytes(v.capacity_bytes),
                volume_id: v.id,
                ..Default::default()
            }),
            status: Some(Status {
                published_node_ids: v.published_nodes,
                volume_condition: Some(csi_condition(v.condition)),
            }),
        }))
    }

    async fn controller_modify_volume(
        &self,
        _req: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Result<Response<csi::ControllerModifyVolumeResponse>, Status> {
        Err(ControllerError::Unimplemented(
            "ControllerModifyVolume is not offered (MODIFY_VOLUME is not declared)",
        )
        .into())
    }
}
