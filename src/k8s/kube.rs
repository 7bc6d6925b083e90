//! The kube-rs implementations of the `k8s` traits, and the Node watch as a stream of node
//! events. Thin by design: every decision (what a VolumeAttachment means, which claim an event
//! goes on) is a pure function in [`super::convert`]; which node is gone is the controller's.
//!
//! API access stays inside deploy/kubernetes/base/rbac-controller.yaml: persistentvolumes
//! get/list/watch and volumeattachments list/watch (the watch-backed cache, [`super::cache`];
//! a PV GET/list only when the cache lacks a volume's PV), nodes get/list/watch,
//! events.k8s.io events create/patch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, ListParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::core::PartialObjectMeta;
use ::kube::runtime::{watcher, WatchStreamExt};
use ::kube::{Client, Config, ResourceExt};
use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume};
use parking_lot::Mutex;
use prometheus::IntCounter;
use tokio_stream::StreamExt;

use super::cache::KubeAttachmentCache;
use super::convert;
use super::recorder::{EventRecorder, Posting, Reporter};
use super::{EventSink, NodeDirectory, NodeEvent, NodeEvents};
use crate::attachment::{Event, EventReason};
use crate::error::Error;
use crate::observability::Metrics;

/// Counter of events that could not be posted (they are logged too).
pub const EVENT_FAILURES_TOTAL: &str = "rds_csi_kubernetes_event_failures_total";

/// A client from `--kubeconfig` when given, else the in-cluster configuration (falling back to
/// `$KUBECONFIG` / `~/.kube/config`). The error names the source and the next step.
/// Also returns the API server's URL, for messages.
pub async fn client(kubeconfig: Option<&Path>) -> Result<(Client, String), String> {
    let (config, source) = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                format!(
                    "cannot read the kubeconfig {}: {e}; check --kubeconfig (RDS_CSI_KUBECONFIG), \
                     or run with --no-kubernetes",
                    path.display()
                )
            })?;
            let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    format!(
                        "the kubeconfig {} is not usable: {e}; check its current context, cluster \
                         and user, or run with --no-kubernetes",
                        path.display()
                    )
                })?;
            (config, format!("the kubeconfig {}", path.display()))
        }
        None => {
            let config = Config::infer().await.map_err(|e| {
                format!(
                    "no Kubernetes configuration: {e}; run the controller in a pod with its \
                     ServiceAccount token mounted, pass --kubeconfig, or run with --no-kubernetes"
                )
            })?;
            (
                config,
                "the in-cluster (or default kubeconfig) configuration".to_owned(),
            )
        }
    };
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config)
        .map_err(|e| format!("cannot build a Kubernetes client for {url} from {source}: {e}"))?;
    Ok((client, url))
}

/// Fails with a message naming the API server and the next step when it cannot be reached.
pub async fn check_reachable(client: &Client, url: &str) -> Result<(), String> {
    let next = "check that it is up and that this pod can reach it (network policy, \
                --kubeconfig), or run with --no-kubernetes";
    match tokio::time::timeout(REACH_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "cannot reach the Kubernetes API server at {url}: {e}; {next}"
        )),
        Err(_) => Err(format!(
            "the Kubernetes API server at {url} did not answer within {}s; {next}",
            REACH_TIMEOUT.as_secs()
        )),
    }
}

/// How long the start-up check waits for the API server.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(15);

fn api_error(what: &str, e: &::kube::Error, rbac: &str) -> Error {
    let hint = match e {
        ::kube::Error::Api(s) if s.code == 401 || s.code == 403 => format!(
            "the controller's ServiceAccount lacks a permission: check that its ClusterRole grants {rbac}"
        ),
        _ => "check that the API server is reachable; the operation is retried".to_owned(),
    };
    let said = match e {
        ::kube::Error::Api(s) => format!("{} (HTTP {} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    };
    Error::Unavailable(format!("cannot {what}: {said}; {hint}"))
}

/// The PV of `driver` whose volume handle is `volume`, from the API server: a GET of the PV
/// named like the volume first (the external-provisioner names both after the claim), else a
/// list of all PVs. Used only when the watch-backed cache lacks it.
async fn pv_of_volume(
    pvs: &Api<PersistentVolume>,
    driver: &str,
    volume: &str,
) -> Result<Option<PersistentVolume>, Error> {
    let direct = pvs.get_opt(volume).await.map_err(|e| {
        api_error(
            &format!("get PersistentVolume {volume}"),
            &e,
            "get on persistentvolumes",
        )
    })?;
    if let Some(pv) = direct.filter(|pv| convert::volume_id(pv, driver) == Some(volume)) {
        return Ok(Some(pv));
    }
    let all = pvs.list(&ListParams::default()).await.map_err(|e| {
        api_error(
            &format!("list PersistentVolumes to find volume {volume}"),
            &e,
            "list on persistentvolumes",
        )
    })?;
    Ok(all
        .items
        .into_iter()
        .find(|pv| convert::volume_id(pv, driver) == Some(volume)))
}

/// Node lookups: GET Node (metadata only); 404 is "does not exist".
pub struct KubeNodes {
    api: Api<Node>,
}

impl KubeNodes {
    pub fn new(client: Client) -> Self {
        KubeNodes {
            api: Api::all(client),
        }
    }
}

#[tonic::async_trait]
impl NodeDirectory for KubeNodes {
    async fn node_exists(&self, node_id: &str) -> Result<bool, Error> {
        self.api
            .get_metadata_opt(node_id)
            .await
            .map(|n| n.is_some())
            .map_err(|e| api_error(&format!("look up Node {node_id:?}"), &e, "get on nodes"))
    }
}

/// Posts events.k8s.io/v1 Events on the volume's claim (found through its PV; on the PV itself
/// when it has no claim), reported by the driver name, each naming the Node it is about as its
/// related object. One per process: the recorder folds identical repeats into a series.
///
/// The PV comes from the watch-backed cache's PV store (no API call per event); only a volume
/// whose PV the cache lacks is looked up on the API server, and that answer is remembered.
pub struct KubeEvents {
    recorder: EventRecorder,
    /// The watch-backed cache whose PV store is asked first.
    cache: Option<Arc<KubeAttachmentCache>>,
    pvs: Api<PersistentVolume>,
    driver: String,
    /// volume id → the object its events go on, for volumes looked up on the API server.
    looked_up: Mutex<HashMap<String, ObjectReference>>,
    failures: IntCounter,
}

/// Upper bound of the remembered API lookups (cleared when reached; it only saves calls).
const LOOKED_UP_MAX: usize = 4096;

/// The object a PV's events go on: its claim, else the PV itself.
fn regarding_of(pv: &PersistentVolume) -> ObjectReference {
    convert::claim_of(pv).unwrap_or_else(|| convert::pv_reference(pv))
}

impl KubeEvents {
    /// `cache`: the watch-backed cache whose PV store the claim lookups read (`None`: every
    /// lookup asks the API server once per volume).
    pub fn new(
        client: Client,
        driver: impl Into<String>,
        metrics: &Metrics,
        cache: Option<Arc<KubeAttachmentCache>>,
    ) -> Self {
        let driver = driver.into();
        let failures = IntCounter::new(
            EVENT_FAILURES_TOTAL,
            "Kubernetes events about volumes that could not be posted (logged instead)",
        )
        .expect("a valid metric definition");
        metrics.register(Box::new(failures.clone()));
        let reporter = Reporter {
            controller: driver.clone(),
            // The pod name (HOSTNAME in a pod), so replicas' events can be told apart.
            instance: std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| driver.clone()),
        };
        KubeEvents {
            recorder: EventRecorder::new(client.clone(), reporter),
            cache,
            pvs: Api::all(client),
            driver,
            looked_up: Mutex::new(HashMap::new()),
            failures,
        }
    }

    pub fn failures(&self) -> u64 {
        self.failures.get()
    }

    async fn regarding(&self, volume_id: &str) -> Result<ObjectReference, String> {
        // The store is current (a claim bound since is seen); a remembered API answer only
        // stands in for a PV the store does not have.
        if let Some(pv) = self
            .cache
            .as_ref()
            .and_then(|c| c.persistent_volume(volume_id))
        {
            return Ok(regarding_of(&pv));
        }
        if let Some(r) = self.looked_up.lock().get(volume_id) {
            return Ok(r.clone());
        }
        tracing::debug!(
            volume = volume_id,
            "PersistentVolume not in the watch cache; asking the API server"
        );
        let pv = pv_of_volume(&self.pvs, &self.driver, volume_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "no PersistentVolume of driver {} has volume handle {volume_id:?}",
                    self.driver
                )
            })?;
        let r = regarding_of(&pv);
        let mut looked_up = self.looked_up.lock();
        if looked_up.len() >= LOOKED_UP_MAX {
            looked_up.clear();
        }
        looked_up.insert(volume_id.to_owned(), r.clone());
        Ok(r)
    }
}

/// The events.k8s.io `action` of a reason (what the driver was doing).
pub fn action_of(reason: EventReason) -> &'static str {
    match reason {
        EventReason::VolumeAttached | EventReason::AttachmentConflict => "ControllerPublish",
        EventReason::VolumeDetached => "ControllerUnpublish",
        EventReason::StaleAttachmentCleared => "NodeDeleted",
        EventReason::MigrationStarted
        | EventReason::MigrationCompleted
        | EventReason::MigrationFailed => "LiveMigration",
    }
}

/// A reference to a Node (an event's related object).
pub fn node_reference(node: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Node".to_owned()),
        name: Some(node.to_owned()),
        ..ObjectReference::default()
    }
}

/// The events.k8s.io posting for one of ours, on `regarding` (the volume's claim or PV).
pub fn posting(event: &Event, regarding: ObjectReference) -> Posting {
    Posting {
        type_: event.event_type.as_str(),
        reason: event.reason.as_str().to_owned(),
        action: action_of(event.reason).to_owned(),
        note: event.message.clone(),
        regarding,
        related: Some(node_reference(&event.node)),
    }
}

#[tonic::async_trait]
impl EventSink for KubeEvents {
    async fn post(&self, volume_id: &str, event: &Event) -> bool {
        let result = match self.regarding(volume_id).await {
            Ok(r) => self
                .recorder
                .publish(&posting(event, r.clone()))
                .await
                .map_err(|e| {
                    format!(
                        "on {} {}/{}: {e}; check the controller's RBAC (events.k8s.io events: create, patch)",
                        r.kind.as_deref().unwrap_or("object"),
                        r.namespace.as_deref().unwrap_or(""),
                        r.name.as_deref().unwrap_or("")
                    )
                }),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                self.failures.inc();
                tracing::warn!(
                    volume = volume_id,
                    reason = event.reason.as_str(),
                    message = event.message,
                    "event not posted: {e}"
                );
                false
            }
        }
    }
}

/// The Node watch as node events: a kube-runtime watcher over Nodes' metadata only (a NotReady
/// status cannot even be seen), with the watcher's default backoff. The watcher resumes from
/// the last resourceVersion and relists on `410 Gone`; a relist shows as
/// `ListStart`/`Listed`/`ListDone`.
pub fn node_events(client: Client) -> NodeEvents {
    let api: Api<PartialObjectMeta<Node>> = Api::all(client);
    Box::pin(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(|r| {
                r.map(|ev| match ev {
                    watcher::Event::Apply(n) => NodeEvent::Applied(n.name_any()),
                    watcher::Event::Delete(n) => NodeEvent::Deleted(n.name_any()),
                    watcher::Event::Init => NodeEvent::ListStart,
                    watcher::Event::InitApply(n) => NodeEvent::Listed(n.name_any()),
                    watcher::Event::InitDone => NodeEvent::ListDone,
                })
                .map_err(|e| e.to_string())
            }),
    )
}

#[cfg(test)]
#[path = "kube_tests.rs"]
mod tests;
