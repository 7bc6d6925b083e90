//! The CSI node plugin: connects a volume's device (NVMe/TCP, or a loop device in
//! development), formats only blank fresh volumes, mounts/publishes, and refuses to
//! disconnect a device that anything on the host still holds. Built on `node-io`.

pub mod durable;
pub mod error;
pub mod expand;
pub mod filesystem;
pub mod fs_plan;
pub mod holders;
pub mod host_identity;
pub mod metrics;
pub mod mount;
pub mod ops;
pub mod paths;
pub mod preflight;
pub mod publish;
pub mod reconcile;
pub mod service;
pub mod stage;
pub mod stage_record;
pub mod stats;
pub mod transport;
pub mod unpublish;
pub mod unstage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use csi_proto::v1::identity_server::IdentityServer;
use csi_proto::v1::node_server::NodeServer;
use node_io::reader::DeviceReader;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::csi::identity::{Health, HealthCheck, IdentityService};
use crate::csi::inflight::InFlight;
use crate::csi::server::DEFAULT_DRAIN_TIMEOUT;
use crate::observability::rpc::Traced;
use crate::observability::Metrics;
use crate::runtime::cli::{NodeArgs, TopologySegment, Transport as TransportFlag};
use crate::runtime::{run_role, serve_until_stopped, RoleError, ServeConfig};

use self::metrics::NodeMetrics;
use self::ops::Node;
use self::service::NodeService;
use self::transport::{LoopDevices, NvmeTcp, Transport};

/// Which transport, with what it alone needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportConfig {
    NvmeTcp,
    Loop { data_dir: PathBuf },
}

/// Everything the node plugin needs, validated.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    pub driver_name: String,
    pub transport: TransportConfig,
    pub nqn_prefix: String,
    pub state_dir: PathBuf,
    pub host_nqn_file: PathBuf,
    pub host_id_file: PathBuf,
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
    pub max_volumes: u32,
    pub topology: BTreeMap<String, String>,
    /// None: no reconciler.
    pub reconcile_interval: Option<Duration>,
}

impl NodeConfig {
    /// Validates the flags; an error names the flag and what is expected.
    pub fn from_args(a: &NodeArgs) -> Result<Self, String> {
        let node_id = a.node_id.clone().filter(|s| !s.trim().is_empty()).ok_or(
            "--node-id is required: this node's id, the Kubernetes node name (RDS_CSI_NODE_ID)",
        )?;
        let transport = match a.transport {
            TransportFlag::NvmeTcp => TransportConfig::NvmeTcp,
            TransportFlag::Loop => {
                let d = a.loop_data_dir.clone().ok_or(
                    "--transport loop needs --loop-data-dir: the simulator's data directory holding the backing files",
                )?;
                if !d.is_dir() {
                    return Err(format!("--loop-data-dir {}: not a directory", d.display()));
                }
                TransportConfig::Loop { data_dir: d }
            }
        };
        if !a.nqn_prefix.starts_with("nqn.") || a.nqn_prefix.len() < 8 {
            return Err(format!(
                "--nqn-prefix {:?}: expected an NQN prefix such as nqn.2000-02.com.mikrotik:pvc-",
                a.nqn_prefix
            ));
        }
        Ok(NodeConfig {
            node_id,
            driver_name: a.common.driver_name.clone(),
            transport,
            nqn_prefix: a.nqn_prefix.clone(),
            state_dir: a.state_dir.clone(),
            host_nqn_file: a.host_nqn_file.clone(),
            host_id_file: a.host_id_file.clone(),
            proc_root: a.proc_root.clone(),
            sys_root: a.sys_root.clone(),
            dev_root: a.dev_root.clone(),
            max_volumes: a.max_volumes,
            topology: TopologySegment::map(&a.topology),
            reconcile_interval: (a.reconcile_interval > 0)
                .then(|| Duration::from_secs(a.reconcile_interval)),
        })
    }
}

/// Readiness: the kernel interfaces the transport needs are there.
struct NodeHealth {
    transport: TransportConfig,
    dev_root: PathBuf,
}

#[tonic::async_trait]
impl HealthCheck for NodeHealth {
    async fn check(&self) -> Health {
        match &self.transport {
            TransportConfig::NvmeTcp => {
                let f = self.dev_root.join("nvme-fabrics");
                if f.exists() {
                    Health::ready()
                } else {
                    Health::not_ready(format!(
                        "{} is missing: the nvme-fabrics/nvme-tcp kernel modules are not loaded; run `modprobe nvme-tcp` on the host",
                        f.display()
                    ))
                }
            }
            TransportConfig::Loop { data_dir } => {
                let ctl = self.dev_root.join("loop-control");
                if !ctl.exists() {
                    Health::not_ready(format!(
                        "{} is missing: the loop module is not loaded",
                        ctl.display()
                    ))
                } else if !data_dir.is_dir() {
                    Health::not_ready(format!(
                        "--loop-data-dir {} is not a directory",
                        data_dir.display()
                    ))
                } else {
                    Health::ready()
                }
            }
        }
    }
}

/// The node plugin, ready to serve.
pub struct NodePlugin {
    pub config: NodeConfig,
    pub node: Arc<Node>,
}

impl NodePlugin {
    /// Loads (or creates) the host identity — refusing cloned defaults — and builds the
    /// services. Metrics are registered on `metrics`.
    pub fn new(config: NodeConfig, metrics: &Metrics) -> Result<Self, error::NodeError> {
        let host = host_identity::load_or_create(&config.host_nqn_file, &config.host_id_file)?;
        tracing::info!(host_nqn = %host.host_nqn, host_id = %host.host_id, node_id = %config.node_id, "node host identity");
        let transport = match &config.transport {
            TransportConfig::NvmeTcp => Transport::NvmeTcp(NvmeTcp {
                sys_root: config.sys_root.clone(),
                dev_root: config.dev_root.clone(),
                nqn_prefix: config.nqn_prefix.clone(),
                host: host.clone(),
            }),
            TransportConfig::Loop { data_dir } => Transport::Loop(LoopDevices {
                data_dir: data_dir.clone(),
                sys_root: config.sys_root.clone(),
                dev_root: config.dev_root.clone(),
            }),
        };
        let rejections = metrics.inflight_rejections.clone();
        let node = Node {
            node_id: config.node_id.clone(),
            max_volumes: config.max_volumes,
            topology: config.topology.clone(),
            state_dir: config.state_dir.clone(),
            boot: stage_record::Boot::current(&config.proc_root)?,
            proc_root: config.proc_root.clone(),
            sys_root: config.sys_root.clone(),
            transport,
            host,
            reader: DeviceReader::new(),
            metrics: NodeMetrics::new(metrics),
            inflight: InFlight::new().with_reject_hook(move || rejections.inc()),
        };
        Ok(NodePlugin {
            config,
            node: Arc::new(node),
        })
    }

    pub fn health(&self) -> Arc<dyn HealthCheck> {
        Arc::new(NodeHealth {
            transport: self.config.transport.clone(),
            dev_root: self.config.dev_root.clone(),
        })
    }

    /// Identity (no controller service) and Node.
    pub fn routes(&self) -> Routes {
        Routes::new(IdentityServer::new(IdentityService::new(
            self.config.driver_name.clone(),
            false,
            self.health(),
        )))
        .add_service(NodeServer::new(Traced::node(
            Arc::new(NodeService(Arc::clone(&self.node))),
            self.config.node_id.clone(),
        )))
    }

    /// Starts the reconnect reconciler (nvme-tcp only); it stops with `stop`.
    pub fn spawn_reconciler(&self, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        let Transport::NvmeTcp(nvme) = &self.node.transport else {
            return None;
        };
        let interval = self.config.reconcile_interval?;
        let r = reconcile::Reconciler::new(Arc::clone(&self.node), nvme.clone(), interval);
        Some(tokio::spawn(r.run(stop)))
    }
}

/// `rds-csi node`.
pub fn run(args: NodeArgs) -> ExitCode {
    crate::observability::logging::init(args.common.log_format, &args.common.log_level);
    run_role("node", serve(args))
}

async fn serve(args: NodeArgs) -> Result<(), RoleError> {
    let config = NodeConfig::from_args(&args)?;
    let metrics = Metrics::new("node");
    let plugin = NodePlugin::new(config, &metrics).map_err(|e| RoleError::Start(e.to_string()))?;
    // The preflight an operator runs as `rds-csi doctor node`, logged (a failed check does
    // not stop the plugin: readiness and each RPC refuse what cannot work, naming why).
    let env = preflight::NodeEnv::of(&plugin.config, DeviceReader::new().mode().clone());
    match tokio::task::spawn_blocking(move || preflight::checks(&env)).await {
        Ok(report) => report.log("node"),
        Err(e) => tracing::warn!(error = %e, "doctor: the node checks did not finish"),
    }
    let stop = CancellationToken::new();
    let reconciler = plugin.spawn_reconciler(stop.clone());
    let cfg = ServeConfig {
        endpoint: args.common.endpoint.clone(),
        metrics_address: args.metrics_address.0,
        drain: DEFAULT_DRAIN_TIMEOUT,
    };
    let result =
        serve_until_stopped(cfg, plugin.routes(), metrics, plugin.health(), stop.clone()).await;
    stop.cancel();
    if let Some(r) = reconciler {
        let _ = r.await;
    }
    Ok(result?)
}
