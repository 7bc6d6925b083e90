//! The keys of StorageClass parameters (what an operator writes) and of the volume context
//! (what the controller hands the node at CreateVolume). Most keys are both: a parameter's
//! value is carried on to the node under the same name. The keys are a contract between the
//! two halves of the driver and with every PersistentVolume already created: a key never
//! changes meaning across versions.

/// Parameter: directory on the RDS for the volume's file (inside `--volume-base-path`).
pub const VOLUME_PATH: &str = "volumePath";
/// Parameter and context: NVMe/TCP address the node connects to.
pub const NVME_ADDRESS: &str = "nvmeAddress";
/// Parameter and context: NVMe/TCP port (default [`node_io::fabrics::NVME_TCP_PORT`]).
pub const NVME_PORT: &str = "nvmePort";
/// Parameter and context: the kernel's `ctrl_loss_tmo`, seconds (-1: forever).
pub const CTRL_LOSS_TMO: &str = "ctrlLossTmo";
/// Parameter and context: the kernel's `reconnect_delay`, seconds.
pub const RECONNECT_DELAY: &str = "reconnectDelay";
/// Parameter and context: the kernel's `keep_alive_tmo`, seconds.
pub const KEEP_ALIVE_TMO: &str = "keepAliveTmo";
/// Parameter and context: see [`super::MigrationTimeout`].
pub const MIGRATION_TIMEOUT_SECONDS: &str = "migrationTimeoutSeconds";
/// Parameter and context: see [`super::FsType`].
pub const FS_TYPE: &str = "fsType";
/// Context (and publish context): the volume's subsystem NQN.
pub const NQN: &str = "nqn";
/// Context: "true" only for a volume created empty: the node may format it if (and only if)
/// the device is also blank. Clones and restores are never fresh.
pub const FRESH: &str = "fresh";
/// Context: the volume's backing file path on the RDS (e.g. `/storage-pool/csi/pvc-1.img`).
/// Used only by the node's development `loop` transport, which attaches the simulator's
/// file directly.
pub const VOLUME_FILE: &str = "volumeFile";

/// Every StorageClass parameter this driver reads (docs are checked against this list).
pub const STORAGE_CLASS_PARAMETERS: &[&str] = &[
    VOLUME_PATH,
    NVME_ADDRESS,
    NVME_PORT,
    CTRL_LOSS_TMO,
    RECONNECT_DELAY,
    KEEP_ALIVE_TMO,
    MIGRATION_TIMEOUT_SECONDS,
    FS_TYPE,
];

/// Keys the external-provisioner adds itself (PVC/PV names with --extra-create-metadata).
pub const PROVISIONER_KEY_PREFIX: &str = "csi.storage.k8s.io/";
