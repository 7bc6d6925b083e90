//! `rds-csi demo`: the driver's whole job on one machine, in one process. The embedded RDS
//! simulator (real SSH on loopback), a controller and two node plugins (each on its own
//! unix socket) are started, and volumes are walked through their lives over the real CSI
//! sockets: create, publish, stage (mkfs), write/read, a two-node live migration of an RWX
//! block volume, a refused third node, online expansion, snapshot, restore, clone, cleanup.
//!
//! Node steps need root (loop devices, mkfs, mount); without it they are listed as SKIPPED
//! with the reason and every controller step still runs. Nothing is left behind: the
//! scenario's own cleanup releases what it took, and [`workdir::WorkDir`] sweeps mounts and
//! loop devices under the work directory before removing it, also after a failure or panic.

mod checks;
mod host;
mod report;
mod scenario;
mod stack;
mod startup;
mod teardown;
mod workdir;

use std::process::ExitCode;

use crate::observability::logging::{self, LogFormat};
use crate::runtime::cli::DemoArgs;
use crate::runtime::{block_on_role, exit_status, RoleError};
use report::{Kind, Report};
use scenario::Scenario;
use stack::NODE_IDS;
use workdir::WorkDir;

/// A simulator fault spec applied from the start, e.g. `only=disk-set fail-next=1`.
pub const FAULT_ENV: &str = "RDS_CSI_DEMO_FAULT";

pub fn run(args: DemoArgs) -> ExitCode {
    // The table is the output; driver logs only when asked (RDS_CSI_LOG_LEVEL=info).
    let level = std::env::var("RDS_CSI_LOG_LEVEL").unwrap_or_else(|_| "error".into());
    logging::init(LogFormat::Text, &level);

    let in_ns = host::in_private_pidns();
    let mut node_skip = host::node_blocker();
    if node_skip.is_none() {
        match host::holder_scan_blind_spots() {
            Ok(blind) if blind.is_empty() => {}
            Ok(blind) if !in_ns => {
                println!(
                    "holder scan: {} process(es) in this pid namespace cannot be inspected ({}), so every \
                     NodeUnstage would rightly be refused. Re-running the demo inside \
                     `unshare --pid --fork --mount-proc`, where every process is visible, as the node \
                     plugin sees the host's processes with hostPID.",
                    blind.len(),
                    blind.iter().take(2).cloned().collect::<Vec<_>>().join("; ")
                );
                if let Some(code) = host::reexec_in_pidns(args.keep) {
                    return code;
                }
                node_skip = Some(format!(
                    "the holder scan cannot see every process here ({}) and `unshare --pid --fork --mount-proc` \
                     is not available, so NodeUnstage would be refused; install util-linux's unshare",
                    blind.first().cloned().unwrap_or_default()
                ));
            }
            Ok(blind) => {
                node_skip = Some(format!(
                    "the holder scan is incomplete even in a private pid namespace ({})",
                    blind.join("; ")
                ))
            }
            Err(e) => node_skip = Some(e),
        }
    }

    println!(
        "rds-csi demo: the RDS simulator (SSH on 127.0.0.1), a controller and node plugins for {} and {} \
         run in this process; every step below is a real CSI call over their unix sockets.",
        NODE_IDS[0], NODE_IDS[1]
    );
    if in_ns {
        println!(
            "holder scan: running in a private pid and mount namespace (this process is pid {}); the scan sees every process",
            std::process::id()
        );
    }
    println!("{}", host::transport_note());
    if let Some(why) = &node_skip {
        println!("node steps: SKIPPED — {why}");
    }

    let result = WorkDir::create(args.keep)
        .map_err(RoleError::Start)
        .and_then(|mut work| {
            println!("work directory: {}", work.path().display());
            let report = block_on_role(async { Ok(demo(&mut work, node_skip).await) })?;
            println!();
            println!("{}", report.summary());
            if report.ok() {
                Ok(())
            } else {
                Err(RoleError::Failed(
                    "a step failed (see the table above)".into(),
                ))
            }
        });
    exit_status("demo", result)
}

async fn demo(work: &mut WorkDir, node_skip: Option<String>) -> Report {
    let root = work.path().to_owned();
    let mut r = Report::new(node_skip.clone());
    r.header();

    let Some(mut stack) = startup::controller(&mut r, &root).await else {
        teardown::finish(&mut r, work, None, false).await;
        return r;
    };

    let bind_view = node_skip.is_none();
    let started = r
        .step(
            format!("start node plugins {}, {} (loop)", NODE_IDS[0], NODE_IDS[1]),
            Kind::Controller,
            startup::nodes(&mut stack, &root, bind_view),
        )
        .await;

    let mut events_seen = Vec::new();
    let mut migration_lines = Vec::new();
    if started.is_some() {
        let mut sc = Scenario::new(&mut stack, &root);
        let interrupted = tokio::select! {
            _ = sc.run(&mut r) => false,
            _ = tokio::signal::ctrl_c() => true,
        };
        if interrupted {
            r.fail(
                "interrupted (Ctrl-C)",
                "stopping here; cleaning up what was taken".into(),
            );
        }
        sc.cleanup(&mut r).await;
        events_seen = stack.events.all();
        migration_lines = stack
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("rds_csi_migration_") && !l.contains("_bucket"))
            .map(str::to_owned)
            .collect();
    }
    teardown::finish(&mut r, work, Some(stack), bind_view).await;

    if !events_seen.is_empty() {
        println!();
        println!("Events the controller posted (on a cluster they land on the volumes' PVCs):");
        for (vol, e) in &events_seen {
            println!(
                "  {:<7} {:<20} {:<17} {}",
                e.event_type.as_str(),
                e.reason.as_str(),
                vol,
                e.message
            );
        }
    }
    if !migration_lines.is_empty() {
        println!();
        println!("Migration metrics (controller /metrics):");
        for l in &migration_lines {
            println!("  {l}");
        }
    }
    r
}
