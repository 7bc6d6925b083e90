//! The volume context the node reads back (volume_context::VolumeContext). The checks: `rds_csi_fuzz::volume_context`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::volume_context(data));
