//! An RDS simulator: an SSH server speaking the RouterOS subset the driver uses, over
//! persisted disks with sparse backing files, optional real NVMe/TCP export through nvmet,
//! and fault injection. `rds-csi simulator` runs it; [`harness`] starts it inside tests.
//!
//! Commands (exactly what src/rds/command/ emits, quoted or bare values):
//! `/disk add|set|remove|print`, `/file print|remove`, `/system identity|resource print`,
//! and the control menu `/simulator fault <spec>|clear`, `/simulator print` (see
//! [`faults`] for the spec).

pub mod commands;
pub mod export;
pub mod faults;
pub mod harness;
pub mod server;
pub mod state;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::rds::parse_user_size;
use crate::runtime::cli::{ExportBackend as ExportFlag, SimulatorArgs};
use export::{ExportBackend, NoExport, Nvmet};
use faults::Faults;
use server::Shared;
use state::Store;

/// How exported disks are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportConfig {
    None,
    /// nvmet under `configfs_root` (normally /sys/kernel/config/nvmet), listening on
    /// `listen` (`ipv4:port`).
    Nvmet {
        configfs_root: PathBuf,
        listen: String,
    },
}

/// A simulator's configuration, independent of the command line.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub state_dir: PathBuf,
    pub data_dir: PathBuf,
    pub authorized_keys: PathBuf,
    pub pool_size: u64,
    pub pool_name: String,
    pub identity: String,
    pub export: ExportConfig,
    /// Fault specs applied at start.
    pub faults: Vec<String>,
}

/// A running simulator; stops when [`Running::stop`] is called or it is dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub host_key_line: String,
    pub(crate) shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// Stops accepting, disconnects every session and waits for the server to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Starts a simulator on `listen` (`127.0.0.1:0` for an ephemeral port).
pub async fn start(cfg: SimConfig, listen: &str) -> io::Result<Running> {
    let mut faults = Faults::default();
    for spec in &cfg.faults {
        faults
            .apply(spec)
            .map_err(|e| other(format!("--fault {spec:?}: {e}")))?;
    }
    let authorized = server::load_authorized_keys(&cfg.authorized_keys)?;
    if authorized.is_empty() {
        return Err(other(format!(
            "--authorized-keys {} holds no key: nobody could log in",
            cfg.authorized_keys.display()
        )));
    }
    let host_key = server::load_or_create_host_key(&cfg.state_dir)?;
    let host_key_line = server::host_key_line(&host_key);
    let backend: Box<dyn ExportBackend> = match &cfg.export {
        ExportConfig::None => Box::new(NoExport),
        ExportConfig::Nvmet {
            configfs_root,
            listen,
        } => Box::new(Nvmet::new(configfs_root, listen)?),
    };
    let store = Store::open(
        &cfg.state_dir,
        &cfg.data_dir,
        &cfg.pool_name,
        cfg.pool_size,
        &cfg.identity,
        backend,
    )?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("listening on {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        store: Mutex::new(store),
        faults: Mutex::new(faults),
        log: Mutex::new(Vec::new()),
        authorized,
        connections: AtomicU64::new(0),
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(server::serve(
        listener,
        shared.clone(),
        host_key,
        stop.clone(),
    ));
    Ok(Running {
        addr,
        host_key_line,
        shared,
        stop,
        task: Some(task),
    })
}

fn config_from_args(args: &SimulatorArgs) -> Result<SimConfig, String> {
    let state_dir = args
        .state_dir
        .clone()
        .ok_or("--state-dir is required (persisted disks and the host key live there)")?;
    let data_dir = args
        .data_dir
        .clone()
        .ok_or("--data-dir is required (the disks' backing files live there)")?;
    let authorized_keys = args
        .authorized_keys
        .clone()
        .ok_or("--authorized-keys is required (an authorized_keys file of who may log in)")?;
    let pool_size = parse_user_size(&args.pool_size)
        .map_err(|e| format!("--pool-size {:?}: {e}", args.pool_size))?;
    crate::rds::MountPoint::new(&args.pool_name)
        .map_err(|e| format!("--pool-name {:?}: {e}", args.pool_name))?;
    let export = match args.export {
        ExportFlag::None => ExportConfig::None,
        ExportFlag::Nvmet => ExportConfig::Nvmet {
            configfs_root: args.nvmet_root.clone(),
            listen: args
                .nvme_listen
                .clone()
                .ok_or("--export nvmet needs --nvme-listen, e.g. 127.0.0.1:4420")?,
        },
    };
    Ok(SimConfig {
        state_dir,
        data_dir,
        authorized_keys,
        pool_size,
        pool_name: args.pool_name.clone(),
        identity: "rds-simulator".into(),
        export,
        faults: args.fault.clone(),
    })
}

async fn run_async(args: SimulatorArgs) -> Result<(), String> {
    if args.print_host_key {
        let state_dir = args
            .state_dir
            .clone()
            .ok_or("--print-host-key needs --state-dir (the host key lives there)")?;
        let key = server::load_or_create_host_key(&state_dir).map_err(|e| e.to_string())?;
        println!("{}", server::host_key_line(&key));
        return Ok(());
    }
    let cfg = config_from_args(&args)?;
    let running = start(cfg, &args.listen).await.map_err(|e| e.to_string())?;
    tracing::info!(listen = %running.addr, host_key = %running.host_key_line, "RDS simulator serving");
    let stop = CancellationToken::new();
    crate::csi::server::cancel_on_signals(stop.clone()).map_err(|e| e.to_string())?;
    stop.cancelled().await;
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// `rds-csi simulator`: serves until SIGTERM/SIGINT; a configuration problem is printed
/// with what to fix and exits 2 (crate::runtime's convention).
pub fn run(args: SimulatorArgs) -> ExitCode {
    crate::observability::logging::init(crate::observability::logging::LogFormat::Text, "info");
    crate::runtime::run_role("simulator", async move { Ok(run_async(args).await?) })
}
