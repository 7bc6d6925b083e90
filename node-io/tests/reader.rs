//! Deadline-bounded reads, in io_uring mode and in the degraded helper-thread mode.

mod common;

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use common::loop_dev;
use node_io::reader::{DeviceReader, ReadError, ReaderMode};

const SLACK: Duration = Duration::from_millis(200);

fn readers() -> Vec<DeviceReader> {
    let uring = DeviceReader::new();
    let mut out = vec![DeviceReader::fallback("forced by test")];
    match uring.mode() {
        ReaderMode::IoUring => out.push(uring),
        ReaderMode::Fallback { reason } => eprintln!("io_uring unavailable here: {reason}"),
    }
    out
}

fn assert_times_out_at_deadline(r: Result<Vec<u8>, ReadError>, start: Instant, budget: Duration) {
    let took = start.elapsed();
    match r {
        Err(e @ ReadError::Timeout { .. }) => assert!(e.to_string().contains("deadline")),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        took + SLACK >= budget && took <= budget + SLACK,
        "answered after {took:?} for a {budget:?} deadline"
    );
}

fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn default_reader_uses_io_uring_on_this_kernel() {
    // The development machine and CI run kernels with io_uring enabled; if this fails
    // the fallback is being used silently.
    let r = DeviceReader::new();
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim() != "0")
        .unwrap_or(false);
    if disabled {
        assert!(matches!(r.mode(), ReaderMode::Fallback { .. }));
    } else {
        assert_eq!(r.mode(), &ReaderMode::IoUring);
    }
}

#[test]
fn a_pipe_that_never_gets_data_times_out_at_the_deadline_in_every_mode() {
    for reader in readers() {
        let (rx, _tx) = std::io::pipe().unwrap();
        let budget = Duration::from_millis(400);
        let start = Instant::now();
        let r = reader.read_at(rx.as_fd(), 0, 4096, start + budget);
        assert_times_out_at_deadline(r, start, budget);
        // The reader still works afterwards.
        let (rx2, mut tx2) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut tx2, b"hello").unwrap();
        let got = reader
            .read_at(
                rx2.as_fd(),
                0,
                4096,
                Instant::now() + Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(got, b"hello", "{:?}", reader.mode());
    }
}

#[test]
fn a_named_fifo_that_never_gets_data_times_out_at_the_deadline_in_every_mode() {
    // Opened read-write: that never blocks in open, and makes us a writer, so the
    // read waits for data forever instead of seeing EOF. (O_DIRECT opens of a FIFO are
    // refused with EINVAL, hence an fd target.)
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    for reader in readers() {
        let budget = Duration::from_millis(300);
        let start = Instant::now();
        let r = reader.read_at(f.as_fd(), 0, 4096, start + budget);
        assert_times_out_at_deadline(r, start, budget);
    }
    // Wake the fallback helper still blocked in read() so it ends.
    std::io::Write::write_all(&mut &f, &[0u8; 4096]).unwrap();
}

#[test]
fn an_already_passed_deadline_is_a_timeout_not_a_read() {
    let (rx, _tx) = std::io::pipe().unwrap();
    for reader in readers() {
        let start = Instant::now();
        let r = reader.read_at(rx.as_fd(), 0, 4096, start);
        assert!(matches!(r, Err(ReadError::Timeout { .. })), "{r:?}");
        assert!(start.elapsed() < SLACK);
    }
}

#[test]
fn a_missing_device_is_an_open_error_naming_it() {
    for reader in readers() {
        let r = reader.read_at(
            Path::new("/dev/does-not-exist-node-io"),
            0,
            4096,
            Instant::now() + Duration::from_secs(2),
        );
        match r {
            Err(e @ ReadError::Open { .. }) => {
                assert!(e.to_string().contains("/dev/does-not-exist-node-io"))
            }
            other => panic!("{:?}: {other:?}", reader.mode()),
        }
    }
}

#[test]
fn bad_lengths_are_refused_without_reading() {
    let reader = DeviceReader::new();
    let far = Instant::now() + Duration::from_secs(1);
    for len in [0, node_io::reader::MAX_READ_LEN + 1] {
        let r = reader.read_at(Path::new("/dev/null"), 0, len, far);
        assert!(matches!(r, Err(ReadError::Invalid { .. })), "{len}: {r:?}");
    }
    let r = reader.read_at(Path::new("/dev/null"), u64::MAX - 10, 100, far);
    assert!(matches!(r, Err(ReadError::Invalid { .. })), "{r:?}");
}

#[test]
fn a_loop_device_reads_back_its_bytes_at_unaligned_offsets() {
    let mut content = vec![0u8; 1 << 20];
    for (i, b) in content.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let Some(lo) = loop_dev(1 << 20, &content, &[]) else {
        return;
    };
    for reader in readers() {
        let deadline = Instant::now() + Duration::from_secs(5);
        for (off, len) in [
            (0usize, 4096usize),
            (1000, 10),
            (8191, 70000),
            (1048000, 576),
        ] {
            let got = reader
                .read_at(&lo.path, off as u64, len, deadline)
                .unwrap_or_else(|e| panic!("{:?}: {e}", reader.mode()));
            assert_eq!(
                got,
                &content[off..off + len],
                "{:?} at {off}",
                reader.mode()
            );
        }
        // Past the end the read comes back short, not padded.
        let got = reader
            .read_at(&lo.path, (1 << 20) - 100, 4096, deadline)
            .unwrap();
        assert_eq!(got, &content[(1 << 20) - 100..]);
    }
}
