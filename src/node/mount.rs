//! Mounting, unmounting and formatting under deadlines.
//!
//! mount(2)/umount2(2) are called directly (no `mount` binary on the hot path). A call on a
//! dead device can block in the kernel; it runs on a blocking thread and the RPC returns at
//! its deadline with DEADLINE_EXCEEDED (the thread finishes or stays stuck in the kernel —
//! nothing else waits for it). mkfs and grow tools run as child processes killed at the
//! deadline.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::runtime::blocking_until;

/// Mount flags a user may pass (StorageClass mountOptions / CSI mount_flags). Anything else is
/// refused, so a flag can never weaken the node (e.g. a remount of a host path). `noexec` is
/// allowed but never forced.
const FLAG_BITS: &[(&str, libc::c_ulong)] = &[
    ("ro", libc::MS_RDONLY),
    ("rw", 0),
    ("noatime", libc::MS_NOATIME),
    ("nodiratime", libc::MS_NODIRATIME),
    ("relatime", libc::MS_RELATIME),
    ("strictatime", libc::MS_STRICTATIME),
    ("lazytime", libc::MS_LAZYTIME),
    ("nosuid", libc::MS_NOSUID),
    ("nodev", libc::MS_NODEV),
    ("noexec", libc::MS_NOEXEC),
    ("sync", libc::MS_SYNCHRONOUS),
    ("dirsync", libc::MS_DIRSYNC),
    ("defaults", 0),
];
/// Filesystem-specific options passed to the filesystem as mount data.
const DATA_OPTIONS: &[&str] = &[
    "discard",
    "nodiscard",
    "nouuid",
    "inode64",
    "largeio",
    "nobarrier",
    "barrier",
    "noquota",
    "data=ordered",
    "data=writeback",
    "data=journal",
    "errors=remount-ro",
    "errors=continue",
    "user_xattr",
    "acl",
    "noacl",
    "prjquota",
    "usrquota",
    "grpquota",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: libc::c_ulong,
    pub data: Vec<String>,
}

/// Parses user mount flags through the allow-lists.
pub fn parse_mount_flags(volume: &str, flags: &[String]) -> Result<MountOptions, Error> {
    let mut o = MountOptions::default();
    for raw in flags {
        for f in raw.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if let Some((_, bit)) = FLAG_BITS.iter().find(|(n, _)| *n == f) {
                o.flags |= bit;
            } else if DATA_OPTIONS.contains(&f) {
                o.data.push(f.to_owned());
            } else {
                return Err(Error::InvalidArgument(format!(
                    "volume {volume}: mount option {f:?} is not allowed; allowed: {}, {}",
                    FLAG_BITS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                    DATA_OPTIONS.join(", ")
                )));
            }
        }
    }
    Ok(o)
}

fn cpath(p: &Path) -> Result<CString, Error> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("path {} contains a NUL byte", p.display())))
}

fn sys_mount(
    src: &CString,
    target: &CString,
    fstype: Option<&CString>,
    flags: libc::c_ulong,
    data: Option<&CString>,
) -> std::io::Result<()> {
    // SAFETY: every pointer is a valid NUL-terminated string or null, alive for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            data.map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Mounts filesystem `fs_type` on `device` at `target`.
pub async fn mount_fs(
    device: &Path,
    target: &Path,
    fs_type: &str,
    opts: &MountOptions,
    deadline: Instant,
) -> Result<(), Error> {
    let (src, tgt, fst) = (
        cpath(device)?,
        cpath(target)?,
        CString::new(fs_type).map_err(|_| Error::InvalidArgument("fs type".into()))?,
    );
    let mut data = opts.data.clone();
    if fs_type == "xfs" && !data.iter().any(|d| d == "nouuid") {
        // Clones and restores of an xfs volume carry the source's UUID; without nouuid the
        // second one cannot be mounted on the same node.
        data.push("nouuid".into());
    }
    let data =
        CString::new(data.join(",")).map_err(|_| Error::InvalidArgument("mount data".into()))?;
    let flags = opts.flags;
    let what = format!(
        "mount {} on {} ({fs_type})",
        device.display(),
        target.display()
    );
    blocking_until(what.clone(), deadline, move || {
        io_result(&what, sys_mount(&src, &tgt, Some(&fst), flags, Some(&data)))
    })
    .await
}

/// Bind-mounts `source` on `target`, read-only when asked (a bind mount needs a remount to
/// become read-only).
pub async fn bind_mount(
    source: &Path,
    target: &Path,
    flags: libc::c_ulong,
    deadline: Instant,
) -> Result<(), Error> {
    let (src, tgt) = (cpath(source)?, cpath(target)?);
    let what = format!("bind mount {} on {}", source.display(), target.display());
    blocking_until(what.clone(), deadline, move || {
        io_result(&what, bind_then_remount(&src, &tgt, flags))
    })
    .await
}

fn bind_then_remount(src: &CString, tgt: &CString, flags: libc::c_ulong) -> std::io::Result<()> {
    sys_mount(src, tgt, None, libc::MS_BIND, None)?;
    let extra = flags
        & (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME);
    if extra != 0 {
        let none = CString::new("none").expect("static");
        if let Err(e) = sys_mount(
            &none,
            tgt,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | extra,
            None,
        ) {
            // Never leave a writable bind behind a request for a read-only one.
            // SAFETY: tgt is a valid NUL-terminated path.
            unsafe { libc::umount2(tgt.as_ptr(), libc::MNT_DETACH) };
            return Err(e);
        }
    }
    Ok(())
}

/// A system call's error, naming the work (INTERNAL).
fn io_result<T>(what: &str, r: std::io::Result<T>) -> Result<T, Error> {
    r.map_err(|e| Error::Internal(format!("{what}: {e}")))
}

/// Unmounts `target`; a target that is not mounted is fine (idempotent).
pub async fn unmount(target: &Path, deadline: Instant) -> Result<(), Error> {
    let tgt = cpath(target)?;
    let what = format!("unmount {}", target.display());
    blocking_until(what.clone(), deadline, move || {
        // SAFETY: tgt is a valid NUL-terminated path.
        let rc = unsafe { libc::umount2(tgt.as_ptr(), 0) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()), // not a mount point / gone
            _ => io_result(&what, Err(e)),
        }
    })
    .await
}

/// Runs a tool (mkfs, resize2fs, xfs_growfs) with stdin closed, killed at the deadline.
pub async fn run_tool(program: &str, args: &[&str], deadline: Instant) -> Result<String, Error> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let what = format!("{program} {}", args.join(" "));
    let out = match tokio::time::timeout_at(deadline, cmd.output()).await {
        Err(_) => {
            return Err(Error::DeadlineExceeded(format!(
                "{what} did not finish before the call's deadline"
            )))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::FailedPrecondition(format!(
                "{program} is not installed on this node; install e2fsprogs/xfsprogs in the node image"
            )))
        }
        Ok(Err(e)) => return Err(Error::Internal(format!("{what}: {e}"))),
        Ok(Ok(o)) => o,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(Error::Internal(format!(
            "{what} failed ({}): {}",
            out.status,
            text.trim()
        )));
    }
    Ok(text)
}

/// Formats `device` with `fs_type`. Called only after a probe found the device blank and the
/// volume is fresh. No force flag: if a signature appeared after all, the tool refuses.
pub async fn mkfs(device: &Path, fs_type: &str, deadline: Instant) -> Result<(), Error> {
    let dev = device.to_string_lossy().into_owned();
    match fs_type {
        // -E nodiscard: the RDS file is sparse already; a discard pass is slow and useless.
        "ext4" => run_tool("mkfs.ext4", &["-q", "-E", "nodiscard", &dev], deadline).await?,
        "xfs" => run_tool("mkfs.xfs", &["-q", "-K", &dev], deadline).await?,
        other => {
            return Err(Error::InvalidArgument(format!(
                "filesystem {other:?} is not supported; use ext4 or xfs"
            )))
        }
    };
    Ok(())
}

/// Creates the mount target directory (or file, for a block target) if needed.
pub fn ensure_dir(p: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(p)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", p.display())))
}

/// Seconds left until `deadline`, for logs.
pub fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Absolute, normalised paths only: a CO-provided path with `..` could escape the kubelet dir.
pub fn checked_path(kind: &str, volume: &str, p: &str) -> Result<PathBuf, Error> {
    let path = Path::new(p);
    if p.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "volume {volume}: {kind} is required"
        )));
    }
    // Split the raw text: Path::components() silently drops an inner "." component.
    if !path.is_absolute() || p.split('/').any(|c| c == "." || c == "..") {
        return Err(Error::InvalidArgument(format!(
            "volume {volume}: {kind} {p:?} must be an absolute path without '.' or '..'"
        )));
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flags_pass_an_allow_list() {
        let o = parse_mount_flags("v", &["noatime,nodiscard".into(), "ro".into()]).unwrap();
        assert_eq!(o.flags, libc::MS_NOATIME | libc::MS_RDONLY);
        assert_eq!(o.data, vec!["nodiscard".to_string()]);
        for bad in ["remount", "bind", "rbind", "x-foo", "uid=0", "context=x"] {
            let e = parse_mount_flags("v", &[bad.into()]).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert_eq!(
            parse_mount_flags("v", &[]).unwrap().flags & libc::MS_NOEXEC,
            0,
            "noexec is never forced"
        );
    }

    #[test]
    fn paths_from_the_co_are_checked() {
        assert!(checked_path("target_path", "v", "/var/lib/kubelet/pods/x/mount").is_ok());
        for bad in ["", "relative", "/a/../b", "/a/./b"] {
            assert!(checked_path("target_path", "v", bad).is_err(), "{bad:?}");
        }
    }

    /// A tool that outlives the call (mkfs on a stalled device) is killed at the deadline and
    /// the call answers DEADLINE_EXCEEDED then, not when the tool ends.
    #[tokio::test]
    async fn a_tool_past_the_deadline_is_killed_and_the_call_answers_in_time() {
        let d = tempfile::tempdir().unwrap();
        let pid_file = d.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
        let started = std::time::Instant::now();
        let e = run_tool(
            "sh",
            &["-c", &script],
            Instant::now() + Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::DeadlineExceeded(_)), "{e}");
        assert!(e.to_string().contains("sleep 30"), "names the tool: {e}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let until = std::time::Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie waiting to be reaped: either way no longer running.
        let running = || {
            std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .map(|r| r.trim_start().starts_with(['R', 'S', 'D']))
                })
                .unwrap_or(false)
        };
        while running() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!running(), "the tool still runs after the deadline");
    }
}
