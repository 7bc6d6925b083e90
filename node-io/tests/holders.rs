//! Holder scans against real loop devices held by real child processes.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{have_tool, mkfs, skip, HoldingChild, LoopDev, Mounted};
use node_io::dev_num::DevNum;
use node_io::holders::{
    exclusively_claimed, holder_report, holder_report_with_claim, mounts_of, scan_processes,
    Holder, ScanMode,
};
use node_io::testing::MountedElsewhere;

const MODES: [ScanMode; 4] = [
    ScanMode::Auto,
    ScanMode::Sequential,
    ScanMode::IoUring,
    ScanMode::Parallel,
];
const PROC: &str = "/proc";

/// A 16 MiB loop device when `tools` are installed (see [`common::loop_dev`]).
fn loop_dev(tools: &[&str]) -> Option<LoopDev> {
    common::loop_dev(16 << 20, &[], tools)
}

/// Holders of `dev` per mode; asserts every mode agrees.
fn holders_all_modes(devs: &[DevNum]) -> Vec<Holder> {
    let results: Vec<Vec<Holder>> = MODES
        .iter()
        .map(|m| scan_processes(Path::new(PROC), devs, *m).unwrap().holders)
        .collect();
    for (m, r) in MODES.iter().zip(&results) {
        assert_eq!(r, &results[0], "{m:?} disagrees with {:?}", MODES[0]);
    }
    results.into_iter().next().unwrap()
}

#[test]
fn every_scan_form_finds_exactly_the_child_holding_a_loop_device() {
    let Some(lo) = loop_dev(&[]) else {
        return;
    };
    let dev = lo.dev();
    assert!(
        holders_all_modes(&[dev]).is_empty(),
        "held before the child"
    );
    let mut child = HoldingChild::open(&lo.path);
    let found = holders_all_modes(&[dev]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].pid, child.pid());
    assert_eq!(found[0].fd, 3);
    assert_eq!(found[0].dev, dev);
    assert!(
        ["sh", "sleep"].contains(&found[0].comm.as_str()),
        "{found:?}"
    );

    child.stop();
    assert!(
        holders_all_modes(&[dev]).is_empty(),
        "still held after exit"
    );
}

#[test]
fn a_node_made_with_mknod_elsewhere_counts_as_the_same_device() {
    let Some(lo) = loop_dev(&[]) else {
        return;
    };
    let dev = lo.dev();
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("not-a-loop-name");
    let st = std::process::Command::new("mknod")
        .arg(&node)
        .arg("b")
        .arg(dev.major.to_string())
        .arg(dev.minor.to_string())
        .status()
        .unwrap();
    if !st.success() {
        skip::<()>("a_node_made_with_mknod_elsewhere", "mknod failed");
        return;
    }
    let child = HoldingChild::open(&node);
    let found = holders_all_modes(&[dev]);
    assert_eq!(
        found.iter().map(|h| h.pid).collect::<Vec<_>>(),
        vec![child.pid()]
    );
    // A different device number is not matched by the same node.
    let other = DevNum::new(dev.major, dev.minor + 1000);
    assert!(holders_all_modes(&[other]).is_empty());
}

#[test]
fn holder_report_names_the_process_and_is_empty_after_it_exits() {
    let Some(lo) = loop_dev(&[]) else {
        return;
    };
    let mut child = HoldingChild::open(&lo.path);
    let sys = Path::new("/sys");
    let report = holder_report(Path::new(PROC), sys, &lo.name, ScanMode::default()).unwrap();
    assert_eq!(report.device, lo.name);
    assert_eq!(report.processes.len(), 1, "{report:?}");
    assert_eq!(report.processes[0].pid, child.pid());
    assert!(report.mounts.is_empty() && report.sysfs_holders.is_empty());
    assert!(!report.is_empty());
    child.stop();
    let report = holder_report(Path::new(PROC), sys, &lo.name, ScanMode::default()).unwrap();
    assert!(report.is_empty(), "{report:?}");
}

#[test]
fn mounts_of_finds_a_mounted_loop_filesystem_until_unmounted() {
    let test = "mounts_of_finds_a_mounted_loop_filesystem_until_unmounted";
    let Some(lo) = loop_dev(&["mkfs.ext4"]) else {
        return;
    };
    mkfs("mkfs.ext4", &lo.path).unwrap();
    let dev = lo.dev();
    let proc_root = Path::new(PROC);
    assert!(mounts_of(proc_root, dev).unwrap().is_empty());
    let m = match Mounted::new(&lo.path) {
        Ok(m) => m,
        Err(e) => {
            skip::<()>(test, e);
            return;
        }
    };
    let mounts = mounts_of(proc_root, dev).unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].mount_point, m.dir.path());
    assert_eq!(mounts[0].fs_type, "ext4");
    let report =
        holder_report(proc_root, Path::new("/sys"), &lo.name, ScanMode::Sequential).unwrap();
    assert_eq!(report.mounts.len(), 1);
    assert!(!report.is_empty());
    drop(m);
    assert!(mounts_of(proc_root, dev).unwrap().is_empty());
}

#[test]
fn a_fake_proc_tree_with_vanished_and_unreadable_entries_is_scanned() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    // Vanished between listing /proc and opening its fd directory: skipped silently.
    std::fs::create_dir(p.join("4000000")).unwrap();
    // A dangling fd entry (closed mid-scan) is ignored; an fd on /dev/null is matched by
    // its device number through the link, like a /proc magic link.
    std::fs::create_dir_all(p.join("123/fd")).unwrap();
    std::fs::write(p.join("123/comm"), "fake\n").unwrap();
    std::os::unix::fs::symlink("/nonexistent/node-io", p.join("123/fd/5")).unwrap();
    std::os::unix::fs::symlink("/dev/null", p.join("123/fd/7")).unwrap();
    // An fd "directory" that cannot be listed: reported, not fatal.
    std::fs::create_dir(p.join("124")).unwrap();
    std::fs::write(p.join("124/fd"), "").unwrap();
    std::fs::create_dir(p.join("not-a-pid")).unwrap();
    let null = DevNum::new(1, 3);
    for mode in MODES {
        let scan = scan_processes(p, &[null], mode).unwrap();
        assert_eq!(scan.scanned_pids, 1, "{mode:?}");
        assert_eq!(scan.skipped_pids.len(), 1, "{mode:?}");
        assert_eq!(scan.skipped_pids[0].pid, 124);
        assert!(scan.skipped_pids[0]
            .error
            .to_lowercase()
            .contains("directory"));
        // /dev/null is a character device: never a block-device holder.
        assert!(scan.holders.is_empty(), "{mode:?}: {:?}", scan.holders);
    }
}

#[test]
fn a_fake_proc_entry_linking_to_the_loop_device_is_a_holder() {
    let Some(lo) = loop_dev(&[]) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("77/fd")).unwrap();
    std::fs::write(t.path().join("77/comm"), "qemu-kvm\n").unwrap();
    std::os::unix::fs::symlink(&lo.path, t.path().join("77/fd/12")).unwrap();
    for mode in MODES {
        let scan = scan_processes(t.path(), &[lo.dev()], mode).unwrap();
        assert_eq!(
            scan.holders,
            vec![Holder {
                pid: 77,
                comm: "qemu-kvm".into(),
                fd: 12,
                dev: lo.dev()
            }],
            "{mode:?}"
        );
    }
}

#[test]
fn scan_of_the_whole_host_completes_quickly_as_root() {
    // Not a benchmark: guards against a form that hangs or errors on real /proc.
    for mode in MODES {
        let start = Instant::now();
        let scan = scan_processes(Path::new(PROC), &[DevNum::new(7, 9999)], mode).unwrap();
        assert!(scan.scanned_pids > 1, "{mode:?}");
        assert!(start.elapsed() < Duration::from_secs(10), "{mode:?}");
    }
}

/// Set in the re-executed copy of this test binary that runs as `nobody`.
const AS_NOBODY: &str = "NODE_IO_HOLDERS_AS_NOBODY";

#[test]
fn processes_we_may_not_inspect_are_reported_not_fatal() {
    let test = "processes_we_may_not_inspect_are_reported_not_fatal";
    if std::env::var_os(AS_NOBODY).is_some() {
        // Running unprivileged: pid 1's fd table is EACCES.
        for mode in MODES {
            let scan = scan_processes(Path::new(PROC), &[DevNum::new(7, 0)], mode).unwrap();
            let init = scan.skipped_pids.iter().find(|s| s.pid == 1);
            let init = init.unwrap_or_else(|| panic!("{mode:?}: pid 1 not reported"));
            assert!(init.error.contains("ermission denied"), "{init:?}");
            assert!(scan.scanned_pids >= 1, "{mode:?}: own process unreadable");
        }
        println!("UNPRIVILEGED-SCAN-OK");
        return;
    }
    if !common::is_root() || !have_tool("setpriv") {
        skip::<()>(test, "needs root and setpriv to re-run as nobody");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(AS_NOBODY, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && stdout.contains("Permission denied") && !stdout.contains("test ") {
        skip::<()>(test, "test binary not executable by nobody");
        return;
    }
    assert!(
        out.status.success() && stdout.contains("UNPRIVILEGED-SCAN-OK"),
        "unprivileged run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Until the kernel releases a claim (a dead namespace's mounts go away asynchronously).
fn wait_unclaimed(dev: &Path) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if !exclusively_claimed(dev).unwrap() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_mount_in_another_namespace_is_seen_only_by_the_exclusive_open_check() {
    let test = "a_mount_in_another_namespace_is_seen_only_by_the_exclusive_open_check";
    let Some(lo) = loop_dev(&["mkfs.ext4", "unshare"]) else {
        return;
    };
    mkfs("mkfs.ext4", &lo.path).unwrap();
    assert!(!exclusively_claimed(&lo.path).unwrap(), "fresh loop device");
    let m = match MountedElsewhere::new(&lo.path) {
        Ok(m) => m,
        Err(e) => {
            skip::<()>(test, e);
            return;
        }
    };
    // The scan alone misses it: no fd, and neither readable mountinfo lists it.
    let report = holder_report(
        Path::new(PROC),
        Path::new("/sys"),
        &lo.name,
        ScanMode::default(),
    )
    .unwrap();
    assert!(
        report.processes.is_empty() && report.mounts.is_empty(),
        "{report:?}"
    );
    assert!(exclusively_claimed(&lo.path).unwrap(), "mounted elsewhere");
    let with_claim = holder_report_with_claim(
        Path::new(PROC),
        Path::new("/sys"),
        &lo.name,
        &lo.path,
        ScanMode::default(),
    )
    .unwrap();
    assert!(
        with_claim.claimed && !with_claim.is_empty(),
        "{with_claim:?}"
    );
    drop(m);
    assert!(
        wait_unclaimed(&lo.path),
        "claim released with the namespace"
    );
}

#[test]
fn an_exclusive_opener_claims_and_a_plain_reader_does_not() {
    let Some(lo) = loop_dev(&[]) else {
        return;
    };
    let mut reader = HoldingChild::open(&lo.path);
    assert!(
        !exclusively_claimed(&lo.path).unwrap(),
        "a plain open is no claim"
    );
    reader.stop();
    use std::os::unix::fs::OpenOptionsExt;
    let excl = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(&lo.path)
        .unwrap();
    assert!(exclusively_claimed(&lo.path).unwrap());
    drop(excl);
    assert!(!exclusively_claimed(&lo.path).unwrap());
    assert!(!exclusively_claimed(Path::new("/nonexistent-dev")).is_ok_and(|c| c));
}
