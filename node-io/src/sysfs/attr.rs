//! Reading and writing sysfs attributes of objects that may vanish while we look.

use std::io;
use std::path::{Path, PathBuf};

use super::SysfsError;

/// `(name, path)` of every entry; a missing directory is empty.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, SysfsError> {
    let io_err = |source| SysfsError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err)?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// An attribute with its trailing newline removed; `None` if the file is gone.
pub(crate) fn read_attr(dir: &Path, attr: &str) -> Result<Option<String>, SysfsError> {
    let path = dir.join(attr);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let s = String::from_utf8_lossy(&bytes);
            Ok(Some(s.strip_suffix('\n').unwrap_or(&s).to_string()))
        }
        Err(e) if vanished(&e) => Ok(None),
        Err(source) => Err(SysfsError::Io { path, source }),
    }
}

pub(crate) fn read_parsed<T: std::str::FromStr>(
    dir: &Path,
    attr: &str,
) -> Result<Option<T>, SysfsError> {
    let Some(s) = read_attr(dir, attr)? else {
        return Ok(None);
    };
    // Plain decimal or major:minor only: reject signs and spaces FromStr might allow.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return Err(SysfsError::Parse {
            path: dir.join(attr),
            content: s,
        });
    }
    s.parse().map(Some).map_err(|_| SysfsError::Parse {
        path: dir.join(attr),
        content: s,
    })
}

/// The kernel object a block device hangs under: the `device` link's last component,
/// else the parent of the canonical directory. `None` if the entry vanished.
pub(crate) fn parent_name(block_entry: &Path) -> Result<Option<String>, SysfsError> {
    let link = block_entry.join("device");
    let target = match std::fs::read_link(&link) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        // Not a symlink (EINVAL): fall through to the canonical path.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
        Err(source) => return Err(SysfsError::Io { path: link, source }),
    };
    let target = match target {
        Some(t) => t,
        None => match std::fs::canonicalize(block_entry) {
            Ok(p) => match p.parent() {
                Some(parent) => parent.to_path_buf(),
                None => return Ok(None),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SysfsError::Io {
                    path: block_entry.to_path_buf(),
                    source,
                })
            }
        },
    };
    Ok(target
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string))
}

/// Whether an error means the kernel object behind an attribute is gone (ENOENT, or ENODEV
/// when the object was removed while we held its directory).
pub(crate) fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// Writes `value` to an attribute in ONE write(2), as sysfs store methods expect. `Ok(false)`
/// when the object is gone. The write returns when the kernel's store method does (for
/// `delete_controller`, when the controller has been deleted).
pub(crate) fn write_attr(dir: &Path, attr: &str, value: &[u8]) -> Result<bool, SysfsError> {
    use std::io::Write;
    let path = dir.join(attr);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value));
    match written {
        Ok(()) => Ok(true),
        Err(e) if vanished(&e) => Ok(false),
        Err(source) => Err(SysfsError::Write { path, source }),
    }
}
