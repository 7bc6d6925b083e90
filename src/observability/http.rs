//! A small HTTP server for `/metrics` (Prometheus text), `/healthz` (the process is alive)
//! and `/readyz` (the process can serve: same answer as the CSI Probe).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::csi::identity::HealthCheck;

/// Binds `addr` and serves until `stop` fires. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Arc<dyn HealthCheck>,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on --metrics-address {addr}: {e}"),
        )
    })?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        continue;
                    }
                },
            };
            let metrics = metrics.clone();
            let health = Arc::clone(&health);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let metrics = metrics.clone();
                    let health = Arc::clone(&health);
                    async move { Ok::<_, Infallible>(route(req, &metrics, &*health).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                // A scrape never takes long; bound a stuck client so tasks cannot pile up.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn).await;
            });
        }
    });
    tracing::info!(address = %bound, "metrics and health endpoint listening");
    Ok((bound, task))
}

async fn route(
    req: Request<Incoming>,
    metrics: &Metrics,
    health: &dyn HealthCheck,
) -> Response<Full<Bytes>> {
    let text = |code: StatusCode, body: String, ctype: &'static str| {
        Response::builder()
            .status(code)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" => {
            let h = health.check().await;
            if h.ready {
                text(StatusCode::OK, "ready\n".into(), "text/plain")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {}\n", h.detail),
                    "text/plain",
                )
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /healthz or /readyz\n".into(),
            "text/plain",
        ),
    }
}
