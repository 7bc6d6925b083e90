//! Block devices in sysfs: the size of a device by its number, and the loop devices with
//! their backing files.
//!
//! Read fresh on every call: loop numbers are reused as soon as a device is detached, so a
//! remembered `loopN` can name someone else's file a moment later.

use std::path::{Path, PathBuf};

use crate::dev_num::{parse_decimal, DevNum};
use crate::sysfs::attr::{list_dir, read_attr, read_parsed};
use crate::sysfs::SysfsError;

/// What the kernel appends to a path whose file was unlinked (`d_path`), as loop's
/// `backing_file` shows it after the file was deleted.
const DELETED_SUFFIX: &str = " (deleted)";

/// Bytes per sector of the `size` attribute: always 512, whatever the logical block size
/// (include/linux/blk_types.h, SECTOR_SHIFT).
pub const SECTOR_BYTES: u64 = 512;

/// The size in bytes of the block device `dev`, from `<sys>/dev/block/<major>:<minor>/size`.
///
/// Errors: [`SysfsError::Io`] when the device does not exist (ENOENT) or cannot be read,
/// [`SysfsError::Parse`] when the attribute is not a sector count.
pub fn size_bytes(sys_root: &Path, dev: DevNum) -> Result<u64, SysfsError> {
    let dir = sys_root.join("dev/block").join(dev.to_string());
    let sectors: u64 = read_parsed(&dir, "size")?.ok_or_else(|| SysfsError::Io {
        path: dir.join("size"),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    sectors
        .checked_mul(SECTOR_BYTES)
        .ok_or_else(|| SysfsError::Parse {
            path: dir.join("size"),
            content: sectors.to_string(),
        })
}

/// A bound loop device (`<sys>/block/loop<N>` with a `loop/` directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDevice {
    /// Kernel name, `loop<N>`; the node is `<dev>/<name>`.
    pub name: String,
    pub dev: DevNum,
    pub size_bytes: u64,
    /// `loop/backing_file` without the kernel's ` (deleted)` suffix.
    pub backing_file: PathBuf,
    /// The backing file was unlinked: the device no longer backs whatever file now has that
    /// path.
    pub backing_deleted: bool,
    /// `loop/autoclear`: the device detaches at its last close (set by `losetup -d` on a
    /// busy device, so such a device is being detached).
    pub autoclear: bool,
    /// `loop/offset` in bytes.
    pub offset: u64,
}

impl LoopDevice {
    /// Backs `file` (an already canonical path) now and is not being detached.
    pub fn backs(&self, file: &Path) -> bool {
        !self.backing_deleted && !self.autoclear && self.backing_file == file
    }
}

/// Every bound loop device under `<sys>/block`, sorted by name. Unbound devices (no
/// `loop/backing_file`) and devices that vanish while listed are left out.
pub fn list_loop_devices(sys_root: &Path) -> Result<Vec<LoopDevice>, SysfsError> {
    let mut out = Vec::new();
    for (name, dir) in list_dir(&sys_root.join("block"))? {
        if name.strip_prefix("loop").and_then(parse_decimal).is_none() {
            continue;
        }
        out.extend(read_loop_device(name, &dir)?);
    }
    Ok(out)
}

/// The loop device `name` (`loop3`) if it exists and is bound.
pub fn loop_device(sys_root: &Path, name: &str) -> Result<Option<LoopDevice>, SysfsError> {
    if name.strip_prefix("loop").and_then(parse_decimal).is_none() {
        return Ok(None);
    }
    read_loop_device(name.to_string(), &sys_root.join("block").join(name))
}

fn read_loop_device(name: String, dir: &Path) -> Result<Option<LoopDevice>, SysfsError> {
    let Some(backing) = read_attr(dir, "loop/backing_file")? else {
        return Ok(None);
    };
    let (backing_file, backing_deleted) = match backing.strip_suffix(DELETED_SUFFIX) {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from(backing), false),
    };
    let (Some(dev), Some(sectors)) = (
        read_parsed::<DevNum>(dir, "dev")?,
        read_parsed::<u64>(dir, "size")?,
    ) else {
        return Ok(None);
    };
    Ok(Some(LoopDevice {
        name,
        dev,
        size_bytes: sectors.saturating_mul(SECTOR_BYTES),
        backing_file,
        backing_deleted,
        autoclear: read_attr(dir, "loop/autoclear")?.as_deref() == Some("1"),
        offset: read_parsed(dir, "loop/offset")?.unwrap_or(0),
    }))
}

/// The loop devices that back `file` now and are not being detached ([`LoopDevice::backs`]),
/// sorted by name. `file` is canonicalized first (the kernel shows the resolved path); a
/// file that does not exist is compared as given.
pub fn loop_devices_backing(sys_root: &Path, file: &Path) -> Result<Vec<LoopDevice>, SysfsError> {
    let want = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let mut all = list_loop_devices(sys_root)?;
    all.retain(|d| d.backs(&want));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn loop_entry(sys: &Path, n: u32, backing: &str, autoclear: bool) {
        let d = sys.join(format!("block/loop{n}"));
        fs::create_dir_all(d.join("loop")).unwrap();
        fs::write(d.join("dev"), format!("7:{n}\n")).unwrap();
        fs::write(d.join("size"), "2048\n").unwrap();
        fs::write(d.join("loop/backing_file"), format!("{backing}\n")).unwrap();
        fs::write(
            d.join("loop/autoclear"),
            if autoclear { "1\n" } else { "0\n" },
        )
        .unwrap();
        fs::write(d.join("loop/offset"), "0\n").unwrap();
    }

    #[test]
    fn lists_bound_loop_devices_and_marks_deleted_and_detaching_ones() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path();
        loop_entry(sys, 0, "/data/a.img", false);
        loop_entry(sys, 1, "/data/b.img (deleted)", false);
        loop_entry(sys, 2, "/data/a.img", true);
        fs::create_dir_all(sys.join("block/loop3")).unwrap(); // unbound
        fs::create_dir_all(sys.join("block/vda")).unwrap();
        fs::create_dir_all(sys.join("block/loopback")).unwrap(); // not loop<N>
        let all = list_loop_devices(sys).unwrap();
        let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["loop0", "loop1", "loop2"]);
        assert_eq!(all[0].dev, DevNum::new(7, 0));
        assert_eq!(all[0].size_bytes, 2048 * 512);
        assert_eq!(all[1].backing_file, Path::new("/data/b.img"));
        assert!(all[1].backing_deleted && !all[0].backing_deleted);
        assert!(all[2].autoclear);
        let backing: Vec<String> = loop_devices_backing(sys, Path::new("/data/a.img"))
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(backing, ["loop0"], "loop2 is detaching");
        assert!(
            loop_devices_backing(sys, Path::new("/data/b.img"))
                .unwrap()
                .is_empty(),
            "a deleted file's device does not back a new file at that path"
        );
    }

    #[test]
    fn size_is_read_by_device_number() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("dev/block/259:3");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("size"), "131072\n").unwrap();
        assert_eq!(
            size_bytes(t.path(), DevNum::new(259, 3)).unwrap(),
            131072 * 512
        );
        let e = size_bytes(t.path(), DevNum::new(259, 4)).unwrap_err();
        assert!(e.to_string().contains("259:4/size"), "{e}");
        fs::write(d.join("size"), "-1\n").unwrap();
        assert!(matches!(
            size_bytes(t.path(), DevNum::new(259, 3)),
            Err(SysfsError::Parse { .. })
        ));
    }
}
