//! Mounting, unmounting and formatting under deadlines.
//!
//! mount(2)/umount2(2) go through node-io (rustix; no `mount` binary on the hot path). A call
//! on a dead device can block in the kernel; it runs on a blocking thread and the RPC returns
//! at its deadline with DEADLINE_EXCEEDED (the thread finishes or stays stuck in the kernel —
//! nothing else waits for it). mkfs and grow tools run as child processes killed at the
//! deadline.

use std::path::{Path, PathBuf};

use node_io::mount::{self as io_mount, MountFlags, UnmountMode};
use tokio::time::Instant;

use crate::node::error::NodeError;
use crate::node::fs_plan::FsType;
use crate::runtime::blocking_until;

/// Filesystem-specific options passed to the filesystem as mount data. Every mount(8) flag
/// node-io knows (`ro`, `noatime`, `nosuid`, ...) is allowed too; anything else is refused,
/// so an option can never weaken the node (e.g. a remount of a host path). `noexec` is
/// allowed but never forced.
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MountFlags,
    pub data: Vec<String>,
}

/// Parses user mount flags through the allow-lists.
pub fn parse_mount_flags(flags: &[String]) -> Result<MountOptions, NodeError> {
    let mut o = MountOptions {
        flags: MountFlags::empty(),
        data: Vec::new(),
    };
    for raw in flags {
        for f in raw.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if let Some(bit) = io_mount::flag_for_option(f) {
                o.flags |= bit;
            } else if DATA_OPTIONS.contains(&f) {
                o.data.push(f.to_owned());
            } else {
                return Err(NodeError::MountOptionRefused {
                    option: f.to_owned(),
                    allowed: format!(
                        "{}, {}",
                        io_mount::flag_option_names().collect::<Vec<_>>().join(", "),
                        DATA_OPTIONS.join(", ")
                    ),
                });
            }
        }
    }
    Ok(o)
}

/// Mounts filesystem `fs_type` on `device` at `target`.
pub async fn mount_fs(
    device: &Path,
    target: &Path,
    fs_type: FsType,
    opts: &MountOptions,
    deadline: Instant,
) -> Result<(), NodeError> {
    let mut data = opts.data.clone();
    if fs_type == FsType::Xfs && !data.iter().any(|d| d == "nouuid") {
        // Clones and restores of an xfs volume carry the source's UUID; without nouuid the
        // second one cannot be mounted on the same node.
        data.push("nouuid".into());
    }
    let (device, target, flags) = (device.to_owned(), target.to_owned(), opts.flags);
    let what = format!(
        "mount {} on {} ({})",
        device.display(),
        target.display(),
        fs_type.as_str()
    );
    blocking_until(what, deadline, move || {
        io_mount::mount_filesystem(&device, &target, fs_type.as_str(), flags, &data.join(","))
            .map_err(NodeError::Mount)
    })
    .await
}

/// Bind-mounts `source` on `target`, read-only when asked (node-io applies the per-mount
/// flags by a remount, and never leaves a writable bind behind a read-only request).
pub async fn bind_mount(
    source: &Path,
    target: &Path,
    flags: MountFlags,
    deadline: Instant,
) -> Result<(), NodeError> {
    let (source, target) = (source.to_owned(), target.to_owned());
    let what = format!("bind mount {} on {}", source.display(), target.display());
    blocking_until(what, deadline, move || {
        io_mount::bind_mount(&source, &target, flags).map_err(NodeError::Mount)
    })
    .await
}

/// Unmounts `target`; a target that is not mounted is fine (idempotent).
pub async fn unmount(target: &Path, deadline: Instant) -> Result<(), NodeError> {
    let target = target.to_owned();
    let what = format!("unmount {}", target.display());
    blocking_until(what, deadline, move || {
        io_mount::unmount(&target, UnmountMode::Normal)
            .map(|_| ())
            .map_err(NodeError::Mount)
    })
    .await
}

/// Runs a tool (mkfs, resize2fs, xfs_growfs) with stdin closed, killed at the deadline.
pub async fn run_tool(
    program: &'static str,
    args: &[&str],
    deadline: Instant,
) -> Result<String, NodeError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let what = format!("{program} {}", args.join(" "));
    let out = match tokio::time::timeout_at(deadline, cmd.output()).await {
        Err(_) => return Err(NodeError::Deadline { what }),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NodeError::ToolMissing { program })
        }
        Ok(Err(source)) => return Err(NodeError::Syscall { what, source }),
        Ok(Ok(o)) => o,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(NodeError::ToolFailed {
            command: what,
            status: out.status,
            output: text.trim().to_owned(),
        });
    }
    Ok(text)
}

/// Formats `device` with `fs_type`. Called only after a probe found the device blank and the
/// volume is fresh. No force flag: if a signature appeared after all, the tool refuses.
pub async fn mkfs(device: &Path, fs_type: FsType, deadline: Instant) -> Result<(), NodeError> {
    let dev = device.to_string_lossy().into_owned();
    match fs_type {
        // -E nodiscard: the RDS file is sparse already; a discard pass is slow and useless.
        FsType::Ext4 => run_tool("mkfs.ext4", &["-q", "-E", "nodiscard", &dev], deadline).await?,
        FsType::Xfs => run_tool("mkfs.xfs", &["-q", "-K", &dev], deadline).await?,
    };
    Ok(())
}

/// Creates the mount target directory (or file, for a block target) if needed.
pub fn ensure_dir(p: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(p).map_err(|source| NodeError::Io {
        what: "cannot create",
        path: p.to_owned(),
        source,
    })
}

/// Absolute, normalised paths only: a CO-provided path with `..` could escape the kubelet dir.
pub fn checked_path(field: &'static str, p: &str) -> Result<PathBuf, NodeError> {
    let path = Path::new(p);
    if p.is_empty() {
        return Err(NodeError::Missing { field });
    }
    // Split the raw text: Path::components() silently drops an inner "." component.
    if !path.is_absolute() || p.split('/').any(|c| c == "." || c == "..") {
        return Err(NodeError::BadPath {
            field,
            path: p.to_owned(),
        });
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn mount_flags_pass_an_allow_list() {
        let o = parse_mount_flags(&["noatime,nodiscard".into(), "ro".into()]).unwrap();
        assert_eq!(o.flags, MountFlags::NOATIME | MountFlags::RDONLY);
        assert_eq!(o.data, vec!["nodiscard".to_string()]);
        for bad in ["remount", "bind", "rbind", "x-foo", "uid=0", "context=x"] {
            let e = parse_mount_flags(&[bad.into()]).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert_eq!(
            parse_mount_flags(&[]).unwrap().flags & MountFlags::NOEXEC,
            MountFlags::empty(),
            "noexec is never forced"
        );
    }

    #[test]
    fn paths_from_the_co_are_checked() {
        assert!(checked_path("target_path", "/var/lib/kubelet/pods/x/mount").is_ok());
        for bad in ["", "relative", "/a/../b", "/a/./b"] {
            assert!(checked_path("target_path", bad).is_err(), "{bad:?}");
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
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e}");
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
