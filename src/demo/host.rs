//! What this machine allows the demo to do: root, the node tools, NVMe/TCP, and whether a
//! holder scan in this pid namespace can see every process.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use node_io::holders::{scan_processes, ScanMode};

/// Set in the copy of the demo that runs inside its own pid namespace.
pub const IN_PIDNS_ENV: &str = "RDS_CSI_DEMO_IN_PIDNS";

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let p = d.join(tool);
            p.is_file()
                && std::fs::metadata(&p)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// Why node steps (loop devices, mkfs, mount) cannot run here, with the fix.
pub fn node_blocker() -> Option<String> {
    if !is_root() {
        return Some(
            "needs root (loop devices, mkfs, mount): run the demo as root (e.g. `sudo target/release/rds-csi demo`) for the node steps"
                .into(),
        );
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("/dev/loop-control is missing: load the loop module (`modprobe loop`)".into());
    }
    for tool in ["losetup", "mkfs.xfs", "xfs_growfs"] {
        if !have(tool) {
            return Some(format!(
                "{tool} is not installed: run scripts/setup-test-host.sh (installs util-linux, xfsprogs, e2fsprogs)"
            ));
        }
    }
    None
}

/// One line on the transport: the demo always uses loop devices; says whether NVMe/TCP
/// would be possible on this kernel.
pub fn transport_note() -> String {
    let tcp = Path::new("/sys/module/nvme_tcp").exists();
    let nvmet = Path::new(crate::runtime::cli::DEFAULT_NVMET_ROOT).exists();
    let why = match (tcp, nvmet) {
        (true, true) => "nvme-tcp and nvmet configfs are present, so NVMe/TCP would be possible (`rds-csi simulator --export nvmet`), but the demo keeps to loop devices so it runs the same everywhere".to_string(),
        (true, false) => "nvme-tcp is loaded but there is no nvmet configfs (/sys/kernel/config/nvmet) to export from".to_string(),
        (false, _) => "this kernel has no nvme-tcp (/sys/module/nvme_tcp is missing)".to_string(),
    };
    format!("transport: loop devices over the simulator's backing files ({why})")
}

/// Processes in this pid namespace whose fds a holder scan cannot read (0 = complete).
pub fn holder_scan_blind_spots() -> Result<Vec<String>, String> {
    let scan = scan_processes(Path::new("/proc"), &[], ScanMode::Sequential)
        .map_err(|e| format!("cannot scan /proc: {e}"))?;
    Ok(scan
        .skipped_pids
        .iter()
        .map(|s| format!("pid {}: {}", s.pid, s.error))
        .collect())
}

pub fn in_private_pidns() -> bool {
    std::env::var_os(IN_PIDNS_ENV).is_some()
}

/// Whether `unshare --pid --fork --mount-proc` works here.
fn unshare_works() -> bool {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs this demo again inside its own pid and mount namespace, where every process is
/// inspectable (as for the node plugin with hostPID on a real node) and mounts vanish with
/// the namespace. Returns None when that is not possible (the caller then skips unstage).
pub fn reexec_in_pidns(keep: bool) -> Option<ExitCode> {
    if !unshare_works() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(exe)
        .arg("demo")
        .env(IN_PIDNS_ENV, "1");
    if keep {
        cmd.arg("--keep");
    }
    // Ctrl-C reaches the child too; it cleans up and exits. Waiting here keeps its output
    // and exit status attached to this terminal.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions. Neither std nor
    // rustix (whose signal API is unsafe too) offers a safe way to set one.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    match cmd.status() {
        Ok(s) => Some(match s.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            None => {
                eprintln!("rds-csi demo: the demo in its pid namespace was killed ({s})");
                ExitCode::FAILURE
            }
        }),
        Err(e) => {
            eprintln!("rds-csi demo: cannot run unshare: {e}");
            None
        }
    }
}
