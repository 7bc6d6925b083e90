//! Reading and writing sysfs attributes of objects that may vanish while we look.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, RawDir};

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
    match read_small(&path) {
        Ok(bytes) => {
            let s = String::from_utf8_lossy(&bytes);
            Ok(Some(s.strip_suffix('\n').unwrap_or(&s).to_string()))
        }
        Err(e) if vanished(&e) => Ok(None),
        Err(source) => Err(SysfsError::Io { path, source }),
    }
}

/// The whole content of a small file in open + read + close: a sysfs attribute is produced
/// whole by its first read (at most a page), so a read that does not fill the buffer ends
/// it. `std::fs::read` adds a statx and a second read per file, which is most of the cost
/// of a scan that reads hundreds of attributes.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    read_whole(rustix::fs::open(path, FILE_FLAGS, Mode::empty())?)
}

fn read_whole(fd: OwnedFd) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match rustix::io::read(&fd, &mut buf) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Ok(out);
        }
    }
}

pub(crate) fn read_parsed<T: std::str::FromStr>(
    dir: &Path,
    attr: &str,
) -> Result<Option<T>, SysfsError> {
    let Some(s) = read_attr(dir, attr)? else {
        return Ok(None);
    };
    parse_plain(dir, attr, s).map(Some)
}

/// The kernel object a block device hangs under: the `device` link's last component,
/// else the parent of the canonical directory. `None` if the entry vanished.
pub(crate) fn parent_name(block_entry: &SysDir) -> Result<Option<String>, SysfsError> {
    if let Some(name) = block_entry.link_name("device")? {
        return Ok(Some(name));
    }
    let parent = match std::fs::canonicalize(block_entry.path()) {
        Ok(p) => p.parent().map(Path::to_path_buf),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SysfsError::Io {
                path: block_entry.path().to_path_buf(),
                source,
            })
        }
    };
    Ok(parent
        .as_deref()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .map(str::to_string))
}

/// A sysfs directory held open: its attributes and entries are read relative to it, one
/// path component per lookup instead of the whole path from the root (most of the cost of a
/// scan that reads hundreds of attributes).
pub(crate) struct SysDir {
    fd: OwnedFd,
    path: PathBuf,
    /// The fd's directory offset has moved (a listing was read): rewind before the next.
    listed: std::cell::Cell<bool>,
}

impl SysDir {
    /// Opens `path`; `None` when it does not exist (any more).
    pub(crate) fn open(path: PathBuf) -> Result<Option<Self>, SysfsError> {
        match rustix::fs::open(&path, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(Self {
                fd,
                path,
                listed: Default::default(),
            })),
            Err(e) if vanished(&e.into()) => Ok(None),
            Err(e) => Err(SysfsError::Io {
                path,
                source: e.into(),
            }),
        }
    }

    /// The subdirectory (or directory symlink) `name`; `None` when it does not exist.
    pub(crate) fn at(&self, name: &str) -> Result<Option<Self>, SysfsError> {
        match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(Self {
                fd,
                path: self.path.join(name),
                listed: Default::default(),
            })),
            Err(e) if vanished(&e.into()) => Ok(None),
            Err(e) => Err(SysfsError::Io {
                path: self.path.join(name),
                source: e.into(),
            }),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The attribute `attr` (may be `sub/attr`) without its trailing newline; `None` if gone.
    pub(crate) fn read(&self, attr: &str) -> Result<Option<String>, SysfsError> {
        let bytes = match rustix::fs::openat(&self.fd, attr, FILE_FLAGS, Mode::empty())
            .map_err(io::Error::from)
            .and_then(read_whole)
        {
            Ok(b) => b,
            Err(e) if vanished(&e) => return Ok(None),
            Err(source) => {
                return Err(SysfsError::Io {
                    path: self.path.join(attr),
                    source,
                })
            }
        };
        let s = String::from_utf8_lossy(&bytes);
        Ok(Some(s.strip_suffix('\n').unwrap_or(&s).to_string()))
    }

    /// [`SysDir::read`] parsed as a plain decimal or `major:minor`.
    pub(crate) fn parsed<T: std::str::FromStr>(&self, attr: &str) -> Result<Option<T>, SysfsError> {
        let Some(s) = self.read(attr)? else {
            return Ok(None);
        };
        parse_plain(&self.path, attr, s).map(Some)
    }

    /// The names of the entries (without `.` and `..`), unsorted; a directory removed
    /// meanwhile lists as empty.
    pub(crate) fn names(&self) -> Result<Vec<String>, SysfsError> {
        let io_err = |e: rustix::io::Errno| SysfsError::Io {
            path: self.path.clone(),
            source: e.into(),
        };
        if self.listed.replace(true) {
            rustix::fs::seek(&self.fd, rustix::fs::SeekFrom::Start(0)).map_err(io_err)?;
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut dir = RawDir::new(&self.fd, &mut buf);
        let mut out = Vec::new();
        while let Some(entry) = dir.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if vanished(&e.into()) => return Ok(Vec::new()),
                Err(e) => return Err(io_err(e)),
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if let Ok(name) = std::str::from_utf8(name) {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    /// The last component of the symlink `link`'s target; `None` when there is no such link
    /// (or it is not a symlink).
    pub(crate) fn link_name(&self, link: &str) -> Result<Option<String>, SysfsError> {
        match rustix::fs::readlinkat(&self.fd, link, Vec::new()) {
            Ok(target) => Ok(Path::new(std::ffi::OsStr::from_bytes(target.as_bytes()))
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)),
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::INVAL) => Ok(None),
            Err(e) => Err(SysfsError::Io {
                path: self.path.join(link),
                source: e.into(),
            }),
        }
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);
const FILE_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::CLOEXEC);

/// Plain decimal or major:minor only: reject signs and spaces `FromStr` might allow.
fn parse_plain<T: std::str::FromStr>(dir: &Path, attr: &str, s: String) -> Result<T, SysfsError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return Err(SysfsError::Parse {
            path: dir.join(attr),
            content: s,
        });
    }
    s.parse().map_err(|_| SysfsError::Parse {
        path: dir.join(attr),
        content: s,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_directory_reads_lists_and_follows_links_relative_to_itself() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("devices/nvme0")).unwrap();
        std::fs::write(t.path().join("devices/nvme0/state"), "live\n").unwrap();
        std::fs::write(t.path().join("devices/nvme0/cntlid"), "12\n").unwrap();
        std::os::unix::fs::symlink("../devices/nvme0", t.path().join("link")).unwrap();
        std::fs::create_dir_all(t.path().join("class")).unwrap();
        std::os::unix::fs::symlink("../devices/nvme0", t.path().join("class/nvme0")).unwrap();
        let class = SysDir::open(t.path().join("class")).unwrap().unwrap();
        assert_eq!(class.read("nvme0/state").unwrap().as_deref(), Some("live"));
        assert_eq!(class.read("nvme0/gone").unwrap(), None);
        let dev = class.at("nvme0").unwrap().unwrap();
        assert_eq!(dev.parsed::<u16>("cntlid").unwrap(), Some(12));
        let mut names = dev.names().unwrap();
        names.sort();
        assert_eq!(names, ["cntlid", "state"]);
        assert_eq!(dev.names().unwrap().len(), 2, "a second listing rewinds");
        let root = SysDir::open(t.path().to_path_buf()).unwrap().unwrap();
        assert_eq!(root.link_name("link").unwrap().as_deref(), Some("nvme0"));
        assert_eq!(root.link_name("devices").unwrap(), None, "not a link");
        assert!(class.at("nvme9").unwrap().is_none());
        assert!(SysDir::open(t.path().join("missing")).unwrap().is_none());
        std::fs::write(t.path().join("devices/nvme0/cntlid"), "-1\n").unwrap();
        assert!(matches!(
            dev.parsed::<u16>("cntlid"),
            Err(SysfsError::Parse { .. })
        ));
    }
}
