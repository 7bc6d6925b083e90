//! Waiting for an NVMe block device: fake sysfs plus forwarded uevents, and a check that
//! the real kernel's uevent socket works on this machine.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{skip, FakeSys, LoopDev, NQN, NS1};
use node_io::uevent::Uevent;
use node_io::uevent_socket::{UeventRecv, UeventSocket};
use node_io::wait::{wait_for_block_device, WaitError, Waker, FALLBACK_POLL};

/// A kernel-shaped `add` uevent for nvme0n1.
fn nvme_add_event() -> Uevent {
    let msg = b"add@/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1\0ACTION=add\0\
DEVPATH=/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1\0SUBSYSTEM=block\0\
MAJOR=259\0MINOR=1\0DEVNAME=nvme0n1\0DEVTYPE=disk\0SEQNUM=4242\0";
    Uevent::parse(msg).unwrap()
}

/// A connected controller whose namespace shows up `after` later, announced by `tx`.
fn appear_later(s: &FakeSys, after: Duration, tx: Option<mpsc::Sender<Uevent>>) {
    s.controller(0, NQN, 4420, "live").subsystem(0, NQN, &[0]);
    let root = s.root().to_path_buf();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let s = FakeSys::at(&root);
        s.mp_head(0, &NS1).mp_path(0, 0, &NS1);
        if let Some(tx) = tx {
            let _ = tx.send(nvme_add_event());
        }
    });
}

#[test]
fn device_created_later_is_found_when_its_uevent_arrives() {
    let s = FakeSys::new();
    let (tx, rx) = mpsc::channel();
    // An unrelated event first: it must not end the wait early.
    let other = Uevent::parse(b"add@/devices/virtual/block/loop9\0SUBSYSTEM=block\0").unwrap();
    tx.send(other).unwrap();
    appear_later(&s, Duration::from_millis(300), Some(tx));
    let mut waker = Waker::forwarded(rx);
    let start = Instant::now();
    let found =
        wait_for_block_device(s.root(), NQN, start + Duration::from_secs(5), &mut waker).unwrap();
    assert_eq!(found.device.name, "nvme0n1");
    // Woken by the event, not by the 1 s safety poll.
    assert!(
        found.waited >= Duration::from_millis(250),
        "{:?}",
        found.waited
    );
    assert!(
        found.waited < Duration::from_millis(900),
        "{:?}",
        found.waited
    );
    assert_eq!(found.checks, 2, "start + one event");
}

#[test]
fn device_created_later_is_found_by_polling_without_uevents() {
    let s = FakeSys::new();
    appear_later(&s, Duration::from_millis(300), None);
    let mut waker = Waker::polling("test");
    let found = wait_for_block_device(
        s.root(),
        NQN,
        Instant::now() + Duration::from_secs(5),
        &mut waker,
    )
    .unwrap();
    assert_eq!(found.device.name, "nvme0n1");
    assert!(found.waited < Duration::from_millis(300) + FALLBACK_POLL + Duration::from_millis(150));
    assert!(found.wake.contains("polling"), "{}", found.wake);
}

#[test]
fn a_missed_uevent_is_caught_by_the_safety_poll() {
    let s = FakeSys::new();
    let (_tx, rx) = mpsc::channel::<Uevent>();
    appear_later(&s, Duration::from_millis(100), None);
    let mut waker = Waker::forwarded(rx);
    let found = wait_for_block_device(
        s.root(),
        NQN,
        Instant::now() + Duration::from_secs(3),
        &mut waker,
    )
    .unwrap();
    assert!(
        found.waited >= Duration::from_millis(900),
        "{:?}",
        found.waited
    );
}

#[test]
fn never_created_times_out_at_the_deadline_naming_nqn_and_state() {
    let s = FakeSys::new();
    s.controller(0, NQN, 4420, "connecting")
        .subsystem(0, NQN, &[0]);
    for mut waker in [Waker::forwarded(mpsc::channel().1), Waker::polling("test")] {
        let budget = Duration::from_millis(700);
        let start = Instant::now();
        let err = wait_for_block_device(s.root(), NQN, start + budget, &mut waker).unwrap_err();
        let took = start.elapsed();
        assert!(
            took >= budget && took < budget + Duration::from_millis(150),
            "{took:?}"
        );
        match &err {
            WaitError::Timeout { nqn, seen, .. } => {
                assert_eq!(nqn, NQN);
                assert!(seen.contains("nvme0 (connecting)"), "{seen}");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(NQN));
    }
}

#[test]
fn nothing_connected_says_so_in_the_timeout() {
    let s = FakeSys::new();
    let mut waker = Waker::polling("test");
    let err = wait_for_block_device(
        s.root(),
        NQN,
        Instant::now() + Duration::from_millis(100),
        &mut waker,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no controller for this NQN"),
        "{err}"
    );
}

#[test]
fn kernel_uevent_socket_reports_a_new_loop_device() {
    let test = "kernel_uevent_socket_reports_a_new_loop_device";
    let mut sock = match UeventSocket::open() {
        Ok(s) => s,
        Err(e) => {
            skip::<()>(test, format!("netlink uevent socket unavailable: {e}"));
            return;
        }
    };
    let lo = match LoopDev::new(1 << 20) {
        Ok(l) => l,
        Err(e) => {
            skip::<()>(test, e);
            return;
        }
    };
    // losetup reuses a pre-created loopN (a `change` event); asking the kernel to
    // re-announce the device makes it send the `add` a new NVMe namespace would.
    std::fs::write(format!("/sys/class/block/{}/uevent", lo.name), "add").unwrap();
    let want = format!("/block/{}", lo.name);
    let until = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < until {
        match sock.recv(Duration::from_millis(500)).unwrap() {
            UeventRecv::Event(ev)
                if ev.devpath.ends_with(&want) && ev.action == node_io::uevent::Action::Add =>
            {
                assert_eq!(ev.subsystem.as_deref(), Some("block"));
                assert_eq!(ev.devname.as_deref(), Some(lo.name.as_str()));
                assert_eq!(ev.dev, Some(lo.dev()));
                assert!(!ev.is_nvme_block_event(), "a loop device is not NVMe");
                eprintln!("{test}: saw {} {} after {seen:?}", ev.action, ev.devpath);
                return;
            }
            UeventRecv::Event(ev) => seen.push(format!("{}@{}", ev.action, ev.devpath)),
            _ => {}
        }
    }
    panic!("no uevent for {} within 5 s; saw {seen:?}", lo.name);
}

#[test]
fn waker_open_prefers_netlink_and_says_when_it_polls() {
    let netlink_works = UeventSocket::open().is_ok();
    let w = Waker::open();
    if w.is_polling() {
        assert!(!netlink_works, "fell back although netlink opens");
        assert!(
            w.describe().contains("polling every 250ms"),
            "{}",
            w.describe()
        );
    } else {
        assert!(netlink_works);
        assert_eq!(w.describe(), "netlink uevents");
    }
}
