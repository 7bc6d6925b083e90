//! The RDS client against the simulator over real SSH on loopback: the volume lifecycle,
//! byte-exact sizes, lost answers resolved by looking, host-key pinning, deadlines, the
//! circuit breaker, fault injection, persistence and nvmet export on a fake configfs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant as StdInstant};

use rds_csi::observability::Metrics;
use rds_csi::rds::command::MIKROTIK_NQN_PREFIX;
use rds_csi::rds::size::{plan_volume_size, GIB, MIB};
use rds_csi::rds::{
    slot_nqn, BasePath, BreakerState, HostKeyPolicy, LookFirst, NvmeExport, Port, RdsClient,
    RdsConfig, RdsErrorKind, RdsPath, Slot, SlotPrefix,
};
use rds_csi::simulator::harness::{start_simulator, SimHandle, SimOptions};
use rds_csi::simulator::ExportConfig;
use tokio::time::Instant;

const BASE: &str = "/storage-pool/csi";

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

fn slot(s: &str) -> Slot {
    Slot::new(s).unwrap()
}

fn base() -> BasePath {
    BasePath::new(BASE).unwrap()
}

fn path(s: &Slot) -> RdsPath {
    RdsPath::volume_file(&base(), s).unwrap()
}

fn export(s: &Slot) -> NvmeExport {
    NvmeExport {
        port: Port::default(),
        nqn: slot_nqn(MIKROTIK_NQN_PREFIX, s).unwrap(),
    }
}

fn client_with(cfg: RdsConfig) -> (RdsClient, Metrics) {
    let metrics = Metrics::new("controller");
    (RdsClient::new(cfg, &metrics).unwrap(), metrics)
}

fn client(sim: &SimHandle) -> (RdsClient, Metrics) {
    client_with(sim.client_config(BASE))
}

async fn create(c: &RdsClient, name: &str, size: u64) -> rds_csi::rds::Disk {
    let s = slot(name);
    c.create_disk(&path(&s), size, &s, &export(&s), LookFirst::Yes, soon())
        .await
        .unwrap()
}

/// A create of slot `s` (already checked) that the RDS refuses: the error.
async fn refused_create(c: &RdsClient, s: &Slot, size: u64) -> rds_csi::rds::RdsError {
    c.create_disk(&path(s), size, s, &export(s), LookFirst::Yes, soon())
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_volume_lifecycle_create_get_list_resize_copy_delete() {
    let (_dir, sim) = common::simulator().await;
    let (c, metrics) = client(&sim);

    assert_eq!(c.health(soon()).await.unwrap(), "rds-simulator");
    let pool = c.pool_capacity(soon()).await.unwrap();
    assert_eq!((pool.size, pool.free), (100 * GIB, 100 * GIB));

    let s = slot("pvc-1");
    let disk = create(&c, "pvc-1", 2 * GIB).await;
    assert_eq!(disk.size_bytes, 2 * GIB);
    assert_eq!(
        disk.file_path.as_deref(),
        Some("/storage-pool/csi/pvc-1.img")
    );
    assert!(disk.nvme_tcp_export);
    assert_eq!(disk.nvme_tcp_port, Some(4420));
    assert_eq!(
        disk.nvme_tcp_nqn.as_deref(),
        Some("nqn.2000-02.com.mikrotik:pvc-1")
    );
    let backing = sim.data_dir().join("storage-pool/csi/pvc-1.img");
    assert_eq!(std::fs::metadata(&backing).unwrap().len(), 2 * GIB);
    assert_eq!(c.get_disk(&s, soon()).await.unwrap(), Some(disk.clone()));
    assert_eq!(c.get_disk(&slot("pvc-absent"), soon()).await.unwrap(), None);

    // A retried create with the same parameters returns the same disk and adds nothing.
    let adds = |sim: &SimHandle| {
        sim.commands()
            .iter()
            .filter(|c| c.starts_with("/disk add"))
            .count()
    };
    assert_eq!(create(&c, "pvc-1", 2 * GIB).await, disk);
    assert_eq!(adds(&sim), 1);
    // A different size for the same name is ALREADY_EXISTS, naming the difference.
    let err = refused_create(&c, &s, 3 * GIB).await;
    assert_eq!(err.kind(), RdsErrorKind::AlreadyExists);
    assert!(err.message().contains("wanted 3221225472"), "{err}");

    let resized = c.resize_disk(&s, 4 * GIB, soon()).await.unwrap();
    assert_eq!(resized.size_bytes, 4 * GIB);
    assert_eq!(std::fs::metadata(&backing).unwrap().len(), 4 * GIB);
    let err = c.resize_disk(&s, GIB, soon()).await.unwrap_err();
    assert_eq!(err.kind(), RdsErrorKind::Invalid);
    assert!(err.message().contains("shrinking"), "{err}");

    let snap = slot("snap-1");
    let snapshot = c
        .copy_disk(&s, &path(&snap), &snap, None, None, LookFirst::Yes, soon())
        .await
        .unwrap();
    assert_eq!(snapshot.size_bytes, 4 * GIB);
    assert!(!snapshot.nvme_tcp_export);
    let clone = slot("pvc-2");
    let cloned = c
        .copy_disk(
            &snap,
            &path(&clone),
            &clone,
            Some(5 * GIB),
            Some(&export(&clone)),
            LookFirst::Yes,
            soon(),
        )
        .await
        .unwrap();
    assert_eq!(cloned.size_bytes, 5 * GIB);
    assert!(cloned.nvme_tcp_export);

    let listed = c
        .list_disks(&SlotPrefix::new("pvc-").unwrap(), soon())
        .await
        .unwrap();
    let names: Vec<&str> = listed.iter().map(|d| d.slot.as_str()).collect();
    assert_eq!(names, ["pvc-1", "pvc-2"]);
    let pool = c.pool_capacity(soon()).await.unwrap();
    assert_eq!(pool.free, 100 * GIB - 13 * GIB);
    // The pool gauges (the pool-nearly-full alert) show the last read.
    let text = metrics.render();
    for want in [
        format!("rds_csi_rds_pool_size_bytes {}", 100 * GIB),
        format!("rds_csi_rds_pool_free_bytes {}", 100 * GIB - 13 * GIB),
    ] {
        assert!(text.lines().any(|l| l == want), "{want} not in:\n{text}");
    }

    for s in [&s, &snap, &clone] {
        c.delete_disk(s, soon()).await.unwrap();
        assert_eq!(c.get_disk(s, soon()).await.unwrap(), None);
        // Deleting again is fine (idempotent).
        c.delete_disk(s, soon()).await.unwrap();
    }
    assert!(
        !backing.exists(),
        "the backing file is removed with the disk"
    );
    assert!(sim.disks().is_empty());
    assert_eq!(c.pool_capacity(soon()).await.unwrap().free, 100 * GIB);

    assert_eq!(
        c.connections_opened(),
        1,
        "one connection served everything"
    );
    let text = metrics.render();
    assert!(
        text.contains("rds_csi_rds_commands_total{kind=\"mutation\",result=\"ok\"}"),
        "{text}"
    );
    assert!(text.contains("rds_csi_rds_breaker_state 0"), "{text}");
    assert!(text.contains("rds_csi_rds_command_duration_seconds_count{kind=\"read\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_and_a_half_gib_request_yields_exactly_the_planned_size() {
    let (_dir, sim) = common::simulator().await;
    let (c, _m) = client(&sim);
    let request = 3 * GIB / 2;
    let planned = plan_volume_size(request, 0).unwrap();
    assert_eq!(planned, 1536 * MIB);
    let disk = create(&c, "pvc-half", planned).await;
    assert!(disk.size_bytes >= request);
    assert_eq!(disk.size_bytes, planned);
    assert!(
        sim.commands()
            .iter()
            .any(|c| c.contains("file-size=\"1536M\"")),
        "{:?}",
        sim.commands()
    );
    // An odd request rounds UP to the next MiB, never down.
    let odd = plan_volume_size(GIB + 1, 0).unwrap();
    let disk = create(&c, "pvc-odd", odd).await;
    assert_eq!(disk.size_bytes, GIB + MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lost_after_disk_add_yields_one_disk_and_create_succeeds_by_looking() {
    let (_dir, sim) = common::simulator().await;
    let (c, _m) = client(&sim);
    let s = slot("pvc-lost");
    assert_eq!(c.get_disk(&s, soon()).await.unwrap(), None);
    let before = sim.commands().len();
    // The simulator runs the next `/disk add`, then drops the connection unanswered.
    sim.fault("only=disk-add drop-after-exec=1");
    let disk = c
        .create_disk(&path(&s), GIB, &s, &export(&s), LookFirst::Yes, soon())
        .await
        .unwrap();
    assert_eq!(disk.size_bytes, GIB);
    let sent: Vec<String> = sim.commands()[before..].to_vec();
    let adds = sent.iter().filter(|c| c.starts_with("/disk add")).count();
    assert_eq!(adds, 1, "never re-sent: {sent:?}");
    assert_eq!(sim.disks().len(), 1);
    assert!(
        c.connections_opened() >= 2,
        "the lost connection was replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_mismatch_is_refused_naming_both_fingerprints() {
    let (_dir, sim) = common::simulator().await;
    let wrong = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILNkQ4AIqQFHFKn5zBls6OM2C9F4FzwzywxTjPjXIS9";
    let mut cfg = sim.client_config(BASE);
    cfg.host_key = HostKeyPolicy::Pinned(format!("rds.example {wrong}"));
    let (c, _m) = client_with(cfg);
    let err = c.health(soon()).await.unwrap_err();
    assert_eq!(err.kind(), RdsErrorKind::Transport);
    let pinned = russh::keys::PublicKey::from_openssh(wrong).unwrap();
    let served = russh::keys::PublicKey::from_openssh(sim.host_key_line()).unwrap();
    let fp = |k: &russh::keys::PublicKey| k.fingerprint(russh::keys::HashAlg::Sha256).to_string();
    assert!(err.message().contains(&fp(&pinned)), "{err}");
    assert!(err.message().contains(&fp(&served)), "{err}");
    assert!(
        sim.commands().is_empty(),
        "nothing sent to an unverified host"
    );

    // The fingerprint form of the right key works.
    let mut cfg = sim.client_config(BASE);
    cfg.host_key = HostKeyPolicy::Pinned(fp(&served));
    let (c, _m) = client_with(cfg);
    assert_eq!(c.health(soon()).await.unwrap(), "rds-simulator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorized_key_is_refused_with_a_next_step() {
    let (_dir, sim) = common::simulator().await;
    let other = tempfile::tempdir().unwrap();
    // A second simulator directory generates a different client key.
    let stranger = start_simulator(other.path(), SimOptions::default()).await;
    let mut cfg = sim.client_config(BASE);
    cfg.key_file = stranger.client_key().to_path_buf();
    let (c, _m) = client_with(cfg);
    let err = c.health(soon()).await.unwrap_err();
    assert_eq!(err.kind(), RdsErrorKind::Transport);
    assert!(err.message().contains("refused public-key login"), "{err}");
    assert!(sim.commands().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_key_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("rsa");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&key)
        .status();
    if !matches!(made, Ok(s) if s.success()) {
        eprintln!("SKIP an_rsa_key_logs_in: ssh-keygen is not available to make an RSA key");
        return;
    }
    let simdir = dir.path().join("sim");
    std::fs::create_dir_all(&simdir).unwrap();
    std::fs::write(
        simdir.join("authorized_keys"),
        std::fs::read_to_string(key.with_extension("pub")).unwrap(),
    )
    .unwrap();
    let sim = start_simulator(&simdir, SimOptions::default()).await;
    let mut cfg = sim.client_config(BASE);
    cfg.key_file = key;
    let (c, _m) = client_with(cfg);
    assert_eq!(c.health(soon()).await.unwrap(), "rds-simulator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_attempts_are_refused_before_anything_is_sent() {
    let (_dir, sim) = common::simulator().await;
    let (c, _m) = client(&sim);
    for hostile in [
        "pvc-1\"] ; /system reboot",
        "pvc-1; /disk remove [find]",
        "pvc$(reboot)",
        "pvc-1\n/system reboot",
        "../../etc",
    ] {
        assert!(Slot::new(hostile).is_err(), "{hostile:?}");
        assert!(RdsPath::new(&base(), &format!("{BASE}/{hostile}.img")).is_err());
    }
    // A valid path under ANOTHER base never reaches the RDS either.
    let elsewhere = BasePath::new("/storage-pool/other").unwrap();
    let s = slot("pvc-x");
    let outside = RdsPath::volume_file(&elsewhere, &s).unwrap();
    let err = c
        .create_disk(&outside, GIB, &s, &export(&s), LookFirst::Yes, soon())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RdsErrorKind::Invalid);
    assert!(err.message().contains("not inside the base path"), "{err}");
    let err = refused_create(&c, &s, 0).await;
    assert_eq!(err.kind(), RdsErrorKind::Invalid);
    assert!(sim.commands().is_empty(), "{:?}", sim.commands());
    assert_eq!(sim.connections(), 0, "not even a connection was opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_expiry_returns_promptly_under_injected_latency() {
    let (_dir, sim) = common::simulator().await;
    let (c, metrics) = client(&sim);
    c.health(soon()).await.unwrap();
    // Over SSH, as an operator would.
    let (out, _, status) = sim.ssh_exec("/simulator fault latency=5s").await;
    assert_eq!((out.as_str(), status), ("", Some(0)));
    let started = StdInstant::now();
    let err = c
        .get_disk(&slot("pvc-1"), Instant::now() + Duration::from_millis(300))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), RdsErrorKind::Timeout);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(took >= Duration::from_millis(250), "took {took:?}");
    assert!(metrics
        .render()
        .contains("rds_csi_rds_commands_total{kind=\"read\",result=\"timeout\"} 1"));
    // A timeout is one transport failure (a hung RDS shows as nothing else), below the
    // threshold of 5: the breaker stays closed, and the next answer resets the count.
    assert_eq!(c.breaker_state(), BreakerState::Closed);
    sim.ssh_exec("/simulator fault clear").await;
    c.health(soon()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_transport_failures_fails_fast_then_probes() {
    let (_dir, sim) = common::simulator().await;
    let mut cfg = sim.client_config(BASE);
    cfg.breaker_threshold = 3;
    cfg.breaker_cooldown = Duration::from_millis(800);
    let (c, metrics) = client_with(cfg);
    sim.fault("refuse-connections=yes");
    // Each refused connect is one transport failure; retries are attempts too.
    let err = c.health(soon()).await.unwrap_err();
    assert_eq!(err.kind(), RdsErrorKind::Transport);
    assert_eq!(c.breaker_state(), BreakerState::Open);
    assert!(metrics.render().contains("rds_csi_rds_breaker_state 1"));
    let started = StdInstant::now();
    let err = c.get_disk(&slot("pvc-1"), soon()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(err.kind(), RdsErrorKind::Transport);
    assert!(err.message().contains("circuit breaker"), "{err}");
    assert!(
        metrics
            .render()
            .contains("rds_csi_rds_commands_total{kind=\"read\",result=\"transport\"} 2"),
        "{}",
        metrics.render()
    );
    // The RDS comes back: after the cooldown one probe closes the breaker again.
    sim.fault("refuse-connections=no");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(c.health(soon()).await.unwrap(), "rds-simulator");
    assert_eq!(c.breaker_state(), BreakerState::Closed);
    assert!(metrics.render().contains("rds_csi_rds_breaker_state 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_read_is_retried_on_a_new_connection() {
    let (_dir, sim) = common::simulator().await;
    let (c, _m) = client(&sim);
    c.health(soon()).await.unwrap();
    sim.fault("drop-next=1");
    assert_eq!(c.health(soon()).await.unwrap(), "rds-simulator");
    assert_eq!(c.connections_opened(), 2);
    // A RouterOS-level failure is an answer, not a transport problem: no retry.
    sim.fault("fail-next=1");
    let err = c.health(soon()).await.unwrap_err();
    assert_eq!(err.kind(), RdsErrorKind::Unknown);
    assert!(err.message().contains("simulated failure"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_is_no_space() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SimOptions {
        pool_size: 4 * GIB,
        ..Default::default()
    };
    let sim = start_simulator(dir.path(), opts).await;
    let (c, _m) = client(&sim);
    create(&c, "pvc-a", 3 * GIB).await;
    let s = slot("pvc-b");
    let err = refused_create(&c, &s, 2 * GIB).await;
    assert_eq!(err.kind(), RdsErrorKind::NoSpace);
    assert!(err.command().starts_with("/disk add"), "{err}");
    let err = c
        .resize_disk(&slot("pvc-a"), 5 * GIB, soon())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RdsErrorKind::NoSpace);
    // The injected form.
    sim.fault("disk-full=yes");
    let err = refused_create(&c, &s, GIB).await;
    assert_eq!(err.kind(), RdsErrorKind::NoSpace);
    assert_eq!(sim.disks().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_simulator_restart() {
    let (dir, sim) = common::simulator().await;
    let host_key = sim.host_key_line().to_string();
    let (c, _m) = client(&sim);
    let disk = create(&c, "pvc-keep", 2 * GIB).await;
    sim.shutdown().await;

    let sim = start_simulator(dir.path(), SimOptions::default()).await;
    assert_eq!(sim.host_key_line(), host_key, "the host key is persisted");
    let (c, _m) = client(&sim);
    assert_eq!(
        c.get_disk(&slot("pvc-keep"), soon()).await.unwrap(),
        Some(disk)
    );
    assert_eq!(c.pool_capacity(soon()).await.unwrap().free, 98 * GIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_share_one_connection() {
    let (_dir, sim) = common::simulator().await;
    let (c, _m) = client(&sim);
    create(&c, "pvc-c", GIB).await;
    // With 100 ms per command and 8 channels at once, 32 commands take ~0.4 s, not 3.2 s.
    sim.fault("latency=100ms");
    let started = StdInstant::now();
    let calls = (0..32).map(|_| {
        let c = c.clone();
        tokio::spawn(async move { c.get_disk(&slot("pvc-c"), soon()).await })
    });
    for call in calls.collect::<Vec<_>>() {
        assert!(call.await.unwrap().unwrap().is_some());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(c.connections_opened(), 1);
    assert_eq!(sim.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routeros_errors_come_back_over_the_wire() {
    let (_dir, sim) = common::simulator().await;
    let (out, _, status) = sim.ssh_exec("/disk frobnicate").await;
    assert_eq!(out, "bad command name frobnicate (line 1 column 7)\n");
    assert_eq!(status, Some(1));
    let (out, _, status) = sim.ssh_exec("/disk add slot=\"x").await;
    assert_eq!(out, "syntax error (line 1 column 16)\n");
    assert_eq!(status, Some(1));
    let (out, _, _) = sim.ssh_exec("/disk remove 7").await;
    assert_eq!(out, "no such item\n");
    let (out, _, status) = sim.ssh_exec("/simulator print").await;
    assert!(
        out.contains("latency=0ms") && out.contains("commands=3"),
        "{out}"
    );
    assert_eq!(status, Some(0));
}

fn fake_configfs(root: &Path) {
    std::fs::create_dir_all(root.join("subsystems")).unwrap();
    std::fs::create_dir_all(root.join("ports")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvmet_export_follows_the_disk_on_a_fake_configfs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("configfs/nvmet");
    fake_configfs(&root);
    let opts = SimOptions {
        export: ExportConfig::Nvmet {
            configfs_root: root.clone(),
            listen: "127.0.0.1:4420".into(),
        },
        ..Default::default()
    };
    let sim = start_simulator(&dir.path().join("sim"), opts).await;
    let (c, _m) = client(&sim);
    create(&c, "pvc-nv", GIB).await;
    let nqn = "nqn.2000-02.com.mikrotik:pvc-nv";
    let subsys = root.join("subsystems").join(nqn);
    let ns = subsys.join("namespaces/1");
    assert_eq!(
        std::fs::read_to_string(ns.join("device_path")).unwrap(),
        sim.data_dir()
            .join("storage-pool/csi/pvc-nv.img")
            .display()
            .to_string()
    );
    assert_eq!(std::fs::read_to_string(ns.join("enable")).unwrap(), "1");
    assert_eq!(
        std::fs::read_to_string(subsys.join("attr_allow_any_host")).unwrap(),
        "1"
    );
    let link = root.join("ports/1/subsystems").join(nqn);
    assert_eq!(std::fs::read_link(&link).unwrap(), subsys);
    c.delete_disk(&slot("pvc-nv"), soon()).await.unwrap();
    assert!(!subsys.exists());
    assert!(std::fs::symlink_metadata(&link).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_answer_is_an_error_not_a_memory_hog() {
    let (_dir, sim) = common::simulator().await;
    let (c, _m) = client(&sim);
    for i in 0..4 {
        create(&c, &format!("pvc-big-{i}"), GIB).await;
    }
    let mut cfg = sim.client_config(BASE);
    cfg.max_output_bytes = 2000;
    let (small, _m2) = client_with(cfg);
    let err = small
        .list_disks(&SlotPrefix::new("pvc-").unwrap(), soon())
        .await
        .unwrap_err();
    assert!(err.message().contains("more than 2000 bytes"), "{err}");
    // One disk fits; the connection is still usable afterwards.
    assert!(small
        .get_disk(&slot("pvc-big-0"), soon())
        .await
        .unwrap()
        .is_some());
}
