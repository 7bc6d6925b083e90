//! Probing real loop devices before and after mkfs, and read-latency health checks.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{loop_dev, mkfs, skip, this_test, LoopDev};
use node_io::health::{read_latency, HealthError};
use node_io::probe::{probe_device, FsKind, Probe, ProbeError};
use node_io::reader::DeviceReader;

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn probe(lo: &LoopDev) -> Probe {
    let a = probe_device(&DeviceReader::new(), &lo.path, soon()).unwrap();
    let b = probe_device(&DeviceReader::fallback("test"), &lo.path, soon()).unwrap();
    assert_eq!(a, b, "io_uring and fallback disagree");
    a
}

#[test]
fn a_fresh_device_is_blank() {
    let Some(lo) = loop_dev(32 << 20, &[], &[]) else {
        return;
    };
    assert_eq!(probe(&lo), Probe::Blank);
}

#[test]
fn mkfs_ext4_is_detected_as_ext4() {
    let Some(lo) = loop_dev(32 << 20, &[], &["mkfs.ext4"]) else {
        return;
    };
    mkfs("mkfs.ext4", &lo.path).unwrap();
    assert_eq!(probe(&lo), Probe::Filesystem(FsKind::Ext4));
}

#[test]
fn mkfs_xfs_is_detected_as_xfs() {
    // mkfs.xfs refuses devices below 300 MiB; the backing file is sparse.
    let Some(lo) = loop_dev(320 << 20, &[], &["mkfs.xfs"]) else {
        return;
    };
    if let Err(e) = mkfs("mkfs.xfs", &lo.path) {
        return skip(&this_test(), e).unwrap_or(());
    }
    assert_eq!(probe(&lo), Probe::Filesystem(FsKind::Xfs));
}

#[test]
fn random_bytes_are_unknown() {
    // A fixed pseudo-random pattern (xorshift) with no signature at any probed offset.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let content: Vec<u8> = (0..(1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let Some(lo) = loop_dev(1 << 20, &content, &[]) else {
        return;
    };
    assert_eq!(
        node_io::probe::classify(&content[..node_io::probe::PROBE_LEN]),
        Probe::Unknown
    );
    assert_eq!(probe(&lo), Probe::Unknown);
}

#[test]
fn a_device_too_small_to_probe_is_not_ready_never_blank() {
    // 16 KiB of zeroes: the read comes back short.
    let Some(lo) = loop_dev(16 << 10, &[], &[]) else {
        return;
    };
    let err = probe_device(&DeviceReader::new(), &lo.path, soon()).unwrap_err();
    assert!(matches!(err, ProbeError::NotReady { .. }));
    assert!(err.to_string().contains(&lo.name), "{err}");
}

#[test]
fn an_unreadable_device_is_not_ready() {
    let err = probe_device(
        &DeviceReader::new(),
        Path::new("/dev/node-io-no-such-device"),
        soon(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not ready"), "{err}");
}

#[test]
fn health_read_of_a_loop_device_reports_a_latency() {
    let Some(lo) = loop_dev(1 << 20, &[], &[]) else {
        return;
    };
    let start = Instant::now();
    let took = read_latency(&DeviceReader::new(), &lo.path, soon()).unwrap();
    assert!(took <= start.elapsed());
}

#[test]
fn health_read_of_an_empty_device_is_a_short_read() {
    let err = read_latency(&DeviceReader::new(), Path::new("/dev/null"), soon()).unwrap_err();
    // /dev/null cannot be opened O_DIRECT on every kernel; either way it is not healthy.
    assert!(
        matches!(
            err,
            HealthError::ShortRead { got: 0, .. } | HealthError::Io { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn health_read_that_gets_no_answer_is_stuck_at_its_deadline() {
    let (rx, _tx) = std::io::pipe().unwrap();
    for reader in [DeviceReader::new(), DeviceReader::fallback("test")] {
        let budget = Duration::from_millis(300);
        let start = Instant::now();
        let err = read_latency(&reader, std::os::fd::AsFd::as_fd(&rx), start + budget).unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, HealthError::Stuck { .. }), "{err:?}");
        assert!(err.to_string().contains("stuck"));
        assert!(
            took >= budget && took < budget + Duration::from_millis(200),
            "{took:?}"
        );
    }
}
