//! Every failed CSI RPC is logged at the default level (`info`) with the RPC, the volume id
//! or name, the node, the gRPC code and the duration, for the controller and the node, over
//! real unix-socket gRPC. Its own test binary: the log subscriber is process-global.

mod common;

use std::time::Duration;

use common::logs::Captured;
use common::requests::*;
use csi_proto::v1 as csi;
use csi_proto::v1::node_client::NodeClient;
use rds_csi::node::{NodeConfig, NodePlugin, TransportConfig};
use rds_csi::observability::Metrics;

impl Captured {
    /// The WARN lines that mention `rpc`.
    fn failures_of(&self, rpc: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains(&format!("{rpc} failed")))
            .map(str::to_owned)
            .collect()
    }
}

fn assert_one_line_with(lines: &[String], words: &[&str]) {
    assert_eq!(lines.len(), 1, "{lines:#?}");
    for w in words {
        assert!(lines[0].contains(w), "{w:?} missing from {:?}", lines[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rpcs_are_logged_with_rpc_volume_node_code_and_duration() {
    let logs = Captured::install();
    // Controller: a refused publish to a node that does not exist, and a bad create.
    let mut c = common::controller::start().await;
    let name = "pvc-logged-1";
    let created = c.create(create_req(name, 1 << 30, rwo())).await;
    let v = created.expect("create");
    let volume_id = v.volume_id.clone();
    assert!(
        logs.failures_of("CreateVolume").is_empty(),
        "a success is not a failure: {}",
        logs.text()
    );
    // No volume context in this request.
    let publish = csi::ControllerPublishVolumeRequest {
        volume_context: Default::default(),
        ..publish_req(&v, "node-z", rwo())
    };
    let e = c
        .client
        .controller_publish_volume(publish)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert_one_line_with(
        &logs.failures_of("ControllerPublishVolume"),
        &[
            &format!("volume={volume_id}"),
            "node=node-z",
            "code=NotFound",
            "duration_ms=",
            "node-z",
        ],
    );
    let bad = csi::CreateVolumeRequest {
        capacity_range: None,
        ..with_param(create_req("pvc-logged-2", 0, rwo()), "noSuchKey", "x")
    };
    let e = c.create(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert_one_line_with(
        &logs.failures_of("CreateVolume"),
        &["volume=pvc-logged-2", "code=InvalidArgument", "noSuchKey"],
    );

    // Node: a stage request without a capability.
    let dir = tempfile::tempdir().unwrap();
    let cfg = NodeConfig {
        node_id: "worker-logs".into(),
        driver_name: "rds.csi.mikrotik.com".into(),
        transport: TransportConfig::NvmeTcp,
        nqn_prefix: "nqn.2000-02.com.mikrotik:pvc-".into(),
        state_dir: dir.path().join("state"),
        host_nqn_file: dir.path().join("hostnqn"),
        host_id_file: dir.path().join("hostid"),
        proc_root: "/proc".into(),
        sys_root: dir.path().join("sys"),
        dev_root: dir.path().join("dev"),
        max_volumes: 0,
        topology: Default::default(),
        reconcile_interval: None,
    };
    let plugin = NodePlugin::new(cfg, &Metrics::new("node")).unwrap();
    let sock = dir.path().join("csi.sock");
    let served = common::serve(plugin.routes(), sock.clone(), Duration::from_secs(2)).await;
    let mut n = NodeClient::new(common::unix_channel(&sock).await);
    let e = n
        .node_stage_volume(csi::NodeStageVolumeRequest {
            volume_id: "pvc-node-logged".into(),
            staging_target_path: dir.path().join("staging").display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert_one_line_with(
        &logs.failures_of("NodeStageVolume"),
        &[
            "volume=pvc-node-logged",
            "node=worker-logs",
            "code=InvalidArgument",
            "duration_ms=",
            "volume_capability",
        ],
    );
    served.shutdown().await;
}
