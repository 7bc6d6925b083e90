//! A listener on the kernel's kobject-uevent netlink multicast group.
//!
//! Only messages sent by the kernel (netlink port id 0) on group 1 are accepted; udev's
//! re-broadcasts (group 2, `libudev` header) and anything a process might inject are
//! dropped, because discovery must reflect what the kernel did.

use std::io;
use std::time::{Duration, Instant};

use crate::sys::{NetlinkRecv, NetlinkSocket};
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
    sock: NetlinkSocket,
    buf: Vec<u8>,
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
        Ok(Self {
            sock: NetlinkSocket::open()?,
            buf: vec![0; MSG_BUF],
        })
    }

    /// The next kernel uevent within `timeout`. Messages that are not well-formed kernel
    /// uevents are skipped without ending the wait early.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<UeventRecv> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.sock.recv(&mut self.buf, left)? {
                NetlinkRecv::Overflow => return Ok(UeventRecv::Overflow),
                NetlinkRecv::Message(n, sender) => {
                    if sender == 0 {
                        if let Ok(ev) = Uevent::parse(&self.buf[..n]) {
                            return Ok(UeventRecv::Event(ev));
                        }
                    }
                }
                NetlinkRecv::Timeout => {}
            }
            if Instant::now() >= deadline {
                return Ok(UeventRecv::Timeout);
            }
        }
    }
}
