//! Thin wrappers over the few syscalls std does not expose: statx relative to a directory
//! fd, getdents64, eventfd, page-aligned buffers and the kobject-uevent netlink socket.
//!
//! This module and `ring.rs` are the only places in node-io with `unsafe`.

use std::alloc::{self, Layout};
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use crate::dev_num::DevNum;

/// The alignment O_DIRECT needs on every block device we meet (logical block ≤ 4096).
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// What the holder scan needs from a stat: the file type and the device it is a node of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeStat {
    pub mode: u32,
    pub rdev: DevNum,
}

impl NodeStat {
    pub fn is_block_device(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFBLK
    }

    pub fn from_statx(st: &libc::statx) -> Self {
        Self {
            mode: u32::from(st.stx_mode),
            rdev: DevNum::new(st.stx_rdev_major, st.stx_rdev_minor),
        }
    }
}

/// Flags for statx of a `/proc/<pid>/fd/<n>` entry. The magic link is followed (no
/// AT_SYMLINK_NOFOLLOW) so the target inode is stat'ed; AT_STATX_DONT_SYNC keeps a
/// hung NFS/FUSE server from blocking the scan on a file we do not care about.
pub(crate) const FD_STATX_FLAGS: i32 = libc::AT_STATX_DONT_SYNC;
/// Only the type is requested: st_rdev is filled regardless of the mask.
pub(crate) const FD_STATX_MASK: u32 = libc::STATX_TYPE;

/// statx of `name` relative to the directory `dir`.
pub(crate) fn statx_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<NodeStat> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open fd for the duration of the call, `name` is NUL-terminated
    // and `st` is a writable statx that outlives the call.
    let rc = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            name.as_ptr(),
            FD_STATX_FLAGS,
            FD_STATX_MASK,
            &mut st,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(NodeStat::from_statx(&st))
}

/// A zeroed statx for io_uring to fill.
pub(crate) fn zeroed_statx() -> Box<libc::statx> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    Box::new(unsafe { std::mem::zeroed() })
}

/// Open a directory for `*at` calls and getdents.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(OwnedFd::from(f))
}

/// Call `f` with each entry name of the directory `dir` (except `.` and `..`).
/// Uses getdents64 on the fd so the same fd serves the listing and the statx calls.
pub(crate) fn for_each_dir_entry(
    dir: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    mut f: impl FnMut(&[u8]),
) -> io::Result<()> {
    const BUF: usize = 32 * 1024;
    buf.resize(BUF, 0);
    loop {
        // SAFETY: `buf` is a writable allocation of `buf.len()` bytes and `dir` is open.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(());
        }
        // The records are parsed from bytes: struct linux_dirent64 is
        // { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }.
        let filled = &buf[..n as usize];
        let mut pos = 0usize;
        while pos + 19 <= filled.len() {
            let reclen = u16::from_ne_bytes([filled[pos + 16], filled[pos + 17]]) as usize;
            if reclen < 19 || pos + reclen > filled.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed getdents64 record",
                ));
            }
            let name = &filled[pos + 19..pos + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." {
                f(name);
            }
            pos += reclen;
        }
    }
}

/// A non-blocking eventfd used to wake the ring thread.
pub(crate) fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Take ownership of an fd the kernel returned through an io_uring completion.
pub(crate) fn owned_fd_from_completion(fd: i32) -> OwnedFd {
    // SAFETY: the caller passes the non-negative result of an IORING_OP_OPENAT, a fresh fd
    // that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A zeroed heap buffer aligned for O_DIRECT.
pub(crate) struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation, like Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// `len` is rounded up to a multiple of [`DIRECT_ALIGN`] (and at least one block).
    pub fn new(len: usize) -> Self {
        let len = len.max(1).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        let layout = Layout::from_size_align(len, DIRECT_ALIGN).expect("aligned layout");
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        Self { ptr, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed or kernel-written) bytes we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, DIRECT_ALIGN).expect("aligned layout");
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// A NETLINK_KOBJECT_UEVENT socket bound to the kernel's multicast group 1.
pub(crate) struct NetlinkSocket {
    fd: OwnedFd,
}

/// One datagram from the uevent socket.
pub(crate) enum NetlinkRecv {
    /// Bytes and the sender's port id (0 = the kernel).
    Message(usize, u32),
    /// The socket's receive buffer overflowed: events were lost.
    Overflow,
    Timeout,
}

impl NetlinkSocket {
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket takes no pointers.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A burst of events (many namespaces appearing at once) must not overflow the
        // default buffer; ignore failure, the overflow path rescans anyway.
        let rcvbuf: libc::c_int = 4 * 1024 * 1024;
        // SAFETY: the option value points to a c_int of the stated size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // SAFETY: an all-zero sockaddr_nl is valid; fields are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_pid = 0; // let the kernel pick a unique port id
        addr.nl_groups = 1; // kernel uevents (udev re-broadcasts on group 2)
                            // SAFETY: `addr` is a sockaddr_nl of the stated size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Wait up to `timeout` for one datagram into `buf`.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<NetlinkRecv> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `pfd` is one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(NetlinkRecv::Timeout)
            } else {
                Err(e)
            };
        }
        if rc == 0 {
            return Ok(NetlinkRecv::Timeout);
        }
        // SAFETY: an all-zero sockaddr_nl is valid.
        let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `buf` is writable for its length; `from`/`from_len` describe a
        // sockaddr_nl-sized output buffer.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_nl).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS) => Ok(NetlinkRecv::Overflow),
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(NetlinkRecv::Timeout),
                _ => Err(e),
            };
        }
        Ok(NetlinkRecv::Message(n as usize, from.nl_pid))
    }
}
