//! A real controller (RDS client → simulator over SSH on loopback) served on a unix socket.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use csi_proto::v1 as csi;
use csi_proto::v1::controller_client::ControllerClient;
use rds_csi::attachment::RestoreRecord;
use rds_csi::controller::{Assembly, Controller, ControllerConfig, RunningController};
use rds_csi::endpoint::Endpoint;
use rds_csi::k8s::{FixedAttachments, RecordedEvents, StaticNodes};
use rds_csi::observability::Metrics;
use rds_csi::rds::RdsClient;
use rds_csi::server;
use rds_csi::simulator::harness::{start_simulator, SimHandle, SimOptions};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Channel;

pub const BASE: &str = "/storage-pool/csi";
pub const NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik:";

pub struct Ctl {
    pub sim: SimHandle,
    pub client: ControllerClient<Channel>,
    pub controller: Arc<Controller>,
    pub metrics: Metrics,
    pub events: RecordedEvents,
    stop: CancellationToken,
    _running: RunningController,
    _dir: tempfile::TempDir,
}

impl Ctl {
    /// How many `/disk add` commands reached the RDS: a retry must never add a second disk.
    pub fn disk_adds(&self) -> usize {
        self.sim
            .commands()
            .iter()
            .filter(|x| x.starts_with("/disk add"))
            .count()
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub struct CtlOptions {
    pub sim: SimOptions,
    pub restore: Vec<RestoreRecord>,
    pub grace: Duration,
}

impl Default for CtlOptions {
    fn default() -> Self {
        CtlOptions {
            sim: SimOptions::default(),
            restore: Vec::new(),
            grace: Duration::from_secs(30),
        }
    }
}

pub async fn start() -> Ctl {
    start_with(CtlOptions::default()).await
}

pub async fn start_with(opts: CtlOptions) -> Ctl {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(&dir.path().join("sim"), opts.sim).await;
    let metrics = Metrics::new("controller");
    let rds = RdsClient::new(sim.client_config(BASE), &metrics).unwrap();
    let events = RecordedEvents::default();
    let running = Assembly {
        rds,
        config: ControllerConfig {
            nqn_prefix: NQN_PREFIX.into(),
            default_nvme_address: Some("127.0.0.1".into()),
            topology: None,
        },
        grace_period: opts.grace,
        events: Arc::new(events.clone()),
        nodes: Arc::new(StaticNodes(
            ["node-a", "node-b", "node-c"]
                .iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<_>>(),
        )),
        restore_from: Arc::new(FixedAttachments(opts.restore)),
        consult_on_miss: false,
        node_events: None,
        attachment_cache: None,
        leader_election: None,
    }
    .start(&metrics)
    .await
    .unwrap();
    let controller = Arc::clone(&running.controller);
    let stop = CancellationToken::new();
    let sock = dir.path().join("csi.sock");
    let listener = server::bind(&Endpoint::Unix(sock.clone())).await.unwrap();
    let routes = Routes::new(running.service());
    tokio::spawn(server::serve(
        listener,
        routes,
        stop.clone(),
        Duration::from_secs(5),
    ));
    let client = ControllerClient::new(super::unix_channel(&sock).await);
    Ctl {
        sim,
        client,
        controller,
        metrics,
        events,
        stop,
        _running: running,
        _dir: dir,
    }
}

pub fn mount_cap(mode: csi::volume_capability::access_mode::Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(
            csi::volume_capability::MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            },
        )),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

pub fn block_cap(mode: csi::volume_capability::access_mode::Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Block(
            csi::volume_capability::BlockVolume {},
        )),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

pub fn rwo() -> csi::VolumeCapability {
    mount_cap(csi::volume_capability::access_mode::Mode::SingleNodeWriter)
}

pub fn rwx_block() -> csi::VolumeCapability {
    block_cap(csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter)
}

pub fn create_req(name: &str, bytes: i64, cap: csi::VolumeCapability) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        ..Default::default()
    }
}

pub fn publish_req(
    vol: &csi::Volume,
    node: &str,
    cap: csi::VolumeCapability,
) -> csi::ControllerPublishVolumeRequest {
    csi::ControllerPublishVolumeRequest {
        volume_id: vol.volume_id.clone(),
        node_id: node.into(),
        volume_capability: Some(cap),
        volume_context: vol.volume_context.clone(),
        ..Default::default()
    }
}

pub fn unpublish_req(vol: &csi::Volume, node: &str) -> csi::ControllerUnpublishVolumeRequest {
    csi::ControllerUnpublishVolumeRequest {
        volume_id: vol.volume_id.clone(),
        node_id: node.into(),
        ..Default::default()
    }
}

/// The value of a metric line (e.g. `rds_csi_migration_active_migrations`) in the exposition.
pub fn metric(m: &Metrics, line_prefix: &str) -> f64 {
    m.render()
        .lines()
        .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
