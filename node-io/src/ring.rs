//! node-io's own io_uring ring, owned by one dedicated thread.
//!
//! Callers send requests over a channel and wake the thread through an eventfd that the
//! ring itself polls, so the thread only ever blocks in `io_uring_enter`. Answers go
//! back on a per-request channel.
//!
//! Reads carry an IORING_OP_LINK_TIMEOUT: when it fires the caller is answered at once
//! with a timeout, even if the kernel cannot cancel the read (an issued block-device read
//! on a dead NVMe/TCP path). The buffer and fd stay owned by the ring thread until the
//! read's own completion arrives, so the kernel never writes into freed memory.
//!
//! The ring is process-global and started on first use: one thread serves every reader
//! and every io_uring holder scan.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use crate::sys::{self, AlignedBuf, NodeStat};

const RING_ENTRIES: u32 = 256;
const WAKE_TOKEN: u64 = 0;
/// Set in the user_data of a read's linked timeout; the rest is the read's token.
const TIMEOUT_BIT: u64 = 1 << 63;
/// How long a caller waits past its deadline for the ring thread's answer before giving
/// up on its own (the thread answers at the deadline; this only covers a wedged thread).
const REPLY_GRACE: Duration = Duration::from_millis(100);

/// Where a read gets its fd: opened by the ring (IORING_OP_OPENAT, under the same
/// deadline, because opening a block device can itself block) or a caller's dup.
pub(crate) enum ReadSource {
    Path(CString),
    Fd(OwnedFd),
}

pub(crate) enum ReadOutcome {
    /// The buffer and the number of bytes the kernel read into it.
    Done(AlignedBuf, usize),
    TimedOut,
    OpenFailed(io::Error),
    ReadFailed(io::Error),
}

enum Request {
    Read {
        source: ReadSource,
        read: ReadReq,
    },
    Statx {
        items: Vec<(RawFd, CString)>,
        reply: mpsc::Sender<Vec<io::Result<NodeStat>>>,
    },
}

struct ReadReq {
    offset: u64,
    len: usize,
    deadline: Instant,
    reply: Option<mpsc::Sender<ReadOutcome>>,
}

impl ReadReq {
    fn answer(&mut self, outcome: ReadOutcome) {
        if let Some(tx) = self.reply.take() {
            // The caller may have stopped waiting; nothing to do then.
            let _ = tx.send(outcome);
        }
    }
}

pub(crate) struct Ring {
    tx: mpsc::Sender<Request>,
    wake: File,
}

static GLOBAL: OnceLock<Result<Ring, String>> = OnceLock::new();

impl Ring {
    /// The process-wide ring, started on first use, or why io_uring cannot be used here.
    pub(crate) fn global() -> Result<&'static Ring, &'static str> {
        GLOBAL
            .get_or_init(Ring::start)
            .as_ref()
            .map_err(String::as_str)
    }

    fn start() -> Result<Ring, String> {
        let ring = IoUring::new(RING_ENTRIES).map_err(|e| format!("io_uring_setup: {e}"))?;
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("io_uring probe: {e}"))?;
        for (code, name) in [
            (opcode::Read::CODE, "READ"),
            (opcode::LinkTimeout::CODE, "LINK_TIMEOUT"),
            (opcode::OpenAt::CODE, "OPENAT"),
            (opcode::Statx::CODE, "STATX"),
            (opcode::PollAdd::CODE, "POLL_ADD"),
        ] {
            if !probe.is_supported(code) {
                return Err(format!("io_uring lacks IORING_OP_{name}"));
            }
        }
        let wake = File::from(
            rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .map_err(|e| format!("eventfd: {e}"))?,
        );
        let wake_thread = wake.try_clone().map_err(|e| format!("eventfd dup: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let mut worker = Worker {
            cq_cap: ring.params().cq_entries() as usize,
            ring,
            rx,
            wake: wake_thread,
            ops: HashMap::new(),
            batches: HashMap::new(),
            backlog: VecDeque::new(),
            next: 1,
            inflight: 0,
        };
        std::thread::Builder::new()
            .name("node-io-ring".into())
            .spawn(move || worker.run())
            .map_err(|e| format!("spawning the ring thread: {e}"))?;
        Ok(Ring { tx, wake })
    }

    fn send(&self, req: Request) -> io::Result<()> {
        self.tx
            .send(req)
            .map_err(|_| io::Error::other("the node-io ring thread has stopped"))?;
        // A full eventfd counter (EAGAIN) still means "readable": the thread will wake.
        match (&self.wake).write(&1u64.to_ne_bytes()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Read `len` bytes (a multiple of the O_DIRECT alignment) at `offset`; answers by
    /// `deadline` (plus a small grace for a wedged thread) at the latest.
    pub(crate) fn read(
        &self,
        source: ReadSource,
        offset: u64,
        len: usize,
        deadline: Instant,
    ) -> ReadOutcome {
        let (tx, rx) = mpsc::channel();
        let req = Request::Read {
            source,
            read: ReadReq {
                offset,
                len,
                deadline,
                reply: Some(tx),
            },
        };
        if let Err(e) = self.send(req) {
            return ReadOutcome::ReadFailed(e);
        }
        let wait = deadline.saturating_duration_since(Instant::now()) + REPLY_GRACE;
        rx.recv_timeout(wait).unwrap_or(ReadOutcome::TimedOut)
    }

    /// statx every `(dirfd, name)` pair; the dirfds must stay open until this returns.
    pub(crate) fn statx_batch(
        &self,
        items: Vec<(RawFd, CString)>,
    ) -> io::Result<Vec<io::Result<NodeStat>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = mpsc::channel();
        self.send(Request::Statx { items, reply: tx })?;
        rx.recv()
            .map_err(|_| io::Error::other("the node-io ring thread has stopped"))
    }
}

enum Op {
    Wake,
    Open {
        _path: CString,
        _ts: Box<types::Timespec>,
        read: ReadReq,
    },
    Read {
        _fd: OwnedFd,
        buf: AlignedBuf,
        _ts: Box<types::Timespec>,
        read: ReadReq,
    },
    Statx {
        batch: u64,
        idx: usize,
        _name: CString,
        buf: Box<libc::statx>,
    },
}

struct Batch {
    results: Vec<Option<io::Result<NodeStat>>>,
    remaining: usize,
    reply: mpsc::Sender<Vec<io::Result<NodeStat>>>,
}

struct Worker {
    ring: IoUring,
    cq_cap: usize,
    rx: mpsc::Receiver<Request>,
    wake: File,
    /// Everything the kernel may still touch, by token: owned here until its CQE.
    ops: HashMap<u64, Op>,
    batches: HashMap<u64, Batch>,
    /// SQE groups (a read and its linked timeout go together) waiting for SQ space.
    backlog: VecDeque<Vec<squeue::Entry>>,
    next: u64,
    /// SQEs submitted whose CQE has not been reaped: bounded by the CQ size so the
    /// completion queue never overflows.
    inflight: usize,
}

/// The time left before `read`'s deadline as a kernel timespec, or `None` once the deadline
/// has passed (the read is then answered `TimedOut`).
fn time_left(read: &mut ReadReq) -> Option<Box<types::Timespec>> {
    match read.deadline.checked_duration_since(Instant::now()) {
        Some(left) => Some(timespec(left)),
        None => {
            read.answer(ReadOutcome::TimedOut);
            None
        }
    }
}

fn timespec(d: Duration) -> Box<types::Timespec> {
    Box::new(
        types::Timespec::new()
            .sec(d.as_secs())
            .nsec(d.subsec_nanos()),
    )
}

fn os_err(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}

impl Worker {
    fn run(&mut self) {
        self.ops.insert(WAKE_TOKEN, Op::Wake);
        self.arm_wake();
        loop {
            self.take_requests();
            self.flush_backlog();
            let want = usize::from(self.backlog.is_empty() || self.inflight >= self.cq_cap);
            match self.ring.submit_and_wait(want) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // EBUSY: completions must be reaped before more can be submitted.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => {
                    // Nothing sensible is left to do; callers see their reply channels
                    // close and report the ring as stopped.
                    eprintln!("node-io ring thread: io_uring_enter failed: {e}");
                    return;
                }
            }
            self.reap();
        }
    }

    fn token(&mut self) -> u64 {
        self.next = (self.next + 1) & !TIMEOUT_BIT;
        if self.next == WAKE_TOKEN {
            self.next = 1;
        }
        self.next
    }

    fn arm_wake(&mut self) {
        let sqe = opcode::PollAdd::new(types::Fd(self.wake.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(WAKE_TOKEN);
        self.backlog.push_front(vec![sqe]);
    }

    fn take_requests(&mut self) {
        while let Ok(req) = self.rx.try_recv() {
            match req {
                Request::Read { source, read } => match source {
                    ReadSource::Path(path) => self.queue_open(path, read),
                    ReadSource::Fd(fd) => self.queue_read(fd, read),
                },
                Request::Statx { items, reply } => self.queue_statx(items, reply),
            }
        }
    }

    /// Queues `sqe` under `token`, linked to a timeout of `ts` (which must outlive the
    /// operation: the caller keeps it in the op), so the kernel cancels it at the deadline.
    fn push_linked(&mut self, sqe: squeue::Entry, token: u64, ts: &types::Timespec) {
        let sqe = sqe.flags(squeue::Flags::IO_LINK).user_data(token);
        let timeout = opcode::LinkTimeout::new(ts)
            .build()
            .user_data(token | TIMEOUT_BIT);
        self.backlog.push_back(vec![sqe, timeout]);
    }

    fn queue_open(&mut self, path: CString, mut read: ReadReq) {
        let Some(ts) = time_left(&mut read) else {
            return;
        };
        let token = self.token();
        let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
            .flags(libc::O_RDONLY | libc::O_DIRECT | libc::O_CLOEXEC)
            .build();
        self.push_linked(open, token, &ts);
        self.ops.insert(
            token,
            Op::Open {
                _path: path,
                _ts: ts,
                read,
            },
        );
    }

    fn queue_read(&mut self, fd: OwnedFd, mut read: ReadReq) {
        let Some(ts) = time_left(&mut read) else {
            return;
        };
        let token = self.token();
        let mut buf = AlignedBuf::new(read.len);
        let len = u32::try_from(read.len).unwrap_or(u32::MAX);
        let rd = opcode::Read::new(types::Fd(fd.as_raw_fd()), buf.as_mut_ptr(), len)
            .offset(read.offset)
            .build();
        self.push_linked(rd, token, &ts);
        self.ops.insert(
            token,
            Op::Read {
                _fd: fd,
                buf,
                _ts: ts,
                read,
            },
        );
    }

    fn queue_statx(
        &mut self,
        items: Vec<(RawFd, CString)>,
        reply: mpsc::Sender<Vec<io::Result<NodeStat>>>,
    ) {
        let batch = self.token();
        self.batches.insert(
            batch,
            Batch {
                results: (0..items.len()).map(|_| None).collect(),
                remaining: items.len(),
                reply,
            },
        );
        for (idx, (dirfd, name)) in items.into_iter().enumerate() {
            let token = self.token();
            let mut buf = sys::zeroed_statx();
            let sqe = opcode::Statx::new(
                types::Fd(dirfd),
                name.as_ptr(),
                (&mut *buf as *mut libc::statx).cast::<types::statx>(),
            )
            .flags(sys::FD_STATX_FLAGS)
            .mask(sys::FD_STATX_MASK)
            .build()
            .user_data(token);
            self.backlog.push_back(vec![sqe]);
            self.ops.insert(
                token,
                Op::Statx {
                    batch,
                    idx,
                    _name: name,
                    buf,
                },
            );
        }
    }

    fn flush_backlog(&mut self) {
        let mut sq = self.ring.submission();
        while let Some(group) = self.backlog.front() {
            let room = sq.capacity() - sq.len();
            if group.len() > room || self.inflight + group.len() > self.cq_cap {
                break;
            }
            // SAFETY: every pointer in these SQEs (paths, buffers, statx structs,
            // timespecs) points into an `Op` held in `self.ops` until the SQE's CQE is
            // reaped, and every fd is either owned by that `Op`, is the ring's own
            // eventfd, or is a dirfd the statx caller keeps open until its batch is
            // answered (which happens only after all its CQEs).
            let pushed = unsafe { sq.push_multiple(group) };
            if pushed.is_err() {
                break;
            }
            self.inflight += group.len();
            self.backlog.pop_front();
        }
        sq.sync();
    }

    fn reap(&mut self) {
        let cqes: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        self.inflight = self.inflight.saturating_sub(cqes.len());
        for (token, res) in cqes {
            if token & TIMEOUT_BIT != 0 {
                self.on_timeout(token & !TIMEOUT_BIT, res);
            } else {
                self.on_complete(token, res);
            }
        }
    }

    /// The linked timeout's own CQE: -ETIME when it fired. The linked op may not be
    /// cancellable (an issued block read), so the caller is answered now; the op stays
    /// in `ops` until its own CQE.
    fn on_timeout(&mut self, token: u64, res: i32) {
        if res != -libc::ETIME {
            return;
        }
        match self.ops.get_mut(&token) {
            Some(Op::Read { read, .. }) | Some(Op::Open { read, .. }) => {
                read.answer(ReadOutcome::TimedOut)
            }
            _ => {}
        }
    }

    fn on_complete(&mut self, token: u64, res: i32) {
        let Some(op) = self.ops.remove(&token) else {
            return;
        };
        match op {
            Op::Wake => {
                let mut drain = [0u8; 8];
                let _ = self.wake.read(&mut drain);
                self.ops.insert(WAKE_TOKEN, Op::Wake);
                self.arm_wake();
            }
            Op::Open { mut read, .. } => {
                if res >= 0 {
                    let fd = sys::owned_fd_from_completion(res);
                    if read.reply.is_some() {
                        self.queue_read(fd, read);
                    }
                } else if res == -libc::ECANCELED || res == -libc::EINTR {
                    read.answer(ReadOutcome::TimedOut);
                } else {
                    read.answer(ReadOutcome::OpenFailed(os_err(res)));
                }
            }
            Op::Read { buf, mut read, .. } => {
                if res >= 0 {
                    let n = (res as usize).min(buf.len());
                    read.answer(ReadOutcome::Done(buf, n));
                } else if res == -libc::ECANCELED || res == -libc::EINTR {
                    read.answer(ReadOutcome::TimedOut);
                } else {
                    read.answer(ReadOutcome::ReadFailed(os_err(res)));
                }
            }
            Op::Statx {
                batch, idx, buf, ..
            } => {
                let result = if res >= 0 {
                    Ok(NodeStat::from_statx(&buf))
                } else {
                    Err(os_err(res))
                };
                let done = match self.batches.get_mut(&batch) {
                    Some(b) => {
                        b.results[idx] = Some(result);
                        b.remaining -= 1;
                        b.remaining == 0
                    }
                    None => false,
                };
                if done {
                    if let Some(b) = self.batches.remove(&batch) {
                        let out = b
                            .results
                            .into_iter()
                            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("lost"))))
                            .collect();
                        let _ = b.reply.send(out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring itself answers at the deadline (through the linked timeout), not the
    /// caller's own grace timer: wait on the reply channel far longer than the deadline.
    #[test]
    fn linked_timeout_answers_a_read_that_never_completes() {
        let Ok(ring) = Ring::global() else {
            eprintln!("SKIP: io_uring unavailable");
            return;
        };
        let (rx_pipe, _tx_pipe) = std::io::pipe().unwrap();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(200);
        ring.send(Request::Read {
            source: ReadSource::Fd(OwnedFd::from(rx_pipe)),
            read: ReadReq {
                offset: 0,
                len: 4096,
                deadline,
                reply: Some(tx),
            },
        })
        .unwrap();
        let outcome = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(matches!(outcome, ReadOutcome::TimedOut));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn statx_batch_reports_each_entry() {
        let Ok(ring) = Ring::global() else {
            eprintln!("SKIP: io_uring unavailable");
            return;
        };
        let dir = std::fs::File::open("/dev").unwrap();
        let items = vec![
            (dir.as_raw_fd(), CString::new("null").unwrap()),
            (
                dir.as_raw_fd(),
                CString::new("no-such-node-io-entry").unwrap(),
            ),
        ];
        let out = ring.statx_batch(items).unwrap();
        let null = out[0].as_ref().unwrap();
        assert_eq!(null.rdev, crate::dev_num::DevNum::new(1, 3));
        assert!(!null.is_block_device());
        assert_eq!(
            out[1].as_ref().unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
    }
}
