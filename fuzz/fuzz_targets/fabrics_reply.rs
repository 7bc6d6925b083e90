//! The /dev/nvme-fabrics reply and connect-string values (node_io::fabrics). The checks: `rds_csi_fuzz::fabrics_reply`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::fabrics_reply(data));
