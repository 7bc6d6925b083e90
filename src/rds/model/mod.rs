//! Typed views of parsed RouterOS items (a disk, the pool's capacity), read from the items
//! in `read`, and renderers that print them in the real `print detail` shape (for the
//! simulator) in `render`.

use thiserror::Error;

use super::parse::{FieldError, ParseError};

mod read;
mod render;
#[cfg(test)]
mod tests;

pub use read::parse_disks;
pub use render::{render_disk_detail, render_disk_list, render_pool_capacity};

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
/// Capacity of the storage pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCapacity {
    pub size: u64,
    pub free: u64,
}
