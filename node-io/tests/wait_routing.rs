//! Device waits at scale: uevents are routed to the wait they concern only, the wait then
//! re-reads only its own subsystem's objects, and that hinted read never answers what a
//! full scan of sysfs would not (fake trees shaped like the kernel 6.1 dump).

mod common;

use std::path::Path;
use std::sync::mpsc::Sender;
use std::time::Duration;

use common::{
    assert_woken_by_events, device_found_with_kernel, disconnect_wait, ms, secs, uevent, FakeSys,
    Ns, NQN, NS1, OTHER_NQN,
};
use node_io::sysfs::index::{NvmeObject, SubsystemHint};
use node_io::sysfs::{resolve_block_device, SysfsError};
use node_io::uevent::Uevent;

fn head_added(subsys: u32) -> Uevent {
    let head = format!("/devices/virtual/nvme-subsystem/nvme-subsys{subsys}/nvme{subsys}n1");
    uevent("add", &head, "block", "")
}

/// nvme3 connects for NQN (its `add` uevent), then its namespace nvme3n1 of device minor
/// `minor` appears (another `add`).
fn nvme3_connects(s: &FakeSys, tx: &Sender<Uevent>, minor: u32) {
    let ctl = "/devices/virtual/nvme-fabrics/ctl/nvme3";
    s.controller(3, NQN, 4420, "live");
    tx.send(uevent("add", ctl, "nvme", "")).unwrap();
    s.private_ns(3, &Ns { minor, ..NS1 });
    tx.send(uevent("add", &format!("{ctl}/nvme3n1"), "block", ""))
        .unwrap();
}

fn nqn_of(i: u32) -> String {
    format!("nqn.2024-01.io.example:other{i}")
}

#[test]
fn events_of_other_subsystems_do_not_wake_the_wait() {
    let s = FakeSys::new();
    for i in 0..20 {
        s.controller(i, &nqn_of(i), 4420, "live")
            .subsystem(i, &nqn_of(i), &[i])
            .mp_head(i, &Ns { minor: i, ..NS1 })
            .mp_path(i, i, &Ns { minor: i, ..NS1 });
    }
    s.controller(50, NQN, 4420, "live")
        .subsystem(50, NQN, &[50]);
    let found = device_found_with_kernel(&s, ms(100), secs(5), |s, tx| {
        // 40 events of other volumes' namespaces, while the wait waits.
        for i in 0..20 {
            tx.send(head_added(i)).unwrap();
            let path = format!("/devices/virtual/nvme-fabrics/ctl/nvme{i}/nvme{i}c{i}n1");
            tx.send(uevent("add", &path, "block", "")).unwrap();
        }
        std::thread::sleep(ms(100));
        s.mp_head(50, &Ns { minor: 50, ..NS1 });
        tx.send(head_added(50)).unwrap();
    });
    assert_eq!(found.device.name, "nvme50n1");
    // Start + its own event (+ at most one safety poll on a stalled machine); a wait woken
    // by the other 40 events would have checked about 40 times.
    assert!(found.checks <= 3, "{} checks", found.checks);
    assert!(found.waited < Duration::from_secs(3), "{:?}", found.waited);
}

#[test]
fn a_renumbered_controller_is_found_through_the_event_that_names_it() {
    // multipath=N: nvme0 lost (deleting), the reconnect comes back as nvme3 with nvme3n1.
    let s = FakeSys::new();
    s.controller(0, NQN, 4420, "deleting")
        .private_ns(0, &Ns { minor: 0, ..NS1 })
        .subsystem(0, NQN, &[0]);
    let found = device_found_with_kernel(&s, ms(150), secs(5), |s, tx| nvme3_connects(s, tx, 7));
    assert_eq!(found.device.name, "nvme3n1");
    assert_woken_by_events(found.waited);
}

#[test]
fn a_controller_number_reused_by_another_nqn_routes_its_namespaces_to_the_new_one() {
    // The hub answers events about a known controller's namespaces from its routing table
    // (no sysfs read per event); the table follows the controller's own remove and add, so
    // a number the kernel reuses for another volume routes that volume's namespace to it.
    let s = FakeSys::new();
    s.controller(3, OTHER_NQN, 4420, "live")
        .private_ns(3, &Ns { minor: 3, ..NS1 });
    let found = device_found_with_kernel(&s, ms(100), secs(5), |s, tx| {
        let ctl = "/devices/virtual/nvme-fabrics/ctl/nvme3";
        // The hub learns that nvme3 serves OTHER_NQN.
        tx.send(uevent("change", &format!("{ctl}/nvme3n1"), "block", ""))
            .unwrap();
        std::thread::sleep(ms(100));
        // nvme3 goes (disconnected) ...
        for link in ["class/nvme/nvme3", "block/nvme3n1"] {
            std::fs::remove_file(s.root().join(link)).unwrap();
        }
        std::fs::remove_dir_all(s.ctl_dir(3)).unwrap();
        tx.send(uevent("remove", ctl, "nvme", "")).unwrap();
        std::thread::sleep(ms(50));
        // ... and its number comes back for NQN, then its namespace appears.
        nvme3_connects(s, tx, 9);
    });
    assert_eq!(found.device.name, "nvme3n1");
    assert_eq!(found.device.dev.minor, 9);
    assert_woken_by_events(found.waited);
}

#[test]
fn a_remove_of_a_controller_already_gone_reaches_the_wait_of_its_nqn() {
    let s = FakeSys::with_controllers(NQN, &["live", "live"]);
    s.controller(2, OTHER_NQN, 4420, "live");
    // The directories go first, then the kernel announces it: only the routing table still
    // knows which NQN nvme0 and nvme1 served.
    let waited = disconnect_wait(&s, true);
    assert!(waited.checks <= 4, "{waited}");
    assert!(
        s.ctl_dir(2).exists(),
        "the other NQN's controller is untouched"
    );
}

/// Every fixture shape a full scan resolves: the hinted read of the objects that scan found
/// gives the same answer (or the same error).
#[test]
fn hinted_and_full_resolution_agree_on_every_fixture_shape() {
    let connecting = || {
        let s = FakeSys::multipath_y();
        s.set_state(0, "connecting");
        s.set_state(1, "resetting");
        s
    };
    let deleting = || {
        let s = FakeSys::multipath_y();
        s.set_state(0, "deleting");
        s.set_state(1, "deleting (no IO)");
        s
    };
    let two_namespaces = || {
        let s = FakeSys::multipath_y();
        let ns2 = Ns {
            ns: 2,
            nsid: 2,
            minor: 9,
            ..NS1
        };
        s.mp_head(0, &ns2).mp_path(0, 0, &ns2);
        s
    };
    let no_subsystem_dir = || {
        let s = FakeSys::new();
        s.controller(4, NQN, 4420, "live").private_ns(4, &NS1);
        s
    };
    let neighbours = || {
        let s = FakeSys::multipath_y();
        s.controller(2, OTHER_NQN, 4420, "live")
            .subsystem(1, OTHER_NQN, &[2])
            .mp_head(1, &Ns { minor: 5, ..NS1 })
            .mp_path(1, 2, &Ns { minor: 5, ..NS1 });
        s
    };
    // Path through controller 1 not linked into /sys/block yet: it must not count.
    let one_path_linked = || {
        let s = FakeSys::multipath_y();
        std::fs::remove_file(s.root().join("block/nvme0c1n1")).unwrap();
        s
    };
    let shapes: Vec<(&str, FakeSys)> = vec![
        ("multipath=Y", FakeSys::multipath_y()),
        ("one path linked", one_path_linked()),
        ("multipath=N", FakeSys::multipath_n()),
        ("renumbered", FakeSys::renumbered(NQN)),
        ("connecting", connecting()),
        ("deleting", deleting()),
        ("two namespaces", two_namespaces()),
        ("no subsystem dir", no_subsystem_dir()),
        ("neighbours", neighbours()),
        ("nothing", FakeSys::new()),
    ];
    for (shape, s) in shapes {
        let full = resolve_block_device(s.root(), NQN);
        let (_, mut hint) = SubsystemHint::scan(s.root(), NQN).unwrap();
        let hinted = hint.resolve_block_device(s.root(), NQN);
        match (&full, &hinted) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{shape}"),
            (
                Err(SysfsError::AmbiguousNamespaces { names: a, .. }),
                Err(SysfsError::AmbiguousNamespaces { names: b, .. }),
            ) => assert_eq!(a, b, "{shape}"),
            _ => panic!("{shape}: full {full:?} vs hinted {hinted:?}"),
        }
    }
}

#[test]
fn a_stale_hint_never_answers_for_another_nqn() {
    let s = FakeSys::multipath_y();
    let (_, mut hint) = SubsystemHint::scan(s.root(), NQN).unwrap();
    assert!(hint.resolve_block_device(s.root(), NQN).unwrap().is_some());
    // Subsystem 0 and both controllers now serve another NQN (deleted and re-created with
    // the same instance numbers): same names, same device numbers, someone else's disk.
    for f in [
        s.subsys_dir(0).join("subsysnqn"),
        s.ctl_dir(0).join("subsysnqn"),
        s.ctl_dir(1).join("subsysnqn"),
    ] {
        std::fs::write(f, format!("{OTHER_NQN}\n")).unwrap();
    }
    assert_eq!(hint.resolve_block_device(s.root(), NQN).unwrap(), None);
    assert!(
        hint.is_empty(),
        "what no longer serves the NQN is forgotten: {hint:?}"
    );
    assert_eq!(resolve_block_device(s.root(), NQN).unwrap(), None);
}

#[test]
fn a_hinted_read_sees_a_path_going_away_at_once() {
    let s = FakeSys::multipath_y();
    let (_, mut hint) = SubsystemHint::scan(s.root(), NQN).unwrap();
    let d = hint.resolve_block_device(s.root(), NQN).unwrap().unwrap();
    assert_eq!(d.paths.len(), 2);
    s.set_state(0, "deleting");
    let d = hint.resolve_block_device(s.root(), NQN).unwrap().unwrap();
    let ctrls: Vec<u32> = d.paths.iter().map(|p| p.controller).collect();
    assert_eq!(ctrls, [1], "never a cached path");
    s.set_state(1, "dead");
    assert_eq!(hint.resolve_block_device(s.root(), NQN).unwrap(), None);
}

#[test]
fn an_object_is_learned_only_from_a_devpath_that_names_it() {
    let mut hint = SubsystemHint::default();
    assert!(hint.is_empty());
    let o = NvmeObject::from_devpath("/devices/virtual/nvme-fabrics/ctl/nvme9/nvme2c9n1").unwrap();
    assert_eq!(o, NvmeObject::Controller(9));
    hint.learn(o);
    assert_eq!(hint.objects().collect::<Vec<_>>(), [o]);
    assert_eq!(
        o.sysfs_dir(Path::new("/sys")),
        Path::new("/sys/class/nvme/nvme9")
    );
}

#[test]
fn a_new_subsystem_that_no_event_announced_is_found_by_the_safety_polls() {
    // The wait knows subsystem 0 (its controller being deleted); the reconnect comes back as
    // subsystem 1 and every event of it is lost.
    let s = FakeSys::with_controllers(NQN, &["deleting"]);
    let found = device_found_with_kernel(&s, ms(300), secs(10), |s, _| {
        std::fs::remove_file(s.root().join("class/nvme-subsystem/nvme-subsys0")).unwrap();
        std::fs::remove_file(s.root().join("class/nvme/nvme0")).unwrap();
        s.controller(1, NQN, 4420, "live")
            .subsystem(1, NQN, &[1])
            .mp_head(1, &NS1)
            .mp_path(1, 1, &NS1);
    });
    assert_eq!(found.device.name, "nvme1n1");
    let polls = node_io::wait::EVENT_SAFETY_POLL * node_io::wait::FULL_SCAN_EVERY;
    assert!(found.waited < polls + ms(500), "{:?}", found.waited);
}
