//! RouterOS `print detail` output: parse_items, Disk / PoolCapacity, render round trip. The checks: `rds_csi_fuzz::routeros_print`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::routeros_print(data));
