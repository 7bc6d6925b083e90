//! Waiting for an NVMe block device: fake sysfs plus forwarded uevents, and a check that
//! the real kernel's uevent socket works on this machine.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_ended_at_deadline, assert_says, assert_woken_by_events, both_wakers,
    device_found_with_kernel, in_secs, loop_dev, ms, secs, skip, uevent, wait_with_kernel, FakeSys,
    NQN, NS1,
};
use node_io::uevent_socket::{UeventRecv, UeventSocket};
use node_io::wait::{wait_for_block_device, WaitError, Waker, FALLBACK_POLL};

/// The devpath and fields of the kernel's `add` uevent for nvme0n1.
const NVME_ADD: &str = "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1";
const NVME_ADD_FIELDS: &str = "MAJOR=259\0MINOR=1\0DEVNAME=nvme0n1\0DEVTYPE=disk\0";

/// The namespace nvme0n1 of a connected controller nvme0 shows up.
fn namespace_appears(s: &FakeSys) {
    s.mp_head(0, &NS1).mp_path(0, 0, &NS1);
}

#[test]
fn device_created_later_is_found_when_its_uevent_arrives() {
    let s = FakeSys::with_controllers(NQN, &["live"]);
    let found = device_found_with_kernel(&s, ms(100), secs(5), |s, tx| {
        // An unrelated event first: it must not end the wait early.
        let other = uevent("add", "/devices/virtual/block/loop9", "block", "");
        tx.send(other).unwrap();
        std::thread::sleep(ms(200));
        namespace_appears(s);
        tx.send(uevent("add", NVME_ADD, "block", NVME_ADD_FIELDS))
            .unwrap();
    });
    assert_eq!(found.device.name, "nvme0n1");
    assert!(found.waited >= ms(250), "{:?}", found.waited);
    assert_woken_by_events(found.waited);
    assert_eq!(found.checks, 2, "start + one event");
}

#[test]
fn device_created_later_is_found_by_polling_without_uevents() {
    let s = FakeSys::with_controllers(NQN, &["live"]);
    let mut polling = Waker::polling("test");
    let found = wait_with_kernel(
        &s,
        ms(300),
        |s, _| namespace_appears(s),
        |_forwarded| wait_for_block_device(s.root(), NQN, in_secs(5), &mut polling),
    )
    .unwrap();
    assert_eq!(found.device.name, "nvme0n1");
    assert!(found.waited < ms(300) + FALLBACK_POLL + ms(150));
    assert!(found.wake.contains("polling"), "{}", found.wake);
}

#[test]
fn a_missed_uevent_is_caught_by_the_safety_poll() {
    let s = FakeSys::with_controllers(NQN, &["live"]);
    let found = device_found_with_kernel(&s, ms(100), secs(3), |s, _| namespace_appears(s));
    assert!(found.waited >= ms(900), "{:?}", found.waited);
}

#[test]
fn never_created_times_out_at_the_deadline_naming_nqn_and_state() {
    let s = FakeSys::with_controllers(NQN, &["connecting"]);
    for mut waker in both_wakers() {
        let budget = ms(700);
        let start = Instant::now();
        let err = wait_for_block_device(s.root(), NQN, start + budget, &mut waker).unwrap_err();
        assert_ended_at_deadline(start, budget);
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
    let err = wait_for_block_device(s.root(), NQN, Instant::now() + ms(100), &mut waker);
    assert_says(&err.unwrap_err(), "no controller for this NQN");
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
    let Some(lo) = loop_dev(1 << 20, &[], &[]) else {
        return;
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
