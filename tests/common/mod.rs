//! Helpers shared by the integration tests: real unix-socket gRPC clients.
#![allow(dead_code)]

pub mod controller;
pub mod loop_node;

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
