//! The node plugin's service surface without devices: NodeGetInfo, capabilities, request
//! validation, the host identity, and `rds-csi node` refusing bad configuration.

mod common;

use common::Served;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use csi_proto::v1 as csi;
use csi_proto::v1::identity_client::IdentityClient;
use csi_proto::v1::node_client::NodeClient;
use rds_csi::node::{NodeConfig, NodePlugin, TransportConfig};
use rds_csi::observability::Metrics;
use tonic::Code;

fn config(dir: &Path, transport: TransportConfig) -> NodeConfig {
    NodeConfig {
        node_id: "worker-7".into(),
        driver_name: "rds.csi.mikrotik.com".into(),
        transport,
        nqn_prefix: "nqn.2000-02.com.mikrotik:pvc-".into(),
        state_dir: dir.join("state"),
        host_nqn_file: dir.join("etc-nvme/hostnqn"),
        host_id_file: dir.join("etc-nvme/hostid"),
        proc_root: "/proc".into(),
        sys_root: dir.join("sys"),
        dev_root: dir.join("dev"),
        max_volumes: 24,
        topology: [(
            "topology.rds.csi.mikrotik.com/zone".to_string(),
            "rack-1".to_string(),
        )]
        .into(),
        reconcile_interval: None,
    }
}

async fn start(cfg: NodeConfig, sock: PathBuf) -> Served {
    let plugin = NodePlugin::new(cfg, &Metrics::new("node")).unwrap();
    common::serve(plugin.routes(), sock, Duration::from_secs(2)).await
}

/// A node plugin with the NVMe/TCP transport over `dir` (see [`config`]), on `dir/<sock>`.
async fn start_nvme_tcp(dir: &Path, sock: &str) -> Served {
    start(config(dir, TransportConfig::NvmeTcp), dir.join(sock)).await
}

/// The answer of a call that must succeed.
fn answer<T>(r: Result<tonic::Response<T>, tonic::Status>) -> T {
    r.expect("the call answers OK").into_inner()
}

impl Served {
    async fn node(&self) -> NodeClient<tonic::transport::Channel> {
        NodeClient::new(common::unix_channel(&self.sock).await)
    }
}

#[tokio::test]
async fn node_get_info_reports_the_node_and_the_host_nqn_is_generated_once_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let r = start_nvme_tcp(d.path(), "a.sock").await;
    let mut c = r.node().await;
    let info = answer(c.node_get_info(csi::NodeGetInfoRequest {}).await);
    assert_eq!(info.node_id, "worker-7");
    assert_eq!(info.max_volumes_per_node, 24);
    let topo = info.accessible_topology.unwrap().segments;
    assert_eq!(
        topo.get("topology.rds.csi.mikrotik.com/zone")
            .map(String::as_str),
        Some("rack-1")
    );
    r.shutdown().await;

    let nqn = std::fs::read_to_string(d.path().join("etc-nvme/hostnqn")).unwrap();
    let id = std::fs::read_to_string(d.path().join("etc-nvme/hostid")).unwrap();
    assert!(
        nqn.trim().starts_with("nqn.2014-08.org.nvmexpress:uuid:")
            && nqn.trim().ends_with(id.trim()),
        "{nqn} / {id}"
    );
    // A restart presents the same identity to the RDS.
    let r = start_nvme_tcp(d.path(), "b.sock").await;
    r.node()
        .await
        .node_get_info(csi::NodeGetInfoRequest {})
        .await
        .unwrap();
    r.shutdown().await;
    assert_eq!(
        std::fs::read_to_string(d.path().join("etc-nvme/hostnqn")).unwrap(),
        nqn
    );
}

#[tokio::test]
async fn capabilities_and_readiness_follow_the_transport() {
    use csi::node_service_capability::{rpc::Type, Type as T};
    let d = tempfile::tempdir().unwrap();
    let r = start_nvme_tcp(d.path(), "c.sock").await;
    let mut c = r.node().await;
    let caps = answer(
        c.node_get_capabilities(csi::NodeGetCapabilitiesRequest {})
            .await,
    );
    let mut got: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| c.r#type.as_ref().map(|T::Rpc(r)| r.r#type))
        .collect();
    got.sort();
    let want = [
        Type::StageUnstageVolume,
        Type::GetVolumeStats,
        Type::ExpandVolume,
        Type::VolumeCondition,
    ];
    assert_eq!(got, want.iter().map(|t| *t as i32).collect::<Vec<_>>());
    // No <dev>/nvme-fabrics in the fake dev root: not ready, until it appears.
    let mut id = IdentityClient::new(common::unix_channel(&r.sock).await);
    assert_eq!(
        answer(id.probe(csi::ProbeRequest {}).await).ready,
        Some(false)
    );
    std::fs::create_dir_all(d.path().join("dev")).unwrap();
    std::fs::write(d.path().join("dev/nvme-fabrics"), "").unwrap();
    assert_eq!(
        answer(id.probe(csi::ProbeRequest {}).await).ready,
        Some(true)
    );
    let plugin_caps = id
        .get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        !format!("{plugin_caps:?}").contains("ControllerService"),
        "the node serves no controller"
    );
    r.shutdown().await;
}

fn mount_cap(mode: csi::volume_capability::access_mode::Mode) -> csi::VolumeCapability {
    use csi::volume_capability::{AccessMode, AccessType, MountVolume};
    csi::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

fn ctx(nqn: &str) -> HashMap<String, String> {
    [
        ("nvmeAddress", "10.0.0.5"),
        ("nvmePort", "4420"),
        ("nqn", nqn),
        ("ctrlLossTmo", "600"),
        ("reconnectDelay", "2"),
        ("keepAliveTmo", "5"),
        ("migrationTimeoutSeconds", "300"),
        ("fresh", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test]
async fn bad_stage_requests_are_refused_before_touching_anything() {
    use csi::volume_capability::access_mode::Mode;
    let d = tempfile::tempdir().unwrap();
    let r = start_nvme_tcp(d.path(), "v.sock").await;
    let mut c = r.node().await;
    let staging = d.path().join("staging").to_string_lossy().into_owned();
    let req = |id: &str, path: &str, mode: Mode, nqn: &str| csi::NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: path.into(),
        volume_capability: Some(mount_cap(mode)),
        volume_context: ctx(nqn),
        ..Default::default()
    };
    let good_nqn = "nqn.2000-02.com.mikrotik:pvc-1";
    let cases = [
        (
            req("pvc-1", &staging, Mode::MultiNodeMultiWriter, good_nqn),
            Code::InvalidArgument,
            "Block",
        ),
        (
            req("pvc-1", "relative/path", Mode::SingleNodeWriter, good_nqn),
            Code::InvalidArgument,
            "absolute",
        ),
        (
            req("../etc", &staging, Mode::SingleNodeWriter, good_nqn),
            Code::InvalidArgument,
            "volume_id",
        ),
        (
            req("", &staging, Mode::SingleNodeWriter, good_nqn),
            Code::InvalidArgument,
            "volume_id",
        ),
        // Outside --nqn-prefix (e.g. the host's boot disk): never connected, so never disconnected.
        (
            req(
                "pvc-1",
                &staging,
                Mode::SingleNodeWriter,
                "nqn.2000-02.com.mikrotik:boot",
            ),
            Code::FailedPrecondition,
            "--nqn-prefix",
        ),
    ];
    for (rq, code, word) in cases {
        let s = c.node_stage_volume(rq).await.unwrap_err();
        assert_eq!(s.code(), code, "{}", s.message());
        assert!(
            s.message().contains(word),
            "{word:?} not in {}",
            s.message()
        );
    }
    assert!(
        !d.path().join("state/staged").exists()
            || std::fs::read_dir(d.path().join("state/staged"))
                .unwrap()
                .next()
                .is_none()
    );
    // Unknown volumes: unstage and unpublish are idempotent successes; publish needs a stage.
    c.node_unstage_volume(csi::NodeUnstageVolumeRequest {
        volume_id: "pvc-9".into(),
        staging_target_path: staging.clone(),
    })
    .await
    .unwrap();
    c.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
        volume_id: "pvc-9".into(),
        target_path: d.path().join("gone").to_string_lossy().into(),
    })
    .await
    .unwrap();
    let s = c
        .node_publish_volume(csi::NodePublishVolumeRequest {
            volume_id: "pvc-9".into(),
            staging_target_path: staging.clone(),
            target_path: d.path().join("t").to_string_lossy().into(),
            volume_capability: Some(mount_cap(Mode::SingleNodeWriter)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(
        s.message().contains("pvc-9") && s.message().contains("not staged"),
        "{}",
        s.message()
    );
    r.shutdown().await;
}

/// The running boot, as the node plugin reads it.
fn boot() -> rds_csi::node::stage_record::Boot {
    rds_csi::node::stage_record::Boot::current(Path::new("/proc")).unwrap()
}

/// A stage record of this boot, as NodeStage of an NVMe/TCP volume leaves it.
fn nvme_record(volume_id: &str, staging: &Path) -> rds_csi::node::stage_record::StageRecord {
    use rds_csi::node::stage_record::{AccessType, StageRecord, StagedDevice};
    use rds_csi::node::transport::{NvmeTarget, Target};
    StageRecord {
        volume_id: volume_id.into(),
        boot_id: Some(boot().id),
        target: Target::NvmeTcp(NvmeTarget {
            nqn: node_io::nqn::Nqn::new(format!("nqn.2000-02.com.mikrotik:{volume_id}")).unwrap(),
            address: rds_csi::volume::NvmeAddress::parse("10.0.0.5").unwrap(),
            port: 4420,
            tunables: Default::default(),
        }),
        access: AccessType::Mount,
        staging_path: staging.to_owned(),
        device: Some(StagedDevice {
            name: "nvme0n1".into(),
            dev: node_io::dev_num::DevNum::new(259, 0),
        }),
        fs_type: Some(rds_csi::volume::FsType::Ext4),
        formatting: None,
    }
}

fn node_cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rds-csi"));
    c.arg("node")
        .arg("--endpoint")
        .arg(format!("unix://{}", dir.join("csi.sock").display()))
        .args(["--metrics-address", ""])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--host-nqn-file")
        .arg(dir.join("hostnqn"))
        .arg("--host-id-file")
        .arg(dir.join("hostid"));
    // The contract reads flags from the environment too: keep the test's own out.
    for (k, _) in std::env::vars() {
        if k.starts_with("RDS_CSI_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn a_cloned_default_host_nqn_stops_the_node_with_the_fix() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("hostnqn"),
        "nqn.2014-08.org.nvmexpress:uuid:03000200-0400-0500-0006-000700080009\n",
    )
    .unwrap();
    let out = node_cmd(d.path())
        .args([
            "--node-id",
            "worker-1",
            "--transport",
            "loop",
            "--loop-data-dir",
        ])
        .arg(d.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a cloned host NQN: {err}"
    );
    assert!(
        err.contains("cloned") && err.contains("hostnqn") && err.contains("remove"),
        "{err}"
    );
    assert!(!d.path().join("csi.sock").exists(), "never served");
}

#[test]
fn missing_flags_are_named_and_stop_the_node() {
    let d = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["--transport", "nvme-tcp"], "--node-id"),
        (
            &["--node-id", "w1", "--transport", "loop"],
            "--loop-data-dir",
        ),
        (&["--node-id", "w1", "--topology", "zone"], "--topology"),
    ];
    for (args, flag) in cases {
        let out = node_cmd(d.path()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{flag} not named: {err}");
    }
}

#[test]
fn every_node_metric_is_documented() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md")).unwrap();
    assert_eq!(rds_csi::node::metrics::NAMES.len(), 4);
    for name in rds_csi::node::metrics::NAMES {
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} is not documented in docs/cli.md"
        );
    }
}

/// A volume already staged — its record on disk as a previous NodeStage left it, and its
/// device attached (a fake sysfs shows the controller and namespace): a request for the same
/// staging path with another capability is ALREADY_EXISTS, one for another path
/// FAILED_PRECONDITION; neither touches the record. The same record with nothing of it left
/// in the kernel is no reason to refuse: the stage goes ahead and replaces it.
#[tokio::test]
async fn restaging_incompatibly_is_already_exists_at_the_same_path_and_a_precondition_elsewhere() {
    use csi::volume_capability::access_mode::Mode;
    use rds_csi::node::stage_record::{AccessType, StageRecord};
    let nqn = "nqn.2000-02.com.mikrotik:pvc-1";
    let d = tempfile::tempdir().unwrap();
    let sys = node_io::testing::FakeSys::multipath_y_of(nqn);
    let mut cfg = config(d.path(), TransportConfig::NvmeTcp);
    cfg.sys_root = sys.root().to_owned();
    let state_dir = cfg.state_dir.clone();
    let r = start(cfg, d.path().join("v.sock")).await;
    let mut c = r.node().await;
    let staging = d.path().join("staging");
    let record = StageRecord {
        access: AccessType::Block,
        fs_type: None,
        ..nvme_record("pvc-1", &staging)
    };
    record.save(&state_dir).unwrap();
    let req = |path: &Path, cap: csi::VolumeCapability| csi::NodeStageVolumeRequest {
        volume_id: "pvc-1".into(),
        staging_target_path: path.to_string_lossy().into(),
        volume_capability: Some(cap),
        volume_context: ctx(nqn),
        ..Default::default()
    };
    let mount = || mount_cap(Mode::SingleNodeWriter);
    let s = c
        .node_stage_volume(req(&staging, mount()))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::AlreadyExists, "{}", s.message());
    assert!(s.message().contains("pvc-1") && s.message().contains("unstage it first"));
    let s = c
        .node_stage_volume(req(&d.path().join("other"), mount()))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition, "{}", s.message());
    assert_eq!(
        StageRecord::load(&state_dir, "pvc-1", &boot())
            .unwrap()
            .as_ref(),
        Some(&record)
    );
    r.shutdown().await;

    // Nothing of that stage is left in the kernel (no controller): the record no longer
    // refuses; the stage proceeds (and fails here only at the connect: no nvme-fabrics).
    let d2 = tempfile::tempdir().unwrap();
    let cfg = config(d2.path(), TransportConfig::NvmeTcp);
    let state_dir = cfg.state_dir.clone();
    record.save(&state_dir).unwrap();
    let r = start(cfg, d2.path().join("v.sock")).await;
    let mut c = r.node().await;
    let other = d2.path().join("other");
    let s = c.node_stage_volume(req(&other, mount())).await.unwrap_err();
    assert_eq!(s.code(), Code::Unavailable, "{}", s.message());
    assert!(s.message().contains("nvme-fabrics"), "{}", s.message());
    let now = StageRecord::load(&state_dir, "pvc-1", &boot())
        .unwrap()
        .unwrap();
    assert_eq!((now.staging_path, now.access), (other, AccessType::Mount));
    r.shutdown().await;
}

/// CSI NodeGetVolumeStats / NodeExpandVolume: a volume this node holds nothing of does not
/// exist here — NOT_FOUND whatever the path's form (empty, relative, missing); only an empty
/// volume_id is INVALID_ARGUMENT. For a staged volume the path is then checked: empty or
/// relative is INVALID_ARGUMENT, a path that does not exist NOT_FOUND.
#[tokio::test]
async fn stats_and_expand_of_an_unknown_volume_are_not_found_whatever_the_path() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), TransportConfig::NvmeTcp);
    let state_dir = cfg.state_dir.clone();
    let r = start(cfg, d.path().join("v.sock")).await;
    let mut c = r.node().await;
    let missing = d.path().join("nowhere").to_string_lossy().into_owned();
    let stats = |id: &str, path: &str| csi::NodeGetVolumeStatsRequest {
        volume_id: id.into(),
        volume_path: path.into(),
        staging_target_path: String::new(),
    };
    let expand = |id: &str, path: &str| csi::NodeExpandVolumeRequest {
        volume_id: id.into(),
        volume_path: path.into(),
        ..Default::default()
    };
    let long = "v".repeat(100_000);
    for id in ["pvc-9", "some id/with a slash", long.as_str()] {
        for path in ["", "relative/path", missing.as_str()] {
            for s in [
                c.node_get_volume_stats(stats(id, path)).await.unwrap_err(),
                c.node_expand_volume(expand(id, path)).await.unwrap_err(),
            ] {
                assert_eq!(s.code(), Code::NotFound, "{id:.20}/{path}: {}", s.message());
                assert!(
                    s.message().len() < 600,
                    "echoes at most a few hundred bytes"
                );
            }
        }
    }
    for s in [
        c.node_get_volume_stats(stats("", "/x")).await.unwrap_err(),
        c.node_expand_volume(expand("", "/x")).await.unwrap_err(),
    ] {
        assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
        assert!(s.message().contains("volume_id"), "{}", s.message());
    }
    nvme_record("pvc-1", &d.path().join("staging"))
        .save(&state_dir)
        .unwrap();
    for (path, code) in [
        ("", Code::InvalidArgument),
        ("relative/path", Code::InvalidArgument),
        (missing.as_str(), Code::NotFound),
    ] {
        for s in [
            c.node_get_volume_stats(stats("pvc-1", path))
                .await
                .unwrap_err(),
            c.node_expand_volume(expand("pvc-1", path))
                .await
                .unwrap_err(),
        ] {
            assert_eq!(s.code(), code, "{path}: {}", s.message());
            assert!(s.message().contains("pvc-1"), "{}", s.message());
        }
    }
    r.shutdown().await;
}

/// Issue 15.10, replayed: a 100 KB name or id came back whole in the error, and gRPC C-core
/// clients then saw RESOURCE_EXHAUSTED instead of the error. Every node RPC now echoes at
/// most a few hundred bytes of any input — the id, each path, a context value, a mount
/// option — and still names the field and the code.
#[tokio::test]
async fn errors_echo_at_most_a_few_hundred_bytes_of_any_input() {
    use csi::volume_capability::access_mode::Mode;
    let d = tempfile::tempdir().unwrap();
    let r = start_nvme_tcp(d.path(), "v.sock").await;
    let mut c = r.node().await;
    let huge = "x".repeat(100_000);
    let huge_path = format!("/{}", "p".repeat(100_000));
    let staging = d.path().join("staging").to_string_lossy().into_owned();
    let stage = |id: &str, path: &str, ctx: HashMap<String, String>, flags: Vec<String>| {
        let mut cap = mount_cap(Mode::SingleNodeWriter);
        if let Some(csi::volume_capability::AccessType::Mount(m)) = &mut cap.access_type {
            m.mount_flags = flags;
        }
        csi::NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: path.into(),
            volume_capability: Some(cap),
            volume_context: ctx,
            ..Default::default()
        }
    };
    let nqn = "nqn.2000-02.com.mikrotik:pvc-1";
    let with = |k: &str, v: &str| {
        let mut m = ctx(nqn);
        m.insert(k.into(), v.into());
        m
    };
    let mut answers = vec![
        (
            "volume_id",
            c.node_stage_volume(stage(&huge, &staging, ctx(nqn), vec![]))
                .await,
        ),
        (
            "staging_target_path",
            c.node_stage_volume(stage("pvc-1", &huge_path, ctx(nqn), vec![]))
                .await,
        ),
        (
            "nvmeAddress",
            c.node_stage_volume(stage("pvc-1", &staging, with("nvmeAddress", &huge), vec![]))
                .await,
        ),
        (
            "nqn",
            c.node_stage_volume(stage("pvc-1", &staging, with("nqn", &huge), vec![]))
                .await,
        ),
        (
            "mount option",
            c.node_stage_volume(stage("pvc-1", &staging, ctx(nqn), vec![huge.clone()]))
                .await,
        ),
    ]
    .into_iter()
    .map(|(w, r)| (w, r.map(|_| ())))
    .collect::<Vec<_>>();
    answers.push((
        "target_path",
        c.node_publish_volume(csi::NodePublishVolumeRequest {
            volume_id: "pvc-1".into(),
            staging_target_path: staging.clone(),
            target_path: huge_path.clone(),
            volume_capability: Some(mount_cap(Mode::SingleNodeWriter)),
            ..Default::default()
        })
        .await
        .map(|_| ()),
    ));
    answers.push((
        "target_path",
        c.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: "pvc-1".into(),
            target_path: huge_path.clone(),
        })
        .await
        .map(|_| ()),
    ));
    answers.push((
        "volume_id",
        c.node_unstage_volume(csi::NodeUnstageVolumeRequest {
            volume_id: huge.clone(),
            staging_target_path: staging.clone(),
        })
        .await
        .map(|_| ()),
    ));
    for (word, answer) in answers {
        let s = answer.expect_err(word);
        assert_eq!(
            s.code(),
            Code::InvalidArgument,
            "{word}: {:.300}",
            s.message()
        );
        assert!(
            s.message().len() < 600,
            "{word}: {} bytes: {:.300}",
            s.message().len(),
            s.message()
        );
        assert!(s.message().contains(word), "{word}: {}", s.message());
    }
    r.shutdown().await;
}
