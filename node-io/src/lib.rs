//! Linux I/O for a storage node: NVMe/TCP discovery and connect, who holds a device open,
//! mountinfo and device-path parsing, and device reads that cannot hang a thread.
//!
//! This crate knows Linux, not CSI, Kubernetes or RouterOS. Every root path
//! (`/sys`, `/proc`, `/dev`) is a parameter so tests run on fake trees.

pub mod dev_num;
pub mod device_path;
pub mod fabrics;
pub mod mountinfo;
pub mod sysfs;
pub mod uevent;
