//! Who holds a block device: processes with an open fd on it, mounts of it, and kernel
//! holders (device-mapper, md) listed in sysfs.
//!
//! Open fds are matched by device number, never by path: each `<proc>/<pid>/fd/<n>` magic
//! link is stat'ed relative to the open fd directory and its `st_rdev` compared, so a node
//! made with mknod anywhere (a container's own /dev) counts too. This is what `lsof` and
//! `fuser` do, without their per-process readlink/stat of unrelated paths.
//!
//! The scan comes in three forms with identical results, and a default that picks between
//! one thread and several per scan (see [`ScanMode`], [`plan`]). Processes and
//! fds that vanish mid-scan are skipped; a process we may not inspect is reported in
//! `skipped_pids` rather than failing the scan, so the caller can decide.

use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::dev_num::DevNum;
use crate::mountinfo::{read_mountinfo, MountInfo, Pid, ReadError};

pub mod plan;
mod scan;

pub use plan::{choose_plan, HostLoad, ScanPlan};

/// A process holding the device open.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Holder {
    pub pid: u32,
    /// `<proc>/<pid>/comm`; `"?"` when the process exited before it could be read.
    pub comm: String,
    pub fd: u32,
    /// The device the fd is open on (the disk or one of its partitions).
    pub dev: DevNum,
}

/// A process whose fds could not be inspected (EACCES without CAP_SYS_PTRACE, or an
/// unexpected error). Its absence from `holders` proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SkippedPid {
    pub pid: u32,
    pub error: String,
}

/// The result of scanning every process's fds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessScan {
    /// Sorted by pid, then fd.
    pub holders: Vec<Holder>,
    pub skipped_pids: Vec<SkippedPid>,
    /// Processes whose fd table was read completely.
    pub scanned_pids: usize,
    /// How the scan ran (for logs that explain a slow or parallel scan).
    pub plan: ScanPlan,
}

/// How the fd scan runs. All forms give the same answer; they differ in speed only.
///
/// Default: [`ScanMode::Auto`], which picks one thread or several per scan from what the host
/// offers ([`plan::choose_plan`]: idle cores this process may use, number of processes).
/// Measured side by side with `fuser` and `lsof` in `node-io/benches/holders.rs`; see
/// docs/architecture.md ("Holder scan") for the figures. io_uring loses on every host
/// measured: the kernel punts IORING_OP_STATX to an io-wq worker (REQ_F_FORCE_ASYNC), a
/// thread hop per entry for work that is pure syscall CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ScanMode {
    /// One thread or several, chosen per scan by [`plan::choose_plan`].
    #[default]
    Auto,
    /// One thread: open each `<proc>/<pid>/fd`, statx every entry relative to it.
    Sequential,
    /// Like `Sequential`, but the statx calls are submitted as IORING_OP_STATX batches
    /// on node-io's ring thread.
    IoUring,
    /// The pid list split over `available_parallelism()` threads, each sequential, whatever
    /// the host's load.
    Parallel,
}

#[derive(Debug, Error)]
pub enum HolderError {
    #[error("listing processes in {path}: {source}")]
    ListProcesses {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("io_uring holder scan unavailable: {reason}")]
    RingUnavailable { reason: String },
    #[error("io_uring holder scan: {source}")]
    Ring {
        #[source]
        source: io::Error,
    },
    #[error("reading {path}: {source}")]
    Sysfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    SysfsParse { path: PathBuf, content: String },
    #[error("{name:?} is not a block device name")]
    BadDeviceName { name: String },
    #[error(transparent)]
    Mountinfo(#[from] ReadError),
}

/// Everything that keeps a device busy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderReport {
    /// The kernel name of the device asked about (`nvme0n1`).
    pub device: String,
    pub processes: Vec<Holder>,
    /// Processes that could not be inspected; see [`HolderReport::is_complete`].
    pub skipped_pids: Vec<SkippedPid>,
    /// Mounts of the device or its partitions (host and current mount namespaces).
    pub mounts: Vec<MountInfo>,
    /// Kernel holders of the device or its partitions (`dm-0`, `md0`).
    pub sysfs_holders: Vec<String>,
    /// The kernel refused an exclusive open ([`exclusively_claimed`]): mounted or claimed
    /// somewhere the scan above cannot see (e.g. a mount in another mount namespace).
    pub claimed: bool,
}

impl HolderReport {
    /// Nothing found holding the device. Check [`is_complete`](Self::is_complete) too:
    /// a process we could not inspect may still hold it.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
            && self.mounts.is_empty()
            && self.sysfs_holders.is_empty()
            && !self.claimed
    }

    /// Every process's fd table was read.
    pub fn is_complete(&self) -> bool {
        self.skipped_pids.is_empty()
    }
}

/// Whether the kernel refuses an exclusive open of the block device `dev_path` (EBUSY): it
/// is mounted (in ANY mount namespace — mountinfo is per namespace and only two are read
/// above), or claimed by device-mapper, md, swap or another `O_EXCL` opener; a claimed
/// partition makes the whole disk busy too. The claim is checked before the disk is opened,
/// so a dead target answers EBUSY without any I/O. Read-only: closing it wakes no udev rule.
pub fn exclusively_claimed(dev_path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dev_path)
    {
        Ok(_) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(true),
        Err(e) => Err(e),
    }
}

/// [`holder_report`] of `devname`, plus the kernel's claim on its node `dev_path`
/// ([`exclusively_claimed`]), which sees mounts in every mount namespace. Only EBUSY counts:
/// any other open error (the node already gone, a dead target) comes after the claim check.
pub fn holder_report_with_claim(
    proc_root: &Path,
    sys_root: &Path,
    devname: &str,
    dev_path: &Path,
    mode: ScanMode,
) -> Result<HolderReport, HolderError> {
    let mut report = holder_report(proc_root, sys_root, devname, mode)?;
    report.claimed = exclusively_claimed(dev_path).unwrap_or(false);
    Ok(report)
}

/// Processes with an fd open on any of `devs`.
pub fn scan_processes(
    proc_root: &Path,
    devs: &[DevNum],
    mode: ScanMode,
) -> Result<ProcessScan, HolderError> {
    let pids = scan::list_pids(proc_root)?;
    let plan = match mode {
        ScanMode::Auto => choose_plan(HostLoad::read(proc_root).as_ref(), pids.len()),
        ScanMode::Sequential | ScanMode::IoUring => ScanPlan::Sequential,
        ScanMode::Parallel => ScanPlan::Parallel {
            threads: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        },
    };
    let mut scan = match (mode, plan) {
        (ScanMode::IoUring, _) => scan::scan_uring(proc_root, &pids, devs)?,
        (_, ScanPlan::Sequential) => scan::scan_sequential(proc_root, &pids, devs),
        (_, ScanPlan::Parallel { threads }) => scan::scan_parallel(proc_root, &pids, devs, threads),
    };
    scan.plan = plan;
    scan.holders.sort();
    scan.skipped_pids.sort();
    Ok(scan)
}

/// Mounts of `dev` in the host's mount namespace (`<proc>/1`, which the node plugin
/// sees with hostPID) and in our own, without duplicates.
pub fn mounts_of(proc_root: &Path, dev: DevNum) -> Result<Vec<MountInfo>, HolderError> {
    let mut out: Vec<MountInfo> = Vec::new();
    for pid in [Pid::Id(1), Pid::Current] {
        let table = read_mountinfo(proc_root, pid)?;
        for m in table.by_device(dev) {
            let dup = out
                .iter()
                .any(|o| o.mount_point == m.mount_point && o.root == m.root);
            if !dup {
                out.push(m.clone());
            }
        }
    }
    Ok(out)
}

/// Kernel holders of `devname`: the entries of `<sys>/class/block/<devname>/holders`.
pub fn sysfs_holders(sys_root: &Path, devname: &str) -> Result<Vec<String>, HolderError> {
    let dir = block_dir(sys_root, devname)?.join("holders");
    let entries = std::fs::read_dir(&dir).map_err(|source| HolderError::Sysfs {
        path: dir.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|source| HolderError::Sysfs {
            path: dir.clone(),
            source,
        })?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    out.sort();
    Ok(out)
}

/// Everything holding `devname` or one of its partitions.
pub fn holder_report(
    proc_root: &Path,
    sys_root: &Path,
    devname: &str,
    mode: ScanMode,
) -> Result<HolderReport, HolderError> {
    let dir = block_dir(sys_root, devname)?;
    let mut devices = vec![(devname.to_string(), read_dev(&dir.join("dev"))?)];
    devices.extend(partitions(&dir)?);
    let nums: Vec<DevNum> = devices.iter().map(|(_, d)| *d).collect();
    let scan = scan_processes(proc_root, &nums, mode)?;
    let mut report = HolderReport {
        device: devname.to_string(),
        processes: scan.holders,
        skipped_pids: scan.skipped_pids,
        ..Default::default()
    };
    for (name, dev) in &devices {
        report.mounts.extend(mounts_of(proc_root, *dev)?);
        report.sysfs_holders.extend(sysfs_holders(sys_root, name)?);
    }
    Ok(report)
}

fn block_dir(sys_root: &Path, devname: &str) -> Result<PathBuf, HolderError> {
    let ok =
        !devname.is_empty() && devname != "." && devname != ".." && !devname.contains(['/', '\0']);
    if !ok {
        return Err(HolderError::BadDeviceName {
            name: devname.to_string(),
        });
    }
    Ok(sys_root.join("class/block").join(devname))
}

fn read_dev(path: &Path) -> Result<DevNum, HolderError> {
    let text = std::fs::read_to_string(path).map_err(|source| HolderError::Sysfs {
        path: path.to_path_buf(),
        source,
    })?;
    text.trim().parse().map_err(|_| HolderError::SysfsParse {
        path: path.to_path_buf(),
        content: text,
    })
}

/// Partitions of the disk at `dir`: subdirectories with a `partition` attribute.
fn partitions(dir: &Path) -> Result<Vec<(String, DevNum)>, HolderError> {
    let entries = std::fs::read_dir(dir).map_err(|source| HolderError::Sysfs {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.join("partition").is_file() {
            // A partition removed while listing simply is not reported.
            match read_dev(&p.join("dev")) {
                Ok(dev) => out.push((e.file_name().to_string_lossy().into_owned(), dev)),
                Err(HolderError::Sysfs { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_that_escape_sysfs_are_refused() {
        let root = Path::new("/nonexistent-sys");
        for bad in ["", ".", "..", "../sda", "a/b", "x\0y"] {
            assert!(
                matches!(
                    sysfs_holders(root, bad),
                    Err(HolderError::BadDeviceName { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn missing_proc_root_is_an_error_naming_it() {
        let err = scan_processes(
            Path::new("/nonexistent-proc"),
            &[DevNum::new(7, 0)],
            ScanMode::Sequential,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent-proc"), "{err}");
    }

    #[test]
    fn report_is_empty_only_without_any_holder() {
        let mut r = HolderReport::default();
        assert!(r.is_empty() && r.is_complete());
        r.sysfs_holders.push("dm-0".into());
        assert!(!r.is_empty());
        r.sysfs_holders.clear();
        r.skipped_pids.push(SkippedPid {
            pid: 1,
            error: "denied".into(),
        });
        assert!(r.is_empty() && !r.is_complete());
    }

    #[test]
    fn sysfs_holders_and_partitions_come_from_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("class/block/nvme0n1");
        std::fs::create_dir_all(d.join("holders/dm-0")).unwrap();
        std::fs::create_dir_all(d.join("nvme0n1p1/holders")).unwrap();
        std::fs::write(d.join("dev"), "259:0\n").unwrap();
        std::fs::write(d.join("nvme0n1p1/partition"), "1\n").unwrap();
        std::fs::write(d.join("nvme0n1p1/dev"), "259:1\n").unwrap();
        std::fs::create_dir_all(t.path().join("class/block/nvme0n1p1/holders")).unwrap();
        assert_eq!(sysfs_holders(t.path(), "nvme0n1").unwrap(), vec!["dm-0"]);
        assert_eq!(
            partitions(&d).unwrap(),
            vec![("nvme0n1p1".to_string(), DevNum::new(259, 1))]
        );
        std::fs::write(d.join("dev"), "garbage\n").unwrap();
        assert!(matches!(
            read_dev(&d.join("dev")),
            Err(HolderError::SysfsParse { .. })
        ));
    }

    #[test]
    fn own_fds_are_seen_and_other_devices_are_not() {
        // /dev/null is a char device: never a holder, whatever its numbers.
        let null = std::fs::File::open("/dev/null").unwrap();
        let me = std::process::id();
        for mode in [ScanMode::Sequential, ScanMode::Parallel, ScanMode::Auto] {
            let scan = scan_processes(Path::new("/proc"), &[DevNum::new(1, 3)], mode).unwrap();
            assert!(scan.holders.iter().all(|h| h.pid != me), "{mode:?}");
            assert!(scan.scanned_pids > 0);
        }
        drop(null);
    }
}
