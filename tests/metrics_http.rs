//! The /metrics, /healthz and /readyz endpoint over real TCP.

use std::sync::Arc;

use rds_csi::csi::identity::{Health, ReadinessFlag};
use rds_csi::observability::{http, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn serves_metrics_health_and_readiness() {
    let metrics = Metrics::new("controller");
    metrics.inflight_rejections.inc();
    let flag = ReadinessFlag::new(Health::not_ready("RDS unreachable: connection refused"));
    let stop = CancellationToken::new();
    let (addr, task) = http::serve(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        Arc::new(flag.clone()),
        stop.clone(),
    )
    .await
    .unwrap();

    let m = get(addr, "/metrics").await;
    assert!(
        m.starts_with("HTTP/1.0 200") || m.starts_with("HTTP/1.1 200"),
        "{m}"
    );
    assert!(m.contains("rds_csi_inflight_rejections_total 1"), "{m}");
    assert!(m.contains("rds_csi_build_info"), "{m}");

    assert!(get(addr, "/healthz").await.contains(" 200 "));
    let r = get(addr, "/readyz").await;
    assert!(r.contains(" 503 ") && r.contains("RDS unreachable"), "{r}");
    flag.set(Health::ready());
    assert!(get(addr, "/readyz").await.contains(" 200 "));
    assert!(get(addr, "/nope").await.contains(" 404 "));

    stop.cancel();
    task.await.unwrap();
}
