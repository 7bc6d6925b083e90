//! SIGTERM stops a serving process gracefully. Its own test binary: once tokio handles
//! SIGTERM in a process, the signal no longer terminates it, which must not leak into others.

mod common;

use std::sync::Arc;
use std::time::Duration;

use csi_proto::v1 as csi;
use csi_proto::v1::identity_client::IdentityClient;
use csi_proto::v1::identity_server::IdentityServer;
use rds_csi::csi::endpoint::Endpoint;
use rds_csi::csi::identity::{Health, HealthCheck, IdentityService};
use rds_csi::observability::Metrics;
use rds_csi::runtime::{serve_until_stopped, ServeConfig};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

struct Slow;

#[tonic::async_trait]
impl HealthCheck for Slow {
    async fn check(&self) -> Health {
        tokio::time::sleep(Duration::from_millis(700)).await;
        Health::ready()
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_and_returns_ok() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let health: Arc<dyn HealthCheck> = Arc::new(Slow);
    let routes = Routes::new(IdentityServer::new(IdentityService::new(
        "rds.csi.mikrotik.com".into(),
        false,
        Arc::clone(&health),
    )));
    let cfg = ServeConfig {
        endpoint: Endpoint::Unix(sock.clone()),
        metrics_address: Some("127.0.0.1:0".parse().unwrap()),
        drain: Duration::from_secs(10),
    };
    let task = tokio::spawn(serve_until_stopped(
        cfg,
        routes,
        Metrics::new("node"),
        health,
        CancellationToken::new(),
    ));
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c = IdentityClient::new(common::unix_channel(&sock).await);
    let call = tokio::spawn(async move { c.probe(csi::ProbeRequest {}).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    // SAFETY: kill(2) on our own pid with a signal tokio now handles; no memory is touched.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGTERM) }, 0);
    let r = call.await.unwrap().expect("in-flight call completed");
    assert_eq!(r.into_inner().ready, Some(true));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped in time")
        .unwrap()
        .expect("graceful stop is a success");
    assert!(!sock.exists());
}
