//! `--endpoint` / `--metrics-address` parsing never panics, and accepted endpoints round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rds_csi::endpoint::{Endpoint, MetricsAddress};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(e) = s.parse::<Endpoint>() {
            assert_eq!(e.to_string().parse::<Endpoint>().unwrap(), e);
        }
        let _ = s.parse::<MetricsAddress>();
    }
});
