//! Linux I/O for a storage node: NVMe/TCP discovery, connect and disconnect, waits driven by
//! kernel uevents, mounts, loop devices, who holds a device open, mountinfo and device-path
//! parsing, and device reads that cannot hang a thread.
//!
//! This crate knows Linux, not CSI, Kubernetes or RouterOS. Every root path
//! (`/sys`, `/proc`, `/dev`) is a parameter so tests run on fake trees. Syscalls std does not
//! offer go through rustix.
//!
//! `unsafe` lives only in `sys` (aligned buffers and fd ownership for io_uring) and `ring`
//! (io_uring submission).

pub mod block;
pub mod dev_num;
pub mod device_path;
pub mod fabrics;
pub mod fs_options;
pub mod health;
pub mod holders;
pub mod mount;
pub mod mountinfo;
pub mod nqn;
pub mod probe;
pub mod reader;
mod ring;
mod sys;
pub mod sysfs;
#[cfg(feature = "testing")]
pub mod testing;
pub mod uevent;
pub mod uevent_hub;
pub mod uevent_socket;
pub mod wait;
