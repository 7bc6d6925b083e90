//! Waits on one NVMe subsystem: its block device appears, reaches a size, or its
//! controllers go away. Each re-reads only the subsystem's own objects when an event names
//! them, and everything on the safety poll.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{DetachError, SizeError, Trigger, WaitError, Waited, Waker, Watch};
use crate::sysfs::index::{ClassDirs, NvmeObject, SubsystemHint};
use crate::sysfs::{choose, controllers_for_nqn, BlockDevice, SysfsError};
use crate::uevent_hub::Interest;

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

impl Found {
    fn new(device: BlockDevice, w: Waited) -> Self {
        Self {
            device,
            waited: w.waited,
            checks: w.checks,
            wake: w.wake,
        }
    }
}

fn target(nqn: &str) -> String {
    format!("NVMe subsystem {nqn}")
}

/// A wait on NVMe subsystem `nqn`: its wake-ups and where the subsystem's objects were last
/// seen.
struct SubsystemWait<'a> {
    w: Watch<'a>,
    sys_root: &'a Path,
    nqn: &'a str,
    hint: SubsystemHint,
    /// The class directories, held open between hinted reads.
    dirs: Option<ClassDirs>,
}

impl<'a> SubsystemWait<'a> {
    /// Subscribes to `nqn`'s events before the first check (see [`Watch::new`]).
    fn new(waker: &'a mut Waker, sys_root: &'a Path, nqn: &'a str) -> Self {
        Self {
            w: watch_subsystem(waker, sys_root, nqn),
            sys_root,
            nqn,
            hint: SubsystemHint::default(),
            dirs: None,
        }
    }

    /// Resolves `nqn`'s device as the trigger asks: a full scan (which refreshes the hint
    /// and tells the hub who owns the objects) or a read of the hinted objects plus those
    /// named.
    fn resolve(&mut self, trigger: Trigger) -> Result<Option<BlockDevice>, SysfsError> {
        let (sys_root, nqn) = (self.sys_root, self.nqn);
        let trigger = match trigger {
            // Nothing known to re-read: only a full scan can find anything.
            Trigger::Named(named) if named.is_empty() && self.hint.is_empty() => Trigger::Full,
            t => t,
        };
        match trigger {
            Trigger::Full => {
                let (devices, h) = SubsystemHint::scan(sys_root, nqn)?;
                self.hint = h;
                if self.dirs.is_none() {
                    // Opened now, before the event, so the event's hinted read does not pay
                    // for it; a failure here is retried by that read.
                    self.dirs = ClassDirs::open(sys_root).ok().flatten();
                }
                if let Some(hub) = self.w.hub() {
                    for o in self.hint.objects() {
                        hub.note_owner(sys_root, o, nqn);
                    }
                }
                choose(nqn, devices)
            }
            Trigger::Named(objects) => {
                for o in objects {
                    self.hint.learn(o);
                }
                if self.dirs.is_none() {
                    self.dirs = ClassDirs::open(sys_root)?;
                }
                let Some(d) = self.dirs.as_ref() else {
                    return Ok(None);
                };
                let found = self.hint.resolve_in(d, nqn)?;
                if found.is_none() {
                    // Reopen now: a class directory held across an nvme module reload would
                    // show nothing forever. Now, not at the next read, so that the event
                    // that brings the device does not pay for it.
                    self.dirs = ClassDirs::open(sys_root).ok().flatten();
                }
                Ok(found)
            }
        }
    }
}

/// A [`Watch`] on NVMe subsystem `nqn`'s events.
fn watch_subsystem<'a>(waker: &'a mut Waker, sys_root: &Path, nqn: &str) -> Watch<'a> {
    let interest = Interest::Subsystem {
        nqn: nqn.to_string(),
    };
    Watch::new(waker, sys_root, interest)
}

/// Waits until the block device of `nqn` ([`crate::sysfs::resolve_block_device`]) exists,
/// or `deadline`. Blocking (call it from a blocking thread); returns within milliseconds of
/// the deadline.
///
/// Errors: [`WaitError::Timeout`] saying what sysfs shows for `nqn`;
/// [`WaitError::Sysfs`] for a state waiting cannot fix (several namespaces).
pub fn wait_for_block_device(
    sys_root: &Path,
    nqn: &str,
    deadline: Instant,
    waker: &mut Waker,
) -> Result<Found, WaitError> {
    let mut sw = SubsystemWait::new(waker, sys_root, nqn);
    let mut trigger = Trigger::Full;
    let mut last_error: Option<String>;
    loop {
        sw.w.check();
        match sw.resolve(trigger) {
            Ok(Some(device)) => return Ok(Found::new(device, sw.w.waited())),
            Ok(None) => last_error = None,
            Err(source @ SysfsError::AmbiguousNamespaces { .. }) => {
                return Err(WaitError::Sysfs {
                    target: target(nqn),
                    source,
                })
            }
            // Attributes vanish or are half-written while controllers come and go.
            Err(e) => last_error = Some(e.to_string()),
        }
        match sw.w.next(deadline) {
            Some(t) => trigger = t,
            None => {
                return Err(WaitError::Timeout {
                    nqn: nqn.to_string(),
                    waited: sw.w.waited(),
                    seen: describe_state(sys_root, nqn, last_error),
                })
            }
        }
    }
}

/// Waits until the block device of `nqn` is at least `want_bytes` long (the kernel applies
/// a controller rescan asynchronously), or `deadline`.
///
/// Errors: [`SizeError::NoDevice`] at once when `nqn` has no block device (a full scan
/// confirms it); [`SizeError::TooSmall`] at the deadline with the size seen;
/// [`SizeError::Sysfs`] when sysfs cannot be read or shows several namespaces.
pub fn wait_for_size(
    sys_root: &Path,
    nqn: &str,
    want_bytes: u64,
    deadline: Instant,
    waker: &mut Waker,
) -> Result<Found, SizeError> {
    let mut sw = SubsystemWait::new(waker, sys_root, nqn);
    let mut trigger = Trigger::Full;
    let sysfs = |source| SizeError::Sysfs {
        target: target(nqn),
        source,
    };
    loop {
        sw.w.check();
        let full = trigger == Trigger::Full;
        let device = match sw.resolve(trigger).map_err(sysfs)? {
            Some(d) => d,
            // A hinted read that finds nothing is confirmed by a full scan first.
            None if !full => {
                trigger = Trigger::Full;
                continue;
            }
            None => {
                return Err(SizeError::NoDevice {
                    nqn: nqn.to_string(),
                })
            }
        };
        if device.size_bytes >= want_bytes {
            return Ok(Found::new(device, sw.w.waited()));
        }
        match sw.w.next(deadline) {
            Some(t) => trigger = t,
            None => {
                return Err(SizeError::TooSmall {
                    nqn: nqn.to_string(),
                    waited: sw.w.waited(),
                    want_bytes,
                    seen: format!("{} is {} bytes", device.name, device.size_bytes),
                })
            }
        }
    }
}

/// Waits until no controller of `nqn` is left in `<sys>/class/nvme` (after
/// [`crate::sysfs::disconnect_subsystem`]), or `deadline`.
///
/// Errors: [`DetachError::StillConnected`] at the deadline naming the controllers and their
/// states; [`DetachError::Sysfs`] when the controllers cannot be listed.
pub fn wait_for_controllers_gone(
    sys_root: &Path,
    nqn: &str,
    deadline: Instant,
    waker: &mut Waker,
) -> Result<Waited, DetachError> {
    let mut w = watch_subsystem(waker, sys_root, nqn);
    let sysfs = |source| DetachError::Sysfs {
        target: target(nqn),
        source,
    };
    // The controllers still serving `nqn` as last seen.
    let mut left: BTreeSet<u32> = BTreeSet::new();
    let mut trigger = Trigger::Full;
    loop {
        w.check();
        match trigger {
            Trigger::Full => {
                left = controllers_for_nqn(sys_root, nqn)
                    .map_err(sysfs)?
                    .into_iter()
                    .map(|c| c.instance)
                    .collect();
                if let Some(hub) = w.hub() {
                    for &c in &left {
                        hub.note_owner(sys_root, NvmeObject::Controller(c), nqn);
                    }
                }
            }
            Trigger::Named(objects) => {
                left.extend(objects.into_iter().filter_map(|o| match o {
                    NvmeObject::Controller(c) => Some(c),
                    NvmeObject::Subsystem(_) => None,
                }));
                let mut still = BTreeSet::new();
                for c in left {
                    let o = NvmeObject::Controller(c);
                    if o.subsysnqn(sys_root).map_err(sysfs)?.as_deref() == Some(nqn) {
                        still.insert(c);
                    }
                }
                left = still;
            }
        }
        if left.is_empty() {
            return Ok(w.waited());
        }
        match w.next(deadline) {
            Some(t) => trigger = t,
            None => {
                // The last word is a full listing: a controller may have gone just now.
                let cs = controllers_for_nqn(sys_root, nqn).map_err(sysfs)?;
                if cs.is_empty() {
                    return Ok(w.waited());
                }
                let remaining = cs
                    .iter()
                    .map(|c| format!("{} ({})", c.name(), c.state))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(DetachError::StillConnected {
                    nqn: nqn.to_string(),
                    waited: w.waited(),
                    remaining,
                });
            }
        }
    }
}

/// What sysfs shows for `nqn`, for the timeout message.
fn describe_state(sys_root: &Path, nqn: &str, last_error: Option<String>) -> String {
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
