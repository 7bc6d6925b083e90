//! A simulator for integration tests, over real SSH on loopback.
//!
//! ```no_run
//! # async fn demo() {
//! use rds_csi::simulator::harness::{start_simulator, SimOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let sim = start_simulator(dir.path(), SimOptions::default()).await;
//! let metrics = rds_csi::observability::Metrics::new("controller");
//! let client = rds_csi::rds::RdsClient::new(sim.client_config("/storage-pool/csi"), &metrics).unwrap();
//! sim.fault("latency=200ms");          // or over SSH: sim.ssh_exec("/simulator fault ...")
//! assert!(sim.commands().is_empty());  // every RouterOS command the simulator received
//! sim.shutdown().await;                // or just drop it
//! # }
//! ```
//!
//! Layout under `dir` (reused by a second `start_simulator` on the same `dir`, so a restart
//! keeps the disks, the host key and the client key): `state/` (disks.json, host key),
//! `data/` (backing files), `client_ed25519` (+ `.pub`), `authorized_keys`.
//!
//! Failures to start panic with the reason: this is test scaffolding.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey};

pub use super::state::SimDisk;
use super::{start, ExportConfig, Running, SimConfig};
use crate::rds::size::GIB;
use crate::rds::{BasePath, Disk, HostKeyPolicy, RdsConfig};

/// What to start. `Default`: a 100 GiB pool `storage-pool`, no export, no faults, an
/// ephemeral port on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub pool_size: u64,
    pub pool_name: String,
    pub export: ExportConfig,
    /// Fault specs applied at start (see [`super::faults`]).
    pub faults: Vec<String>,
    /// `127.0.0.1:0` by default; set a fixed address to restart on the same port.
    pub listen: String,
    pub identity: String,
    /// Disks to start with when the state directory holds none yet (listing tests and
    /// benches: 10,000 disks without 10,000 `/disk add`s). No backing files are made.
    pub disks: Vec<SimDisk>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            pool_size: 100 * GIB,
            pool_name: "storage-pool".into(),
            export: ExportConfig::None,
            faults: Vec::new(),
            listen: "127.0.0.1:0".into(),
            identity: "rds-simulator".into(),
            disks: Vec::new(),
        }
    }
}

/// A running simulator. Dropping it stops the server (asynchronously); `shutdown` waits.
pub struct SimHandle {
    running: Running,
    dir: PathBuf,
    client_key: PathBuf,
}

/// The client key under `dir`, generated on first use.
fn client_key(dir: &Path) -> PathBuf {
    let path = dir.join("client_ed25519");
    if !path.exists() {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .expect("generate an ed25519 client key");
        let text = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .expect("encode the client key");
        super::server::write_private(&path, text.as_bytes()).expect("write the client key");
        let public = key
            .public_key()
            .to_openssh()
            .expect("encode the public key");
        std::fs::write(dir.join("client_ed25519.pub"), format!("{public}\n"))
            .expect("write the public key");
    }
    path
}

/// Starts a simulator whose state lives under `dir`.
pub async fn start_simulator(dir: &Path, opts: SimOptions) -> SimHandle {
    std::fs::create_dir_all(dir).expect("create the simulator directory");
    let client_key = client_key(dir);
    let authorized = dir.join("authorized_keys");
    if !authorized.exists() {
        std::fs::copy(dir.join("client_ed25519.pub"), &authorized).expect("write authorized_keys");
    }
    let state_file = dir.join("state").join(super::state::STATE_FILE);
    if !opts.disks.is_empty() && !state_file.exists() {
        std::fs::create_dir_all(dir.join("state")).expect("create the state directory");
        let text = serde_json::to_vec(&serde_json::json!({ "disks": opts.disks }))
            .expect("encode the seed disks");
        std::fs::write(&state_file, text).expect("write the seed disks");
    }
    let cfg = SimConfig {
        state_dir: dir.join("state"),
        data_dir: dir.join("data"),
        authorized_keys: authorized,
        pool_size: opts.pool_size,
        pool_name: opts.pool_name,
        identity: opts.identity,
        export: opts.export,
        faults: opts.faults,
    };
    let running = start(cfg, &opts.listen)
        .await
        .unwrap_or_else(|e| panic!("start the RDS simulator in {}: {e}", dir.display()));
    SimHandle {
        running,
        dir: dir.to_path_buf(),
        client_key,
    }
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// `127.0.0.1:<port>`, for `RdsConfig::address`.
    pub fn address(&self) -> String {
        self.running.addr.to_string()
    }

    /// The host key line to pin (`ssh-ed25519 AAAA...`).
    pub fn host_key_line(&self) -> &str {
        &self.running.host_key_line
    }

    /// A private key authorized to log in.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the backing files live (`/storage-pool/x.img` is `data_dir()/storage-pool/x.img`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// A client configuration pinned to this simulator, with test-friendly timeouts
    /// (connect 5s, breaker cooldown 2s). Panics on an invalid `base_path`.
    pub fn client_config(&self, base_path: &str) -> RdsConfig {
        let base =
            BasePath::new(base_path).unwrap_or_else(|e| panic!("base path {base_path:?}: {e}"));
        let mut cfg = RdsConfig::new(
            self.address(),
            "admin",
            self.client_key.clone(),
            HostKeyPolicy::Pinned(self.host_key_line().to_string()),
            base,
        );
        cfg.connect_timeout = Duration::from_secs(5);
        cfg.breaker_cooldown = Duration::from_secs(2);
        cfg
    }

    /// Applies a fault spec now (panics on a bad spec). Same spec as `/simulator fault`.
    pub fn fault(&self, spec: &str) {
        self.running
            .shared
            .faults
            .lock()
            .apply(spec)
            .unwrap_or_else(|e| panic!("fault {spec:?}: {e}"));
    }

    /// Every RouterOS command received so far, in order (`/simulator` ones excluded).
    pub fn commands(&self) -> Vec<String> {
        self.running.shared.log.lock().clone()
    }

    /// TCP connections accepted so far (refused ones excluded).
    pub fn connections(&self) -> u64 {
        self.running
            .shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The disks as the simulator holds them.
    pub fn disks(&self) -> Vec<Disk> {
        self.running
            .shared
            .store
            .lock()
            .disks()
            .iter()
            .map(|d| d.to_disk())
            .collect()
    }

    /// Runs one raw command over a fresh SSH connection: `(stdout, stderr, exit status)`.
    /// For checking RouterOS error text and the `/simulator` menu over the wire.
    pub async fn ssh_exec(&self, command: &str) -> (String, String, Option<u32>) {
        use crate::rds::hostkey::Pin;
        use crate::rds::transport::{SshTransport, TransportConfig};
        let key = russh::keys::load_secret_key(&self.client_key, None).expect("client key");
        let transport = SshTransport::new(TransportConfig {
            address: self.address(),
            user: "admin".into(),
            key: std::sync::Arc::new(key),
            key_file: self.client_key.display().to_string(),
            pin: Pin::parse(&HostKeyPolicy::Pinned(self.host_key_line().into()))
                .expect("own host key"),
            max_concurrent: 1,
            connect_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(30),
            max_output_bytes: 4 << 20,
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        match transport.exec(command, deadline).await {
            Ok(out) => (out.stdout, out.stderr, out.exit_status),
            Err(e) => panic!("ssh_exec {command:?}: {e:?}"),
        }
    }

    /// Stops the server, disconnecting every session, and waits for it.
    pub async fn shutdown(self) {
        self.running.stop().await;
    }
}
