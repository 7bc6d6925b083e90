//! A listener on the kernel's kobject-uevent netlink multicast group.
//!
//! Only messages sent by the kernel (netlink port id 0) on group 1 are accepted; udev's
//! re-broadcasts (group 2, `libudev` header) and anything a process might inject are
//! dropped, because discovery must reflect what the kernel did.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};

use crate::uevent::Uevent;

/// Uevents are at most a few KiB (UEVENT_BUFFER_SIZE is 2048 for the environment).
const MSG_BUF: usize = 16 * 1024;

/// What one wait on the socket produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UeventRecv {
    Event(Uevent),
    /// The receive buffer overflowed and events were lost: re-read the state.
    Overflow,
    Timeout,
}

pub struct UeventSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
}

/// A burst of events (many namespaces appearing at once) must not overflow the default
/// receive buffer; an overflow is survived anyway (every wait re-reads sysfs).
const RCVBUF: usize = 4 * 1024 * 1024;
/// The kernel's uevent multicast group (udev re-broadcasts on group 2).
const KERNEL_GROUP: u32 = 1;

/// One datagram from the socket.
enum Recv {
    /// Bytes and the sender's port id (0 = the kernel).
    Message(usize, u32),
    /// The receive buffer overflowed: events were lost.
    Overflow,
    Timeout,
}

impl std::fmt::Debug for UeventSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UeventSocket")
    }
}

impl UeventSocket {
    /// Open and bind the socket. Fails where netlink is filtered (seccomp) or the
    /// network namespace gets no uevents; callers then fall back to polling.
    pub fn open() -> io::Result<Self> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(netlink::KOBJECT_UEVENT),
        )?;
        // Best effort: without it the default buffer overflows sooner, nothing worse.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, RCVBUF);
        // Port id 0: the kernel picks a unique one.
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, KERNEL_GROUP))?;
        Ok(Self {
            fd,
            buf: vec![0; MSG_BUF],
        })
    }

    /// Waits up to `timeout` for one datagram.
    fn recv_one(&mut self, timeout: Duration) -> io::Result<Recv> {
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let timeout = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos().div_ceil(1_000_000).min(999) as i64 * 1_000_000,
        };
        let mut pfd = [PollFd::new(&self.fd, PollFlags::IN)];
        match rustix::event::poll(&mut pfd, Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => return Ok(Recv::Timeout),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match rustix::net::recvfrom(&self.fd, &mut self.buf[..], RecvFlags::empty()) {
            Ok((n, _, from)) => {
                // Without an address (never for netlink) the sender cannot be the kernel.
                let pid = from
                    .and_then(|a| SocketAddrNetlink::try_from(a).ok())
                    .map_or(u32::MAX, |a| a.pid());
                Ok(Recv::Message(n, pid))
            }
            Err(Errno::NOBUFS) => Ok(Recv::Overflow),
            Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(Recv::Timeout),
            Err(e) => Err(e.into()),
        }
    }

    /// The next kernel uevent within `timeout`. Messages that are not well-formed kernel
    /// uevents are skipped without ending the wait early.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<UeventRecv> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_one(left)? {
                Recv::Overflow => return Ok(UeventRecv::Overflow),
                Recv::Message(n, sender) => {
                    if sender == 0 {
                        if let Ok(ev) = Uevent::parse(&self.buf[..n]) {
                            return Ok(UeventRecv::Event(ev));
                        }
                    }
                }
                Recv::Timeout => {}
            }
            if Instant::now() >= deadline {
                return Ok(UeventRecv::Timeout);
            }
        }
    }
}
