//! Typed RouterOS command builder (docs/architecture.md, "Correctness rules", rule 4). Every interpolated value is a newtype that
//! was checked against an allow-list when it was built, and is double-quoted when rendered,
//! so a [`Command`] can only ever hold one RouterOS command with the arguments intended.
//!
//! Allow-lists (deliberately narrower than RouterOS allows):
//! - [`Slot`] — 1–63 bytes of `[a-z0-9-]`, starting and ending with `[a-z0-9]` (a DNS label;
//!   fits `pvc-<uuid>`, `snap-<uuid>`). No `.`/`_`: slots are also matched with `~`, which is
//!   a regex, and an allow-list without metacharacters needs no regex escaping.
//! - [`SlotPrefix`] — 1–63 bytes of `[a-z0-9-]`, starting with `[a-z0-9]` (may end in `-`).
//! - [`Nqn`] — node-io's one NQN type (`node_io::nqn`): at most 223 bytes,
//!   `nqn.YYYY-MM.<domain>:<unique>` where the domain is `[A-Za-z0-9.-]` and the unique part
//!   `[A-Za-z0-9.:_-]`.
//! - [`BasePath`] / [`RdsPath`] — absolute, components of 1–255 bytes of `[A-Za-z0-9._-]`,
//!   never `.` or `..`, no empty components (so no `//` or trailing `/`), at most 1024 bytes;
//!   an `RdsPath` lies strictly inside its base, compared component by component.
//! - [`MountPoint`] — one path component.
//! - [`Port`] — 1–65535.

use std::fmt;

use thiserror::Error;

pub use node_io::nqn::{Nqn, NqnError};

use super::size::routeros_size_arg;

pub const MAX_SLOT_LEN: usize = 63;
pub const MAX_COMPONENT_LEN: usize = 255;
pub const MAX_PATH_LEN: usize = 1024;
/// NQN prefix RouterOS uses for exported disks: `nqn.2000-02.com.mikrotik:<slot>`.
pub const MIKROTIK_NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik:";

const SLOT_ALLOWED: &str = "lowercase letters, digits, '-'";
const COMPONENT_ALLOWED: &str = "letters, digits, '.', '_', '-'";

/// A value refused by an allow-list; the message names the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} {value:?}: {ch:?} at byte {index} is not allowed (allowed: {allowed})")]
    ForbiddenChar {
        what: &'static str,
        value: String,
        ch: char,
        index: usize,
        allowed: &'static str,
    },
    #[error("{what} {value:?} must start and end with a lowercase letter or digit")]
    BadEdge { what: &'static str, value: String },
    #[error(transparent)]
    Nqn(#[from] NqnError),
    #[error("path {value:?} is not absolute")]
    NotAbsolute { value: String },
    #[error("path {value:?}: component {index} ({component:?}) {reason}")]
    BadComponent {
        value: String,
        index: usize,
        component: String,
        reason: &'static str,
    },
    #[error("path {value:?} is not inside the base path {base:?}")]
    OutsideBase { value: String, base: String },
    #[error("port 0 is not a usable TCP port")]
    ZeroPort,
    #[error("a disk size of 0 bytes is not allowed")]
    ZeroSize,
}

fn check_chars(
    what: &'static str,
    value: &str,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), ValidationError> {
    match value.char_indices().find(|&(_, c)| !ok(c)) {
        Some((index, ch)) => Err(ValidationError::ForbiddenChar {
            what,
            value: value.to_string(),
            ch,
            index,
            allowed,
        }),
        None => Ok(()),
    }
}

fn check_len(what: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { what });
    }
    if value.len() > max {
        return Err(ValidationError::TooLong {
            what,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn is_slot_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn is_slot_edge(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Double-quotes a value for the RouterOS CLI. The allow-lists already exclude every
/// character that needs escaping; escaping anyway keeps quoting safe on its own.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<&str> for $name {
            type Error = ValidationError;
            fn try_from(value: &str) -> Result<Self, ValidationError> {
                Self::new(value)
            }
        }
    };
}

/// A disk slot (the volume id on the RDS).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(String);
string_newtype!(Slot);

impl Slot {
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        const WHAT: &str = "slot";
        check_len(WHAT, value, MAX_SLOT_LEN)?;
        check_chars(WHAT, value, SLOT_ALLOWED, is_slot_char)?;
        let edges_ok = value.starts_with(is_slot_edge) && value.ends_with(is_slot_edge);
        if !edges_ok {
            return Err(ValidationError::BadEdge {
                what: WHAT,
                value: value.to_string(),
            });
        }
        Ok(Slot(value.to_string()))
    }
}

/// A slot prefix for listing (`pvc-`). Its characters are not regex metacharacters, so it is
/// used in `slot~"^<prefix>"` unescaped and matches literally.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotPrefix(String);
string_newtype!(SlotPrefix);

impl SlotPrefix {
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        const WHAT: &str = "slot prefix";
        check_len(WHAT, value, MAX_SLOT_LEN)?;
        check_chars(WHAT, value, SLOT_ALLOWED, is_slot_char)?;
        if !value.starts_with(is_slot_edge) {
            return Err(ValidationError::BadEdge {
                what: WHAT,
                value: value.to_string(),
            });
        }
        Ok(SlotPrefix(value.to_string()))
    }
}

/// The NQN RouterOS exports `slot` under: `<prefix><slot>`, e.g.
/// `nqn.2000-02.com.mikrotik:pvc-1` with [`MIKROTIK_NQN_PREFIX`].
pub fn slot_nqn(prefix: &str, slot: &Slot) -> Result<Nqn, NqnError> {
    Nqn::new(format!("{prefix}{slot}"))
}

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port(u16);

impl Port {
    pub fn new(port: u16) -> Result<Self, ValidationError> {
        if port == 0 {
            return Err(ValidationError::ZeroPort);
        }
        Ok(Port(port))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for Port {
    fn default() -> Self {
        Port(node_io::fabrics::NVME_TCP_PORT)
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn check_component(value: &str, index: usize, component: &str) -> Result<(), ValidationError> {
    let bad = |reason| ValidationError::BadComponent {
        value: value.to_string(),
        index,
        component: component.to_string(),
        reason,
    };
    if component.is_empty() {
        return Err(bad("is empty (\"//\" or a trailing '/')"));
    }
    if component == "." || component == ".." {
        return Err(bad("is a relative step ('.' or '..')"));
    }
    if component.len() > MAX_COMPONENT_LEN {
        return Err(bad("is longer than 255 bytes"));
    }
    check_chars("path component", component, COMPONENT_ALLOWED, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })
}

/// Checks an absolute path and returns its components.
fn split_path(value: &str) -> Result<Vec<&str>, ValidationError> {
    check_len("path", value, MAX_PATH_LEN)?;
    let rest = value
        .strip_prefix('/')
        .ok_or(ValidationError::NotAbsolute {
            value: value.to_string(),
        })?;
    let components: Vec<&str> = rest.split('/').collect();
    for (index, component) in components.iter().enumerate() {
        check_component(value, index, component)?;
    }
    Ok(components)
}

/// The configured directory on the RDS under which the driver's disk files live, e.g.
/// `/storage-pool/csi`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BasePath(String);
string_newtype!(BasePath);

impl BasePath {
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        split_path(value)?;
        Ok(BasePath(value.to_string()))
    }

    fn components(&self) -> impl Iterator<Item = &str> {
        self.0[1..].split('/')
    }

    /// The pool the base lives on: its first component (`storage-pool`).
    pub fn mount_point(&self) -> MountPoint {
        // The first component passed the same check as a MountPoint when self was built.
        MountPoint(self.components().next().unwrap_or_default().to_string())
    }

    /// Whether a RouterOS file name (no leading `/`) lies strictly inside this base. Used to
    /// filter `/file print` results exactly, since `name~` is a regex and `.` in the base
    /// would match any character.
    pub fn contains_file_name(&self, name: &str) -> bool {
        name.strip_prefix(&self.0[1..])
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty())
    }
}

/// A path on the RDS strictly inside a [`BasePath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RdsPath(String);

impl RdsPath {
    pub fn new(base: &BasePath, value: &str) -> Result<Self, ValidationError> {
        let components = split_path(value)?;
        let base_components: Vec<&str> = base.components().collect();
        let inside = components.len() > base_components.len()
            && components.iter().zip(&base_components).all(|(a, b)| a == b);
        if !inside {
            return Err(ValidationError::OutsideBase {
                value: value.to_string(),
                base: base.0.clone(),
            });
        }
        Ok(RdsPath(value.to_string()))
    }

    /// The backing file of a volume: `<base>/<slot>.img`.
    pub fn volume_file(base: &BasePath, slot: &Slot) -> Result<Self, ValidationError> {
        Self::new(base, &format!("{base}/{slot}.img"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form `/file` uses for names: no leading `/`.
    pub fn file_name(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for RdsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pool's mount point name (`storage-pool`): one path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountPoint(String);
string_newtype!(MountPoint);

impl MountPoint {
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        check_component(value, 0, value)?;
        Ok(MountPoint(value.to_string()))
    }
}

/// NVMe/TCP export settings of a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeExport {
    pub port: Port,
    pub nqn: Nqn,
}

/// One RouterOS command line, built only from validated parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Command(String);

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn size_arg(bytes: u64) -> Result<String, ValidationError> {
    if bytes == 0 {
        return Err(ValidationError::ZeroSize);
    }
    Ok(quote(&routeros_size_arg(bytes)))
}

fn export_args(export: &NvmeExport) -> String {
    format!(
        " nvme-tcp-export=yes nvme-tcp-server-port={} nvme-tcp-server-nqn={}",
        quote(&export.port.to_string()),
        quote(export.nqn.as_str())
    )
}

fn find_slot(slot: &Slot) -> String {
    format!("[find slot={}]", quote(slot.as_str()))
}

impl Command {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `/disk add type=file file-path=.. file-size=.. slot=.. nvme-tcp-export=yes ..`
    pub fn create_disk(
        path: &RdsPath,
        size_bytes: u64,
        slot: &Slot,
        export: &NvmeExport,
    ) -> Result<Self, ValidationError> {
        Ok(Command(format!(
            "/disk add type=file file-path={} file-size={} slot={}{}",
            quote(path.as_str()),
            size_arg(size_bytes)?,
            quote(slot.as_str()),
            export_args(export)
        )))
    }

    /// `/disk add type=file copy-from=[find slot=<src>] file-path=.. slot=.. [file-size=..]
    /// [nvme-tcp-export=yes ..]` — snapshot, clone and restore.
    pub fn copy_disk(
        source: &Slot,
        path: &RdsPath,
        slot: &Slot,
        size_bytes: Option<u64>,
        export: Option<&NvmeExport>,
    ) -> Result<Self, ValidationError> {
        let mut cmd = format!(
            "/disk add type=file copy-from={} file-path={} slot={}",
            find_slot(source),
            quote(path.as_str()),
            quote(slot.as_str())
        );
        if let Some(bytes) = size_bytes {
            cmd.push_str(" file-size=");
            cmd.push_str(&size_arg(bytes)?);
        }
        if let Some(export) = export {
            cmd.push_str(&export_args(export));
        }
        Ok(Command(cmd))
    }

    /// `/disk set [find slot=..] file-size=..`
    pub fn resize_disk(slot: &Slot, size_bytes: u64) -> Result<Self, ValidationError> {
        Ok(Command(format!(
            "/disk set {} file-size={}",
            find_slot(slot),
            size_arg(size_bytes)?
        )))
    }

    /// `/disk remove [find slot=..]` (removes the export with the disk, not the file).
    pub fn remove_disk(slot: &Slot) -> Self {
        Command(format!("/disk remove {}", find_slot(slot)))
    }

    /// `/file remove [find name="<path without leading />"]`
    pub fn remove_file(path: &RdsPath) -> Self {
        Command(format!(
            "/file remove [find name={}]",
            quote(path.file_name())
        ))
    }

    /// `/disk print detail where slot=".."`
    pub fn print_disk(slot: &Slot) -> Self {
        Command(format!(
            "/disk print detail where slot={}",
            quote(slot.as_str())
        ))
    }

    /// `/disk print detail where slot~"^<prefix>"`; the prefix has no regex metacharacters.
    /// Every disk (ListVolumes filters by backing-file path: volume ids share no prefix).
    pub fn list_all_disks() -> Self {
        Command("/disk print detail".to_string())
    }

    pub fn list_disks(prefix: &SlotPrefix) -> Self {
        Command(format!(
            "/disk print detail where slot~{}",
            quote(&format!("^{prefix}"))
        ))
    }

    /// `/disk print detail where mount-point=".."`
    pub fn pool_capacity(mount_point: &MountPoint) -> Self {
        Command(format!(
            "/disk print detail where mount-point={}",
            quote(mount_point.as_str())
        ))
    }

    /// `/file print detail where name~"^<base without leading />/"`. A `.` in the base is a
    /// regex wildcard, so this can over-match; filter with [`BasePath::contains_file_name`].
    pub fn list_files(base: &BasePath) -> Self {
        Command(format!(
            "/file print detail where name~{}",
            quote(&format!("^{}/", &base.as_str()[1..]))
        ))
    }

    /// `/file print detail where name~"/<slot>\."`: the files whose name continues a path
    /// component with `<slot>.` (a volume's backing files, wherever they live). Over-matches
    /// (other components, other bases) are the caller's to filter.
    pub fn find_files_of_slot(slot: &Slot) -> Self {
        Command(format!(
            "/file print detail where name~{}",
            quote(&format!("/{slot}\\."))
        ))
    }

    /// `/file print detail where name="<path without leading />"`
    pub fn print_file(path: &RdsPath) -> Self {
        Command(format!(
            "/file print detail where name={}",
            quote(path.file_name())
        ))
    }

    pub fn identity() -> Self {
        Command("/system identity print".to_string())
    }

    pub fn resource() -> Self {
        Command("/system resource print".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &[&str] = &[
        ";", "\"", "[", "]", "$", "\n", "\r", "\\", "`", " ", "\t", "\0", "{", "}", "'", "=", "~",
        "^", "*", "|", "\u{7f}", "é", "\u{202e}",
    ];

    fn base() -> BasePath {
        BasePath::new("/storage-pool/csi").unwrap()
    }

    fn slot(s: &str) -> Slot {
        Slot::new(s).unwrap()
    }

    fn export(s: &Slot) -> NvmeExport {
        NvmeExport {
            port: Port::default(),
            nqn: slot_nqn(MIKROTIK_NQN_PREFIX, s).unwrap(),
        }
    }

    #[test]
    fn slots_follow_the_allow_list() {
        for ok in [
            "pvc-1",
            "a",
            "snap-0b1c",
            "pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f",
            &"a".repeat(63),
        ] {
            assert_eq!(Slot::new(ok).unwrap().as_str(), ok);
        }
        assert_eq!(Slot::new(""), Err(ValidationError::Empty { what: "slot" }));
        assert!(matches!(
            Slot::new(&"a".repeat(64)),
            Err(ValidationError::TooLong { len: 64, .. })
        ));
        assert!(matches!(
            Slot::new("-a"),
            Err(ValidationError::BadEdge { .. })
        ));
        assert!(matches!(
            Slot::new("a-"),
            Err(ValidationError::BadEdge { .. })
        ));
        for bad in ["Pvc", "a.b", "a_b", "a/b", "../x"] {
            assert!(
                matches!(Slot::new(bad), Err(ValidationError::ForbiddenChar { .. })),
                "{bad}"
            );
        }
        assert!(SlotPrefix::new("pvc-").is_ok());
        assert!(matches!(
            SlotPrefix::new("-pvc"),
            Err(ValidationError::BadEdge { .. })
        ));
        assert!(matches!(
            SlotPrefix::new("pvc."),
            Err(ValidationError::ForbiddenChar { .. })
        ));
    }

    #[test]
    fn error_messages_name_the_rule() {
        let err = Slot::new("pvc;rm").unwrap_err().to_string();
        assert_eq!(
            err,
            "slot \"pvc;rm\": ';' at byte 3 is not allowed (allowed: lowercase letters, digits, '-')"
        );
        let err = RdsPath::new(&base(), "/storage-pool/csi2/x.img")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not inside the base path"), "{err}");
        let err = RdsPath::new(&base(), "/storage-pool/csi/../x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("relative step"), "{err}");
    }

    #[test]
    fn every_slot_makes_an_nqn_under_the_prefix() {
        let long = Slot::new(&"a".repeat(MAX_SLOT_LEN)).unwrap();
        let nqn = slot_nqn(MIKROTIK_NQN_PREFIX, &long).unwrap();
        assert_eq!(nqn.as_str(), format!("{MIKROTIK_NQN_PREFIX}{long}"));
        assert!(matches!(
            slot_nqn("iqn.2000-02.x:", &long),
            Err(NqnError::Format { .. })
        ));
    }

    #[test]
    fn paths_are_checked_component_wise_against_the_base() {
        let b = base();
        assert_eq!(
            RdsPath::new(&b, "/storage-pool/csi/x.img")
                .unwrap()
                .as_str(),
            "/storage-pool/csi/x.img"
        );
        assert!(RdsPath::new(&b, "/storage-pool/csi/sub/x.img").is_ok());
        for outside in [
            "/storage-pool/csi2/x.img",
            "/storage-pool/csi",
            "/storage-pool/x.img",
            "/other/csi/x.img",
        ] {
            assert!(
                matches!(
                    RdsPath::new(&b, outside),
                    Err(ValidationError::OutsideBase { .. })
                ),
                "{outside}"
            );
        }
        for bad in [
            "storage-pool/csi/x.img",
            "/storage-pool/csi/../csi/x.img",
            "/storage-pool/csi/./x.img",
            "/storage-pool/csi//x.img",
            "/storage-pool/csi/x.img/",
            "/storage-pool/csi/",
            "",
        ] {
            assert!(RdsPath::new(&b, bad).is_err(), "{bad}");
        }
        assert!(BasePath::new("/").is_err());
        assert!(BasePath::new("/a/../b").is_err());
        assert!(BasePath::new(&format!("/{}", "a".repeat(256))).is_err());
        assert_eq!(b.mount_point().as_str(), "storage-pool");
        assert!(b.contains_file_name("storage-pool/csi/x.img"));
        assert!(!b.contains_file_name("storage-pool/csi"));
        assert!(!b.contains_file_name("storage-pool/csi/"));
        assert!(!b.contains_file_name("storage-pool/csi2/x.img"));
    }

    #[test]
    fn ports() {
        assert_eq!(Port::new(0), Err(ValidationError::ZeroPort));
        assert_eq!(Port::new(4420).unwrap().get(), 4420);
        assert_eq!(Port::default().get(), 4420);
    }

    #[test]
    fn commands_render_exactly() {
        let b = base();
        let s = slot("pvc-1");
        let path = RdsPath::volume_file(&b, &s).unwrap();
        assert_eq!(
            Command::create_disk(&path, 1 << 30, &s, &export(&s))
                .unwrap()
                .as_str(),
            "/disk add type=file file-path=\"/storage-pool/csi/pvc-1.img\" file-size=\"1G\" \
             slot=\"pvc-1\" nvme-tcp-export=yes nvme-tcp-server-port=\"4420\" \
             nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\""
        );
        let snap = slot("snap-1");
        let snap_path = RdsPath::volume_file(&b, &snap).unwrap();
        assert_eq!(
            Command::copy_disk(&s, &snap_path, &snap, None, None)
                .unwrap()
                .as_str(),
            "/disk add type=file copy-from=[find slot=\"pvc-1\"] \
             file-path=\"/storage-pool/csi/snap-1.img\" slot=\"snap-1\""
        );
        let clone = slot("pvc-2");
        let clone_path = RdsPath::volume_file(&b, &clone).unwrap();
        assert_eq!(
            Command::copy_disk(
                &snap,
                &clone_path,
                &clone,
                Some(1_610_612_736),
                Some(&export(&clone))
            )
            .unwrap()
            .as_str(),
            "/disk add type=file copy-from=[find slot=\"snap-1\"] \
             file-path=\"/storage-pool/csi/pvc-2.img\" slot=\"pvc-2\" file-size=\"1536M\" \
             nvme-tcp-export=yes nvme-tcp-server-port=\"4420\" \
             nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-2\""
        );
        assert_eq!(
            Command::resize_disk(&s, 2 << 30).unwrap().as_str(),
            "/disk set [find slot=\"pvc-1\"] file-size=\"2G\""
        );
        assert_eq!(
            Command::remove_disk(&s).as_str(),
            "/disk remove [find slot=\"pvc-1\"]"
        );
        assert_eq!(
            Command::remove_file(&path).as_str(),
            "/file remove [find name=\"storage-pool/csi/pvc-1.img\"]"
        );
        assert_eq!(
            Command::print_disk(&s).as_str(),
            "/disk print detail where slot=\"pvc-1\""
        );
        assert_eq!(
            Command::list_disks(&SlotPrefix::new("pvc-").unwrap()).as_str(),
            "/disk print detail where slot~\"^pvc-\""
        );
        assert_eq!(
            Command::pool_capacity(&b.mount_point()).as_str(),
            "/disk print detail where mount-point=\"storage-pool\""
        );
        assert_eq!(
            Command::list_files(&b).as_str(),
            "/file print detail where name~\"^storage-pool/csi/\""
        );
        assert_eq!(Command::identity().to_string(), "/system identity print");
        assert_eq!(Command::resource().to_string(), "/system resource print");
    }

    #[test]
    fn zero_sizes_are_refused() {
        let b = base();
        let s = slot("pvc-1");
        let path = RdsPath::volume_file(&b, &s).unwrap();
        assert_eq!(
            Command::create_disk(&path, 0, &s, &export(&s)),
            Err(ValidationError::ZeroSize)
        );
        assert_eq!(Command::resize_disk(&s, 0), Err(ValidationError::ZeroSize));
        assert_eq!(
            Command::copy_disk(&s, &path, &s, Some(0), None),
            Err(ValidationError::ZeroSize)
        );
    }

    #[test]
    fn injection_attempts_are_refused_in_every_argument() {
        let b = base();
        for h in HOSTILE {
            let payloads = [
                format!("pvc{h}1"),
                format!("{h}pvc"),
                format!("pvc{h}"),
                format!("pvc-1{h}] ; /system reboot"),
            ];
            for p in &payloads {
                assert!(Slot::new(p).is_err(), "slot {p:?}");
                assert!(SlotPrefix::new(p).is_err(), "prefix {p:?}");
                assert!(MountPoint::new(p).is_err(), "mount point {p:?}");
                assert!(
                    Nqn::new(format!("{MIKROTIK_NQN_PREFIX}{p}")).is_err(),
                    "nqn {p:?}"
                );
                assert!(
                    Nqn::new(format!("nqn.2000-02.com{h}x:pvc")).is_err(),
                    "nqn domain {h:?}"
                );
                assert!(
                    RdsPath::new(&b, &format!("/storage-pool/csi/{p}.img")).is_err(),
                    "path {p:?}"
                );
                assert!(
                    BasePath::new(&format!("/storage-pool/{p}")).is_err(),
                    "base {p:?}"
                );
            }
        }
        // `/` and `.` are allowed in paths but can never climb out of the base.
        assert!(RdsPath::new(&b, "/storage-pool/csi/../../etc/passwd").is_err());
    }

    #[test]
    fn quoting_escapes_even_if_allow_lists_were_loosened() {
        assert_eq!(quote(r#"a"b\c$d"#), r#""a\"b\\c\$d""#);
        assert_eq!(quote("pvc-1"), "\"pvc-1\"");
    }

    proptest::proptest! {
        #[test]
        fn every_accepted_slot_is_inert_inside_quotes(s in "[ -~]{1,70}") {
            if let Ok(slot) = Slot::new(&s) {
                proptest::prop_assert!(slot.as_str().chars().all(is_slot_char));
                let cmd = Command::print_disk(&slot);
                proptest::prop_assert_eq!(cmd.as_str().matches('"').count(), 2);
            }
        }
    }
}
