//! `rds-csi doctor`: runs a role's preflight — the node's ([`crate::node::preflight`], which
//! the node plugin also runs at start and logs) or the controller's against its RDS
//! ([`crate::controller::preflight`]) — and prints one line per check, its verdict and, for
//! what is wrong, the remedy; exit 1 when a check failed (docs/cli.md, "Exit status"). Every
//! root path (`/sys`, `/proc`, `/dev`) and the tool search path are inputs, so tests run it on
//! fake trees.

use std::process::ExitCode;

use crate::runtime::cli::{DoctorArgs, DoctorRole};
use crate::runtime::preflight::Report;
use crate::runtime::{block_on_role, exit_status, RoleError};
use crate::{controller, node};

/// `rds-csi doctor`: prints one line per check on stdout; exit 0 when none failed, 1 when
/// one did, 2 when the flags do not describe a configuration to check.
pub fn run(args: DoctorArgs) -> ExitCode {
    let (role, result) = match args.role {
        DoctorRole::Node(a) => ("doctor node", block_on_role(node::preflight::run(a))),
        DoctorRole::Controller(a) => (
            "doctor controller",
            block_on_role(controller::preflight::run(a)),
        ),
    };
    let result = result.and_then(|report: Report| {
        print!("{report}");
        let failed = report.failed();
        if failed.is_empty() {
            Ok(())
        } else {
            let names: Vec<&str> = failed.iter().map(|c| c.name).collect();
            Err(RoleError::Failed(format!(
                "{} check(s) failed: {}",
                failed.len(),
                names.join(", ")
            )))
        }
    });
    exit_status(role, result)
}
