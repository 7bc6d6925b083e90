//! `rds-csi doctor` (issue 18.7), the real binary: on fake /sys, /proc and /dev trees and a
//! fake tool directory, on this machine's own roots, and against the simulator over real SSH
//! on loopback. Asserts the lines (verdict, check, key words of the remedy) and the exit code.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rds_csi::node::preflight::{checks, NodeEnv, HOST_PID_NAMESPACE};
use rds_csi::node::TransportConfig;
use rds_csi::rds::size::MIB;
use rds_csi::runtime::preflight::Verdict;
use rds_csi::simulator::harness::{start_simulator, SimHandle, SimOptions};

const EXT4_TOOLS: &[&str] = &["mkfs.ext4", "resize2fs", "dumpe2fs", "e2fsck"];
const XFS_TOOLS: &[&str] = &["mkfs.xfs", "xfs_growfs"];
/// Every capability, as root has them; bit 19 is CAP_SYS_PTRACE.
const ALL_CAPS: &str = "000001ffffffffff";
const NO_PTRACE: &str = "000001fffff7ffff";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The one line of check `name`.
    fn line(&self, name: &str) -> &str {
        let found: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(&format!("{name}:")))
            .collect();
        assert_eq!(found.len(), 1, "one line for {name} in:\n{}", self.stdout);
        found[0]
    }

    fn assert_stderr_has(&self, text: &str) {
        assert!(self.stderr.contains(text), "{}", self.stderr);
    }

    fn assert_line(&self, name: &str, verdict: &str, words: &[&str]) {
        let l = self.line(name);
        assert!(l.starts_with(&format!("{verdict} {name}: ")), "{l}");
        for w in words {
            assert!(l.contains(w), "{w:?} missing from {l:?}");
        }
    }
}

fn doctor(args: &[&str], path: Option<&Path>) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rds-csi"));
    c.arg("doctor").args(args);
    // Only the flags given here count, never an RDS_CSI_* of the environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("RDS_CSI_") {
            c.env_remove(k);
        }
    }
    if let Some(p) = path {
        c.env("PATH", p);
    }
    finish(c.output().unwrap())
}

fn finish(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A fake host: `sys/`, `proc/`, `dev/`, `etc/nvme/hostnqn` and `bin/` under `root`.
struct FakeHost {
    root: tempfile::TempDir,
}

impl FakeHost {
    fn new() -> Self {
        let h = FakeHost {
            root: tempfile::tempdir().unwrap(),
        };
        for d in ["sys/module", "proc/self/ns", "dev", "etc/nvme", "bin"] {
            std::fs::create_dir_all(h.path(d)).unwrap();
        }
        h
    }
    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }
    /// A healthy node: nvme-tcp loaded, nvme-fabrics present, the host's pid namespace with
    /// CAP_SYS_PTRACE, every process inspectable, a unique host NQN, every tool.
    fn healthy() -> Self {
        let h = FakeHost::new();
        std::fs::create_dir_all(h.path("sys/module/nvme_tcp")).unwrap();
        std::fs::write(h.path("dev/nvme-fabrics"), "").unwrap();
        h.pid_namespace(HOST_PID_NAMESPACE);
        h.caps(ALL_CAPS);
        h.process(1, "systemd");
        h.process(42, "kubelet");
        h.host_nqn("nqn.2014-08.org.nvmexpress:uuid:6f1c3b9e-2f4d-4a7b-9c1e-5d2a8b7c4e10");
        for t in EXT4_TOOLS.iter().chain(XFS_TOOLS) {
            h.tool(t, 0o755);
        }
        h
    }
    fn pid_namespace(&self, ns: &str) {
        let l = self.path("proc/self/ns/pid");
        let _ = std::fs::remove_file(&l);
        symlink(ns, l).unwrap();
    }
    fn caps(&self, cap_eff: &str) {
        std::fs::write(
            self.path("proc/self/status"),
            format!("Name:\trds-csi\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff}\n"),
        )
        .unwrap();
    }
    /// A process with one open fd (on /dev/null).
    fn process(&self, pid: u32, comm: &str) {
        let d = self.path(&format!("proc/{pid}"));
        std::fs::create_dir_all(d.join("fd")).unwrap();
        std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
        symlink("/dev/null", d.join("fd/0")).unwrap();
    }
    /// A process whose fd table cannot be listed.
    fn hidden_process(&self, pid: u32, comm: &str) {
        let d = self.path(&format!("proc/{pid}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
        // Not a directory: listing it fails like EACCES does, whoever we are.
        std::fs::write(d.join("fd"), "").unwrap();
    }
    fn host_nqn(&self, nqn: &str) {
        std::fs::write(self.path("etc/nvme/hostnqn"), format!("{nqn}\n")).unwrap();
    }
    fn tool(&self, name: &str, mode: u32) {
        let p = self.path("bin").join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    fn node_args(&self) -> Vec<String> {
        [
            ("--sys-root", "sys"),
            ("--proc-root", "proc"),
            ("--dev-root", "dev"),
            ("--host-nqn-file", "etc/nvme/hostnqn"),
        ]
        .iter()
        .flat_map(|(f, p)| [f.to_string(), self.path(p).display().to_string()])
        .collect()
    }
    fn doctor_node(&self) -> Run {
        let mut args = vec!["node".to_string()];
        args.extend(self.node_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        doctor(&args, Some(&self.path("bin")))
    }
}

#[test]
fn a_healthy_fake_node_passes_every_check() {
    let h = FakeHost::healthy();
    let r = h.doctor_node();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for name in [
        "nvme-tcp",
        "nvme-fabrics",
        "host-pid",
        "holder-scan",
        "host-nqn",
        "ext4-tools",
        "xfs-tools",
    ] {
        r.assert_line(name, "PASS", &[]);
    }
    r.assert_line("holder-scan", "PASS", &["all 2 processes"]);
    // io_uring is this kernel's: available, or the fallback named (never a failure).
    let l = r.line("io-uring");
    assert!(
        l.starts_with("PASS io-uring")
            || (l.starts_with("WARN io-uring") && l.contains("fallback")),
        "{l}"
    );
    assert_eq!(r.stdout.lines().count(), 8, "{}", r.stdout);
}

#[test]
fn a_broken_fake_node_fails_each_check_with_its_remedy() {
    let h = FakeHost::new();
    h.pid_namespace("pid:[4026532999]");
    h.caps(NO_PTRACE);
    h.process(1, "systemd");
    h.hidden_process(7, "sshd");
    // A cloned image's default, from a board's placeholder SMBIOS UUID.
    h.host_nqn("nqn.2014-08.org.nvmexpress:uuid:03000200-0400-0500-0006-000700080009");
    h.tool("mkfs.ext4", 0o755);
    h.tool("dumpe2fs", 0o755);
    h.tool("e2fsck", 0o755);
    h.tool("resize2fs", 0o644); // not executable
    let r = h.doctor_node();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    r.assert_line(
        "nvme-tcp",
        "FAIL",
        &[
            "not loaded",
            "remedy: ",
            "modprobe nvme-tcp",
            "modules-load.d",
        ],
    );
    r.assert_line(
        "nvme-fabrics",
        "FAIL",
        &["nvme-fabrics is missing", "modprobe nvme-tcp"],
    );
    r.assert_line(
        "host-pid",
        "FAIL",
        &[
            "pid:[4026532999]",
            "not the host's",
            "remedy: set hostPID: true",
        ],
    );
    r.assert_line(
        "holder-scan",
        "FAIL",
        &[
            "incomplete: 1 of 2 processes",
            "pid 7 (sshd)",
            "NodeUnstage refuses",
            "CAP_SYS_PTRACE",
            "SYS_PTRACE",
        ],
    );
    r.assert_line(
        "host-nqn",
        "FAIL",
        &[
            "03000200-0400-0500-0006-000700080009",
            "cloned",
            "remedy: give every node its own",
        ],
    );
    r.assert_line(
        "ext4-tools",
        "FAIL",
        &["resize2fs not found", "install e2fsprogs"],
    );
    r.assert_line(
        "xfs-tools",
        "FAIL",
        &["mkfs.xfs, xfs_growfs not found", "install xfsprogs"],
    );
    r.assert_stderr_has("rds-csi doctor node: 7 check(s) failed: nvme-tcp, nvme-fabrics, host-pid, holder-scan, host-nqn, ext4-tools, xfs-tools");
}

#[test]
fn the_io_uring_fallback_is_a_warning_that_names_its_reason() {
    let h = FakeHost::healthy();
    let env = NodeEnv {
        transport: TransportConfig::NvmeTcp,
        proc_root: h.path("proc"),
        sys_root: h.path("sys"),
        dev_root: h.path("dev"),
        host_nqn_file: h.path("etc/nvme/hostnqn"),
        tool_path: vec![h.path("bin")],
        reader: node_io::reader::ReaderMode::Fallback {
            reason: "io_uring_setup: Operation not permitted (os error 1)".into(),
        },
    };
    let report = checks(&env);
    assert!(report.failed().is_empty(), "{report}");
    let l = report.0.iter().find(|c| c.name == "io-uring").unwrap();
    assert_eq!(l.verdict, Verdict::Warn);
    let text = l.to_string();
    for w in [
        "fallback in use",
        "Operation not permitted",
        "kernel.io_uring_disabled=0",
    ] {
        assert!(text.contains(w), "{w:?} missing from {text:?}");
    }
}

/// What this machine is, seen independently of the doctor.
fn nvme_tcp_loaded() -> bool {
    Path::new("/sys/module/nvme_tcp").is_dir()
}

fn some_process_hides_its_fds() -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.parse::<u32>().is_ok())
            && std::fs::read_dir(e.path().join("fd"))
                .map(|d| {
                    d.flatten().any(|f| {
                        std::fs::read_link(f.path())
                            .is_err_and(|e| e.raw_os_error() == Some(libc::EACCES))
                    })
                })
                .unwrap_or_else(|e| e.raw_os_error() == Some(libc::EACCES))
    })
}

#[test]
fn on_this_machine_the_doctor_fails_with_the_right_remedies() {
    let r = doctor(&["node"], None);
    eprintln!("{}", r.stdout);
    let mut expected_failures = 0;
    if !nvme_tcp_loaded() {
        r.assert_line("nvme-tcp", "FAIL", &["modprobe nvme-tcp"]);
        r.assert_line("nvme-fabrics", "FAIL", &["/dev/nvme-fabrics is missing"]);
        expected_failures += 2;
    }
    if some_process_hides_its_fds() {
        // Root with every capability, yet pid 1 hides its fds: the remedy says so instead of
        // asking for a capability this process already has.
        r.assert_line(
            "holder-scan",
            "FAIL",
            &["incomplete", "NodeUnstage refuses"],
        );
        expected_failures += 1;
    }
    let failed = r.stdout.lines().filter(|l| l.starts_with("FAIL ")).count();
    assert!(failed >= expected_failures, "{}", r.stdout);
    assert_eq!(r.code, if failed > 0 { 1 } else { 0 }, "{}", r.stderr);
}

#[test]
fn in_a_private_pid_namespace_the_doctor_asks_for_host_pid() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    let unshare = Command::new("unshare").arg("--version").output().is_ok();
    if !is_root || !unshare {
        eprintln!("SKIP: needs root and unshare (a private pid namespace)");
        return;
    }
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_rds-csi"))
        .args(["doctor", "node"]);
    let r = finish(c.output().unwrap());
    r.assert_line(
        "host-pid",
        "FAIL",
        &["not the host's pid namespace", "hostPID: true"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
}

fn controller_args(sim: &SimHandle, address: &str, host_key: &str) -> Vec<String> {
    vec![
        "controller".into(),
        "--rds-address".into(),
        address.into(),
        "--rds-user".into(),
        "admin".into(),
        "--rds-key-file".into(),
        sim.client_key().display().to_string(),
        "--rds-host-key".into(),
        host_key.into(),
        "--volume-base-path".into(),
        "/storage-pool/csi".into(),
    ]
}

/// The binary blocks; the simulator runs on this test's runtime meanwhile.
async fn doctor_async(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        doctor(&a, None)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_simulator_the_controller_doctor_checks_ssh_pin_and_pool() {
    let (_dir, sim) = common::simulator().await;
    let r = doctor_async(controller_args(&sim, &sim.address(), sim.host_key_line())).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.assert_line("rds-ssh", "PASS", &["\"rds-simulator\"", "pinned host key"]);
    r.assert_line(
        "rds-pool",
        "PASS",
        &["storage-pool", "100.0 GiB free of 100.0 GiB"],
    );
    assert!(sim
        .commands()
        .iter()
        .any(|c| c.contains("/system identity print")));

    // Another simulator's key pinned: refused before anything is sent.
    let other_dir = tempfile::tempdir().unwrap();
    let other = start_simulator(other_dir.path(), SimOptions::default()).await;
    let sent = sim.commands().len();
    let r = doctor_async(controller_args(&sim, &sim.address(), other.host_key_line())).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    r.assert_line(
        "rds-ssh",
        "FAIL",
        &[
            "does not match the pinned key",
            "remedy: ",
            "--rds-host-key",
            "attack",
        ],
    );
    assert_eq!(
        r.stdout.lines().count(),
        1,
        "nothing more is asked: {}",
        r.stdout
    );
    assert_eq!(
        sim.commands().len(),
        sent,
        "nothing sent to an unverified host"
    );

    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = doctor_async(controller_args(
        &sim,
        &closed.to_string(),
        sim.host_key_line(),
    ))
    .await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    r.assert_line(
        "rds-ssh",
        "FAIL",
        &["cannot open an SSH session", "--rds-address"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_pool_fails_the_controller_doctor() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(
        dir.path(),
        SimOptions {
            pool_size: 512 * MIB,
            ..Default::default()
        },
    )
    .await;
    let r = doctor_async(controller_args(&sim, &sim.address(), sim.host_key_line())).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    r.assert_line("rds-ssh", "PASS", &[]);
    r.assert_line(
        "rds-pool",
        "FAIL",
        &["0.5 GiB free", "remedy: free space on the pool"],
    );
    r.assert_stderr_has("1 check(s) failed: rds-pool");
}

#[test]
fn flags_that_describe_nothing_to_check_exit_2() {
    let r = doctor(&["controller"], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has("--rds-address is required");
    let r = doctor(&["node", "--transport", "loop"], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has("--loop-data-dir");
}

#[test]
fn the_node_plugin_runs_the_checks_at_start_and_logs_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .args(["node", "--node-id", "doctor-test", "--metrics-address", ""])
        .args(["--endpoint", &format!("unix://{}", p("csi.sock"))])
        .args(["--state-dir", &p("state"), "--reconcile-interval", "0"])
        .args([
            "--host-nqn-file",
            &p("hostnqn"),
            "--host-id-file",
            &p("hostid"),
        ])
        .env("RDS_CSI_LOG_LEVEL", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log until every check has its line (the plugin keeps serving after them).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lines
        .iter()
        .filter(|l: &&String| l.contains("doctor: "))
        .count()
        < 8
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    // SAFETY: kill(2) on our own child; no memory is touched.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let doctor: Vec<&String> = lines.iter().filter(|l| l.contains("doctor: ")).collect();
    assert_eq!(doctor.len(), 8, "{lines:#?}");
    // The host NQN was generated just before, so it is this host's own.
    assert!(
        doctor.iter().any(|l| l.contains(" INFO ")
            && l.contains("doctor: pass")
            && l.contains("check=\"host-nqn\"")),
        "{doctor:#?}"
    );
    if !nvme_tcp_loaded() {
        let l = doctor
            .iter()
            .find(|l| l.contains("check=\"nvme-tcp\""))
            .unwrap();
        assert!(l.contains(" WARN ") && l.contains("doctor: fail"), "{l}");
        assert!(l.contains("modprobe nvme-tcp"), "{l}");
    }
}
