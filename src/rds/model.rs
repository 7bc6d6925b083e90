//! Typed views of parsed RouterOS items, and renderers that print disks in the real
//! `print detail` shape (for the simulator).

use thiserror::Error;

use super::parse::{
    typed_bool, typed_bytes, typed_u64, visit_items, FieldError, Item, ItemRef, ParseError,
};
use super::size::{group_digits, human_size};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("field {key}={value}: not a TCP port")]
    BadPort { key: &'static str, value: u64 },
    #[error("pool reports {free} bytes free out of {size}")]
    FreeAboveSize { size: u64, free: u64 },
    #[error("expected exactly one item, got {0}")]
    NotExactlyOne(usize),
}

/// A disk as RouterOS prints it. `size_bytes` is exact: it comes from `size=` (an integer)
/// when printed, and only otherwise from the human `file-size=`, which RouterOS rounds to one
/// decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub slot: String,
    pub disk_type: String,
    pub file_path: Option<String>,
    pub size_bytes: u64,
    pub nvme_tcp_export: bool,
    pub nvme_tcp_port: Option<u16>,
    pub nvme_tcp_nqn: Option<String>,
    /// Flag letters, e.g. `X` when disabled.
    pub flags: String,
}

/// The fields a [`Disk`] is read from, gathered in one pass over an item's fields (keys are
/// unique in an item, so this is what looking each one up would give).
#[derive(Default)]
struct DiskFields<'a> {
    slot: Option<&'a str>,
    disk_type: Option<&'a str>,
    size: Option<&'a str>,
    file_size: Option<&'a str>,
    file_path: Option<&'a str>,
    nvme_tcp_export: Option<&'a str>,
    nvme_tcp_port: Option<&'a str>,
    nvme_tcp_nqn: Option<&'a str>,
}

impl<'a> DiskFields<'a> {
    fn gather(fields: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut f = DiskFields::default();
        for (key, value) in fields {
            let slot = match key {
                "slot" => &mut f.slot,
                "type" => &mut f.disk_type,
                "size" => &mut f.size,
                "file-size" => &mut f.file_size,
                "file-path" => &mut f.file_path,
                "nvme-tcp-export" => &mut f.nvme_tcp_export,
                "nvme-tcp-server-port" => &mut f.nvme_tcp_port,
                "nvme-tcp-server-nqn" => &mut f.nvme_tcp_nqn,
                _ => continue,
            };
            *slot = Some(value);
        }
        f
    }
}

/// `None` for a missing field, the typed value or error otherwise.
fn optional<T>(
    key: &str,
    value: Option<&str>,
    typed: fn(&str, Option<&str>) -> Result<T, FieldError>,
) -> Result<Option<T>, FieldError> {
    value.map(|v| typed(key, Some(v))).transpose()
}

/// `None` for a missing, empty or `-` value: RouterOS prints unset values either way.
fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty() && *v != "-")
}

impl Disk {
    /// A file disk as the driver creates it.
    pub fn file(slot: &str, file_path: &str, size_bytes: u64) -> Self {
        Disk {
            slot: slot.to_string(),
            disk_type: "file".to_string(),
            file_path: Some(file_path.to_string()),
            size_bytes,
            nvme_tcp_export: false,
            nvme_tcp_port: None,
            nvme_tcp_nqn: None,
            flags: String::new(),
        }
    }

    pub fn from_item(item: &Item) -> Result<Self, ModelError> {
        Self::from_fields(DiskFields::gather(item.fields()), item.flags())
    }

    /// The same as [`Disk::from_item`], from a lent item (no intermediate copy).
    pub fn from_item_ref(item: &ItemRef<'_>) -> Result<Self, ModelError> {
        Self::from_fields(DiskFields::gather(item.fields()), item.flags())
    }

    fn from_fields(f: DiskFields<'_>, flags: &str) -> Result<Self, ModelError> {
        let slot = f
            .slot
            .ok_or(FieldError::Missing { key: "slot".into() })?
            .to_string();
        let disk_type = f
            .disk_type
            .ok_or(FieldError::Missing { key: "type".into() })?
            .to_string();
        // `size=` read as bytes also takes a human `size=` in case a RouterOS version prints
        // one; it is then no less exact than `file-size=`.
        let size_bytes = match optional("size", f.size, typed_bytes)? {
            Some(size) => size,
            None => typed_bytes("file-size", f.file_size).map_err(|e| match e {
                FieldError::Missing { .. } => FieldError::Missing { key: "size".into() },
                other => other,
            })?,
        };
        let nvme_tcp_export =
            optional("nvme-tcp-export", f.nvme_tcp_export, typed_bool)?.unwrap_or(false);
        let nvme_tcp_port = match optional("nvme-tcp-server-port", f.nvme_tcp_port, typed_u64)? {
            None => None,
            Some(p) => Some(u16::try_from(p).map_err(|_| ModelError::BadPort {
                key: "nvme-tcp-server-port",
                value: p,
            })?),
        };
        Ok(Disk {
            slot,
            disk_type,
            file_path: non_empty(f.file_path).map(str::to_string),
            size_bytes,
            nvme_tcp_export,
            nvme_tcp_port,
            nvme_tcp_nqn: non_empty(f.nvme_tcp_nqn).map(str::to_string),
            flags: flags.to_string(),
        })
    }

    pub fn from_items(items: &[Item]) -> Result<Vec<Self>, ModelError> {
        items.iter().map(Self::from_item).collect()
    }

    pub fn is_disabled(&self) -> bool {
        self.flags.contains('X')
    }
}

/// Why a disk listing could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ListingError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The disks of a `/disk print detail` output, built straight from the lent items (one pass,
/// no intermediate [`Item`]s). The same result as [`parse_items`](super::parse_items) then
/// [`Disk::from_items`]: an unreadable output is a `Parse` error even when an earlier item
/// is not a disk; otherwise the first item that is not a disk is the `Model` error.
pub fn parse_disks(text: &str) -> Result<Vec<Disk>, ListingError> {
    let mut disks = Vec::new();
    let mut not_a_disk = None;
    visit_items(text, |item| {
        if not_a_disk.is_none() {
            match Disk::from_item_ref(item) {
                Ok(disk) => disks.push(disk),
                Err(e) => not_a_disk = Some(e),
            }
        }
    })?;
    match not_a_disk {
        Some(e) => Err(e.into()),
        None => Ok(disks),
    }
}

/// Capacity of the storage pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCapacity {
    pub size: u64,
    pub free: u64,
}

impl PoolCapacity {
    /// Reads `size=` and `free=` from either the `/disk` mount-point item or the older
    /// `/file` directory item; both print the same two fields.
    pub fn from_item(item: &Item) -> Result<Self, ModelError> {
        let size = item.get_bytes("size")?;
        let free = item.get_bytes("free")?;
        if free > size {
            return Err(ModelError::FreeAboveSize { size, free });
        }
        Ok(PoolCapacity { size, free })
    }

    /// The output of a pool query must name exactly one pool; anything else is ambiguous.
    pub fn from_items(items: &[Item]) -> Result<Self, ModelError> {
        match items {
            [item] => Self::from_item(item),
            _ => Err(ModelError::NotExactlyOne(items.len())),
        }
    }
}

/// Continuation lines of `/disk print detail` are indented by 15 columns.
const DISK_INDENT: &str = "               ";

/// Always quoted, escaping what the parser unescapes.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Bare when RouterOS would print it bare (`/storage-pool/test.img`), quoted otherwise.
fn bare_or_quoted(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_' | ':'));
    if bare {
        value.to_string()
    } else {
        quoted(value)
    }
}

fn yes_no(v: bool) -> &'static str {
    if v {
        "yes"
    } else {
        "no"
    }
}

/// The field lines of a disk, grouped as the real output groups them.
fn disk_lines(disk: &Disk) -> Vec<String> {
    let mut groups: Vec<Vec<String>> = vec![
        vec![
            format!("type={}", bare_or_quoted(&disk.disk_type)),
            format!("slot={}", quoted(&disk.slot)),
            "slot-default=\"\"".into(),
            "parent=\"\"".into(),
            "fs=-".into(),
        ],
        disk.file_path
            .iter()
            .map(|p| format!("model={}", quoted(p)))
            .collect(),
        vec![
            format!("size={}", group_digits(disk.size_bytes)),
            "mount-filesystem=yes".into(),
            "mount-read-only=no".into(),
        ],
        vec![
            "compress=no".into(),
            "sector-size=512".into(),
            "raid-master=none".into(),
        ],
    ];
    let mut export = vec![format!("nvme-tcp-export={}", yes_no(disk.nvme_tcp_export))];
    if let Some(port) = disk.nvme_tcp_port {
        export.push(format!("nvme-tcp-server-port={port}"));
    }
    groups.push(export);
    groups.push(
        disk.nvme_tcp_nqn
            .iter()
            .map(|n| format!("nvme-tcp-server-nqn={}", quoted(n)))
            .collect(),
    );
    groups.push(vec![
        "nvme-tcp-server-allow-host-name=\"\"".into(),
        "iscsi-export=no".into(),
    ]);
    groups.push(vec![
        "nfs-sharing=no".into(),
        "smb-sharing=no".into(),
        "media-sharing=no".into(),
    ]);
    groups.push(vec!["media-interface=none".into(), "swap=no".into()]);
    if let Some(path) = &disk.file_path {
        groups.push(vec![format!("file-path={}", bare_or_quoted(path))]);
        groups.push(vec![
            format!("file-size={}", human_size(disk.size_bytes)),
            "file-offset=0".into(),
        ]);
    }
    groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(|g| g.join(" "))
        .collect()
}

fn render_with_prefix(disk: &Disk, first_prefix: &str) -> String {
    let mut out = String::new();
    for (i, line) in disk_lines(disk).iter().enumerate() {
        if i == 0 {
            out.push_str(first_prefix);
        } else {
            out.push_str(DISK_INDENT);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// One disk, as `/disk print detail where slot=...` prints it (unnumbered).
pub fn render_disk_detail(disk: &Disk) -> String {
    let prefix = if disk.flags.is_empty() {
        String::new()
    } else {
        format!("{} ", disk.flags)
    };
    render_with_prefix(disk, &prefix)
}

/// Many disks, numbered from 0 and separated by blank lines, as
/// `/disk print detail where slot~...` prints them.
pub fn render_disk_list(disks: &[Disk]) -> String {
    let mut out = String::new();
    for (n, disk) in disks.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let prefix = if disk.flags.is_empty() {
            format!("{n:>2}  ")
        } else {
            format!("{n:>2} {} ", disk.flags)
        };
        out.push_str(&render_with_prefix(disk, &prefix));
    }
    out
}

/// The pool line of `/disk print detail where mount-point=...`.
pub fn render_pool_capacity(mount_point: &str, capacity: &PoolCapacity) -> String {
    let used = capacity.size.saturating_sub(capacity.free);
    let percent = if capacity.size == 0 {
        0
    } else {
        ((u128::from(used) * 100 + u128::from(capacity.size) / 2) / u128::from(capacity.size))
            as u64
    };
    format!(
        "slot={mp} type=partition mount-point={mp} file-system=btrfs size={} free={} use={percent}%\n",
        group_digits(capacity.size),
        group_digits(capacity.free),
        mp = bare_or_quoted(mount_point),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rds::parse::parse_items;
    use crate::rds::size::GIB;

    // Samples pasted verbatim from /work/shared/reference/routeros.md.
    const SAMPLE_DETAIL: &str = r#"type=file slot="pvc-test-123" slot-default="" parent="" fs=-
               model="/storage-pool/test.img"
               size=53 687 091 200 mount-filesystem=yes mount-read-only=no
               compress=no sector-size=512 raid-master=none
               nvme-tcp-export=yes nvme-tcp-server-port=4420
               nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-test-123"
               nvme-tcp-server-allow-host-name="" iscsi-export=no
               nfs-sharing=no smb-sharing=no media-sharing=no
               media-interface=none swap=no
               file-path=/storage-pool/test.img
               file-size=50.0GiB file-offset=0
"#;

    const SAMPLE_LIST: &str = r#" 0  type=file slot="pvc-test-1" size=53 687 091 200
               file-path=/storage-pool/test1.img file-size=50.0GiB
               nvme-tcp-export=yes nvme-tcp-server-port=4420
               nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-test-1"

 1  type=file slot="pvc-test-2" size=107 374 182 400
               file-path=/storage-pool/test2.img file-size=100.0GiB
               nvme-tcp-export=yes nvme-tcp-server-port=4420
               nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-test-2"
"#;

    const SAMPLE_POOL: &str = "slot=storage-pool type=partition mount-point=storage-pool file-system=btrfs size=7 949 127 950 336 free=5 963 595 964 416 use=25%\n";

    const SAMPLE_POOL_OLD: &str = "name=/storage-pool type=directory size=7 681 574 174 720
               free=5 632 440 000 000 use=27%
               creation-time=jan/01/2025 00:00:00
";

    const SAMPLE_FILES: &str = " 0   name=storage-pool/metal-csi type=directory
     last-modified=2025-11-11 16:47:07

 1   name=storage-pool/metal-csi/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img
     type=.img file size=10.0GiB last-modified=2025-11-11 14:32:41
";

    fn exported(slot: &str, path: &str, size: u64) -> Disk {
        Disk {
            nvme_tcp_export: true,
            nvme_tcp_port: Some(4420),
            nvme_tcp_nqn: Some(format!("nqn.2000-02.com.mikrotik:{slot}")),
            ..Disk::file(slot, path, size)
        }
    }

    #[test]
    fn sample_detail_parses() {
        let items = parse_items(SAMPLE_DETAIL).unwrap();
        assert_eq!(items.len(), 1);
        let item = &items[0];
        assert_eq!(item.get_str("fs"), Some("-"));
        assert_eq!(item.get_str("model"), Some("/storage-pool/test.img"));
        assert_eq!(item.get_bytes("file-size"), Ok(50 * GIB));
        assert_eq!(item.get_bool("mount-filesystem"), Ok(true));
        assert_eq!(item.get_u64("file-offset"), Ok(0));
        assert_eq!(item.fields().count(), 25);
        assert_eq!(
            Disk::from_item(item).unwrap(),
            exported("pvc-test-123", "/storage-pool/test.img", 53_687_091_200)
        );
    }

    #[test]
    fn sample_list_parses() {
        let items = parse_items(SAMPLE_LIST).unwrap();
        assert_eq!(
            items.iter().map(Item::number).collect::<Vec<_>>(),
            [Some(0), Some(1)]
        );
        assert_eq!(
            Disk::from_items(&items).unwrap(),
            [
                exported("pvc-test-1", "/storage-pool/test1.img", 50 * GIB),
                exported("pvc-test-2", "/storage-pool/test2.img", 100 * GIB),
            ]
        );
    }

    #[test]
    fn sample_pool_forms_parse() {
        let new = PoolCapacity::from_items(&parse_items(SAMPLE_POOL).unwrap()).unwrap();
        assert_eq!(
            new,
            PoolCapacity {
                size: 7_949_127_950_336,
                free: 5_963_595_964_416
            }
        );
        let items = parse_items(SAMPLE_POOL_OLD).unwrap();
        assert_eq!(
            items[0].get_str("creation-time"),
            Some("jan/01/2025 00:00:00")
        );
        assert_eq!(items[0].get_str("use"), Some("27%"));
        assert_eq!(
            PoolCapacity::from_items(&items).unwrap(),
            PoolCapacity {
                size: 7_681_574_174_720,
                free: 5_632_440_000_000
            }
        );
    }

    #[test]
    fn sample_files_parse() {
        let items = parse_items(SAMPLE_FILES).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].get_str("name"), Some("storage-pool/metal-csi"));
        assert_eq!(items[0].get_str("type"), Some("directory"));
        assert_eq!(
            items[0].get_str("last-modified"),
            Some("2025-11-11 16:47:07")
        );
        assert_eq!(
            items[1].get_str("name"),
            Some("storage-pool/metal-csi/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img")
        );
        assert_eq!(items[1].get_str("type"), Some(".img file"));
        assert_eq!(items[1].get_bytes("size"), Ok(10 * GIB));
        assert_eq!(
            items[1].get_str("last-modified"),
            Some("2025-11-11 14:32:41")
        );
    }

    #[test]
    fn renderer_reproduces_the_real_sample_byte_for_byte() {
        let disk = exported("pvc-test-123", "/storage-pool/test.img", 53_687_091_200);
        assert_eq!(render_disk_detail(&disk), SAMPLE_DETAIL);
    }

    #[test]
    fn pool_renderer_reproduces_the_sample() {
        let cap = PoolCapacity {
            size: 7_949_127_950_336,
            free: 5_963_595_964_416,
        };
        assert_eq!(render_pool_capacity("storage-pool", &cap), SAMPLE_POOL);
    }

    #[test]
    fn list_renderer_numbers_and_separates_items() {
        let mut second = exported("pvc-b", "/p/b.img", GIB);
        second.flags = "X".into();
        let text = render_disk_list(&[Disk::file("pvc-a", "/p/a.img", 2 * GIB), second.clone()]);
        assert!(text.starts_with(" 0  type=file slot=\"pvc-a\""), "{text}");
        assert!(text.contains("\n\n 1 X type=file slot=\"pvc-b\""), "{text}");
        let disks = Disk::from_items(&parse_items(&text).unwrap()).unwrap();
        assert_eq!(disks, [Disk::file("pvc-a", "/p/a.img", 2 * GIB), second]);
        assert!(disks[1].is_disabled());
        assert_eq!(render_disk_list(&[]), "");
    }

    #[test]
    fn size_prefers_exact_size_over_human_file_size() {
        // 1.5 GiB + 512 prints as file-size=1.5GiB; only size= is exact.
        let disk = Disk::file("pvc-x", "/p/x.img", GIB + GIB / 2 + 512);
        let text = render_disk_detail(&disk);
        assert!(text.contains("file-size=1.5GiB"), "{text}");
        let items = parse_items(&text).unwrap();
        assert_eq!(
            Disk::from_item(&items[0]).unwrap().size_bytes,
            GIB + GIB / 2 + 512
        );
        let only_human = parse_items("type=file slot=\"a\" file-size=1.5GiB").unwrap();
        assert_eq!(
            Disk::from_item(&only_human[0]).unwrap().size_bytes,
            GIB + GIB / 2
        );
    }

    #[test]
    fn model_errors() {
        let no_size = parse_items("type=file slot=\"a\"").unwrap();
        assert_eq!(
            Disk::from_item(&no_size[0]),
            Err(ModelError::Field(FieldError::Missing {
                key: "size".into()
            }))
        );
        let no_slot = parse_items("type=file size=1").unwrap();
        assert!(Disk::from_item(&no_slot[0]).is_err());
        let bad_port =
            parse_items("type=file slot=\"a\" size=1 nvme-tcp-server-port=70000").unwrap();
        assert!(matches!(
            Disk::from_item(&bad_port[0]),
            Err(ModelError::BadPort { value: 70000, .. })
        ));
        let bad_bool = parse_items("type=file slot=\"a\" size=1 nvme-tcp-export=maybe").unwrap();
        assert!(matches!(
            Disk::from_item(&bad_bool[0]),
            Err(ModelError::Field(_))
        ));
        let over = parse_items("size=1 free=2").unwrap();
        assert_eq!(
            PoolCapacity::from_items(&over),
            Err(ModelError::FreeAboveSize { size: 1, free: 2 })
        );
        assert_eq!(
            PoolCapacity::from_items(&[]),
            Err(ModelError::NotExactlyOne(0))
        );
        let unset = parse_items("type=file slot=\"a\" size=1 file-path=\"\" nvme-tcp-server-nqn=-")
            .unwrap();
        let d = Disk::from_item(&unset[0]).unwrap();
        assert_eq!((d.file_path, d.nvme_tcp_nqn), (None, None));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn arb_slot() -> impl Strategy<Value = String> {
            "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
        }

        fn arb_disk() -> impl Strategy<Value = Disk> {
            (
                arb_slot(),
                proptest::option::of("(/[A-Za-z0-9._-]{1,20}){1,4}"),
                0u64..=(1u64 << 41),
                any::<bool>(),
                proptest::option::of(1u16..),
                any::<bool>(),
                "(X|R|XR|D)?",
            )
                .prop_map(|(slot, file_path, blocks, export, port, nqn, flags)| Disk {
                    nvme_tcp_nqn: nqn.then(|| format!("nqn.2000-02.com.mikrotik:{slot}")),
                    slot,
                    disk_type: "file".into(),
                    file_path,
                    size_bytes: blocks * 512,
                    nvme_tcp_export: export,
                    nvme_tcp_port: port,
                    flags,
                })
        }

        proptest! {
            #[test]
            fn detail_round_trips(disk in arb_disk()) {
                let items = parse_items(&render_disk_detail(&disk)).unwrap();
                prop_assert_eq!(items.len(), 1);
                prop_assert_eq!(Disk::from_item(&items[0]).unwrap(), disk);
            }

            #[test]
            fn list_round_trips(disks in proptest::collection::vec(arb_disk(), 0..12)) {
                let items = parse_items(&render_disk_list(&disks)).unwrap();
                prop_assert_eq!(Disk::from_items(&items).unwrap(), disks);
            }

            #[test]
            fn pool_round_trips(size in any::<u64>(), free_frac in 0u64..=100) {
                let free = (u128::from(size) * u128::from(free_frac) / 100) as u64;
                let cap = PoolCapacity { size, free };
                let items = parse_items(&render_pool_capacity("storage-pool", &cap)).unwrap();
                prop_assert_eq!(PoolCapacity::from_items(&items).unwrap(), cap);
            }
        }
    }
}
