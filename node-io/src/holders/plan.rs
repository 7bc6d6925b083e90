//! How the default holder scan decides between one thread and several: by what the host
//! offers right now.
//!
//! The scan is pure syscall CPU time, already at the floor on one thread, so more threads
//! help exactly when there are idle cores to run them and enough processes to share out;
//! on a busy node they only add thread start-up and contention. The inputs are cheap and
//! read from the (injectable) proc root at every scan:
//! - idle cores: `<proc>/stat`'s `cpu<N>` lines (online CPUs) minus the other runnable tasks
//!   now, the numerator of `<proc>/loadavg`'s fourth field (`R/T`: runnable scheduling
//!   entities system-wide, this thread included; kernel/sched/loadavg.c, fs/proc/loadavg.c);
//! - cores this process may use: `available_parallelism()` (sched_getaffinity and the
//!   cgroup CPU quota, so a CPU-limited DaemonSet counts its limit);
//! - the size of /proc: the number of processes to scan.

use std::path::Path;

/// What the host offers the scan, read by [`HostLoad::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLoad {
    /// CPUs online (`cpu<N>` lines of `<proc>/stat`).
    pub online_cpus: usize,
    /// CPUs this process may run on (affinity and cgroup quota).
    pub allowed_cpus: usize,
    /// Runnable tasks system-wide right now, the scanning thread included.
    pub runnable: usize,
}

impl HostLoad {
    /// Reads the host's load from `proc_root`; `None` if either file is missing or odd (a
    /// fake /proc in tests): the scan then stays sequential.
    pub fn read(proc_root: &Path) -> Option<Self> {
        let loadavg = std::fs::read_to_string(proc_root.join("loadavg")).ok()?;
        let stat = std::fs::read_to_string(proc_root.join("stat")).ok()?;
        Self::parse(&loadavg, &stat, allowed_cpus())
    }

    /// From the texts of `/proc/loadavg` (`0.52 0.58 0.59 3/189 12345`) and `/proc/stat`.
    pub fn parse(loadavg: &str, stat: &str, allowed_cpus: usize) -> Option<Self> {
        let runnable = loadavg
            .split_whitespace()
            .nth(3)?
            .split_once('/')?
            .0
            .parse()
            .ok()?;
        let online_cpus = stat
            .lines()
            .filter(|l| {
                // `cpu<N> ...`, not the `cpu  ...` total line.
                l.strip_prefix("cpu")
                    .and_then(|r| r.split(' ').next())
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .count();
        (online_cpus > 0).then_some(Self {
            online_cpus,
            allowed_cpus: allowed_cpus.max(1),
            runnable,
        })
    }

    /// Cores nobody else wants now, this thread's own included.
    pub fn idle_cpus(&self) -> usize {
        // `runnable` counts this thread: the others are runnable - 1.
        let others = self.runnable.saturating_sub(1);
        self.online_cpus.saturating_sub(others)
    }
}

fn allowed_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What [`super::ScanMode::Auto`] does for one scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ScanPlan {
    #[default]
    Sequential,
    /// The pid list split over `threads` threads, this one included.
    Parallel { threads: usize },
}

/// Fewer processes than this per thread and the thread start-up (tens of µs) is not won back:
/// a process costs a few µs to open and list plus ~0.5–1 µs per fd.
pub const MIN_PIDS_PER_THREAD: usize = 32;

/// The plan for scanning `pids` processes on a host with `load` (`None`: unknown, stay
/// sequential): as many threads as there are idle cores this process may use, at most one
/// per [`MIN_PIDS_PER_THREAD`] processes; one thread when that leaves fewer than two.
pub fn choose_plan(load: Option<&HostLoad>, pids: usize) -> ScanPlan {
    let Some(load) = load else {
        return ScanPlan::Sequential;
    };
    let threads = load
        .idle_cpus()
        .min(load.allowed_cpus)
        .min(pids / MIN_PIDS_PER_THREAD);
    if threads >= 2 {
        ScanPlan::Parallel { threads }
    } else {
        ScanPlan::Sequential
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_2: &str = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 5 0 5 50 0 0 0 0 0 0\n\
                          cpu1 5 0 5 50 0 0 0 0 0 0\nintr 1 2 3\nctxt 99\n";

    fn load(online: usize, allowed: usize, runnable: usize) -> HostLoad {
        HostLoad {
            online_cpus: online,
            allowed_cpus: allowed,
            runnable,
        }
    }

    #[test]
    fn reads_runnable_tasks_and_online_cpus() {
        let l = HostLoad::parse("0.52 0.58 0.59 3/189 12345\n", STAT_2, 2).unwrap();
        assert_eq!(l, load(2, 2, 3));
        assert_eq!(l.idle_cpus(), 0, "two others runnable on two cores");
        assert_eq!(
            HostLoad::parse("0.0 0.0 0.0 1/80 1\n", STAT_2, 2)
                .unwrap()
                .idle_cpus(),
            2
        );
        for bad in ["", "0.1 0.2 0.3", "0.1 0.2 0.3 x/5 1", "0.1 0.2 0.3 5 1"] {
            assert_eq!(HostLoad::parse(bad, STAT_2, 2), None, "{bad:?}");
        }
        assert_eq!(
            HostLoad::parse("0 0 0 1/1 1", "intr 1\n", 2),
            None,
            "no cpu lines"
        );
        assert!(HostLoad::read(Path::new("/nonexistent-proc")).is_none());
    }

    #[test]
    fn idle_cores_and_enough_processes_get_parallel_threads() {
        // An idle 2-core node with a real node's 400 processes: both cores.
        assert_eq!(
            choose_plan(Some(&load(2, 2, 1)), 400),
            ScanPlan::Parallel { threads: 2 }
        );
        // An idle 16-core node, this process allowed 4 (cpuset or quota): 4.
        assert_eq!(
            choose_plan(Some(&load(16, 4, 1)), 400),
            ScanPlan::Parallel { threads: 4 }
        );
        // 16 idle cores but only 100 processes: 3 threads (32 processes each at least).
        assert_eq!(
            choose_plan(Some(&load(16, 16, 1)), 100),
            ScanPlan::Parallel { threads: 3 }
        );
    }

    #[test]
    fn a_busy_host_a_small_proc_or_an_unknown_load_scans_on_one_thread() {
        // Both cores busy with VMs (2 others runnable): one thread.
        assert_eq!(choose_plan(Some(&load(2, 2, 3)), 400), ScanPlan::Sequential);
        // One core left idle: one thread (ours).
        assert_eq!(choose_plan(Some(&load(2, 2, 2)), 400), ScanPlan::Sequential);
        // Overloaded (runnable far above cores): one thread.
        assert_eq!(
            choose_plan(Some(&load(8, 8, 40)), 400),
            ScanPlan::Sequential
        );
        // A CPU-limited DaemonSet (quota of one core): one thread.
        assert_eq!(
            choose_plan(Some(&load(16, 1, 1)), 400),
            ScanPlan::Sequential
        );
        // A tiny /proc (a container's own): not worth a thread.
        assert_eq!(
            choose_plan(Some(&load(16, 16, 1)), 40),
            ScanPlan::Sequential
        );
        // No /proc/loadavg (a fake proc root): one thread.
        assert_eq!(choose_plan(None, 400), ScanPlan::Sequential);
    }
}
