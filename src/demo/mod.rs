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

mod host;
mod report;
mod stack;
mod steps;
mod workdir;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use csi_proto::v1 as csi;

use crate::cli::DemoArgs;
use crate::observability::logging::{self, LogFormat};
use crate::runtime::{block_on_role, exit_status, RoleError};
use report::{Kind, Report};
use stack::{Stack, NODE_IDS};
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

    let sim = r
        .step(
            "start the RDS simulator (SSH on loopback)",
            Kind::Controller,
            async {
                // A fault injected from the start (tests, or to watch a failure being cleaned
                // up): the same spec as `rds-csi simulator --fault`.
                let faults: Vec<String> = std::env::var(FAULT_ENV).ok().into_iter().collect();
                let sim = stack::simulator(root.join("sim"), faults.clone()).await?;
                let fp = russh::keys::PublicKey::from_openssh(sim.host_key_line())
                    .map(|k| crate::rds::hostkey::fingerprint(&k))
                    .unwrap_or_else(|_| "?".into());
                let mut d = format!("{}, host key {fp} pinned by the client", sim.address());
                if !faults.is_empty() {
                    d.push_str(&format!("; injected fault {:?} ({FAULT_ENV})", faults[0]));
                }
                Ok((sim, d))
            },
        )
        .await;
    let stack = match sim {
        None => None,
        Some(sim) => {
            r.step("start the controller (unix socket)", Kind::Controller, async {
                let mut s = Stack::start(sim, &root).await?;
                let info = s
                    .identity
                    .get_plugin_info(csi::GetPluginInfoRequest {})
                    .await
                    .map_err(|e| format!("GetPluginInfo on the controller: {}", e.message()))?
                    .into_inner();
                let ready = s
                    .identity
                    .probe(csi::ProbeRequest {})
                    .await
                    .map_err(|e| format!("Probe on the controller: {}", e.message()))?
                    .into_inner()
                    .ready
                    .unwrap_or(false);
                if !ready {
                    return Err("the controller's Probe says not ready: it cannot reach the RDS simulator".into());
                }
                let d = format!(
                    "{} {}, Probe ready (RDS reachable over SSH); nodes {}",
                    info.name,
                    info.vendor_version,
                    NODE_IDS.join(", ")
                );
                Ok((s, d))
            })
            .await
        }
    };
    let Some(mut stack) = stack else {
        finish(&mut r, work, None, false).await;
        return r;
    };

    let bind_view = node_skip.is_none();
    let started = r
        .step(
            format!("start node plugins {}, {} (loop)", NODE_IDS[0], NODE_IDS[1]),
            Kind::Controller,
            start_nodes(&mut stack, &root, bind_view),
        )
        .await;

    let mut events_seen = Vec::new();
    let mut migration_lines = Vec::new();
    if started.is_some() {
        let mut sc = steps::Scenario::new(&mut stack, &root);
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
    finish(&mut r, work, Some(stack), bind_view).await;

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

/// Node A reads the simulator's data directory; node B reads it through a bind mount, so
/// each node gets its own loop device over the same backing file — as two hosts each have
/// their own NVMe/TCP controller to one namespace.
async fn start_nodes(
    stack: &mut Stack,
    root: &Path,
    bind_view: bool,
) -> Result<((), String), String> {
    let data = stack.sim.data_dir();
    let view = root.join("nodes").join(NODE_IDS[1]).join("rds-view");
    std::fs::create_dir_all(&view)
        .and_then(|_| std::fs::create_dir_all(&data))
        .map_err(|e| format!("cannot create {}: {e}", view.display()))?;
    if bind_view {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        crate::node::mount::bind_mount(&data, &view, node_io::mount::MountFlags::empty(), deadline)
            .await
            .map_err(|e| {
                format!(
                    "bind-mounting the simulator's data for {}: {e}",
                    NODE_IDS[1]
                )
            })?;
    }
    stack.add_node(NODE_IDS[0], root, data).await?;
    stack.add_node(NODE_IDS[1], root, view).await?;
    let mut infos = Vec::new();
    for n in &mut stack.nodes {
        let info = n
            .client
            .node_get_info(csi::NodeGetInfoRequest {})
            .await
            .map_err(|e| format!("NodeGetInfo on {}: {}", n.id, e.message()))?
            .into_inner();
        let ready = n
            .identity
            .probe(csi::ProbeRequest {})
            .await
            .map_err(|e| format!("Probe on {}: {}", n.id, e.message()))?
            .into_inner()
            .ready
            .unwrap_or(false);
        if info.node_id != n.id || !ready {
            return Err(format!(
                "node plugin {}: NodeGetInfo says {:?}, Probe ready={ready}",
                n.id, info.node_id
            ));
        }
        infos.push(info.node_id);
    }
    Ok(((), format!("NodeGetInfo {}; Probe ready", infos.join(", "))))
}

/// Stops everything, then proves nothing is left: no mounts, loop devices or sockets under
/// the work directory, which is removed (unless `--keep`).
async fn finish(r: &mut Report, work: &mut WorkDir, stack: Option<Stack>, bound_view: bool) {
    let root = work.path().to_owned();
    let keep = work.keep();
    r.step(
        "stop everything, leave nothing behind",
        Kind::Cleanup,
        async {
            let mut problems = Vec::new();
            let mut sockets = Vec::new();
            if let Some(s) = stack {
                sockets = s.sockets();
                if let Err(e) = s.shutdown().await {
                    problems.push(format!("shutdown: {e}"));
                }
            }
            if bound_view {
                let view = root.join("nodes").join(NODE_IDS[1]).join("rds-view");
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                if let Err(e) = crate::node::mount::unmount(&view, deadline).await {
                    problems.push(e.to_string());
                }
            }
            let left_sockets: Vec<String> = sockets
                .iter()
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect();
            if !left_sockets.is_empty() {
                problems.push(format!(
                    "sockets still present: {}",
                    left_sockets.join(", ")
                ));
            }
            let (forced, removed) = work.finish();
            if !forced.is_empty() {
                problems.push(format!(
                    "the driver's cleanup left {} (removed by the demo's safety net)",
                    forced.join(", ")
                ));
            }
            if let Err(e) = removed {
                problems.push(e);
            }
            if !problems.is_empty() {
                return Err(problems.join("; "));
            }
            let d = if keep {
                format!(
                    "no mounts, loop devices or sockets; work directory kept (--keep): {}",
                    root.display()
                )
            } else {
                "no mounts, loop devices or sockets; work directory removed".to_string()
            };
            Ok(((), d))
        },
    )
    .await;
}
