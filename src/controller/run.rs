//! `rds-csi controller`: flags → RDS client, attachment fencing, CSI services, and serving
//! until SIGTERM.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use csi_proto::v1::identity_server::IdentityServer;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use super::{Assembly, ControllerConfig};
use crate::cli::{ControllerArgs, TopologySegment};
use crate::identity::{Health, HealthCheck, IdentityService};
#[cfg(feature = "kubernetes")]
use crate::k8s::kube::{self as k8s_kube, KubeAttachments, KubeEvents, KubeNodes};
use crate::k8s::{
    AttachmentSource, EventSink, LogEvents, NoAttachments, NodeDirectory, StaticNodes,
};
use crate::observability::{logging, Metrics};
use crate::rds::{BasePath, HostKeyPolicy, RdsClient, RdsConfig};
use crate::runtime::{run_role, serve_until_stopped, RoleError, ServeConfig};
use crate::server::DEFAULT_DRAIN_TIMEOUT;

/// Probe/readyz: ready when the RDS answered recently. Cached, so frequent probes do not
/// each cost an SSH round trip.
pub struct RdsHealth {
    rds: RdsClient,
    cache: Mutex<Option<(std::time::Instant, Health)>>,
}

impl RdsHealth {
    pub fn new(rds: RdsClient) -> Self {
        RdsHealth {
            rds,
            cache: Mutex::new(None),
        }
    }
}

#[tonic::async_trait]
impl HealthCheck for RdsHealth {
    async fn check(&self) -> Health {
        if let Some((at, h)) = self.cache.lock().clone() {
            if at.elapsed() < Duration::from_secs(5) {
                return h;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let h = match self.rds.health(deadline).await {
            Ok(_) => Health::ready(),
            Err(e) => Health::not_ready(format!("RDS unreachable: {e}")),
        };
        *self.cache.lock() = Some((std::time::Instant::now(), h.clone()));
        h
    }
}

/// Any node id exists (`--no-kubernetes` without `--static-nodes`).
struct AnyNode;

#[tonic::async_trait]
impl NodeDirectory for AnyNode {
    async fn node_exists(&self, _node_id: &str) -> Result<bool, crate::error::Error> {
        Ok(true)
    }
}

fn required<T: Clone>(v: &Option<T>, flag: &str, what: &str) -> Result<T, String> {
    v.clone()
        .ok_or_else(|| format!("{flag} is required: {what}"))
}

fn rds_config(a: &ControllerArgs) -> Result<RdsConfig, String> {
    let address = required(
        &a.rds_address,
        "--rds-address",
        "the RDS management address, host or host:port",
    )?;
    let user = required(&a.rds_user, "--rds-user", "the SSH user on the RDS")?;
    let key: PathBuf = required(
        &a.rds_key_file,
        "--rds-key-file",
        "the SSH private key file",
    )?;
    let host_key = match (&a.rds_host_key, a.rds_insecure_skip_host_key_check) {
        (Some(k), false) => HostKeyPolicy::Pinned(k.clone()),
        (None, true) => HostKeyPolicy::InsecureSkip,
        (Some(_), true) => {
            return Err("--rds-host-key and --rds-insecure-skip-host-key-check exclude each other".into())
        }
        (None, false) => {
            return Err("--rds-host-key is required: pin the RDS host key (a known_hosts line or SHA256:<fingerprint>; `rds-csi simulator --print-host-key` prints the simulator's)".into())
        }
    };
    let base = required(
        &a.volume_base_path,
        "--volume-base-path",
        "the directory on the RDS for volume files, e.g. /storage-pool/csi",
    )?;
    let base = BasePath::new(&base)
        .map_err(|e| format!("invalid value {base:?} for --volume-base-path: {e}"))?;
    Ok(RdsConfig::new(address, user, key, host_key, base))
}

pub fn run(args: ControllerArgs) -> ExitCode {
    logging::init(args.common.log_format, &args.common.log_level);
    run_role("controller", serve(args))
}

/// What the controller reaches Kubernetes through: the in-process stand-ins with
/// `--no-kubernetes`, the kube-rs adapters otherwise.
struct KubernetesSeams {
    events: Arc<dyn EventSink>,
    nodes: Arc<dyn NodeDirectory>,
    attachments: Arc<dyn AttachmentSource>,
    /// Set with a real cluster: the node watch needs it.
    #[cfg(feature = "kubernetes")]
    client: Option<kube::Client>,
}

impl KubernetesSeams {
    fn in_cluster(&self) -> bool {
        #[cfg(feature = "kubernetes")]
        return self.client.is_some();
        #[cfg(not(feature = "kubernetes"))]
        return false;
    }
}

async fn kubernetes_seams(
    args: &ControllerArgs,
    metrics: &Metrics,
) -> Result<KubernetesSeams, String> {
    if args.no_kubernetes {
        let nodes: Arc<dyn NodeDirectory> = if args.static_nodes.is_empty() {
            tracing::warn!(
                "--no-kubernetes without --static-nodes: any node id is accepted by ControllerPublish"
            );
            Arc::new(AnyNode)
        } else {
            Arc::new(StaticNodes(
                args.static_nodes.iter().cloned().collect::<BTreeSet<_>>(),
            ))
        };
        return Ok(KubernetesSeams {
            events: Arc::new(LogEvents),
            nodes,
            attachments: Arc::new(NoAttachments),
            #[cfg(feature = "kubernetes")]
            client: None,
        });
    }
    if !args.static_nodes.is_empty() {
        return Err("--static-nodes only applies with --no-kubernetes (with Kubernetes, Node objects say which nodes exist)".into());
    }
    #[cfg(not(feature = "kubernetes"))]
    {
        let _ = metrics;
        Err(
            "this rds-csi was built without the `kubernetes` cargo feature: run the controller \
             with --no-kubernetes, or rebuild with default features"
                .into(),
        )
    }
    #[cfg(feature = "kubernetes")]
    kube_seams(args, metrics).await
}

#[cfg(feature = "kubernetes")]
async fn kube_seams(args: &ControllerArgs, metrics: &Metrics) -> Result<KubernetesSeams, String> {
    let (client, url) = k8s_kube::client(args.kubeconfig.as_deref()).await?;
    k8s_kube::check_reachable(&client, &url).await?;
    tracing::info!(api_server = url, "Kubernetes API server reached");
    let driver = args.common.driver_name.clone();
    Ok(KubernetesSeams {
        events: Arc::new(KubeEvents::new(client.clone(), driver.clone(), metrics)),
        nodes: Arc::new(KubeNodes::new(client.clone())),
        attachments: Arc::new(KubeAttachments::new(client.clone(), driver)),
        client: Some(client),
    })
}

async fn serve(args: ControllerArgs) -> Result<(), RoleError> {
    let metrics = Metrics::new("controller");
    // Kubernetes first: where the controller runs decides everything else (and a bare
    // `rds-csi controller` outside a cluster is told about --no-kubernetes first).
    let seams = kubernetes_seams(&args, &metrics).await?;
    let in_cluster = seams.in_cluster();
    let rds_cfg = rds_config(&args)?;
    let rds = RdsClient::new(rds_cfg, &metrics).map_err(|e| e.to_string())?;
    #[cfg(feature = "kubernetes")]
    let node_events = seams.client.clone().map(k8s_kube::node_events);
    #[cfg(not(feature = "kubernetes"))]
    let node_events = None;
    let running = Assembly {
        rds: rds.clone(),
        config: ControllerConfig {
            nqn_prefix: args.nqn_prefix.clone(),
            default_nvme_address: args.nvme_address.clone(),
            topology: (!args.topology.is_empty())
                .then(|| TopologySegment::map(&args.topology).into_iter().collect()),
        },
        grace_period: Duration::from_secs(args.attachment_grace_period),
        events: seams.events,
        nodes: seams.nodes,
        restore_from: seams.attachments,
        consult_on_miss: in_cluster,
        node_events,
    }
    .start(&metrics)
    .await
    .map_err(|e| {
        format!(
            "cannot rebuild the attachment table from VolumeAttachments at start (fencing \
             would start blind, so the controller does not serve): {e}"
        )
    })?;
    let health: Arc<dyn HealthCheck> = Arc::new(RdsHealth::new(rds));
    let routes = Routes::new(IdentityServer::new(IdentityService::new(
        args.common.driver_name.clone(),
        true,
        Arc::clone(&health),
    )))
    .add_service(running.service());
    let stop = CancellationToken::new();
    let result = serve_until_stopped(
        ServeConfig {
            endpoint: args.common.endpoint.clone(),
            metrics_address: args.metrics_address.0,
            drain: DEFAULT_DRAIN_TIMEOUT,
        },
        routes,
        metrics,
        health,
        stop.clone(),
    )
    .await;
    stop.cancel();
    running.stop().await;
    Ok(result?)
}
