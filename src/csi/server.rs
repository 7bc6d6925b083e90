//! The CSI gRPC server: a unix socket (private from the moment it exists) or TCP, with
//! graceful shutdown that lets in-flight RPCs finish within a bounded time.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;

use crate::csi::endpoint::Endpoint;

/// How long in-flight RPCs may run after SIGTERM before the process exits anyway.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path}: exists and is not a socket; refusing to remove it. Point --endpoint elsewhere or remove the file yourself")]
    NotASocket { path: PathBuf },
    #[error("{path}: a server already answers on this socket (another rds-csi with the same --endpoint?); refusing to take it over. Stop the other process or point --endpoint elsewhere")]
    InUse { path: PathBuf },
    #[error("cannot listen on {endpoint}: {source}")]
    Bind {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("gRPC server on {endpoint} failed: {source}")]
    Transport {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// A bound listener, ready to serve. Binding is separate from serving so callers (and tests)
/// know the socket exists before the first client connects.
pub enum Listener {
    Unix(tokio::net::UnixListener, PathBuf),
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    pub fn local_description(&self) -> String {
        match self {
            Listener::Unix(_, p) => format!("unix://{}", p.display()),
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("tcp://{a}"))
                .unwrap_or_else(|_| "tcp://?".into()),
        }
    }
}

/// How long a connect to an existing socket may take before it counts as a live server
/// (one whose accept backlog is full is alive too).
const LIVE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds the endpoint. A unix socket is created inside a fresh 0700 directory, set to 0600,
/// then renamed into place, so no client can ever reach it with wider permissions. An
/// existing socket is replaced only when nothing answers on it (a stale one from an earlier
/// run); one a live server answers on is [`ServeError::InUse`], so a second process never
/// silently takes the socket over from the first.
pub async fn bind(endpoint: &Endpoint) -> Result<Listener, ServeError> {
    match endpoint {
        Endpoint::Unix(path) => {
            if live_server_on(path).await {
                return Err(ServeError::InUse { path: path.clone() });
            }
            bind_unix_private(path).map(|l| Listener::Unix(l, path.clone()))
        }
        Endpoint::Tcp(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map(Listener::Tcp)
            .map_err(|source| ServeError::Bind {
                endpoint: endpoint.to_string(),
                source,
            }),
    }
}

/// Whether something accepts connections on the socket at `path`: a connect that succeeds,
/// or one that neither succeeds nor is refused in time.
async fn live_server_on(path: &Path) -> bool {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return false;
    }
    match tokio::time::timeout(LIVE_PROBE_TIMEOUT, tokio::net::UnixStream::connect(path)).await {
        Ok(Ok(_)) | Err(_) => true,
        // ECONNREFUSED: no listener behind the file, a leftover of a process that is gone.
        Ok(Err(_)) => false,
    }
}

fn bind_unix_private(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    let bind_err = |source: io::Error| ServeError::Bind {
        endpoint: format!("unix://{}", path.display()),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            // A stale socket from an earlier run: safe to replace.
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        Ok(_) => {
            return Err(ServeError::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(bind_err)?;
    let staging = parent.join(format!(
        ".{}.{}.staging",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(bind_err)?;
    let result = (|| {
        let tmp = staging.join("csi.sock");
        let l = std::os::unix::net::UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        l.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(l)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result.map_err(bind_err)
}

type ServeFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>,
>;

/// Serves `routes` on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// in-flight RPCs finish for at most `drain`, and returns. A unix socket file is removed.
pub async fn serve(
    listener: Listener,
    routes: Routes,
    shutdown: CancellationToken,
    drain: Duration,
) -> Result<(), ServeError> {
    let desc = listener.local_description();
    tracing::info!(endpoint = %desc, "CSI gRPC server listening");
    let builder = Server::builder()
        // Kubelet and sidecars keep connections open for the life of the pod.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_routes(routes);
    let token = shutdown.clone();
    let (mut fut, socket_path): (ServeFuture, Option<PathBuf>) =
        match listener {
            Listener::Unix(l, path) => (
                Box::pin(builder.serve_with_incoming_shutdown(
                    UnixListenerStream::new(l),
                    token.cancelled_owned(),
                )),
                Some(path),
            ),
            Listener::Tcp(l) => (
                Box::pin(builder.serve_with_incoming_shutdown(
                    TcpListenerStream::new(l),
                    token.cancelled_owned(),
                )),
                None,
            ),
        };
    let result = tokio::select! {
        r = &mut fut => r,
        _ = shutdown.cancelled() => {
            tracing::info!(endpoint = %desc, drain_seconds = drain.as_secs(), "shutting down: no new connections; waiting for in-flight RPCs");
            match tokio::time::timeout(drain, &mut fut).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(endpoint = %desc, "in-flight RPCs did not finish within the drain timeout; exiting anyway");
                    Ok(())
                }
            }
        }
    };
    if let Some(p) = socket_path {
        let _ = std::fs::remove_file(p);
    }
    result.map_err(|source| ServeError::Transport {
        endpoint: desc,
        source,
    })
}

/// Cancels `token` on the first SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = which,
            "received signal; starting graceful shutdown"
        );
        token.cancel();
    });
    Ok(())
}
