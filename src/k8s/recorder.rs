//! An events.k8s.io/v1 recorder that folds only identical events into a series.
//!
//! kube-runtime's `Recorder` (kube-runtime 5.0, `src/events.rs`) keys its series on (type,
//! action, reason, reporting controller and instance, regarding, related) for 6 minutes, as
//! client-go's `tools/events` does: a second event with the same key PATCHes the first one's
//! `series` (count, lastObservedTime) and its own note is dropped. Our notes carry what the
//! key cannot: a migration's source *and* target, the holders of a refused volume, a
//! migration's failure reason. So a PVC attached to node-a then node-b showed one
//! `VolumeAttached "node: node-a"` with count 2. This recorder writes the same objects the same
//! way (create, then merge-patch the series; same name scheme, same 6-minute window) with the
//! note in the key: only truly identical events are merged. Each event also names the Node it
//! is about as its `related` object.

use std::collections::HashMap;

use ::kube::api::{Api, Patch, PatchParams, PostParams};
use ::kube::Client;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use parking_lot::Mutex;

/// How long a posted event can still take repeats into its series (kube-runtime's
/// `CACHE_TTL`).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// One event to post: the fields `kubectl describe` shows, plus what it is about.
#[derive(Clone, Debug, PartialEq)]
pub struct Posting {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: String,
    pub action: String,
    pub note: String,
    pub regarding: ObjectReference,
    pub related: Option<ObjectReference>,
}

/// What identifies a series: everything `kubectl describe` shows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    type_: &'static str,
    reason: String,
    action: String,
    note: String,
    regarding: RefKey,
    related: Option<RefKey>,
}

/// The identifying fields of an object reference (as kube-runtime hashes them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RefKey {
    api_version: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
}

impl From<&ObjectReference> for RefKey {
    fn from(r: &ObjectReference) -> Self {
        RefKey {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            uid: r.uid.clone(),
        }
    }
}

impl Posting {
    fn key(&self) -> Key {
        Key {
            type_: self.type_,
            reason: self.reason.clone(),
            action: self.action.clone(),
            note: self.note.clone(),
            regarding: RefKey::from(&self.regarding),
            related: self.related.as_ref().map(RefKey::from),
        }
    }
}

/// The reporting controller (the driver name) and instance (the pod name).
#[derive(Clone, Debug)]
pub struct Reporter {
    pub controller: String,
    pub instance: String,
}

/// Posts events, folding identical repeats within [`SERIES_WINDOW`] into a series.
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    /// Series key → the event as last written.
    series: Mutex<HashMap<Key, K8sEvent>>,
}

/// What to send for a posting: a new event (POST) or the series update of an earlier one
/// (merge PATCH of the same object).
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    Create(K8sEvent),
    ExtendSeries(K8sEvent),
}

/// The write for `posting` at `now`, given the event its series key last produced (if any).
/// Pure, so the series rule is tested without an API server.
pub fn next_write(
    previous: Option<&K8sEvent>,
    posting: &Posting,
    reporter: &Reporter,
    now: Timestamp,
) -> Write {
    if let Some(prev) = previous.filter(|p| last_seen(p).is_some_and(|t| t + SERIES_WINDOW > now)) {
        let mut ev = prev.clone();
        ev.series = Some(EventSeries {
            count: prev.series.as_ref().map_or(2, |s| s.count + 1),
            last_observed_time: MicroTime(now),
        });
        return Write::ExtendSeries(ev);
    }
    let name = posting
        .regarding
        .name
        .as_deref()
        .unwrap_or(&reporter.controller);
    Write::Create(K8sEvent {
        action: Some(posting.action.clone()),
        reason: Some(posting.reason.clone()),
        note: Some(posting.note.clone()),
        type_: Some(posting.type_.to_owned()),
        event_time: Some(MicroTime(now)),
        regarding: Some(posting.regarding.clone()),
        related: posting.related.clone(),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        metadata: ObjectMeta {
            namespace: posting.regarding.namespace.clone(),
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            ..ObjectMeta::default()
        },
        ..K8sEvent::default()
    })
}

fn last_seen(ev: &K8sEvent) -> Option<Timestamp> {
    ev.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| ev.event_time.as_ref().map(|t| t.0))
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        EventRecorder {
            client,
            reporter,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the event, or extends the series of an identical one posted within the window.
    /// Cluster-scoped objects' events go to the `default` namespace, as kube-runtime does.
    pub async fn publish(&self, posting: &Posting) -> Result<(), ::kube::Error> {
        let now = Timestamp::now();
        let key = posting.key();
        let write = {
            let mut series = self.series.lock();
            series.retain(|_, ev| last_seen(ev).is_some_and(|t| t + SERIES_WINDOW > now));
            next_write(series.get(&key), posting, &self.reporter, now)
        };
        let ns = posting.regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), ns);
        let ev = match write {
            Write::Create(ev) => {
                api.create(&PostParams::default(), &ev).await?;
                ev
            }
            Write::ExtendSeries(ev) => {
                let name = ev.metadata.name.clone().unwrap_or_default();
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&ev))
                    .await?;
                ev
            }
        };
        self.series.lock().insert(key, ev);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter() -> Reporter {
        Reporter {
            controller: "rds.csi.mikrotik.com".into(),
            instance: "rds-csi-controller-0".into(),
        }
    }

    fn posting(note: &str, node: &str) -> Posting {
        Posting {
            type_: "Normal",
            reason: "VolumeAttached".into(),
            action: "ControllerPublish".into(),
            note: note.into(),
            regarding: ObjectReference {
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some("vms".into()),
                name: Some("vm-disk".into()),
                ..ObjectReference::default()
            },
            related: Some(ObjectReference {
                kind: Some("Node".into()),
                name: Some(node.into()),
                ..ObjectReference::default()
            }),
        }
    }

    fn created(w: Write) -> K8sEvent {
        match w {
            Write::Create(e) => e,
            other => panic!("expected a new event, got {other:?}"),
        }
    }

    #[test]
    fn identical_repeats_extend_the_series_within_the_window_only() {
        let (r, t0) = (reporter(), Timestamp::from_second(1_800_000_000).unwrap());
        let p = posting("node: node-a", "node-a");
        let first = created(next_write(None, &p, &r, t0));
        assert_eq!(first.note.as_deref(), Some("node: node-a"));
        assert_eq!(first.metadata.namespace.as_deref(), Some("vms"));
        assert!(first
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("vm-disk."));
        let Write::ExtendSeries(second) =
            next_write(Some(&first), &p, &r, t0 + SignedDuration::from_secs(10))
        else {
            panic!("an identical repeat extends the series")
        };
        assert_eq!(second.metadata.name, first.metadata.name);
        assert_eq!(second.series.as_ref().unwrap().count, 2);
        let Write::ExtendSeries(third) =
            next_write(Some(&second), &p, &r, t0 + SignedDuration::from_mins(5))
        else {
            panic!("still within 6 minutes of the last observation")
        };
        assert_eq!(third.series.as_ref().unwrap().count, 3);
        // Past the window after the last observation: a new event.
        created(next_write(
            Some(&third),
            &p,
            &r,
            t0 + SignedDuration::from_mins(12),
        ));
    }

    #[test]
    fn events_differing_only_in_their_note_are_different_series() {
        // kube-runtime's key would fold these two (same type, action, reason, objects).
        let (a, b) = (
            posting("source: node-a, target: node-b", "node-b"),
            posting("source: node-c, target: node-b", "node-b"),
        );
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key(), a.clone().key());
    }
}
