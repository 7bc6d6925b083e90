//! The node plugin over a real unix socket on REAL loop devices with real mkfs/mount
//! (`--transport loop`): the harness the node tests share. Needs root and
//! e2fsprogs/xfsprogs; each test skips with a printed reason otherwise. Tests run one at a
//! time (loop numbers are reused right after a detach, so a holder from a parallel test could
//! match ours), and every mount and loop device under a test's directory is removed on drop,
//! also when the test fails.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use csi_proto::v1 as csi;
use csi_proto::v1::node_client::NodeClient;
use rds_csi::csi::server;
use rds_csi::node::{NodeConfig, NodePlugin, TransportConfig};
use rds_csi::observability::Metrics;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

pub const MIB: u64 = 1 << 20;
/// mkfs.xfs refuses filesystems under 300 MB; the files are sparse.
pub const SIZE: u64 = 320 * MIB;

/// One loop-device test at a time (held across awaits, hence tokio's mutex).
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub use node_io::testing::{have_tool, is_root};

/// Why this machine cannot run the loop tests, if it cannot.
pub fn cannot_run() -> Option<String> {
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
        if !have_tool(t) {
            return Some(format!("{t} is not installed"));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("/dev/loop-control is missing".into());
    }
    None
}

/// Set in the copy of this test binary that runs inside its own pid namespace.
pub const IN_PIDNS: &str = "RDS_CSI_NODE_TEST_IN_PIDNS";

/// Whether the caller should run the test body here. Outside, re-runs `test` under
/// `unshare --pid --fork --mount-proc` and checks it passed there.
///
/// Why: the holder scan must be complete before a device is disconnected, and on this
/// machine pid 1 (the sandbox's supervisor, with more capabilities than the tests) cannot be
/// inspected, so every unstage would — rightly — be refused. In a pid namespace with its own
/// /proc every process is inspectable, as for the node plugin with hostPID on a real node;
/// the mounts also vanish with the namespace if a test dies.
/// `unstage_refuses_while_the_holder_scan_is_incomplete` covers the refusal itself.
pub async fn run_here(test: &str) -> bool {
    if std::env::var_os(IN_PIDNS).is_some() {
        return true;
    }
    if let Some(why) =
        cannot_run().or_else(|| (!have_tool("unshare")).then(|| "unshare is not installed".into()))
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

/// Runs one loop-device node test: on a two-worker tokio runtime, in the test's own pid
/// namespace (see [`run_here`]; elsewhere it only re-runs or skips), `body` gets a started
/// [`Harness`], which is stopped after it.
///
/// The test is the one this thread runs: the test harness names each test's thread after
/// the test's path, which is also what `--exact` selects.
pub fn on_loop_node(body: impl AsyncFnOnce(&mut Harness)) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or_default();
    assert!(
        !test.is_empty() && test != "main",
        "on_loop_node runs in a test's own thread (named after the test), not in {test:?}"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if !run_here(test).await {
            return;
        }
        let mut h = Harness::start().await;
        body(&mut h).await;
        h.stop().await;
    });
}

/// On drop: lazily unmounts everything mounted under `root` and detaches every loop device
/// backed by a file under it. Declared before the TempDir so it runs first.
pub struct Cleanup {
    pub root: PathBuf,
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
pub fn loops_backing_under(root: &Path) -> Vec<String> {
    node_io::block::list_loop_devices(Path::new("/sys"))
        .unwrap()
        .into_iter()
        .filter(|d| !d.autoclear && d.backing_file.starts_with(root))
        .map(|d| d.name)
        .collect()
}

pub struct Harness {
    pub _cleanup: Cleanup,
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub state: PathBuf,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), server::ServeError>>,
    pub metrics: Metrics,
    pub c: NodeClient<Channel>,
    // Last: released only after the cleanup ran.
    pub _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_on(None).await
    }

    /// With `data`: the loop transport serves the files under it (e.g. the RDS simulator's
    /// data directory, so the controller's volumes are the node's), else a private directory.
    pub async fn start_on(data: Option<PathBuf>) -> Harness {
        let serial = SERIAL.lock().await;
        // /tmp may be a symlink on some systems; mountinfo shows canonical paths.
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let (data, state) = (
            data.unwrap_or_else(|| root.join("data")),
            root.join("state"),
        );
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
        let super::Served { sock, stop, task } =
            super::serve(plugin.routes(), sock, Duration::from_secs(5)).await;
        let c = NodeClient::new(super::unix_channel(&sock).await);
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

    pub fn root(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).unwrap()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// A backing file of SIZE bytes starting with `content`, as the simulator would create.
    pub fn volume(&self, id: &str, fresh: bool, content: &[u8]) -> Vol {
        let file = self.data.join(format!("storage-pool/csi/{id}.img"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        set_file_len(&file, SIZE);
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
        self.vol(id, ctx)
    }

    /// Volume `id` with volume context `ctx` at the kubelet's paths under this harness;
    /// its backing file is `storage-pool/csi/<id>.img` under the data directory.
    pub fn vol(&self, id: &str, ctx: HashMap<String, String>) -> Vol {
        Vol {
            id: id.into(),
            file: self.data.join(format!("storage-pool/csi/{id}.img")),
            ctx,
            publish: HashMap::new(),
            staging: self.path(&format!("kubelet/plugins/staging/{id}/globalmount")),
            target: self.path(&format!("kubelet/pods/p1/volumes/{id}/mount")),
        }
    }

    pub async fn stage(
        &mut self,
        v: &Vol,
        cap: csi::VolumeCapability,
    ) -> Result<(), tonic::Status> {
        self.c.node_stage_volume(v.stage_req(cap)).await.map(drop)
    }

    pub async fn unstage(&mut self, v: &Vol) -> Result<(), tonic::Status> {
        self.c.node_unstage_volume(v.unstage_req()).await.map(drop)
    }

    pub async fn publish(
        &mut self,
        v: &Vol,
        cap: csi::VolumeCapability,
        readonly: bool,
    ) -> Result<(), tonic::Status> {
        let r = v.publish_req(cap, readonly);
        self.c.node_publish_volume(r).await.map(drop)
    }

    pub async fn unpublish(&mut self, v: &Vol) -> Result<(), tonic::Status> {
        self.c
            .node_unpublish_volume(v.unpublish_req())
            .await
            .map(drop)
    }

    pub async fn stats(
        &mut self,
        v: &Vol,
        path: &Path,
    ) -> Result<csi::NodeGetVolumeStatsResponse, tonic::Status> {
        let r = self.c.node_get_volume_stats(v.stats_req(path)).await;
        r.map(tonic::Response::into_inner)
    }

    /// The volume condition NodeGetVolumeStats reports for `v` at `path`.
    pub async fn condition(&mut self, v: &Vol, path: &Path) -> csi::VolumeCondition {
        let stats = self.stats(v, path).await.unwrap();
        stats
            .volume_condition
            .expect("NodeGetVolumeStats reports a volume condition")
    }

    /// A volume (not fresh) staged and published as a raw block device.
    pub async fn block_published(&mut self, id: &str) -> Vol {
        let v = self.volume(id, false, &[]);
        self.stage(&v, block_cap()).await.unwrap();
        self.publish(&v, block_cap(), false).await.unwrap();
        v
    }

    /// A fresh volume staged with a new `fs` filesystem.
    pub async fn fs_staged(&mut self, id: &str, fs: &str) -> Vol {
        let v = self.volume(id, true, &[]);
        self.stage(&v, mount_cap(fs)).await.unwrap();
        v
    }

    /// A fresh volume staged and published with a new `fs` filesystem.
    pub async fn fs_published(&mut self, id: &str, fs: &str) -> Vol {
        let v = self.fs_staged(id, fs).await;
        self.publish(&v, mount_cap(fs), false).await.unwrap();
        v
    }

    /// NodeUnstageVolume of `v` is refused FAILED_PRECONDITION naming its loop device, the
    /// volume and every one of `why`, and the device stays attached. Returns the message.
    pub async fn unstage_refused(&mut self, v: &Vol, why: &[&str]) -> String {
        let name = v.device_name();
        let mut words = vec![name.as_str(), v.id.as_str()];
        words.extend(why);
        let m = expect_code(self.unstage(v).await, Code::FailedPrecondition, &words);
        eprintln!("refusal: {m}");
        assert_eq!(v.loops(), vec![name], "{}: still attached", v.id);
        m
    }

    /// NodeUnstageVolume of `v` answers OK and leaves no loop device over its file.
    pub async fn unstage_detached(&mut self, v: &Vol) {
        self.unstage(v).await.unwrap();
        let left = v.loops();
        assert!(left.is_empty(), "{}: NodeUnstageVolume left {left:?}", v.id);
    }

    /// NodeUnpublishVolume, then [`Harness::unstage_detached`].
    pub async fn release(&mut self, v: &Vol) {
        self.unpublish(v).await.unwrap();
        self.unstage_detached(v).await;
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

#[derive(Clone)]
pub struct Vol {
    pub id: String,
    pub file: PathBuf,
    /// The volume context (from CreateVolume).
    pub ctx: HashMap<String, String>,
    /// The publish context (from ControllerPublishVolume; empty without a controller).
    pub publish: HashMap<String, String>,
    pub staging: PathBuf,
    pub target: PathBuf,
}

/// The Node RPCs' requests for this volume at its paths, as the kubelet sends them.
impl Vol {
    pub fn stage_req(&self, cap: csi::VolumeCapability) -> csi::NodeStageVolumeRequest {
        csi::NodeStageVolumeRequest {
            volume_id: self.id.clone(),
            publish_context: self.publish.clone(),
            staging_target_path: self.staging.to_string_lossy().into(),
            volume_capability: Some(cap),
            secrets: HashMap::new(),
            volume_context: self.ctx.clone(),
        }
    }

    pub fn unstage_req(&self) -> csi::NodeUnstageVolumeRequest {
        csi::NodeUnstageVolumeRequest {
            volume_id: self.id.clone(),
            staging_target_path: self.staging.to_string_lossy().into(),
        }
    }

    /// The NodePublishVolumeRequest: [`Vol::stage_req`]'s fields, the target path and
    /// `readonly`.
    pub fn publish_req(
        &self,
        cap: csi::VolumeCapability,
        readonly: bool,
    ) -> csi::NodePublishVolumeRequest {
        let s = self.stage_req(cap);
        csi::NodePublishVolumeRequest {
            target_path: self.target.to_string_lossy().into(),
            readonly,
            volume_id: s.volume_id,
            publish_context: s.publish_context,
            staging_target_path: s.staging_target_path,
            volume_capability: s.volume_capability,
            secrets: s.secrets,
            volume_context: s.volume_context,
        }
    }

    pub fn unpublish_req(&self) -> csi::NodeUnpublishVolumeRequest {
        csi::NodeUnpublishVolumeRequest {
            volume_id: self.id.clone(),
            target_path: self.target.to_string_lossy().into(),
        }
    }

    /// NodeGetVolumeStatsRequest for the volume at `path` (its staging or target path).
    pub fn stats_req(&self, path: &Path) -> csi::NodeGetVolumeStatsRequest {
        csi::NodeGetVolumeStatsRequest {
            volume_id: self.id.clone(),
            volume_path: path.to_string_lossy().into(),
            staging_target_path: self.staging.to_string_lossy().into(),
        }
    }

    /// NodeExpandVolumeRequest for the volume at `path`, without a capacity range.
    pub fn expand_req(&self, path: &Path) -> csi::NodeExpandVolumeRequest {
        let s = self.stats_req(path);
        csi::NodeExpandVolumeRequest {
            volume_id: s.volume_id,
            volume_path: s.volume_path,
            staging_target_path: s.staging_target_path,
            ..Default::default()
        }
    }
}

impl Vol {
    /// Loop devices attached to this volume's file right now.
    pub fn loops(&self) -> Vec<String> {
        loops_backing_under(&self.file)
    }
    pub fn device(&self) -> PathBuf {
        let l = self.loops();
        assert_eq!(
            l.len(),
            1,
            "expected exactly one loop device over {}: {l:?}",
            self.file.display()
        );
        PathBuf::from(format!("/dev/{}", l[0]))
    }
    /// The name of [`Vol::device`] ("loopN").
    pub fn device_name(&self) -> String {
        let dev = self.device();
        dev.file_name().unwrap().to_string_lossy().into_owned()
    }
}

pub fn mount_cap(fs: &str) -> csi::VolumeCapability {
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

pub fn block_cap() -> csi::VolumeCapability {
    use csi::volume_capability::{access_mode::Mode, AccessMode, AccessType, BlockVolume};
    csi::VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        }),
    }
}

/// The mount (if any) on top at `p`: (major:minor, fs type, options).
pub fn mount_at(p: &Path) -> Option<(String, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (Path::new(f[4]) == p).then(|| (f[2].to_owned(), f[sep + 1].to_owned(), f[5].to_owned()))
    })
}

/// Sets the length of the backing file `file` (sparse), as a resize on the RDS does.
pub fn set_file_len(file: &Path, bytes: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

pub fn dev_of(p: &Path) -> String {
    let rdev = std::fs::metadata(p).unwrap().rdev();
    format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

pub fn first_bytes(p: &Path, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    std::fs::File::open(p).unwrap().read_exact(&mut b).unwrap();
    b
}

pub fn expect_code(r: Result<(), tonic::Status>, code: Code, words: &[&str]) -> String {
    let s = r.expect_err("the call should have been refused");
    super::assert_refused("refused", &s, code, words);
    s.message().to_owned()
}

impl Vol {
    /// Stages expecting a refusal; returns the device name that was attached and the error.
    pub async fn refused_stage(
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

/// `sh` holding `path` open as fd 3, then exec'ing `sleep` (comm "sleep").
pub struct Holder(pub Child);

impl Holder {
    pub fn open(path: &Path) -> Holder {
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

impl Vol {
    /// This volume with volume-context `key` set to `value`.
    pub fn with(&self, key: &str, value: &str) -> Vol {
        let mut v = self.clone();
        v.ctx.insert(key.into(), value.into());
        v
    }
}

impl Harness {
    /// The stage record file of volume `id`.
    pub fn record(&self, id: &str) -> PathBuf {
        self.state.join("staged").join(id)
    }
}

/// The super options (filesystem options) of the mount on top at `p`.
pub fn super_options(p: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (Path::new(f[4]) == p).then(|| f[sep + 3].to_owned())
    })
}

/// Mounts a small tmpfs at `p` (a mount that is not any volume's), creating the directory.
pub fn mount_tmpfs(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "stranger"])
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs on {}", p.display());
}

/// Lazily unmounts the mount on top at `p`.
pub fn umount_lazy(p: &Path) {
    let st = Command::new("umount").arg("-l").arg(p).status().unwrap();
    assert!(st.success(), "umount -l {}", p.display());
}
