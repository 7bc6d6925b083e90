//! `rds-csi controller`: flags → RDS client, attachment fencing, CSI services, and serving
//! until SIGTERM.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[cfg(feature = "kubernetes")]
use super::leader::attacher_lease_name;
use super::state_file::StateFile;
use super::LeaderElection;
use super::{Assembly, ControllerConfig};
use crate::attachment::persist::AttachmentStore;
use crate::csi::identity::HealthCheck;
use crate::csi::server::DEFAULT_DRAIN_TIMEOUT;
#[cfg(feature = "kubernetes")]
use crate::k8s::cache::KubeAttachmentCache;
#[cfg(feature = "kubernetes")]
use crate::k8s::kube::{self as k8s_kube, KubeEvents, KubeNodes};
#[cfg(feature = "kubernetes")]
use crate::k8s::lease::lease_events;
#[cfg(feature = "kubernetes")]
use crate::k8s::CachedAttachments;
use crate::k8s::{
    AttachmentCache, AttachmentSource, EventSink, LogEvents, NoAttachments, NodeDirectory,
    StaticNodes,
};
use crate::observability::{logging, Metrics};
use crate::rds::{BasePath, HostKeyPolicy, RdsClient, RdsConfig};
use crate::runtime::cli::{ControllerArgs, TopologySegment};
use crate::runtime::{run_role, serve_until_stopped, RoleError, ServeConfig};

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

/// The RDS client configuration the controller flags describe; the error names the flag.
pub fn rds_config(a: &ControllerArgs) -> Result<RdsConfig, String> {
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
    /// The VolumeAttachment cache (with a real cluster).
    cache: Option<Arc<dyn AttachmentCache>>,
    /// `--leader-election`: the attacher's Lease to follow.
    leader_election: Option<LeaderElection>,
    /// Stops the watches behind the cache.
    stop: CancellationToken,
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
        if args.leader_election {
            return Err("--leader-election needs Kubernetes (the Lease and the VolumeAttachments); with --no-kubernetes run one replica".into());
        }
        return Ok(KubernetesSeams {
            events: Arc::new(LogEvents),
            nodes,
            attachments: Arc::new(NoAttachments),
            cache: None,
            leader_election: None,
            stop: CancellationToken::new(),
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
    let stop = CancellationToken::new();
    let (kube_cache, _task) =
        KubeAttachmentCache::start(client.clone(), driver.clone(), stop.clone());
    let cache: Arc<dyn AttachmentCache> = kube_cache.clone();
    let leader_election = args.leader_election.then(|| {
        let namespace = args
            .leader_election_namespace
            .clone()
            .unwrap_or_else(own_namespace);
        let lease = args
            .leader_election_lease_name
            .clone()
            .unwrap_or_else(|| attacher_lease_name(&driver));
        let identity = args
            .leader_election_identity
            .clone()
            .unwrap_or_else(own_hostname);
        tracing::info!(
            namespace,
            lease,
            identity,
            "leader election: following the external-attacher's Lease"
        );
        LeaderElection {
            lease: lease_events(client.clone(), &namespace, &lease),
            identity,
        }
    });
    Ok(KubernetesSeams {
        events: Arc::new(KubeEvents::new(
            client.clone(),
            driver,
            metrics,
            Some(kube_cache),
        )),
        nodes: Arc::new(KubeNodes::new(client.clone())),
        attachments: Arc::new(CachedAttachments(Arc::clone(&cache))),
        cache: Some(cache),
        leader_election,
        stop,
        client: Some(client),
    })
}

/// This pod's namespace, as the sidecars find it: `$POD_NAMESPACE`, else the ServiceAccount's
/// namespace file, else `default`.
#[cfg(feature = "kubernetes")]
fn own_namespace() -> String {
    env_or_file(
        "POD_NAMESPACE",
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
    )
    .unwrap_or_else(|| "default".to_owned())
}

/// The host name (a pod's name), which the sidecars use as their Lease identity.
#[cfg(feature = "kubernetes")]
fn own_hostname() -> String {
    env_or_file("HOSTNAME", "/proc/sys/kernel/hostname").unwrap_or_default()
}

/// The variable `var` if set and not empty, else the trimmed text of `file` if readable and
/// not empty.
#[cfg(feature = "kubernetes")]
fn env_or_file(var: &str, file: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| {
            std::fs::read_to_string(file)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
}

async fn serve(args: ControllerArgs) -> Result<(), RoleError> {
    let metrics = Metrics::new("controller");
    // Kubernetes first: where the controller runs decides everything else (and a bare
    // `rds-csi controller` outside a cluster is told about --no-kubernetes first).
    let seams = kubernetes_seams(&args, &metrics).await?;
    let in_cluster = seams.in_cluster();
    let seams_stop = seams.stop.clone();
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
        attachment_cache: seams.cache,
        leader_election: seams.leader_election,
        // Without VolumeAttachments to rebuild from, the table is kept on disk.
        state: if in_cluster {
            None
        } else {
            let f: Arc<dyn AttachmentStore> =
                Arc::new(StateFile::new(&args.state_dir).map_err(|e| e.to_string())?);
            Some(f)
        },
    }
    .start(&metrics)
    .await
    .map_err(|e| {
        format!(
            "cannot rebuild the attachment table at start (fencing would start blind, so the \
             controller does not serve): {e}"
        )
    })?;
    let stop = CancellationToken::new();
    let health: Arc<dyn HealthCheck> =
        Arc::new(super::RdsReadiness::spawn(rds, stop.child_token()));
    let routes = running.routes(args.common.driver_name.clone(), Arc::clone(&health));
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
    seams_stop.cancel();
    Ok(result?)
}
