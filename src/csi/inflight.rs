//! Per-volume in-flight guard: one operation per volume id at a time.
//!
//! The CSI spec asks a plugin to answer ABORTED when an operation is already pending for a
//! volume, rather than queue it: the CO retries with backoff. The guard is released on drop,
//! so it is freed whatever the outcome — success, error, panic, or a cancelled RPC future.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Error;

/// The set of volume ids with an operation in progress. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct InFlight {
    busy: Arc<Mutex<HashSet<String>>>,
    on_reject: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f` each time an operation is refused (used to count rejections in a metric).
    pub fn with_reject_hook(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_reject = Some(Arc::new(f));
        self
    }

    /// Claims `volume_id`, or fails at once with [`Error::OperationPending`] (ABORTED).
    pub fn try_acquire(&self, volume_id: &str) -> Result<InFlightGuard, Error> {
        let mut busy = self.busy.lock();
        if !busy.insert(volume_id.to_owned()) {
            drop(busy);
            if let Some(f) = &self.on_reject {
                f();
            }
            return Err(Error::OperationPending {
                volume_id: volume_id.to_owned(),
            });
        }
        Ok(InFlightGuard {
            busy: Arc::clone(&self.busy),
            volume_id: volume_id.to_owned(),
        })
    }

    /// Number of operations in progress.
    pub fn len(&self) -> usize {
        self.busy.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Held for the duration of one volume operation.
#[must_use = "the volume is only guarded while the guard is held"]
pub struct InFlightGuard {
    busy: Arc<Mutex<HashSet<String>>>,
    volume_id: String,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.busy.lock().remove(&self.volume_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tonic::Code;

    #[test]
    fn second_operation_on_same_volume_is_aborted_and_others_proceed() {
        let f = InFlight::new();
        let g = f.try_acquire("pvc-a").unwrap();
        let err = f.try_acquire("pvc-a").err().unwrap();
        assert_eq!(tonic::Status::from(err).code(), Code::Aborted);
        let _other = f
            .try_acquire("pvc-b")
            .expect("another volume is independent");
        drop(g);
        let _again = f
            .try_acquire("pvc-a")
            .expect("released after the first finished");
    }

    #[test]
    fn guard_is_released_when_the_operation_panics() {
        let f = InFlight::new();
        let f2 = f.clone();
        let r = std::thread::spawn(move || {
            let _g = f2.try_acquire("pvc-a").unwrap();
            panic!("operation failed hard");
        })
        .join();
        assert!(r.is_err());
        assert!(f.is_empty());
        let _g = f.try_acquire("pvc-a").expect("free after the panic");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_real_concurrency_exactly_one_operation_wins() {
        let rejected = Arc::new(AtomicUsize::new(0));
        let r2 = Arc::clone(&rejected);
        let f = InFlight::new().with_reject_hook(move || {
            r2.fetch_add(1, Ordering::SeqCst);
        });
        let start = Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let f = f.clone();
            let start = Arc::clone(&start);
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                match f.try_acquire("pvc-race") {
                    Ok(_g) => {
                        // Hold the guard long enough that every other task tries meanwhile.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        true
                    }
                    Err(_) => false,
                }
            }));
        }
        let mut winners = 0;
        for t in tasks {
            if t.await.unwrap() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
        assert_eq!(rejected.load(Ordering::SeqCst), 15);
        assert!(f.is_empty(), "guard released after the winner finished");
    }

    #[tokio::test]
    async fn guard_is_released_when_the_rpc_future_is_cancelled() {
        let f = InFlight::new();
        let f2 = f.clone();
        let task = tokio::spawn(async move {
            let _g = f2.try_acquire("pvc-a").unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(f.len(), 1);
        task.abort();
        let _ = task.await;
        assert!(f.is_empty());
    }
}
