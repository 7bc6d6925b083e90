//! `rds-csi doctor`: a preflight an operator runs on a node or against the controller's RDS
//! (and that the node plugin runs at start, logging the result). One line per check, its
//! verdict and, for what is wrong, the remedy; exit 1 when a check failed (docs/cli.md,
//! "Exit status"). Every root path (`/sys`, `/proc`, `/dev`) and the tool search path are
//! inputs, so tests run it on fake trees.

pub mod controller;
pub mod node;

use std::fmt;
use std::process::ExitCode;

use crate::runtime::cli::{DoctorArgs, DoctorRole};
use crate::runtime::{block_on_role, exit_status, RoleError};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Works, degraded or worth knowing; does not fail the doctor.
    Warn,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        })
    }
}

/// One check: what was looked at, what was found and, unless it passed, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short and stable (`nvme-tcp`, `holder-scan`), the first word an operator greps for.
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// The next step; empty when the check passed.
    pub remedy: String,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            verdict: Verdict::Pass,
            detail: detail.into(),
            remedy: String::new(),
        }
    }
    pub fn warn(name: &'static str, detail: impl Into<String>, remedy: impl Into<String>) -> Self {
        Check {
            name,
            verdict: Verdict::Warn,
            detail: detail.into(),
            remedy: remedy.into(),
        }
    }
    pub fn fail(name: &'static str, detail: impl Into<String>, remedy: impl Into<String>) -> Self {
        Check {
            name,
            verdict: Verdict::Fail,
            detail: detail.into(),
            remedy: remedy.into(),
        }
    }
}

/// `PASS nvme-tcp: ...` or `FAIL nvme-tcp: ...; remedy: ...`, one line.
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.verdict, self.name, self.detail)?;
        if !self.remedy.is_empty() {
            write!(f, "; remedy: {}", self.remedy)?;
        }
        Ok(())
    }
}

/// Every check of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report(pub Vec<Check>);

impl Report {
    pub fn failed(&self) -> Vec<&Check> {
        self.0
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .collect()
    }

    /// Logs every check: passes at info, warnings and failures at warn (the node plugin
    /// does this at start).
    pub fn log(&self, role: &str) {
        for c in &self.0 {
            match c.verdict {
                Verdict::Pass => {
                    tracing::info!(role, check = c.name, detail = %c.detail, "doctor: pass")
                }
                Verdict::Warn | Verdict::Fail => tracing::warn!(
                    role,
                    check = c.name,
                    verdict = %c.verdict,
                    detail = %c.detail,
                    remedy = %c.remedy,
                    "doctor: {}",
                    if c.verdict == Verdict::Fail { "fail" } else { "warn" }
                ),
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.0 {
            writeln!(f, "{c}")?;
        }
        Ok(())
    }
}

/// `rds-csi doctor`: prints one line per check on stdout; exit 0 when none failed, 1 when
/// one did, 2 when the flags do not describe a configuration to check.
pub fn run(args: DoctorArgs) -> ExitCode {
    let (role, result) = match args.role {
        DoctorRole::Node(a) => ("doctor node", block_on_role(node::run(a))),
        DoctorRole::Controller(a) => ("doctor controller", block_on_role(controller::run(a))),
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
