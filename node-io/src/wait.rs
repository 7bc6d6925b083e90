//! Waiting for the block device of an NVMe subsystem to appear.
//!
//! The sysfs state is the truth and is re-read (never cached) at the start, on every
//! NVMe block uevent, on a lost-events overflow, and on a slow safety poll in case an
//! event was missed. Without a netlink socket the wait polls at a faster pace.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::sysfs::{controllers_for_nqn, resolve_block_device, BlockDevice, SysfsError};
use crate::uevent::Uevent;
use crate::uevent_socket::{UeventRecv, UeventSocket};

/// Safety-net re-check while uevents wake us.
pub const EVENT_SAFETY_POLL: Duration = Duration::from_secs(1);
/// Re-check pace without uevents.
pub const FALLBACK_POLL: Duration = Duration::from_millis(250);

/// What wakes the wait between sysfs checks.
#[derive(Debug)]
pub enum Waker {
    /// Kernel uevents from a netlink socket.
    Uevents(UeventSocket),
    /// Uevents forwarded by someone else (a shared listener, or a test).
    Channel(mpsc::Receiver<Uevent>),
    /// No event source: poll every [`FALLBACK_POLL`]. `reason` says why.
    Poll { reason: String },
}

impl Waker {
    /// A netlink uevent socket, or polling when it cannot be opened.
    pub fn open() -> Self {
        match UeventSocket::open() {
            Ok(s) => Self::Uevents(s),
            Err(e) => Self::Poll {
                reason: format!("netlink uevent socket unavailable: {e}"),
            },
        }
    }

    /// How this waker works, for logs and error messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Uevents(_) => "netlink uevents".to_string(),
            Self::Channel(_) => "forwarded uevents".to_string(),
            Self::Poll { reason } => format!("polling every {FALLBACK_POLL:?} ({reason})"),
        }
    }

    fn poll_interval(&self) -> Duration {
        match self {
            Self::Poll { .. } => FALLBACK_POLL,
            _ => EVENT_SAFETY_POLL,
        }
    }

    /// Block until something worth a re-check happens or `until` passes.
    fn wait(&mut self, until: Instant) -> Wake {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wake::Timer;
            }
            let ev = match self {
                Self::Poll { .. } => {
                    std::thread::sleep(left);
                    return Wake::Timer;
                }
                Self::Uevents(sock) => match sock.recv(left) {
                    Ok(UeventRecv::Event(ev)) => ev,
                    Ok(UeventRecv::Overflow) => return Wake::Event,
                    Ok(UeventRecv::Timeout) => return Wake::Timer,
                    Err(e) => {
                        *self = Self::Poll {
                            reason: format!("netlink uevent socket failed: {e}"),
                        };
                        return Wake::Event;
                    }
                },
                Self::Channel(rx) => match rx.recv_timeout(left) {
                    Ok(ev) => ev,
                    Err(mpsc::RecvTimeoutError::Timeout) => return Wake::Timer,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        *self = Self::Poll {
                            reason: "uevent forwarder stopped".to_string(),
                        };
                        return Wake::Event;
                    }
                },
            };
            if ev.is_nvme_block_event() {
                return Wake::Event;
            }
        }
    }
}

enum Wake {
    Event,
    Timer,
}

/// The device was found.
#[derive(Debug, Clone)]
pub struct Found {
    pub device: BlockDevice,
    pub waited: Duration,
    /// sysfs checks made, including the first.
    pub checks: u32,
    /// How the wait was woken (see [`Waker::describe`]); says so when it fell back to polling.
    pub wake: String,
}

#[derive(Debug, Error)]
pub enum WaitError {
    #[error(
        "no block device for NVMe subsystem {nqn} after {waited:?} ({checks} checks, \
         woken by {wake}); last seen: {seen}"
    )]
    Timeout {
        nqn: String,
        waited: Duration,
        checks: u32,
        wake: String,
        seen: String,
    },
    /// A state that waiting cannot fix (several namespaces and none chosen).
    #[error("waiting for NVMe subsystem {nqn}: {source}")]
    Sysfs {
        nqn: String,
        #[source]
        source: SysfsError,
    },
}

/// Wait until [`resolve_block_device`] finds the device of `nqn`, or `deadline`.
/// Blocking (call it from a blocking thread); returns at most about one poll interval
/// after the deadline, in practice within milliseconds of it.
pub fn wait_for_block_device(
    sys_root: &std::path::Path,
    nqn: &str,
    deadline: Instant,
    wake: &mut Waker,
) -> Result<Found, WaitError> {
    let start = Instant::now();
    let mut checks = 0u32;
    let mut last_error: Option<String>;
    loop {
        checks += 1;
        match resolve_block_device(sys_root, nqn) {
            Ok(Some(device)) => {
                return Ok(Found {
                    device,
                    waited: start.elapsed(),
                    checks,
                    wake: wake.describe(),
                })
            }
            Ok(None) => last_error = None,
            Err(source @ SysfsError::AmbiguousNamespaces { .. }) => {
                return Err(WaitError::Sysfs {
                    nqn: nqn.to_string(),
                    source,
                })
            }
            // Attributes vanish or are half-written while controllers come and go.
            Err(e) => last_error = Some(e.to_string()),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::Timeout {
                nqn: nqn.to_string(),
                waited: start.elapsed(),
                checks,
                wake: wake.describe(),
                seen: describe_state(sys_root, nqn, last_error),
            });
        }
        let next = (now + wake.poll_interval()).min(deadline);
        let _ = wake.wait(next);
    }
}

/// What sysfs shows for `nqn`, for the timeout message.
fn describe_state(sys_root: &std::path::Path, nqn: &str, last_error: Option<String>) -> String {
    let ctrls = match controllers_for_nqn(sys_root, nqn) {
        Ok(c) if c.is_empty() => "no controller for this NQN".to_string(),
        Ok(c) => {
            let list: Vec<String> = c
                .iter()
                .map(|c| format!("{} ({})", c.name(), c.state))
                .collect();
            format!("controllers {} but no usable namespace", list.join(", "))
        }
        Err(e) => format!("controllers unreadable: {e}"),
    };
    match last_error {
        Some(e) => format!("{ctrls}; last error: {e}"),
        None => ctrls,
    }
}
