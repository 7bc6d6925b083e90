//! The SSH transport to the RDS: ONE long-lived connection, lazily opened, multiplexing
//! concurrent `exec` channels (one command per channel, as RouterOS expects) under a
//! semaphore; reopened under a lock that closes the old one. Each command reports whether
//! it can have reached the RDS, because that decides whether a retry is safe.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex as SyncMutex;
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::{timeout_at, Instant};

use super::error::{RdsError, RdsErrorKind};
use super::hostkey::{fingerprint, Pin};

/// The complete answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Output {
    pub stdout: String,
    pub stderr: String,
    pub exit_status: Option<u32>,
}

/// Why a command has no answer, sorted by what the caller may safely do next.
#[derive(Debug)]
pub(crate) enum ExecError {
    /// Nothing reached the RDS (no connection, channel refused). Retrying is safe when
    /// `retryable`; host-key and authentication failures are not worth retrying.
    NotSent { err: RdsError, retryable: bool },
    /// The command was sent and the connection died before its exit: it may have run.
    OutcomeUnknown(RdsError),
    /// The caller's deadline passed (the command may or may not have been sent).
    Timeout(RdsError),
    /// The RDS answered with more than `max_output_bytes`.
    TooLarge(RdsError),
}

pub(crate) struct TransportConfig {
    /// `host:port`.
    pub address: String,
    pub user: String,
    pub key: Arc<PrivateKey>,
    pub key_file: String,
    pub pin: Pin,
    pub max_concurrent: usize,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    pub max_output_bytes: usize,
}

struct Conn {
    handle: Handle<ClientHandler>,
    /// Set when a channel on this connection failed: the next caller reconnects.
    broken: AtomicBool,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.broken.load(Ordering::Acquire) && !self.handle.is_closed()
    }
}

pub(crate) struct SshTransport {
    cfg: TransportConfig,
    conn: Mutex<Option<Arc<Conn>>>,
    permits: Semaphore,
    connects: AtomicU64,
}

struct ClientHandler {
    pin: Pin,
    address: String,
    /// russh only sees "key rejected"; the detailed reason (both fingerprints) is left here.
    rejection: Arc<SyncMutex<Option<String>>>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // A host certificate is judged by the key it certifies; the pin names that key.
        let key = match presented {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        let key = &key;
        match self.pin.check(&self.address, key) {
            Ok(true) => {
                tracing::warn!(
                    rds = %self.address,
                    host_key = %fingerprint(key),
                    "RDS host key NOT verified (insecure skip is set): a man in the middle \
                     would go unnoticed; pin the key with --rds-host-key"
                );
                Ok(true)
            }
            Ok(false) => Ok(true),
            Err(message) => {
                *self.rejection.lock() = Some(message);
                Ok(false)
            }
        }
    }
}

fn transport_err(command: &str, message: String) -> RdsError {
    RdsError::new(RdsErrorKind::Transport, command, message)
}

impl SshTransport {
    pub fn new(cfg: TransportConfig) -> Self {
        SshTransport {
            permits: Semaphore::new(cfg.max_concurrent.max(1)),
            cfg,
            conn: Mutex::new(None),
            connects: AtomicU64::new(0),
        }
    }

    pub fn address(&self) -> &str {
        &self.cfg.address
    }

    /// SSH sessions opened so far (tests and benches check connection reuse with it).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Runs one command under the caller's deadline.
    pub async fn exec(&self, command: &str, deadline: Instant) -> Result<Output, ExecError> {
        let session = AtomicBool::new(false);
        match timeout_at(deadline, self.exec_inner(command, &session)).await {
            Ok(result) => result,
            // Without a session nothing was sent; the message says which stage hung, the
            // first thing an operator needs to tell a hung RDS from a slow command.
            Err(_) if !session.load(Ordering::Acquire) => Err(ExecError::Timeout(RdsError::new(
                RdsErrorKind::Timeout,
                command,
                format!(
                    "no SSH session with the RDS at {} before the deadline (it accepts no \
                     connection, or accepts TCP but does not complete the SSH handshake); \
                     the command was not sent",
                    self.cfg.address
                ),
            ))),
            Err(_) => Err(ExecError::Timeout(RdsError::new(
                RdsErrorKind::Timeout,
                command,
                format!(
                    "no complete answer from the RDS at {} before the deadline; \
                     the command may still run there: look before repeating a change",
                    self.cfg.address
                ),
            ))),
        }
    }

    async fn exec_inner(&self, command: &str, session: &AtomicBool) -> Result<Output, ExecError> {
        // The semaphore is never closed, so acquire cannot fail.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ExecError::NotSent {
                err: transport_err(command, "RDS client is shutting down".into()),
                retryable: false,
            })?;
        let conn = self.connection(command).await?;
        session.store(true, Ordering::Release);
        let not_sent = |what: &str, e: russh::Error| {
            conn.broken.store(true, Ordering::Release);
            ExecError::NotSent {
                err: transport_err(
                    command,
                    format!("{what} on the SSH connection to {}: {e}", self.cfg.address),
                ),
                retryable: true,
            }
        };
        let mut channel = conn
            .handle
            .channel_open_session()
            .await
            .map_err(|e| not_sent("opening a channel", e))?;
        // `exec` only queues the request to the session task; an error means it never left.
        channel
            .exec(true, command)
            .await
            .map_err(|e| not_sent("sending the command", e))?;

        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut exit_status = None;
        let mut ended = false;
        let mut total = 0usize;
        while let Some(msg) = channel.wait().await {
            let (buf, data) = match msg {
                ChannelMsg::Data { data } => (&mut stdout, data),
                ChannelMsg::ExtendedData { data, .. } => (&mut stderr, data),
                ChannelMsg::ExitStatus { exit_status: s } => {
                    exit_status = Some(s);
                    continue;
                }
                ChannelMsg::Eof => {
                    ended = true;
                    continue;
                }
                ChannelMsg::Close => {
                    ended = true;
                    break;
                }
                ChannelMsg::Failure => {
                    return Err(ExecError::NotSent {
                        err: transport_err(
                            command,
                            format!(
                                "the RDS at {} refused to execute the command",
                                self.cfg.address
                            ),
                        ),
                        retryable: false,
                    })
                }
                _ => continue,
            };
            total += data.len();
            if total > self.cfg.max_output_bytes {
                let _ = channel.close().await;
                return Err(ExecError::TooLarge(RdsError::new(
                    RdsErrorKind::Unknown,
                    command,
                    format!(
                        "the RDS answered with more than {} bytes; refusing a runaway answer \
                         (raise max_output_bytes only if the listing is legitimately that long)",
                        self.cfg.max_output_bytes
                    ),
                )));
            }
            buf.extend_from_slice(&data);
        }
        if !ended && exit_status.is_none() {
            // The channel vanished without EOF, close or exit status: the connection died.
            conn.broken.store(true, Ordering::Release);
            return Err(ExecError::OutcomeUnknown(transport_err(
                command,
                format!(
                    "the SSH connection to {} was lost after the command was sent; \
                     whether it ran is unknown",
                    self.cfg.address
                ),
            )));
        }
        Ok(Output {
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            exit_status,
        })
    }

    /// The shared connection, opened (or reopened, closing the old one) under the lock so
    /// that concurrent callers never race to open several.
    async fn connection(&self, command: &str) -> Result<Arc<Conn>, ExecError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            if conn.usable() {
                return Ok(conn.clone());
            }
        }
        if let Some(old) = slot.take() {
            // Best effort and off the hot path: the old session may already be dead.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    old.handle
                        .disconnect(Disconnect::ByApplication, "reconnecting", ""),
                )
                .await;
            });
        }
        let conn = Arc::new(self.connect(command).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self, command: &str) -> Result<Conn, ExecError> {
        let cfg = &self.cfg;
        let not_sent = |message: String, retryable: bool| ExecError::NotSent {
            err: transport_err(command, message),
            retryable,
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(cfg.keepalive),
            keepalive_max: 3,
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        });
        let rejection = Arc::new(SyncMutex::new(None));
        let handler = ClientHandler {
            pin: cfg.pin.clone(),
            address: cfg.address.clone(),
            rejection: rejection.clone(),
        };
        let attempt = async {
            let mut handle = client::connect(config, cfg.address.as_str(), handler)
                .await
                .map_err(|e| match rejection.lock().take() {
                    Some(message) => not_sent(message, false),
                    None => not_sent(
                        format!(
                            "cannot open an SSH session to the RDS at {}: {e}; check the \
                             address and that the RDS is up and reachable",
                            cfg.address
                        ),
                        true,
                    ),
                })?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            let auth = handle
                .authenticate_publickey(
                    cfg.user.as_str(),
                    PrivateKeyWithHashAlg::new(cfg.key.clone(), hash),
                )
                .await
                .map_err(|e| {
                    not_sent(
                        format!(
                            "SSH authentication with the RDS at {} failed: {e}",
                            cfg.address
                        ),
                        true,
                    )
                })?;
            if !auth.success() {
                return Err(not_sent(
                    format!(
                        "the RDS at {} refused public-key login for user {:?} with the key \
                         in {} ({}); add that public key to the user on the RDS",
                        cfg.address,
                        cfg.user,
                        cfg.key_file,
                        fingerprint(cfg.key.public_key())
                    ),
                    false,
                ));
            }
            Ok(handle)
        };
        let handle = tokio::time::timeout(cfg.connect_timeout, attempt)
            .await
            .map_err(|_| {
                not_sent(
                    format!(
                        "no SSH session with the RDS at {} within the connect timeout of {:?}",
                        cfg.address, cfg.connect_timeout
                    ),
                    true,
                )
            })??;
        self.connects.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(rds = %cfg.address, "SSH session to the RDS opened");
        Ok(Conn {
            handle,
            broken: AtomicBool::new(false),
        })
    }
}
