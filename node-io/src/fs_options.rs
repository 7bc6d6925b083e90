//! Asking the kernel whether a filesystem accepts mount options — without mounting.
//!
//! mount(2) answers a bad option with a bare EINVAL for the whole option string. The mount
//! API (fsopen(2)/fsconfig(2), Linux 5.2) parses options one at a time: each one is handed
//! to the filesystem's own parser as it is set, so the option the filesystem refuses is
//! known, and the kernel's explanation can be read from the context fd. Nothing is created:
//! the context is dropped before `FSCONFIG_CMD_CREATE`. Options whose value is only checked
//! when the superblock is built pass here and fail at mount(2) as before.

use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::mount::{fsconfig_set_flag, fsconfig_set_string, fsopen, FsOpenFlags};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OptionError {
    /// The filesystem refused `option` (EINVAL: unknown option or bad value).
    #[error("the kernel's {fs_type} refuses mount option {option:?}: {}", .message.as_deref().unwrap_or("invalid option or value"))]
    Rejected {
        fs_type: String,
        option: String,
        errno: Errno,
        /// The kernel's explanation, from the context's message log (e.g. `ext4:
        /// Unrecognized mount option "x" or missing value`).
        message: Option<String>,
    },
    /// The check itself cannot run: fsopen(2) is missing (ENOSYS, Linux < 5.2), not
    /// permitted (EPERM) or the filesystem type is unknown (ENODEV).
    #[error("cannot check {fs_type} mount options: fsopen: {errno}")]
    Unavailable { fs_type: String, errno: Errno },
}

/// The kernel's messages queued on a filesystem context (each read returns one, prefixed
/// with `e `, `w ` or `i `); the errors joined.
fn messages(fd: impl AsFd) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..16 {
        match rustix::io::read(&fd, &mut buf) {
            Ok(n) if n > 0 => {
                let m = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
                if let Some(e) = m.strip_prefix("e ") {
                    out.push(e.to_owned());
                }
            }
            _ => break,
        }
    }
    (!out.is_empty()).then(|| out.join("; "))
}

/// Checks each of `options` (`key` or `key=value`, as in mount(8)'s `-o`; not the VFS flags
/// such as `ro` or `noatime`, which are not filesystem options) against filesystem
/// `fs_type`'s parser. Blocking only briefly (no I/O); needs CAP_SYS_ADMIN.
pub fn check_options(fs_type: &str, options: &[String]) -> Result<(), OptionError> {
    if options.is_empty() {
        return Ok(());
    }
    let fd =
        fsopen(fs_type, FsOpenFlags::FSOPEN_CLOEXEC).map_err(|errno| OptionError::Unavailable {
            fs_type: fs_type.to_owned(),
            errno,
        })?;
    for option in options {
        let set = match option.split_once('=') {
            Some((key, value)) => fsconfig_set_string(&fd, key, value),
            None => fsconfig_set_flag(&fd, option.as_str()),
        };
        if let Err(errno) = set {
            return Err(OptionError::Rejected {
                fs_type: fs_type.to_owned(),
                option: option.clone(),
                errno,
                message: messages(&fd),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
    }

    #[test]
    fn each_option_is_checked_by_the_filesystem_itself() {
        if !root() {
            return eprintln!("SKIP: fsopen needs CAP_SYS_ADMIN");
        }
        let opts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match check_options("ext4", &opts(&["commit=60", "nodelalloc"])) {
            Err(OptionError::Unavailable { errno, .. }) => {
                return eprintln!("SKIP: fsopen unavailable here ({errno})")
            }
            r => r.unwrap(),
        }
        check_options("xfs", &opts(&["logbsize=256k", "allocsize=1m"])).unwrap();
        for (fs, bad) in [
            ("ext4", "nosuchoption"),
            ("ext4", "commit=abc"),
            ("xfs", "nosuchoption"),
            ("xfs", "allocsize=abc"),
        ] {
            match check_options(fs, &opts(&["noquota", bad])) {
                Err(OptionError::Rejected { option, .. }) => assert_eq!(option, bad),
                other => panic!("{fs} {bad}: {other:?}"),
            }
        }
    }
}
