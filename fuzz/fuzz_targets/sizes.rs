//! RouterOS-printed and user-typed sizes: byte-exact round trips. The checks: `rds_csi_fuzz::sizes`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::sizes(data));
