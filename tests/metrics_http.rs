//! The /metrics, /healthz and /readyz endpoint over real TCP.

mod common;

use std::sync::Arc;

use rds_csi::csi::identity::{Health, ReadinessFlag};
use rds_csi::observability::{http, Metrics};
use tokio_util::sync::CancellationToken;

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

    let m = common::http_get(addr, "/metrics").await;
    assert!(
        m.starts_with("HTTP/1.0 200") || m.starts_with("HTTP/1.1 200"),
        "{m}"
    );
    assert!(m.contains("rds_csi_inflight_rejections_total 1"), "{m}");
    assert!(m.contains("rds_csi_build_info"), "{m}");

    assert!(common::http_get(addr, "/healthz").await.contains(" 200 "));
    let r = common::http_get(addr, "/readyz").await;
    assert!(r.contains(" 503 ") && r.contains("RDS unreachable"), "{r}");
    flag.set(Health::ready());
    assert!(common::http_get(addr, "/readyz").await.contains(" 200 "));
    assert!(common::http_get(addr, "/nope").await.contains(" 404 "));

    stop.cancel();
    task.await.unwrap();
}
