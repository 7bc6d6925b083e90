//! Identity over a real unix socket, socket safety, and graceful shutdown.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use csi_proto::v1 as csi;
use csi_proto::v1::identity_client::IdentityClient;
use csi_proto::v1::identity_server::IdentityServer;
use rds_csi::csi::endpoint::Endpoint;
use rds_csi::csi::identity::{Health, HealthCheck, IdentityService, ReadinessFlag};
use rds_csi::csi::server::{self, ServeError};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

struct Running {
    dir: tempfile::TempDir,
    sock: std::path::PathBuf,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

async fn start(health: Arc<dyn HealthCheck>, controller: bool, drain: Duration) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi").join("csi.sock");
    let routes = Routes::new(IdentityServer::new(IdentityService::new(
        "rds.csi.mikrotik.com".into(),
        controller,
        health,
    )));
    let common::Served { sock, stop, task } = common::serve(routes, sock, drain).await;
    Running {
        dir,
        sock,
        stop,
        task,
    }
}

impl Running {
    async fn client(&self) -> IdentityClient<tonic::transport::Channel> {
        IdentityClient::new(common::unix_channel(&self.sock).await)
    }
}

/// The answer of an Identity call that must succeed.
fn answer<T>(r: Result<tonic::Response<T>, tonic::Status>) -> T {
    r.expect("the Identity call answers OK").into_inner()
}

fn ready() -> Arc<dyn HealthCheck> {
    Arc::new(ReadinessFlag::new(Health::ready()))
}

#[tokio::test]
async fn go_style_client_with_authority_localhost_gets_plugin_info() {
    let r = start(ready(), true, Duration::from_secs(5)).await;
    let mut c = r.client().await;
    let info = answer(c.get_plugin_info(csi::GetPluginInfoRequest {}).await);
    assert_eq!(info.name, "rds.csi.mikrotik.com");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn capabilities_name_controller_only_when_it_runs() {
    use csi::plugin_capability::{service::Type as Svc, volume_expansion::Type as Exp, Type};
    for controller in [true, false] {
        let r = start(ready(), controller, Duration::from_secs(5)).await;
        let mut c = r.client().await;
        let caps = answer(
            c.get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {})
                .await,
        )
        .capabilities;
        let services: Vec<i32> = caps
            .iter()
            .filter_map(|c| match &c.r#type {
                Some(Type::Service(s)) => Some(s.r#type),
                _ => None,
            })
            .collect();
        assert_eq!(
            services.contains(&(Svc::ControllerService as i32)),
            controller
        );
        assert!(services.contains(&(Svc::VolumeAccessibilityConstraints as i32)));
        assert!(caps.iter().any(|c| matches!(&c.r#type,
            Some(Type::VolumeExpansion(e)) if e.r#type == Exp::Online as i32)));
        r.stop.cancel();
        r.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn probe_reflects_real_readiness() {
    let flag = ReadinessFlag::new(Health::not_ready("RDS unreachable"));
    let r = start(Arc::new(flag.clone()), true, Duration::from_secs(5)).await;
    let mut c = r.client().await;
    let probe = answer(c.probe(csi::ProbeRequest {}).await);
    assert_eq!(probe.ready, Some(false));
    flag.set(Health::ready());
    let probe = answer(c.probe(csi::ProbeRequest {}).await);
    assert_eq!(probe.ready, Some(true));
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn socket_is_private_and_a_stale_socket_is_replaced() {
    let r = start(ready(), true, Duration::from_secs(5)).await;
    let md = std::fs::symlink_metadata(&r.sock).unwrap();
    assert!(md.file_type().is_socket());
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    // No staging directory is left beside the socket.
    let names: Vec<_> = std::fs::read_dir(r.sock.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("csi.sock")]);
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
    assert!(!r.sock.exists(), "socket removed on shutdown");

    // A socket left behind by a crashed process is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&r.sock).unwrap();
    drop(stale);
    assert!(r.sock.exists());
    let l = server::bind(&Endpoint::Unix(r.sock.clone())).await.unwrap();
    drop(l);
    drop(r.dir);
}

#[tokio::test]
async fn a_second_server_on_a_socket_a_live_server_answers_on_refuses_and_the_first_keeps_serving()
{
    let r = start(ready(), true, Duration::from_secs(5)).await;
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&r.sock);
    let err = match server::bind(&Endpoint::Unix(r.sock.clone())).await {
        Err(e) => e,
        Ok(_) => panic!("a second server took over a live socket"),
    };
    assert!(matches!(err, ServeError::InUse { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(r.sock.to_str().unwrap())
            && text.contains("already answers")
            && text.contains("--endpoint"),
        "{text}"
    );
    assert_eq!(inode(&r.sock), before, "the live socket was replaced");
    let mut c = r.client().await;
    let probe = answer(c.probe(csi::ProbeRequest {}).await);
    assert_eq!(probe.ready, Some(true), "the first server still answers");
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn refuses_to_delete_a_regular_file_at_the_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("csi.sock");
    std::fs::write(&path, b"precious").unwrap();
    let err = match server::bind(&Endpoint::Unix(path.clone())).await {
        Err(e) => e,
        Ok(_) => panic!("bound over a regular file"),
    };
    assert!(matches!(err, ServeError::NotASocket { .. }));
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

/// A health check that takes a while, standing in for a slow in-flight RPC.
struct Slow(Duration);

#[tonic::async_trait]
impl HealthCheck for Slow {
    async fn check(&self) -> Health {
        tokio::time::sleep(self.0).await;
        Health::ready()
    }
}

type ProbeCall =
    tokio::task::JoinHandle<Result<tonic::Response<csi::ProbeResponse>, tonic::Status>>;

/// A server whose Probe takes `takes_ms` and whose shutdown drains for at most `drain_ms`,
/// with a Probe call in flight for `after_ms` already.
async fn probe_in_flight(takes_ms: u64, drain_ms: u64, after_ms: u64) -> (Running, ProbeCall) {
    let ms = Duration::from_millis;
    let r = start(Arc::new(Slow(ms(takes_ms))), true, ms(drain_ms)).await;
    let mut c = r.client().await;
    let call = tokio::spawn(async move { c.probe(csi::ProbeRequest {}).await });
    tokio::time::sleep(ms(after_ms)).await;
    (r, call)
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_call_complete() {
    let (r, call) = probe_in_flight(800, 10_000, 200).await;
    r.stop.cancel();
    let resp = call
        .await
        .unwrap()
        .expect("in-flight RPC completes during shutdown");
    assert_eq!(resp.into_inner().ready, Some(true));
    r.task.await.unwrap().unwrap();
    // Stopped accepting: the socket is gone and a new client cannot connect.
    assert!(tokio::net::UnixStream::connect(&r.sock).await.is_err());
}

#[tokio::test]
async fn shutdown_is_bounded_when_a_call_never_finishes() {
    let (r, _call) = probe_in_flight(3_600_000, 300, 100).await;
    let t = Instant::now();
    r.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), r.task)
        .await
        .expect("serve returned")
        .unwrap()
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}
