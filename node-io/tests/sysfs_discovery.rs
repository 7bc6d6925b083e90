//! NQN → block device discovery on fake sysfs trees shaped like the kernel 6.1 dump in
//! /work/shared/reference/sysfs-nvme-tcp-6.1.txt: the same class symlinks, device
//! directories, `device` links and attribute files (with their trailing newlines).

mod common;

use std::fs;

use common::{FakeSys, Ns, HOSTNQN, NQN, NS1, OTHER_NQN, UUID};

use node_io::dev_num::DevNum;
use node_io::sysfs::{
    controllers_for_nqn, list_block_devices, list_controllers, list_subsystems,
    resolve_block_device, resolve_namespace, Access, ControllerState, SysfsError,
};

#[test]
fn lists_controllers_with_their_attributes() {
    let s = FakeSys::multipath_y();
    let cs = list_controllers(s.root()).unwrap();
    assert_eq!(cs.len(), 2);
    let c = &cs[1];
    assert_eq!(c.instance, 1);
    assert_eq!(c.name(), "nvme1");
    assert_eq!(c.subsysnqn, NQN);
    assert_eq!(c.transport, "tcp");
    assert_eq!(c.state, ControllerState::Live);
    assert_eq!(c.cntlid, Some(2));
    assert_eq!(c.hostnqn.as_deref(), Some(HOSTNQN));
    assert_eq!(c.dev, Some(DevNum::new(247, 1)));
    let a = c.address.as_ref().unwrap();
    assert_eq!(a.traddr, "127.0.0.1");
    assert_eq!(a.trsvcid.as_deref(), Some("4421"));
    assert_eq!(a.src_addr.as_deref(), Some("127.0.0.1"));
}

#[test]
fn lists_subsystems_with_linked_controllers() {
    let s = FakeSys::multipath_y();
    let subs = list_subsystems(s.root()).unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].instance, 0);
    assert_eq!(subs[0].subsysnqn, NQN);
    assert_eq!(subs[0].controllers, [0, 1]);
}

#[test]
fn empty_sysfs_has_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(list_controllers(dir.path()).unwrap().is_empty());
    assert!(resolve_block_device(dir.path(), NQN).unwrap().is_none());
}

#[test]
fn multipath_head_is_resolved_not_the_hidden_paths() {
    let s = FakeSys::multipath_y();
    let d = resolve_block_device(s.root(), NQN).unwrap().unwrap();
    assert_eq!(d.name, "nvme0n1");
    assert_eq!(d.dev, DevNum::new(259, 1));
    assert_eq!(d.nsid, 1);
    let ids = d.ids(s.root()).unwrap().expect("the head is there");
    assert_eq!(ids.uuid.as_deref(), Some(UUID));
    assert_eq!(ids.wwid.as_deref(), Some(&*format!("uuid.{UUID}")));
    assert_eq!(d.size_bytes, 131072 * 512);
    assert!(d.multipath);
    assert_eq!(d.access, Access::Live);
    let ctrls: Vec<u32> = d.paths.iter().map(|p| p.controller).collect();
    assert_eq!(ctrls, [0, 1]);
    assert!(resolve_block_device(s.root(), OTHER_NQN).unwrap().is_none());
    std::fs::remove_file(s.root().join("block/nvme0n1")).unwrap();
    assert_eq!(d.ids(s.root()).unwrap(), None, "gone: no identifiers");
}

#[test]
fn without_multipath_each_controller_has_its_own_disk() {
    let s = FakeSys::multipath_n();
    let all = list_block_devices(s.root(), NQN).unwrap();
    let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["nvme0n1", "nvme1n1"]);
    assert!(all.iter().all(|d| !d.multipath && d.paths.len() == 1));
    let d = resolve_block_device(s.root(), NQN).unwrap().unwrap();
    assert_eq!(d.name, "nvme0n1");
    assert_eq!(d.dev, DevNum::new(259, 0));
    assert_eq!(d.paths[0].controller, 0);
}

#[test]
fn without_multipath_a_deleting_controller_hands_over_to_the_other() {
    let s = FakeSys::multipath_n();
    s.set_state(0, "deleting");
    let d = resolve_block_device(s.root(), NQN).unwrap().unwrap();
    assert_eq!(d.name, "nvme1n1");
    assert_eq!(d.dev, DevNum::new(259, 1));
}

#[test]
fn name_number_is_not_trusted_to_pick_the_subsystem() {
    // multipath=N: nvme0n1 belongs to controller 0, which serves vol2, while
    // nvme-subsys0 (same number) is vol1's subsystem and has no namespace yet.
    let s = FakeSys::new();
    s.controller(0, OTHER_NQN, 4420, "live")
        .controller(1, NQN, 4420, "live")
        .subsystem(0, NQN, &[1])
        .subsystem(1, OTHER_NQN, &[0])
        .private_ns(0, &NS1);
    assert!(resolve_block_device(s.root(), NQN).unwrap().is_none());
    let d = resolve_block_device(s.root(), OTHER_NQN).unwrap().unwrap();
    assert_eq!(d.name, "nvme0n1");
}

#[test]
fn survives_controller_renumbering_without_multipath() {
    // nvme0 was deleted and the volume reconnected as nvme3.
    let s = FakeSys::new();
    s.controller(3, NQN, 4420, "live")
        .subsystem(0, NQN, &[3])
        .private_ns(3, &Ns { minor: 4, ..NS1 });
    let d = resolve_block_device(s.root(), NQN).unwrap().unwrap();
    assert_eq!(d.name, "nvme3n1");
    assert_eq!(d.dev, DevNum::new(259, 4));
    assert_eq!(controllers_for_nqn(s.root(), NQN).unwrap()[0].instance, 3);
}

#[test]
fn survives_controller_renumbering_with_multipath_while_old_one_deletes() {
    let s = FakeSys::new();
    s.controller(0, NQN, 4420, "deleting")
        .controller(3, NQN, 4420, "live")
        .subsystem(0, NQN, &[0, 3])
        .mp_head(0, &NS1)
        .mp_path(0, 0, &NS1)
        .mp_path(0, 3, &NS1);
    let d = resolve_block_device(s.root(), NQN).unwrap().unwrap();
    assert_eq!(d.name, "nvme0n1");
    assert_eq!(d.access, Access::Live);
    let ctrls: Vec<u32> = d.paths.iter().map(|p| p.controller).collect();
    assert_eq!(ctrls, [3], "the deleting controller is not a path");
}

#[test]
fn only_deleting_controllers_means_no_device() {
    let s = FakeSys::multipath_y();
    s.set_state(0, "deleting");
    s.set_state(1, "deleting (no IO)");
    assert!(resolve_block_device(s.root(), NQN).unwrap().is_none());
    let n = FakeSys::multipath_n();
    n.set_state(0, "dead");
    n.set_state(1, "deleting");
    assert!(resolve_block_device(n.root(), NQN).unwrap().is_none());
}

#[test]
fn connecting_controller_is_reported() {
    let s = FakeSys::multipath_y();
    s.set_state(0, "connecting");
    s.set_state(1, "resetting");
    let d = resolve_block_device(s.root(), NQN).unwrap().unwrap();
    assert_eq!(d.access, Access::Connecting);
    assert_eq!(d.paths[0].state, ControllerState::Connecting);
    // One live path is enough for I/O.
    s.set_state(1, "live");
    let d = resolve_block_device(s.root(), NQN).unwrap().unwrap();
    assert_eq!(d.access, Access::Live);
}

#[test]
fn connected_but_not_yet_scanned_is_none() {
    let s = FakeSys::new();
    s.controller(0, NQN, 4420, "connecting")
        .subsystem(0, NQN, &[0]);
    assert!(resolve_block_device(s.root(), NQN).unwrap().is_none());
    assert_eq!(
        controllers_for_nqn(s.root(), NQN).unwrap()[0].state,
        ControllerState::Connecting
    );
}

#[test]
fn two_namespaces_are_ambiguous_but_each_resolves_by_nsid() {
    let s = FakeSys::multipath_y();
    let ns2 = Ns {
        ns: 2,
        nsid: 2,
        minor: 2,
        uuid: "11111111-2222-3333-4444-555555555555",
        sectors: 2048,
    };
    s.mp_head(0, &ns2).mp_path(0, 0, &ns2).mp_path(0, 1, &ns2);
    match resolve_block_device(s.root(), NQN) {
        Err(SysfsError::AmbiguousNamespaces { names, .. }) => {
            assert_eq!(names, ["nvme0n1", "nvme0n2"])
        }
        other => panic!("{other:?}"),
    }
    let d2 = resolve_namespace(s.root(), NQN, 2).unwrap().unwrap();
    assert_eq!(d2.name, "nvme0n2");
    assert_eq!(d2.size_bytes, 2048 * 512);
    assert_eq!(d2.dev, DevNum::new(259, 2));
    assert!(resolve_namespace(s.root(), NQN, 3).unwrap().is_none());
}

#[test]
fn resolution_is_fresh_on_every_call() {
    let s = FakeSys::multipath_n();
    assert_eq!(
        resolve_block_device(s.root(), NQN).unwrap().unwrap().name,
        "nvme0n1"
    );
    s.set_state(0, "connecting");
    assert_eq!(
        resolve_block_device(s.root(), NQN).unwrap().unwrap().name,
        "nvme1n1"
    );
}

#[test]
fn garbage_in_a_numeric_attribute_is_a_typed_error() {
    let s = FakeSys::multipath_y();
    fs::write(s.subsys_dir(0).join("nvme0n1/size"), "-5\n").unwrap();
    match resolve_block_device(s.root(), NQN) {
        Err(SysfsError::Parse { path, content }) => {
            assert!(path.ends_with("nvme0n1/size"));
            assert_eq!(content, "-5");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn controller_without_src_addr_parses() {
    let s = FakeSys::new();
    s.controller(2, NQN, 4420, "live");
    fs::write(
        s.ctl_dir(2).join("address"),
        "traddr=10.0.0.9,trsvcid=4420\n",
    )
    .unwrap();
    let c = &controllers_for_nqn(s.root(), NQN).unwrap()[0];
    let a = c.address.as_ref().unwrap();
    assert_eq!(
        (a.traddr.as_str(), a.src_addr.as_deref()),
        ("10.0.0.9", None)
    );
    assert_eq!(c.address_raw, "traddr=10.0.0.9,trsvcid=4420");
}
