//! The demo's last row: everything stopped, and proof that nothing is left.

use std::time::Duration;

use super::report::{Kind, Report};
use super::stack::Stack;
use super::startup::node_b_view;
use super::workdir::WorkDir;

/// Stops everything, then proves nothing is left: no mounts, loop devices or sockets under
/// the work directory, which is removed (unless `--keep`).
pub async fn finish(r: &mut Report, work: &mut WorkDir, stack: Option<Stack>, bound_view: bool) {
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
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                if let Err(e) = crate::node::mount::unmount(&node_b_view(&root), deadline).await {
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
