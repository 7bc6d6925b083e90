//! Step bookkeeping: each step's outcome, duration and detail, numbered in the order they
//! end, with the first failure remembered. How a row is shown is the tool's (the demo prints
//! a table, the e2e driver `E2E-SCENARIO` lines): the report hands every row to its printer
//! the moment the step ends, so a slow or failing step is visible while it happens.

use std::future::Future;
use std::time::{Duration, Instant};

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

/// One ended step. `label` is what the tool names a step by (the demo: its title; the e2e:
/// scenario id and title).
#[derive(Debug, Clone, PartialEq)]
pub struct Row<L> {
    pub label: L,
    pub outcome: Outcome,
    pub took: Duration,
    /// What the step found, or why it failed or was skipped.
    pub detail: String,
}

type Printer<L> = Box<dyn FnMut(usize, &Row<L>) + Send>;

/// The rows of a run, in the order the steps ended.
pub struct Report<L> {
    rows: Vec<Row<L>>,
    /// Index of the first failed row.
    first_failure: Option<usize>,
    started: Instant,
    print: Printer<L>,
}

/// Runs `f` and measures it.
pub async fn timed<F: Future>(f: F) -> (F::Output, Duration) {
    let t = Instant::now();
    let out = f.await;
    (out, t.elapsed())
}

impl<L> Report<L> {
    /// A report that hands each row, with its 1-based number, to `print` as it is recorded.
    pub fn new(print: impl FnMut(usize, &Row<L>) + Send + 'static) -> Self {
        Report {
            rows: Vec::new(),
            first_failure: None,
            started: Instant::now(),
            print: Box::new(print),
        }
    }

    /// A report that prints nothing (tests).
    pub fn quiet() -> Self {
        Self::new(|_, _| {})
    }

    /// Records one ended step; returns its number.
    pub fn record(&mut self, label: L, outcome: Outcome, took: Duration, detail: String) -> usize {
        let row = Row {
            label,
            outcome,
            took,
            detail,
        };
        let n = self.rows.len() + 1;
        (self.print)(n, &row);
        if outcome == Outcome::Fail && self.first_failure.is_none() {
            self.first_failure = Some(self.rows.len());
        }
        self.rows.push(row);
        n
    }

    /// Runs `f` as one step: OK with its detail, or FAIL with its error (which names the
    /// object and the next step). Returns the step's value when it succeeded.
    pub async fn run<T, F>(&mut self, label: L, f: F) -> Option<T>
    where
        F: Future<Output = Result<(T, String), String>>,
    {
        let (r, took) = timed(f).await;
        match r {
            Ok((v, detail)) => {
                self.record(label, Outcome::Ok, took, detail);
                Some(v)
            }
            Err(detail) => {
                self.record(label, Outcome::Fail, took, detail);
                None
            }
        }
    }

    /// Records a step that did not run, and why.
    pub fn skip(&mut self, label: L, why: String) {
        self.record(label, Outcome::Skipped, Duration::ZERO, why);
    }

    pub fn rows(&self) -> &[Row<L>] {
        &self.rows
    }

    /// The first failed step: its number and row.
    pub fn first_failure(&self) -> Option<(usize, &Row<L>)> {
        self.first_failure.map(|i| (i + 1, &self.rows[i]))
    }

    pub fn ok(&self) -> bool {
        self.first_failure.is_none()
    }

    pub fn count(&self, o: Outcome) -> usize {
        self.rows.iter().filter(|r| r.outcome == o).count()
    }

    /// Time since the report was created.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn rows_are_numbered_printed_as_they_end_and_the_first_failure_is_kept() {
        let printed = Arc::new(Mutex::new(Vec::new()));
        let p = printed.clone();
        let mut r = Report::new(move |n, row: &Row<&str>| {
            p.lock()
                .unwrap()
                .push(format!("{n} {} {}", row.label, row.outcome.as_str()))
        });
        assert_eq!(r.run("a", async { Ok((7, "fine".into())) }).await, Some(7));
        assert!(r.ok());
        assert_eq!(
            r.run::<(), _>("b", async { Err("boom".into()) }).await,
            None
        );
        r.skip("c", "not run".into());
        assert_eq!(
            r.run::<(), _>("d", async { Err("later".into()) }).await,
            None
        );
        assert_eq!(
            *printed.lock().unwrap(),
            ["1 a OK", "2 b FAIL", "3 c SKIPPED", "4 d FAIL"]
        );
        let (n, first) = r.first_failure().unwrap();
        assert_eq!((n, first.label, first.detail.as_str()), (2, "b", "boom"));
        assert!(!r.ok());
        assert_eq!(
            (
                r.count(Outcome::Ok),
                r.count(Outcome::Fail),
                r.count(Outcome::Skipped)
            ),
            (1, 2, 1)
        );
        assert_eq!(r.rows()[2].took, Duration::ZERO);
        assert_eq!(r.rows()[0].detail, "fine");
    }

    #[tokio::test]
    async fn a_step_is_timed() {
        let mut r = Report::quiet();
        r.run("wait", async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(((), String::new()))
        })
        .await;
        assert!(r.rows()[0].took >= Duration::from_millis(30));
        assert!(r.elapsed() >= r.rows()[0].took);
        let (v, took) = timed(async { 5 }).await;
        assert_eq!(v, 5);
        assert!(took < Duration::from_secs(5));
    }
}
