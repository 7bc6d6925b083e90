//! Slots, NQNs, RDS paths, snapshot ids, and the commands built from them. The checks: `rds_csi_fuzz::volume_ids_nqns`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::volume_ids_nqns(data));
