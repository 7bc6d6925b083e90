//! mount(2) and umount2(2) through rustix: filesystem mounts, bind mounts (read-only when
//! asked) and idempotent unmounts, with errors that carry the errno.
//!
//! Every call here can block in the kernel (a mount of a device whose NVMe/TCP target went
//! away waits for I/O): call them from a blocking thread and bound the wait with your own
//! deadline. Nothing is retried; the caller decides what an errno means for it.

use std::fmt;
use std::path::{Path, PathBuf};

pub use rustix::io::Errno;
pub use rustix::mount::MountFlags;
use rustix::mount::UnmountFlags;
use thiserror::Error;

/// The per-mount flags a bind mount keeps only through a second, remounting call
/// (mount(2): MS_BIND ignores every other flag of the first call).
const BIND_REMOUNT_FLAGS: MountFlags = MountFlags::RDONLY
    .union(MountFlags::NOSUID)
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC)
    .union(MountFlags::NOATIME);

/// The mount(8) option names that are mount flags rather than filesystem data, with their
/// bits (mount(2), `MS_*`). `rw` and `defaults` set no bit.
const FLAG_OPTIONS: &[(&str, MountFlags)] = &[
    ("ro", MountFlags::RDONLY),
    ("rw", MountFlags::empty()),
    ("defaults", MountFlags::empty()),
    ("noatime", MountFlags::NOATIME),
    ("nodiratime", MountFlags::NODIRATIME),
    ("relatime", MountFlags::RELATIME),
    ("strictatime", MountFlags::STRICTATIME),
    ("lazytime", MountFlags::LAZYTIME),
    ("nosuid", MountFlags::NOSUID),
    ("nodev", MountFlags::NODEV),
    ("noexec", MountFlags::NOEXEC),
    ("sync", MountFlags::SYNCHRONOUS),
    ("dirsync", MountFlags::DIRSYNC),
];

/// The flag a mount(8) option name stands for (`"noatime"` → `MS_NOATIME`), `None` when the
/// name is not a flag (it is filesystem data such as `discard`, or unknown). The names are
/// mount(8)'s "FILESYSTEM-INDEPENDENT MOUNT OPTIONS" that map to one `MS_*` bit.
pub fn flag_for_option(name: &str) -> Option<MountFlags> {
    FLAG_OPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

/// Every option name [`flag_for_option`] knows, in a stable order (for error messages).
pub fn flag_option_names() -> impl Iterator<Item = &'static str> {
    FLAG_OPTIONS.iter().map(|(n, _)| *n)
}

/// Which call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOp {
    Mount,
    Bind,
    /// The remount that applies read-only (and the other flags) to a fresh bind mount.
    RemountBind,
    Unmount,
}

impl fmt::Display for MountOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mount => "mount",
            Self::Bind => "bind mount",
            Self::RemountBind => "remount of the bind mount",
            Self::Unmount => "unmount",
        })
    }
}

#[derive(Debug, Error)]
pub enum MountError {
    /// The kernel refused: `errno` is what mount(2)/umount2(2) returned (EBUSY: in use or
    /// already mounted; ENOENT: a path is missing; ENODEV: unknown filesystem type;
    /// EINVAL: bad superblock or options; EACCES/EPERM: not allowed; EROFS: read-only).
    #[error("{op} {source_path} on {target}: {errno}")]
    Kernel {
        op: MountOp,
        source_path: String,
        target: PathBuf,
        errno: Errno,
    },
    /// A string cannot be passed to the kernel.
    #[error("{what} {value:?} contains a NUL byte")]
    Nul { what: &'static str, value: String },
}

impl MountError {
    /// The errno of a kernel refusal.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            Self::Nul { .. } => None,
        }
    }
}

/// How to unmount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnmountMode {
    /// Fails with EBUSY while the mount is in use.
    #[default]
    Normal,
    /// `MNT_DETACH`: detach now, release when the last user goes (umount -l).
    Detach,
}

/// What [`unmount`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    Unmounted,
    /// The target is not a mount point (EINVAL) or does not exist (ENOENT): nothing to do.
    NotMounted,
}

fn no_nul(what: &'static str, value: &str) -> Result<(), MountError> {
    if value.contains('\0') {
        return Err(MountError::Nul {
            what,
            value: value.chars().take(256).collect(),
        });
    }
    Ok(())
}

fn path_no_nul(what: &'static str, p: &Path) -> Result<(), MountError> {
    use std::os::unix::ffi::OsStrExt;
    if p.as_os_str().as_bytes().contains(&0) {
        return Err(MountError::Nul {
            what,
            value: p.to_string_lossy().chars().take(256).collect(),
        });
    }
    Ok(())
}

fn kernel(op: MountOp, source: &Path, target: &Path) -> impl FnOnce(Errno) -> MountError {
    let source_path = source.display().to_string();
    let target = target.to_path_buf();
    move |errno| MountError::Kernel {
        op,
        source_path,
        target,
        errno,
    }
}

/// Mounts the filesystem `fs_type` of `device` on `target` with `flags` and the
/// filesystem-specific `data` (comma-separated, e.g. `"discard,nouuid"`; empty for none).
pub fn mount_filesystem(
    device: &Path,
    target: &Path,
    fs_type: &str,
    flags: MountFlags,
    data: &str,
) -> Result<(), MountError> {
    path_no_nul("device", device)?;
    path_no_nul("target", target)?;
    no_nul("filesystem type", fs_type)?;
    no_nul("mount data", data)?;
    let data = std::ffi::CString::new(data).expect("checked for NUL above");
    rustix::mount::mount(device, target, fs_type, flags, Some(data.as_c_str())).map_err(kernel(
        MountOp::Mount,
        device,
        target,
    ))
}

/// Bind-mounts `source` on `target`. The flags among `MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`,
/// `MS_NOEXEC` and `MS_NOATIME` are applied by a second, remounting call (a bind mount
/// ignores them otherwise); if that call fails the fresh bind is detached again, so a
/// request for a read-only mount never leaves a writable one behind. Other flags are ignored.
pub fn bind_mount(source: &Path, target: &Path, flags: MountFlags) -> Result<(), MountError> {
    path_no_nul("source", source)?;
    path_no_nul("target", target)?;
    rustix::mount::mount_bind(source, target).map_err(kernel(MountOp::Bind, source, target))?;
    let extra = flags & BIND_REMOUNT_FLAGS;
    if extra.is_empty() {
        return Ok(());
    }
    if let Err(errno) = rustix::mount::mount_remount(target, MountFlags::BIND | extra, "") {
        // Best effort: the remount's error is the one worth reporting.
        let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
        return Err(kernel(MountOp::RemountBind, source, target)(errno));
    }
    Ok(())
}

/// Unmounts `target`. Idempotent: a target that is not mounted, or gone, is
/// [`Unmounted::NotMounted`]. A busy mount is EBUSY with [`UnmountMode::Normal`].
pub fn unmount(target: &Path, mode: UnmountMode) -> Result<Unmounted, MountError> {
    path_no_nul("target", target)?;
    let flags = match mode {
        UnmountMode::Normal => UnmountFlags::empty(),
        UnmountMode::Detach => UnmountFlags::DETACH,
    };
    match rustix::mount::unmount(target, flags) {
        Ok(()) => Ok(Unmounted::Unmounted),
        Err(Errno::INVAL) | Err(Errno::NOENT) => Ok(Unmounted::NotMounted),
        Err(errno) => Err(MountError::Kernel {
            op: MountOp::Unmount,
            source_path: String::new(),
            target: target.to_path_buf(),
            errno,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_names_map_to_their_flags() {
        assert_eq!(flag_for_option("ro"), Some(MountFlags::RDONLY));
        assert_eq!(flag_for_option("noatime"), Some(MountFlags::NOATIME));
        assert_eq!(flag_for_option("rw"), Some(MountFlags::empty()));
        assert_eq!(flag_for_option("discard"), None, "filesystem data");
        assert_eq!(flag_for_option("bind"), None, "never a user flag");
        assert_eq!(flag_for_option("remount"), None);
        assert_eq!(flag_option_names().count(), FLAG_OPTIONS.len());
    }

    #[test]
    fn nul_bytes_are_refused_before_the_kernel() {
        let e = mount_filesystem(
            Path::new("/dev/x"),
            Path::new("/mnt"),
            "ext4",
            MountFlags::empty(),
            "a\0b",
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                MountError::Nul {
                    what: "mount data",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.errno(), None);
        let e = unmount(Path::new("/mnt/\0x"), UnmountMode::Normal).unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
    }
}
