//! A real controller (RDS client → simulator over SSH on loopback) served on a unix socket.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use csi_proto::v1 as csi;
use csi_proto::v1::controller_client::ControllerClient;
use csi_proto::v1::identity_client::IdentityClient;
use csi_proto::v1::identity_server::IdentityServer;
use rds_csi::attachment::RestoreRecord;
use rds_csi::controller::{Assembly, Controller, ControllerConfig, RunningController};
use rds_csi::csi::endpoint::Endpoint;
use rds_csi::csi::identity::{Health, IdentityService, ReadinessFlag, DEFAULT_DRIVER_NAME};
use rds_csi::csi::server;
use rds_csi::k8s::{FixedAttachments, RecordedEvents, StaticNodes};
use rds_csi::observability::Metrics;
use rds_csi::rds::RdsClient;
use rds_csi::simulator::harness::{start_simulator, SimHandle, SimOptions};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::Status;

pub use super::requests::*;

pub const BASE: &str = "/storage-pool/csi";
pub const NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik:";

pub struct Ctl {
    pub sim: SimHandle,
    pub client: ControllerClient<Channel>,
    /// The Identity service on the same socket, as the controller binary serves it.
    pub identity: IdentityClient<Channel>,
    pub controller: Arc<Controller>,
    pub metrics: Metrics,
    pub events: RecordedEvents,
    stop: CancellationToken,
    _running: RunningController,
    state: Option<std::path::PathBuf>,
    grace: Duration,
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

/// The controller's RPCs as a test calls them: the answer's payload, or the refusal.
impl Ctl {
    pub async fn create(&mut self, r: csi::CreateVolumeRequest) -> Result<csi::Volume, Status> {
        let r = self.client.create_volume(r).await?;
        Ok(r.into_inner().volume.unwrap())
    }

    pub async fn delete(&mut self, volume_id: &str) -> Result<(), Status> {
        self.client.delete_volume(delete_req(volume_id)).await?;
        Ok(())
    }

    pub async fn publish(
        &mut self,
        v: &csi::Volume,
        node: &str,
        cap: csi::VolumeCapability,
    ) -> Result<csi::ControllerPublishVolumeResponse, Status> {
        let r = self
            .client
            .controller_publish_volume(publish_req(v, node, cap));
        Ok(r.await?.into_inner())
    }

    pub async fn unpublish(&mut self, v: &csi::Volume, node: &str) -> Result<(), Status> {
        let r = self
            .client
            .controller_unpublish_volume(unpublish_req(v, node));
        r.await?;
        Ok(())
    }

    pub async fn get_volume(
        &mut self,
        volume_id: &str,
    ) -> Result<csi::ControllerGetVolumeResponse, Status> {
        let r = self
            .client
            .controller_get_volume(csi::ControllerGetVolumeRequest {
                volume_id: volume_id.into(),
            });
        Ok(r.await?.into_inner())
    }

    pub async fn snapshot(&mut self, name: &str, source: &str) -> Result<csi::Snapshot, Status> {
        let r = self.client.create_snapshot(snap_req(name, source)).await?;
        Ok(r.into_inner().snapshot.unwrap())
    }

    pub async fn validate(
        &mut self,
        r: csi::ValidateVolumeCapabilitiesRequest,
    ) -> Result<csi::ValidateVolumeCapabilitiesResponse, Status> {
        Ok(self
            .client
            .validate_volume_capabilities(r)
            .await?
            .into_inner())
    }

    pub async fn expand(
        &mut self,
        r: csi::ControllerExpandVolumeRequest,
    ) -> Result<csi::ControllerExpandVolumeResponse, Status> {
        Ok(self.client.controller_expand_volume(r).await?.into_inner())
    }

    pub async fn list_volumes(
        &mut self,
        max: i32,
        token: &str,
    ) -> Result<csi::ListVolumesResponse, Status> {
        let r = self.client.list_volumes(list_volumes_req(max, token));
        Ok(r.await?.into_inner())
    }

    pub async fn list_snapshots(
        &mut self,
        r: csi::ListSnapshotsRequest,
    ) -> Result<csi::ListSnapshotsResponse, Status> {
        Ok(self.client.list_snapshots(r).await?.into_inner())
    }

    pub async fn delete_snapshot(&mut self, snapshot_id: &str) -> Result<(), Status> {
        let r = self.client.delete_snapshot(csi::DeleteSnapshotRequest {
            snapshot_id: snapshot_id.into(),
            ..Default::default()
        });
        r.await?;
        Ok(())
    }

    /// GetCapacity's `available_capacity` for no particular topology or parameters.
    pub async fn capacity(&mut self) -> i64 {
        let r = self.client.get_capacity(csi::GetCapacityRequest::default());
        r.await.unwrap().into_inner().available_capacity
    }

    /// The value of a metric line (see [`metric`]).
    pub fn metric(&self, line_prefix: &str) -> f64 {
        metric(&self.metrics, line_prefix)
    }

    /// The first event recorded with `reason`: (object, event).
    pub fn event(&self, reason: &str) -> (String, rds_csi::attachment::Event) {
        self.events
            .all()
            .into_iter()
            .find(|(_, e)| e.reason.as_str() == reason)
            .unwrap_or_else(|| panic!("no {reason} event in {:?}", self.events.reasons()))
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
    /// `--no-kubernetes` with a state file: the table is kept in `<dir>/state` (and restored
    /// from it by [`Ctl::restart`]).
    pub state_file: bool,
}

impl Default for CtlOptions {
    fn default() -> Self {
        CtlOptions {
            sim: SimOptions::default(),
            restore: Vec::new(),
            grace: Duration::from_secs(30),
            state_file: false,
        }
    }
}

pub async fn start() -> Ctl {
    start_with(CtlOptions::default()).await
}

pub async fn start_with(opts: CtlOptions) -> Ctl {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(&dir.path().join("sim"), opts.sim).await;
    let state = opts.state_file.then(|| dir.path().join("state"));
    let (client, identity, controller, metrics, events, stop, running) =
        serve_controller(&sim, dir.path(), opts.restore, opts.grace, state.as_deref())
            .await
            .unwrap();
    Ctl {
        sim,
        client,
        identity,
        controller,
        metrics,
        events,
        stop,
        _running: running,
        state,
        grace: opts.grace,
        _dir: dir,
    }
}

impl Ctl {
    /// Stops this controller and starts a new one over the same RDS (and state file): a
    /// controller restart. The error is the new controller's refusal to start.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.stop.cancel();
        // The old server removes its socket on the way out.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let dir = self._dir.path().to_owned();
        let (client, identity, controller, metrics, events, stop, running) = serve_controller(
            &self.sim,
            &dir,
            Vec::new(),
            self.grace,
            self.state.as_deref(),
        )
        .await?;
        self.client = client;
        self.identity = identity;
        self.controller = controller;
        self.metrics = metrics;
        self.events = events;
        self.stop = stop;
        self._running = running;
        Ok(())
    }

    /// The unix socket the controller (and Identity) serve on.
    pub fn socket(&self) -> std::path::PathBuf {
        self._dir.path().join("csi.sock")
    }

    /// The state file's path (with `state_file`).
    pub fn state_path(&self) -> Option<std::path::PathBuf> {
        self.state
            .as_ref()
            .map(|d| d.join(rds_csi::controller::state_file::FILE_NAME))
    }
}

type Served = (
    ControllerClient<Channel>,
    IdentityClient<Channel>,
    Arc<Controller>,
    Metrics,
    RecordedEvents,
    CancellationToken,
    RunningController,
);

async fn serve_controller(
    sim: &SimHandle,
    dir: &std::path::Path,
    restore: Vec<RestoreRecord>,
    grace: Duration,
    state: Option<&std::path::Path>,
) -> Result<Served, String> {
    let metrics = Metrics::new("controller");
    let rds = RdsClient::new(sim.client_config(BASE), &metrics).unwrap();
    let events = RecordedEvents::default();
    let state: Option<Arc<dyn rds_csi::attachment::persist::AttachmentStore>> = match state {
        Some(d) => Some(Arc::new(rds_csi::controller::state_file::StateFile::new(
            d,
        )?)),
        None => None,
    };
    let running = Assembly {
        rds,
        config: ControllerConfig {
            nqn_prefix: NQN_PREFIX.into(),
            default_nvme_address: Some("127.0.0.1".into()),
            topology: None,
        },
        grace_period: grace,
        events: Arc::new(events.clone()),
        nodes: Arc::new(StaticNodes(
            ["node-a", "node-b", "node-c"]
                .iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<_>>(),
        )),
        restore_from: Arc::new(FixedAttachments(restore)),
        consult_on_miss: false,
        node_events: None,
        attachment_cache: None,
        leader_election: None,
        state,
    }
    .start(&metrics)
    .await
    .map_err(|e| e.to_string())?;
    let controller = Arc::clone(&running.controller);
    let stop = CancellationToken::new();
    let sock = dir.join("csi.sock");
    let listener = server::bind(&Endpoint::Unix(sock.clone())).await.unwrap();
    let routes =
        Routes::new(running.service()).add_service(IdentityServer::new(IdentityService::new(
            DEFAULT_DRIVER_NAME.into(),
            true,
            Arc::new(ReadinessFlag::new(Health::ready())),
        )));
    tokio::spawn(server::serve(
        listener,
        routes,
        stop.clone(),
        Duration::from_secs(5),
    ));
    let channel = super::unix_channel(&sock).await;
    let client = ControllerClient::new(channel.clone());
    let identity = IdentityClient::new(channel);
    Ok((client, identity, controller, metrics, events, stop, running))
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
