//! What io_uring needs that rustix does not give safely: page-aligned buffers for O_DIRECT,
//! a zeroed `statx` for IORING_OP_STATX to fill, and ownership of an fd a completion
//! returned. (statx, getdents64, eventfd and the netlink socket go through rustix.)
//!
//! This module and `ring.rs` are the only places in node-io with `unsafe`.

use std::alloc::{self, Layout};
use std::os::fd::{FromRawFd, OwnedFd};

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

    pub fn from_rustix(st: &rustix::fs::Statx) -> Self {
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

/// A zeroed statx for io_uring to fill.
pub(crate) fn zeroed_statx() -> Box<libc::statx> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    Box::new(unsafe { std::mem::zeroed() })
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
