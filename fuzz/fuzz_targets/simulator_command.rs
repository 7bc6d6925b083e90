//! Command lines an SSH client sends to the RDS simulator (simulator::commands). The checks: `rds_csi_fuzz::simulator_command`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rds_csi_fuzz::simulator_command(data));
