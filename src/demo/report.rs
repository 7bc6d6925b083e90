//! The demo's table of steps, over the scenario client's step bookkeeping: each row is
//! printed as soon as its step ends, so a slow or failing step is visible while it happens.
//! After a failure only cleanup steps run; node steps run only where the host allows them.

use std::future::Future;
use std::io::Write;

use crate::scenario::{Outcome, Report as Steps, Row};

/// What a step needs, which decides whether it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CSI calls to the controller (and the simulator behind it): run whenever nothing failed.
    Controller,
    /// Loop devices, mkfs, mounts: need root and the tools; skipped with the reason otherwise.
    Node,
    /// Releases what earlier steps took: always runs, also after a failure.
    Cleanup,
}

const NAME_WIDTH: usize = 58;

/// The table's two header lines.
pub fn table_header() -> [String; 2] {
    [
        format!(
            " #  {:<NAME_WIDTH$} {:<7} {:>7}  detail",
            "step", "result", "ms"
        ),
        "-".repeat(NAME_WIDTH + 30),
    ]
}

/// Row `n` of the table: number, step, result, milliseconds, detail.
pub fn table_row(n: usize, row: &Row<String>) -> String {
    format!(
        "{n:>2}  {:<NAME_WIDTH$} {:<7} {:>7}  {}",
        row.label,
        row.outcome.as_str(),
        row.took.as_millis(),
        row.detail
    )
}

pub struct Report {
    steps: Steps<String>,
    /// Why node steps cannot run on this machine (None: they can).
    node_skip: Option<String>,
}

impl Report {
    /// A report that prints its rows to stdout.
    pub fn new(node_skip: Option<String>) -> Self {
        Self::with_steps(
            node_skip,
            Steps::new(|n, row| {
                println!("{}", table_row(n, row));
                let _ = std::io::stdout().flush();
            }),
        )
    }

    fn with_steps(node_skip: Option<String>, steps: Steps<String>) -> Self {
        Report { steps, node_skip }
    }

    pub fn header(&self) {
        println!();
        for l in table_header() {
            println!("{l}");
        }
    }

    /// Why a step of `kind` must not run now, if it must not.
    fn skip_reason(&self, kind: Kind) -> Option<String> {
        if kind == Kind::Cleanup {
            return None;
        }
        if let Some((n, row)) = self.steps.first_failure() {
            return Some(format!("not run: step {n} ({}) failed", row.label));
        }
        if kind == Kind::Node {
            return self.node_skip.clone();
        }
        None
    }

    /// Runs `f` as one step unless it must be skipped; `f` returns its value and the detail
    /// to show, or the error (which names the object and the next step).
    pub async fn step<T, F>(&mut self, name: impl Into<String>, kind: Kind, f: F) -> Option<T>
    where
        F: Future<Output = Result<(T, String), String>>,
    {
        let name = name.into();
        if let Some(why) = self.skip_reason(kind) {
            self.steps.skip(name, why);
            return None;
        }
        self.steps.run(name, f).await
    }

    /// Records a failure that happened outside a step (e.g. an interrupt).
    pub fn fail(&mut self, name: &str, detail: String) {
        self.steps
            .record(name.into(), Outcome::Fail, Default::default(), detail);
    }

    pub fn ok(&self) -> bool {
        self.steps.ok()
    }

    /// The final line.
    pub fn summary(&self) -> String {
        let s = &self.steps;
        let secs = s.elapsed().as_secs_f64();
        let (ok, skipped) = (s.count(Outcome::Ok), s.count(Outcome::Skipped));
        match s.first_failure() {
            None => format!(
                "demo: OK — {ok} steps OK, {skipped} skipped, {} in total, {secs:.1} s",
                s.rows().len()
            ),
            Some((n, row)) => format!(
                "demo: FAIL — step {n} ({}) failed: {}. Cleanup ran after it (see the cleanup rows); {} steps failed in total, {secs:.1} s",
                row.label,
                row.detail,
                s.count(Outcome::Fail)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn quiet(node_skip: Option<String>) -> Report {
        Report::with_steps(node_skip, Steps::quiet())
    }

    #[tokio::test]
    async fn a_failure_skips_later_steps_but_not_cleanup() {
        let mut r = quiet(Some("needs root".into()));
        assert_eq!(
            r.step("a", Kind::Controller, async { Ok((1, "fine".into())) })
                .await,
            Some(1)
        );
        assert_eq!(
            r.step("n", Kind::Node, async { Ok((2, String::new())) })
                .await,
            None
        );
        let rows = r.steps.rows();
        assert_eq!(rows[1].outcome, Outcome::Skipped);
        assert_eq!(rows[1].detail, "needs root");
        assert!(r.ok());
        r.step::<(), _>("b", Kind::Controller, async { Err("boom".into()) })
            .await;
        assert!(!r.ok());
        let mut ran = false;
        r.step("c", Kind::Controller, async {
            ran = true;
            Ok(((), String::new()))
        })
        .await;
        assert!(!ran, "a step after a failure ran");
        assert!(r.steps.rows()[3].detail.contains("step 3 (b) failed"));
        assert_eq!(
            r.step("clean", Kind::Cleanup, async { Ok((3, String::new())) })
                .await,
            Some(3)
        );
        assert!(r
            .summary()
            .starts_with("demo: FAIL — step 3 (b) failed: boom. Cleanup ran after it"));
        assert!(r.summary().contains("; 1 steps failed in total, "));
    }

    #[tokio::test]
    async fn the_summary_counts_ok_and_skipped_rows() {
        let mut r = quiet(Some("needs root".into()));
        r.step("a", Kind::Controller, async { Ok(((), String::new())) })
            .await;
        r.step("n", Kind::Node, async { Ok(((), String::new())) })
            .await;
        assert!(
            r.summary()
                .starts_with("demo: OK — 1 steps OK, 1 skipped, 2 in total, "),
            "{}",
            r.summary()
        );
        r.fail("interrupted (Ctrl-C)", "stopping here".into());
        assert!(r
            .summary()
            .starts_with("demo: FAIL — step 3 (interrupted (Ctrl-C)) failed: stopping here."));
    }

    #[test]
    fn rows_line_up_under_the_header() {
        let row = Row {
            label: "CreateVolume pvc-demo-fs (1 GiB, xfs, RWO)".to_string(),
            outcome: Outcome::Ok,
            took: Duration::from_micros(41_900),
            detail: "1.0 GiB on the RDS".into(),
        };
        let line = table_row(3, &row);
        assert_eq!(
            line,
            format!(
                " 3  {:<58} OK           41  1.0 GiB on the RDS",
                "CreateVolume pvc-demo-fs (1 GiB, xfs, RWO)"
            )
        );
        let [head, rule] = table_header();
        assert_eq!(head.find("result"), line.find("OK"));
        assert_eq!(head.find("detail"), line.find("1.0 GiB"));
        assert_eq!(rule.len(), 88);
    }
}
