//! The demo's first rows: the RDS simulator, the controller and the two node plugins
//! started, each proven to answer over its socket before any volume is made.

use std::path::Path;
use std::time::Duration;

use csi_proto::v1 as csi;

use super::report::{Kind, Report};
use super::stack::{self, Stack, NODE_IDS};
use super::FAULT_ENV;

/// The simulator, then the controller over it; None (with the failed row printed) when
/// either did not start.
pub async fn controller(r: &mut Report, root: &Path) -> Option<Stack> {
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
        .await?;
    r.step(
        "start the controller (unix socket)",
        Kind::Controller,
        async {
            let mut s = Stack::start(sim, root).await?;
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
                return Err(
                    "the controller's Probe says not ready: it cannot reach the RDS simulator"
                        .into(),
                );
            }
            let d = format!(
                "{} {}, Probe ready (RDS reachable over SSH); nodes {}",
                info.name,
                info.vendor_version,
                NODE_IDS.join(", ")
            );
            Ok((s, d))
        },
    )
    .await
}

/// Where node B reads the simulator's backing files.
pub fn node_b_view(root: &Path) -> std::path::PathBuf {
    root.join("nodes").join(NODE_IDS[1]).join("rds-view")
}

/// Node A reads the simulator's data directory; node B reads it through a bind mount, so
/// each node gets its own loop device over the same backing file — as two hosts each have
/// their own NVMe/TCP controller to one namespace.
pub async fn nodes(
    stack: &mut Stack,
    root: &Path,
    bind_view: bool,
) -> Result<((), String), String> {
    let data = stack.sim.data_dir();
    let view = node_b_view(root);
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
        let info = stack
            .csi
            .node_get_info(n.id)
            .await
            .map_err(|e| e.to_string())?;
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
