//! The node's preflight: the kernel's NVMe/TCP host side, io_uring, a complete holder scan
//! (hostPID and CAP_SYS_PTRACE), a host NQN of its own, and the filesystem tools.

use std::path::{Path, PathBuf};

use node_io::holders::{scan_processes, ScanMode};
use node_io::reader::{DeviceReader, ReaderMode};

use crate::node::error::NodeError;
use crate::node::host_identity::check_host_nqn;
use crate::node::{NodeConfig, TransportConfig};
use crate::runtime::cli::{NodeArgs, Transport};
use crate::runtime::preflight::{Check, Report};
use crate::runtime::RoleError;

/// `readlink /proc/self/ns/pid` in the host's (initial) pid namespace: the kernel's
/// PROC_PID_INIT_INO (include/linux/proc_ns.h), the same on every kernel since 3.8.
pub const HOST_PID_NAMESPACE: &str = "pid:[4026531836]";
/// CAP_SYS_PTRACE's bit in `CapEff` (include/uapi/linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;

/// The tools the node runs, by filesystem (src/node/mount.rs, filesystem.rs, expand.rs).
const EXT4_TOOLS: &[&str] = &["mkfs.ext4", "resize2fs", "dumpe2fs", "e2fsck"];
const XFS_TOOLS: &[&str] = &["mkfs.xfs", "xfs_growfs"];

/// What the node checks look at; every root injectable.
#[derive(Debug, Clone)]
pub struct NodeEnv {
    pub transport: TransportConfig,
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
    pub host_nqn_file: PathBuf,
    /// Directories searched for the filesystem tools, in order (`$PATH`).
    pub tool_path: Vec<PathBuf>,
    /// How node-io reads devices here (`DeviceReader::new().mode()`).
    pub reader: ReaderMode,
}

impl NodeEnv {
    /// The environment of a configured node plugin, tools searched in `$PATH`.
    pub fn of(config: &NodeConfig, reader: ReaderMode) -> Self {
        NodeEnv {
            transport: config.transport.clone(),
            proc_root: config.proc_root.clone(),
            sys_root: config.sys_root.clone(),
            dev_root: config.dev_root.clone(),
            host_nqn_file: config.host_nqn_file.clone(),
            tool_path: search_path(),
            reader,
        }
    }
}

fn search_path() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// `rds-csi doctor node`: the node plugin's own flags (and `RDS_CSI_*` environment), so
/// inside the node pod it checks exactly what the plugin uses; `--node-id` is not needed.
pub async fn run(a: NodeArgs) -> Result<Report, RoleError> {
    let transport = match a.transport {
        Transport::NvmeTcp => TransportConfig::NvmeTcp,
        Transport::Loop => TransportConfig::Loop {
            data_dir: a
                .loop_data_dir
                .clone()
                .ok_or("--transport loop needs --loop-data-dir: the simulator's data directory")?,
        },
    };
    let env = NodeEnv {
        transport,
        proc_root: a.proc_root,
        sys_root: a.sys_root,
        dev_root: a.dev_root,
        host_nqn_file: a.host_nqn_file,
        tool_path: search_path(),
        reader: DeviceReader::new().mode().clone(),
    };
    // The process scan reads every /proc/<pid>/fd: blocking work, off the runtime.
    tokio::task::spawn_blocking(move || checks(&env))
        .await
        .map_err(|e| RoleError::Failed(format!("the node checks panicked: {e}")))
}

/// Every node check, in the order an operator fixes them. Blocking (reads /proc and /sys).
pub fn checks(env: &NodeEnv) -> Report {
    let mut out = Vec::new();
    match &env.transport {
        TransportConfig::NvmeTcp => {
            out.push(nvme_tcp_module(env));
            out.push(nvme_fabrics(env));
        }
        TransportConfig::Loop { data_dir } => out.push(loop_devices(env, data_dir)),
    }
    out.push(io_uring(&env.reader));
    out.push(pid_namespace(&env.proc_root));
    out.push(holder_scan(&env.proc_root));
    out.push(host_nqn(&env.host_nqn_file));
    out.push(tools("ext4-tools", EXT4_TOOLS, "e2fsprogs", &env.tool_path));
    out.push(tools("xfs-tools", XFS_TOOLS, "xfsprogs", &env.tool_path));
    Report(out)
}

const LOAD_NVME_TCP: &str = "load it on the host with `modprobe nvme-tcp`, and at every boot with \
     `echo nvme-tcp > /etc/modules-load.d/nvme-tcp.conf`";

fn nvme_tcp_module(env: &NodeEnv) -> Check {
    let sys = env.sys_root.join("module/nvme_tcp");
    let listed = std::fs::read_to_string(env.proc_root.join("modules"))
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().next() == Some("nvme_tcp"))
        })
        .unwrap_or(false);
    if sys.is_dir() || listed {
        Check::pass(
            "nvme-tcp",
            format!("kernel module loaded ({})", sys.display()),
        )
    } else {
        Check::fail(
            "nvme-tcp",
            format!(
                "kernel module nvme_tcp is not loaded ({} absent, not in {})",
                sys.display(),
                env.proc_root.join("modules").display()
            ),
            LOAD_NVME_TCP,
        )
    }
}

fn nvme_fabrics(env: &NodeEnv) -> Check {
    let f = env.dev_root.join("nvme-fabrics");
    if f.exists() {
        Check::pass("nvme-fabrics", format!("{} present", f.display()))
    } else {
        Check::fail(
            "nvme-fabrics",
            format!("{} is missing: volumes cannot be connected", f.display()),
            format!(
                "{LOAD_NVME_TCP} (it loads nvme-fabrics); in a container, mount the host's /dev"
            ),
        )
    }
}

fn loop_devices(env: &NodeEnv, data_dir: &Path) -> Check {
    let ctl = env.dev_root.join("loop-control");
    if !ctl.exists() {
        Check::fail(
            "loop",
            format!("{} is missing", ctl.display()),
            "load the loop module: `modprobe loop`",
        )
    } else if !data_dir.is_dir() {
        Check::fail(
            "loop",
            format!("--loop-data-dir {} is not a directory", data_dir.display()),
            "point --loop-data-dir at the simulator's --data-dir",
        )
    } else {
        Check::pass("loop", format!("{} present", ctl.display()))
    }
}

fn io_uring(mode: &ReaderMode) -> Check {
    match mode {
        ReaderMode::IoUring => Check::pass(
            "io-uring",
            "available: device reads run on node-io's ring with linked timeouts",
        ),
        ReaderMode::Fallback { reason } => Check::warn(
            "io-uring",
            format!(
                "unavailable ({reason}); fallback in use: device reads run on helper threads, \
                 at most {} stuck on a dead target at once",
                node_io::reader::MAX_BLOCKED_HELPERS
            ),
            "allow io_uring for the node plugin: sysctl kernel.io_uring_disabled=0, and a \
             seccomp profile that permits io_uring_setup and io_uring_enter",
        ),
    }
}

fn pid_namespace(proc_root: &Path) -> Check {
    let link = proc_root.join("self/ns/pid");
    match std::fs::read_link(&link) {
        Ok(ns) if ns.as_os_str() == HOST_PID_NAMESPACE => Check::pass(
            "host-pid",
            format!(
                "{} is the host's pid namespace ({HOST_PID_NAMESPACE})",
                link.display()
            ),
        ),
        Ok(ns) => Check::fail(
            "host-pid",
            format!(
                "{} is {}, not the host's pid namespace ({HOST_PID_NAMESPACE}): the holder \
                 scan sees only this container's processes, so a device held open elsewhere \
                 on the host could be disconnected",
                link.display(),
                ns.display()
            ),
            "set hostPID: true in the node plugin's DaemonSet",
        ),
        Err(e) => Check::fail(
            "host-pid",
            format!("cannot read {}: {e}", link.display()),
            "mount the host's /proc (hostPID: true) and pass it as --proc-root",
        ),
    }
}

/// Whether `CapEff` in `<proc>/self/status` has CAP_SYS_PTRACE; `None` if unreadable.
fn has_sys_ptrace(proc_root: &Path) -> Option<bool> {
    let status = std::fs::read_to_string(proc_root.join("self/status")).ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & (1 << CAP_SYS_PTRACE) != 0)
}

fn holder_scan(proc_root: &Path) -> Check {
    let scan = match scan_processes(proc_root, &[], ScanMode::Sequential) {
        Ok(s) => s,
        Err(e) => {
            return Check::fail(
                "holder-scan",
                format!("cannot scan processes: {e}"),
                "mount the host's /proc (hostPID: true) and pass it as --proc-root",
            )
        }
    };
    let total = scan.scanned_pids + scan.skipped_pids.len();
    if scan.skipped_pids.is_empty() {
        return Check::pass(
            "holder-scan",
            format!("complete: the open files of all {total} processes were inspected"),
        );
    }
    let shown: Vec<String> = scan
        .skipped_pids
        .iter()
        .take(3)
        .map(|s| {
            let comm = std::fs::read_to_string(proc_root.join(s.pid.to_string()).join("comm"))
                .map(|c| c.trim().to_owned())
                .unwrap_or_else(|_| "?".into());
            format!("pid {} ({comm}): {}", s.pid, s.error)
        })
        .collect();
    let detail =
        format!(
        "incomplete: {} of {total} processes could not be inspected ({}{}); NodeUnstage refuses \
         to disconnect a volume while the scan is incomplete",
        scan.skipped_pids.len(),
        shown.join("; "),
        if scan.skipped_pids.len() > 3 { "; ..." } else { "" }
    );
    let remedy = match has_sys_ptrace(proc_root) {
        Some(false) => "add CAP_SYS_PTRACE to the node plugin (securityContext.capabilities.add: \
                        [SYS_PTRACE], or privileged: true)"
            .to_owned(),
        Some(true) => "this process has CAP_SYS_PTRACE, yet these processes hide their open files \
                       (a security module or a hardened init): allow the node plugin to read \
                       their /proc/<pid>/fd, or unstage will keep refusing on this host"
            .to_owned(),
        None => format!(
            "cannot read CapEff from {}: give the node plugin CAP_SYS_PTRACE and hostPID: true",
            proc_root.join("self/status").display()
        ),
    };
    Check::fail("holder-scan", detail, remedy)
}

fn host_nqn(file: &Path) -> Check {
    let nqn = match std::fs::read_to_string(file) {
        Ok(s) => s.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::pass(
                "host-nqn",
                format!(
                    "{} absent: the node plugin generates a unique one at its first start",
                    file.display()
                ),
            )
        }
        Err(e) => {
            return Check::fail(
                "host-nqn",
                format!("cannot read {}: {e}", file.display()),
                "mount the host's /etc/nvme (hostPath) and make it readable",
            )
        }
    };
    let remedy = format!(
        "give every node its own: remove {} (the node plugin then generates a unique one) or \
         write `nqn.2014-08.org.nvmexpress:uuid:$(cat /proc/sys/kernel/random/uuid)` into it",
        file.display()
    );
    match check_host_nqn(&nqn, file) {
        Ok(()) => Check::pass("host-nqn", format!("{nqn} (from {})", file.display())),
        Err(NodeError::SharedHostNqn { .. }) => Check::fail(
            "host-nqn",
            format!(
                "{nqn} in {} is a well-known default shared by cloned images: the RDS cannot \
                 tell this node from others",
                file.display()
            ),
            remedy,
        ),
        Err(_) => Check::fail(
            "host-nqn",
            format!(
                "{:?} in {} is not a valid NQN",
                nqn.chars().take(80).collect::<String>(),
                file.display()
            ),
            remedy,
        ),
    }
}

/// An executable regular file named `name` in the first directory of `path` that has one.
fn find_tool(name: &str, path: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.iter().map(|d| d.join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn tools(name: &'static str, want: &[&str], package: &str, path: &[PathBuf]) -> Check {
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|t| find_tool(t, path).is_none())
        .collect();
    if missing.is_empty() {
        Check::pass(name, format!("{} found", want.join(", ")))
    } else {
        Check::fail(
            name,
            format!(
                "{} not found in the search path ({})",
                missing.join(", "),
                std::env::join_paths(path)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            format!("install {package} in the node plugin's image (or fix PATH)"),
        )
    }
}
