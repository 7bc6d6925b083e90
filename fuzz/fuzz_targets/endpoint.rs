//! `--endpoint` / `--metrics-address` parsing never panics, and accepted endpoints round-trip. The checks: `rds_csi_fuzz::endpoint`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::endpoint(data));
