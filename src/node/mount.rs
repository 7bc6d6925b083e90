//! Mounting, unmounting and formatting under deadlines.
//!
//! mount(2)/umount2(2) go through node-io (rustix; no `mount` binary on the hot path). A call
//! on a dead device can block in the kernel; it runs on a blocking thread and the RPC returns
//! at its deadline with DEADLINE_EXCEEDED (the thread finishes or stays stuck in the kernel —
//! nothing else waits for it). mkfs and grow tools run as child processes killed at the
//! deadline.

use std::path::Path;

use node_io::fs_options::OptionError;
use node_io::mount::{self as io_mount, MountFlags, UnmountMode};
use tokio::time::Instant;

use crate::node::error::{show, NodeError};
use crate::runtime::blocking_until;
use crate::volume::FsType;

/// Options refused whatever the filesystem, each because it would break something the
/// driver guarantees (docs/configuration.md, "mountOptions"): the mount(8) keywords that
/// change what a mount *is* rather than how the filesystem behaves (the driver manages the
/// mount tree itself), and filesystem options that make the mount use another block device
/// of the host or skip journal recovery.
const DENIED: &[(&str, &str)] = &[
    ("remount", "the driver makes every mount itself"),
    ("bind", "the driver makes every mount itself"),
    ("rbind", "the driver makes every mount itself"),
    ("move", "the driver makes every mount itself"),
    ("shared", "mount propagation is the driver's"),
    ("rshared", "mount propagation is the driver's"),
    ("slave", "mount propagation is the driver's"),
    ("rslave", "mount propagation is the driver's"),
    ("private", "mount propagation is the driver's"),
    ("rprivate", "mount propagation is the driver's"),
    ("unbindable", "mount propagation is the driver's"),
    ("runbindable", "mount propagation is the driver's"),
    ("loop", "the volume's device is the driver's"),
    ("offset", "the volume's device is the driver's"),
    ("sizelimit", "the volume's device is the driver's"),
    (
        "journal_dev",
        "it puts the journal on another block device of the host",
    ),
    (
        "journal_path",
        "it puts the journal on another block device of the host",
    ),
    (
        "logdev",
        "it puts the log on another block device of the host",
    ),
    ("rtdev", "it puts data on another block device of the host"),
    (
        "norecovery",
        "it mounts without replaying the journal, so writes can corrupt the filesystem",
    ),
    (
        "noload",
        "it mounts without replaying the journal, so writes can corrupt the filesystem",
    ),
];

/// The options of one mount: the VFS flags (`ro`, `noatime`, ...) and the filesystem's
/// own options (`commit=60`, `logbsize=256k`, ...), passed to mount(2) as its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MountFlags,
    pub data: Vec<String>,
}

/// Splits user mount options (StorageClass `mountOptions` / CSI `mount_flags`) into flags
/// and filesystem options, refusing the deny-list and anything that cannot be one option
/// (empty, control characters). Whether the filesystem accepts the rest is the kernel's
/// call ([`check_options`]).
pub fn parse_mount_options(flags: &[String]) -> Result<MountOptions, NodeError> {
    let mut o = MountOptions {
        flags: MountFlags::empty(),
        data: Vec::new(),
    };
    for raw in flags {
        for f in raw.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let key = f.split_once('=').map_or(f, |(k, _)| k);
            if let Some((_, why)) = DENIED.iter().find(|(d, _)| *d == key) {
                return Err(NodeError::MountOptionDenied {
                    option: f.to_owned(),
                    why,
                });
            }
            if f.chars().any(char::is_control) || f.len() > 256 {
                return Err(NodeError::MountOptionRefused {
                    option: f.to_owned(),
                    reason: "not a mount option".into(),
                });
            }
            match io_mount::flag_for_option(f) {
                Some(bit) => o.flags |= bit,
                None => o.data.push(f.to_owned()),
            }
        }
    }
    Ok(o)
}

/// The kernel's check of the filesystem options for `fs_type`, before anything is formatted
/// or mounted: an option it refuses is INVALID_ARGUMENT naming it. Where the check cannot
/// run (a kernel without fsopen), mount(2) decides.
pub async fn check_options(
    fs_type: FsType,
    opts: &MountOptions,
    deadline: Instant,
) -> Result<(), NodeError> {
    let data = opts.data.clone();
    let what = format!("checking {} mount options", fs_type.as_str());
    let r = blocking_until(what, deadline, move || {
        Ok::<_, NodeError>(node_io::fs_options::check_options(fs_type.as_str(), &data))
    })
    .await?;
    match r {
        Ok(()) => Ok(()),
        Err(OptionError::Rejected {
            option, message, ..
        }) => Err(NodeError::MountOptionRefused {
            option,
            reason: message.unwrap_or_else(|| format!("{} does not accept it", fs_type.as_str())),
        }),
        Err(e @ OptionError::Unavailable { .. }) => {
            tracing::debug!("{e}; mount(2) checks the options");
            Ok(())
        }
    }
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
        show(&device),
        show(&target),
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
    let what = format!("bind mount {} on {}", show(&source), show(&target));
    blocking_until(what, deadline, move || {
        io_mount::bind_mount(&source, &target, flags).map_err(NodeError::Mount)
    })
    .await
}

/// Unmounts `target`; a target that is not mounted is fine (idempotent).
pub async fn unmount(target: &Path, deadline: Instant) -> Result<(), NodeError> {
    let target = target.to_owned();
    let what = format!("unmount {}", show(&target));
    blocking_until(what, deadline, move || {
        io_mount::unmount(&target, UnmountMode::Normal)
            .map(|_| ())
            .map_err(NodeError::Mount)
    })
    .await
}

/// Runs a tool (mkfs, resize2fs, xfs_growfs) with stdin closed, killed at the deadline;
/// a non-zero exit is an error carrying the tool's output.
pub async fn run_tool(
    program: &'static str,
    args: &[&str],
    deadline: Instant,
) -> Result<String, NodeError> {
    let (status, text) = run_tool_status(program, args, deadline).await?;
    if !status.success() {
        return Err(NodeError::ToolFailed {
            command: format!("{program} {}", args.join(" ")),
            status,
            output: text,
        });
    }
    Ok(text)
}

/// [`run_tool`] for tools whose exit codes mean more than success or failure (e2fsck):
/// the exit status and the output (stdout then stderr, trimmed).
pub async fn run_tool_status(
    program: &'static str,
    args: &[&str],
    deadline: Instant,
) -> Result<(std::process::ExitStatus, String), NodeError> {
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
    Ok((out.status, text.trim().to_owned()))
}

/// Formats `device` with `fs_type`. Called only after a probe found the device blank and the
/// volume is fresh. No force flag: if a signature appeared after all, the tool refuses.
///
/// `again`: the stage record shows this node started an mkfs of this fresh volume that it
/// did not see finish; what that mkfs left (a partial filesystem) is overwritten (`-F`/`-f`).
pub async fn mkfs(
    device: &Path,
    fs_type: FsType,
    again: bool,
    deadline: Instant,
) -> Result<(), NodeError> {
    let dev = device.to_string_lossy().into_owned();
    // -E nodiscard / -K: the RDS file is sparse already; a discard pass is slow and useless.
    let mut args: Vec<&str> = match fs_type {
        FsType::Ext4 => vec!["-q", "-E", "nodiscard"],
        FsType::Xfs => vec!["-q", "-K"],
    };
    if again {
        args.push(match fs_type {
            FsType::Ext4 => "-F",
            FsType::Xfs => "-f",
        });
    }
    args.push(&dev);
    let program = match fs_type {
        FsType::Ext4 => "mkfs.ext4",
        FsType::Xfs => "mkfs.xfs",
    };
    run_tool(program, &args, deadline).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn mount_options_split_into_flags_and_filesystem_options_and_the_deny_list_is_refused() {
        let o = parse_mount_options(&["noatime,nodiscard".into(), "ro".into(), "commit=60".into()])
            .unwrap();
        assert_eq!(o.flags, MountFlags::NOATIME | MountFlags::RDONLY);
        assert_eq!(
            o.data,
            vec!["nodiscard".to_string(), "commit=60".to_string()]
        );
        for bad in [
            "remount",
            "bind",
            "rbind",
            "rshared",
            "journal_path=/dev/sda",
            "logdev=/dev/sdb1",
            "norecovery",
            "loop",
        ] {
            let e = parse_mount_options(&[bad.into()]).unwrap_err();
            assert!(
                matches!(e, NodeError::MountOptionDenied { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert!(parse_mount_options(&["a\nb".into()]).is_err());
        assert_eq!(
            parse_mount_options(&[]).unwrap().flags & MountFlags::NOEXEC,
            MountFlags::empty(),
            "noexec is never forced"
        );
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
