//! What the controller and the node agree on about a volume, each fact defined once in a
//! type that enforces it: the keys of StorageClass parameters and of the volume context
//! ([`keys`]), the live-migration timeout ([`MigrationTimeout`]), the filesystem type
//! ([`FsType`]), the volume capability and its rules, one message for refused filesystem
//! RWX included ([`Capability`]), the volume id ([`VolumeId`]) and the topology every volume
//! is accessible from ([`topology`]). The NQN is node-io's
//! [`node_io::nqn::Nqn`] (an NVMe fact, shared by the RouterOS client and the kernel side);
//! the NVMe/TCP port is [`node_io::fabrics::NVME_TCP_PORT`].
//!
//! Nothing here performs I/O; the controller writes these values and the node reads them
//! back through the same types (docs/architecture.md, "Data flow of one volume").

pub mod address;
pub mod capability;
pub mod context;
pub mod fs_type;
pub mod id;
pub mod keys;
pub mod migration_timeout;
pub mod topology;

pub use address::{InvalidAddress, NvmeAddress};
pub use capability::{AccessType, Capability, CapabilityError, RWX_FILESYSTEM_REFUSED};
pub use fs_type::{FsType, UnsupportedFsType};
pub use id::{InvalidVolumeId, VolumeId, SNAPSHOT_SLOT_PREFIX};
pub use migration_timeout::{InvalidMigrationTimeout, MigrationTimeout};
