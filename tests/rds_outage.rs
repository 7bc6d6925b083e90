//! An RDS outage is seen (issue 18.4): for a hung RDS (accepts TCP, never speaks SSH), a
//! refused port and a host key that differs from the pin, the controller's background check
//! makes `/readyz` answer 503 at once, sets `rds_csi_rds_up` to 0 on every scrape of the
//! outage (the `RdsCsiRdsUnreachable` expression), opens the circuit breaker, logs the first
//! failure and the breaker opening at warn with the cause, and recovers when the RDS answers.
//! Real parts: TCP listeners, the simulator over SSH on loopback, the HTTP endpoint.
//! Its own test binary: the log subscriber is process-global.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::logs::Captured;
use rds_csi::controller::RdsReadiness;
use rds_csi::observability::{http, Metrics};
use rds_csi::rds::{RdsClient, RdsConfig, RdsMonitor, Reachability};
use rds_csi::simulator::harness::{start_simulator, SimHandle, SimOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const BASE: &str = "/storage-pool/csi";
/// Each check's deadline: long enough that a readiness answer which waited for a check
/// would show, short enough for a test.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// The driver's log at the default level, as an operator's collector sees it.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(Captured::install)
}

/// The log lines at `level` about the RDS at `rds` that contain `words`.
fn lines(rds: &str, level: &str, words: &str) -> Vec<String> {
    logs()
        .text()
        .lines()
        .filter(|l| l.contains(&format!(" {level} ")) && l.contains(rds) && l.contains(words))
        .map(str::to_owned)
        .collect()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let out = common::http_get(addr, path).await;
    let took = started.elapsed();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (code, body, took)
}

/// The value of an unlabelled gauge in a scrape.
fn gauge(scrape: &str, name: &str) -> i64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from {scrape}"))
        .trim()
        .parse()
        .unwrap()
}

/// A controller's RDS client, background monitor and `/readyz` + `/metrics` endpoint.
struct Watched {
    http: SocketAddr,
    monitor: RdsMonitor,
    stop: CancellationToken,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn watch(mut cfg: RdsConfig) -> Watched {
    logs();
    cfg.breaker_threshold = 3;
    cfg.breaker_cooldown = Duration::from_secs(1);
    // The production connect timeout, longer than a check's deadline (the case that used to
    // leave the breaker closed forever).
    cfg.connect_timeout = rds_csi::rds::client::DEFAULT_CONNECT_TIMEOUT;
    let metrics = Metrics::new("controller");
    let rds = RdsClient::new(cfg, &metrics).unwrap();
    let stop = CancellationToken::new();
    let monitor = RdsMonitor::spawn(rds, CHECK_INTERVAL, CHECK_TIMEOUT, stop.child_token());
    let (http, _task) = http::serve(
        "127.0.0.1:0".parse().unwrap(),
        metrics,
        Arc::new(RdsReadiness(monitor.clone())),
        stop.child_token(),
    )
    .await
    .unwrap();
    Watched {
        http,
        monitor,
        stop,
    }
}

/// What the outage looked like from outside.
struct Seen {
    slowest_readyz: Duration,
    readyz_answers: usize,
    saw_half_open: bool,
}

/// Drives an outage (`what`) whose check fails with `cause`: asserts /readyz, the gauges and
/// the warn lines until the breaker has opened and one half-open probe has failed; reports
/// what it saw.
async fn outage(what: &str, w: &Watched, rds: &str, cause: &str) -> Seen {
    let first = tokio::time::timeout(
        Duration::from_secs(15),
        w.monitor
            .wait_for(|r| matches!(r, Reachability::Down { .. })),
    )
    .await
    .expect("a failed check within 15 s")
    .unwrap();
    let Reachability::Down {
        cause: first_cause, ..
    } = first
    else {
        unreachable!()
    };
    assert!(first_cause.contains(cause), "{first_cause}");

    let mut seen = Seen {
        slowest_readyz: Duration::ZERO,
        readyz_answers: 0,
        saw_half_open: false,
    };
    let mut opened_at = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Scrape as Prometheus would, until the breaker has opened, waited its cooldown and let a
    // probe through (half-open) that failed again: the alert's condition holds all along.
    loop {
        assert!(
            Instant::now() < deadline,
            "the breaker never opened and re-probed"
        );
        let (code, body, took) = get(w.http, "/readyz").await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("RDS unreachable"), "{body}");
        seen.slowest_readyz = seen.slowest_readyz.max(took);
        seen.readyz_answers += 1;
        let (_, scrape, _) = get(w.http, "/metrics").await;
        assert_eq!(gauge(&scrape, "rds_csi_rds_up"), 0, "{scrape}");
        match gauge(&scrape, "rds_csi_rds_breaker_state") {
            1 if opened_at.is_none() => opened_at = Some(Instant::now()),
            2 => seen.saw_half_open = true,
            _ => {}
        }
        if let Some(at) = opened_at {
            // Cooldown 1 s, then a probe (a check, up to CHECK_TIMEOUT), then open again.
            if at.elapsed() > Duration::from_secs(1) + CHECK_TIMEOUT * 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Logged at the default level, with the cause: the first failed check once per outage,
    // and the breaker opening.
    let first = lines(rds, "WARN", "RDS unreachable: a background check failed");
    assert_eq!(first.len(), 1, "one warn line per outage: {first:#?}");
    assert!(first[0].contains(cause), "{}", first[0]);
    let opened = lines(rds, "WARN", "RDS circuit breaker open");
    assert!(!opened.is_empty(), "no warn line for the breaker opening");
    assert!(opened[0].contains(cause), "{}", opened[0]);
    eprintln!("{}\n{}", first[0], opened[0]);
    report(what, &seen);
    seen
}

/// The RDS answers again (the simulator keyed in `dir`, now on `addr`): ready, up, breaker
/// closed, and recovery logged at info.
async fn recovery_on(dir: &std::path::Path, addr: SocketAddr, w: &Watched, rds: &str) {
    let _sim = simulator_on(dir, addr).await;
    tokio::time::timeout(Duration::from_secs(15), w.monitor.wait_for(|r| r.is_up()))
        .await
        .expect("ready within 15 s of the RDS answering")
        .unwrap();
    let (code, body, _) = get(w.http, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    let (_, scrape, _) = get(w.http, "/metrics").await;
    assert_eq!(gauge(&scrape, "rds_csi_rds_up"), 1, "{scrape}");
    assert_eq!(gauge(&scrape, "rds_csi_rds_breaker_state"), 0, "{scrape}");
    let back = lines(rds, "INFO", "RDS reachable again");
    assert_eq!(back.len(), 1, "{back:#?}");
    assert!(back[0].contains("outage_seconds"), "{}", back[0]);
    assert_eq!(lines(rds, "INFO", "RDS circuit breaker closed").len(), 1);
}

fn report(what: &str, s: &Seen) {
    eprintln!(
        "{what}: {} /readyz answers during the outage, slowest {:?} (check deadline {:?}); \
         half-open seen on a scrape: {}",
        s.readyz_answers, s.slowest_readyz, CHECK_TIMEOUT, s.saw_half_open
    );
}

/// A simulator's client configuration (pin, key) with the simulator stopped: the test then
/// serves something else on another port and restarts the simulator there to recover.
async fn config_of_stopped_simulator(dir: &std::path::Path) -> RdsConfig {
    let sim = start_simulator(dir, SimOptions::default()).await;
    let cfg = sim.client_config(BASE);
    sim.shutdown().await;
    cfg
}

async fn simulator_on(dir: &std::path::Path, addr: SocketAddr) -> SimHandle {
    start_simulator(
        dir,
        SimOptions {
            listen: addr.to_string(),
            ..Default::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_rds_is_not_ready_at_once_opens_the_breaker_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config_of_stopped_simulator(dir.path()).await;
    // Accepts TCP, never says a word.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hung.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = hung.accept().await.unwrap();
            held.push(s);
        }
    });
    cfg.address = addr.to_string();
    let w = watch(cfg).await;
    let rds = addr.to_string();
    let seen = outage("hung RDS", &w, &rds, "no SSH session").await;
    // A readiness answer that waited for a check would take the whole check deadline.
    assert!(
        seen.slowest_readyz < CHECK_TIMEOUT / 4,
        "slowest /readyz {:?}",
        seen.slowest_readyz
    );
    assert!(
        seen.saw_half_open,
        "the probe of a hung RDS is visible as half-open"
    );

    holder.abort();
    let _ = holder.await;
    recovery_on(dir.path(), addr, &w, &rds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_port_is_not_ready_opens_the_breaker_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config_of_stopped_simulator(dir.path()).await;
    // A port nothing listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    cfg.address = addr.to_string();
    let w = watch(cfg).await;
    let rds = addr.to_string();
    let seen = outage("refused port", &w, &rds, "cannot open an SSH session").await;
    assert!(seen.slowest_readyz < CHECK_TIMEOUT / 4);

    recovery_on(dir.path(), addr, &w, &rds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_that_differs_from_the_pin_is_not_ready_and_recovers() {
    let pinned_dir = tempfile::tempdir().unwrap();
    let mut cfg = config_of_stopped_simulator(pinned_dir.path()).await;
    // Another simulator: another host key than the one pinned.
    let other_dir = tempfile::tempdir().unwrap();
    let other = start_simulator(other_dir.path(), SimOptions::default()).await;
    let addr = other.addr();
    cfg.address = addr.to_string();
    let w = watch(cfg).await;
    let rds = addr.to_string();
    let seen = outage("wrong host key", &w, &rds, "does not match the pinned key").await;
    assert!(seen.slowest_readyz < CHECK_TIMEOUT / 4);
    assert!(
        other.commands().is_empty(),
        "nothing sent to an unverified host"
    );

    other.shutdown().await;
    recovery_on(pinned_dir.path(), addr, &w, &rds).await;
}
