//! rds-csi end-to-end driver, run INSIDE the QEMU guests started by `scripts/e2e-vm.sh`.
//!
//! `rds-csi-e2e run ...` drives the CSI sockets of a real `rds-csi controller` and of real
//! `rds-csi node` plugins (node-a local on a unix socket, node-b in the second VM over
//! `tcp://`) against the RDS simulator exporting volumes through the kernel's nvmet, over real
//! NVMe/TCP. The CSI calls go through the driver's shared scenario client
//! (`rds_csi::scenario`, also used by `rds-csi demo`); shell checks on node-b (read a
//! pattern, list /sys/class/nvme) go through `rds-csi-e2e agent`, a tiny command runner
//! listening on node-b's virtual wire address.
//!
//! Output: one `E2E-SCENARIO <id> PASS|FAIL <seconds>s <title>[: reason]` line per scenario,
//! `E2E: ...` progress lines, then `E2E-SUMMARY ...`; exit status 0 only when every scenario
//! passed.

use std::fmt;
use std::process::ExitCode;

use rds_csi::scenario::channel::ConnectError;
use rds_csi::scenario::CallError;

/// Returns early with a [`Fail`] formatted like `format!` when `cond` does not hold.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+).into());
        }
    };
}

mod harness;
mod opts;
mod run;
mod scenarios;
mod shell;

/// Why a scenario (or the harness) failed: what was expected and what was seen.
#[derive(Debug, Clone)]
pub struct Fail(String);

pub type R<T> = Result<T, Fail>;

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail(s)
    }
}

impl From<&str> for Fail {
    fn from(s: &str) -> Self {
        Fail(s.to_owned())
    }
}

impl From<CallError> for Fail {
    fn from(e: CallError) -> Self {
        Fail(e.to_string())
    }
}

impl From<ConnectError> for Fail {
    fn from(e: ConnectError) -> Self {
        Fail(e.to_string())
    }
}

/// A progress line.
pub fn say(msg: impl AsRef<str>) {
    println!("E2E: {}", msg.as_ref());
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
            Some([flag, addr]) if flag == "--listen" => {
                rt.block_on(shell::agent(addr)).map(|()| true)
            }
            _ => Err("usage: rds-csi-e2e agent --listen ADDR".into()),
        },
        Some("run") => opts::parse(&args[1..]).and_then(|o| rt.block_on(run::run(o))),
        _ => Err(opts::USAGE.into()),
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
