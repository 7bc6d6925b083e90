//! The waits after a disconnect, a resize and a loop detach: woken by the uevent that ends
//! them (forwarded on fake trees, the kernel's own for a real loop device), polling only as
//! the fallback, and at the deadline an error that says what is still there.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    assert_ended_at_deadline, assert_says, assert_woken_by_events, both_wakers, disconnect_wait,
    in_secs, loop_dev, ms, skip, uevent, wait_with_kernel, FakeSys, NQN, NS1,
};
use node_io::sysfs::disconnect_subsystem;
use node_io::wait::{
    wait_for_controllers_gone, wait_for_loop_detached, wait_for_size, DetachError, SizeError, Waker,
};

#[test]
fn a_disconnect_wait_ends_on_the_kernels_remove_events_not_the_poll() {
    let s = FakeSys::multipath_y();
    disconnect_subsystem(s.root(), NQN).unwrap();
    disconnect_wait(&s, false);
}

#[test]
fn controllers_that_stay_are_named_with_their_state_at_the_deadline() {
    let s = FakeSys::multipath_y();
    s.set_state(1, "deleting");
    for mut waker in both_wakers() {
        let budget = ms(400);
        let start = Instant::now();
        let e = wait_for_controllers_gone(s.root(), NQN, start + budget, &mut waker).unwrap_err();
        assert_ended_at_deadline(start, budget);
        assert!(matches!(e, DetachError::StillConnected { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("nvme0 (live)") && msg.contains("nvme1 (deleting)") && msg.contains(NQN),
            "{msg}"
        );
    }
}

#[test]
fn nothing_left_to_wait_for_returns_at_once() {
    let s = FakeSys::new();
    let mut waker = Waker::polling("test");
    let w = wait_for_controllers_gone(s.root(), NQN, in_secs(5), &mut waker).unwrap();
    assert_eq!(w.checks, 1);
}

#[test]
fn a_resize_wait_ends_on_the_change_event_with_the_new_size() {
    let s = FakeSys::multipath_y();
    let want = NS1.sectors * 512 * 2;
    let found = wait_with_kernel(
        &s,
        ms(200),
        |s, tx| {
            let head = s.subsys_dir(0).join("nvme0n1");
            std::fs::write(head.join("size"), format!("{}\n", NS1.sectors * 2)).unwrap();
            let devpath = "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1";
            tx.send(uevent("change", devpath, "block", "RESIZE=1\0"))
                .unwrap();
        },
        |w| wait_for_size(s.root(), NQN, want, in_secs(5), w),
    )
    .unwrap();
    assert_eq!(found.device.size_bytes, want);
    assert_woken_by_events(found.waited);
    assert_eq!(found.checks, 2);
}

#[test]
fn a_resize_that_never_shows_says_the_size_seen_and_a_missing_device_fails_at_once() {
    let s = FakeSys::multipath_y();
    let mut waker = Waker::polling("test");
    let start = Instant::now();
    let e = wait_for_size(s.root(), NQN, 1 << 40, start + ms(300), &mut waker).unwrap_err();
    assert!(start.elapsed() >= ms(300));
    let msg = e.to_string();
    assert!(
        msg.contains("nvme0n1 is 67108864 bytes") && msg.contains("1099511627776"),
        "{msg}"
    );
    let empty = FakeSys::new();
    let start = Instant::now();
    let e = wait_for_size(
        empty.root(),
        NQN,
        1,
        start + Duration::from_secs(5),
        &mut waker,
    )
    .unwrap_err();
    assert!(matches!(e, SizeError::NoDevice { .. }), "{e}");
    assert!(start.elapsed() < ms(200));
}

#[test]
fn a_loop_detach_wait_on_a_fake_tree_ends_when_autoclear_is_set() {
    let s = FakeSys::new();
    let d = s.root().join("block/loop4");
    std::fs::create_dir_all(d.join("loop")).unwrap();
    std::fs::write(d.join("dev"), "7:4\n").unwrap();
    std::fs::write(d.join("size"), "2048\n").unwrap();
    std::fs::write(d.join("loop/backing_file"), "/data/v.img\n").unwrap();
    std::fs::write(d.join("loop/autoclear"), "0\n").unwrap();
    let (backing, other) = (Path::new("/data/v.img"), Path::new("/data/other.img"));
    wait_with_kernel(
        &s,
        ms(150),
        |s, tx| {
            // An event for another loop device first: not ours.
            tx.send(uevent(
                "change",
                "/devices/virtual/block/loop5",
                "block",
                "",
            ))
            .unwrap();
            std::fs::write(s.root().join("block/loop4/loop/autoclear"), "1\n").unwrap();
            tx.send(uevent(
                "change",
                "/devices/virtual/block/loop4",
                "block",
                "",
            ))
            .unwrap();
        },
        |waker| {
            let w = wait_for_loop_detached(s.root(), "loop4", backing, in_secs(5), waker).unwrap();
            assert_eq!(w.checks, 2, "{w}");
            let e = wait_for_loop_detached(s.root(), "loop4", other, Instant::now(), waker);
            assert!(e.is_ok(), "not backing that file: nothing to wait for");
            std::fs::write(d.join("loop/autoclear"), "0\n").unwrap();
            let e =
                wait_for_loop_detached(s.root(), "loop4", backing, Instant::now() + ms(100), waker);
            assert_says(&e.unwrap_err(), "loop4 still backs /data/v.img");
        },
    );
}

#[test]
fn a_real_loop_detach_is_seen_through_the_kernels_uevent() {
    let test = "a_real_loop_detach_is_seen_through_the_kernels_uevent";
    let mut waker = Waker::open();
    if waker.is_polling() {
        return skip(test, waker.describe()).unwrap_or(());
    }
    let Some(lo) = loop_dev(1 << 20, &[], &[]) else {
        return;
    };
    let path = lo.path.clone();
    let detacher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        Command::new("losetup")
            .arg("-d")
            .arg(&path)
            .status()
            .unwrap()
    });
    let w = wait_for_loop_detached(
        Path::new("/sys"),
        &lo.name,
        lo.backing(),
        Instant::now() + Duration::from_secs(5),
        &mut waker,
    )
    .unwrap();
    assert!(detacher.join().unwrap().success());
    assert!(w.waited >= Duration::from_millis(150), "{w}");
    assert!(
        w.waited < Duration::from_millis(900),
        "woken by the uevent: {w}"
    );
}
