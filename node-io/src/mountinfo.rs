//! Parsing of `/proc/<pid>/mountinfo` (proc(5)).
//!
//! Line format:
//! `36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
//! The kernel escapes space, tab, newline and backslash in paths as `\ooo` octal.
//! Paths are kept as bytes (`PathBuf`/`OsString`): mount points need not be UTF-8.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::dev_num::DevNum;

/// One mount, one line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_id: u32,
    pub parent_id: u32,
    pub dev: DevNum,
    /// The directory of the filesystem that is the root of this mount (`/` unless a bind
    /// mount of a subdirectory, or a btrfs subvolume).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub mount_options: Vec<String>,
    /// `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional_fields: Vec<String>,
    pub fs_type: String,
    pub source: OsString,
    pub super_options: Vec<String>,
}

/// A line that could not be parsed, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("mountinfo line {line_no}: {reason}: {line:?}")]
pub struct MalformedLine {
    pub line_no: usize,
    pub reason: &'static str,
    pub line: String,
}

/// Which process's mount table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// `/proc/self`: the reading process.
    Current,
    Id(u32),
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Current => f.write_str("self"),
            Self::Id(pid) => write!(f, "{pid}"),
        }
    }
}

#[derive(Debug, Error)]
#[error("reading {path}: {source}")]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// A parsed mount table. Malformed lines are kept aside rather than failing the whole
/// table: one odd line must not hide every other mount from a safety check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountTable {
    pub mounts: Vec<MountInfo>,
    pub malformed: Vec<MalformedLine>,
}

impl MountTable {
    pub fn parse(text: &str) -> Self {
        Self::parse_bytes(text.as_bytes())
    }

    pub fn parse_bytes(text: &[u8]) -> Self {
        let mut table = Self::default();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            match parse_line_bytes(line) {
                Ok(m) => table.mounts.push(m),
                Err(reason) => table.malformed.push(MalformedLine {
                    line_no: i + 1,
                    reason,
                    line: String::from_utf8_lossy(line).into_owned(),
                }),
            }
        }
        table
    }

    /// Mounts whose mount point is `target`, in mount order (the last one is on top).
    pub fn by_target(&self, target: &Path) -> Vec<&MountInfo> {
        self.mounts
            .iter()
            .filter(|m| m.mount_point == target)
            .collect()
    }

    /// Mounts of the filesystem on device `dev`.
    pub fn by_device(&self, dev: DevNum) -> Vec<&MountInfo> {
        self.mounts.iter().filter(|m| m.dev == dev).collect()
    }

    /// All mounts of `dev` when it is bind-mounted: mounted more than once, or mounted
    /// with a root other than `/`. Empty when `dev` is mounted at most once, whole.
    pub fn bind_mounts(&self, dev: DevNum) -> Vec<&MountInfo> {
        let mounts = self.by_device(dev);
        let bound = mounts.len() > 1 || mounts.iter().any(|m| m.root != Path::new("/"));
        if bound {
            mounts
        } else {
            Vec::new()
        }
    }

    pub fn is_bind_mounted(&self, dev: DevNum) -> bool {
        !self.bind_mounts(dev).is_empty()
    }
}

/// Read and parse `<proc_root>/<pid>/mountinfo`.
pub fn read_mountinfo(proc_root: &Path, pid: Pid) -> Result<MountTable, ReadError> {
    let path = proc_root.join(pid.to_string()).join("mountinfo");
    let bytes = std::fs::read(&path).map_err(|source| ReadError { path, source })?;
    Ok(MountTable::parse_bytes(&bytes))
}

/// Parse one mountinfo line.
pub fn parse_line(line: &str) -> Result<MountInfo, &'static str> {
    parse_line_bytes(line.as_bytes())
}

fn parse_line_bytes(line: &[u8]) -> Result<MountInfo, &'static str> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = line.split(|&b| b == b' ');
    let mut next = |what: &'static str| fields.next().ok_or(what);
    let mount_id = number(next("missing mount id")?).ok_or("bad mount id")?;
    let parent_id = number(next("missing parent id")?).ok_or("bad parent id")?;
    let dev = std::str::from_utf8(next("missing major:minor")?)
        .ok()
        .and_then(|s| s.parse::<DevNum>().ok())
        .ok_or("bad major:minor")?;
    let root = PathBuf::from(OsString::from_vec(unescape(next("missing root")?)));
    let mount_point = PathBuf::from(OsString::from_vec(unescape(next("missing mount point")?)));
    let mount_options = options(next("missing mount options")?);
    let mut optional_fields = Vec::new();
    loop {
        let f = next("missing '-' separator")?;
        if f == b"-" {
            break;
        }
        optional_fields.push(String::from_utf8_lossy(f).into_owned());
    }
    let fs_type = String::from_utf8_lossy(&unescape(next("missing fs type")?)).into_owned();
    let source = OsString::from_vec(unescape(next("missing source")?));
    let super_options = options(next("missing super options")?);
    if fields.next().is_some() {
        return Err("trailing fields");
    }
    if fs_type.is_empty() || root.as_os_str().is_empty() || mount_point.as_os_str().is_empty() {
        return Err("empty field");
    }
    Ok(MountInfo {
        mount_id,
        parent_id,
        dev,
        root,
        mount_point,
        mount_options,
        optional_fields,
        fs_type,
        source,
        super_options,
    })
}

fn number(b: &[u8]) -> Option<u32> {
    crate::dev_num::parse_decimal(std::str::from_utf8(b).ok()?)
}

fn options(b: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(b);
    s.split(',')
        .filter(|o| !o.is_empty())
        .map(|o| String::from_utf8_lossy(&unescape(o.as_bytes())).into_owned())
        .collect()
}

/// Decode `\ooo` octal escapes; anything else (including a bad escape) stays literal.
fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u32::from(oct[0] - b'0') * 64
                    + u32::from(oct[1] - b'0') * 8
                    + u32::from(oct[2] - b'0');
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Lines shaped like a real node: root fs, kubelet staging mount of an NVMe volume,
    // a pod bind mount of it (root "/" but second mount), and a subdirectory bind.
    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
312 22 259:1 / /var/lib/kubelet/plugins/kubernetes.io/csi/rds.csi/abc/globalmount rw,relatime shared:190 - ext4 /dev/nvme0n1 rw
340 22 259:1 / /var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pvc-1/mount rw,relatime shared:190 - ext4 /dev/nvme0n1 rw
350 22 259:2 /data /mnt/with\\040space rw,relatime - xfs /dev/nvme1n1 rw,attr2,inode64
360 22 0:55 / /run/a\\011b\\012c\\134d rw master:3 propagate_from:2 unbindable - tmpfs tmp\\040fs rw,size=1024k
";

    #[test]
    fn parses_all_fields_of_a_real_line() {
        let m = parse_line(
            "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(m.mount_id, 36);
        assert_eq!(m.parent_id, 35);
        assert_eq!(m.dev, DevNum::new(98, 0));
        assert_eq!(m.root, Path::new("/mnt1"));
        assert_eq!(m.mount_point, Path::new("/mnt/parent"));
        assert_eq!(m.mount_options, ["rw", "noatime"]);
        assert_eq!(m.optional_fields, ["master:1"]);
        assert_eq!(m.fs_type, "ext3");
        assert_eq!(m.source, "/dev/root");
        assert_eq!(m.super_options, ["rw", "errors=continue"]);
    }

    #[test]
    fn decodes_octal_escapes_and_multiple_optional_fields() {
        let t = MountTable::parse(TABLE);
        assert!(t.malformed.is_empty(), "{:?}", t.malformed);
        assert_eq!(t.mounts.len(), 7);
        let sp = &t.mounts[5];
        assert_eq!(sp.mount_point, Path::new("/mnt/with space"));
        assert_eq!(sp.root, Path::new("/data"));
        let tmp = &t.mounts[6];
        assert_eq!(tmp.mount_point, Path::new("/run/a\tb\nc\\d"));
        assert_eq!(tmp.source, "tmp fs");
        assert_eq!(
            tmp.optional_fields,
            ["master:3", "propagate_from:2", "unbindable"]
        );
        assert!(t.mounts[1].optional_fields == ["shared:12"]);
    }

    #[test]
    fn finds_mounts_by_target_and_device() {
        let t = MountTable::parse(TABLE);
        let g = t.by_target(Path::new(
            "/var/lib/kubelet/plugins/kubernetes.io/csi/rds.csi/abc/globalmount/",
        ));
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].mount_id, 312);
        assert_eq!(t.by_target(Path::new("/mnt/with space")).len(), 1);
        assert!(t.by_target(Path::new("/mnt/with")).is_empty());
        let ids: Vec<u32> = t
            .by_device(DevNum::new(259, 1))
            .iter()
            .map(|m| m.mount_id)
            .collect();
        assert_eq!(ids, [312, 340]);
        assert!(t.by_device(DevNum::new(259, 9)).is_empty());
    }

    #[test]
    fn detects_bind_mounts() {
        let t = MountTable::parse(TABLE);
        // Same device mounted twice (staging + pod publish).
        assert_eq!(t.bind_mounts(DevNum::new(259, 1)).len(), 2);
        // Mounted once, but of a subdirectory.
        assert!(t.is_bind_mounted(DevNum::new(259, 2)));
        // Mounted once, whole.
        assert!(!t.is_bind_mounted(DevNum::new(8, 1)));
        assert!(!t.is_bind_mounted(DevNum::new(259, 9)));
    }

    #[test]
    fn malformed_lines_are_reported_not_fatal() {
        let text = "\
22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw
garbage
23 22 0:21 / /proc rw shared:12 proc proc rw
x 22 0:21 / /proc rw - proc proc rw
24 22 0:22 / /sys rw - sysfs sysfs rw extra
25 22 8x1 / /a rw - ext4 /dev/sda rw

26 22 0:22 / /sys rw - sysfs sysfs rw
";
        let t = MountTable::parse(text);
        assert_eq!(
            t.mounts.iter().map(|m| m.mount_id).collect::<Vec<_>>(),
            [22, 26]
        );
        let bad: Vec<(usize, &str)> = t.malformed.iter().map(|m| (m.line_no, m.reason)).collect();
        assert_eq!(
            bad,
            [
                (2, "bad mount id"),
                (3, "missing '-' separator"),
                (4, "bad mount id"),
                (5, "trailing fields"),
                (6, "bad major:minor"),
            ]
        );
    }

    #[test]
    fn bad_escapes_stay_literal() {
        assert_eq!(unescape(b"a\\400b"), b"a\\400b");
        assert_eq!(unescape(b"a\\04"), b"a\\04");
        assert_eq!(unescape(b"\\"), b"\\");
        assert_eq!(unescape(b"\\101\\"), b"A\\");
    }

    #[test]
    fn reads_self_and_pid_from_a_proc_root() {
        let dir = tempfile::tempdir().unwrap();
        for pid in ["self", "42"] {
            std::fs::create_dir_all(dir.path().join(pid)).unwrap();
        }
        std::fs::write(dir.path().join("self/mountinfo"), TABLE).unwrap();
        std::fs::write(
            dir.path().join("42/mountinfo"),
            b"1 0 0:1 / /m\xff rw - tmpfs none rw\n".as_slice(),
        )
        .unwrap();
        assert_eq!(
            read_mountinfo(dir.path(), Pid::Current)
                .unwrap()
                .mounts
                .len(),
            7
        );
        let t = read_mountinfo(dir.path(), Pid::Id(42)).unwrap();
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(t.mounts[0].mount_point.as_os_str().as_bytes(), b"/m\xff");
        let e = read_mountinfo(dir.path(), Pid::Id(7)).unwrap_err();
        assert_eq!(e.path, dir.path().join("7/mountinfo"));
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let t = MountTable::parse_bytes(&bytes);
            prop_assert!(t.mounts.len() + t.malformed.len() <= bytes.len() + 1);
        }

        #[test]
        fn escaped_mount_points_round_trip(name in "[a-z \t\\\\]{1,20}") {
            let escaped: String = name.chars().map(|c| match c {
                ' ' => "\\040".to_string(),
                '\t' => "\\011".to_string(),
                '\\' => "\\134".to_string(),
                c => c.to_string(),
            }).collect();
            let line = format!("1 0 0:1 / /{escaped} rw - tmpfs none rw");
            let m = parse_line(&line).unwrap();
            prop_assert_eq!(m.mount_point, PathBuf::from(format!("/{name}")));
        }
    }
}
