//! RouterOS error classification over stdout/stderr and the exit status. The checks: `rds_csi_fuzz::routeros_error`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::routeros_error(data));
