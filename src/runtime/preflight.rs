//! A preflight report: one [`Check`] per line, its [`Verdict`] and, for what is wrong, the
//! remedy. `controller/preflight.rs` and `node/preflight.rs` build one; `rds-csi doctor`
//! prints it and the node plugin logs it at start.

use std::fmt;

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
