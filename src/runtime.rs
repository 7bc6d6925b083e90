//! The life of a serving process (controller or node): metrics endpoint, CSI socket, and a
//! graceful stop on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::endpoint::Endpoint;
use crate::identity::HealthCheck;
use crate::observability::{http, Metrics};
use crate::server::{self, ServeError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct ServeConfig {
    pub endpoint: Endpoint,
    pub metrics_address: Option<SocketAddr>,
    pub drain: Duration,
}

/// Serves until SIGTERM/SIGINT (or `stop`), then drains in-flight RPCs and returns Ok:
/// the process exits 0 after a graceful stop.
pub async fn serve_until_stopped(
    cfg: ServeConfig,
    routes: Routes,
    metrics: Metrics,
    health: Arc<dyn HealthCheck>,
    stop: CancellationToken,
) -> Result<(), RunError> {
    server::cancel_on_signals(stop.clone())?;
    let listener = server::bind(&cfg.endpoint).await?;
    let http_task = match cfg.metrics_address {
        Some(addr) => Some(http::serve(addr, metrics, health, stop.clone()).await?.1),
        None => None,
    };
    let result = server::serve(listener, routes, stop.clone(), cfg.drain).await;
    stop.cancel();
    if let Some(t) = http_task {
        let _ = t.await;
    }
    tracing::info!("stopped");
    result.map_err(RunError::from)
}
