//! StorageClass parameters (controller::params::VolumeParams). The checks: `rds_csi_fuzz::storageclass_params`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::storageclass_params(data));
