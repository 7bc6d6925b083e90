//! Helpers shared by the integration tests: real unix-socket gRPC clients.
#![allow(dead_code)]

pub mod controller;
pub mod logs;
pub mod loop_node;
pub mod requests;

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// A channel over a unix socket. The URI is `http://localhost`, so every request carries
/// `:authority: localhost` — exactly what Go gRPC clients (kubelet, the CSI sidecars) send.
pub async fn unix_channel(path: &Path) -> Channel {
    let path: PathBuf = path.to_owned();
    Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect to the CSI socket")
}

/// A gRPC server on a unix socket, as the binary runs it: its routes until `stop`, then a
/// drain of at most the grace given to [`serve`]. `task` ends with the server's result.
pub struct Served {
    pub sock: PathBuf,
    pub stop: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), rds_csi::csi::server::ServeError>>,
}

/// Serves `routes` on `sock` (see [`Served`]).
pub async fn serve(
    routes: tonic::service::Routes,
    sock: PathBuf,
    grace: std::time::Duration,
) -> Served {
    use rds_csi::csi::{endpoint, server};
    let listener = server::bind(&endpoint::Endpoint::Unix(sock.clone()))
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(server::serve(listener, routes, stop.clone(), grace));
    Served { sock, stop, task }
}

impl Served {
    /// Stops the server and asserts it drained cleanly.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// The whole answer (status line, headers, body) to an HTTP/1.0 GET of `path` at `addr`.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Every `.rs` file under `dir`, at any depth.
pub fn rs_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

/// `documented` and `code` name the same things: what only the docs name fails with
/// `"{unknown}: [..]"`, what only the code has with `"{missing}: [..]"`.
pub fn assert_same_names(
    documented: &std::collections::BTreeSet<String>,
    code: &std::collections::BTreeSet<String>,
    unknown: &str,
    missing: &str,
) {
    let only_docs: Vec<_> = documented.difference(code).collect();
    assert!(only_docs.is_empty(), "{unknown}: {only_docs:?}");
    let only_code: Vec<_> = code.difference(documented).collect();
    assert!(only_code.is_empty(), "{missing}: {only_code:?}");
}

/// Runs `f` on a registry holding the metrics of the driver's common parts: the common
/// ones, a real RDS client's (built against a simulator's key), the attachment table's and
/// the node's.
pub async fn with_driver_metrics<T>(f: impl FnOnce(&rds_csi::observability::Metrics) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let sim = rds_csi::simulator::harness::start_simulator(dir.path(), Default::default()).await;
    let m = rds_csi::observability::Metrics::new("controller");
    let _rds = rds_csi::rds::RdsClient::new(sim.client_config("/storage-pool/csi"), &m).unwrap();
    let _att = rds_csi::attachment::AttachmentMetrics::new(&m);
    let _node = rds_csi::node::metrics::NodeMetrics::new(&m);
    f(&m)
}

/// Asserts `s` carries `code` and a message holding every one of `words`; `case` names what
/// was checked.
pub fn assert_refused(case: &str, s: &tonic::Status, code: tonic::Code, words: &[&str]) {
    assert_eq!(s.code(), code, "{case}: {}", s.message());
    for w in words {
        assert!(
            s.message().contains(w),
            "{case}: {w:?} missing from {:?}",
            s.message()
        );
    }
}

/// A simulator with default options in a fresh directory (dropped after the simulator).
pub async fn simulator() -> (tempfile::TempDir, rds_csi::simulator::harness::SimHandle) {
    let dir = tempfile::tempdir().unwrap();
    let sim = rds_csi::simulator::harness::start_simulator(dir.path(), Default::default()).await;
    (dir, sim)
}
