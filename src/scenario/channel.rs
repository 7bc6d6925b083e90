//! Channels to a CSI plugin's endpoint, dialled as kubelet and the CSI sidecars dial them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use csi_proto::v1 as csi;
use csi_proto::v1::identity_client::IdentityClient;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint as GrpcEndpoint, Uri};

use crate::csi::endpoint::Endpoint;

/// One connection attempt's bound: a plugin that accepts but never answers is not waited on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts while a plugin is starting.
const RETRY_PAUSE: Duration = Duration::from_millis(300);

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("{endpoint} not reachable within {wait:?}: {last}")]
    NotReady {
        endpoint: String,
        wait: Duration,
        last: String,
    },
}

/// A tonic connector to a unix socket. The URI is `http://localhost`, so every request
/// carries `:authority: localhost`, as Go gRPC clients (kubelet, the sidecars) send it.
#[derive(Clone)]
struct UnixConnector(PathBuf);

impl tonic::codegen::Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) })
    }
}

/// A channel over the unix socket at `path` (connected once, within 5 s).
pub async fn unix_channel(path: &Path) -> Result<Channel, ConnectError> {
    connect(&Endpoint::Unix(path.to_owned())).await
}

/// A channel to `endpoint` (connected once, within 5 s).
pub async fn connect(endpoint: &Endpoint) -> Result<Channel, ConnectError> {
    let failed = |reason: String| ConnectError::Connect {
        endpoint: endpoint.to_string(),
        reason,
    };
    let attempt = async {
        match endpoint {
            Endpoint::Unix(path) => GrpcEndpoint::from_static("http://localhost")
                .connect_with_connector(UnixConnector(path.clone()))
                .await
                .map_err(|e| failed(format!("{e:?}"))),
            Endpoint::Tcp(addr) => GrpcEndpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| failed(e.to_string()))?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect()
                .await
                .map_err(|e| failed(format!("{e:?}"))),
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| failed(format!("no connection within {CONNECT_TIMEOUT:?}")))?
}

/// Connects to `endpoint` (`unix:///path` or `tcp://host:port`) and waits, up to `wait`,
/// until the plugin answers GetPluginInfo; returns the channel and the plugin's answer.
pub async fn connect_ready(
    endpoint: &str,
    wait: Duration,
) -> Result<(Channel, csi::GetPluginInfoResponse), ConnectError> {
    let parsed: Endpoint = endpoint
        .parse()
        .map_err(|reason| ConnectError::BadEndpoint {
            endpoint: endpoint.to_owned(),
            reason,
        })?;
    let until = tokio::time::Instant::now() + wait;
    let mut last = String::new();
    while tokio::time::Instant::now() < until {
        match connect(&parsed).await {
            Ok(ch) => {
                let mut req = tonic::Request::new(csi::GetPluginInfoRequest {});
                req.set_timeout(CONNECT_TIMEOUT);
                let answer = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    IdentityClient::new(ch.clone()).get_plugin_info(req),
                )
                .await;
                match answer {
                    Ok(Ok(info)) => return Ok((ch, info.into_inner())),
                    Ok(Err(s)) => last = format!("GetPluginInfo: {:?}: {}", s.code(), s.message()),
                    Err(_) => last = format!("GetPluginInfo: no answer within {CONNECT_TIMEOUT:?}"),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    Err(ConnectError::NotReady {
        endpoint: endpoint.to_owned(),
        wait,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_endpoint_is_refused_before_dialling() {
        let e = connect_ready("/no/scheme.sock", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, ConnectError::BadEndpoint { .. }), "{e}");
        assert!(e.to_string().contains("unix:///"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_socket_is_not_ready_within_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let ep = format!("unix://{}", dir.path().join("none.sock").display());
        let e = connect_ready(&ep, Duration::from_millis(400))
            .await
            .unwrap_err();
        assert!(matches!(e, ConnectError::NotReady { .. }), "{e}");
        assert!(e.to_string().contains("not reachable within"), "{e}");
    }
}
