//! Waiting for the kernel: a namespace's block device to appear, an NQN's controllers to go,
//! a device to reach a size, a loop device to detach.
//!
//! sysfs is the truth and is re-read (never cached across calls) at the start, whenever the
//! [`Waker`] reports an event that concerns the wait, on lost events, and on a slow safety
//! poll in case an event was missed. Without uevents the wait polls at a faster pace.
//! Events are routed by [`UeventHub`]: a wait wakes only for the objects it waits on, and
//! then re-reads only those ([`crate::sysfs::index`]), so a hundred waits at once cost each
//! other nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::sysfs::index::NvmeObject;
use crate::sysfs::SysfsError;
use crate::uevent_hub::{Interest, Subscription, UeventHub};

mod loop_device;
mod nvme;

pub use loop_device::wait_for_loop_detached;
pub use nvme::{wait_for_block_device, wait_for_controllers_gone, wait_for_size, Found};

/// Safety-net re-check while uevents wake us: of the objects the wait already knows, and of
/// the whole tree every [`FULL_SCAN_EVERY`]th time (a hundred waits re-reading a big tree
/// every second would cost a core on their own).
pub const EVENT_SAFETY_POLL: Duration = Duration::from_secs(1);
/// Every this many safety polls, a full re-read (catches an object no event named).
pub const FULL_SCAN_EVERY: u32 = 5;
/// Re-check pace without uevents.
pub const FALLBACK_POLL: Duration = Duration::from_millis(250);

/// What wakes a wait between sysfs checks.
#[derive(Debug, Clone)]
pub struct Waker {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Hub(UeventHub),
    Poll { reason: String },
}

impl Waker {
    /// The process-wide hub on the kernel's netlink uevents ([`UeventHub::global`]), or
    /// polling when netlink cannot be used here (the reason is kept for messages).
    pub fn open() -> Self {
        match UeventHub::global() {
            Ok(hub) => Self::hub(hub),
            Err(reason) => Self::polling(reason),
        }
    }

    /// Woken by `hub` (shared by every wait on it).
    pub fn hub(hub: UeventHub) -> Self {
        Self {
            kind: Kind::Hub(hub),
        }
    }

    /// Woken by uevents forwarded on `rx` (a shared listener, a test, a benchmark), through a
    /// hub of its own. When the sender is dropped the waits poll.
    pub fn forwarded(rx: std::sync::mpsc::Receiver<crate::uevent::Uevent>) -> Self {
        Self::hub(UeventHub::forwarded(rx))
    }

    /// No event source: poll every [`FALLBACK_POLL`]; `reason` says why.
    pub fn polling(reason: impl Into<String>) -> Self {
        Self {
            kind: Kind::Poll {
                reason: reason.into(),
            },
        }
    }

    /// True when this waker only polls.
    pub fn is_polling(&self) -> bool {
        matches!(self.kind, Kind::Poll { .. })
    }

    /// How this waker works, for logs and error messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Hub(hub) => hub.describe().to_string(),
            Kind::Poll { reason } => format!("polling every {FALLBACK_POLL:?} ({reason})"),
        }
    }

    fn subscribe(&self, sys_root: &Path, interest: Interest) -> Option<Subscription> {
        match &self.kind {
            Kind::Hub(hub) => Some(hub.subscribe(sys_root, interest)),
            Kind::Poll { .. } => None,
        }
    }
}

/// Why a check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Start, lost events, every [`FULL_SCAN_EVERY`]th safety poll, polling without
    /// events: re-read everything the wait depends on.
    Full,
    /// Events named these objects (already checked to concern the wait), or the safety
    /// poll (none named): re-read the objects the wait knows, plus these.
    Named(Vec<NvmeObject>),
}

/// How long a finished wait took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    pub waited: Duration,
    /// sysfs checks made, including the first.
    pub checks: u32,
    /// How the wait was woken (see [`Waker::describe`]); says so when it fell back to polling.
    pub wake: String,
}

impl std::fmt::Display for Waited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "after {:?} ({} checks, woken by {})",
            self.waited, self.checks, self.wake
        )
    }
}

/// Why a block device did not appear ([`wait_for_block_device`]).
#[derive(Debug, Error)]
pub enum WaitError {
    #[error("no block device for NVMe subsystem {nqn} {waited}; last seen: {seen}")]
    Timeout {
        nqn: String,
        waited: Waited,
        seen: String,
    },
    /// A state that waiting cannot fix (several namespaces and none chosen).
    #[error("waiting for {target}: {source}")]
    Sysfs {
        /// `NVMe subsystem <nqn>`.
        target: String,
        #[source]
        source: SysfsError,
    },
}

/// Why a device did not reach a size ([`wait_for_size`]).
#[derive(Debug, Error)]
pub enum SizeError {
    /// The device the wait depends on is not there (a resize of a disconnected volume).
    #[error("NVMe subsystem {nqn} has no block device")]
    NoDevice { nqn: String },
    #[error("NVMe subsystem {nqn}: {seen}, {want_bytes} bytes wanted, {waited}")]
    TooSmall {
        nqn: String,
        waited: Waited,
        want_bytes: u64,
        /// `nvme0n1 is 1073741824 bytes`.
        seen: String,
    },
    #[error("waiting for {target}: {source}")]
    Sysfs {
        target: String,
        #[source]
        source: SysfsError,
    },
}

/// Why something asked to go away is still there ([`wait_for_controllers_gone`],
/// [`wait_for_loop_detached`]).
#[derive(Debug, Error)]
pub enum DetachError {
    #[error(
        "controllers of NVMe subsystem {nqn} still present {waited}: {remaining}; \
         they were asked to disconnect"
    )]
    StillConnected {
        nqn: String,
        waited: Waited,
        /// `nvme0 (deleting), nvme3 (live)`.
        remaining: String,
    },
    #[error("loop device {name} still backs {file} {waited}")]
    LoopStillAttached {
        name: String,
        file: String,
        waited: Waited,
    },
    #[error("waiting for {target}: {source}")]
    Sysfs {
        /// `NVMe subsystem <nqn>` or `loop device loop3`.
        target: String,
        #[source]
        source: SysfsError,
    },
}

/// The wake-up side of one wait: its subscription (if any), its clock and its counters.
pub(crate) struct Watch<'a> {
    waker: &'a mut Waker,
    sub: Option<Subscription>,
    start: Instant,
    checks: u32,
    polls: u32,
}

impl<'a> Watch<'a> {
    /// Subscribes before the first check, so nothing between the check and the wait is lost.
    pub(crate) fn new(waker: &'a mut Waker, sys_root: &Path, interest: Interest) -> Self {
        let sub = waker.subscribe(sys_root, interest);
        Self {
            waker,
            sub,
            start: Instant::now(),
            checks: 0,
            polls: 0,
        }
    }

    pub(crate) fn hub(&self) -> Option<&UeventHub> {
        self.sub.as_ref().map(Subscription::hub)
    }

    /// Counts a check about to run.
    pub(crate) fn check(&mut self) {
        self.checks += 1;
    }

    pub(crate) fn waited(&self) -> Waited {
        Waited {
            waited: self.start.elapsed(),
            checks: self.checks,
            wake: self.waker.describe(),
        }
    }

    /// Blocks until the next reason to check, or `None` once `deadline` has passed. Returns
    /// within milliseconds after the deadline at the latest.
    pub(crate) fn next(&mut self, deadline: Instant) -> Option<Trigger> {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let Some(sub) = &self.sub else {
            std::thread::sleep((deadline - now).min(FALLBACK_POLL));
            return Some(Trigger::Full);
        };
        let w = sub.wait((now + EVENT_SAFETY_POLL).min(deadline));
        if let Some(reason) = w.failed {
            // The source is gone for good: poll from now on, and say so in messages.
            *self.waker = Waker::polling(reason);
            self.sub = None;
            return Some(Trigger::Full);
        }
        if w.overflow {
            return Some(Trigger::Full);
        }
        if !w.event {
            self.polls += 1;
            if self.polls.is_multiple_of(FULL_SCAN_EVERY) {
                return Some(Trigger::Full);
            }
        }
        Some(Trigger::Named(w.named))
    }
}

/// Re-runs `check` at the start, whenever `waker` reports an event for `interest`, on lost
/// events and on the safety poll, until it answers `Some` or `deadline` passes (`Ok(None)`
/// then, with the last check made at or just after the deadline). For waits node-io has no
/// dedicated function for (e.g. a loop device's new size after `losetup -c`).
pub fn wait_until<T, E>(
    sys_root: &Path,
    interest: Interest,
    deadline: Instant,
    waker: &mut Waker,
    mut check: impl FnMut() -> Result<Option<T>, E>,
) -> Result<(Option<T>, Waited), E> {
    let mut w = Watch::new(waker, sys_root, interest);
    loop {
        w.check();
        if let Some(t) = check()? {
            return Ok((Some(t), w.waited()));
        }
        if w.next(deadline).is_none() {
            return Ok((None, w.waited()));
        }
    }
}
