//! Deadline-bounded O_DIRECT device reads.
//!
//! With io_uring (the normal mode) a read runs on node-io's ring thread with a linked
//! timeout: the caller gets an answer by its deadline and no thread is left blocked.
//!
//! Degraded mode, when io_uring cannot be set up (seccomp, `kernel.io_uring_disabled`):
//! the read runs on a helper thread and the caller waits for it at most until the
//! deadline. A helper whose read hangs in the kernel (dead NVMe/TCP target) stays blocked
//! until the kernel gives up; at most [`MAX_BLOCKED_HELPERS`] may be outstanding, after
//! which reads are refused instead of piling up threads.

use std::ffi::CString;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::ring::{ReadOutcome, ReadSource, Ring};
use crate::sys::{AlignedBuf, DIRECT_ALIGN};

/// The most fallback helper threads that may be in flight (some possibly stuck in the
/// kernel) before further reads are refused.
pub const MAX_BLOCKED_HELPERS: usize = 8;
/// Upper bound of one read: probes and health checks need kilobytes, not more.
pub const MAX_READ_LEN: usize = 16 * 1024 * 1024;

static HELPERS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How reads are performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderMode {
    IoUring,
    /// Blocking reads on helper threads; `reason` says why io_uring is not used.
    Fallback {
        reason: String,
    },
}

/// What to read from.
#[derive(Debug, Clone, Copy)]
pub enum ReadTarget<'a> {
    /// Opened O_RDONLY | O_DIRECT under the same deadline as the read.
    Path(&'a Path),
    /// An fd the caller opened (duplicated for the read; open it O_DIRECT yourself if
    /// the page cache must be bypassed).
    Fd(BorrowedFd<'a>),
}

impl<'a> From<&'a Path> for ReadTarget<'a> {
    fn from(p: &'a Path) -> Self {
        Self::Path(p)
    }
}

impl<'a> From<&'a PathBuf> for ReadTarget<'a> {
    fn from(p: &'a PathBuf) -> Self {
        Self::Path(p)
    }
}

impl<'a> From<BorrowedFd<'a>> for ReadTarget<'a> {
    fn from(fd: BorrowedFd<'a>) -> Self {
        Self::Fd(fd)
    }
}

impl fmt::Display for ReadTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Fd(fd) => write!(f, "fd {}", fd.as_raw_fd()),
        }
    }
}

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("reading {target}: no answer by the deadline ({waited:?})")]
    Timeout { target: String, waited: Duration },
    #[error("opening {target}: {source}")]
    Open {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("reading {target} at offset {offset}: {source}")]
    Read {
        target: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "reading {target}: {blocked} earlier reads are still blocked in the kernel \
         (degraded mode without io_uring); not starting another"
    )]
    TooManyBlocked { target: String, blocked: usize },
    #[error("reading {target}: invalid request: {reason}")]
    Invalid { target: String, reason: String },
}

/// Reads devices without ever blocking the caller past its deadline.
#[derive(Debug, Clone)]
pub struct DeviceReader {
    mode: ReaderMode,
}

impl Default for DeviceReader {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceReader {
    /// io_uring when the kernel allows it, else the degraded helper-thread mode.
    pub fn new() -> Self {
        match Ring::global() {
            Ok(_) => Self {
                mode: ReaderMode::IoUring,
            },
            Err(reason) => Self::fallback(reason),
        }
    }

    /// Force the degraded helper-thread mode (tests; operators who disable io_uring).
    pub fn fallback(reason: impl Into<String>) -> Self {
        Self {
            mode: ReaderMode::Fallback {
                reason: reason.into(),
            },
        }
    }

    pub fn mode(&self) -> &ReaderMode {
        &self.mode
    }

    /// Read `len` bytes at `offset`. The device is read O_DIRECT through a 4096-aligned
    /// buffer covering the aligned range around the request. The result is shorter than
    /// `len` only when the device ends (or a pipe delivers less) first.
    pub fn read_at<'a>(
        &self,
        target: impl Into<ReadTarget<'a>>,
        offset: u64,
        len: usize,
        deadline: Instant,
    ) -> Result<Vec<u8>, ReadError> {
        let target = target.into();
        let name = target.to_string();
        let invalid = |reason: &str| ReadError::Invalid {
            target: name.clone(),
            reason: reason.to_string(),
        };
        if len == 0 || len > MAX_READ_LEN {
            return Err(invalid(&format!("length {len} not in 1..={MAX_READ_LEN}")));
        }
        let align = DIRECT_ALIGN as u64;
        let start = offset - offset % align;
        let end = offset
            .checked_add(len as u64)
            .and_then(|e| e.checked_next_multiple_of(align))
            .ok_or_else(|| invalid("offset + length overflows"))?;
        let span = (end - start) as usize;
        let skip = (offset - start) as usize;

        let started = Instant::now();
        let source = match target {
            ReadTarget::Path(p) => ReadSource::Path(
                CString::new(p.as_os_str().as_bytes())
                    .map_err(|_| invalid("path contains a NUL byte"))?,
            ),
            ReadTarget::Fd(fd) => {
                ReadSource::Fd(fd.try_clone_to_owned().map_err(|source| ReadError::Open {
                    target: name.clone(),
                    source,
                })?)
            }
        };
        let outcome = match &self.mode {
            ReaderMode::IoUring => match Ring::global() {
                Ok(ring) => ring.read(source, start, span, deadline),
                Err(reason) => {
                    return Err(ReadError::Read {
                        target: name,
                        offset,
                        source: io::Error::other(format!("io_uring unavailable: {reason}")),
                    })
                }
            },
            ReaderMode::Fallback { .. } => blocking_read(&name, source, start, span, deadline)?,
        };
        match outcome {
            ReadOutcome::Done(buf, n) => {
                let avail = n.saturating_sub(skip).min(len);
                Ok(buf.as_slice()[skip..skip + avail].to_vec())
            }
            ReadOutcome::TimedOut => Err(ReadError::Timeout {
                target: name,
                waited: started.elapsed(),
            }),
            ReadOutcome::OpenFailed(source) => Err(ReadError::Open {
                target: name,
                source,
            }),
            ReadOutcome::ReadFailed(source) => Err(ReadError::Read {
                target: name,
                offset,
                source,
            }),
        }
    }
}

/// Decrements the helper count when a helper thread ends, however it ends.
struct HelperSlot;

impl Drop for HelperSlot {
    fn drop(&mut self) {
        HELPERS_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

fn blocking_read(
    name: &str,
    source: ReadSource,
    offset: u64,
    len: usize,
    deadline: Instant,
) -> Result<ReadOutcome, ReadError> {
    let blocked = HELPERS_IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let slot = HelperSlot;
    if blocked >= MAX_BLOCKED_HELPERS {
        drop(slot);
        return Err(ReadError::TooManyBlocked {
            target: name.to_string(),
            blocked,
        });
    }
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("node-io-read".into())
        .spawn(move || {
            let _slot = slot;
            let _ = tx.send(read_blocking(source, offset, len));
        });
    if let Err(e) = spawned {
        return Err(ReadError::Read {
            target: name.to_string(),
            offset,
            source: e,
        });
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    Ok(rx.recv_timeout(wait).unwrap_or(ReadOutcome::TimedOut))
}

fn read_blocking(source: ReadSource, offset: u64, len: usize) -> ReadOutcome {
    let fd: OwnedFd = match source {
        ReadSource::Fd(fd) => fd,
        ReadSource::Path(p) => {
            let path = Path::new(std::ffi::OsStr::from_bytes(p.as_bytes()));
            match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
                .open(path)
            {
                Ok(f) => f.into(),
                Err(e) => return ReadOutcome::OpenFailed(e),
            }
        }
    };
    let file = std::fs::File::from(fd);
    let mut buf = AlignedBuf::new(len);
    loop {
        match file.read_at(buf.as_mut_slice(), offset) {
            Ok(n) => return ReadOutcome::Done(buf, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A pipe or socket has no offset; read it like io_uring does.
            Err(e) if e.raw_os_error() == Some(libc::ESPIPE) => {
                return match io::Read::read(&mut &file, buf.as_mut_slice()) {
                    Ok(n) => ReadOutcome::Done(buf, n),
                    Err(e) => ReadOutcome::ReadFailed(e),
                }
            }
            Err(e) => return ReadOutcome::ReadFailed(e),
        }
    }
}
