//! Readings of one coordination.k8s.io Lease, from a kube-runtime watcher on that one object
//! (field selector `metadata.name`). The driver never writes the Lease: it follows the one its
//! pod's external-attacher holds (docs/operations.md, "Two controller replicas").

use ::kube::api::Api;
use ::kube::runtime::{watcher, WatchStreamExt};
use ::kube::Client;
use k8s_openapi::api::coordination::v1::Lease;
use tokio_stream::StreamExt;

use super::{LeaseEvents, LeaseRecord};

/// The reading of a Lease object (`leaseDurationSeconds` absent or out of range reads as
/// 15 s, client-go's default).
pub fn record_of(lease: &Lease) -> LeaseRecord {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseRecord {
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        duration: std::time::Duration::from_secs(
            spec.lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .unwrap_or(15),
        ),
        renew_time: spec.renew_time.map(|t| t.0.to_string()),
    }
}

/// The Lease `name` in `namespace`, each time it changes; `None` when it is deleted or absent
/// from a (re)list.
pub fn lease_events(client: Client, namespace: &str, name: &str) -> LeaseEvents {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut listed = false;
    Box::pin(
        watcher(api, cfg)
            .default_backoff()
            .filter_map(move |r| match r {
                Err(e) => Some(Err(e.to_string())),
                Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) => {
                    listed = true;
                    Some(Ok(Some(record_of(&l))))
                }
                Ok(watcher::Event::Delete(_)) => Some(Ok(None)),
                Ok(watcher::Event::Init) => {
                    listed = false;
                    None
                }
                Ok(watcher::Event::InitDone) => (!listed).then_some(Ok(None)),
            }),
    )
}
