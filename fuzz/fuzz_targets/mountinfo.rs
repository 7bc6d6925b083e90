//! /proc/<pid>/mountinfo lines (node_io::mountinfo). The checks: `rds_csi_fuzz::mountinfo`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::mountinfo(data));
