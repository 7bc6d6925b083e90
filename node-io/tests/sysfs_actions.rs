//! What a controller does (delete, rescan) on fake sysfs trees shaped like the kernel 6.1
//! dump: the write goes to the controller's own attribute, under the injected root, and
//! only to the controllers of the subsystem asked for.

mod common;

use std::fs;

use common::{FakeSys, NQN, NS1, OTHER_NQN};
use node_io::sysfs::{
    controllers_for_nqn, disconnect_subsystem, list_controllers, SysfsError, Written,
};

fn written(s: &FakeSys, ctrl: u32, attr: &str) -> String {
    fs::read_to_string(s.ctl_dir(ctrl).join(attr)).unwrap()
}

#[test]
fn disconnect_subsystem_deletes_each_live_or_connecting_controller_of_the_nqn_only() {
    let s = FakeSys::with_controllers(NQN, &["live", "connecting", "deleting"]);
    s.controller(3, OTHER_NQN, 4420, "live").mp_head(0, &NS1);
    let done = disconnect_subsystem(s.root(), NQN).unwrap();
    let names: Vec<(String, Written)> = done.iter().map(|(c, w)| (c.name(), *w)).collect();
    assert_eq!(
        names,
        [
            ("nvme0".to_string(), Written::Done),
            ("nvme1".to_string(), Written::Done)
        ]
    );
    assert_eq!(written(&s, 0, "delete_controller"), "1");
    assert_eq!(written(&s, 1, "delete_controller"), "1");
    assert_eq!(written(&s, 2, "delete_controller"), "", "already deleting");
    assert_eq!(written(&s, 3, "delete_controller"), "", "another subsystem");
}

#[test]
fn a_controller_gone_before_the_write_is_not_an_error() {
    let s = FakeSys::new();
    s.controller(0, NQN, 4420, "live");
    let c = list_controllers(s.root()).unwrap().remove(0);
    fs::remove_dir_all(s.ctl_dir(0)).unwrap();
    assert_eq!(c.disconnect(s.root()).unwrap(), Written::Gone);
    assert_eq!(c.rescan(s.root()).unwrap(), Written::Gone);
}

#[test]
fn rescan_writes_the_controllers_own_attribute_under_the_injected_root() {
    let s = FakeSys::multipath_y();
    let cs = controllers_for_nqn(s.root(), NQN).unwrap();
    assert_eq!(cs[1].sysfs_dir(s.root()), s.root().join("class/nvme/nvme1"));
    assert_eq!(cs[1].rescan(s.root()).unwrap(), Written::Done);
    assert_eq!(written(&s, 1, "rescan_controller"), "1");
    assert_eq!(written(&s, 0, "rescan_controller"), "");
    assert_eq!(
        written(&s, 1, "delete_controller"),
        "",
        "rescan deletes nothing"
    );
}

#[test]
fn a_refused_write_is_an_error_naming_the_attribute() {
    let s = FakeSys::new();
    s.controller(0, NQN, 4420, "live");
    // A directory where the attribute should be: open(O_WRONLY) fails with EISDIR.
    let attr = s.ctl_dir(0).join("delete_controller");
    fs::remove_file(&attr).unwrap();
    fs::create_dir(&attr).unwrap();
    let e = disconnect_subsystem(s.root(), NQN).unwrap_err();
    match &e {
        SysfsError::Write { path, source } => {
            assert!(path.ends_with("nvme0/delete_controller"), "{e}");
            assert_eq!(source.raw_os_error(), Some(libc::EISDIR));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with("writing "), "{e}");
}
