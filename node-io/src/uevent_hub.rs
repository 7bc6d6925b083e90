//! One uevent source shared by every wait, routing each event only to the waits it concerns.
//!
//! A node re-attaching a hundred volumes after a reboot has a hundred waits at once. With one
//! netlink socket per wait, every wait wakes on every NVMe event and re-reads sysfs: O(N²)
//! reads. Here one thread reads the events, looks at what each one names ([`NvmeObject`] from
//! its DEVPATH, or a block device's kernel name), re-reads that one object's `subsysnqn`, and
//! wakes only the subscriptions for that NQN or device. Wakes coalesce: a subscription holds
//! a flag and the objects named since its owner last looked, never a queue of events.
//!
//! The routing table (object → NQN) answers for objects that are gone (a `remove` event of a
//! controller whose directory no longer exists) and for events about an object's children (a
//! namespace or path node added under a known subsystem or controller): an object's NQN is
//! fixed for its life, and its life ends only with an event about the object itself (its
//! `remove` drops the entry, its `add` re-reads it) or with lost events (which clear the
//! table). Anything else is read fresh. A burst of a hundred attaches is then three hundred
//! table look-ups on this one thread, not three hundred sysfs reads.
//! An object it does not know wakes every NVMe subscription. Lost events (socket overflow)
//! and a failed source wake everyone with that news, so each wait re-reads in full or polls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::sysfs::index::NvmeObject;
use crate::uevent::{Action, Uevent};
use crate::uevent_socket::{UeventRecv, UeventSocket};

/// What a subscription wants to hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    /// NVMe subsystem `nqn`: its subsystem, controllers (connect, state change, delete) and
    /// namespace block devices (add, remove, resize).
    Subsystem { nqn: String },
    /// The block device with kernel name `name` (`loop3`): add, remove, change.
    BlockDevice { name: String },
}

/// What happened since the subscriber last looked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wakes {
    /// At least one event concerned the subscription.
    pub event: bool,
    /// The NVMe objects those events named, verified to serve the subscription's NQN (or of
    /// unknown owner).
    pub named: Vec<NvmeObject>,
    /// Events were lost: re-read everything.
    pub overflow: bool,
    /// The source stopped for good: poll from now on.
    pub failed: Option<String>,
}

impl Wakes {
    fn any(&self) -> bool {
        self.event || self.overflow || self.failed.is_some()
    }
}

struct Slot {
    wakes: Mutex<Wakes>,
    cv: Condvar,
}

struct Sub {
    id: u64,
    sys_root: PathBuf,
    interest: Interest,
    slot: Arc<Slot>,
}

#[derive(Default)]
struct State {
    /// Every subscription, by id (for broadcasts).
    subs: HashMap<u64, Arc<Sub>>,
    /// Subsystem subscriptions by sysfs root, then NQN: an event costs one lookup, not a
    /// pass over every waiting volume.
    by_nqn: HashMap<PathBuf, HashMap<String, Vec<Arc<Sub>>>>,
    /// Block device subscriptions by kernel name.
    by_block: HashMap<String, Vec<Arc<Sub>>>,
    /// Last NQN seen per (sysfs root, object): answers for objects already gone and for
    /// events about an object's children (see the module doc).
    owners: HashMap<(PathBuf, NvmeObject), String>,
    failed: Option<String>,
}

impl State {
    fn add(&mut self, sub: Arc<Sub>) {
        match &sub.interest {
            Interest::Subsystem { nqn } => self
                .by_nqn
                .entry(sub.sys_root.clone())
                .or_default()
                .entry(nqn.clone())
                .or_default()
                .push(sub.clone()),
            Interest::BlockDevice { name } => self
                .by_block
                .entry(name.clone())
                .or_default()
                .push(sub.clone()),
        }
        self.subs.insert(sub.id, sub);
    }

    fn remove(&mut self, id: u64) {
        let Some(sub) = self.subs.remove(&id) else {
            return;
        };
        match &sub.interest {
            Interest::Subsystem { nqn } => {
                if let Some(by_nqn) = self.by_nqn.get_mut(&sub.sys_root) {
                    if let Some(v) = by_nqn.get_mut(nqn) {
                        v.retain(|s| s.id != id);
                        if v.is_empty() {
                            by_nqn.remove(nqn);
                        }
                    }
                    if by_nqn.is_empty() {
                        self.by_nqn.remove(&sub.sys_root);
                    }
                }
            }
            Interest::BlockDevice { name } => {
                if let Some(v) = self.by_block.get_mut(name) {
                    v.retain(|s| s.id != id);
                    if v.is_empty() {
                        self.by_block.remove(name);
                    }
                }
            }
        }
    }
}

fn wake(sub: &Sub, named: Option<NvmeObject>) {
    let mut w = lock(&sub.slot.wakes);
    w.event = true;
    if let Some(o) = named {
        if !w.named.contains(&o) {
            w.named.push(o);
        }
    }
    sub.slot.cv.notify_all();
}

struct Shared {
    state: Mutex<State>,
    describe: String,
    next_id: AtomicU64,
}

/// A uevent source and its subscriptions. Cheap to clone (one shared thread).
#[derive(Clone)]
pub struct UeventHub {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UeventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UeventHub({})", self.shared.describe)
    }
}

static GLOBAL: OnceLock<Result<UeventHub, String>> = OnceLock::new();

impl UeventHub {
    /// The process-wide hub on the kernel's netlink uevents, started on first use, or why it
    /// cannot run here (netlink filtered by seccomp, no uevents in this network namespace).
    pub fn global() -> Result<UeventHub, String> {
        GLOBAL
            .get_or_init(|| {
                let sock = UeventSocket::open()
                    .map_err(|e| format!("netlink uevent socket unavailable: {e}"))?;
                Ok(Self::start("netlink uevents", Source::Netlink(sock)))
            })
            .clone()
    }

    /// A hub fed by uevents someone else reads (a shared listener, a test, a benchmark). When
    /// every sender is dropped the hub counts as failed and its waits poll.
    pub fn forwarded(rx: mpsc::Receiver<Uevent>) -> UeventHub {
        Self::start("forwarded uevents", Source::Channel(rx))
    }

    fn start(describe: &str, source: Source) -> UeventHub {
        let hub = UeventHub {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                describe: describe.to_string(),
                next_id: AtomicU64::new(1),
            }),
        };
        let weak = Arc::downgrade(&hub.shared);
        let spawned = std::thread::Builder::new()
            .name("node-io-uevents".into())
            .spawn(move || source.run(weak));
        if let Err(e) = spawned {
            hub.fail(format!("spawning the uevent thread: {e}"));
        }
        hub
    }

    pub fn describe(&self) -> &str {
        &self.shared.describe
    }

    /// How many waits are subscribed now (for diagnostics and benchmarks).
    pub fn subscribers(&self) -> usize {
        lock(&self.shared.state).subs.len()
    }

    /// Starts listening for `interest` (objects resolved under `sys_root`). Subscribe BEFORE
    /// reading the state you wait on, so no event between the read and the wait is missed.
    pub fn subscribe(&self, sys_root: &Path, interest: Interest) -> Subscription {
        let slot = Arc::new(Slot {
            wakes: Mutex::new(Wakes::default()),
            cv: Condvar::new(),
        });
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut st = lock(&self.shared.state);
        if let Some(reason) = &st.failed {
            lock(&slot.wakes).failed = Some(reason.clone());
        }
        st.add(Arc::new(Sub {
            id,
            sys_root: sys_root.to_path_buf(),
            interest,
            slot: slot.clone(),
        }));
        Subscription {
            hub: self.clone(),
            id,
            slot,
        }
    }

    /// Records that `object` (under `sys_root`) serves `nqn`, so its `remove` event, which
    /// arrives after its directory is gone, still reaches `nqn`'s subscriptions.
    pub fn note_owner(&self, sys_root: &Path, object: NvmeObject, nqn: &str) {
        lock(&self.shared.state)
            .owners
            .insert((sys_root.to_path_buf(), object), nqn.to_string());
    }

    /// Routes one event to the subscriptions it concerns.
    fn dispatch(&self, ev: &Uevent) {
        let block_name = (ev.subsystem.as_deref() == Some("block")).then(|| ev.kernel_name());
        let nvme = is_nvme_event(ev)
            .then(|| NvmeObject::from_devpath(&ev.devpath))
            .flatten();
        let (block_subs, roots) = {
            let st = lock(&self.shared.state);
            let block_subs = block_name
                .and_then(|n| st.by_block.get(n))
                .cloned()
                .unwrap_or_default();
            let roots: Vec<PathBuf> = match nvme {
                Some(_) => st.by_nqn.keys().cloned().collect(),
                None => Vec::new(),
            };
            (block_subs, roots)
        };
        for sub in &block_subs {
            wake(sub, None);
        }
        let Some(object) = nvme else { return };
        for root in roots {
            // Read outside the lock: the sysfs read is the slow part.
            let owner = self.owner(&root, object, ev);
            let subs: Vec<Arc<Sub>> = {
                let st = lock(&self.shared.state);
                let Some(by_nqn) = st.by_nqn.get(&root) else {
                    continue;
                };
                match &owner {
                    Some(nqn) => by_nqn.get(nqn).cloned().unwrap_or_default(),
                    // Unknown owner (gone before we ever saw it): every NVMe wait re-reads.
                    None => by_nqn.values().flatten().cloned().collect(),
                }
            };
            for sub in &subs {
                wake(sub, Some(object));
            }
        }
    }

    /// Who `object` (named by `ev`) serves: from the routing table when `ev` is about one of
    /// its children and the table knows it, else read fresh; the table again for an object
    /// already gone.
    fn owner(&self, sys_root: &Path, object: NvmeObject, ev: &Uevent) -> Option<String> {
        let key = (sys_root.to_path_buf(), object);
        let about_itself = ev
            .devpath
            .rsplit('/')
            .next()
            .and_then(NvmeObject::from_devpath)
            == Some(object);
        if !about_itself {
            if let Some(nqn) = lock(&self.shared.state).owners.get(&key) {
                return Some(nqn.clone());
            }
        }
        let action = &ev.action;
        match object.subsysnqn(sys_root) {
            Ok(Some(nqn)) => {
                lock(&self.shared.state).owners.insert(key, nqn.clone());
                Some(nqn)
            }
            _ => {
                let mut st = lock(&self.shared.state);
                if *action == Action::Remove {
                    st.owners.remove(&key)
                } else {
                    st.owners.get(&key).cloned()
                }
            }
        }
    }

    /// Wakes every subscription: events were lost. The routing table is cleared too: the
    /// lost events may have ended objects and reused their numbers.
    fn overflow(&self) {
        let subs: Vec<Arc<Sub>> = {
            let mut st = lock(&self.shared.state);
            st.owners.clear();
            st.subs.values().cloned().collect()
        };
        for sub in subs {
            lock(&sub.slot.wakes).overflow = true;
            sub.slot.cv.notify_all();
        }
    }

    /// The source stopped for good: every subscription, present and future, polls.
    fn fail(&self, reason: String) {
        let subs = {
            let mut st = lock(&self.shared.state);
            st.failed = Some(reason.clone());
            st.subs.values().cloned().collect::<Vec<_>>()
        };
        for sub in subs {
            lock(&sub.slot.wakes).failed = Some(reason.clone());
            sub.slot.cv.notify_all();
        }
    }
}

/// NVMe events worth routing: namespace block devices, controllers, subsystems.
fn is_nvme_event(ev: &Uevent) -> bool {
    ev.is_nvme_block_event()
        || ev.is_nvme_controller_event()
        || ev.subsystem.as_deref() == Some("nvme-subsystem")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these plain collections inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One wait's registration on a hub; unregisters on drop.
pub struct Subscription {
    hub: UeventHub,
    id: u64,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subscription({})", self.id)
    }
}

impl Subscription {
    /// Blocks until something concerns this subscription or `until` passes, and returns
    /// (and clears) what happened; an empty [`Wakes`] means the time ran out.
    pub fn wait(&self, until: Instant) -> Wakes {
        let mut w = lock(&self.slot.wakes);
        loop {
            if w.any() {
                let failed = w.failed.clone();
                let out = std::mem::take(&mut *w);
                // A failure is permanent: keep saying so.
                w.failed = failed;
                return out;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wakes::default();
            }
            w = self
                .slot
                .cv
                .wait_timeout(w, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The hub this subscription is on.
    pub fn hub(&self) -> &UeventHub {
        &self.hub
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.hub.shared.state).remove(self.id);
    }
}

enum Source {
    Netlink(UeventSocket),
    Channel(mpsc::Receiver<Uevent>),
}

/// How long the source thread blocks before checking that its hub still exists.
const SOURCE_TICK: Duration = Duration::from_secs(5);

impl Source {
    fn run(mut self, weak: std::sync::Weak<Shared>) {
        loop {
            let got = match &mut self {
                Source::Netlink(sock) => match sock.recv(SOURCE_TICK) {
                    Ok(UeventRecv::Event(ev)) => Got::Event(ev),
                    Ok(UeventRecv::Overflow) => Got::Overflow,
                    Ok(UeventRecv::Timeout) => Got::Nothing,
                    Err(e) => Got::Failed(format!("netlink uevent socket failed: {e}")),
                },
                Source::Channel(rx) => match rx.recv_timeout(SOURCE_TICK) {
                    Ok(ev) => Got::Event(ev),
                    Err(mpsc::RecvTimeoutError::Timeout) => Got::Nothing,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        Got::Failed("uevent forwarder stopped".to_string())
                    }
                },
            };
            // Every handle dropped: nobody can subscribe any more.
            let Some(shared) = weak.upgrade() else { return };
            let hub = UeventHub { shared };
            match got {
                Got::Event(ev) => hub.dispatch(&ev),
                Got::Overflow => hub.overflow(),
                Got::Nothing => {}
                Got::Failed(reason) => {
                    hub.fail(reason);
                    return;
                }
            }
        }
    }
}

enum Got {
    Event(Uevent),
    Overflow,
    Nothing,
    Failed(String),
}
