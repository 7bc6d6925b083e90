//! A fake Kubernetes API server for the kube-rs adapters' tests: plain HTTP on loopback
//! answering the few paths the adapters use with real-shaped JSON, from a handler per test.
//! It checks what goes over the wire (paths, bodies) and how answers (404, 403, lists) are
//! read. Where a test needs an API server's own behaviour, a model of it lives here and says
//! which upstream behaviour it models ([`EventsApi`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use ::kube::{Client, Config};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub(crate) const DRIVER: &str = "rds.csi.mikrotik.com";

/// One request the fake saw.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) body: Value,
}

pub(crate) enum Answer {
    Json(u16, Value),
    /// A watch that stays open and sends nothing.
    Hang,
}

type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

pub(crate) struct FakeApi {
    pub(crate) url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: CancellationToken,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeApi {
    /// An API server whose events.k8s.io requests `events` answers, and every other one
    /// `handler`.
    pub(crate) async fn with_events(
        events: &EventsApi,
        handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> FakeApi {
        let model = events.clone();
        FakeApi::start(move |s| model.answer(s).unwrap_or_else(|| handler(s))).await
    }

    pub(crate) async fn start(
        handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> FakeApi {
        let handler: Handler = Arc::new(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = CancellationToken::new();
        let (seen2, stop2) = (Arc::clone(&seen), stop.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop2.cancelled() => return,
                    a = listener.accept() => a.unwrap(),
                };
                let (handler, seen, stop) =
                    (Arc::clone(&handler), Arc::clone(&seen2), stop2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (handler, seen) = (Arc::clone(&handler), Arc::clone(&seen));
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_owned();
                            let query = req.uri().query().unwrap_or("").to_owned();
                            let raw = req.into_body().collect().await.unwrap().to_bytes();
                            let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                            let s = Seen {
                                method,
                                path,
                                query,
                                body,
                            };
                            seen.lock().push(s.clone());
                            let resp: Response<BoxBody<Bytes, Infallible>> = match handler(&s) {
                                Answer::Json(code, v) => Response::builder()
                                    .status(code)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(v.to_string())).boxed())
                                    .unwrap(),
                                Answer::Hang => Response::builder()
                                    .status(200)
                                    .header("content-type", "application/json")
                                    .body(BodyExt::boxed(StreamBody::new(tokio_stream::pending::<
                                        Result<Frame<Bytes>, Infallible>,
                                    >(
                                    ))))
                                    .unwrap(),
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        });
        FakeApi { url, seen, stop }
    }

    pub(crate) fn client(&self) -> Client {
        Client::try_from(Config::new(self.url.parse().unwrap())).unwrap()
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

pub(crate) fn not_found(kind: &str, name: &str) -> Answer {
    Answer::Json(
        404,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("{kind} \"{name}\" not found"), "reason": "NotFound",
               "details": {"name": name, "kind": kind}, "code": 404}),
    )
}

pub(crate) fn forbidden(what: &str) -> Answer {
    Answer::Json(
        403,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("{what} is forbidden: User \"system:serviceaccount:rds-csi:rds-csi-controller\" cannot do it"),
               "reason": "Forbidden", "code": 403}),
    )
}

pub(crate) fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "uid": "11111111-2222-3333-4444-555555555555", "resourceVersion": "77"},
           "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}})
}

pub(crate) fn va(name: &str, attacher: &str, node: &str, pv: &str, attached: bool) -> Value {
    json!({"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
           "metadata": {"name": name, "creationTimestamp": "2026-11-02T10:00:00Z", "resourceVersion": "5"},
           "spec": {"attacher": attacher, "nodeName": node, "source": {"persistentVolumeName": pv}},
           "status": {"attached": attached}})
}

pub(crate) fn pv(name: &str, handle: &str, modes: &[&str], volume_mode: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolume",
           "metadata": {"name": name, "uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "resourceVersion": "9"},
           "spec": {"accessModes": modes, "capacity": {"storage": "1Gi"}, "volumeMode": volume_mode,
                    "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "vms",
                                 "name": "vm-disk", "uid": "a1b2c3d4-0000-4000-8000-000000000001"},
                    "csi": {"driver": DRIVER, "volumeHandle": handle,
                            "volumeAttributes": {"migrationTimeoutSeconds": "120"}}}})
}

pub(crate) fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Answer {
    Answer::Json(
        200,
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "100"}, "items": items}),
    )
}

pub(crate) fn meta_list(names: &[&str]) -> Answer {
    Answer::Json(
        200,
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
               "metadata": {"resourceVersion": "100"},
               "items": names.iter().map(|n| json!({"apiVersion": "meta.k8s.io/v1",
                   "kind": "PartialObjectMetadata", "metadata": {"name": n, "resourceVersion": "90"}}))
                   .collect::<Vec<_>>()}),
    )
}

/// The events.k8s.io/v1 API as an API server serves it to an event recorder: POST creates
/// the event under its name in the namespace of the path (409 AlreadyExists for a name taken),
/// PATCH with `application/merge-patch+json` applies an RFC 7386 JSON merge patch to the stored
/// object (404 when absent). What `kubectl describe` shows is then [`EventsApi::described`].
#[derive(Clone, Default)]
pub(crate) struct EventsApi {
    /// (namespace, name) → the stored event.
    stored: Arc<Mutex<BTreeMap<(String, String), Value>>>,
}

impl EventsApi {
    /// Answers `s` if it is an events.k8s.io request.
    pub(crate) fn answer(&self, s: &Seen) -> Option<Answer> {
        let rest = s.path.strip_prefix("/apis/events.k8s.io/v1/namespaces/")?;
        let (ns, rest) = rest.split_once("/events")?;
        let name = rest.trim_start_matches('/');
        let mut stored = self.stored.lock();
        Some(match s.method.as_str() {
            "POST" => {
                let name = s.body["metadata"]["name"].as_str().unwrap_or("").to_owned();
                let key = (ns.to_owned(), name.clone());
                if stored.contains_key(&key) {
                    return Some(Answer::Json(
                        409,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "AlreadyExists", "code": 409,
                               "message": format!("events.events.k8s.io \"{name}\" already exists")}),
                    ));
                }
                stored.insert(key, s.body.clone());
                Answer::Json(201, s.body.clone())
            }
            "PATCH" => match stored.get_mut(&(ns.to_owned(), name.to_owned())) {
                Some(obj) => {
                    merge_patch(obj, &s.body);
                    Answer::Json(200, obj.clone())
                }
                None => not_found("events.events.k8s.io", name),
            },
            _ => not_found("events.events.k8s.io", name),
        })
    }

    /// The events regarding `kind`/`name`, oldest first, as (reason, note, count, related
    /// node): `kubectl describe` shows one line per stored event with its series count.
    pub(crate) fn described(&self, kind: &str, name: &str) -> Vec<(String, String, i64, String)> {
        let mut evs: Vec<Value> = self
            .stored
            .lock()
            .values()
            .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
            .cloned()
            .collect();
        evs.sort_by_key(|e| e["eventTime"].as_str().unwrap_or("").to_owned());
        evs.iter()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or("").to_owned(),
                    e["note"].as_str().unwrap_or("").to_owned(),
                    e["series"]["count"].as_i64().unwrap_or(1),
                    e["related"]["name"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}
