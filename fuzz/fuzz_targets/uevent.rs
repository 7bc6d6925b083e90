//! Kernel NETLINK_KOBJECT_UEVENT messages (node_io::uevent). The checks: `rds_csi_fuzz::uevent`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::uevent(data));
