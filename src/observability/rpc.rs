//! One tracing span per CSI RPC, and one log line for every RPC that fails.
//!
//! [`Traced`] wraps the controller's or the node's CSI service and implements the same tonic
//! trait by delegation, so the RPC handlers themselves carry no logging code. Each RPC runs
//! inside a span `rpc{rpc=CreateVolume volume=pvc-1 node=worker-1}` (the fields the request
//! has: volume id or name, snapshot, node), so every log line an operation writes names its
//! RPC and volume. When the RPC answers with an error, one line at WARN (shown at the
//! default `info` level) names the gRPC code, the duration and the message; a success is
//! logged at DEBUG with its duration.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use csi_proto::v1 as csi;
use csi_proto::v1::controller_server::Controller as CsiController;
use csi_proto::v1::node_server::Node as CsiNode;
use tonic::{Request, Response, Status};
use tracing::field::Empty;
use tracing::Instrument;

/// A CSI service whose every RPC runs in its own span and whose failures are logged.
pub struct Traced<T> {
    inner: Arc<T>,
    /// The node plugin's own node id, named on every node RPC's span.
    node: Option<String>,
}

impl<T> Traced<T> {
    /// The controller service: the node, where a request has one, comes from the request.
    pub fn controller(inner: Arc<T>) -> Self {
        Traced { inner, node: None }
    }

    /// The node plugin's service, whose every RPC names `node_id`.
    pub fn node(inner: Arc<T>, node_id: impl Into<String>) -> Self {
        Traced {
            inner,
            node: Some(node_id.into()),
        }
    }
}

/// What names the object of an RPC in its span; empty strings are left out.
#[derive(Default)]
struct Fields<'a> {
    volume: &'a str,
    snapshot: &'a str,
    node: &'a str,
}

fn span(rpc: &'static str, f: Fields<'_>) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        rpc = %rpc,
        volume = Empty,
        snapshot = Empty,
        node = Empty
    );
    for (name, value) in [
        ("volume", f.volume),
        ("snapshot", f.snapshot),
        ("node", f.node),
    ] {
        if !value.is_empty() {
            span.record(name, tracing::field::display(value));
        }
    }
    span
}

/// Runs one RPC in `span`, logging its outcome and duration.
async fn traced<R>(
    rpc: &'static str,
    span: tracing::Span,
    call: impl Future<Output = Result<Response<R>, Status>>,
) -> Result<Response<R>, Status> {
    let start = Instant::now();
    async move {
        let result = call.await;
        let duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(_) => tracing::debug!(duration_ms, "{rpc} succeeded"),
            Err(s) => tracing::warn!(
                code = ?s.code(),
                duration_ms,
                "{rpc} failed: {}",
                s.message()
            ),
        }
        result
    }
    .instrument(span)
    .await
}

/// Implements a CSI service trait for `Traced<T>` by delegating every method to `T`'s,
/// inside the RPC's span. Each entry: method, request and response types, the CSI RPC name,
/// and how the request names its volume, snapshot and node.
macro_rules! traced_service {
    ($svc:ident, $( $method:ident($req:ident -> $resp:ident, $rpc:literal, |$r:ident, $own:ident| $fields:expr) ),* $(,)?) => {
        #[tonic::async_trait]
        impl<T: $svc> $svc for Traced<T> {
            $(
                async fn $method(
                    &self,
                    request: Request<csi::$req>,
                ) -> Result<Response<csi::$resp>, Status> {
                    let span = {
                        let $r = request.get_ref();
                        let $own = self.node.as_deref().unwrap_or("");
                        span($rpc, $fields)
                    };
                    traced($rpc, span, <T as $svc>::$method(&*self.inner, request)).await
                }
            )*
        }
    };
}

traced_service!(
    CsiController,
    create_volume(CreateVolumeRequest -> CreateVolumeResponse, "CreateVolume",
        |r, _n| Fields { volume: &r.name, ..Fields::default() }),
    delete_volume(DeleteVolumeRequest -> DeleteVolumeResponse, "DeleteVolume",
        |r, _n| Fields { volume: &r.volume_id, ..Fields::default() }),
    controller_publish_volume(ControllerPublishVolumeRequest -> ControllerPublishVolumeResponse,
        "ControllerPublishVolume",
        |r, _n| Fields { volume: &r.volume_id, node: &r.node_id, ..Fields::default() }),
    controller_unpublish_volume(ControllerUnpublishVolumeRequest -> ControllerUnpublishVolumeResponse,
        "ControllerUnpublishVolume",
        |r, _n| Fields { volume: &r.volume_id, node: &r.node_id, ..Fields::default() }),
    validate_volume_capabilities(ValidateVolumeCapabilitiesRequest -> ValidateVolumeCapabilitiesResponse,
        "ValidateVolumeCapabilities",
        |r, _n| Fields { volume: &r.volume_id, ..Fields::default() }),
    list_volumes(ListVolumesRequest -> ListVolumesResponse, "ListVolumes",
        |_r, _n| Fields::default()),
    get_capacity(GetCapacityRequest -> GetCapacityResponse, "GetCapacity",
        |_r, _n| Fields::default()),
    controller_get_capabilities(ControllerGetCapabilitiesRequest -> ControllerGetCapabilitiesResponse,
        "ControllerGetCapabilities",
        |_r, _n| Fields::default()),
    create_snapshot(CreateSnapshotRequest -> CreateSnapshotResponse, "CreateSnapshot",
        |r, _n| Fields { volume: &r.source_volume_id, snapshot: &r.name, ..Fields::default() }),
    delete_snapshot(DeleteSnapshotRequest -> DeleteSnapshotResponse, "DeleteSnapshot",
        |r, _n| Fields { snapshot: &r.snapshot_id, ..Fields::default() }),
    list_snapshots(ListSnapshotsRequest -> ListSnapshotsResponse, "ListSnapshots",
        |r, _n| Fields { volume: &r.source_volume_id, snapshot: &r.snapshot_id, ..Fields::default() }),
    controller_expand_volume(ControllerExpandVolumeRequest -> ControllerExpandVolumeResponse,
        "ControllerExpandVolume",
        |r, _n| Fields { volume: &r.volume_id, ..Fields::default() }),
    controller_get_volume(ControllerGetVolumeRequest -> ControllerGetVolumeResponse,
        "ControllerGetVolume",
        |r, _n| Fields { volume: &r.volume_id, ..Fields::default() }),
    controller_modify_volume(ControllerModifyVolumeRequest -> ControllerModifyVolumeResponse,
        "ControllerModifyVolume",
        |r, _n| Fields { volume: &r.volume_id, ..Fields::default() }),
);

traced_service!(
    CsiNode,
    node_stage_volume(NodeStageVolumeRequest -> NodeStageVolumeResponse, "NodeStageVolume",
        |r, n| Fields { volume: &r.volume_id, node: n, ..Fields::default() }),
    node_unstage_volume(NodeUnstageVolumeRequest -> NodeUnstageVolumeResponse, "NodeUnstageVolume",
        |r, n| Fields { volume: &r.volume_id, node: n, ..Fields::default() }),
    node_publish_volume(NodePublishVolumeRequest -> NodePublishVolumeResponse, "NodePublishVolume",
        |r, n| Fields { volume: &r.volume_id, node: n, ..Fields::default() }),
    node_unpublish_volume(NodeUnpublishVolumeRequest -> NodeUnpublishVolumeResponse,
        "NodeUnpublishVolume",
        |r, n| Fields { volume: &r.volume_id, node: n, ..Fields::default() }),
    node_get_volume_stats(NodeGetVolumeStatsRequest -> NodeGetVolumeStatsResponse,
        "NodeGetVolumeStats",
        |r, n| Fields { volume: &r.volume_id, node: n, ..Fields::default() }),
    node_expand_volume(NodeExpandVolumeRequest -> NodeExpandVolumeResponse, "NodeExpandVolume",
        |r, n| Fields { volume: &r.volume_id, node: n, ..Fields::default() }),
    node_get_capabilities(NodeGetCapabilitiesRequest -> NodeGetCapabilitiesResponse,
        "NodeGetCapabilities",
        |_r, n| Fields { node: n, ..Fields::default() }),
    node_get_info(NodeGetInfoRequest -> NodeGetInfoResponse, "NodeGetInfo",
        |_r, n| Fields { node: n, ..Fields::default() }),
);
