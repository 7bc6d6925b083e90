//! The demo's table of steps: each row is printed as soon as its step ends, so a slow or
//! failing step is visible while it happens.

use std::future::Future;
use std::io::Write;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "SKIPPED",
        }
    }
}

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

#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub outcome: Outcome,
    pub ms: u128,
    pub detail: String,
}

pub struct Report {
    pub rows: Vec<Row>,
    /// The first failed step (number, name, error): later non-cleanup steps do not run.
    pub failed: Option<(usize, String, String)>,
    /// Why node steps cannot run on this machine (None: they can).
    pub node_skip: Option<String>,
    started: Instant,
}

const NAME_WIDTH: usize = 58;

impl Report {
    pub fn new(node_skip: Option<String>) -> Self {
        Report {
            rows: Vec::new(),
            failed: None,
            node_skip,
            started: Instant::now(),
        }
    }

    pub fn header(&self) {
        println!();
        println!(
            " #  {:<NAME_WIDTH$} {:<7} {:>7}  detail",
            "step", "result", "ms"
        );
        println!("{}", "-".repeat(NAME_WIDTH + 30));
    }

    fn push(&mut self, row: Row) {
        let n = self.rows.len() + 1;
        println!(
            "{n:>2}  {:<NAME_WIDTH$} {:<7} {:>7}  {}",
            row.name,
            row.outcome.as_str(),
            row.ms,
            row.detail
        );
        let _ = std::io::stdout().flush();
        if row.outcome == Outcome::Fail && self.failed.is_none() {
            self.failed = Some((n, row.name.clone(), row.detail.clone()));
        }
        self.rows.push(row);
    }

    /// Why a step of `kind` must not run now, if it must not.
    fn skip_reason(&self, kind: Kind) -> Option<String> {
        if kind == Kind::Cleanup {
            return None;
        }
        if let Some((n, name, _)) = &self.failed {
            return Some(format!("not run: step {n} ({name}) failed"));
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
            self.push(Row {
                name,
                outcome: Outcome::Skipped,
                ms: 0,
                detail: why,
            });
            return None;
        }
        let t = Instant::now();
        let r = f.await;
        let ms = t.elapsed().as_millis();
        match r {
            Ok((v, detail)) => {
                self.push(Row {
                    name,
                    outcome: Outcome::Ok,
                    ms,
                    detail,
                });
                Some(v)
            }
            Err(detail) => {
                self.push(Row {
                    name,
                    outcome: Outcome::Fail,
                    ms,
                    detail,
                });
                None
            }
        }
    }

    /// Records a failure that happened outside a step (e.g. an interrupt).
    pub fn fail(&mut self, name: &str, detail: String) {
        self.push(Row {
            name: name.into(),
            outcome: Outcome::Fail,
            ms: 0,
            detail,
        });
    }

    pub fn ok(&self) -> bool {
        self.failed.is_none()
    }

    pub fn count(&self, o: Outcome) -> usize {
        self.rows.iter().filter(|r| r.outcome == o).count()
    }

    /// The final line.
    pub fn summary(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let (ok, skipped) = (self.count(Outcome::Ok), self.count(Outcome::Skipped));
        match &self.failed {
            None => format!(
                "demo: OK — {ok} steps OK, {skipped} skipped, {} in total, {secs:.1} s",
                self.rows.len()
            ),
            Some((n, name, detail)) => format!(
                "demo: FAIL — step {n} ({name}) failed: {detail}. Cleanup ran after it (see the cleanup rows); {} steps failed in total, {secs:.1} s",
                self.count(Outcome::Fail)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_skips_later_steps_but_not_cleanup() {
        let mut r = Report::new(Some("needs root".into()));
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
        assert_eq!(r.rows[1].outcome, Outcome::Skipped);
        assert_eq!(r.rows[1].detail, "needs root");
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
        assert!(r.rows[3].detail.contains("step 3 (b) failed"));
        assert_eq!(
            r.step("clean", Kind::Cleanup, async { Ok((3, String::new())) })
                .await,
            Some(3)
        );
        assert!(r
            .summary()
            .starts_with("demo: FAIL — step 3 (b) failed: boom"));
    }
}
