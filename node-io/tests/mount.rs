//! mount/umount on real mounts (root only; skipped with a printed reason otherwise): an ext4
//! loop device mounted with flags and data, read-only bind mounts, idempotent and lazy
//! unmounts, and the errno of each refusal.

mod common;

use std::path::Path;

use common::{have_tool, is_root, mkfs, skip, LoopDev};
use node_io::mount::{
    bind_mount, mount_filesystem, unmount, Errno, MountError, MountFlags, MountOp, UnmountMode,
    Unmounted,
};
use node_io::mountinfo::{read_mountinfo, MountInfo, Pid};

/// A temporary mount target; whatever is still mounted on it when a test ends, failed or
/// not, is unmounted (lazily) before the directory goes.
struct Target(tempfile::TempDir);

impl Target {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        while matches!(
            unmount(self.path(), UnmountMode::Detach),
            Ok(Unmounted::Unmounted)
        ) {}
    }
}

/// A mount target, or `None` (the skip printed) when `test` cannot run: not root.
fn target(test: &str) -> Option<Target> {
    if is_root() {
        Some(Target(tempfile::tempdir().unwrap()))
    } else {
        skip(test, "not root")
    }
}

/// Mounts a 1 MiB tmpfs of our own on `target`.
fn tmpfs_on(target: &Path) {
    let flags = MountFlags::empty();
    mount_filesystem(Path::new("tmpfs"), target, "tmpfs", flags, "size=1m").unwrap();
}

fn mount_at(target: &Path) -> Option<MountInfo> {
    read_mountinfo(Path::new("/proc"), Pid::Current)
        .unwrap()
        .by_target(target)
        .last()
        .map(|m| (*m).clone())
}

fn assert_unmounts(target: &Path, mode: UnmountMode, want: Unmounted) {
    assert_eq!(unmount(target, mode).unwrap(), want, "{}", target.display());
}

#[test]
fn ext4_on_a_loop_device_mounts_with_flags_and_data_and_unmounts_once() {
    let test = "ext4_on_a_loop_device_mounts_with_flags_and_data_and_unmounts_once";
    if !is_root() || !have_tool("mkfs.ext4") {
        return skip(test, "needs root and mkfs.ext4").unwrap_or(());
    }
    let lo = LoopDev::new(32 << 20).unwrap();
    mkfs("mkfs.ext4", &lo.path).unwrap();
    // Declared after the device: unmounted before it is detached.
    let dir = target(test).unwrap();
    mount_filesystem(
        &lo.path,
        dir.path(),
        "ext4",
        MountFlags::NOATIME | MountFlags::NODEV,
        "errors=remount-ro",
    )
    .unwrap();
    let m = mount_at(dir.path()).expect("mounted");
    assert_eq!(m.fs_type, "ext4");
    assert_eq!(m.dev, lo.dev());
    for o in ["noatime", "nodev", "rw"] {
        assert!(m.mount_options.iter().any(|x| x == o), "{o}: {m:?}");
    }
    assert!(
        m.super_options.iter().any(|x| x == "errors=remount-ro"),
        "{m:?}"
    );
    // Mounting it again on the same target: the kernel says EBUSY.
    let e = mount_filesystem(&lo.path, dir.path(), "ext4", MountFlags::empty(), "").unwrap_err();
    assert_eq!(e.errno(), Some(Errno::BUSY), "{e}");
    assert_unmounts(dir.path(), UnmountMode::Normal, Unmounted::Unmounted);
    assert!(mount_at(dir.path()).is_none());
    // A second unmount is a no-op.
    assert_unmounts(dir.path(), UnmountMode::Normal, Unmounted::NotMounted);
}

#[test]
fn refusals_carry_the_errno_and_name_the_paths() {
    let Some(dir) = target("refusals_carry_the_errno_and_name_the_paths") else {
        return;
    };
    let missing = dir.path().join("no-such-device");
    let e = mount_filesystem(&missing, dir.path(), "ext4", MountFlags::empty(), "").unwrap_err();
    assert_eq!(e.errno(), Some(Errno::NOENT), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("no-such-device") && msg.contains("mount"),
        "{msg}"
    );
    let e = mount_filesystem(
        Path::new("none"),
        dir.path(),
        "no-such-fs-type",
        MountFlags::empty(),
        "",
    )
    .unwrap_err();
    assert_eq!(e.errno(), Some(Errno::NODEV), "{e}");
    match e {
        MountError::Kernel { op, target, .. } => {
            assert_eq!(op, MountOp::Mount);
            assert_eq!(target, dir.path());
        }
        other => panic!("{other:?}"),
    }
    assert_unmounts(
        &dir.path().join("gone"),
        UnmountMode::Normal,
        Unmounted::NotMounted,
    );
}

#[test]
fn a_read_only_bind_mount_refuses_writes_and_the_source_stays_writable() {
    let test = "a_read_only_bind_mount_refuses_writes_and_the_source_stays_writable";
    let (Some(src), Some(dst)) = (target(test), target(test)) else {
        return;
    };
    // A tmpfs of our own as the source, so the bind does not share a mount with /tmp.
    tmpfs_on(src.path());
    std::fs::write(src.path().join("f"), "data").unwrap();
    bind_mount(
        src.path(),
        dst.path(),
        MountFlags::RDONLY | MountFlags::NOEXEC,
    )
    .unwrap();
    let m = mount_at(dst.path()).expect("bound");
    assert!(m.mount_options.iter().any(|o| o == "ro"), "{m:?}");
    assert!(m.mount_options.iter().any(|o| o == "noexec"), "{m:?}");
    assert_eq!(
        std::fs::read_to_string(dst.path().join("f")).unwrap(),
        "data"
    );
    let e = std::fs::write(dst.path().join("g"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(Errno::ROFS.raw_os_error()), "{e}");
    std::fs::write(src.path().join("g"), "x").unwrap();
    assert!(dst.path().join("g").exists(), "the bind shows the source");
    // Without flags: a plain, writable bind (no remount).
    let dst2 = target(test).unwrap();
    bind_mount(src.path(), dst2.path(), MountFlags::empty()).unwrap();
    std::fs::write(dst2.path().join("h"), "y").unwrap();
    assert_unmounts(dst2.path(), UnmountMode::Normal, Unmounted::Unmounted);
}

#[test]
fn a_bind_of_a_missing_source_fails_and_leaves_nothing_mounted() {
    let Some(dst) = target("a_bind_of_a_missing_source_fails_and_leaves_nothing_mounted") else {
        return;
    };
    let e = bind_mount(&dst.path().join("missing"), dst.path(), MountFlags::RDONLY).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::NOENT), "{e}");
    assert!(matches!(
        e,
        MountError::Kernel {
            op: MountOp::Bind,
            ..
        }
    ));
    assert!(mount_at(dst.path()).is_none());
}

#[test]
fn a_busy_mount_is_ebusy_until_detached_lazily() {
    let Some(dir) = target("a_busy_mount_is_ebusy_until_detached_lazily") else {
        return;
    };
    tmpfs_on(dir.path());
    let held = std::fs::File::create(dir.path().join("open")).unwrap();
    let e = unmount(dir.path(), UnmountMode::Normal).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::BUSY), "{e}");
    assert!(e.to_string().contains("unmount"), "{e}");
    assert!(mount_at(dir.path()).is_some(), "still mounted after EBUSY");
    assert_unmounts(dir.path(), UnmountMode::Detach, Unmounted::Unmounted);
    assert!(mount_at(dir.path()).is_none(), "detached from the tree");
    drop(held);
}
