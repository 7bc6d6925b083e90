//! A fake kernel for the wait tests: a thread that changes a fake sysfs tree and sends the
//! uevents the kernel would, while the test's wait waits.

use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use node_io::testing::{FakeSys, NQN};
use node_io::uevent::Uevent;
use node_io::wait::{wait_for_block_device, wait_for_controllers_gone, Found, Waited, Waker};

/// A kernel-shaped uevent; `extra` holds further `KEY=value\0` fields (or is empty).
pub fn uevent(action: &str, devpath: &str, subsystem: &str, extra: &str) -> Uevent {
    let msg = format!(
        "{action}@{devpath}\0ACTION={action}\0DEVPATH={devpath}\0SUBSYSTEM={subsystem}\0{extra}SEQNUM=1\0"
    );
    Uevent::parse(msg.as_bytes()).unwrap()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A deadline `n` seconds from now.
pub fn in_secs(n: u64) -> Instant {
    Instant::now() + Duration::from_secs(n)
}

/// Runs `wait` on a waker fed by a fake kernel: a thread that sleeps `after`, then runs
/// `kernel` with a second handle on `s` and the waker's sender (to change the tree and send
/// uevents). The waker and the sender live until the kernel thread has ended, so none of
/// its sends fails when the wait returns before its last event, and the wait never sees
/// the channel close.
pub fn wait_with_kernel<T>(
    s: &FakeSys,
    after: Duration,
    kernel: impl FnOnce(&FakeSys, &Sender<Uevent>) + Send + 'static,
    wait: impl FnOnce(&mut Waker) -> T,
) -> T {
    let (tx, rx) = mpsc::channel();
    let root = s.root().to_path_buf();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(after);
        kernel(&FakeSys::at(&root), &tx);
        tx
    });
    let mut waker = Waker::forwarded(rx);
    let out = wait(&mut waker);
    let tx = thread.join().expect("the fake kernel thread panicked");
    drop((waker, tx));
    out
}

/// Waits (up to `within`) for NQN's block device on `s` while `kernel` plays the kernel
/// after `after` (see [`wait_with_kernel`]), and unwraps what it found.
pub fn device_found_with_kernel(
    s: &FakeSys,
    after: Duration,
    within: Duration,
    kernel: impl FnOnce(&FakeSys, &Sender<Uevent>) + Send + 'static,
) -> Found {
    let wait = |w: &mut Waker| wait_for_block_device(s.root(), NQN, Instant::now() + within, w);
    wait_with_kernel(s, after, kernel, wait).unwrap()
}

/// A disconnect's wait for NQN's controllers to go (5 s at the most) while the kernel
/// removes nvme0 and nvme1 after 200 ms: each leaves /sys/class/nvme (with `dir_too`, its
/// directory goes as well), then its `remove` uevent is sent. Asserts the wait ended on
/// those events.
pub fn disconnect_wait(s: &FakeSys, dir_too: bool) -> Waited {
    let kernel = move |s: &FakeSys, tx: &Sender<Uevent>| {
        for c in [0, 1] {
            std::fs::remove_file(s.root().join(format!("class/nvme/nvme{c}"))).unwrap();
            if dir_too {
                std::fs::remove_dir_all(s.ctl_dir(c)).unwrap();
            }
            let ctl = format!("/devices/virtual/nvme-fabrics/ctl/nvme{c}");
            tx.send(uevent("remove", &ctl, "nvme", "")).unwrap();
        }
    };
    let waited = wait_with_kernel(s, ms(200), kernel, |w| {
        wait_for_controllers_gone(s.root(), NQN, in_secs(5), w)
    })
    .unwrap();
    assert!(waited.waited >= ms(150), "{waited}");
    assert_woken_by_events(waited.waited);
    waited
}

/// Asserts that an error's message contains `words`.
pub fn assert_says(err: &impl std::fmt::Display, words: &str) {
    let msg = err.to_string();
    assert!(msg.contains(words), "{words:?} not in: {msg}");
}

/// Asserts that a wait that took `waited` was woken by an event, not by the 1 s safety poll.
pub fn assert_woken_by_events(waited: Duration) {
    assert!(
        waited < Duration::from_millis(900),
        "woken by the events, not the 1 s safety poll: {waited:?}"
    );
}

/// Asserts that a wait that began at `start` with `budget` ended at its deadline (and not
/// much later).
pub fn assert_ended_at_deadline(start: Instant, budget: Duration) {
    let took = start.elapsed();
    assert!(
        took >= budget && took < budget + Duration::from_millis(150),
        "{took:?} for a {budget:?} deadline"
    );
}

/// A forwarded waker that gets no events, and a polling one: a wait must keep its
/// deadline with either.
pub fn both_wakers() -> [Waker; 2] {
    [Waker::forwarded(mpsc::channel().1), Waker::polling("test")]
}
