//! Loop devices and block sizes read from the real /sys (root only; skipped with a printed
//! reason otherwise).

mod common;

use std::path::Path;

use common::loop_dev;
use node_io::block::{list_loop_devices, loop_devices_backing, size_bytes};

#[test]
fn a_real_loop_device_is_listed_with_its_backing_file_and_size() {
    let Some(lo) = loop_dev(3 << 20, &[], &[]) else {
        return;
    };
    let backing = std::fs::canonicalize(lo.backing()).unwrap();
    let sys = Path::new("/sys");
    let all = list_loop_devices(sys).unwrap();
    let d = all
        .iter()
        .find(|d| d.name == lo.name)
        .unwrap_or_else(|| panic!("{} not in {all:?}", lo.name));
    assert_eq!(d.dev, lo.dev());
    assert_eq!(d.size_bytes, 3 << 20);
    assert_eq!(d.backing_file, backing);
    assert!(!d.backing_deleted && !d.autoclear);
    let mine = loop_devices_backing(sys, &backing).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].name, lo.name);
    assert_eq!(size_bytes(sys, lo.dev()).unwrap(), 3 << 20);
}

#[test]
fn a_loop_device_whose_file_was_deleted_backs_no_file_at_that_path() {
    let Some(lo) = loop_dev(1 << 20, &[], &[]) else {
        return;
    };
    let backing = std::fs::canonicalize(lo.backing()).unwrap();
    std::fs::remove_file(&backing).unwrap();
    let d = list_loop_devices(Path::new("/sys"))
        .unwrap()
        .into_iter()
        .find(|d| d.name == lo.name)
        .unwrap();
    assert!(d.backing_deleted, "{d:?}");
    assert_eq!(d.backing_file, backing, "the path without \" (deleted)\"");
    // A new file at the same path is not what the old device serves.
    std::fs::write(&backing, b"new").unwrap();
    assert!(loop_devices_backing(Path::new("/sys"), &backing)
        .unwrap()
        .is_empty());
}
