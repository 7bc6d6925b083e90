//! The RDS client the controller calls: typed operations over [`SshTransport`], each under
//! the caller's deadline, with retries only where they are safe and mutations of
//! unknown outcome resolved by looking (docs/architecture.md, "Correctness rules", rules 5
//! and 2), a circuit breaker, and metrics.
//!
//! Retry policy:
//! - reads (`print`) are retried after any transport failure, including a lost answer;
//! - any command is retried when nothing was sent (no connection, channel refused);
//! - a mutation whose answer was lost is never re-sent: `create_disk`, `copy_disk`,
//!   `resize_disk` and `delete_disk` look at the disk to learn what happened. The only
//!   exception is `/file remove [find name=..]`, which is idempotent (an empty `find`
//!   removes nothing), so sending it twice cannot do harm.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};
use tokio::time::Instant;

use super::breaker::{Breaker, BreakerState};
use super::command::{
    BasePath, Command, MountPoint, NvmeExport, RdsPath, Slot, SlotPrefix, ValidationError,
};
use super::error::{classify_output, RdsError, RdsErrorKind};
use super::files::RdsFile;
use super::hostkey::{HostKeyPolicy, Pin};
use super::model::{parse_disks, Disk, PoolCapacity};
use super::parse::parse_items;
use super::transport::{ExecError, SshTransport, TransportConfig};
use crate::observability::Metrics;

pub const BREAKER_STATE: &str = "rds_csi_rds_breaker_state";
pub const RDS_UP: &str = "rds_csi_rds_up";
pub const COMMANDS_TOTAL: &str = "rds_csi_rds_commands_total";
pub const COMMAND_DURATION: &str = "rds_csi_rds_command_duration_seconds";
/// Size and free space of the pool as last read (GetCapacity, which the external-provisioner
/// polls with --enable-capacity); 0 until the first read.
pub const POOL_SIZE: &str = "rds_csi_rds_pool_size_bytes";
pub const POOL_FREE: &str = "rds_csi_rds_pool_free_bytes";

pub const DEFAULT_MAX_CONCURRENT_COMMANDS: usize = 8;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(30);
/// A 10 000-disk `print detail` is about 7.5 MB; a runaway answer is still bounded.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 32 << 20;

/// Attempts per command when retrying is safe.
const MAX_ATTEMPTS: u32 = 3;
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// How to reach and use the RDS.
#[derive(Debug, Clone)]
pub struct RdsConfig {
    /// `host` or `host:port` (port 22 by default).
    pub address: String,
    pub user: String,
    /// OpenSSH private key (ed25519 or RSA), unencrypted.
    pub key_file: PathBuf,
    pub host_key: HostKeyPolicy,
    pub base_path: BasePath,
    /// The pool the base path lives on (for capacity).
    pub pool: MountPoint,
    pub max_concurrent_commands: usize,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    pub max_output_bytes: usize,
}

impl RdsConfig {
    /// A configuration with the defaults above; the pool is the base path's first component.
    pub fn new(
        address: impl Into<String>,
        user: impl Into<String>,
        key_file: impl Into<PathBuf>,
        host_key: HostKeyPolicy,
        base_path: BasePath,
    ) -> Self {
        RdsConfig {
            address: address.into(),
            user: user.into(),
            key_file: key_file.into(),
            host_key,
            pool: base_path.mount_point(),
            base_path,
            max_concurrent_commands: DEFAULT_MAX_CONCURRENT_COMMANDS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive: DEFAULT_KEEPALIVE,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// `host:port` from `host`, `host:port`, `[v6]` or `[v6]:port`.
fn with_default_port(address: &str) -> String {
    let a = address.trim();
    let has_port = if let Some(rest) = a.strip_prefix('[') {
        rest.contains("]:")
    } else {
        a.matches(':').count() == 1
    };
    if has_port {
        a.to_string()
    } else if a.matches(':').count() > 1 && !a.starts_with('[') {
        format!("[{a}]:22")
    } else {
        format!("{a}:22")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Mutation,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Mutation => "mutation",
        }
    }
}

struct RdsMetrics {
    commands: IntCounterVec,
    duration: HistogramVec,
    breaker: IntGauge,
    /// Set by [`super::RdsMonitor`]'s background checks.
    up: IntGauge,
    pool_size: IntGauge,
    pool_free: IntGauge,
}

impl RdsMetrics {
    fn register(metrics: &Metrics) -> Self {
        let commands = IntCounterVec::new(
            Opts::new(
                COMMANDS_TOTAL,
                "RouterOS commands sent to the RDS, by kind and result",
            ),
            &["kind", "result"],
        )
        .expect("static metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                COMMAND_DURATION,
                "Time from issuing a RouterOS command to its answer, retries included",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["kind"],
        )
        .expect("static metric definition");
        let breaker = IntGauge::new(
            BREAKER_STATE,
            "RDS circuit breaker: 0 closed, 1 open (failing fast), 2 half-open (probing)",
        )
        .expect("static metric definition");
        let up = IntGauge::new(
            RDS_UP,
            "1 when the last background check of the RDS (SSH, /system identity print) \
             succeeded, 0 when it failed or none has finished yet",
        )
        .expect("static metric definition");
        let pool_size = IntGauge::new(
            POOL_SIZE,
            "Size of the RDS pool in bytes, as last read by GetCapacity (0: not read yet)",
        )
        .expect("static metric definition");
        let pool_free = IntGauge::new(
            POOL_FREE,
            "Free space of the RDS pool in bytes, as last read by GetCapacity (0: not read yet)",
        )
        .expect("static metric definition");
        // Every series exists from the start, so dashboards and alerts see zeros, not gaps.
        for kind in ["read", "mutation"] {
            duration.with_label_values(&[kind]);
            for result in ["ok", "error", "timeout", "transport"] {
                commands.with_label_values(&[kind, result]);
            }
        }
        metrics.register(Box::new(commands.clone()));
        metrics.register(Box::new(duration.clone()));
        metrics.register(Box::new(breaker.clone()));
        metrics.register(Box::new(up.clone()));
        metrics.register(Box::new(pool_size.clone()));
        metrics.register(Box::new(pool_free.clone()));
        RdsMetrics {
            commands,
            duration,
            breaker,
            up,
            pool_size,
            pool_free,
        }
    }
}

struct Inner {
    cfg: RdsConfig,
    transport: SshTransport,
    breaker: Breaker,
    metrics: RdsMetrics,
}

/// A failed call, and whether a mutation may have happened anyway.
struct CallError {
    err: RdsError,
    outcome_unknown: bool,
}

impl From<CallError> for RdsError {
    fn from(e: CallError) -> Self {
        e.err
    }
}

/// What the caller wants a disk to look like, for idempotent create/copy.
struct Want<'a> {
    path: &'a RdsPath,
    size_bytes: Option<u64>,
    export: Option<&'a NvmeExport>,
}

/// Whether an add looks in its slot first (`No`: the caller just did and found nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LookFirst {
    Yes,
    No,
}

fn invalid(command: &str, e: ValidationError) -> RdsError {
    RdsError::new(RdsErrorKind::Invalid, command, e.to_string())
}

fn unparsable(command: &Command, e: impl std::fmt::Display) -> RdsError {
    RdsError::new(
        RdsErrorKind::Unknown,
        command.as_str(),
        format!("could not read the RDS's answer: {e}"),
    )
}

/// A cheap-to-clone handle on one shared SSH connection to the RDS.
#[derive(Clone)]
pub struct RdsClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RdsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdsClient")
            .field("address", &self.inner.transport.address())
            .field("user", &self.inner.cfg.user)
            .finish_non_exhaustive()
    }
}

impl RdsClient {
    /// Loads the key and checks the pin; does not connect (the first command does), so a
    /// down RDS never stops the process from starting. Registers the RDS metrics: create
    /// one client per [`Metrics`] and clone it.
    pub fn new(cfg: RdsConfig, metrics: &Metrics) -> Result<Self, RdsError> {
        let key = russh::keys::load_secret_key(&cfg.key_file, None).map_err(|e| {
            RdsError::new(
                RdsErrorKind::Invalid,
                "",
                format!(
                    "cannot load the SSH private key {}: {e}; it must be an unencrypted \
                     OpenSSH-format ed25519 or RSA key readable by this process",
                    cfg.key_file.display()
                ),
            )
        })?;
        let pin =
            Pin::parse(&cfg.host_key).map_err(|m| RdsError::new(RdsErrorKind::Invalid, "", m))?;
        let transport = SshTransport::new(TransportConfig {
            address: with_default_port(&cfg.address),
            user: cfg.user.clone(),
            key: Arc::new(key),
            key_file: cfg.key_file.display().to_string(),
            pin,
            max_concurrent: cfg.max_concurrent_commands,
            connect_timeout: cfg.connect_timeout,
            keepalive: cfg.keepalive,
            max_output_bytes: cfg.max_output_bytes,
        });
        let inner = Inner {
            breaker: Breaker::new(cfg.breaker_threshold, cfg.breaker_cooldown),
            metrics: RdsMetrics::register(metrics),
            transport,
            cfg,
        };
        Ok(RdsClient {
            inner: Arc::new(inner),
        })
    }

    /// The RDS's `host:port`, as connected to.
    pub fn address(&self) -> &str {
        self.inner.transport.address()
    }

    pub fn base_path(&self) -> &BasePath {
        &self.inner.cfg.base_path
    }

    /// SSH sessions opened so far; stays at 1 while the connection is healthy.
    pub fn connections_opened(&self) -> u64 {
        self.inner.transport.connects()
    }

    /// Sets `rds_csi_rds_up` (the background monitor's verdict).
    pub(crate) fn set_up(&self, up: bool) {
        self.inner.metrics.up.set(up as i64);
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// `/system identity print`: proves the RDS answers; returns its identity name.
    pub async fn health(&self, deadline: Instant) -> Result<String, RdsError> {
        let cmd = Command::identity();
        let out = self.read(&cmd, deadline).await?;
        out.lines()
            .filter_map(|l| {
                let l = l.trim();
                l.strip_prefix("name:").or_else(|| l.strip_prefix("name="))
            })
            .map(|v| v.trim().trim_matches('"').to_string())
            .next()
            .ok_or_else(|| unparsable(&cmd, format!("no `name:` line in {out:?}")))
    }

    /// The disk in `slot`, or `None`.
    pub async fn get_disk(&self, slot: &Slot, deadline: Instant) -> Result<Option<Disk>, RdsError> {
        let cmd = Command::print_disk(slot);
        let mut disks = self.read_disks(&cmd, deadline).await?;
        disks.retain(|d| d.slot == slot.as_str());
        match disks.len() {
            0 => Ok(None),
            1 => Ok(disks.pop()),
            n => Err(RdsError::new(
                RdsErrorKind::Unknown,
                cmd.as_str(),
                format!("{n} disks carry slot {slot:?}; resolve the duplicate on the RDS"),
            )),
        }
    }

    /// Every disk on the RDS, volumes and snapshots of this driver among them.
    pub async fn list_all_disks(&self, deadline: Instant) -> Result<Vec<Disk>, RdsError> {
        self.read_disks(&Command::list_all_disks(), deadline).await
    }

    /// Disks whose slot starts with `prefix`.
    pub async fn list_disks(
        &self,
        prefix: &SlotPrefix,
        deadline: Instant,
    ) -> Result<Vec<Disk>, RdsError> {
        let cmd = Command::list_disks(prefix);
        let mut disks = self.read_disks(&cmd, deadline).await?;
        disks.retain(|d| d.slot.starts_with(prefix.as_str()));
        Ok(disks)
    }

    /// Creates an exported file disk of exactly `size_bytes`. Idempotent: a disk already in
    /// `slot` with the same path, size and export is returned; a different one is
    /// `AlreadyExists`. A lost answer is resolved by looking, never by sending again.
    pub async fn create_disk(
        &self,
        path: &RdsPath,
        size_bytes: u64,
        slot: &Slot,
        export: &NvmeExport,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        self.create_disk_looked(path, size_bytes, slot, export, LookFirst::Yes, deadline)
            .await
    }

    /// [`Self::create_disk`] for a caller that has just looked in `slot` with
    /// [`Self::get_disk`] and found nothing (CreateVolume): the add is sent without a second
    /// look first, saving one `/disk print` per create. Still safe against a disk that
    /// appeared since: RouterOS refuses the duplicate slot and the look after compares it.
    pub async fn create_disk_in_empty_slot(
        &self,
        path: &RdsPath,
        size_bytes: u64,
        slot: &Slot,
        export: &NvmeExport,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        self.create_disk_looked(path, size_bytes, slot, export, LookFirst::No, deadline)
            .await
    }

    async fn create_disk_looked(
        &self,
        path: &RdsPath,
        size_bytes: u64,
        slot: &Slot,
        export: &NvmeExport,
        look_first: LookFirst,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        let cmd = Command::create_disk(path, size_bytes, slot, export)
            .map_err(|e| invalid("/disk add", e))?;
        let want = Want {
            path,
            size_bytes: Some(size_bytes),
            export: Some(export),
        };
        self.add_disk(&cmd, slot, &want, look_first, deadline).await
    }

    /// Copies the disk in `source` into a new disk (snapshot, clone, restore). Idempotent
    /// like [`Self::create_disk`]. RouterOS does not print a copy's source, so an existing
    /// disk is compared on path, size (when given) and export only.
    pub async fn copy_disk(
        &self,
        source: &Slot,
        path: &RdsPath,
        slot: &Slot,
        size_bytes: Option<u64>,
        export: Option<&NvmeExport>,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        self.copy_disk_looked(
            source,
            path,
            slot,
            size_bytes,
            export,
            LookFirst::Yes,
            deadline,
        )
        .await
    }

    /// [`Self::copy_disk`] for a caller that has just looked in `slot` and found nothing
    /// (CreateVolume from a snapshot or a volume): no second look before the add, as
    /// [`Self::create_disk_in_empty_slot`].
    pub async fn copy_disk_in_empty_slot(
        &self,
        source: &Slot,
        path: &RdsPath,
        slot: &Slot,
        size_bytes: Option<u64>,
        export: Option<&NvmeExport>,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        self.copy_disk_looked(
            source,
            path,
            slot,
            size_bytes,
            export,
            LookFirst::No,
            deadline,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_disk_looked(
        &self,
        source: &Slot,
        path: &RdsPath,
        slot: &Slot,
        size_bytes: Option<u64>,
        export: Option<&NvmeExport>,
        look_first: LookFirst,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        let cmd = Command::copy_disk(source, path, slot, size_bytes, export)
            .map_err(|e| invalid("/disk add copy-from", e))?;
        let want = Want {
            path,
            size_bytes,
            export,
        };
        self.add_disk(&cmd, slot, &want, look_first, deadline).await
    }

    async fn add_disk(
        &self,
        cmd: &Command,
        slot: &Slot,
        want: &Want<'_>,
        look_first: LookFirst,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        // Rule 4: the path was checked against *a* base when built; it must be this one.
        RdsPath::new(self.base_path(), want.path.as_str()).map_err(|e| invalid(cmd.as_str(), e))?;
        // Look before: a retried CreateVolume finds its disk and must not add a second.
        if look_first == LookFirst::Yes {
            if let Some(existing) = self.get_disk(slot, deadline).await? {
                return compare(existing, want, cmd);
            }
        }
        match self.mutate(cmd, deadline).await {
            Ok(_) => {}
            Err(e) if e.outcome_unknown || e.err.kind() == RdsErrorKind::AlreadyExists => {
                // Look after: the add may have happened (lost answer) or raced with another.
                return match self.get_disk(slot, deadline).await {
                    Ok(Some(disk)) => compare(disk, want, cmd),
                    Ok(None) => Err(e.err),
                    Err(look) => {
                        tracing::warn!(%slot, error = %look, "could not look for the disk after a lost answer");
                        Err(e.err)
                    }
                };
            }
            Err(e) => return Err(e.err),
        }
        let disk = self.get_disk(slot, deadline).await?.ok_or_else(|| {
            RdsError::new(
                RdsErrorKind::Unknown,
                cmd.as_str(),
                format!("the RDS accepted the command but prints no disk in slot {slot:?}"),
            )
        })?;
        if let Some(size) = want.size_bytes {
            if disk.size_bytes < size {
                return Err(RdsError::new(
                    RdsErrorKind::Unknown,
                    cmd.as_str(),
                    format!(
                        "disk {slot:?} was created with {} bytes, less than the {size} asked; \
                         delete it and report this RDS behaviour",
                        disk.size_bytes
                    ),
                ));
            }
        }
        Ok(disk)
    }

    /// Grows the disk in `slot` to `size_bytes` (exact). Growing to its current size is a
    /// no-op; shrinking is refused (it would destroy data).
    pub async fn resize_disk(
        &self,
        slot: &Slot,
        size_bytes: u64,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        let cmd = Command::resize_disk(slot, size_bytes).map_err(|e| invalid("/disk set", e))?;
        let current = self.get_disk(slot, deadline).await?.ok_or_else(|| {
            RdsError::new(
                RdsErrorKind::NotFound,
                cmd.as_str(),
                format!("no disk in slot {slot:?} to resize"),
            )
        })?;
        if current.size_bytes == size_bytes {
            return Ok(current);
        }
        if current.size_bytes > size_bytes {
            return Err(RdsError::new(
                RdsErrorKind::Invalid,
                cmd.as_str(),
                format!(
                    "disk {slot:?} is {} bytes; shrinking it to {size_bytes} is refused",
                    current.size_bytes
                ),
            ));
        }
        let sent = self.mutate(&cmd, deadline).await;
        if let Err(e) = &sent {
            if !e.outcome_unknown {
                return Err(e.err.clone());
            }
        }
        // Look after, also to learn a lost answer's outcome.
        let after = self.get_disk(slot, deadline).await;
        match (sent, after) {
            (_, Ok(Some(disk))) if disk.size_bytes >= size_bytes => Ok(disk),
            (Err(e), _) => Err(e.err),
            (Ok(_), Ok(Some(disk))) => Err(RdsError::new(
                RdsErrorKind::Unknown,
                cmd.as_str(),
                format!(
                    "the RDS accepted the resize but disk {slot:?} is still {} bytes",
                    disk.size_bytes
                ),
            )),
            (Ok(_), Ok(None)) => Err(RdsError::new(
                RdsErrorKind::NotFound,
                cmd.as_str(),
                format!("disk {slot:?} vanished during the resize"),
            )),
            (Ok(_), Err(look)) => Err(look),
        }
    }

    /// Removes the disk in `slot` (its export goes with it) and then its backing file, and
    /// returns that file. `None` when no disk is in the slot: nothing is removed then, because
    /// only the caller knows where a backing file that an earlier, half-finished delete left
    /// behind may live (see [`Self::files_of_slot`] and [`Self::remove_file`]).
    pub async fn delete_disk(
        &self,
        slot: &Slot,
        deadline: Instant,
    ) -> Result<Option<RdsPath>, RdsError> {
        let base = &self.inner.cfg.base_path;
        let remove = Command::remove_disk(slot);
        let Some(d) = self.get_disk(slot, deadline).await? else {
            return Ok(None);
        };
        let path = d.file_path.as_deref().filter(|_| d.disk_type == "file");
        let path = path.ok_or_else(|| {
            RdsError::new(
                RdsErrorKind::Invalid,
                remove.as_str(),
                format!(
                    "slot {slot:?} holds a {:?} disk, not a file disk; refusing to delete it",
                    d.disk_type
                ),
            )
        })?;
        // Never delete a file outside the configured base (docs/security.md).
        let file = RdsPath::new(base, path).map_err(|e| {
            RdsError::new(
                RdsErrorKind::Invalid,
                remove.as_str(),
                format!(
                    "disk {slot:?} is backed by {path:?}, outside the base path {base}: {e}; \
                     refusing to delete it, remove it by hand if intended"
                ),
            )
        })?;
        match self.mutate(&remove, deadline).await {
            Ok(_) => {}
            Err(e) if e.err.kind() == RdsErrorKind::NotFound => {}
            Err(e) if e.outcome_unknown => {
                if self.get_disk(slot, deadline).await?.is_some() {
                    return Err(e.err);
                }
            }
            Err(e) => return Err(e.err),
        }
        self.remove_file(&file, deadline).await?;
        Ok(Some(file))
    }

    /// Removes the file at `path`; an absent file is fine. The command is idempotent (see
    /// the module docs), so it is sent once more if its answer was lost.
    pub async fn remove_file(&self, path: &RdsPath, deadline: Instant) -> Result<(), RdsError> {
        let remove_file = Command::remove_file(path);
        for attempt in 1..=2 {
            match self.mutate(&remove_file, deadline).await {
                Ok(_) => return Ok(()),
                Err(e) if e.err.kind() == RdsErrorKind::NotFound => return Ok(()),
                Err(e) if e.outcome_unknown && attempt == 1 => continue,
                Err(e) => return Err(e.err),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Whether a file (not a directory) exists at `path`.
    pub async fn file_exists(&self, path: &RdsPath, deadline: Instant) -> Result<bool, RdsError> {
        let cmd = Command::print_file(path);
        let out = self.read(&cmd, deadline).await?;
        let items = parse_items(&out).map_err(|e| unparsable(&cmd, e))?;
        Ok(RdsFile::from_items(&items)
            .iter()
            .any(|f| !f.is_directory && f.name == path.file_name()))
    }

    /// The files under the base path whose last component starts with `<slot>.` (a disk's
    /// backing files as the controller names them, in whatever directory they live).
    pub async fn files_of_slot(
        &self,
        slot: &Slot,
        deadline: Instant,
    ) -> Result<Vec<RdsPath>, RdsError> {
        let cmd = Command::find_files_of_slot(slot);
        let out = self.read(&cmd, deadline).await?;
        let items = parse_items(&out).map_err(|e| unparsable(&cmd, e))?;
        let base = &self.inner.cfg.base_path;
        let prefix = format!("{slot}.");
        Ok(RdsFile::from_items(&items)
            .into_iter()
            .filter(|f| !f.is_directory)
            .filter_map(|f| RdsPath::new(base, &f.path()).ok())
            .filter(|p| {
                p.as_str()
                    .rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect())
    }

    /// Size and free space of the configured pool.
    pub async fn pool_capacity(&self, deadline: Instant) -> Result<PoolCapacity, RdsError> {
        let cmd = Command::pool_capacity(&self.inner.cfg.pool);
        let out = self.read(&cmd, deadline).await?;
        let items = parse_items(&out).map_err(|e| unparsable(&cmd, e))?;
        let pool = PoolCapacity::from_items(&items).map_err(|e| unparsable(&cmd, e))?;
        // Saturating: a pool over 8 EiB shows as i64::MAX rather than wrapping negative.
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.inner.metrics.pool_size.set(gauge(pool.size));
        self.inner.metrics.pool_free.set(gauge(pool.free));
        Ok(pool)
    }

    async fn read_disks(&self, cmd: &Command, deadline: Instant) -> Result<Vec<Disk>, RdsError> {
        let out = self.read(cmd, deadline).await?;
        parse_disks(&out).map_err(|e| unparsable(cmd, e))
    }

    async fn read(&self, cmd: &Command, deadline: Instant) -> Result<String, RdsError> {
        self.call(cmd, Kind::Read, deadline)
            .await
            .map_err(RdsError::from)
    }

    async fn mutate(&self, cmd: &Command, deadline: Instant) -> Result<String, CallError> {
        self.call(cmd, Kind::Mutation, deadline).await
    }

    /// One command with its metrics.
    async fn call(
        &self,
        cmd: &Command,
        kind: Kind,
        deadline: Instant,
    ) -> Result<String, CallError> {
        let started = Instant::now();
        let result = self.attempts(cmd, kind, deadline).await;
        let m = &self.inner.metrics;
        m.duration
            .with_label_values(&[kind.label()])
            .observe(started.elapsed().as_secs_f64());
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => match e.err.kind() {
                RdsErrorKind::Timeout => "timeout",
                RdsErrorKind::Transport => "transport",
                _ => "error",
            },
        };
        m.commands.with_label_values(&[kind.label(), label]).inc();
        if let Err(e) = &result {
            tracing::debug!(command = %cmd, error = %e.err, "RDS command failed");
        }
        result
    }

    async fn attempts(
        &self,
        cmd: &Command,
        kind: Kind,
        deadline: Instant,
    ) -> Result<String, CallError> {
        let inner = &*self.inner;
        let fail = |err: RdsError, outcome_unknown: bool| CallError {
            err,
            outcome_unknown,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Err(rejected) = inner.breaker.admit(Instant::now()) {
                self.export_breaker(None);
                return Err(fail(
                    RdsError::new(
                        RdsErrorKind::Transport,
                        cmd.as_str(),
                        format!(
                            "the RDS at {} is unreachable: {} consecutive transport failures \
                             opened the circuit breaker; failing fast for {:.1}s more, then one \
                             probe is let through; check the RDS and the network",
                            inner.transport.address(),
                            inner.breaker.threshold(),
                            rejected.retry_in.as_secs_f64()
                        ),
                    ),
                    false,
                ));
            }
            self.export_breaker(None);
            let mut pending = Abandoned(Some(&inner.breaker));
            let exec = inner.transport.exec(cmd.as_str(), deadline).await;
            pending.0 = None;
            let (err, may_retry, outcome_unknown) = match exec {
                Ok(out) => {
                    inner.breaker.record_success();
                    self.export_breaker(None);
                    return classify_output(&out.stdout, &out.stderr, out.exit_status)
                        .map(|()| out.stdout)
                        .map_err(|e| fail(e.with_command(cmd.as_str()), false));
                }
                Err(ExecError::NotSent { err, retryable }) => {
                    inner.breaker.record_transport_failure(Instant::now());
                    self.export_breaker(Some(&err));
                    (err, retryable, false)
                }
                Err(ExecError::OutcomeUnknown(err)) => {
                    inner.breaker.record_transport_failure(Instant::now());
                    self.export_breaker(Some(&err));
                    (err, kind == Kind::Read, kind == Kind::Mutation)
                }
                Err(ExecError::Timeout(err)) => {
                    // An RDS that accepts TCP but never completes SSH (or never answers)
                    // shows only as timeouts: they count, or a hung RDS never opens it.
                    inner.breaker.record_transport_failure(Instant::now());
                    self.export_breaker(Some(&err));
                    return Err(fail(err, kind == Kind::Mutation));
                }
                Err(ExecError::TooLarge(err)) => {
                    inner.breaker.record_success();
                    self.export_breaker(None);
                    return Err(fail(err, kind == Kind::Mutation));
                }
            };
            let backoff = RETRY_BACKOFF * attempt;
            if !may_retry || attempt >= MAX_ATTEMPTS || Instant::now() + backoff >= deadline {
                return Err(fail(err, outcome_unknown));
            }
            tracing::debug!(command = %cmd, error = %err, attempt, "retrying RDS command");
            tokio::time::sleep(backoff).await;
        }
    }

    /// Sets the breaker gauge and logs a change of state: opening (or reopening after a
    /// failed probe) at warn with `cause`, the failure that did it; closing at info.
    fn export_breaker(&self, cause: Option<&RdsError>) {
        let inner = &*self.inner;
        let now = inner.breaker.state();
        let before = inner.metrics.breaker.get();
        inner.metrics.breaker.set(now as i64);
        if before == now as i64 {
            return;
        }
        let rds = inner.transport.address();
        let cause = cause.map(|e| e.message()).unwrap_or("");
        match now {
            BreakerState::Open => tracing::warn!(
                rds = %rds,
                cause = %cause,
                threshold = inner.breaker.threshold(),
                cooldown_seconds = inner.cfg.breaker_cooldown.as_secs_f64(),
                "RDS circuit breaker open: calls fail fast until one probe after the cooldown \
                 succeeds; check the RDS and the network"
            ),
            BreakerState::HalfOpen => {
                tracing::info!(rds = %rds, "RDS circuit breaker half-open: one probe call let through")
            }
            BreakerState::Closed => {
                tracing::info!(rds = %rds, "RDS circuit breaker closed: the RDS answers again")
            }
        }
    }
}

/// Armed while an admitted call runs: if the caller drops the future (a cancelled RPC),
/// the breaker learns the call was abandoned, so a half-open probe slot is not lost.
struct Abandoned<'a>(Option<&'a Breaker>);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            b.record_abandoned();
        }
    }
}

/// An existing disk against what a create/copy wants: the same disk, or `AlreadyExists`
/// naming every difference.
fn compare(disk: Disk, want: &Want<'_>, cmd: &Command) -> Result<Disk, RdsError> {
    let mut diffs = Vec::new();
    if disk.file_path.as_deref() != Some(want.path.as_str()) {
        diffs.push(format!(
            "file-path is {:?}, wanted {:?}",
            disk.file_path.as_deref().unwrap_or(""),
            want.path.as_str()
        ));
    }
    if let Some(size) = want.size_bytes {
        if disk.size_bytes != size {
            diffs.push(format!("size is {} bytes, wanted {size}", disk.size_bytes));
        }
    }
    if let Some(export) = want.export {
        let same = disk.nvme_tcp_export
            && disk.nvme_tcp_port == Some(export.port.get())
            && disk.nvme_tcp_nqn.as_deref() == Some(export.nqn.as_str());
        if !same {
            diffs.push(format!(
                "export is {}:{:?}, wanted {}:{}",
                disk.nvme_tcp_nqn.as_deref().unwrap_or("none"),
                disk.nvme_tcp_port,
                export.nqn,
                export.port
            ));
        }
    }
    if diffs.is_empty() {
        Ok(disk)
    } else {
        Err(RdsError::new(
            RdsErrorKind::AlreadyExists,
            cmd.as_str(),
            format!(
                "slot {:?} already holds a different disk: {}; delete it first or use \
                 another name",
                disk.slot,
                diffs.join("; ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_port_22_by_default() {
        assert_eq!(with_default_port("rds"), "rds:22");
        assert_eq!(with_default_port("10.0.0.1:2222"), "10.0.0.1:2222");
        assert_eq!(with_default_port("[::1]:2222"), "[::1]:2222");
        assert_eq!(with_default_port("[::1]"), "[::1]:22");
        assert_eq!(with_default_port("fe80::1"), "[fe80::1]:22");
    }

    #[test]
    fn compare_names_every_difference() {
        let base = BasePath::new("/storage-pool/csi").unwrap();
        let slot = Slot::new("pvc-1").unwrap();
        let path = RdsPath::volume_file(&base, &slot).unwrap();
        let export = NvmeExport {
            port: Default::default(),
            nqn: super::super::command::slot_nqn("nqn.2000-02.com.mikrotik:", &slot).unwrap(),
        };
        let mut disk = Disk::file("pvc-1", path.as_str(), 1 << 30);
        disk.nvme_tcp_export = true;
        disk.nvme_tcp_port = Some(4420);
        disk.nvme_tcp_nqn = Some(export.nqn.to_string());
        let cmd = Command::print_disk(&slot);
        let want = Want {
            path: &path,
            size_bytes: Some(1 << 30),
            export: Some(&export),
        };
        assert_eq!(compare(disk.clone(), &want, &cmd).unwrap(), disk);
        let bigger = Want {
            size_bytes: Some(2 << 30),
            ..want
        };
        let err = compare(disk.clone(), &bigger, &cmd).unwrap_err();
        assert_eq!(err.kind(), RdsErrorKind::AlreadyExists);
        assert!(
            err.message()
                .contains("size is 1073741824 bytes, wanted 2147483648"),
            "{err}"
        );
        disk.nvme_tcp_export = false;
        let err = compare(disk, &want, &cmd).unwrap_err();
        assert!(err.message().contains("export is"), "{err}");
    }
}
