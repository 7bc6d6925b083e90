//! The watch-backed cache of the driver's VolumeAttachments and of the PersistentVolumes they
//! name: two kube-runtime reflectors, each fed only this driver's objects (attacher / CSI
//! driver equal to the driver name), so memory grows with this driver's volumes, not the
//! cluster's. The watcher resumes from the last resourceVersion, asks for bookmarks, and on
//! `410 Gone` relists (`Init` … `InitDone`), which the reflector's store applies atomically.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ::kube::api::Api;
use ::kube::runtime::reflector::{self, ObjectRef, Store};
use ::kube::runtime::{watcher, WatchStreamExt};
use ::kube::Client;
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::convert::{self, Clock};
use super::{AttachmentCache, AttachmentView, AttachmentWarning};

/// The stores, kept current by [`KubeAttachmentCache::start`]'s task.
pub struct KubeAttachmentCache {
    vas: Store<VolumeAttachment>,
    pvs: Store<PersistentVolume>,
    /// Whether each watch has completed a first list.
    ready: [AtomicBool; 2],
    driver: String,
    changes: tokio::sync::watch::Sender<u64>,
}

/// Keeps `Init`/`InitDone` and only the events of objects `ours` accepts.
fn only_ours<K>(ev: &watcher::Event<K>, ours: &impl Fn(&K) -> bool) -> bool {
    match ev {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
            ours(o)
        }
        watcher::Event::Init | watcher::Event::InitDone => true,
    }
}

impl KubeAttachmentCache {
    /// Starts both watches; the task ends when `stop` is cancelled.
    pub fn start(
        client: Client,
        driver: impl Into<String>,
        stop: CancellationToken,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let driver = driver.into();
        let (vas, va_writer) = reflector::store();
        let (pvs, pv_writer) = reflector::store();
        let (changes, _) = tokio::sync::watch::channel(0u64);
        let cache = Arc::new(KubeAttachmentCache {
            vas,
            pvs,
            ready: [AtomicBool::new(false), AtomicBool::new(false)],
            driver: driver.clone(),
            changes,
        });
        let cfg = watcher::Config::default();
        let d1 = driver.clone();
        let va_stream = reflector::reflector(
            va_writer,
            watcher(Api::<VolumeAttachment>::all(client.clone()), cfg.clone())
                .default_backoff()
                .filter(move |r| {
                    r.as_ref().map_or(true, |ev| {
                        only_ours(ev, &|va: &VolumeAttachment| va.spec.attacher == d1)
                    })
                }),
        );
        let d2 = driver;
        let pv_stream = reflector::reflector(
            pv_writer,
            watcher(Api::<PersistentVolume>::all(client), cfg)
                .default_backoff()
                .filter(move |r| {
                    r.as_ref().map_or(true, |ev| {
                        only_ours(ev, &|pv: &PersistentVolume| convert::pv_is_ours(pv, &d2))
                    })
                }),
        );
        let me = Arc::clone(&cache);
        let task = tokio::spawn(async move {
            let mut merged = std::pin::pin!(va_stream
                .map(|r| r
                    .map(|e| (0, is_init_done(&e)))
                    .map_err(|e| format!("VolumeAttachments: {e}")))
                .merge(pv_stream.map(|r| {
                    r.map(|e| (1, is_init_done(&e)))
                        .map_err(|e| format!("PersistentVolumes: {e}"))
                })));
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return,
                    n = merged.next() => n,
                };
                match next {
                    None => return,
                    Some(Ok((which, done))) => {
                        if done {
                            me.ready[which].store(true, Ordering::SeqCst);
                        }
                        me.changes.send_modify(|n| *n += 1);
                    }
                    Some(Err(e)) => tracing::warn!(
                        "watch of {e}; retrying with backoff (the cache keeps its last state); \
                         check the controller's RBAC (list, watch)"
                    ),
                }
            }
        });
        (cache, task)
    }
}

impl KubeAttachmentCache {
    /// The PersistentVolume of the driver whose volume handle is `volume`, from the PV watch's
    /// store (no API call): the PV named like the volume first (the external-provisioner names
    /// both after the claim), else any PV with that handle (a statically provisioned one).
    /// `None` when the store has none (its first list not done, or the watch lagging).
    pub fn persistent_volume(&self, volume: &str) -> Option<Arc<PersistentVolume>> {
        let ours = |pv: &PersistentVolume| convert::volume_id(pv, &self.driver) == Some(volume);
        self.pvs
            .get(&ObjectRef::new(volume))
            .filter(|pv| ours(pv))
            .or_else(|| self.pvs.find(|pv| ours(pv)))
    }
}

impl AttachmentCache for KubeAttachmentCache {
    fn view(&self) -> Option<AttachmentView> {
        if !self.ready.iter().all(|r| r.load(Ordering::SeqCst)) {
            return None;
        }
        let clock = Clock::now();
        let mut view = AttachmentView::default();
        for va in self.vas.state() {
            let pv = convert::pv_name(&va).and_then(|n| self.pvs.get(&ObjectRef::new(n)));
            let volume = pv
                .as_deref()
                .and_then(|pv| convert::volume_id(pv, &self.driver));
            if let Some(volume) = volume {
                view.present
                    .insert((volume.to_owned(), va.spec.node_name.clone()));
            }
            let warn = |message: String| AttachmentWarning {
                volume: volume.map(str::to_owned),
                message,
            };
            match convert::restore_record(&va, pv.as_deref(), &self.driver, &clock) {
                Ok(r) => {
                    view.warnings.extend(r.warning.map(warn));
                    view.attached.push(r.record);
                }
                Err(skip) if skip.is_warning() => view.warnings.push(warn(skip.to_string())),
                // Not attached (yet, or any more), or an inline volume: nothing to fence.
                Err(_) => {}
            }
        }
        Some(view)
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

fn is_init_done<K>(ev: &watcher::Event<K>) -> bool {
    matches!(ev, watcher::Event::InitDone)
}
