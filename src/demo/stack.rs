//! The demo's running parts, all in this process but talking over real transports: the RDS
//! simulator (SSH on loopback), a controller and two node plugins, each served on its own
//! unix socket and reached through tonic clients exactly as kubelet and the sidecars would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi_proto::v1::identity_client::IdentityClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Channel;

use crate::attachment::TableConfig;
use crate::controller::{Assembly, ControllerConfig, RdsReadiness, RunningController};
use crate::csi::endpoint::Endpoint;
use crate::csi::identity::DEFAULT_DRIVER_NAME;
use crate::csi::server::{self, ServeError};
use crate::k8s::{NoAttachments, RecordedEvents, StaticNodes};
use crate::node::{NodeConfig, NodePlugin, TransportConfig};
use crate::observability::Metrics;
use crate::rds::{RdsClient, Reachability};
use crate::scenario::channel::unix_channel;
use crate::scenario::{CsiClient, Layout};
use crate::simulator::harness::{start_simulator, SimHandle, SimOptions};

pub const BASE_PATH: &str = "/storage-pool/csi";
pub const NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik:";
/// The node ids the controller knows (`--static-nodes`); node plugins run for the first two.
pub const NODE_IDS: [&str; 3] = ["demo-node-a", "demo-node-b", "demo-node-c"];

pub struct NodeHandle {
    pub id: &'static str,
    pub identity: IdentityClient<Channel>,
    pub socket: PathBuf,
}

pub struct Stack {
    pub sim: SimHandle,
    /// The scenario's CSI calls: the controller, and each node plugin once added.
    pub csi: CsiClient,
    pub identity: IdentityClient<Channel>,
    pub controller_socket: PathBuf,
    pub events: RecordedEvents,
    pub metrics: Metrics,
    pub nodes: Vec<NodeHandle>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<Result<(), ServeError>>>,
    /// The controller's own background tasks (deadline sweeper).
    controller_tasks: Option<RunningController>,
}

/// Starts the simulator under `dir`. The harness panics on a start failure (it is test
/// scaffolding); the panic is caught here and becomes an error.
pub async fn simulator(dir: PathBuf, faults: Vec<String>) -> Result<SimHandle, String> {
    let opts = SimOptions {
        faults,
        ..SimOptions::default()
    };
    tokio::spawn(async move { start_simulator(&dir, opts).await })
        .await
        .map_err(|e| {
            let why = e
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                })
                .unwrap_or_else(|| "the task was cancelled".into());
            format!("the RDS simulator did not start: {why}")
        })
}

async fn serve_on(
    socket: &Path,
    routes: Routes,
    stop: &CancellationToken,
) -> Result<JoinHandle<Result<(), ServeError>>, String> {
    let listener = server::bind(&Endpoint::Unix(socket.to_owned()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(tokio::spawn(server::serve(
        listener,
        routes,
        stop.clone(),
        Duration::from_secs(5),
    )))
}

impl Stack {
    /// A controller over the simulator through a real RDS client (SSH, pinned host key),
    /// `--no-kubernetes` style: events recorded in memory, the three demo nodes static.
    pub async fn start(sim: SimHandle, work: &Path) -> Result<Stack, String> {
        let metrics = Metrics::new("controller");
        let rds = RdsClient::new(sim.client_config(BASE_PATH), &metrics)
            .map_err(|e| format!("RDS client: {e}"))?;
        let events = RecordedEvents::default();
        let running = Assembly {
            rds: rds.clone(),
            config: ControllerConfig {
                nqn_prefix: NQN_PREFIX.into(),
                default_nvme_address: Some("127.0.0.1".into()),
                topology: None,
            },
            grace_period: TableConfig::DEFAULT_GRACE_PERIOD,
            events: Arc::new(events.clone()),
            nodes: Arc::new(StaticNodes(
                NODE_IDS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<BTreeSet<_>>(),
            )),
            restore_from: Arc::new(NoAttachments),
            consult_on_miss: false,
            node_events: None,
            attachment_cache: None,
            leader_election: None,
            state: None,
        }
        .start(&metrics)
        .await
        .map_err(|e| format!("attachment table: {e}"))?;
        let stop = CancellationToken::new();
        let readiness = RdsReadiness::spawn(rds, stop.child_token());
        // The first check decides the first Probe; it ends within its own deadline.
        readiness
            .0
            .wait_for(|r| *r != Reachability::NotChecked)
            .await;
        let routes = running.routes(DEFAULT_DRIVER_NAME.into(), Arc::new(readiness));
        let socket = work.join("controller/csi.sock");
        let mut stack_tasks = Vec::new();
        let started = serve_on(&socket, routes, &stop).await;
        let task = match started {
            Ok(t) => t,
            Err(e) => {
                stop.cancel();
                return Err(format!("controller socket: {e}"));
            }
        };
        stack_tasks.push(task);
        let channel = unix_channel(&socket).await.map_err(|e| e.to_string())?;
        let layout = Layout::PerNodeDir {
            root: work.join("nodes"),
        };
        Ok(Stack {
            sim,
            csi: CsiClient::new(channel.clone(), layout),
            identity: IdentityClient::new(channel),
            controller_socket: socket,
            events,
            metrics,
            nodes: Vec::new(),
            stop,
            tasks: stack_tasks,
            controller_tasks: Some(running),
        })
    }

    /// A node plugin with the loop transport, served on `<work>/nodes/<id>/csi.sock`.
    pub async fn add_node(
        &mut self,
        id: &'static str,
        work: &Path,
        data_dir: PathBuf,
    ) -> Result<(), String> {
        // Everything of this node (kubelet-like paths, state, host identity) lives under it.
        let dir = work.join("nodes").join(id);
        let cfg = NodeConfig {
            node_id: id.into(),
            driver_name: DEFAULT_DRIVER_NAME.into(),
            transport: TransportConfig::Loop { data_dir },
            nqn_prefix: format!("{NQN_PREFIX}pvc-"),
            state_dir: dir.join("state"),
            host_nqn_file: dir.join("nvme/hostnqn"),
            host_id_file: dir.join("nvme/hostid"),
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            dev_root: "/dev".into(),
            max_volumes: 0,
            topology: Default::default(),
            reconcile_interval: None,
        };
        let metrics = Metrics::new("node");
        let plugin = NodePlugin::new(cfg, &metrics).map_err(|e| format!("node {id}: {e}"))?;
        let socket = dir.join("csi.sock");
        let task = serve_on(&socket, plugin.routes(), &self.stop)
            .await
            .map_err(|e| format!("node {id} socket: {e}"))?;
        self.tasks.push(task);
        let channel = unix_channel(&socket).await.map_err(|e| e.to_string())?;
        self.csi.add_node(id, channel.clone());
        self.nodes.push(NodeHandle {
            id,
            identity: IdentityClient::new(channel),
            socket,
        });
        Ok(())
    }

    pub fn sockets(&self) -> Vec<PathBuf> {
        let mut s = vec![self.controller_socket.clone()];
        s.extend(self.nodes.iter().map(|n| n.socket.clone()));
        s
    }

    /// Stops the gRPC servers (they remove their sockets), the sweeper and the simulator.
    pub async fn shutdown(mut self) -> Result<(), String> {
        self.stop.cancel();
        let mut errors = Vec::new();
        for t in self.tasks.drain(..) {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(e) => errors.push(format!("server task: {e}")),
            }
        }
        if let Some(c) = self.controller_tasks.take() {
            c.stop().await;
        }
        self.sim.shutdown().await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
