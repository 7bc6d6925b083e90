//! RouterOS client for the RDS: the pure parts (command builder, output parser, errors,
//! sizes, typed model). The SSH transport lives beside these and uses them.

pub mod command;
pub mod error;
pub mod model;
pub mod parse;
pub mod size;

pub use command::{
    BasePath, Command, MountPoint, Nqn, NvmeExport, Port, RdsPath, Slot, SlotPrefix,
    ValidationError,
};
pub use error::{classify_output, RdsError, RdsErrorKind};
pub use model::{
    render_disk_detail, render_disk_list, render_pool_capacity, Disk, ModelError, PoolCapacity,
};
pub use parse::{parse_items, FieldError, Item, ParseError};
pub use size::{parse_user_size, plan_volume_size, round_up_to, routeros_size_arg, SizeError};
