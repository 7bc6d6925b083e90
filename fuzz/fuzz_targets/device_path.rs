//! NVMe device names and /dev paths (node_io::device_path). The checks: `rds_csi_fuzz::device_path`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::device_path(data));
