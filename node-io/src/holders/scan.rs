//! The open-fd scan of `/proc`: every `<proc>/<pid>/fd/<n>` magic link stat'ed relative to
//! its open fd directory, its `st_rdev` compared with the devices asked about. Three forms
//! with identical results: sequential, sharded over threads, and io_uring STATX batches.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, RawDir, StatxFlags};

use super::{Holder, HolderError, ProcessScan, SkippedPid};
use crate::dev_num::{parse_decimal, DevNum};
use crate::ring::Ring;
use crate::sys::NodeStat;

/// getdents64 buffer: a process with a few thousand fds lists in one or two calls.
const LIST_BUF: usize = 32 * 1024;

pub(super) fn list_pids(proc_root: &Path) -> Result<Vec<u32>, HolderError> {
    let err = |source| HolderError::ListProcesses {
        path: proc_root.to_path_buf(),
        source,
    };
    let mut pids = Vec::new();
    for e in std::fs::read_dir(proc_root).map_err(err)? {
        let e = e.map_err(err)?;
        if let Some(pid) = e.file_name().to_str().and_then(parse_decimal) {
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

/// statx of `name` relative to the fd directory `dir`. The magic link is followed (no
/// AT_SYMLINK_NOFOLLOW) so the target inode is stat'ed; AT_STATX_DONT_SYNC keeps a hung
/// NFS/FUSE server from blocking the scan on a file we do not care about; only the type is
/// asked for (st_rdev is filled regardless of the mask).
fn statx_at(dir: &OwnedFd, name: &CStr) -> io::Result<NodeStat> {
    let st = rustix::fs::statx(dir, name, AtFlags::STATX_DONT_SYNC, StatxFlags::TYPE)?;
    Ok(NodeStat::from_rustix(&st))
}

fn open_fd_dir(proc_root: &Path, pid: u32) -> io::Result<OwnedFd> {
    let path = proc_root.join(pid.to_string()).join("fd");
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Accumulates per-fd statx results into a [`ProcessScan`].
pub(super) struct Collector<'a> {
    proc_root: &'a Path,
    devs: &'a [DevNum],
    pub(super) scan: ProcessScan,
}

/// One process's fds being looked at.
struct PidScan<'c, 'a> {
    c: &'c mut Collector<'a>,
    pid: u32,
    comm: Option<String>,
    failure: Option<io::Error>,
}

impl<'a> Collector<'a> {
    pub(super) fn new(proc_root: &'a Path, devs: &'a [DevNum]) -> Self {
        Self {
            proc_root,
            devs,
            scan: ProcessScan::default(),
        }
    }

    /// `pid`'s fd directory; `None` when the process is gone (nothing to scan) or when the
    /// directory cannot be opened (recorded as a skipped pid).
    fn fd_dir(&mut self, pid: u32) -> Option<OwnedFd> {
        match open_fd_dir(self.proc_root, pid) {
            Ok(d) => Some(d),
            Err(e) if vanished(&e) => None,
            Err(e) => {
                self.skip(pid, &e);
                None
            }
        }
    }

    fn skip(&mut self, pid: u32, e: &io::Error) {
        self.scan.skipped_pids.push(SkippedPid {
            pid,
            error: e.to_string(),
        });
    }

    fn pid(&mut self, pid: u32) -> PidScan<'_, 'a> {
        PidScan {
            c: self,
            pid,
            comm: None,
            failure: None,
        }
    }
}

impl PidScan<'_, '_> {
    /// The statx result of the entry `name` of the fd directory. An fd that vanished is
    /// ignored; any other failure marks the process as skipped (its holders found so far
    /// still count).
    fn entry(&mut self, name: &[u8], r: io::Result<NodeStat>) {
        match r {
            Ok(st) if st.is_block_device() && self.c.devs.contains(&st.rdev) => {
                let Some(fd) = std::str::from_utf8(name).ok().and_then(parse_decimal) else {
                    return;
                };
                let comm = self
                    .comm
                    .get_or_insert_with(|| comm(self.c.proc_root, self.pid))
                    .clone();
                self.c.scan.holders.push(Holder {
                    pid: self.pid,
                    comm,
                    fd,
                    dev: st.rdev,
                });
            }
            Ok(_) => {}
            Err(e) if vanished(&e) => {}
            Err(e) => self.failure = Some(e),
        }
    }

    fn finish(self) {
        match self.failure {
            Some(e) => self.c.skip(self.pid, &e),
            None => self.c.scan.scanned_pids += 1,
        }
    }
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// One thread: for each process, list its fd directory and statx every entry as it is
/// listed (the names come NUL-terminated from getdents64: no copy, no allocation per fd).
pub(super) fn scan_sequential(proc_root: &Path, pids: &[u32], devs: &[DevNum]) -> ProcessScan {
    let mut c = Collector::new(proc_root, devs);
    let mut buf = vec![MaybeUninit::<u8>::uninit(); LIST_BUF];
    for &pid in pids {
        let Some(dir) = c.fd_dir(pid) else {
            continue;
        };
        let mut p = c.pid(pid);
        let mut entries = RawDir::new(&dir, &mut buf);
        while let Some(entry) = entries.next() {
            match entry {
                Ok(entry) => {
                    let name = entry.file_name();
                    if !is_dot(name.to_bytes()) {
                        p.entry(name.to_bytes(), statx_at(&dir, name));
                    }
                }
                Err(e) => {
                    let e = io::Error::from(e);
                    // A process that exits while listed just ends its list.
                    if !vanished(&e) {
                        p.failure = Some(e);
                    }
                    break;
                }
            }
        }
        p.finish();
    }
    c.scan
}

/// The pid list interleaved over `threads` threads (this one included), each sequential.
pub(super) fn scan_parallel(
    proc_root: &Path,
    pids: &[u32],
    devs: &[DevNum],
    threads: usize,
) -> ProcessScan {
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

/// One process's fd directory, held open with the names to statx in it.
struct Listed {
    pid: u32,
    dir: OwnedFd,
    names: Vec<CString>,
}

pub(super) fn scan_uring(
    proc_root: &Path,
    pids: &[u32],
    devs: &[DevNum],
) -> Result<ProcessScan, HolderError> {
    let ring = Ring::global().map_err(|reason| HolderError::RingUnavailable {
        reason: reason.to_string(),
    })?;
    let mut c = Collector::new(proc_root, devs);
    let mut buf = vec![MaybeUninit::<u8>::uninit(); LIST_BUF];
    let mut batch: Vec<Listed> = Vec::new();
    let mut queued = 0usize;
    let flush = |batch: &mut Vec<Listed>, c: &mut Collector<'_>| -> Result<(), HolderError> {
        let items: Vec<(std::os::fd::RawFd, CString)> = batch
            .iter()
            .flat_map(|l| l.names.iter().map(|n| (l.dir.as_raw_fd(), n.clone())))
            .collect();
        // `batch` keeps every dirfd open until the ring has answered.
        let mut results = ring
            .statx_batch(items)
            .map_err(|source| HolderError::Ring { source })?
            .into_iter();
        for l in batch.drain(..) {
            let mut p = c.pid(l.pid);
            for name in &l.names {
                let r = results
                    .next()
                    .unwrap_or_else(|| Err(io::Error::other("missing statx result")));
                p.entry(name.as_bytes(), r);
            }
            p.finish();
        }
        Ok(())
    };
    for &pid in pids {
        let Some(dir) = c.fd_dir(pid) else {
            continue;
        };
        let mut names = Vec::new();
        let mut failed = None;
        let mut entries = RawDir::new(dir.as_fd(), &mut buf);
        while let Some(entry) = entries.next() {
            match entry {
                Ok(e) if is_dot(e.file_name().to_bytes()) => {}
                Ok(e) => names.push(e.file_name().to_owned()),
                Err(e) => {
                    let e = io::Error::from(e);
                    if !vanished(&e) {
                        failed = Some(e);
                    }
                    break;
                }
            }
        }
        if let Some(e) = failed {
            c.skip(pid, &e);
            continue;
        }
        queued += names.len();
        batch.push(Listed { pid, dir, names });
        if queued >= URING_BATCH {
            flush(&mut batch, &mut c)?;
            queued = 0;
        }
    }
    flush(&mut batch, &mut c)?;
    Ok(c.scan)
}
