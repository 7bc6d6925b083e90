//! The CSI Node service: each method parses its request into a typed one, takes the
//! volume's in-flight guard, calls one [`Node`] operation and counts the result.

use std::sync::Arc;

use csi_proto::v1 as csi;
use csi_proto::v1::node_server::Node as CsiNode;
use csi_proto::v1::volume_capability::access_mode::Mode;
use tonic::{Request, Response, Status};

use crate::csi::deadline;
use crate::node::error::{NodeError, VolumeError};
use crate::node::ops::{check_volume_id, Node};
use crate::node::paths::request_path as checked_path;
use crate::node::publish::PublishRequest;
use crate::node::stage::StageRequest;
use crate::volume::context::VolumeContext;
use crate::volume::AccessType;
use crate::volume::FsType;

#[derive(Clone)]
pub struct NodeService(pub Arc<Node>);

/// A volume capability as the node uses it.
struct NodeCapability {
    access: AccessType,
    fs_type: Option<FsType>,
    mount_flags: Vec<String>,
    /// A reader-only access mode: published read-only whatever `readonly` says.
    read_only: bool,
}

/// The one capability parser and its rules ([`crate::volume::Capability`]), shared with the
/// controller.
fn capability(cap: Option<&csi::VolumeCapability>) -> Result<NodeCapability, NodeError> {
    let cap = cap.ok_or(NodeError::Missing {
        field: "volume_capability",
    })?;
    let c = crate::volume::Capability::parse_supported(cap)?;
    Ok(NodeCapability {
        access: if c.is_block() {
            AccessType::Block
        } else {
            AccessType::Mount
        },
        read_only: matches!(
            c.access_mode,
            Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly
        ),
        fs_type: c.fs_type,
        mount_flags: c.mount_flags,
    })
}

fn rpc_cap(t: csi::node_service_capability::rpc::Type) -> csi::NodeServiceCapability {
    csi::NodeServiceCapability {
        r#type: Some(csi::node_service_capability::Type::Rpc(
            csi::node_service_capability::Rpc { r#type: t as i32 },
        )),
    }
}

impl NodeService {
    /// Claims the volume for this call: ABORTED while another operation on it runs.
    fn pending(&self, volume_id: &str) -> Result<crate::csi::inflight::InFlightGuard, NodeError> {
        self.0
            .inflight
            .try_acquire(volume_id)
            .map_err(|_| NodeError::Pending)
    }

    /// Counts the outcome and maps the error, in one place for every volume RPC.
    /// For NodeGetVolumeStats and NodeExpandVolume, which act on a volume already here: one
    /// this node holds no stage record of does not exist here, so it is NOT_FOUND (CSI:
    /// "volume_id could not be found") before the path is looked at, whatever its form.
    fn known_volume(&self, volume_id: &str) -> Result<(), NodeError> {
        if volume_id.is_empty() {
            return Err(NodeError::Missing { field: "volume_id" });
        }
        if check_volume_id(volume_id).is_err() {
            return Err(NodeError::UnknownVolumeId {
                id: volume_id.to_owned(),
            });
        }
        match self.0.record(volume_id)? {
            Some(_) => Ok(()),
            None => Err(NodeError::UnknownVolume),
        }
    }

    /// The volume is named in the error only once it passed the volume-id rule.
    fn finish<T>(
        &self,
        op: &'static str,
        volume_id: &str,
        r: Result<T, NodeError>,
    ) -> Result<Response<T>, Status> {
        let r = r.map_err(|error| VolumeError {
            volume_id: check_volume_id(volume_id)
                .is_ok()
                .then(|| volume_id.to_owned()),
            error,
        });
        match r {
            Ok(v) => {
                self.0.metrics.operation(op, None);
                Ok(Response::new(v))
            }
            Err(e) => {
                let s = Status::from(e);
                self.0.metrics.operation(op, Some(s.code()));
                Err(s)
            }
        }
    }
}

#[tonic::async_trait]
impl CsiNode for NodeService {
    async fn node_stage_volume(
        &self,
        req: Request<csi::NodeStageVolumeRequest>,
    ) -> Result<Response<csi::NodeStageVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let start = std::time::Instant::now();
        let r = req.into_inner();
        let result = async {
            check_volume_id(&r.volume_id)?;
            let v = r.volume_id.as_str();
            let staging_path = checked_path("staging_target_path", &r.staging_target_path)?;
            let cap = capability(r.volume_capability.as_ref())?;
            let context = VolumeContext::from_map(&r.volume_context)?;
            // The StorageClass fsType (context) applies when the capability names none.
            let fs_type = cap.fs_type.or(context.fs_type);
            let _g = self.pending(v)?;
            self.0
                .stage(
                    StageRequest {
                        volume_id: r.volume_id.clone(),
                        staging_path,
                        access: cap.access,
                        fs_type,
                        mount_flags: cap.mount_flags,
                        context,
                    },
                    deadline,
                )
                .await
        }
        .await;
        if result.is_ok() {
            self.0
                .metrics
                .stage_duration
                .observe(start.elapsed().as_secs_f64());
        }
        self.finish(
            "stage",
            &r.volume_id,
            result.map(|()| csi::NodeStageVolumeResponse {}),
        )
    }

    async fn node_unstage_volume(
        &self,
        req: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Result<Response<csi::NodeUnstageVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let r = req.into_inner();
        let result = async {
            check_volume_id(&r.volume_id)?;
            let staging = checked_path("staging_target_path", &r.staging_target_path)?;
            let _g = self.pending(&r.volume_id)?;
            self.0.unstage(&r.volume_id, &staging, deadline).await
        }
        .await;
        self.finish(
            "unstage",
            &r.volume_id,
            result.map(|()| csi::NodeUnstageVolumeResponse {}),
        )
    }

    async fn node_publish_volume(
        &self,
        req: Request<csi::NodePublishVolumeRequest>,
    ) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let r = req.into_inner();
        let result = async {
            check_volume_id(&r.volume_id)?;
            let v = r.volume_id.as_str();
            let staging_path = checked_path("staging_target_path", &r.staging_target_path)?;
            let target_path = checked_path("target_path", &r.target_path)?;
            let cap = capability(r.volume_capability.as_ref())?;
            let _g = self.pending(v)?;
            self.0
                .publish(
                    PublishRequest {
                        volume_id: r.volume_id.clone(),
                        staging_path,
                        target_path,
                        access: cap.access,
                        readonly: r.readonly || cap.read_only,
                        mount_flags: cap.mount_flags,
                    },
                    deadline,
                )
                .await
        }
        .await;
        self.finish(
            "publish",
            &r.volume_id,
            result.map(|()| csi::NodePublishVolumeResponse {}),
        )
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let r = req.into_inner();
        let result = async {
            check_volume_id(&r.volume_id)?;
            let target = checked_path("target_path", &r.target_path)?;
            let _g = self.pending(&r.volume_id)?;
            self.0.unpublish(&r.volume_id, &target, deadline).await
        }
        .await;
        self.finish(
            "unpublish",
            &r.volume_id,
            result.map(|()| csi::NodeUnpublishVolumeResponse {}),
        )
    }

    async fn node_get_volume_stats(
        &self,
        req: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        use csi::volume_usage::Unit;
        let deadline = deadline::of(&req);
        let r = req.into_inner();
        let result = async {
            self.known_volume(&r.volume_id)?;
            let path = checked_path("volume_path", &r.volume_path)?;
            let _g = self.pending(&r.volume_id)?;
            let (u, c) = self.0.stats(&r.volume_id, &path, deadline).await?;
            let i = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
            let mut usage = vec![csi::VolumeUsage {
                total: i(u.bytes_total),
                available: u.bytes_available.map_or(0, i),
                used: u.bytes_used.map_or(0, i),
                unit: Unit::Bytes as i32,
            }];
            if let Some((total, available, used)) = u.inodes {
                usage.push(csi::VolumeUsage {
                    total: i(total),
                    available: i(available),
                    used: i(used),
                    unit: Unit::Inodes as i32,
                });
            }
            Ok::<_, NodeError>(csi::NodeGetVolumeStatsResponse {
                usage,
                volume_condition: Some(csi::VolumeCondition {
                    abnormal: c.abnormal,
                    message: c.message,
                }),
            })
        }
        .await;
        self.finish("stats", &r.volume_id, result)
    }

    async fn node_expand_volume(
        &self,
        req: Request<csi::NodeExpandVolumeRequest>,
    ) -> Result<Response<csi::NodeExpandVolumeResponse>, Status> {
        let deadline = deadline::of(&req);
        let r = req.into_inner();
        let result = async {
            self.known_volume(&r.volume_id)?;
            let path = checked_path("volume_path", &r.volume_path)?;
            let required = r
                .capacity_range
                .as_ref()
                .map_or(0, |c| u64::try_from(c.required_bytes).unwrap_or(0));
            let _g = self.pending(&r.volume_id)?;
            let size = self
                .0
                .expand(&r.volume_id, &path, required, deadline)
                .await?;
            Ok::<_, NodeError>(csi::NodeExpandVolumeResponse {
                capacity_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            })
        }
        .await;
        self.finish("expand", &r.volume_id, result)
    }

    async fn node_get_capabilities(
        &self,
        _req: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<csi::NodeGetCapabilitiesResponse>, Status> {
        use csi::node_service_capability::rpc::Type;
        Ok(Response::new(csi::NodeGetCapabilitiesResponse {
            capabilities: vec![
                rpc_cap(Type::StageUnstageVolume),
                rpc_cap(Type::GetVolumeStats),
                rpc_cap(Type::ExpandVolume),
                rpc_cap(Type::VolumeCondition),
            ],
        }))
    }

    async fn node_get_info(
        &self,
        _req: Request<csi::NodeGetInfoRequest>,
    ) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        let n = &self.0;
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: n.node_id.clone(),
            max_volumes_per_node: i64::from(n.max_volumes),
            // Never empty: the plugin declares VOLUME_ACCESSIBILITY_CONSTRAINTS.
            accessible_topology: Some(csi::Topology {
                segments: crate::volume::topology::segments_or_default(&n.topology)
                    .into_iter()
                    .collect(),
            }),
        }))
    }
}
