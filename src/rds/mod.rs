//! RouterOS client for the RDS: the pure parts (command builder, output parser, errors,
//! sizes, typed model) and the I/O half: the SSH transport, circuit breaker and typed client.

pub mod breaker;
pub mod client;
pub mod command;
pub mod error;
pub mod files;
pub mod hostkey;
pub mod model;
pub mod monitor;
pub mod parse;
pub mod size;
pub(crate) mod transport;

pub use breaker::BreakerState;
pub use client::{LookFirst, RdsClient, RdsConfig};
pub use command::{
    slot_nqn, BasePath, Command, MountPoint, Nqn, NqnError, NvmeExport, Port, RdsPath, Slot,
    SlotPrefix, ValidationError,
};
pub use error::{classify_output, RdsError, RdsErrorKind};
pub use files::RdsFile;
pub use hostkey::HostKeyPolicy;
pub use model::{
    parse_disks, render_disk_detail, render_disk_list, render_pool_capacity, Disk, ListingError,
    ModelError, PoolCapacity,
};
pub use monitor::{RdsMonitor, Reachability};
pub use parse::{parse_items, visit_items, FieldError, Item, ItemRef, ParseError};
pub use size::{parse_user_size, plan_volume_size, round_up_to, routeros_size_arg, SizeError};
