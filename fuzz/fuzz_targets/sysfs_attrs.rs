//! NVMe controller sysfs attributes: address, state, dev (node_io::sysfs). The checks: `rds_csi_fuzz::sysfs_attrs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::sysfs_attrs(data));
