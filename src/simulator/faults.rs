//! Fault injection: set by `--fault` flags at start and by `/simulator fault ...` over SSH at
//! run time, so tests can make the RDS slow, failing, flaky or full on demand.
//!
//! Spec: space-separated `key=value`, or `clear`:
//! - `latency=200ms` — every command waits this long before running (`ms`, `s`, `m`);
//! - `fail-next=N` — the next N commands answer `failure: simulated failure` (not run);
//! - `drop-next=N` — the next N commands are not run; the connection is dropped instead;
//! - `drop-after-exec=N` — the next N commands RUN, then the connection is dropped before
//!   any output or exit status is sent (an answer lost in flight);
//! - `disk-full=yes|no` — every allocation answers `failure: not enough space`;
//! - `refuse-connections=yes|no` — new TCP connections are closed at once;
//! - `only=<menu-verb>` — the three countdowns above count only commands of that kind,
//!   e.g. `only=disk-add drop-after-exec=1` loses the answer to the next `/disk add` and
//!   lets the reads around it through (`only=any` resets).

use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub latency: Duration,
    pub fail_next: u32,
    pub drop_next: u32,
    pub drop_after_exec: u32,
    pub disk_full: bool,
    pub refuse_connections: bool,
    /// `disk-add`, `disk-print`, ... (see [`Faults::take`]); `None` matches every command.
    pub only: Option<String>,
}

/// What to do with one command, decided (and counted down) before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Run,
    Fail,
    DropBefore,
    DropAfter,
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    // An hour is far beyond any RPC deadline the driver sets; more is a typo, and an
    // unbounded number would overflow the seconds (found by fuzzing: 999999999999999999m).
    const MAX: Duration = Duration::from_secs(3600);
    let bad = || format!("latency={v:?}: expected a duration up to 1h such as 200ms, 5s or 1m");
    let (num, unit) = v
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| v.split_at(i))
        .unwrap_or((v, ""));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "" if n == 0 => Duration::ZERO,
        _ => return Err(bad()),
    };
    if d > MAX {
        return Err(bad());
    }
    Ok(d)
}

fn parse_bool(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("{k}={v:?}: expected yes or no")),
    }
}

impl Faults {
    /// Applies a spec on top of the current faults (`clear` resets them all).
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        let mut next = self.clone();
        for word in spec.split_whitespace() {
            if word == "clear" {
                next = Faults::default();
                continue;
            }
            let (k, v) = word
                .split_once('=')
                .ok_or_else(|| format!("fault {word:?}: expected key=value or clear"))?;
            let v = v.trim_matches('"');
            let count = || {
                v.parse::<u32>()
                    .map_err(|_| format!("{k}={v:?}: expected a count"))
            };
            match k {
                "latency" => next.latency = parse_duration(v)?,
                "fail-next" => next.fail_next = count()?,
                "drop-next" => next.drop_next = count()?,
                "drop-after-exec" => next.drop_after_exec = count()?,
                "disk-full" => next.disk_full = parse_bool(k, v)?,
                "refuse-connections" => next.refuse_connections = parse_bool(k, v)?,
                "only" => next.only = (v != "any").then(|| v.to_string()),
                _ => {
                    return Err(format!(
                        "unknown fault {k:?}; known: latency, fail-next, drop-next, \
                         drop-after-exec, disk-full, refuse-connections, only, clear"
                    ))
                }
            }
        }
        *self = next;
        Ok(())
    }

    /// Consumes one countdown for a command about to run; `kind` is its menu path joined
    /// by `-` (`disk-add`, `system-identity-print`).
    pub fn take(&mut self, kind: &str) -> Disposition {
        if self.only.as_deref().is_some_and(|only| only != kind) {
            Disposition::Run
        } else if self.drop_next > 0 {
            self.drop_next -= 1;
            Disposition::DropBefore
        } else if self.fail_next > 0 {
            self.fail_next -= 1;
            Disposition::Fail
        } else if self.drop_after_exec > 0 {
            self.drop_after_exec -= 1;
            Disposition::DropAfter
        } else {
            Disposition::Run
        }
    }

    /// The `/simulator print` form.
    pub fn render(&self) -> String {
        format!(
            "latency={}ms fail-next={} drop-next={} drop-after-exec={} disk-full={} \
             refuse-connections={} only={}\n",
            self.latency.as_millis(),
            self.fail_next,
            self.drop_next,
            self.drop_after_exec,
            if self.disk_full { "yes" } else { "no" },
            if self.refuse_connections { "yes" } else { "no" },
            self.only.as_deref().unwrap_or("any"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_apply_count_down_and_clear() {
        let mut f = Faults::default();
        f.apply("latency=200ms fail-next=1 drop-after-exec=1 disk-full=yes")
            .unwrap();
        assert_eq!(f.latency, Duration::from_millis(200));
        assert!(f.disk_full);
        assert_eq!(f.take("disk-print"), Disposition::Fail);
        assert_eq!(f.take("disk-add"), Disposition::DropAfter);
        assert_eq!(f.take("disk-add"), Disposition::Run);
        f.apply("drop-next=1 latency=5s").unwrap();
        assert_eq!(f.latency, Duration::from_secs(5));
        assert_eq!(f.take("disk-print"), Disposition::DropBefore);
        f.apply("only=disk-add drop-after-exec=1").unwrap();
        assert_eq!(f.take("disk-print"), Disposition::Run);
        assert_eq!(f.take("disk-add"), Disposition::DropAfter);
        assert_eq!(f.take("disk-add"), Disposition::Run);
        f.apply("clear").unwrap();
        assert_eq!(f, Faults::default());
    }

    #[test]
    fn bad_specs_change_nothing() {
        let mut f = Faults::default();
        f.apply("fail-next=2").unwrap();
        for bad in [
            "latency=fast",
            "fail-next=-1",
            "disk-full=maybe",
            "nope=1",
            "x",
            "latency=61m",
            "latency=999999999999999999m",
        ] {
            assert!(f.apply(&format!("latency=1s {bad}")).is_err(), "{bad}");
        }
        assert_eq!(f.fail_next, 2);
        assert_eq!(f.latency, Duration::ZERO);
        f.apply("latency=60m").unwrap();
        assert_eq!(f.latency, Duration::from_secs(3600));
    }
}
