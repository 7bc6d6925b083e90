//! Disks and the pool printed as RouterOS prints them (`/disk print detail`), for the
//! simulator; the tests hold them to the real samples byte for byte.

use super::{Disk, PoolCapacity};
use crate::rds::size::{group_digits, human_size};

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
