//! node-io's syscall wrappers: the hand-written libc versions node-io had (copied here as
//! they were) side by side with the rustix calls that replaced them, on the same inputs.
//! This is the measurement behind keeping or refusing each rustix replacement.
//!
//! Benchmarks (stable names, read by scripts/bench-report.sh):
//! - `syscalls/statx_2000/{libc,rustix}`: statx (type only, AT_STATX_DONT_SYNC) of each of
//!   2,000 entries of /proc/self/fd relative to the open fd directory: the holder scan's
//!   inner loop.
//! - `syscalls/getdents_2000/{libc,rustix}`: open /proc/self/fd and list its 2,000 entries
//!   (getdents64 into a 32 KiB buffer; rustix: `RawDir`).
//! - `syscalls/eventfd/{libc,rustix}`: create and close the ring thread's wake eventfd.
//! - `syscalls/uevent_socket/{libc,rustix}`: open, size (SO_RCVBUF) and bind a
//!   NETLINK_KOBJECT_UEVENT socket, then close it (rustix: node-io's own
//!   `UeventSocket::open`, which also allocates its 16 KiB receive buffer).
//!
//! Run: `cargo bench -p node-io --bench syscalls`.

use std::ffi::CString;
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use criterion::{criterion_group, criterion_main, Criterion};
use node_io::uevent_socket::UeventSocket;
use rustix::fs::{AtFlags, Mode, OFlags, RawDir, StatxFlags};

const FDS: usize = 2000;

/// The wrappers as node-io's `sys.rs` had them, with libc.
mod by_hand {
    use super::*;

    pub fn statx_type(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> std::io::Result<u32> {
        // SAFETY: an all-zero statx is a valid value of this plain C struct.
        let mut st: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: `dir` is open, `name` NUL-terminated, `st` writable for the call.
        let rc = unsafe {
            libc::statx(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_STATX_DONT_SYNC,
                libc::STATX_TYPE,
                &mut st,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(u32::from(st.stx_mode) ^ st.stx_rdev_minor)
    }

    pub fn list(path: &std::path::Path, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)?;
        buf.resize(32 * 1024, 0);
        let mut count = 0;
        loop {
            // SAFETY: `buf` is writable for its length and `dir` is open.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    dir.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if n == 0 {
                return Ok(count);
            }
            let filled = &buf[..n as usize];
            let mut pos = 0usize;
            while pos + 19 <= filled.len() {
                let reclen = u16::from_ne_bytes([filled[pos + 16], filled[pos + 17]]) as usize;
                let name = &filled[pos + 19..pos + reclen];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if name != b"." && name != b".." {
                    count += name.len();
                }
                pos += reclen;
            }
        }
    }

    pub fn eventfd() -> std::io::Result<OwnedFd> {
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn uevent_socket() -> std::io::Result<OwnedFd> {
        // SAFETY: socket takes no pointers.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let rcvbuf: libc::c_int = 4 * 1024 * 1024;
        // SAFETY: the option value points to a c_int of the stated size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // SAFETY: an all-zero sockaddr_nl is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = 1;
        // SAFETY: `addr` is a sockaddr_nl of the stated size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// The same operations through rustix, as node-io makes them now.
mod with_rustix {
    use super::*;

    pub fn statx_type(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> std::io::Result<u32> {
        let st = rustix::fs::statx(dir, name, AtFlags::STATX_DONT_SYNC, StatxFlags::TYPE)?;
        Ok(u32::from(st.stx_mode) ^ st.stx_rdev_minor)
    }

    pub fn list(path: &std::path::Path, buf: &mut [MaybeUninit<u8>]) -> std::io::Result<usize> {
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut it = RawDir::new(&dir, buf);
        let mut count = 0;
        while let Some(e) = it.next() {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name != b"." && name != b".." {
                count += name.len();
            }
        }
        Ok(count)
    }

    pub fn eventfd() -> std::io::Result<OwnedFd> {
        use rustix::event::EventfdFlags;
        Ok(rustix::event::eventfd(
            0,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?)
    }
}

fn bench(c: &mut Criterion) {
    let held: Vec<std::fs::File> = (0..FDS)
        .map(|_| std::fs::File::open("/dev/null").expect("open /dev/null"))
        .collect();
    let fd_dir = std::path::Path::new("/proc/self/fd");
    let dir = rustix::fs::open(
        fd_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let names: Vec<CString> = held
        .iter()
        .map(|f| CString::new(f.as_raw_fd().to_string()).unwrap())
        .collect();
    use std::os::fd::AsFd;

    compare(
        c,
        "statx_2000",
        || {
            for n in &names {
                black_box(by_hand::statx_type(dir.as_fd(), n).unwrap());
            }
        },
        || {
            for n in &names {
                black_box(with_rustix::statx_type(dir.as_fd(), n).unwrap());
            }
        },
    );
    let mut vbuf = Vec::new();
    let mut rbuf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
    compare(
        c,
        "getdents_2000",
        || by_hand::list(fd_dir, &mut vbuf).unwrap(),
        || with_rustix::list(fd_dir, &mut rbuf).unwrap(),
    );
    compare(
        c,
        "eventfd",
        || by_hand::eventfd().unwrap(),
        || with_rustix::eventfd().unwrap(),
    );
    if by_hand::uevent_socket().is_ok() {
        compare(
            c,
            "uevent_socket",
            || by_hand::uevent_socket().unwrap(),
            || UeventSocket::open().unwrap(),
        );
    } else {
        eprintln!("netlink uevent socket unavailable here: syscalls/uevent_socket skipped");
    }
    interleaved(&dir, &names, fd_dir);
    drop(held);
}

/// One criterion group `syscalls/<op>`: the libc variant of an operation, then the rustix one.
fn compare<A, B>(
    c: &mut Criterion,
    op: &str,
    mut libc: impl FnMut() -> A,
    mut rustix: impl FnMut() -> B,
) {
    let mut g = c.benchmark_group(format!("syscalls/{op}"));
    g.bench_function("libc", |b| b.iter(|| black_box(libc())));
    g.bench_function("rustix", |b| b.iter(|| black_box(rustix())));
    g.finish();
}

/// The machine is shared and noisy: criterion runs one variant after the other, so load
/// changes between them show up as differences. This alternates the two variants round by
/// round and prints the medians and the median of the per-round ratios (rustix / libc):
/// `syscalls interleaved: op=statx_2000 rounds=.. libc_us=.. rustix_us=.. ratio=..`.
fn interleaved(dir: &OwnedFd, names: &[CString], fd_dir: &std::path::Path) {
    use std::os::fd::AsFd;
    use std::time::Instant;
    const ROUNDS: usize = 200;
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e6
    };
    let report = |op: &str, mut a: Vec<f64>, mut b: Vec<f64>| {
        let mut ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y / x).collect();
        let med = |v: &mut Vec<f64>| {
            v.sort_by(|x, y| x.total_cmp(y));
            v[v.len() / 2]
        };
        eprintln!(
            "syscalls interleaved: op={op} rounds={ROUNDS} libc_us={:.0} rustix_us={:.0} ratio={:.3}",
            med(&mut a),
            med(&mut b),
            med(&mut ratios)
        );
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(time(&mut || {
            for n in names {
                black_box(by_hand::statx_type(dir.as_fd(), n).unwrap());
            }
        }));
        b.push(time(&mut || {
            for n in names {
                black_box(with_rustix::statx_type(dir.as_fd(), n).unwrap());
            }
        }));
    }
    report("statx_2000", a, b);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut vbuf = Vec::new();
    let mut rbuf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
    for _ in 0..ROUNDS {
        a.push(time(&mut || {
            black_box(by_hand::list(fd_dir, &mut vbuf).unwrap());
        }));
        b.push(time(&mut || {
            black_box(with_rustix::list(fd_dir, &mut rbuf).unwrap());
        }));
    }
    report("getdents_2000", a, b);
}

criterion_group!(benches, bench);
criterion_main!(benches);
