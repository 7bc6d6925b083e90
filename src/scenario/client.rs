//! Typed CSI calls to one controller and any number of node plugins, each under a deadline,
//! remembering what they took (volumes, snapshots, attachments, stagings, publications) so a
//! scenario can release exactly that, also after a failure.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use csi_proto::v1 as csi;
use csi_proto::v1::controller_client::ControllerClient;
use csi_proto::v1::node_client::NodeClient;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::error::CallError;
use super::layout::Layout;
use super::taken::{push_new, replace_or_push, Held, Holding, Taken};
use super::volume::{ContentSource, Volume};
use crate::csi::deadline::DEFAULT_RPC_TIMEOUT;

/// How much longer than the deadline it sends (`grpc-timeout`) the client waits for an
/// answer itself: the plugin's own DEADLINE_EXCEEDED names what ran out of time and should
/// arrive first; this only bounds a plugin that does not answer at all.
const LOCAL_GRACE: Duration = Duration::from_secs(10);

/// A CSI client for scenarios: one controller, named node plugins, kubelet-like paths.
///
/// A clone shares the channels (its calls run alongside the original's) but keeps its own
/// record of what it took: use one for calls that take nothing while another call runs,
/// e.g. a NodeGetVolumeStats while a NodeUnstage is in progress.
#[derive(Clone)]
pub struct CsiClient {
    controller: ControllerClient<Channel>,
    nodes: BTreeMap<String, NodeClient<Channel>>,
    layout: Layout,
    timeout: Duration,
    /// ControllerPublish's answer per (volume id, node id), passed to NodeStage/NodePublish.
    publish_context: HashMap<(String, String), HashMap<String, String>>,
    taken: Taken,
}

impl CsiClient {
    /// A client of the controller on `controller`, with no node yet and the driver's default
    /// deadline (120 s) on every call.
    pub fn new(controller: Channel, layout: Layout) -> Self {
        CsiClient {
            controller: ControllerClient::new(controller),
            nodes: BTreeMap::new(),
            layout,
            timeout: DEFAULT_RPC_TIMEOUT,
            publish_context: HashMap::new(),
            taken: Taken::default(),
        }
    }

    /// Every call's deadline, sent as `grpc-timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The node plugin of `node` on `channel`.
    pub fn add_node(&mut self, node: impl Into<String>, channel: Channel) {
        self.nodes.insert(node.into(), NodeClient::new(channel));
    }

    pub fn node_ids(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// NodeStage's path for `v` on `node`.
    pub fn staging(&self, node: &str, v: &Volume) -> PathBuf {
        self.layout.staging(node, &v.id)
    }

    /// NodePublish's path for `v` on `node`.
    pub fn target(&self, node: &str, v: &Volume) -> PathBuf {
        self.layout.target(node, &v.id, v.is_block())
    }

    pub fn taken(&self) -> &Taken {
        &self.taken
    }

    /// Drops an attachment from what was taken: for a ControllerPublish the scenario expects
    /// to be refused, which grants nothing.
    pub fn forget_controller_publish(&mut self, volume_id: &str, node: &str) {
        self.taken
            .controller_published
            .retain(|(v, n)| !(v == volume_id && n == node));
    }

    fn request<T>(&self, m: T) -> Request<T> {
        let mut r = Request::new(m);
        r.set_timeout(self.timeout);
        r
    }

    async fn answer<T>(
        &self,
        call: String,
        fut: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CallError> {
        match tokio::time::timeout(self.timeout + LOCAL_GRACE, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(CallError::Status {
                call,
                code: s.code(),
                message: s.message().to_owned(),
            }),
            Err(_) => Err(CallError::Timeout {
                call,
                timeout: self.timeout,
            }),
        }
    }

    fn node(&self, node: &str, call: &str) -> Result<NodeClient<Channel>, CallError> {
        self.nodes
            .get(node)
            .cloned()
            .ok_or_else(|| CallError::NoNode {
                call: call.to_owned(),
                node: node.to_owned(),
            })
    }

    fn publish_context(&self, volume_id: &str, node: &str) -> HashMap<String, String> {
        self.publish_context
            .get(&(volume_id.to_owned(), node.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    // ---- controller ----------------------------------------------------------------------

    /// CreateVolume `name` of at least `bytes` for `capability`, with StorageClass
    /// `parameters`, optionally filled from `source`.
    pub async fn create_volume(
        &mut self,
        name: &str,
        bytes: i64,
        capability: csi::VolumeCapability,
        parameters: &[(&str, &str)],
        source: Option<ContentSource>,
    ) -> Result<Volume, CallError> {
        push_new(&mut self.taken.volumes, name.to_owned());
        let call = format!("CreateVolume {name}");
        let req = self.request(csi::CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![capability.clone()],
            parameters: parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            volume_content_source: source.map(Into::into),
            ..Default::default()
        });
        let mut c = self.controller.clone();
        let v = self
            .answer(call.clone(), c.create_volume(req))
            .await?
            .volume
            .ok_or(CallError::Malformed {
                call,
                what: "the response has no volume",
            })?;
        replace_or_push(&mut self.taken.volumes, name, &v.volume_id);
        Ok(Volume {
            id: v.volume_id,
            context: v.volume_context,
            capability,
            capacity_bytes: v.capacity_bytes,
        })
    }

    pub async fn delete_volume(&mut self, volume_id: &str) -> Result<(), CallError> {
        let req = self.request(csi::DeleteVolumeRequest {
            volume_id: volume_id.to_owned(),
            ..Default::default()
        });
        let mut c = self.controller.clone();
        self.answer(format!("DeleteVolume {volume_id}"), c.delete_volume(req))
            .await?;
        self.taken.volumes.retain(|v| v != volume_id);
        Ok(())
    }

    /// ControllerPublish `v` to `node`; returns (and keeps for the node calls) the
    /// publish_context.
    pub async fn controller_publish(
        &mut self,
        v: &Volume,
        node: &str,
    ) -> Result<HashMap<String, String>, CallError> {
        push_new(
            &mut self.taken.controller_published,
            (v.id.clone(), node.to_owned()),
        );
        let req = self.request(csi::ControllerPublishVolumeRequest {
            volume_id: v.id.clone(),
            node_id: node.into(),
            volume_capability: Some(v.capability.clone()),
            readonly: false,
            volume_context: v.context.clone(),
            ..Default::default()
        });
        let mut c = self.controller.clone();
        let r = self
            .answer(
                format!("ControllerPublish {} -> {node}", v.id),
                c.controller_publish_volume(req),
            )
            .await?;
        self.publish_context
            .insert((v.id.clone(), node.to_owned()), r.publish_context.clone());
        Ok(r.publish_context)
    }

    pub async fn controller_unpublish(
        &mut self,
        volume_id: &str,
        node: &str,
    ) -> Result<(), CallError> {
        let req = self.request(csi::ControllerUnpublishVolumeRequest {
            volume_id: volume_id.into(),
            node_id: node.into(),
            ..Default::default()
        });
        let mut c = self.controller.clone();
        self.answer(
            format!("ControllerUnpublish {volume_id} from {node}"),
            c.controller_unpublish_volume(req),
        )
        .await?;
        self.forget_controller_publish(volume_id, node);
        Ok(())
    }

    /// ControllerExpandVolume `v` to at least `bytes`.
    pub async fn controller_expand(
        &mut self,
        v: &Volume,
        bytes: i64,
    ) -> Result<csi::ControllerExpandVolumeResponse, CallError> {
        let req = self.request(csi::ControllerExpandVolumeRequest {
            volume_id: v.id.clone(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            volume_capability: Some(v.capability.clone()),
            ..Default::default()
        });
        let mut c = self.controller.clone();
        self.answer(
            format!("ControllerExpandVolume {}", v.id),
            c.controller_expand_volume(req),
        )
        .await
    }

    /// The nodes ControllerGetVolume says `volume_id` is published to, sorted.
    pub async fn published_node_ids(&mut self, volume_id: &str) -> Result<Vec<String>, CallError> {
        let req = self.request(csi::ControllerGetVolumeRequest {
            volume_id: volume_id.into(),
        });
        let mut c = self.controller.clone();
        let r = self
            .answer(
                format!("ControllerGetVolume {volume_id}"),
                c.controller_get_volume(req),
            )
            .await?;
        let mut nodes = r.status.map(|s| s.published_node_ids).unwrap_or_default();
        nodes.sort();
        Ok(nodes)
    }

    /// Every volume ListVolumes returns (one page: no `max_entries`).
    pub async fn list_volumes(
        &mut self,
    ) -> Result<Vec<csi::list_volumes_response::Entry>, CallError> {
        let req = self.request(csi::ListVolumesRequest::default());
        let mut c = self.controller.clone();
        Ok(self
            .answer("ListVolumes".into(), c.list_volumes(req))
            .await?
            .entries)
    }

    /// CreateSnapshot `name` of the volume `source_volume_id`.
    pub async fn create_snapshot(
        &mut self,
        source_volume_id: &str,
        name: &str,
    ) -> Result<csi::Snapshot, CallError> {
        push_new(&mut self.taken.snapshots, name.to_owned());
        let call = format!("CreateSnapshot of {source_volume_id}");
        let req = self.request(csi::CreateSnapshotRequest {
            source_volume_id: source_volume_id.to_owned(),
            name: name.into(),
            ..Default::default()
        });
        let mut c = self.controller.clone();
        let s = self
            .answer(call.clone(), c.create_snapshot(req))
            .await?
            .snapshot
            .ok_or(CallError::Malformed {
                call,
                what: "the response has no snapshot",
            })?;
        replace_or_push(&mut self.taken.snapshots, name, &s.snapshot_id);
        Ok(s)
    }

    pub async fn delete_snapshot(&mut self, snapshot_id: &str) -> Result<(), CallError> {
        let req = self.request(csi::DeleteSnapshotRequest {
            snapshot_id: snapshot_id.to_owned(),
            ..Default::default()
        });
        let mut c = self.controller.clone();
        self.answer(
            format!("DeleteSnapshot {snapshot_id}"),
            c.delete_snapshot(req),
        )
        .await?;
        self.taken.snapshots.retain(|s| s != snapshot_id);
        Ok(())
    }

    // ---- node ----------------------------------------------------------------------------

    pub async fn node_get_info(
        &mut self,
        node: &str,
    ) -> Result<csi::NodeGetInfoResponse, CallError> {
        let call = format!("NodeGetInfo on {node}");
        let mut c = self.node(node, &call)?;
        let req = self.request(csi::NodeGetInfoRequest {});
        self.answer(call, c.node_get_info(req)).await
    }

    /// NodeStage `v` on `node` at the layout's staging path (returned), with the
    /// publish_context ControllerPublish gave for that node.
    pub async fn node_stage(&mut self, v: &Volume, node: &str) -> Result<PathBuf, CallError> {
        let staging = self.staging(node, v);
        push_new(&mut self.taken.staged, Held::new(node, &v.id, &staging));
        let call = format!("NodeStage {} on {node}", v.id);
        let mut c = self.node(node, &call)?;
        let req = self.request(csi::NodeStageVolumeRequest {
            volume_id: v.id.clone(),
            publish_context: self.publish_context(&v.id, node),
            staging_target_path: staging.to_string_lossy().into(),
            volume_capability: Some(v.capability.clone()),
            volume_context: v.context.clone(),
            ..Default::default()
        });
        self.answer(call, c.node_stage_volume(req)).await?;
        Ok(staging)
    }

    /// NodePublish `v` on `node` at the layout's target path (returned).
    pub async fn node_publish(&mut self, v: &Volume, node: &str) -> Result<PathBuf, CallError> {
        let (staging, target) = (self.staging(node, v), self.target(node, v));
        push_new(
            &mut self.taken.node_published,
            Held::new(node, &v.id, &target),
        );
        let call = format!("NodePublish {} on {node}", v.id);
        let mut c = self.node(node, &call)?;
        let req = self.request(csi::NodePublishVolumeRequest {
            volume_id: v.id.clone(),
            publish_context: self.publish_context(&v.id, node),
            staging_target_path: staging.to_string_lossy().into(),
            target_path: target.to_string_lossy().into(),
            volume_capability: Some(v.capability.clone()),
            readonly: false,
            volume_context: v.context.clone(),
            ..Default::default()
        });
        self.answer(call, c.node_publish_volume(req)).await?;
        Ok(target)
    }

    pub async fn node_unpublish(&mut self, v: &Volume, node: &str) -> Result<(), CallError> {
        let held = Held::new(node, &v.id, &self.target(node, v));
        self.node_release(Holding::NodePublished, held).await
    }

    pub async fn node_unstage(&mut self, v: &Volume, node: &str) -> Result<(), CallError> {
        let held = Held::new(node, &v.id, &self.staging(node, v));
        self.node_release(Holding::Staged, held).await
    }

    /// NodeUnpublish (`h` = NodePublished) or NodeUnstage (Staged) of `held`, no longer
    /// taken once answered.
    async fn node_release(&mut self, h: Holding, held: Held) -> Result<(), CallError> {
        let (node, volume_id) = (&held.node, &held.volume_id);
        let path = held.path.to_string_lossy().into_owned();
        let staged = h == Holding::Staged;
        let rpc = if staged {
            "NodeUnstage"
        } else {
            "NodeUnpublish"
        };
        let call = format!("{rpc} {volume_id} on {node}");
        let mut c = self.node(node, &call)?;
        if staged {
            let req = self.request(csi::NodeUnstageVolumeRequest {
                volume_id: volume_id.clone(),
                staging_target_path: path,
            });
            self.answer(call, c.node_unstage_volume(req)).await?;
        } else {
            let req = self.request(csi::NodeUnpublishVolumeRequest {
                volume_id: volume_id.clone(),
                target_path: path,
            });
            self.answer(call, c.node_unpublish_volume(req)).await?;
        }
        self.node_held(h).retain(|x| *x != held);
        Ok(())
    }

    /// The node-side holdings of kind `h` (NodePublished or Staged).
    fn node_held(&mut self, h: Holding) -> &mut Vec<Held> {
        if h == Holding::Staged {
            &mut self.taken.staged
        } else {
            &mut self.taken.node_published
        }
    }

    /// NodeExpandVolume `v` (published on `node`) to at least `bytes`.
    pub async fn node_expand(
        &mut self,
        v: &Volume,
        node: &str,
        bytes: i64,
    ) -> Result<csi::NodeExpandVolumeResponse, CallError> {
        let call = format!("NodeExpand {} on {node}", v.id);
        let mut c = self.node(node, &call)?;
        let req = self.request(csi::NodeExpandVolumeRequest {
            volume_id: v.id.clone(),
            volume_path: self.target(node, v).to_string_lossy().into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            staging_target_path: self.staging(node, v).to_string_lossy().into(),
            volume_capability: Some(v.capability.clone()),
            ..Default::default()
        });
        self.answer(call, c.node_expand_volume(req)).await
    }

    /// NodeGetVolumeStats of `v` published on `node` (volume_path: its target path).
    pub async fn node_volume_stats(
        &mut self,
        v: &Volume,
        node: &str,
    ) -> Result<csi::NodeGetVolumeStatsResponse, CallError> {
        let target = self.target(node, v);
        self.node_volume_stats_at(v, node, &target).await
    }

    /// NodeGetVolumeStats of `v` on `node` with `volume_path` as given: e.g. the staging
    /// path of a volume no longer published.
    pub async fn node_volume_stats_at(
        &mut self,
        v: &Volume,
        node: &str,
        volume_path: &Path,
    ) -> Result<csi::NodeGetVolumeStatsResponse, CallError> {
        let call = format!("NodeGetVolumeStats {} on {node}", v.id);
        let mut c = self.node(node, &call)?;
        let req = self.request(csi::NodeGetVolumeStatsRequest {
            volume_id: v.id.clone(),
            volume_path: volume_path.to_string_lossy().into(),
            staging_target_path: self.staging(node, v).to_string_lossy().into(),
        });
        self.answer(call, c.node_get_volume_stats(req)).await
    }

    // ---- release ---------------------------------------------------------------------------

    /// Releases every holding of kind `h` (the latest first; snapshots in the order taken)
    /// and returns the calls that failed; what failed stays taken.
    pub async fn release(&mut self, h: Holding) -> Vec<CallError> {
        self.release_matching(h, |_| true).await
    }

    /// Releases everything taken for `volume_id` (NodeUnpublish, NodeUnstage,
    /// ControllerUnpublish on every node, then DeleteVolume) and returns the calls that
    /// failed. Its snapshots are left alone.
    pub async fn release_volume(&mut self, volume_id: &str) -> Vec<CallError> {
        let mut errors = Vec::new();
        for h in [
            Holding::NodePublished,
            Holding::Staged,
            Holding::ControllerPublished,
            Holding::Volumes,
        ] {
            errors.extend(self.release_matching(h, |v| v == volume_id).await);
        }
        errors
    }

    async fn release_matching(&mut self, h: Holding, of: impl Fn(&str) -> bool) -> Vec<CallError> {
        let mut errors = Vec::new();
        let mut note = |r: Result<(), CallError>| {
            if let Err(e) = r {
                errors.push(e);
            }
        };
        match h {
            Holding::NodePublished | Holding::Staged => {
                let held = self.node_held(h).clone();
                for x in held.into_iter().rev().filter(|x| of(&x.volume_id)) {
                    note(self.node_release(h, x).await);
                }
            }
            Holding::ControllerPublished => {
                let held = self.taken.controller_published.clone();
                for (v, n) in held.iter().rev().filter(|(v, _)| of(v)) {
                    note(self.controller_unpublish(v, n).await);
                }
            }
            Holding::Snapshots => {
                for s in self.taken.snapshots.clone() {
                    note(self.delete_snapshot(&s).await);
                }
            }
            Holding::Volumes => {
                let held = self.taken.volumes.clone();
                for v in held.iter().rev().filter(|v| of(v)) {
                    note(self.delete_volume(v).await);
                }
            }
        }
        errors
    }
}
