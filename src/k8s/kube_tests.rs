//! The kube-rs adapters against a fake API server (`super::fake_api`): what goes over the
//! wire and how answers are read.

use std::sync::Arc;
use std::time::Duration;

use ::kube::{Client, Config};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::attachment::{event_for, AccessMode, Effect};
use crate::k8s::cache::KubeAttachmentCache;
use crate::k8s::fake_api::*;
use crate::k8s::{AttachmentCache, AttachmentSource, CachedAttachments};

#[tokio::test]
async fn node_lookup_is_true_for_a_node_false_on_404_and_an_error_naming_the_node_otherwise() {
    let api = FakeApi::start(|s| match s.path.as_str() {
        "/api/v1/nodes/node-a" => Answer::Json(200, node("node-a")),
        "/api/v1/nodes/node-x" => forbidden("nodes \"node-x\""),
        p => not_found("nodes", p.rsplit('/').next().unwrap()),
    })
    .await;
    let nodes = KubeNodes::new(api.client());
    assert!(
        nodes.node_exists("node-a").await.unwrap(),
        "a NotReady node exists"
    );
    assert!(!nodes.node_exists("node-gone").await.unwrap());
    let e = nodes.node_exists("node-x").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let m = e.to_string();
    assert!(
        m.contains("node-x") && m.contains("ClusterRole") && m.contains("get on nodes"),
        "{m}"
    );
}

/// Starts the cache against `api` and waits (10 s at most) for its first complete view.
async fn synced_cache(api: &FakeApi) -> (Arc<KubeAttachmentCache>, CancellationToken) {
    let stop = CancellationToken::new();
    let (cache, _task) = KubeAttachmentCache::start(api.client(), DRIVER, stop.clone());
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while cache.view().is_none() {
        assert!(
            std::time::Instant::now() < until,
            "no first list within 10s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (cache, stop)
}

/// The cluster of the conversion tests: attachments of this driver and another, a statically
/// provisioned PV (not named after its volume id), and one attachment whose PV is gone.
fn cluster_with_attachments(s: &Seen) -> Answer {
    let watch = s.query.contains("watch=true");
    match s.path.as_str() {
        "/apis/storage.k8s.io/v1/volumeattachments" | "/api/v1/persistentvolumes" if watch => {
            Answer::Hang
        }
        "/apis/storage.k8s.io/v1/volumeattachments" => list(
            "VolumeAttachmentList",
            "storage.k8s.io/v1",
            vec![
                va("csi-1", DRIVER, "node-a", "pvc-1", true),
                va("csi-2", DRIVER, "node-b", "pvc-1", true),
                va("csi-3", "ebs.csi.aws.com", "node-a", "pvc-9", true),
                va("csi-4", DRIVER, "node-c", "pvc-2", false),
                va("csi-5", DRIVER, "node-c", "pvc-gone", true),
                va("csi-7", DRIVER, "node-b", "pv-static", true),
            ],
        ),
        "/api/v1/persistentvolumes" => list(
            "PersistentVolumeList",
            "v1",
            vec![
                pv("pvc-1", "pvc-1", &["ReadWriteMany"], "Block"),
                pv("pvc-2", "pvc-2", &["ReadWriteOnce"], "Filesystem"),
                pv("pv-static", "vol-7", &["ReadWriteOnce"], "Filesystem"),
            ],
        ),
        p => not_found("x", p),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_converts_this_drivers_attachments_and_names_the_unfenced_ones() {
    let api = FakeApi::start(cluster_with_attachments).await;
    let (cache, stop) = synced_cache(&api).await;
    let view = cache.view().unwrap();
    let mut recs: Vec<_> = view
        .attached
        .iter()
        .map(|r| (r.volume.as_str(), r.node.as_str(), r.mode))
        .collect();
    recs.sort_by_key(|r| (r.0, r.1));
    assert_eq!(
        recs,
        [
            ("pvc-1", "node-a", AccessMode::RwxBlock),
            ("pvc-1", "node-b", AccessMode::RwxBlock),
            // Statically provisioned: found through the attachment's PV, by its handle.
            ("vol-7", "node-b", AccessMode::Rwo),
        ]
    );
    assert!(view
        .attached
        .iter()
        .all(|r| r.migration_timeout.as_secs() == 120));
    // Not attached yet, but present: DeleteVolume and the reconciler see it.
    assert!(view.present.contains(&("pvc-2".into(), "node-c".into())));
    // The attachment whose PV is gone cannot be fenced: the operator is told what to do.
    assert_eq!(view.warnings.len(), 1, "{:?}", view.warnings);
    let w = &view.warnings[0];
    assert_eq!(w.volume, None);
    assert!(
        w.message.contains("csi-5")
            && w.message.contains("pvc-gone")
            && w.message.contains("delete VolumeAttachment csi-5"),
        "{}",
        w.message
    );
    // The per-volume lookup of a publish comes from memory: no request after the watches.
    let before = api.seen().len();
    let src = CachedAttachments(cache.clone());
    let one = src.attachments_for_volume("vol-7").await.unwrap().unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(api.seen().len(), before);
    stop.cancel();
}

#[tokio::test]
async fn before_its_first_list_the_cache_answers_unavailable_naming_the_rbac_rule() {
    let api = FakeApi::start(|_| forbidden("volumeattachments.storage.k8s.io")).await;
    let stop = CancellationToken::new();
    let (cache, _task) = KubeAttachmentCache::start(api.client(), DRIVER, stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = CachedAttachments(cache).attachments().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let m = e.to_string();
    assert!(
        m.contains("first list") && m.contains("volumeattachments") && m.contains("watch"),
        "{m}"
    );
    stop.cancel();
}

/// Events find the claim in the cache's PV store; the API server is asked only for a PV the
/// store lacks (once: the answer is remembered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_claims_come_from_the_pv_store_and_the_api_only_for_a_pv_it_lacks() {
    let events_api = EventsApi::default();
    let api = FakeApi::with_events(&events_api, |s| match s.path.as_str() {
        "/api/v1/persistentvolumes/pvc-late" => Answer::Json(
            200,
            pv("pvc-late", "pvc-late", &["ReadWriteOnce"], "Filesystem"),
        ),
        _ => cluster_with_attachments(s),
    })
    .await;
    let (cache, stop) = synced_cache(&api).await;
    let (_metrics, sink) = event_sink(&api, Some(cache));
    let attached = |volume: &str| {
        event_for(&Effect::Attached {
            volume: volume.into(),
            node: "node-a".into(),
        })
        .unwrap()
    };
    for volume in ["pvc-1", "vol-7", "pvc-1", "pvc-late", "pvc-late"] {
        assert!(sink.post(volume, &attached(volume)).await, "{volume}");
    }
    assert_eq!(sink.failures(), 0);
    let seen = api.seen();
    let gets = |path: &str| {
        seen.iter()
            .filter(|s| s.method == "GET" && s.path == path)
            .count()
    };
    // Lists and watches only: no GET per event for PVs the store holds.
    assert_eq!(gets("/api/v1/persistentvolumes/pvc-1"), 0);
    assert_eq!(gets("/api/v1/persistentvolumes/vol-7"), 0);
    assert_eq!(gets("/api/v1/persistentvolumes/pvc-late"), 1);
    // All five on the claim the PVs name (identical repeats joined into a series).
    let described = events_api.described("PersistentVolumeClaim", "vm-disk");
    assert_eq!(
        described.iter().map(|d| d.2).sum::<i64>(),
        5,
        "{described:#?}"
    );
    stop.cancel();
}

/// An event sink posting through `api` (finding claims through `cache`, if any), and the
/// metrics it counts its failures in.
fn event_sink(api: &FakeApi, cache: Option<Arc<KubeAttachmentCache>>) -> (Metrics, KubeEvents) {
    let metrics = Metrics::new("controller");
    let sink = KubeEvents::new(api.client(), DRIVER, &metrics, cache);
    (metrics, sink)
}

/// A fake API server answering with `handler`, and [`event_sink`] through it (no cache).
async fn events_through(
    handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
) -> (FakeApi, Metrics, KubeEvents) {
    let api = FakeApi::start(handler).await;
    let (metrics, sink) = event_sink(&api, None);
    (api, metrics, sink)
}

#[tokio::test]
async fn events_go_on_the_claim_with_the_driver_as_reporting_controller() {
    let (api, _metrics, sink) = events_through(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/api/v1/persistentvolumes/pvc-1") => {
            Answer::Json(200, pv("pvc-1", "pvc-1", &["ReadWriteMany"], "Block"))
        }
        ("POST", "/apis/events.k8s.io/v1/namespaces/vms/events") => {
            Answer::Json(201, s.body.clone())
        }
        (_, p) => not_found("x", p),
    })
    .await;
    let conflict = event_for(&Effect::Conflict {
        volume: "pvc-1".into(),
        requested_node: "node-b".into(),
        holders: vec!["node-a".into()],
    })
    .unwrap();
    assert!(sink.post("pvc-1", &conflict).await);
    let cleared = event_for(&Effect::StaleCleared {
        volume: "pvc-1".into(),
        node: "node-a".into(),
    })
    .unwrap();
    assert!(sink.post("pvc-1", &cleared).await);
    assert_eq!(sink.failures(), 0);
    let posts: Vec<Seen> = api
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2);
    let b = &posts[0].body;
    assert_eq!(b["regarding"]["kind"], "PersistentVolumeClaim");
    assert_eq!(b["regarding"]["namespace"], "vms");
    assert_eq!(b["regarding"]["name"], "vm-disk");
    assert_eq!(
        b["regarding"]["uid"],
        "a1b2c3d4-0000-4000-8000-000000000001"
    );
    assert_eq!(b["reportingController"], DRIVER);
    assert_eq!(b["reason"], "AttachmentConflict");
    assert_eq!(b["type"], "Warning");
    assert_eq!(b["action"], "ControllerPublish");
    assert_eq!(b["note"], "node node-b refused: attached to node-a");
    assert_eq!(b["related"]["kind"], "Node");
    assert_eq!(b["related"]["name"], "node-b", "the refused node");
    assert_eq!(posts[1].body["reason"], "StaleAttachmentCleared");
    assert_eq!(posts[1].body["type"], "Normal");
    // The PV was looked up once; the claim is cached.
    let pv_gets = api
        .seen()
        .iter()
        .filter(|s| s.path == "/api/v1/persistentvolumes/pvc-1")
        .count();
    assert_eq!(pv_gets, 1);
}

#[tokio::test]
async fn event_failures_are_counted_and_logged_never_returned() {
    let (_api, metrics, sink) = events_through(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/api/v1/persistentvolumes/pvc-1") => {
            Answer::Json(200, pv("pvc-1", "pvc-1", &["ReadWriteOnce"], "Filesystem"))
        }
        ("POST", _) => forbidden("events.events.k8s.io"),
        ("GET", "/api/v1/persistentvolumes") => list("PersistentVolumeList", "v1", vec![]),
        (_, p) => not_found("x", p),
    })
    .await;
    let ev = event_for(&Effect::Attached {
        volume: "pvc-1".into(),
        node: "node-a".into(),
    })
    .unwrap();
    assert!(!sink.post("pvc-1", &ev).await); // RBAC refuses the event
    assert!(!sink.post("pvc-unknown", &ev).await); // no PV has this volume handle
    assert_eq!(sink.failures(), 2);
    assert!(
        metrics
            .render()
            .lines()
            .any(|l| l == format!("{EVENT_FAILURES_TOTAL} 2")),
        "{}",
        metrics.render()
    );
}

#[tokio::test]
async fn start_check_names_the_api_server_and_the_next_step() {
    let api = FakeApi::start(|s| match s.path.as_str() {
        "/version" => Answer::Json(
            200,
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.2",
            "gitCommit": "x", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
        ),
        p => not_found("x", p),
    })
    .await;
    // A kubeconfig file pointing at the fake.
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\n\
             current-context: c\n",
            api.url
        ),
    )
    .unwrap();
    let (kc_client, url) = client(Some(&kc)).await.unwrap();
    assert!(url.starts_with(&api.url), "{url}");
    check_reachable(&kc_client, &url).await.unwrap();

    // Nothing listens on this port any more.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let c = Client::try_from(Config::new(closed.parse().unwrap())).unwrap();
    let e = check_reachable(&c, &closed).await.unwrap_err();
    assert!(e.contains(&closed) && e.contains("--no-kubernetes"), "{e}");

    let missing = dir.path().join("nope");
    let e = match client(Some(&missing)).await {
        Err(e) => e,
        Ok(_) => panic!("a missing kubeconfig was accepted"),
    };
    assert!(
        e.contains(&missing.display().to_string()) && e.contains("--kubeconfig"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_events_over_http_are_the_metadata_list_then_the_watch() {
    let api = FakeApi::start(|s| match s.path.as_str() {
        "/api/v1/nodes" if s.query.contains("watch=true") => Answer::Hang,
        "/api/v1/nodes" => meta_list(&["node-a", "node-b"]),
        p => not_found("nodes", p.rsplit('/').next().unwrap()),
    })
    .await;
    let mut events = node_events(api.client());
    let mut seen = Vec::new();
    while seen.last() != Some(&NodeEvent::ListDone) {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("node events within 10s")
            .expect("the stream goes on")
            .unwrap();
        seen.push(ev);
    }
    assert_eq!(
        seen,
        [
            NodeEvent::ListStart,
            NodeEvent::Listed("node-a".into()),
            NodeEvent::Listed("node-b".into()),
            NodeEvent::ListDone
        ]
    );
    // Then a watch from the list's resourceVersion, which stays open with nothing to say.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), events.next())
            .await
            .is_err()
    );
    assert!(api
        .seen()
        .iter()
        .any(|s| s.query.contains("watch=true") && s.query.contains("resourceVersion=100")));
}

/// The VolumeAttachment cache over HTTP: the first list fills it (only this driver's objects),
/// and when the API server answers the watch with `410 Gone` (the resourceVersion was
/// compacted away; Kubernetes docs, "API concepts: efficient detection of changes") the
/// watcher relists and the cache is replaced by the relist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_cache_lists_then_relists_after_410_gone() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let va_lists = Arc::new(AtomicUsize::new(0));
    let lists = Arc::clone(&va_lists);
    let api = FakeApi::start(move |s| {
        let watch = s.query.contains("watch=true");
        match s.path.as_str() {
            "/apis/storage.k8s.io/v1/volumeattachments" if watch => {
                if lists.load(Ordering::SeqCst) == 1 {
                    Answer::Json(
                        200,
                        json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                            "status": "Failure", "reason": "Expired", "code": 410,
                            "message": "too old resource version: 100 (200)"}}),
                    )
                } else {
                    Answer::Hang
                }
            }
            "/apis/storage.k8s.io/v1/volumeattachments" => {
                let n = lists.fetch_add(1, Ordering::SeqCst);
                let items = if n == 0 {
                    vec![
                        va("csi-1", DRIVER, "node-a", "pvc-1", true),
                        va("csi-9", "ebs.csi.aws.com", "node-a", "pvc-9", true),
                    ]
                } else {
                    vec![
                        va("csi-2", DRIVER, "node-b", "pvc-1", true),
                        va("csi-3", DRIVER, "node-c", "pvc-1", false),
                    ]
                };
                list("VolumeAttachmentList", "storage.k8s.io/v1", items)
            }
            "/api/v1/persistentvolumes" if watch => Answer::Hang,
            "/api/v1/persistentvolumes" => list(
                "PersistentVolumeList",
                "v1",
                vec![pv("pvc-1", "vol-1", &["ReadWriteMany"], "Block")],
            ),
            p => not_found("x", p),
        }
    })
    .await;
    let stop = CancellationToken::new();
    let (cache, task) = KubeAttachmentCache::start(api.client(), DRIVER, stop.clone());
    let view_after = |lists: usize| {
        let cache = Arc::clone(&cache);
        let va_lists = Arc::clone(&va_lists);
        async move {
            let until = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                if va_lists.load(Ordering::SeqCst) >= lists {
                    if let Some(v) = cache.view() {
                        if !v.attached.is_empty() && (lists == 1 || v.attached[0].node == "node-b")
                        {
                            return v;
                        }
                    }
                }
                assert!(
                    std::time::Instant::now() < until,
                    "no view after {lists} lists"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let first = view_after(1).await;
    assert_eq!(first.attached.len(), 1, "{first:?}");
    assert_eq!(
        (
            first.attached[0].volume.as_str(),
            first.attached[0].node.as_str()
        ),
        ("vol-1", "node-a")
    );
    let relisted = view_after(2).await;
    let nodes: Vec<&str> = relisted.attached.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(
        nodes,
        ["node-b"],
        "the relist replaced the store: {relisted:?}"
    );
    assert!(relisted
        .present
        .contains(&("vol-1".to_string(), "node-c".to_string())));
    assert!(!relisted
        .present
        .contains(&("vol-1".to_string(), "node-a".to_string())));
    stop.cancel();
    task.await.unwrap();
}
