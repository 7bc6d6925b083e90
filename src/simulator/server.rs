//! The simulator's SSH server: public-key login against an authorized_keys list, one
//! RouterOS command per `exec` channel, many channels per connection, each command run off
//! the session loop so a slow command (injected latency) never stalls the others.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use russh::keys::{Algorithm, PrivateKey, PublicKey};
use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId, Disconnect, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::commands::{self, Request};
use super::faults::{Disposition, Faults};
use super::state::{Reply, Store};

pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// Everything the connections share.
pub struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<Faults>,
    /// Every RouterOS command received (not `/simulator` ones), in order.
    pub log: Mutex<Vec<String>>,
    pub authorized: Vec<PublicKey>,
    pub connections: AtomicU64,
}

/// Loads the host key from `state_dir`, generating and persisting it on first start.
pub fn load_or_create_host_key(state_dir: &Path) -> io::Result<PrivateKey> {
    let path = state_dir.join(HOST_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("host key {} is unreadable: {e}; delete it to generate a new one (clients must then re-pin)", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir)?;
            let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
                .map_err(|e| io::Error::other(format!("generating a host key: {e}")))?;
            let text = key
                .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .map_err(|e| io::Error::other(format!("encoding the host key: {e}")))?;
            write_private(&path, text.as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// Writes a secret file readable only by its owner, atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The line to pin: `ssh-ed25519 AAAA...`.
pub fn host_key_line(key: &PrivateKey) -> String {
    let line = key
        .public_key()
        .to_openssh()
        .expect("an ed25519 public key always encodes");
    line.trim().to_string()
}

/// Reads an authorized_keys file: one key per line, options before the key allowed,
/// blank lines and `#` comments skipped. An unreadable line is an error naming it.
pub fn load_authorized_keys(path: &Path) -> io::Result<Vec<PublicKey>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("--authorized-keys {}: {e}", path.display()),
        )
    })?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let key = fields
            .windows(2)
            .find_map(|w| PublicKey::from_openssh(&format!("{} {}", w[0], w[1])).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} line {}: no public key found", path.display(), n + 1),
                )
            })?;
        keys.push(key);
    }
    Ok(keys)
}

struct Conn {
    shared: Arc<Shared>,
}

impl Conn {
    fn allowed(&self, key: &PublicKey) -> bool {
        self.shared
            .authorized
            .iter()
            .any(|k| k.key_data() == key.key_data())
    }

    /// The answer to a key offered or proven: accepted only if authorized.
    fn verdict(&self, key: &PublicKey) -> Auth {
        if self.allowed(key) {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }
}

impl server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.verdict(offer.public_key))
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.verdict(key.public_key))
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let line = String::from_utf8_lossy(data).into_owned();
        let handle = session.handle();
        let shared = self.shared.clone();
        // Off the session loop: latency and file copies must not block other channels.
        tokio::spawn(async move {
            match run_command(&shared, &line).await {
                Some(reply) => {
                    let _ = handle.data(channel, reply.stdout.into_bytes()).await;
                    let _ = handle.exit_status_request(channel, reply.status).await;
                    let _ = handle.eof(channel).await;
                    let _ = handle.close(channel).await;
                }
                None => {
                    let _ = handle
                        .disconnect(
                            Disconnect::ByApplication,
                            "simulated fault".into(),
                            "".into(),
                        )
                        .await;
                }
            }
        });
        Ok(())
    }
}

/// Runs one command line; `None` means "drop the connection without answering".
async fn run_command(shared: &Arc<Shared>, line: &str) -> Option<Reply> {
    let request = commands::parse(line);
    // The control menu is never subject to faults and never logged.
    match &request {
        Ok(Request::SimFault(spec)) => {
            return Some(match shared.faults.lock().apply(spec) {
                Ok(()) => Reply::ok(""),
                Err(e) => Reply::fail(format!("failure: {e}")),
            })
        }
        Ok(Request::SimPrint) => {
            let faults = shared.faults.lock().render();
            let commands = shared.log.lock().len();
            return Some(Reply::ok(format!("{faults}commands={commands}\n")));
        }
        _ => {}
    }
    shared.log.lock().push(line.to_string());
    let kind = request.as_ref().map(Request::kind).unwrap_or("invalid");
    let (latency, disposition, disk_full) = {
        let mut f = shared.faults.lock();
        (f.latency, f.take(kind), f.disk_full)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let request = match request {
        Ok(r) => r,
        Err(e) => return Some(Reply::fail(e.0)),
    };
    match disposition {
        Disposition::DropBefore => return None,
        Disposition::Fail => return Some(Reply::fail("failure: simulated failure")),
        Disposition::Run | Disposition::DropAfter => {}
    }
    let shared2 = shared.clone();
    let reply =
        tokio::task::spawn_blocking(move || shared2.store.lock().execute(&request, disk_full))
            .await
            .unwrap_or_else(|e| Reply::fail(format!("failure: internal simulator error: {e}")));
    (disposition == Disposition::Run).then_some(reply)
}

/// Serves SSH on `listener` until `stop` is cancelled, then disconnects every session.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    host_key: PrivateKey,
    stop: CancellationToken,
) -> io::Result<()> {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    let config = Arc::new(server::Config {
        keys: vec![host_key],
        methods,
        auth_rejection_time: Duration::from_millis(100),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(3600)),
        nodelay: true,
        ..Default::default()
    });
    let sessions: Arc<Mutex<HashMap<u64, server::Handle>>> = Default::default();
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        let (socket, peer): (_, SocketAddr) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        if shared.faults.lock().refuse_connections {
            drop(socket);
            continue;
        }
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let _ = socket.set_nodelay(true);
        let handler = Conn {
            shared: shared.clone(),
        };
        let config = config.clone();
        let sessions = sessions.clone();
        next_id += 1;
        let id = next_id;
        tasks.spawn(async move {
            match server::run_stream(config, socket, handler).await {
                Ok(session) => {
                    sessions.lock().insert(id, session.handle());
                    if let Err(e) = session.await {
                        tracing::debug!(%peer, error = ?e, "SSH session ended with an error");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = ?e, "SSH handshake failed"),
            }
            sessions.lock().remove(&id);
        });
    }
    let handles: Vec<server::Handle> = sessions.lock().drain().map(|(_, h)| h).collect();
    for h in handles {
        let _ = h
            .disconnect(
                Disconnect::ByApplication,
                "simulator stopping".into(),
                "".into(),
            )
            .await;
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    Ok(())
}
