//! rds-csi end-to-end driver, run INSIDE the QEMU guests started by `scripts/e2e-vm.sh`.
//!
//! `rds-csi-e2e run ...` drives the CSI sockets of a real `rds-csi controller` and of real
//! `rds-csi node` plugins (node-a local on a unix socket, node-b in the second VM over
//! `tcp://`) against the RDS simulator exporting volumes through the kernel's nvmet, over real
//! NVMe/TCP. Shell checks on node-b (read a pattern, list /sys/class/nvme) go through
//! `rds-csi-e2e agent`, a tiny command runner listening on node-b's virtual wire address.
//!
//! Output: one `E2E-SCENARIO <id> PASS|FAIL <seconds>s <title>[: reason]` line per scenario,
//! `E2E: ...` progress lines, then `E2E-SUMMARY ...`; exit status 0 only when every scenario
//! passed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use csi::controller_client::ControllerClient;
use csi::identity_client::IdentityClient;
use csi::node_client::NodeClient;
use csi::volume_capability::access_mode::Mode;
use csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use csi_proto::v1 as csi;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Status};

type R<T> = Result<T, String>;

const GIB: i64 = 1 << 30;
const RPC_TIMEOUT: Duration = Duration::from_secs(120);

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn say(msg: impl AsRef<str>) {
    println!("E2E: {}", msg.as_ref());
}

fn req<T>(m: T) -> Request<T> {
    let mut r = Request::new(m);
    r.set_timeout(RPC_TIMEOUT);
    r
}

fn st(what: &str, s: Status) -> String {
    format!("{what}: {:?}: {}", s.code(), s.message())
}

// ------------------------------------------------------------------------------------------
// transport helpers

async fn channel_once(ep: &str) -> Result<Channel, String> {
    if let Some(path) = ep.strip_prefix("unix://") {
        let path = PathBuf::from(path);
        Endpoint::try_from("http://localhost")
            .map_err(|e| e.to_string())?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| format!("{e:?}"))
    } else if let Some(addr) = ep.strip_prefix("tcp://") {
        Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))
    } else {
        Err(format!(
            "endpoint {ep:?}: expected unix:///path or tcp://host:port"
        ))
    }
}

/// Connects and waits until the plugin answers GetPluginInfo (up to `wait`).
async fn channel(ep: &str, wait: Duration) -> R<Channel> {
    let until = Instant::now() + wait;
    let mut last = String::new();
    while Instant::now() < until {
        match channel_once(ep).await {
            Ok(ch) => match IdentityClient::new(ch.clone())
                .get_plugin_info(req(csi::GetPluginInfoRequest {}))
                .await
            {
                Ok(info) => {
                    let i = info.into_inner();
                    say(format!(
                        "connected to {ep}: {} {}",
                        i.name, i.vendor_version
                    ));
                    return Ok(ch);
                }
                Err(s) => last = st("GetPluginInfo", s),
            },
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(format!("{ep} not reachable within {wait:?}: {last}"))
}

async fn run_local(cmd: &str) -> R<(i32, String)> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("sh -c {cmd:?}: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), text))
}

async fn run_remote(addr: &str, cmd: &str) -> R<(i32, String)> {
    let mut s = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| format!("agent {addr}: connect timed out"))?
    .map_err(|e| format!("agent {addr}: {e}"))?;
    s.write_all(cmd.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.shutdown().await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(180), s.read_to_end(&mut buf))
        .await
        .map_err(|_| format!("agent {addr}: {cmd:?} timed out"))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (code, rest) = text
        .split_once('\n')
        .ok_or_else(|| format!("agent {addr}: bad reply {text:?}"))?;
    Ok((code.trim().parse().unwrap_or(-1), rest.to_owned()))
}

/// `rds-csi-e2e agent --listen ADDR`: runs each connection's text with `sh -c` and answers
/// `<exit code>\n<stdout+stderr>`. Only on the test VMs' private virtual wire.
async fn agent(listen: &str) -> R<()> {
    let l = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("agent: bind {listen}: {e}"))?;
    println!("E2E-AGENT: listening on {listen}");
    loop {
        let (mut s, _) = l.accept().await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let mut buf = Vec::new();
            if s.read_to_end(&mut buf).await.is_err() {
                return;
            }
            let cmd = String::from_utf8_lossy(&buf).into_owned();
            let reply = match run_local(&cmd).await {
                Ok((code, out)) => format!("{code}\n{out}"),
                Err(e) => format!("-1\n{e}"),
            };
            let _ = s.write_all(reply.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

// ------------------------------------------------------------------------------------------
// the harness

fn mount_cap(fs: &str, mode: Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })),
    }
}

fn block_cap(mode: Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

#[derive(Clone)]
struct Vol {
    id: String,
    ctx: HashMap<String, String>,
    cap: csi::VolumeCapability,
    nqn: String,
}

impl Vol {
    fn is_block(&self) -> bool {
        matches!(self.cap.access_type, Some(AccessType::Block(_)))
    }
    fn staging(&self) -> String {
        format!(
            "/var/lib/kubelet/plugins/kubernetes.io/csi/rds.csi.mikrotik.com/{}/globalmount",
            self.id
        )
    }
    fn target(&self, node: &str) -> String {
        if self.is_block() {
            format!(
                "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/{}/pod-{node}",
                self.id
            )
        } else {
            format!(
                "/var/lib/kubelet/pods/pod-{node}/volumes/kubernetes.io~csi/{}/mount",
                self.id
            )
        }
    }
}

struct E2e {
    ctl: ControllerClient<Channel>,
    nodes: HashMap<String, NodeClient<Channel>>,
    /// node id -> agent address; nodes without one run commands locally.
    agents: HashMap<String, String>,
    metrics_url: String,
    /// node id -> its plugin log file readable by `sh` on that node.
    node_logs: HashMap<String, String>,
    pubctx: HashMap<(String, String), HashMap<String, String>>,
}

impl E2e {
    fn node(&self, n: &str) -> R<NodeClient<Channel>> {
        self.nodes
            .get(n)
            .cloned()
            .ok_or_else(|| format!("no CSI endpoint for node {n}"))
    }

    async fn sh(&self, node: &str, cmd: &str) -> R<(i32, String)> {
        match self.agents.get(node) {
            Some(a) => run_remote(a, cmd).await,
            None => run_local(cmd).await,
        }
    }

    async fn sh_ok(&self, node: &str, cmd: &str) -> R<String> {
        let (code, out) = self.sh(node, cmd).await?;
        ensure!(
            code == 0,
            "on {node}: `{cmd}` exited {code}: {}",
            out.trim()
        );
        Ok(out)
    }

    async fn create(
        &self,
        name: &str,
        cap: csi::VolumeCapability,
        bytes: i64,
        params: &[(&str, &str)],
    ) -> R<Vol> {
        let r = self
            .ctl
            .clone()
            .create_volume(req(csi::CreateVolumeRequest {
                name: name.into(),
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: bytes,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![cap.clone()],
                parameters: params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }))
            .await
            .map_err(|s| st(&format!("CreateVolume {name}"), s))?
            .into_inner();
        let v = r.volume.ok_or("CreateVolume returned no volume")?;
        ensure!(
            v.capacity_bytes >= bytes,
            "CreateVolume {name}: capacity {} < {bytes}",
            v.capacity_bytes
        );
        let nqn = v.volume_context.get("nqn").cloned().unwrap_or_default();
        ensure!(
            !nqn.is_empty(),
            "CreateVolume {name}: no nqn in the volume context {:?}",
            v.volume_context
        );
        Ok(Vol {
            id: v.volume_id,
            ctx: v.volume_context,
            cap,
            nqn,
        })
    }

    async fn delete(&self, v: &Vol) -> R<()> {
        self.ctl
            .clone()
            .delete_volume(req(csi::DeleteVolumeRequest {
                volume_id: v.id.clone(),
                ..Default::default()
            }))
            .await
            .map_err(|s| st(&format!("DeleteVolume {}", v.id), s))?;
        Ok(())
    }

    async fn cpub_raw(&mut self, v: &Vol, node: &str) -> Result<(), Status> {
        let r = self
            .ctl
            .clone()
            .controller_publish_volume(req(csi::ControllerPublishVolumeRequest {
                volume_id: v.id.clone(),
                node_id: node.into(),
                volume_capability: Some(v.cap.clone()),
                readonly: false,
                volume_context: v.ctx.clone(),
                ..Default::default()
            }))
            .await?
            .into_inner();
        self.pubctx
            .insert((v.id.clone(), node.into()), r.publish_context);
        Ok(())
    }

    async fn cpub(&mut self, v: &Vol, node: &str) -> R<()> {
        self.cpub_raw(v, node)
            .await
            .map_err(|s| st(&format!("ControllerPublish {} -> {node}", v.id), s))
    }

    async fn cunpub(&self, v: &Vol, node: &str) -> R<()> {
        self.ctl
            .clone()
            .controller_unpublish_volume(req(csi::ControllerUnpublishVolumeRequest {
                volume_id: v.id.clone(),
                node_id: node.into(),
                ..Default::default()
            }))
            .await
            .map_err(|s| st(&format!("ControllerUnpublish {} from {node}", v.id), s))?;
        Ok(())
    }

    async fn stage_raw(&self, v: &Vol, node: &str) -> Result<(), Status> {
        let pc = self
            .pubctx
            .get(&(v.id.clone(), node.into()))
            .cloned()
            .unwrap_or_default();
        self.node(node)
            .map_err(Status::internal)?
            .node_stage_volume(req(csi::NodeStageVolumeRequest {
                volume_id: v.id.clone(),
                publish_context: pc,
                staging_target_path: v.staging(),
                volume_capability: Some(v.cap.clone()),
                volume_context: v.ctx.clone(),
                ..Default::default()
            }))
            .await?;
        Ok(())
    }

    async fn stage(&self, v: &Vol, node: &str) -> R<()> {
        self.stage_raw(v, node)
            .await
            .map_err(|s| st(&format!("NodeStage {} on {node}", v.id), s))
    }

    async fn unstage_raw(&self, v: &Vol, node: &str) -> Result<(), Status> {
        self.node(node)
            .map_err(Status::internal)?
            .node_unstage_volume(req(csi::NodeUnstageVolumeRequest {
                volume_id: v.id.clone(),
                staging_target_path: v.staging(),
            }))
            .await?;
        Ok(())
    }

    async fn unstage(&self, v: &Vol, node: &str) -> R<()> {
        self.unstage_raw(v, node)
            .await
            .map_err(|s| st(&format!("NodeUnstage {} on {node}", v.id), s))
    }

    async fn publish(&self, v: &Vol, node: &str) -> R<()> {
        let pc = self
            .pubctx
            .get(&(v.id.clone(), node.into()))
            .cloned()
            .unwrap_or_default();
        self.node(node)?
            .node_publish_volume(req(csi::NodePublishVolumeRequest {
                volume_id: v.id.clone(),
                publish_context: pc,
                staging_target_path: v.staging(),
                target_path: v.target(node),
                volume_capability: Some(v.cap.clone()),
                readonly: false,
                volume_context: v.ctx.clone(),
                ..Default::default()
            }))
            .await
            .map_err(|s| st(&format!("NodePublish {} on {node}", v.id), s))?;
        Ok(())
    }

    async fn unpublish(&self, v: &Vol, node: &str) -> R<()> {
        self.node(node)?
            .node_unpublish_volume(req(csi::NodeUnpublishVolumeRequest {
                volume_id: v.id.clone(),
                target_path: v.target(node),
            }))
            .await
            .map_err(|s| st(&format!("NodeUnpublish {} on {node}", v.id), s))?;
        Ok(())
    }

    /// ControllerPublish + NodeStage + NodePublish.
    async fn attach(&mut self, v: &Vol, node: &str) -> R<()> {
        self.cpub(v, node).await?;
        self.stage(v, node).await?;
        self.publish(v, node).await
    }

    /// NodeUnpublish + NodeUnstage + ControllerUnpublish, then: no controller of the NQN left.
    async fn detach(&self, v: &Vol, node: &str) -> R<()> {
        self.unpublish(v, node).await?;
        self.unstage(v, node).await?;
        self.cunpub(v, node).await?;
        let c = self.ctrls(node, &v.nqn).await?;
        ensure!(
            c.is_empty(),
            "after unstage on {node}, controllers of {} are left: {c:?}",
            v.nqn
        );
        Ok(())
    }

    /// Best-effort teardown after a failure (errors ignored).
    async fn cleanup(&self, v: &Vol, nodes: &[&str]) {
        for n in nodes {
            let _ = self.unpublish(v, n).await;
            let _ = self.unstage(v, n).await;
            let _ = self.cunpub(v, n).await;
        }
        let _ = self.delete(v).await;
    }

    /// NVMe controllers on `node` whose subsysnqn is `nqn`: (name, state).
    async fn ctrls(&self, node: &str, nqn: &str) -> R<Vec<(String, String)>> {
        let out = self
            .sh_ok(
                node,
                &format!(
                    "for c in /sys/class/nvme/nvme*; do [ -e $c/subsysnqn ] || continue; \
                     [ \"$(cat $c/subsysnqn)\" = '{nqn}' ] && echo \"${{c##*/}} $(cat $c/state)\"; done; true"
                ),
            )
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect())
    }

    /// The kernel block device behind a published block target (`nvme1n1`).
    async fn block_dev(&self, v: &Vol, node: &str) -> R<String> {
        let t = v.target(node);
        let out = self
            .sh_ok(
                node,
                &format!(
                    "set -e; [ -b '{t}' ]; mm=$(stat -c '%t %T' '{t}'); set -- $mm; \
                     l=$(readlink /sys/dev/block/$((0x$1)):$((0x$2))); echo ${{l##*/}}"
                ),
            )
            .await?;
        let name = out.trim().to_owned();
        ensure!(
            name.starts_with("nvme"),
            "{t} on {node} is not an NVMe device: {name:?}"
        );
        Ok(name)
    }

    /// Writes `mib` MiB of random data at MiB offset `at` of a published block target,
    /// O_DIRECT; returns its md5.
    async fn block_write(&self, v: &Vol, node: &str, at: u32, mib: u32) -> R<String> {
        let t = v.target(node);
        let out = self
            .sh_ok(
                node,
                &format!(
                    "set -e; dd if=/dev/urandom of=/tmp/pat bs=1M count={mib} 2>/dev/null; \
                     dd if=/tmp/pat of='{t}' bs=1M seek={at} oflag=direct conv=notrunc 2>/dev/null; \
                     md5sum < /tmp/pat | cut -d' ' -f1"
                ),
            )
            .await?;
        Ok(out.trim().to_owned())
    }

    async fn block_read(&self, v: &Vol, node: &str, at: u32, mib: u32) -> R<String> {
        let t = v.target(node);
        let out = self
            .sh_ok(
                node,
                &format!(
                    "set -o pipefail; dd if='{t}' bs=1M skip={at} count={mib} iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1"
                ),
            )
            .await?;
        Ok(out.trim().to_owned())
    }

    async fn fs_write(&self, v: &Vol, node: &str, file: &str) -> R<String> {
        let t = v.target(node);
        let out = self
            .sh_ok(
                node,
                &format!(
                    "set -e; dd if=/dev/urandom of='{t}/{file}' bs=1M count=4 2>/dev/null; sync; \
                     md5sum < '{t}/{file}' | cut -d' ' -f1"
                ),
            )
            .await?;
        Ok(out.trim().to_owned())
    }

    async fn fs_read(&self, v: &Vol, node: &str, file: &str) -> R<String> {
        let t = v.target(node);
        let out = self
            .sh_ok(node, &format!("md5sum < '{t}/{file}' | cut -d' ' -f1"))
            .await?;
        Ok(out.trim().to_owned())
    }

    /// (mount id, fs type) of what is mounted at `path` on `node`, from mountinfo.
    async fn mount_at(&self, node: &str, path: &str) -> R<Option<(String, String)>> {
        let out = self
            .sh_ok(
                node,
                &format!("awk '$5 == \"{path}\" {{ for (i = 7; $i != \"-\"; i++); print $1, $(i+1) }}' /proc/self/mountinfo"),
            )
            .await?;
        Ok(out
            .lines()
            .last()
            .and_then(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_owned(), b.to_owned())))
    }

    /// Size in KiB of the filesystem mounted at `path`.
    async fn df_k(&self, node: &str, path: &str) -> R<u64> {
        let out = self
            .sh_ok(
                node,
                &format!("df -k '{path}' | awk 'NR == 2 {{ print $2 }}'"),
            )
            .await?;
        out.trim()
            .parse()
            .map_err(|_| format!("df -k {path} on {node}: {out:?}"))
    }

    async fn metric(&self, name_and_labels: &str) -> R<Option<f64>> {
        let out = self
            .sh_ok("node-a", &format!("wget -q -O - '{}'", self.metrics_url))
            .await?;
        Ok(out
            .lines()
            .find_map(|l| l.strip_prefix(name_and_labels).map(str::trim))
            .and_then(|v| v.parse().ok()))
    }
}

// ------------------------------------------------------------------------------------------
// scenarios

/// a. filesystem volume moved between nodes (RWO handoff) keeps its data.
async fn scenario_fs_handoff(e: &mut E2e, fs: &str) -> R<()> {
    let v = e
        .create(
            &format!("pvc-e2e-fs-{fs}"),
            mount_cap(fs, Mode::SingleNodeWriter),
            GIB,
            &[],
        )
        .await?;
    let r = async {
        e.attach(&v, "node-a").await?;
        let m = e.mount_at("node-a", &v.target("node-a")).await?;
        ensure!(
            m.as_ref().is_some_and(|(_, t)| t == fs),
            "node-a: {} is not a {fs} mount: {m:?}",
            v.target("node-a")
        );
        let md5 = e.fs_write(&v, "node-a", "pattern.bin").await?;
        say(format!("{fs}: wrote 4 MiB on node-a, md5 {md5}"));
        e.detach(&v, "node-a").await?;
        say(format!(
            "{fs}: node-a detached; no controller left for {}",
            v.nqn
        ));
        e.attach(&v, "node-b").await?;
        let m = e.mount_at("node-b", &v.target("node-b")).await?;
        ensure!(
            m.as_ref().is_some_and(|(_, t)| t == fs),
            "node-b: {} is not a {fs} mount: {m:?}",
            v.target("node-b")
        );
        let back = e.fs_read(&v, "node-b", "pattern.bin").await?;
        ensure!(back == md5, "node-b read md5 {back}, node-a wrote {md5}");
        say(format!("{fs}: node-b reads the same pattern (md5 {back})"));
        e.detach(&v, "node-b").await?;
        e.delete(&v).await
    }
    .await;
    if r.is_err() {
        e.cleanup(&v, &["node-a", "node-b"]).await;
    }
    r
}

/// b + c. RWX block live migration A -> B, with a third node refused in the window.
/// Returns (b result, c result).
async fn scenario_migration(e: &mut E2e) -> (R<()>, R<()>) {
    let before = match e
        .metric("rds_csi_migration_migrations_total{result=\"success\"}")
        .await
    {
        Ok(v) => v.unwrap_or(0.0),
        Err(err) => return (Err(err), Err("not reached".into())),
    };
    let v = match e
        .create(
            "pvc-e2e-rwx",
            block_cap(Mode::MultiNodeMultiWriter),
            GIB,
            &[],
        )
        .await
    {
        Ok(v) => v,
        Err(err) => return (Err(err), Err("not reached".into())),
    };
    let mut c_result: R<()> =
        Err("not reached (migration failed before the third node was tried)".into());
    let r = async {
        e.attach(&v, "node-a").await?;
        let dev_a = e.block_dev(&v, "node-a").await?;
        let p1 = e.block_write(&v, "node-a", 8, 2).await?;
        say(format!("rwx: node-a published {dev_a}, wrote 2 MiB at 8 MiB (md5 {p1})"));
        e.cpub(&v, "node-b").await?;
        e.stage(&v, "node-b").await?;
        e.publish(&v, "node-b").await?;
        let (ca, cb) = (e.ctrls("node-a", &v.nqn).await?, e.ctrls("node-b", &v.nqn).await?);
        ensure!(
            ca.iter().any(|(_, s)| s == "live") && cb.iter().any(|(_, s)| s == "live"),
            "both nodes must be connected during the migration: node-a {ca:?}, node-b {cb:?}"
        );
        say(format!("rwx: both attached at once: node-a {ca:?}, node-b {cb:?}"));
        let seen = e.block_read(&v, "node-b", 8, 2).await?;
        ensure!(seen == p1, "node-b reads md5 {seen} at 8 MiB, node-a wrote {p1}");
        say("rwx: node-b sees node-a's data");
        // c. a third node during the window
        c_result = match e.cpub_raw(&v, "node-c").await {
            Err(s) if s.code() == Code::FailedPrecondition => {
                say(format!("third node refused: FAILED_PRECONDITION: {}", s.message()));
                Ok(())
            }
            Err(s) => Err(st("ControllerPublish to node-c: expected FAILED_PRECONDITION", s)),
            Ok(()) => Err("ControllerPublish to node-c during the migration succeeded; it must be refused".into()),
        };
        let p2 = e.block_write(&v, "node-b", 16, 1).await?;
        let seen = e.block_read(&v, "node-a", 16, 1).await?;
        ensure!(seen == p2, "node-a reads md5 {seen} at 16 MiB, node-b wrote {p2}");
        e.detach(&v, "node-a").await?;
        say("rwx: node-a unpublished, unstaged (no controller left), ControllerUnpublish(node-a) done");
        let seen = e.block_read(&v, "node-b", 8, 2).await?;
        ensure!(seen == p1, "after the source left, node-b reads md5 {seen}, expected {p1}");
        let after = e
            .metric("rds_csi_migration_migrations_total{result=\"success\"}")
            .await?
            .unwrap_or(0.0);
        ensure!(
            after - before == 1.0,
            "rds_csi_migration_migrations_total{{result=\"success\"}} went {before} -> {after}, expected +1"
        );
        say(format!("rwx: controller metrics: rds_csi_migration_migrations_total{{result=\"success\"}} {after}"));
        e.detach(&v, "node-b").await?;
        e.delete(&v).await
    }
    .await;
    if r.is_err() {
        e.cleanup(&v, &["node-a", "node-b", "node-c"]).await;
    }
    (r, c_result)
}

/// d. a device held open by a process is never disconnected.
async fn scenario_holder(e: &mut E2e) -> R<()> {
    let v = e
        .create("pvc-e2e-held", block_cap(Mode::SingleNodeWriter), GIB, &[])
        .await?;
    let r = async {
        e.attach(&v, "node-a").await?;
        let dev = e.block_dev(&v, "node-a").await?;
        let pid = e
            .sh_ok(
                "node-a",
                &format!("sh -c 'exec 3</dev/{dev}; exec sleep 120' </dev/null >/dev/null 2>&1 & echo $!"),
            )
            .await?
            .trim()
            .to_owned();
        // wait until the fd is really open
        e.sh_ok(
            "node-a",
            &format!("i=0; until ls -l /proc/{pid}/fd 2>/dev/null | grep -q /dev/{dev}; do i=$((i+1)); [ $i -gt 50 ] && exit 1; sleep 0.1; done"),
        )
        .await?;
        say(format!("holder: pid {pid} holds /dev/{dev} open"));
        e.unpublish(&v, "node-a").await?;
        match e.unstage_raw(&v, "node-a").await {
            Err(s) if s.code() == Code::FailedPrecondition => {
                ensure!(
                    s.message().contains(&format!("pid {pid}")),
                    "NodeUnstage refused but does not name pid {pid}: {}",
                    s.message()
                );
                say(format!("holder: NodeUnstage refused: {}", s.message()));
            }
            Err(s) => return Err(st("NodeUnstage with a holder: expected FAILED_PRECONDITION", s)),
            Ok(()) => return Err(format!("NodeUnstage succeeded although pid {pid} holds /dev/{dev}")),
        }
        let c = e.ctrls("node-a", &v.nqn).await?;
        ensure!(
            c.iter().any(|(_, s)| s == "live"),
            "after the refused unstage the controller must still be connected: {c:?}"
        );
        e.sh_ok("node-a", &format!("[ -b /dev/{dev} ] && [ -e /sys/block/{dev} ]")).await?;
        say(format!("holder: still connected: {c:?}, /dev/{dev} present"));
        e.sh_ok("node-a", &format!("kill -9 {pid}")).await?;
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            match e.unstage_raw(&v, "node-a").await {
                Ok(()) => break,
                Err(s) if s.code() == Code::FailedPrecondition && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(s) => return Err(st("NodeUnstage after killing the holder", s)),
            }
        }
        let c = e.ctrls("node-a", &v.nqn).await?;
        ensure!(c.is_empty(), "after unstage, controllers of {} are left: {c:?}", v.nqn);
        say("holder: after kill, NodeUnstage succeeded; no controller left for the NQN");
        e.cunpub(&v, "node-a").await?;
        e.delete(&v).await
    }
    .await;
    if r.is_err() {
        let _ = e.sh("node-a", "pkill -9 -f 'exec sleep 120' ; true").await;
        e.cleanup(&v, &["node-a"]).await;
    }
    r
}

/// f. online expansion of a mounted ext4 filesystem.
async fn scenario_expand(e: &mut E2e) -> R<()> {
    let v = e
        .create(
            "pvc-e2e-grow",
            mount_cap("ext4", Mode::SingleNodeWriter),
            GIB,
            &[],
        )
        .await?;
    let r = async {
        e.attach(&v, "node-a").await?;
        let md5 = e.fs_write(&v, "node-a", "before-grow.bin").await?;
        let k0 = e.df_k("node-a", &v.target("node-a")).await?;
        let m0 = e.mount_at("node-a", &v.staging()).await?;
        let grown = 2 * GIB;
        let cr = e
            .ctl
            .clone()
            .controller_expand_volume(req(csi::ControllerExpandVolumeRequest {
                volume_id: v.id.clone(),
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: grown,
                    limit_bytes: 0,
                }),
                volume_capability: Some(v.cap.clone()),
                ..Default::default()
            }))
            .await
            .map_err(|s| st("ControllerExpandVolume", s))?
            .into_inner();
        ensure!(cr.capacity_bytes >= grown, "ControllerExpandVolume gave {} bytes", cr.capacity_bytes);
        ensure!(cr.node_expansion_required, "ControllerExpandVolume: node_expansion_required is false for ext4");
        let nr = e
            .node("node-a")?
            .node_expand_volume(req(csi::NodeExpandVolumeRequest {
                volume_id: v.id.clone(),
                volume_path: v.target("node-a"),
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: grown,
                    limit_bytes: 0,
                }),
                staging_target_path: v.staging(),
                volume_capability: Some(v.cap.clone()),
                ..Default::default()
            }))
            .await
            .map_err(|s| st("NodeExpandVolume", s))?
            .into_inner();
        ensure!(nr.capacity_bytes >= grown, "NodeExpandVolume gave {} bytes", nr.capacity_bytes);
        let k1 = e.df_k("node-a", &v.target("node-a")).await?;
        let m1 = e.mount_at("node-a", &v.staging()).await?;
        ensure!(k1 > k0 + 900 * 1024, "ext4 size {k0} KiB -> {k1} KiB: not grown by ~1 GiB");
        ensure!(
            m0.is_some() && m0 == m1,
            "the staging mount changed during the expansion (was {m0:?}, now {m1:?}): it must grow mounted"
        );
        let back = e.fs_read(&v, "node-a", "before-grow.bin").await?;
        ensure!(back == md5, "file changed across the grow: {back} != {md5}");
        say(format!("expand: ext4 {k0} KiB -> {k1} KiB online (mount id {} unchanged), data intact", m1.map(|m| m.0).unwrap_or_default()));
        e.detach(&v, "node-a").await?;
        e.delete(&v).await
    }
    .await;
    if r.is_err() {
        e.cleanup(&v, &["node-a"]).await;
    }
    r
}

/// g. a volume with data is not reformatted when staged again.
async fn scenario_restage(e: &mut E2e) -> R<()> {
    let v = e
        .create(
            "pvc-e2e-restage",
            mount_cap("xfs", Mode::SingleNodeWriter),
            GIB,
            &[],
        )
        .await?;
    let log = e.node_logs.get("node-a").cloned().unwrap_or_default();
    let r = async {
        e.attach(&v, "node-a").await?;
        let md5 = e.fs_write(&v, "node-a", "keep.bin").await?;
        e.unpublish(&v, "node-a").await?;
        e.unstage(&v, "node-a").await?;
        let c = e.ctrls("node-a", &v.nqn).await?;
        ensure!(c.is_empty(), "after unstage, controllers left: {c:?}");
        e.stage(&v, "node-a").await?;
        e.publish(&v, "node-a").await?;
        let back = e.fs_read(&v, "node-a", "keep.bin").await?;
        ensure!(
            back == md5,
            "after restage keep.bin md5 {back}, written {md5}"
        );
        if !log.is_empty() {
            let cmd = format!(
                "grep 'formatting a blank fresh volume' '{log}' | grep -c 'pvc-e2e-restage'; true"
            );
            let n = e.sh_ok("node-a", &cmd).await?.trim().to_owned();
            ensure!(
                n == "1",
                "the node log shows {n} format(s) of the volume, expected exactly 1"
            );
        }
        say(
            "restage: unstage + stage again kept the file; the node formatted the volume once only",
        );
        e.detach(&v, "node-a").await?;
        e.delete(&v).await
    }
    .await;
    if r.is_err() {
        e.cleanup(&v, &["node-a"]).await;
    }
    r
}

/// NodeGetVolumeStats on `node`: (abnormal, message).
async fn stats(e: &E2e, v: &Vol, node: &str) -> R<(bool, String)> {
    let r = e
        .node(node)?
        .node_get_volume_stats(req(csi::NodeGetVolumeStatsRequest {
            volume_id: v.id.clone(),
            volume_path: v.target(node),
            staging_target_path: v.staging(),
        }))
        .await
        .map_err(|s| st("NodeGetVolumeStats", s))?
        .into_inner();
    let c = r
        .volume_condition
        .ok_or("NodeGetVolumeStats: no volume_condition")?;
    Ok((c.abnormal, c.message))
}

/// Polls `cond` on `node`'s controllers of `nqn` every 200 ms for up to `secs`.
async fn wait_ctrls(
    e: &E2e,
    node: &str,
    nqn: &str,
    secs: u64,
    what: &str,
    cond: impl Fn(&[(String, String)]) -> bool,
) -> R<(Vec<(String, String)>, f64)> {
    let t0 = Instant::now();
    loop {
        let c = e.ctrls(node, nqn).await?;
        if cond(&c) {
            return Ok((c, t0.elapsed().as_secs_f64()));
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs}s; controllers now {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// e. target port removed and re-added: within ctrl_loss_tmo the same device keeps working;
/// past it the reconciler restores the volume, and NodeGetVolumeStats is abnormal meanwhile.
async fn scenario_reconnect(e: &mut E2e) -> R<()> {
    const TMO: u64 = 8;
    let v = e
        .create(
            "pvc-e2e-recon",
            block_cap(Mode::SingleNodeWriter),
            GIB,
            &[
                ("ctrlLossTmo", "8"),
                ("reconnectDelay", "1"),
                ("keepAliveTmo", "2"),
            ],
        )
        .await?;
    let link = format!("/sys/kernel/config/nvmet/ports/1/subsystems/{}", v.nqn);
    let subsys = format!("/sys/kernel/config/nvmet/subsystems/{}", v.nqn);
    let live = |c: &[(String, String)]| c.iter().any(|(_, s)| s == "live");
    let r = async {
        e.attach(&v, "node-a").await?;
        let dev0 = e.block_dev(&v, "node-a").await?;
        let p = e.block_write(&v, "node-a", 4, 1).await?;
        // 1. short outage, well inside ctrl_loss_tmo
        e.sh_ok("node-a", &format!("[ -L '{link}' ] && rm '{link}'")).await?;
        let (c, t) = wait_ctrls(e, "node-a", &v.nqn, 15, "controller leaves live after the port link is removed", |c| !c.is_empty() && !live(c)).await?;
        say(format!("reconnect: port link removed; after {t:.1}s the host controller is {c:?}"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        e.sh_ok("node-a", &format!("ln -s '{subsys}' '{link}'")).await?;
        let (c, t) = wait_ctrls(e, "node-a", &v.nqn, 20, "controller live again after the port link is back", live).await?;
        let dev1 = e.block_dev(&v, "node-a").await?;
        ensure!(dev1 == dev0, "the device changed across a short outage: {dev0} -> {dev1}");
        let seen = e.block_read(&v, "node-a", 4, 1).await?;
        ensure!(seen == p, "after the short outage node-a reads md5 {seen}, wrote {p}");
        let (abn, msg) = stats(e, &v, "node-a").await?;
        ensure!(!abn, "after the short outage NodeGetVolumeStats is abnormal: {msg}");
        say(format!("reconnect: link back; live again after {t:.1}s ({c:?}), same device {dev1}, data intact, stats normal"));
        // 2. long outage, past ctrl_loss_tmo: the kernel drops the controller
        e.sh_ok("node-a", &format!("rm '{link}'")).await?;
        let (_, t) = wait_ctrls(e, "node-a", &v.nqn, TMO + 30, "kernel removes the controller after ctrl_loss_tmo", |c| c.is_empty()).await?;
        let (abn, msg) = stats(e, &v, "node-a").await?;
        ensure!(abn, "with no controller left, NodeGetVolumeStats must report abnormal; got normal: {msg}");
        say(format!("reconnect: controller gone after {t:.1}s (ctrl_loss_tmo {TMO}s); NodeGetVolumeStats abnormal: {msg}"));
        e.sh_ok("node-a", &format!("ln -s '{subsys}' '{link}'")).await?;
        let (c, t) = wait_ctrls(e, "node-a", &v.nqn, 60, "the node's reconciler reconnects the staged volume", live).await?;
        say(format!("reconnect: link back; the reconciler reconnected after {t:.1}s: {c:?}"));
        // The device may be renumbered: NodeGetVolumeStats says so (stale), a NodePublish
        // repairs the block node (what a pod restart does); then all is normal.
        let (abn, msg) = stats(e, &v, "node-a").await?;
        if abn {
            say(format!("reconnect: stats after reconnect: abnormal ({msg}); publishing again"));
            e.publish(&v, "node-a").await?;
        }
        let (abn, msg) = stats(e, &v, "node-a").await?;
        ensure!(!abn, "after the reconciler's reconnect NodeGetVolumeStats stays abnormal: {msg}");
        let seen = e.block_read(&v, "node-a", 4, 1).await?;
        ensure!(seen == p, "after the reconnect node-a reads md5 {seen}, wrote {p}");
        say(format!("reconnect: volume restored, data intact, stats normal: {msg}"));
        e.detach(&v, "node-a").await?;
        e.delete(&v).await
    }
    .await;
    if r.is_err() {
        let _ = e
            .sh(
                "node-a",
                &format!("[ -e '{link}' ] || ln -s '{subsys}' '{link}'"),
            )
            .await;
        e.cleanup(&v, &["node-a"]).await;
    }
    r
}

/// `m` with a gRPC deadline of `d` (what the kubelet gives the call).
fn req_within<T>(m: T, d: Duration) -> Request<T> {
    let mut r = Request::new(m);
    r.set_timeout(d);
    r
}

/// i. target lost for good while a filesystem volume is staged and published, with writes the
/// kernel can never complete: NodeGetVolumeStats is abnormal, NodeUnpublish and NodeUnstage
/// answer OK within the kubelet's deadlines (the staging unmount waits for the kernel to fail
/// the pending writes at ctrl_loss_tmo), the node answers other calls meanwhile, and no mount
/// or controller is left.
async fn scenario_target_lost(e: &mut E2e) -> R<()> {
    const TMO: u64 = 8;
    // The kubelet's timeout for node calls (pkg/volume/csi: csiTimeout).
    const KUBELET: Duration = Duration::from_secs(120);
    let v = e
        .create(
            "pvc-e2e-lost",
            mount_cap("ext4", Mode::SingleNodeWriter),
            GIB,
            &[
                ("ctrlLossTmo", "8"),
                ("reconnectDelay", "1"),
                ("keepAliveTmo", "2"),
            ],
        )
        .await?;
    let link = format!("/sys/kernel/config/nvmet/ports/1/subsystems/{}", v.nqn);
    let live = |c: &[(String, String)]| c.iter().any(|(_, s)| s == "live");
    let (target, staging) = (v.target("node-a"), v.staging());
    let r = async {
        e.attach(&v, "node-a").await?;
        e.fs_write(&v, "node-a", "synced.bin").await?;
        // Dirty pages, left for writeback: they can never reach the target.
        e.sh_ok(
            "node-a",
            &format!("dd if=/dev/urandom of='{target}/dirty.bin' bs=1M count=8 2>/dev/null"),
        )
        .await?;
        // The export is removed for good (an operator, a failed RDS): never restored.
        e.sh_ok("node-a", &format!("[ -L '{link}' ] && rm '{link}'"))
            .await?;
        let (c, t) = wait_ctrls(e, "node-a", &v.nqn, 15, "controller leaves live after the export is removed", |c| !c.is_empty() && !live(c)).await?;
        let (abn, msg) = stats(e, &v, "node-a").await?;
        ensure!(abn, "target lost ({c:?}): NodeGetVolumeStats must be abnormal; got normal: {msg}");
        say(format!("lost: export removed; after {t:.1}s the controller is {c:?}; stats abnormal: {msg}"));
        let t0 = Instant::now();
        e.node("node-a")?
            .node_unpublish_volume(req_within(
                csi::NodeUnpublishVolumeRequest {
                    volume_id: v.id.clone(),
                    target_path: target.clone(),
                },
                KUBELET,
            ))
            .await
            .map_err(|s| st("NodeUnpublish with the target lost", s))?;
        let t_unpub = t0.elapsed().as_secs_f64();
        ensure!(
            e.mount_at("node-a", &target).await?.is_none(),
            "after NodeUnpublish something is still mounted at {target}"
        );
        // NodeUnstage while the kernel still retries; another call for the volume answers
        // meanwhile (ABORTED while the unstage runs, NOT_FOUND once it is done).
        let t0 = Instant::now();
        let mut n = e.node("node-a")?;
        let unstage = n.node_unstage_volume(req_within(
            csi::NodeUnstageVolumeRequest {
                volume_id: v.id.clone(),
                staging_target_path: staging.clone(),
            },
            KUBELET,
        ));
        let probe = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t = Instant::now();
            let r = e
                .node("node-a")?
                .node_get_volume_stats(req_within(
                    csi::NodeGetVolumeStatsRequest {
                        volume_id: v.id.clone(),
                        volume_path: staging.clone(),
                        staging_target_path: staging.clone(),
                    },
                    Duration::from_secs(10),
                ))
                .await;
            let secs = t.elapsed().as_secs_f64();
            match r {
                Err(s) if matches!(s.code(), Code::Aborted | Code::NotFound) => {
                    Ok(format!("{:?} in {secs:.1}s", s.code()))
                }
                Ok(r) if r.get_ref().volume_condition.as_ref().is_some_and(|c| c.abnormal) => {
                    Ok(format!("OK abnormal in {secs:.1}s"))
                }
                Ok(r) => Err(format!("NodeGetVolumeStats during the unstage: normal: {:?}", r.into_inner().volume_condition)),
                Err(s) => Err(st("NodeGetVolumeStats during the unstage (expected ABORTED or NOT_FOUND)", s)),
            }
        };
        let (u, p) = tokio::join!(unstage, probe);
        u.map_err(|s| st("NodeUnstage with the target lost", s))?;
        let t_unstage = t0.elapsed().as_secs_f64();
        let p = p?;
        ensure!(
            e.mount_at("node-a", &staging).await?.is_none(),
            "after NodeUnstage something is still mounted at {staging}"
        );
        let c = e.ctrls("node-a", &v.nqn).await?;
        ensure!(c.is_empty(), "after NodeUnstage, controllers of {} are left: {c:?}", v.nqn);
        say(format!(
            "lost: NodeUnpublish OK in {t_unpub:.1}s, NodeUnstage OK in {t_unstage:.1}s (ctrl_loss_tmo {TMO}s, deadlines {}s); stats during the unstage: {p}; nothing mounted, no controller left",
            KUBELET.as_secs()
        ));
        e.cunpub(&v, "node-a").await?;
        e.delete(&v).await
    }
    .await;
    if r.is_err() {
        e.cleanup(&v, &["node-a"]).await;
    }
    r
}

/// h. NodeStage latency (connect -> device ready) over `n` block volumes.
async fn scenario_latency(e: &mut E2e, n: usize) -> R<String> {
    let mut vols = Vec::new();
    let r = async {
        for i in 0..n {
            let v = e
                .create(&format!("pvc-e2e-lat-{i:02}"), block_cap(Mode::SingleNodeWriter), GIB, &[])
                .await?;
            vols.push(v.clone());
            e.cpub(&v, "node-a").await?;
        }
        let mut lat = Vec::new();
        for v in &vols {
            let t0 = Instant::now();
            e.stage(v, "node-a").await?;
            lat.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let c = e
            .sh_ok("node-a", "ls -d /sys/class/nvme/nvme* | wc -l")
            .await?;
        say(format!("latency: {} volumes staged at once ({} NVMe controllers on node-a)", vols.len(), c.trim()));
        for v in &vols {
            e.unstage(v, "node-a").await?;
            e.cunpub(v, "node-a").await?;
            e.delete(v).await?;
        }
        let mut s = lat.clone();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let med = if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        };
        let all: Vec<String> = lat.iter().map(|x| format!("{x:.0}")).collect();
        Ok(format!(
            "NodeStage latency over {} block volumes (connect -> device ready, TCG guest): median {:.0} ms, max {:.0} ms, min {:.0} ms; all (ms): {}",
            lat.len(),
            med,
            s[s.len() - 1],
            s[0],
            all.join(" ")
        ))
    }
    .await;
    if r.is_err() {
        for v in &vols {
            e.cleanup(v, &["node-a"]).await;
        }
    }
    r
}

// ------------------------------------------------------------------------------------------

struct Opts {
    controller: String,
    nodes: Vec<(String, String)>,
    agents: Vec<(String, String)>,
    logs: Vec<(String, String)>,
    metrics: String,
    scenarios: String,
    stage_count: usize,
}

fn parse_opts(args: &[String]) -> R<Opts> {
    let mut o = Opts {
        controller: String::new(),
        nodes: Vec::new(),
        agents: Vec::new(),
        logs: Vec::new(),
        metrics: "http://127.0.0.1:9809/metrics".into(),
        scenarios: "a,b,c,d,e,f,g,h,i".into(),
        stage_count: 20,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let kv = |s: String| {
            s.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or(format!("expected id=value, got {s:?}"))
        };
        match a.as_str() {
            "--controller" => o.controller = val()?,
            "--node" => o.nodes.push(kv(val()?)?),
            "--agent" => o.agents.push(kv(val()?)?),
            "--node-log" => o.logs.push(kv(val()?)?),
            "--metrics" => o.metrics = val()?,
            "--scenarios" => o.scenarios = val()?,
            "--stage-count" => {
                o.stage_count = val()?.parse().map_err(|_| "--stage-count: a number")?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    ensure!(!o.controller.is_empty(), "--controller is required");
    for id in o.scenarios.split(',').map(str::trim) {
        ensure!(
            ["a", "b", "c", "d", "e", "f", "g", "h", "i"].contains(&id),
            "--scenarios: unknown scenario {id:?} (known: a,b,c,d,e,f,g,h,i)"
        );
    }
    Ok(o)
}

async fn run(o: Opts) -> R<bool> {
    let t_all = Instant::now();
    let ctl = ControllerClient::new(channel(&o.controller, Duration::from_secs(90)).await?);
    let mut nodes = HashMap::new();
    for (id, ep) in &o.nodes {
        nodes.insert(
            id.clone(),
            NodeClient::new(channel(ep, Duration::from_secs(120)).await?),
        );
    }
    let mut e = E2e {
        ctl,
        nodes,
        agents: o.agents.into_iter().collect(),
        metrics_url: o.metrics,
        node_logs: o.logs.into_iter().collect(),
        pubctx: HashMap::new(),
    };
    for (n, a) in e.agents.clone() {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            match run_remote(&a, "echo ok").await {
                Ok((0, _)) => break,
                r if Instant::now() > until => return Err(format!("agent of {n} at {a}: {r:?}")),
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }
    for (id, mut c) in e.nodes.clone() {
        let info = c
            .node_get_info(req(csi::NodeGetInfoRequest {}))
            .await
            .map_err(|s| st("NodeGetInfo", s))?
            .into_inner();
        ensure!(
            info.node_id == id,
            "endpoint of {id} reports node id {}",
            info.node_id
        );
    }
    say(format!(
        "harness ready in {:.1}s",
        t_all.elapsed().as_secs_f64()
    ));

    let want: Vec<String> = o
        .scenarios
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    let on = |s: &str| want.iter().any(|w| w == s);
    let mut results: Vec<(String, String, bool, f64, String)> = Vec::new();
    let mut record = |id: &str, title: &str, r: &R<()>, secs: f64| {
        let (ok, why) = match r {
            Ok(()) => (true, String::new()),
            Err(e) => (false, e.clone()),
        };
        println!(
            "E2E-SCENARIO {id} {} {secs:.1}s {title}{}",
            if ok { "PASS" } else { "FAIL" },
            if ok {
                String::new()
            } else {
                format!(": {why}")
            }
        );
        results.push((id.into(), title.into(), ok, secs, why));
    };
    let mut latency_line = None;

    if on("a") {
        for fs in ["ext4", "xfs"] {
            let t = Instant::now();
            let r = scenario_fs_handoff(&mut e, fs).await;
            record(
                &format!("a-{fs}"),
                &format!("{fs} volume: write on node-a, handoff, same data on node-b"),
                &r,
                t.elapsed().as_secs_f64(),
            );
        }
    }
    if on("b") || on("c") {
        let t = Instant::now();
        let (rb, rc) = scenario_migration(&mut e).await;
        let secs = t.elapsed().as_secs_f64();
        if on("b") {
            record("b", "RWX block live migration node-a -> node-b, both attached, data visible, migration metric +1", &rb, secs);
        }
        if on("c") {
            record(
                "c",
                "third node refused with FAILED_PRECONDITION during the migration",
                &rc,
                0.0,
            );
        }
    }
    if on("d") {
        let t = Instant::now();
        let r = scenario_holder(&mut e).await;
        record("d", "device held open: NodeUnstage refused naming the pid, stays connected; after kill it disconnects", &r, t.elapsed().as_secs_f64());
    }
    if on("f") {
        let t = Instant::now();
        let r = scenario_expand(&mut e).await;
        record(
            "f",
            "online expansion: ControllerExpand + NodeExpand grow a mounted ext4",
            &r,
            t.elapsed().as_secs_f64(),
        );
    }
    if on("g") {
        let t = Instant::now();
        let r = scenario_restage(&mut e).await;
        record(
            "g",
            "restage keeps data: no reformat of a volume with a filesystem",
            &r,
            t.elapsed().as_secs_f64(),
        );
    }
    if on("e") {
        let t = Instant::now();
        let r = scenario_reconnect(&mut e).await;
        record("e", "target port removed: short outage keeps the device; past ctrl_loss_tmo the reconciler restores it, stats abnormal meanwhile", &r, t.elapsed().as_secs_f64());
    }
    if on("i") {
        let t = Instant::now();
        let r = scenario_target_lost(&mut e).await;
        record("i", "target lost for good while published: stats abnormal, NodeUnpublish and NodeUnstage OK within their deadlines, nothing left", &r, t.elapsed().as_secs_f64());
    }
    if on("h") {
        let t = Instant::now();
        let r = scenario_latency(&mut e, o.stage_count).await;
        let rr = r.as_ref().map(|_| ()).map_err(Clone::clone);
        if let Ok(line) = &r {
            latency_line = Some(line.clone());
        }
        record(
            "h",
            &format!("NodeStage latency over {} volumes", o.stage_count),
            &rr,
            t.elapsed().as_secs_f64(),
        );
    }

    println!("E2E-SUMMARY ---------------------------------------------------------------");
    for (id, title, ok, secs, why) in &results {
        println!(
            "E2E-SUMMARY {:<7} {:<4} {:>6.1}s  {title}{}",
            id,
            if *ok { "PASS" } else { "FAIL" },
            secs,
            if *ok {
                String::new()
            } else {
                format!("\nE2E-SUMMARY         reason: {why}")
            }
        );
    }
    if let Some(l) = latency_line {
        println!("E2E-SUMMARY {l}");
    }
    let failed = results.iter().filter(|r| !r.2).count();
    println!(
        "E2E-SUMMARY {} scenario(s), {} passed, {failed} failed, driver wall time {:.1}s (guest clock, TCG)",
        results.len(),
        results.len() - failed,
        t_all.elapsed().as_secs_f64()
    );
    Ok(failed == 0 && !results.is_empty())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let r = match args.first().map(String::as_str) {
        Some("agent") => match args.get(1..3) {
            Some([flag, addr]) if flag == "--listen" => rt.block_on(agent(addr)).map(|()| true),
            _ => Err("usage: rds-csi-e2e agent --listen ADDR".into()),
        },
        Some("run") => parse_opts(&args[1..]).and_then(|o| rt.block_on(run(o))),
        _ => Err("usage: rds-csi-e2e run --controller EP --node ID=EP... [--agent ID=ADDR] [--node-log ID=FILE] [--metrics URL] [--scenarios a,b,c,d,e,f,g,h,i] [--stage-count N]\n       rds-csi-e2e agent --listen ADDR".into()),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            println!("E2E-ERROR {e}");
            ExitCode::from(2)
        }
    }
}
