//! Who holds a block device: processes with an open fd on it, mounts of it, and kernel
//! holders (device-mapper, md) listed in sysfs.
//!
//! Open fds are matched by device number, never by path: each `<proc>/<pid>/fd/<n>` magic
//! link is stat'ed relative to the open fd directory and its `st_rdev` compared, so a node
//! made with mknod anywhere (a container's own /dev) counts too. This is what `lsof` and
//! `fuser` do, without their per-process readlink/stat of unrelated paths.
//!
//! The scan comes in three forms with identical results (see [`ScanMode`]). Processes and
//! fds that vanish mid-scan are skipped; a process we may not inspect is reported in
//! `skipped_pids` rather than failing the scan, so the caller can decide.

use std::ffi::CString;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::dev_num::DevNum;
use crate::mountinfo::{read_mountinfo, MountInfo, Pid, ReadError};
use crate::ring::Ring;
use crate::sys::{self, NodeStat};

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
}

/// How the fd scan runs. All forms give the same answer; they differ in speed only.
///
/// Default: [`ScanMode::Sequential`], the fastest form measured on the development
/// machine (2 cores shared with other builds, kernel 6.18; `cargo bench -p node-io
/// --bench holders`, 91–99 processes holding ~16.3k fds): sequential 24.0 / 37.7 ms,
/// parallel 25.8 / 46.7 ms, io_uring 36.7 / 42.1 ms over two runs (fuser 68 / 50 ms,
/// lsof 191 / 204 ms). io_uring loses because the kernel always punts IORING_OP_STATX to
/// an io-wq worker (REQ_F_FORCE_ASYNC), adding a thread hop per entry to work that is
/// pure syscall CPU time. Parallel gains nothing when the cores are already busy and
/// pays for thread start-up; re-measure on a many-core node before switching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ScanMode {
    /// One thread: open each `<proc>/<pid>/fd`, statx every entry relative to it.
    #[default]
    Sequential,
    /// Like `Sequential`, but the statx calls are submitted as IORING_OP_STATX batches
    /// on node-io's ring thread.
    IoUring,
    /// The pid list split over `available_parallelism()` threads, each sequential.
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
    let pids = list_pids(proc_root)?;
    let mut scan = match mode {
        ScanMode::Sequential => scan_sequential(proc_root, &pids, devs),
        ScanMode::IoUring => scan_uring(proc_root, &pids, devs)?,
        ScanMode::Parallel => scan_parallel(proc_root, &pids, devs),
    };
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

fn list_pids(proc_root: &Path) -> Result<Vec<u32>, HolderError> {
    let err = |source| HolderError::ListProcesses {
        path: proc_root.to_path_buf(),
        source,
    };
    let mut pids = Vec::new();
    for e in std::fs::read_dir(proc_root).map_err(err)? {
        let e = e.map_err(err)?;
        if let Some(pid) = e
            .file_name()
            .to_str()
            .and_then(crate::dev_num::parse_decimal)
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// The process or fd went away while we looked: not a holder, not an error.
fn vanished(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH))
}

fn comm(proc_root: &Path, pid: u32) -> String {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
        .map(|s| s.trim_end_matches('\n').to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// One process's fd directory, opened and listed.
enum FdDir {
    Gone,
    Skipped(io::Error),
    Listed { dir: OwnedFd, fds: Vec<u32> },
}

fn open_fd_dir(proc_root: &Path, pid: u32, names: &mut Vec<u8>) -> FdDir {
    let path = proc_root.join(pid.to_string()).join("fd");
    let dir = match sys::open_dir(&path) {
        Ok(d) => d,
        Err(e) if vanished(&e) => return FdDir::Gone,
        Err(e) => return FdDir::Skipped(e),
    };
    let mut fds = Vec::new();
    let listed = sys::for_each_dir_entry(dir.as_fd(), names, |name| {
        if let Some(fd) = std::str::from_utf8(name)
            .ok()
            .and_then(crate::dev_num::parse_decimal)
        {
            fds.push(fd);
        }
    });
    match listed {
        Ok(()) => FdDir::Listed { dir, fds },
        Err(e) if vanished(&e) => FdDir::Gone,
        Err(e) => FdDir::Skipped(e),
    }
}

/// Accumulates per-fd statx results into a [`ProcessScan`].
struct Collector<'a> {
    proc_root: &'a Path,
    devs: &'a [DevNum],
    scan: ProcessScan,
}

impl<'a> Collector<'a> {
    fn new(proc_root: &'a Path, devs: &'a [DevNum]) -> Self {
        Self {
            proc_root,
            devs,
            scan: ProcessScan::default(),
        }
    }

    fn skip(&mut self, pid: u32, e: &io::Error) {
        self.scan.skipped_pids.push(SkippedPid {
            pid,
            error: e.to_string(),
        });
    }

    /// The statx results of one process's fds. An fd that vanished is ignored; any
    /// other failure marks the process as skipped (its holders found so far still count).
    fn process(&mut self, pid: u32, results: impl Iterator<Item = (u32, io::Result<NodeStat>)>) {
        let mut comm_cache: Option<String> = None;
        let mut failure: Option<io::Error> = None;
        for (fd, r) in results {
            match r {
                Ok(st) if st.is_block_device() && self.devs.contains(&st.rdev) => {
                    let comm = comm_cache
                        .get_or_insert_with(|| comm(self.proc_root, pid))
                        .clone();
                    self.scan.holders.push(Holder {
                        pid,
                        comm,
                        fd,
                        dev: st.rdev,
                    });
                }
                Ok(_) => {}
                Err(e) if vanished(&e) => {}
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) => self.skip(pid, &e),
            None => self.scan.scanned_pids += 1,
        }
    }
}

fn scan_sequential(proc_root: &Path, pids: &[u32], devs: &[DevNum]) -> ProcessScan {
    let mut c = Collector::new(proc_root, devs);
    let mut names = Vec::new();
    for &pid in pids {
        match open_fd_dir(proc_root, pid, &mut names) {
            FdDir::Gone => {}
            FdDir::Skipped(e) => c.skip(pid, &e),
            FdDir::Listed { dir, fds } => {
                let results = fds.into_iter().map(|fd| {
                    // Digits only: no interior NUL is possible.
                    let name = CString::new(fd.to_string()).unwrap_or_default();
                    (fd, sys::statx_at(dir.as_fd(), &name))
                });
                c.process(pid, results);
            }
        }
    }
    c.scan
}

fn scan_parallel(proc_root: &Path, pids: &[u32], devs: &[DevNum]) -> ProcessScan {
    let threads = std::thread::available_parallelism()
        .map(NonZeroUsize::get)
        .unwrap_or(1);
    if threads <= 1 || pids.len() < 2 {
        return scan_sequential(proc_root, pids, devs);
    }
    // Interleave pids so every thread gets a similar mix of big and small processes
    // (consecutive pids are often siblings with similar fd counts).
    let shards: Vec<Vec<u32>> = (0..threads)
        .map(|t| pids.iter().skip(t).step_by(threads).copied().collect())
        .collect();
    let parts: Vec<ProcessScan> = std::thread::scope(|s| {
        let handles: Vec<_> = shards[1..]
            .iter()
            .map(|shard| s.spawn(move || scan_sequential(proc_root, shard, devs)))
            .collect();
        let mut parts = vec![scan_sequential(proc_root, &shards[0], devs)];
        for h in handles {
            // A shard thread only panics on a bug; re-raise it rather than hide holders.
            parts.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        parts
    });
    let mut out = ProcessScan::default();
    for p in parts {
        out.holders.extend(p.holders);
        out.skipped_pids.extend(p.skipped_pids);
        out.scanned_pids += p.scanned_pids;
    }
    out
}

/// statx calls per ring round trip: large enough to amortise the channel hop, small
/// enough to keep few fd directories open at once.
const URING_BATCH: usize = 1024;

fn scan_uring(proc_root: &Path, pids: &[u32], devs: &[DevNum]) -> Result<ProcessScan, HolderError> {
    let ring = Ring::global().map_err(|reason| HolderError::RingUnavailable {
        reason: reason.to_string(),
    })?;
    let mut c = Collector::new(proc_root, devs);
    let mut names = Vec::new();
    // Open fd directories of the current batch, with their pid and fd numbers.
    let mut dirs: Vec<(u32, OwnedFd, Vec<u32>)> = Vec::new();
    let mut queued = 0usize;
    let flush = |dirs: &mut Vec<(u32, OwnedFd, Vec<u32>)>,
                 c: &mut Collector<'_>|
     -> Result<(), HolderError> {
        let items: Vec<(std::os::fd::RawFd, CString)> = dirs
            .iter()
            .flat_map(|(_, dir, fds)| {
                fds.iter().map(move |fd| {
                    let name = CString::new(fd.to_string()).unwrap_or_default();
                    (dir.as_raw_fd(), name)
                })
            })
            .collect();
        // `dirs` keeps every dirfd open until the batch is answered.
        let mut results = ring
            .statx_batch(items)
            .map_err(|source| HolderError::Ring { source })?
            .into_iter();
        for (pid, _dir, fds) in dirs.drain(..) {
            let per_pid: Vec<(u32, io::Result<NodeStat>)> = fds
                .into_iter()
                .map(|fd| {
                    let r = results
                        .next()
                        .unwrap_or_else(|| Err(io::Error::other("missing statx result")));
                    (fd, r)
                })
                .collect();
            c.process(pid, per_pid.into_iter());
        }
        Ok(())
    };
    for &pid in pids {
        match open_fd_dir(proc_root, pid, &mut names) {
            FdDir::Gone => {}
            FdDir::Skipped(e) => c.skip(pid, &e),
            FdDir::Listed { dir, fds } => {
                queued += fds.len();
                dirs.push((pid, dir, fds));
                if queued >= URING_BATCH {
                    flush(&mut dirs, &mut c)?;
                    queued = 0;
                }
            }
        }
    }
    flush(&mut dirs, &mut c)?;
    Ok(c.scan)
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
        for mode in [ScanMode::Sequential, ScanMode::Parallel] {
            let scan = scan_processes(Path::new("/proc"), &[DevNum::new(1, 3)], mode).unwrap();
            assert!(scan.holders.iter().all(|h| h.pid != me), "{mode:?}");
            assert!(scan.scanned_pids > 0);
        }
        drop(null);
    }
}
