//! The node plugin's errors: [`NodeError`] says what went wrong (node-io's typed errors kept
//! as sources), [`NodeError::code`] is the one table that picks each fault's gRPC code, and
//! [`VolumeError`] is what a Node RPC answers: the fault and the volume it happened to.
//!
//! Codes follow the CSI spec (v1.12, "Error Scheme"): a malformed request is
//! INVALID_ARGUMENT, another operation on the volume ABORTED, a volume or path that is not
//! there NOT_FOUND, an incompatible repeat of a finished call ALREADY_EXISTS, a state the CO
//! must change first FAILED_PRECONDITION, a dependency that may come back UNAVAILABLE, the
//! call's deadline DEADLINE_EXCEEDED, anything else INTERNAL. Messages show inputs through
//! [`echo`], so no message carries more than a few hundred bytes of any input.

use std::path::PathBuf;

use node_io::dev_num::DevNum;
use node_io::fabrics::FabricsError;
use node_io::holders::HolderError;
use node_io::mount::MountError;
use node_io::mountinfo::ReadError as MountinfoError;
use node_io::probe::ProbeError;
use node_io::sysfs::SysfsError;
use node_io::wait::{DetachError, SizeError, WaitError};
use tonic::{Code, Status};

use crate::error::{cap_message, echo, MAX_STATUS_MESSAGE_BYTES};
use crate::node::fs_plan::FsRefusal;
use crate::node::stage_record::AccessType;
use crate::runtime::BlockingError;
use crate::volume::context::ContextError;
use crate::volume::CapabilityError;

/// Everything a node operation can fail with. The Display text names the object and the
/// next step; the volume is added by [`VolumeError`].
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    // ---- the request (INVALID_ARGUMENT)
    #[error("{field} is required")]
    Missing { field: &'static str },
    /// The one volume-id rule (`crate::volume::VolumeId`).
    #[error(transparent)]
    BadVolumeId(crate::volume::InvalidVolumeId),
    #[error(
        "{field} {} must be an absolute path without '.' or '..' components or control characters",
        echo(.path)
    )]
    BadPath { field: &'static str, path: String },
    /// The one capability parser and its rules (`crate::volume::Capability`).
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    #[error("mount option {} is refused: {reason}", echo(.option))]
    MountOptionRefused { option: String, reason: String },
    #[error(
        "mount option {} is not allowed: {why} (docs/configuration.md, \"mountOptions\")",
        echo(.option)
    )]
    MountOptionDenied { option: String, why: &'static str },
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("the volume context has no volumeFile, which --transport loop needs")]
    NoVolumeFile,
    #[error("cannot build the NVMe/TCP connect options: {0}")]
    ConnectOptions(#[source] FabricsError),
    #[error("host NQN {} in {} is not a valid NQN; {fix}", echo(.nqn), show(.file))]
    BadHostNqn {
        nqn: String,
        file: PathBuf,
        fix: String,
    },
    #[error(
        "host ID {} in {} is not a UUID; remove the file to have one generated",
        echo(.id), show(.file)
    )]
    BadHostId { id: String, file: PathBuf },

    // ---- concurrency (ABORTED)
    #[error("an operation on this volume is already in progress; retry after it finishes")]
    Pending,
    #[error(
        "the node is busy with its target {} (the reconciler is checking or disconnecting \
         a controller of it); NodeStageVolume is retried",
        echo(.target)
    )]
    TargetBusy { target: String },

    // ---- not there (NOT_FOUND)
    #[error("volume path {} does not exist", show(.path))]
    PathNotFound { path: PathBuf },
    #[error("no such volume on this node (no stage record)")]
    UnknownVolume,
    #[error(
        "volume {} does not exist: no volume of this driver has such an id",
        echo(.id)
    )]
    UnknownVolumeId { id: String },

    // ---- an incompatible repeat (ALREADY_EXISTS) or a state to change first (FAILED_PRECONDITION)
    #[error(
        "already staged on this node from {} at {} ({staged_access:?}); the request \
         names {} at {} ({access:?}); unstage it first",
        echo(.staged_target),
        show(.staged_path),
        echo(.target),
        show(.path)
    )]
    StagedDifferently {
        staged_target: String,
        staged_path: PathBuf,
        staged_access: AccessType,
        target: String,
        path: PathBuf,
        access: AccessType,
    },
    #[error(
        "target {} is already published {}; unpublish it before publishing {}",
        show(.target),
        if *.read_only { "read-only" } else { "read-write" },
        if *.read_only { "read-write" } else { "read-only" }
    )]
    PublishedDifferently { target: PathBuf, read_only: bool },
    #[error(
        "staging path {} is mounted from {mounted} ({source_name}) but the volume's device is now \
         {device} ({dev}); unstage the volume and stage it again",
        show(.path)
    )]
    StagingMountedElsewhere {
        path: PathBuf,
        mounted: DevNum,
        source_name: String,
        device: String,
        dev: DevNum,
    },
    #[error("device {device} {reason}; nothing was formatted")]
    FormatRefused { device: String, reason: FsRefusal },
    #[error("{0}")]
    InUse(String),
    #[error("not staged on this node (no stage record); NodeStageVolume must succeed first")]
    NotStaged,
    #[error("staged for {staged:?} access but is published for {requested:?}")]
    AccessMismatch {
        staged: AccessType,
        requested: AccessType,
    },
    #[error(
        "the volume is staged at {}, not at {}; publish from where it is staged",
        show(.staged_path), show(.path)
    )]
    StagedElsewhere { path: PathBuf, staged_path: PathBuf },
    #[error("staging path {} is not mounted; NodeStageVolume must run again", show(.path))]
    StagingNotMounted { path: PathBuf },
    #[error(
        "target {} is already mounted from {mounted} but the staged volume is {staged}; unpublish it first",
        show(.target)
    )]
    TargetMountedElsewhere {
        target: PathBuf,
        mounted: DevNum,
        staged: DevNum,
    },
    #[error(
        "{field} {} resolves through the symbolic link {}; the node follows no links in the \
         paths it mounts on or writes to — remove the link (the kubelet directory must be a \
         real directory)",
        show(.path), show(.link)
    )]
    ThroughSymlink {
        field: &'static str,
        path: PathBuf,
        link: PathBuf,
    },
    #[error("block target {} is a mounted directory; unpublish it first", show(.target))]
    BlockTargetMounted { target: PathBuf },
    #[error(
        "block target {} exists and is neither a device node, a file nor a directory",
        show(.target)
    )]
    BlockTargetUnexpected { target: PathBuf },
    #[error(
        "its device ({}) is not present on this node; unstage and stage the volume again",
        echo(.target)
    )]
    DeviceMissing { target: String },
    #[error(
        "{} holds {}, which this driver cannot grow (only {choices})",
        show(.path), echo(.fs), choices = crate::volume::FsType::choices()
    )]
    CannotGrow { path: PathBuf, fs: String },
    #[error(
        "NQN {nqn} is outside --nqn-prefix {prefix:?}; this driver only connects and disconnects \
         NQNs under it (other RDS disks, e.g. a boot disk, are left alone); fix the prefix or the \
         volume's NQN"
    )]
    OutsidePrefix { nqn: String, prefix: String },
    #[error(
        "its target {} is volume {volume}'s, which is staged on this node; a volume's context \
         must name its own disk — check the PersistentVolume's volumeHandle and volume context",
        echo(.target)
    )]
    TargetOfAnotherVolume { target: String, volume: String },
    #[error(
        "it was staged with the {target_kind} target {} but this node runs the {transport} \
         transport; unstage it with the transport it was staged with",
        echo(.target)
    )]
    WrongTransport {
        target: String,
        target_kind: &'static str,
        transport: &'static str,
    },
    #[error("{0}; a volume's subsystem must export exactly one namespace")]
    AmbiguousNamespaces(#[source] SysfsError),
    #[error("{0}")]
    WaitState(#[source] WaitError),
    #[error(
        "backing file {} does not exist; is --loop-data-dir the simulator's data directory?",
        show(.path)
    )]
    BackingFileMissing { path: PathBuf },
    #[error(
        "{} all back {}; detach the extra ones (losetup -d) — this driver attaches one",
        .devices.join(", "), show(.file)
    )]
    SeveralLoopDevices { devices: Vec<String>, file: PathBuf },
    #[error(
        "{program} is not installed on this node; install e2fsprogs/xfsprogs in the node image"
    )]
    ToolMissing { program: &'static str },
    #[error(
        "the ext4 on {device} must grow to its device's size but e2fsck -f -p cannot repair it \
         unattended ({status}): {output}; check it by hand (e2fsck -f) and NodeStageVolume is retried"
    )]
    NeedsFsck {
        device: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error(
        "{} is mounted from {mounted} ({source_name}), which is not a device of this volume; \
         it is left mounted — unmount it by hand if it is stale",
        show(.path)
    )]
    NotOurMount {
        path: PathBuf,
        mounted: DevNum,
        source_name: String,
    },
    #[error(
        "block target {} is a regular file, not a device node this plugin made; it is left \
         alone — remove it, or publish to another path",
        show(.target)
    )]
    BlockTargetIsFile { target: PathBuf },
    #[error(
        "a read-only publish of a block volume is refused: a device node cannot be made \
         read-only for one pod (it would stay writable); publish it read-write, or use a \
         filesystem volume for read-only access"
    )]
    ReadOnlyBlock,
    #[error(
        "host NQN {} in {} is a well-known default shared by cloned images, so the RDS could not \
         tell this node from others; {fix}",
        echo(.nqn), show(.file)
    )]
    SharedHostNqn {
        nqn: String,
        file: PathBuf,
        fix: String,
    },

    // ---- a dependency that may come back (UNAVAILABLE)
    #[error(
        "device {device} cannot be read yet ({source}); nothing was formatted, NodeStageVolume is retried"
    )]
    NotReadable {
        device: String,
        #[source]
        source: ProbeError,
    },
    #[error(
        "connecting {nqn} at {address}:{port} failed: {source}; check that the RDS at {address}:{port} \
         is reachable and exports the NQN to this host"
    )]
    ConnectFailed {
        nqn: String,
        address: String,
        port: u16,
        #[source]
        source: FabricsError,
    },
    #[error(
        "cannot resolve the RDS address {} on this node ({why}); fix the node's DNS or use an IP \
         address in the StorageClass's nvmeAddress",
        echo(.address)
    )]
    Unresolvable { address: String, why: String },
    #[error("{0} after a rescan; has the RDS grown the disk yet? retried")]
    NotGrown(#[source] SizeError),
    #[error(
        "device {device} is {size} bytes after a rescan, {required} were asked; has the \
         backing file grown yet? retried"
    )]
    LoopNotGrown {
        device: String,
        size: u64,
        required: u64,
    },

    // ---- the call's deadline (DEADLINE_EXCEEDED)
    #[error(
        "{what} did not finish before the call's deadline; the device or the kernel may be unresponsive"
    )]
    Deadline { what: String },
    #[error(
        "cannot resolve the RDS address {} on this node (the lookup did not finish before the \
         deadline); fix the node's DNS or use an IP address in the StorageClass's nvmeAddress",
        echo(.address)
    )]
    LookupDeadline { address: String },
    #[error(
        "{0}; the controller is connected but no namespace appeared — check the export on the RDS"
    )]
    NoNamespace(#[source] WaitError),
    #[error("{0}; NodeUnstageVolume is retried")]
    Detach(#[source] DetachError),

    // ---- anything else (INTERNAL)
    #[error("{what} {}: {source}", show(.path))]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Blocking(#[from] BlockingError),
    #[error("{0}")]
    Mount(#[source] MountError),
    #[error("{what}: {source}")]
    Syscall {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading NVMe state from sysfs: {0}")]
    Sysfs(#[source] SysfsError),
    #[error("{0}")]
    Size(#[source] SizeError),
    #[error("reading mountinfo: {0}")]
    Mountinfo(#[source] MountinfoError),
    #[error(
        "cannot tell who holds {device} ({source}); the device stays connected, NodeUnstageVolume is retried"
    )]
    HolderScan {
        device: String,
        #[source]
        source: HolderError,
    },
    #[error(
        "cannot disconnect {nqn}: {source}; the device stays connected, retry NodeUnstageVolume"
    )]
    Disconnect {
        nqn: String,
        #[source]
        source: SysfsError,
    },
    #[error("cannot rescan {nqn}: {source}")]
    Rescan {
        nqn: String,
        #[source]
        source: SysfsError,
    },
    #[error("{command} printed no {missing}")]
    ToolOutput {
        command: String,
        missing: &'static str,
    },
    #[error("{command} failed ({status}): {output}")]
    ToolFailed {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("{what}: {source}")]
    Task {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("{} is still mounted after 8 unmounts; inspect the mounts on the node", show(.path))]
    StillMounted { path: PathBuf },
    #[error("{0}; the volume stays mounted, the call is retried")]
    Unmount(#[source] Box<NodeError>),
    #[error("losetup attached {} but no loop device shows it", show(.file))]
    LoopNotShown { file: PathBuf },
    #[error(
        "stage record {} is damaged ({what}); unstage the volume by hand or remove the file",
        show(.path)
    )]
    RecordDamaged { path: PathBuf, what: String },
}

/// A path in a message, quoted and cut like any other input ([`echo`]).
pub fn show(p: &std::path::Path) -> String {
    echo(&p.to_string_lossy()).to_string()
}

impl NodeError {
    /// The one table of gRPC codes for node faults (CSI spec, "Error Scheme").
    pub fn code(&self) -> Code {
        use NodeError::*;
        match self {
            Missing { .. }
            | BadVolumeId(_)
            | BadPath { .. }
            | Capability(_)
            | MountOptionRefused { .. }
            | MountOptionDenied { .. }
            | Context(_)
            | NoVolumeFile
            | ConnectOptions(_)
            | ReadOnlyBlock
            | BadHostNqn { .. }
            | BadHostId { .. } => Code::InvalidArgument,
            Pending | TargetBusy { .. } => Code::Aborted,
            PathNotFound { .. } | UnknownVolume | UnknownVolumeId { .. } => Code::NotFound,
            // CSI: a repeat at the same path (or target) that is incompatible with what is
            // there; staged at another path is a precondition the CO must clear first.
            StagedDifferently {
                staged_path, path, ..
            } if staged_path == path => Code::AlreadyExists,
            PublishedDifferently { .. } => Code::AlreadyExists,
            StagedDifferently { .. }
            | StagingMountedElsewhere { .. }
            | FormatRefused { .. }
            | InUse(_)
            | NotStaged
            | AccessMismatch { .. }
            | StagingNotMounted { .. }
            | StagedElsewhere { .. }
            | TargetMountedElsewhere { .. }
            | ThroughSymlink { .. }
            | BlockTargetMounted { .. }
            | BlockTargetUnexpected { .. }
            | DeviceMissing { .. }
            | CannotGrow { .. }
            | OutsidePrefix { .. }
            | WrongTransport { .. }
            | TargetOfAnotherVolume { .. }
            | AmbiguousNamespaces(_)
            | WaitState(_)
            | BackingFileMissing { .. }
            | SeveralLoopDevices { .. }
            | ToolMissing { .. }
            | RecordDamaged { .. }
            | NeedsFsck { .. }
            | NotOurMount { .. }
            | BlockTargetIsFile { .. }
            | SharedHostNqn { .. } => Code::FailedPrecondition,
            NotReadable { .. }
            | ConnectFailed { .. }
            | Unresolvable { .. }
            | NotGrown(_)
            | LoopNotGrown { .. } => Code::Unavailable,
            Detach(DetachError::Sysfs { .. }) | Size(_) => Code::Internal,
            Detach(_) => Code::DeadlineExceeded,
            Blocking(BlockingError::DeadlineExceeded { .. }) => Code::DeadlineExceeded,
            Blocking(BlockingError::Panicked { .. }) => Code::Internal,
            Deadline { .. } | LookupDeadline { .. } | NoNamespace(_) => Code::DeadlineExceeded,
            Io { .. }
            | Mount(_)
            | Syscall { .. }
            | Sysfs(_)
            | Mountinfo(_)
            | HolderScan { .. }
            | Disconnect { .. }
            | Rescan { .. }
            | ToolFailed { .. }
            | ToolOutput { .. }
            | Task { .. }
            | StillMounted { .. }
            | Unmount(_)
            | LoopNotShown { .. } => Code::Internal,
        }
    }

    /// This fault, happened to `volume_id`.
    pub fn on(self, volume_id: &str) -> VolumeError {
        VolumeError {
            volume_id: Some(volume_id.to_owned()),
            error: self,
        }
    }
}

/// A Node RPC's error: the fault and the volume (None while the request names no valid one).
#[derive(Debug, thiserror::Error)]
pub struct VolumeError {
    pub volume_id: Option<String>,
    #[source]
    pub error: NodeError,
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.volume_id {
            Some(v) => write!(f, "volume {v}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl VolumeError {
    pub fn code(&self) -> Code {
        self.error.code()
    }
}

impl From<NodeError> for VolumeError {
    /// A fault before the request named a valid volume.
    fn from(error: NodeError) -> Self {
        VolumeError {
            volume_id: None,
            error,
        }
    }
}

impl From<VolumeError> for Status {
    fn from(e: VolumeError) -> Self {
        Status::new(
            e.code(),
            cap_message(e.to_string(), MAX_STATUS_MESSAGE_BYTES),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_prefixes_the_message_and_the_code_comes_from_the_fault() {
        let e = NodeError::NotStaged.on("pvc-1");
        let s = Status::from(e);
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(
            s.message().starts_with("volume pvc-1: not staged"),
            "{}",
            s.message()
        );
        let s = Status::from(VolumeError::from(NodeError::Missing { field: "volume_id" }));
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "volume_id is required")
        );
    }

    #[test]
    fn restaging_differently_is_already_exists_only_at_the_same_path() {
        let e = |path: &str| NodeError::StagedDifferently {
            staged_target: "a".into(),
            staged_path: "/s".into(),
            staged_access: AccessType::Block,
            target: "a".into(),
            path: path.into(),
            access: AccessType::Mount,
        };
        assert_eq!(e("/s").code(), Code::AlreadyExists);
        assert_eq!(e("/t").code(), Code::FailedPrecondition);
    }

    #[test]
    fn a_long_input_is_echoed_short() {
        let id = "x".repeat(100_000);
        let m = NodeError::BadVolumeId(crate::volume::InvalidVolumeId::Foreign(id)).to_string();
        assert!(m.len() < 400 && m.contains("100000 bytes"), "{m}");
    }
}
