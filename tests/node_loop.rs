//! The node plugin over a real unix socket, on REAL loop devices with real mkfs/mount
//! (`--transport loop`). Needs root and e2fsprogs/xfsprogs; each test skips with a printed
//! reason otherwise. Tests run one at a time (loop numbers are reused right after a detach,
//! so a holder from a parallel test could match ours), and every mount and loop device under
//! a test's directory is removed on drop, also when the test fails.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use csi_proto::v1 as csi;
use csi_proto::v1::node_client::NodeClient;
use rds_csi::node::{NodeConfig, NodePlugin, TransportConfig};
use rds_csi::observability::Metrics;
use rds_csi::server;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

const MIB: u64 = 1 << 20;
/// mkfs.xfs refuses filesystems under 300 MB; the files are sparse.
const SIZE: u64 = 320 * MIB;

/// One loop-device test at a time (held across awaits, hence tokio's mutex).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why this machine cannot run the loop tests, if it cannot.
fn cannot_run() -> Option<String> {
    if !is_root() {
        return Some("needs root (loop devices, mount)".into());
    }
    for t in [
        "losetup",
        "mkfs.ext4",
        "mkfs.xfs",
        "xfs_growfs",
        "resize2fs",
    ] {
        if !have(t) {
            return Some(format!("{t} is not installed"));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("/dev/loop-control is missing".into());
    }
    None
}

/// Set in the copy of this test binary that runs inside its own pid namespace.
const IN_PIDNS: &str = "RDS_CSI_NODE_TEST_IN_PIDNS";

/// Whether the caller should run the test body here. Outside, re-runs `test` under
/// `unshare --pid --fork --mount-proc` and checks it passed there.
///
/// Why: the holder scan must be complete before a device is disconnected, and on this
/// machine pid 1 (the sandbox's supervisor, with more capabilities than the tests) cannot be
/// inspected, so every unstage would — rightly — be refused. In a pid namespace with its own
/// /proc every process is inspectable, as for the node plugin with hostPID on a real node;
/// the mounts also vanish with the namespace if a test dies.
/// `unstage_refuses_while_the_holder_scan_is_incomplete` covers the refusal itself.
async fn run_here(test: &str) -> bool {
    if std::env::var_os(IN_PIDNS).is_some() {
        return true;
    }
    if let Some(why) =
        cannot_run().or_else(|| (!have("unshare")).then(|| "unshare is not installed".into()))
    {
        eprintln!("SKIP {test}: {why}");
        return false;
    }
    let _serial = SERIAL.lock().await;
    let out = tokio::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(IN_PIDNS, "1")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("--- {test} in its own pid namespace ---\n{stdout}\n{stderr}");
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} failed in its pid namespace (see above)"
    );
    false
}

macro_rules! need_loop {
    ($name:literal) => {
        if !run_here($name).await {
            return;
        }
    };
}

/// On drop: lazily unmounts everything mounted under `root` and detaches every loop device
/// backed by a file under it. Declared before the TempDir so it runs first.
struct Cleanup {
    root: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|p| Path::new(p).starts_with(&self.root))
            .collect();
        points.reverse();
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(&p).status();
        }
        for d in loops_backing_under(&self.root) {
            let _ = Command::new("losetup")
                .arg("-d")
                .arg(format!("/dev/{d}"))
                .status();
        }
    }
}

/// Loop devices (not being detached) whose backing file lies under `root`, deleted or not.
fn loops_backing_under(root: &Path) -> Vec<String> {
    node_io::block::list_loop_devices(Path::new("/sys"))
        .unwrap()
        .into_iter()
        .filter(|d| !d.autoclear && d.backing_file.starts_with(root))
        .map(|d| d.name)
        .collect()
}

struct Harness {
    _cleanup: Cleanup,
    dir: tempfile::TempDir,
    data: PathBuf,
    state: PathBuf,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), server::ServeError>>,
    metrics: Metrics,
    c: NodeClient<Channel>,
    // Last: released only after the cleanup ran.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Harness {
    async fn start() -> Harness {
        let serial = SERIAL.lock().await;
        // /tmp may be a symlink on some systems; mountinfo shows canonical paths.
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let (data, state) = (root.join("data"), root.join("state"));
        std::fs::create_dir_all(&data).unwrap();
        let cfg = NodeConfig {
            node_id: "node-a".into(),
            driver_name: "rds.csi.mikrotik.com".into(),
            transport: TransportConfig::Loop {
                data_dir: data.clone(),
            },
            nqn_prefix: "nqn.2000-02.com.mikrotik:pvc-".into(),
            state_dir: state.clone(),
            host_nqn_file: root.join("nvme/hostnqn"),
            host_id_file: root.join("nvme/hostid"),
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            dev_root: "/dev".into(),
            max_volumes: 0,
            topology: Default::default(),
            reconcile_interval: None,
        };
        let metrics = Metrics::new("node");
        let plugin = NodePlugin::new(cfg, &metrics).unwrap();
        let sock = root.join("csi.sock");
        let listener = server::bind(&rds_csi::endpoint::Endpoint::Unix(sock.clone()))
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(server::serve(
            listener,
            plugin.routes(),
            stop.clone(),
            Duration::from_secs(5),
        ));
        let c = NodeClient::new(common::unix_channel(&sock).await);
        Harness {
            _cleanup: Cleanup { root: root.clone() },
            dir,
            data,
            state,
            stop,
            task,
            metrics,
            c,
            _serial: serial,
        }
    }

    fn root(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).unwrap()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// A backing file of SIZE bytes starting with `content`, as the simulator would create.
    fn volume(&self, id: &str, fresh: bool, content: &[u8]) -> Vol {
        let file = self.data.join(format!("storage-pool/csi/{id}.img"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(SIZE)
            .unwrap();
        let mut ctx = HashMap::new();
        for (k, v) in [
            ("nvmeAddress", "127.0.0.1"),
            ("nvmePort", "4420"),
            ("ctrlLossTmo", "600"),
            ("reconnectDelay", "2"),
            ("keepAliveTmo", "5"),
            ("migrationTimeoutSeconds", "300"),
            ("fresh", if fresh { "true" } else { "false" }),
        ] {
            ctx.insert(k.to_string(), v.to_string());
        }
        ctx.insert("nqn".into(), format!("nqn.2000-02.com.mikrotik:{id}"));
        ctx.insert("volumeFile".into(), format!("/storage-pool/csi/{id}.img"));
        Vol {
            id: id.into(),
            file,
            ctx,
            staging: self.path(&format!("kubelet/plugins/staging/{id}/globalmount")),
            target: self.path(&format!("kubelet/pods/p1/volumes/{id}/mount")),
        }
    }

    async fn stage(&mut self, v: &Vol, cap: csi::VolumeCapability) -> Result<(), tonic::Status> {
        self.c
            .node_stage_volume(csi::NodeStageVolumeRequest {
                volume_id: v.id.clone(),
                staging_target_path: v.staging.to_string_lossy().into(),
                volume_capability: Some(cap),
                volume_context: v.ctx.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ())
    }

    async fn unstage(&mut self, v: &Vol) -> Result<(), tonic::Status> {
        self.c
            .node_unstage_volume(csi::NodeUnstageVolumeRequest {
                volume_id: v.id.clone(),
                staging_target_path: v.staging.to_string_lossy().into(),
            })
            .await
            .map(|_| ())
    }

    async fn publish(
        &mut self,
        v: &Vol,
        cap: csi::VolumeCapability,
        readonly: bool,
    ) -> Result<(), tonic::Status> {
        self.c
            .node_publish_volume(csi::NodePublishVolumeRequest {
                volume_id: v.id.clone(),
                staging_target_path: v.staging.to_string_lossy().into(),
                target_path: v.target.to_string_lossy().into(),
                volume_capability: Some(cap),
                readonly,
                ..Default::default()
            })
            .await
            .map(|_| ())
    }

    async fn unpublish(&mut self, v: &Vol) -> Result<(), tonic::Status> {
        self.c
            .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                volume_id: v.id.clone(),
                target_path: v.target.to_string_lossy().into(),
            })
            .await
            .map(|_| ())
    }

    async fn stats(
        &mut self,
        v: &Vol,
        path: &Path,
    ) -> Result<csi::NodeGetVolumeStatsResponse, tonic::Status> {
        self.c
            .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
                volume_id: v.id.clone(),
                volume_path: path.to_string_lossy().into(),
                staging_target_path: v.staging.to_string_lossy().into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

struct Vol {
    id: String,
    file: PathBuf,
    ctx: HashMap<String, String>,
    staging: PathBuf,
    target: PathBuf,
}

impl Vol {
    /// Loop devices attached to this volume's file right now.
    fn loops(&self) -> Vec<String> {
        loops_backing_under(&self.file)
    }
    fn device(&self) -> PathBuf {
        let l = self.loops();
        assert_eq!(
            l.len(),
            1,
            "expected exactly one loop device over {}: {l:?}",
            self.file.display()
        );
        PathBuf::from(format!("/dev/{}", l[0]))
    }
}

fn mount_cap(fs: &str) -> csi::VolumeCapability {
    use csi::volume_capability::{access_mode::Mode, AccessMode, AccessType, MountVolume};
    csi::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: vec!["noatime".into()],
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn block_cap() -> csi::VolumeCapability {
    use csi::volume_capability::{access_mode::Mode, AccessMode, AccessType, BlockVolume};
    csi::VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        }),
    }
}

/// The mount (if any) on top at `p`: (major:minor, fs type, options).
fn mount_at(p: &Path) -> Option<(String, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (Path::new(f[4]) == p).then(|| (f[2].to_owned(), f[sep + 1].to_owned(), f[5].to_owned()))
    })
}

fn dev_of(p: &Path) -> String {
    let rdev = std::fs::metadata(p).unwrap().rdev();
    format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

fn first_bytes(p: &Path, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    std::fs::File::open(p).unwrap().read_exact(&mut b).unwrap();
    b
}

fn expect_code(r: Result<(), tonic::Status>, code: Code, words: &[&str]) -> String {
    let s = r.expect_err("the call should have been refused");
    assert_eq!(s.code(), code, "{}", s.message());
    for w in words {
        assert!(
            s.message().contains(w),
            "{w:?} missing from: {}",
            s.message()
        );
    }
    s.message().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_and_xfs_volumes_live_a_full_cycle_and_restage_without_reformatting() {
    need_loop!("ext4_and_xfs_volumes_live_a_full_cycle_and_restage_without_reformatting");
    let mut h = Harness::start().await;
    for fs in ["ext4", "xfs"] {
        let v = h.volume(&format!("pvc-cycle-{fs}"), true, &[]);
        for _ in 0..2 {
            h.stage(&v, mount_cap(fs)).await.unwrap();
        }
        let dev = v.device();
        let (mdev, mfs, _) = mount_at(&v.staging).expect("staging path mounted");
        assert_eq!((mdev, mfs.as_str()), (dev_of(&dev), fs));
        assert!(
            h.state.join("staged").join(&v.id).is_file(),
            "stage record persisted"
        );
        for _ in 0..2 {
            h.publish(&v, mount_cap(fs), false).await.unwrap();
        }
        std::fs::write(v.target.join("hello.txt"), format!("written on {fs}")).unwrap();
        for _ in 0..2 {
            h.unpublish(&v).await.unwrap();
        }
        assert!(!v.target.exists(), "target removed");
        for _ in 0..2 {
            h.unstage(&v).await.unwrap();
        }
        assert!(mount_at(&v.staging).is_none());
        assert!(v.loops().is_empty(), "loop device detached");
        assert!(
            !h.state.join("staged").join(&v.id).exists(),
            "stage record removed"
        );

        // The context still says fresh: only the probe stands between the data and mkfs.
        h.stage(&v, mount_cap(fs)).await.unwrap();
        h.publish(&v, mount_cap(fs), true).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(v.target.join("hello.txt")).unwrap(),
            format!("written on {fs}")
        );
        let (_, _, opts) = mount_at(&v.target).unwrap();
        assert!(
            opts.split(',').any(|o| o == "ro"),
            "readonly publish is ro: {opts}"
        );
        assert!(std::fs::write(v.target.join("nope"), "x").is_err());
        // Publishing the same target read-write now is a different capability.
        expect_code(
            h.publish(&v, mount_cap(fs), false).await,
            Code::AlreadyExists,
            &[&v.id],
        );
        h.unpublish(&v).await.unwrap();
        h.unstage(&v).await.unwrap();
        assert!(v.loops().is_empty());
    }
    let text = h.metrics.render();
    assert!(
        text.contains(r#"rds_csi_node_operations_total{op="stage",result="ok"} 6"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rds_csi_node_operations_total{op="publish",result="already_exists"} 2"#),
        "{text}"
    );
    assert!(
        text.contains("rds_csi_node_stage_duration_seconds_count 6"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_volume_not_marked_fresh_is_refused_and_stays_all_zero() {
    need_loop!("a_blank_volume_not_marked_fresh_is_refused_and_stays_all_zero");
    let mut h = Harness::start().await;
    let v = h.volume("pvc-clone-blank", false, &[]);
    let (dev, e) = v.refused_stage(&mut h, mount_cap("ext4")).await;
    let m = expect_code(
        Err(e),
        Code::FailedPrecondition,
        &[
            "pvc-clone-blank",
            &dev,
            "not marked fresh",
            "nothing was formatted",
        ],
    );
    eprintln!("refusal: {m}");
    assert!(mount_at(&v.staging).is_none());
    let mut f = std::fs::File::open(&v.file).unwrap();
    let mut buf = vec![0u8; 4 * MIB as usize];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(
            buf[..n].iter().all(|b| *b == 0),
            "byte changed near offset {total}"
        );
        total += n as u64;
    }
    assert_eq!(total, SIZE);
    h.unstage(&v).await.unwrap();
    assert!(v.loops().is_empty());
    h.stop().await;
}

impl Vol {
    /// Stages expecting a refusal; returns the device name that was attached and the error.
    async fn refused_stage(
        &self,
        h: &mut Harness,
        cap: csi::VolumeCapability,
    ) -> (String, tonic::Status) {
        let e = h
            .stage(self, cap)
            .await
            .expect_err("stage should be refused");
        let name = self.loops().first().cloned().unwrap_or_default();
        (name, e)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_signature_is_refused_and_the_bytes_are_untouched() {
    need_loop!("an_unknown_signature_is_refused_and_the_bytes_are_untouched");
    let mut h = Harness::start().await;
    let mut noise = vec![0u8; 2 * MIB as usize];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    // Fresh, yet the data is not blank: it must never be formatted.
    let v = h.volume("pvc-noise", true, &noise);
    let (dev, e) = v.refused_stage(&mut h, mount_cap("xfs")).await;
    expect_code(
        Err(e),
        Code::FailedPrecondition,
        &[
            "pvc-noise",
            &dev,
            "no known signature",
            "nothing was formatted",
        ],
    );
    assert_eq!(first_bytes(&v.file, noise.len()), noise, "bytes unchanged");
    let len = std::fs::metadata(&v.file).unwrap().len();
    assert_eq!(len, SIZE);
    h.unstage(&v).await.unwrap();
    assert_eq!(first_bytes(&v.file, noise.len()), noise);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_volume_is_a_device_node_raw_io_reaches_the_file_and_a_stale_node_is_repaired() {
    need_loop!(
        "a_block_volume_is_a_device_node_raw_io_reaches_the_file_and_a_stale_node_is_repaired"
    );
    let mut h = Harness::start().await;
    let v = h.volume("pvc-block", false, &[]);
    h.stage(&v, block_cap()).await.unwrap();
    h.stage(&v, block_cap()).await.unwrap();
    let dev = v.device();
    for _ in 0..2 {
        h.publish(&v, block_cap(), false).await.unwrap();
    }
    let md = std::fs::symlink_metadata(&v.target).unwrap();
    assert!(
        md.file_type().is_block_device(),
        "a device node, not a bind mount"
    );
    assert_eq!(md.permissions().mode() & 0o777, 0o660);
    assert_eq!(dev_of(&v.target), dev_of(&dev));
    assert!(mount_at(&v.target).is_none());

    let pattern: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&v.target)
        .unwrap();
    f.seek(SeekFrom::Start(MIB)).unwrap();
    f.write_all(&pattern).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let mut back = std::fs::File::open(&v.file).unwrap();
    back.seek(SeekFrom::Start(MIB)).unwrap();
    let mut got = vec![0u8; pattern.len()];
    back.read_exact(&mut got).unwrap();
    assert_eq!(
        got, pattern,
        "written through the node, read from the backing file"
    );

    // A node left pointing at another device (renumbering) is replaced.
    std::fs::remove_file(&v.target).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &v.target,
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(7, 250),
    )
    .unwrap();
    h.publish(&v, block_cap(), false).await.unwrap();
    assert_eq!(dev_of(&v.target), dev_of(&dev), "repaired");

    for _ in 0..2 {
        h.unpublish(&v).await.unwrap();
    }
    assert!(std::fs::symlink_metadata(&v.target).is_err());
    h.unstage(&v).await.unwrap();
    assert!(v.loops().is_empty());
    h.stop().await;
}

/// `sh` holding `path` open as fd 3, then exec'ing `sleep` (comm "sleep").
struct Holder(Child);

impl Holder {
    fn open(path: &Path) -> Holder {
        let mut child = Command::new("sh")
            .args(["-c", "exec 3<\"$1\" && echo ready && exec sleep 30", "sh"])
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        let comm = format!("/proc/{}/comm", child.id());
        for _ in 0..500 {
            if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep") {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstage_refuses_while_a_process_holds_the_device_and_detaches_after_it_exits() {
    need_loop!("unstage_refuses_while_a_process_holds_the_device_and_detaches_after_it_exits");
    let mut h = Harness::start().await;
    let v = h.volume("pvc-held", false, &[]);
    h.stage(&v, block_cap()).await.unwrap();
    h.publish(&v, block_cap(), false).await.unwrap();
    let dev = v.device();
    let name = dev.file_name().unwrap().to_string_lossy().into_owned();
    // A VM still running: it holds the node it was given, after the kubelet unpublished.
    let holder = Holder::open(&v.target);
    h.unpublish(&v).await.unwrap();
    let pid = holder.0.id().to_string();
    let m = expect_code(
        h.unstage(&v).await,
        Code::FailedPrecondition,
        &[
            &name,
            "pvc-held",
            &format!("pid {pid} (sleep) fd 3"),
            "stays connected",
            "only disconnects",
        ],
    );
    eprintln!("refusal: {m}");
    assert_eq!(v.loops(), vec![name.clone()], "still attached");
    assert!(
        h.state.join("staged/pvc-held").is_file(),
        "record kept for the retry"
    );
    drop(holder);
    h.unstage(&v).await.unwrap();
    assert!(v.loops().is_empty(), "detached once nothing holds it");
    h.stop().await;
}

/// A leaked mount in another mount namespace: no fd holds the device and neither mountinfo
/// the scan reads lists it, yet disconnecting would pull the disk from under a live
/// filesystem. The kernel's exclusive-open claim sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstage_refuses_while_the_filesystem_is_mounted_in_another_namespace() {
    need_loop!("unstage_refuses_while_the_filesystem_is_mounted_in_another_namespace");
    let mut h = Harness::start().await;
    let v = h.volume("pvc-leaked", true, &[]);
    h.stage(&v, mount_cap("ext4")).await.unwrap();
    let dev = v.device();
    let name = dev.file_name().unwrap().to_string_lossy().into_owned();
    let elsewhere = node_io::testing::MountedElsewhere::new(&dev).expect("mount elsewhere");
    let m = expect_code(
        h.unstage(&v).await,
        Code::FailedPrecondition,
        &[
            &name,
            "pvc-leaked",
            "another mount namespace",
            "stays connected",
        ],
    );
    eprintln!("refusal: {m}");
    assert_eq!(v.loops(), vec![name.clone()], "still attached");
    assert!(h.state.join("staged/pvc-leaked").is_file(), "record kept");
    drop(elsewhere);
    // The namespace's mount goes away with its last process, shortly after it is reaped.
    let mut result = h.unstage(&v).await;
    for _ in 0..100 {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        result = h.unstage(&v).await;
    }
    result.unwrap();
    assert!(v.loops().is_empty(), "detached once the mount is gone");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfs_grows_online_after_the_backing_file_grows() {
    // ext4 is not asserted here: resize2fs's online grow needs CAP_SYS_RESOURCE, which this
    // machine's sandbox drops, so it fails here for reasons outside the driver.
    need_loop!("xfs_grows_online_after_the_backing_file_grows");
    let mut h = Harness::start().await;
    let v = h.volume("pvc-grow", true, &[]);
    h.stage(&v, mount_cap("xfs")).await.unwrap();
    h.publish(&v, mount_cap("xfs"), false).await.unwrap();
    let before = rustix::fs::statvfs(&v.target).unwrap();
    let new_size = 2 * SIZE;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&v.file)
        .unwrap()
        .set_len(new_size)
        .unwrap();
    let r =
        h.c.node_expand_volume(csi::NodeExpandVolumeRequest {
            volume_id: v.id.clone(),
            volume_path: v.target.to_string_lossy().into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: new_size as i64,
                limit_bytes: 0,
            }),
            staging_target_path: v.staging.to_string_lossy().into(),
            volume_capability: Some(mount_cap("xfs")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, new_size as i64);
    let after = rustix::fs::statvfs(&v.target).unwrap();
    let (b, a) = (
        before.f_blocks * before.f_frsize,
        after.f_blocks * after.f_frsize,
    );
    assert!(a > b + SIZE / 2, "filesystem grew online: {b} -> {a}");
    h.unpublish(&v).await.unwrap();
    h.unstage(&v).await.unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_stats_report_usage_and_a_lost_or_renumbered_device_is_abnormal() {
    need_loop!("volume_stats_report_usage_and_a_lost_or_renumbered_device_is_abnormal");
    let mut h = Harness::start().await;
    // Block: size from the device.
    let b = h.volume("pvc-stats-block", false, &[]);
    h.stage(&b, block_cap()).await.unwrap();
    h.publish(&b, block_cap(), false).await.unwrap();
    let s = h.stats(&b, &b.target).await.unwrap();
    assert_eq!(s.usage.len(), 1);
    assert_eq!(s.usage[0].total, SIZE as i64);
    let c = s.volume_condition.unwrap();
    assert!(!c.abnormal, "{}", c.message);
    h.unpublish(&b).await.unwrap();
    h.unstage(&b).await.unwrap();

    // Filesystem: bytes and inodes from statfs.
    let v = h.volume("pvc-stats-fs", true, &[]);
    h.stage(&v, mount_cap("ext4")).await.unwrap();
    h.publish(&v, mount_cap("ext4"), false).await.unwrap();
    std::fs::write(v.target.join("f"), vec![1u8; MIB as usize]).unwrap();
    let s = h.stats(&v, &v.target).await.unwrap();
    let unit = |u: csi::volume_usage::Unit| {
        s.usage
            .iter()
            .find(|x| x.unit == u as i32)
            .cloned()
            .unwrap()
    };
    let st = rustix::fs::statvfs(&v.target).unwrap();
    let bytes = unit(csi::volume_usage::Unit::Bytes);
    assert_eq!(bytes.total as u64, st.f_blocks * st.f_frsize);
    assert!(
        bytes.used as u64 >= MIB
            && bytes.available > 0
            && bytes.used + bytes.available <= bytes.total
    );
    let inodes = unit(csi::volume_usage::Unit::Inodes);
    assert_eq!(inodes.total as u64, st.f_files);
    assert!(inodes.used >= 12 && inodes.available > 0, "{inodes:?}");
    let c = s.volume_condition.unwrap();
    assert!(
        !c.abnormal && c.message.contains("answered"),
        "{}",
        c.message
    );
    assert!(h
        .metrics
        .render()
        .contains("rds_csi_node_device_read_latency_seconds_count{transport=\"loop\"} 2"));

    // The device goes away behind the mount (detach of a busy loop device is deferred to
    // its last close, like an NVMe controller in `deleting`).
    let dev = v.device();
    assert!(Command::new("losetup")
        .arg("-d")
        .arg(&dev)
        .status()
        .unwrap()
        .success());
    let c = h
        .stats(&v, &v.target)
        .await
        .unwrap()
        .volume_condition
        .unwrap();
    assert!(
        c.abnormal && c.message.contains("gone") && c.message.contains("pvc-stats-fs"),
        "{}",
        c.message
    );
    // ...and comes back under another number: the mount is stale.
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&v.file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let c = h
        .stats(&v, &v.target)
        .await
        .unwrap()
        .volume_condition
        .unwrap();
    assert!(
        c.abnormal && c.message.contains("stale") && c.message.contains(&dev_of(&dev)),
        "{}",
        c.message
    );

    let missing = h.path("nowhere");
    let e = h.stats(&v, &missing).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());

    h.unpublish(&v).await.unwrap();
    h.unstage(&v).await.unwrap();
    assert!(v.loops().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstage_refuses_while_the_holder_scan_is_incomplete() {
    // Runs in the machine's own pid namespace, where pid 1 may be uninspectable.
    let test = "unstage_refuses_while_the_holder_scan_is_incomplete";
    if std::env::var_os(IN_PIDNS).is_some() {
        return;
    }
    if let Some(why) = cannot_run() {
        return eprintln!("SKIP {test}: {why}");
    }
    if std::fs::read_dir("/proc/1/fd")
        .is_ok_and(|mut d| d.all(|e| e.is_ok_and(|e| std::fs::read_link(e.path()).is_ok())))
    {
        return eprintln!("SKIP {test}: every process is inspectable on this machine, the scan cannot be made incomplete");
    }
    let mut h = Harness::start().await;
    let v = h.volume("pvc-blind", false, &[]);
    h.stage(&v, block_cap()).await.unwrap();
    let name = v
        .device()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let m = expect_code(
        h.unstage(&v).await,
        Code::FailedPrecondition,
        &[
            &name,
            "pvc-blind",
            "pid 1",
            "could not be inspected",
            "incomplete",
        ],
    );
    eprintln!("refusal: {m}");
    assert_eq!(v.loops(), vec![name], "a blind scan never disconnects");
    h.stop().await;
}
