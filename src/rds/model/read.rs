//! Reading [`Disk`] and [`PoolCapacity`] from parsed RouterOS items, field by field, with a
//! typed error naming the field that is missing or malformed.

use super::{Disk, ListingError, ModelError, PoolCapacity};
use crate::rds::parse::{
    typed_bool, typed_bytes, typed_u64, visit_items, FieldError, Item, ItemRef,
};

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
}

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
