//! Cleanup: always runs, also after a failure or an interrupt, and releases exactly what the
//! scenario took (the client's record of it), latest first: node publications, stagings,
//! attachments, snapshots, volumes; then checks that the RDS is empty.

use super::Scenario;
use crate::attachment::EventReason;
use crate::demo::report::{Kind, Report};
use crate::scenario::{CallError, Holding};

/// A cleanup step's result: `done` when every call succeeded, else every failure.
fn all_ok(errors: Vec<CallError>, done: impl FnOnce() -> String) -> Result<((), String), String> {
    if errors.is_empty() {
        Ok(((), done()))
    } else {
        Err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// The cleanup step that releases `n` holdings of kind `h`.
fn step_name(h: Holding, n: usize) -> String {
    match h {
        Holding::NodePublished => format!("cleanup: NodeUnpublish ({n} targets)"),
        Holding::Staged => format!("cleanup: NodeUnstage ({n} volumes, holder scan)"),
        Holding::ControllerPublished => format!("cleanup: ControllerUnpublish ({n} attachments)"),
        Holding::Snapshots => format!("cleanup: DeleteSnapshot ({n})"),
        Holding::Volumes => format!("cleanup: DeleteVolume ({n})"),
    }
}

impl Scenario<'_> {
    /// Releases every holding of kind `h` in one cleanup step (no step when none is held).
    async fn release_step(&mut self, r: &mut Report, h: Holding) {
        let taken = self.stack.csi.taken();
        let n = taken.count(h);
        if n == 0 {
            return;
        }
        // Snapshots and volumes are named in the step's result (as they were before release).
        let listed = match h {
            Holding::Snapshots => taken.snapshots.join(", "),
            Holding::Volumes => taken.volumes.join(", "),
            _ => String::new(),
        };
        r.step(step_name(h, n), Kind::Cleanup, async {
            let errors = self.csi().release(h).await;
            all_ok(errors, || match h {
                Holding::NodePublished => "targets unmounted / device nodes removed".to_string(),
                Holding::Staged => {
                    "unmounted; holder scans complete and empty; loop devices detached".to_string()
                }
                Holding::ControllerPublished => {
                    let detached = self
                        .stack
                        .events
                        .reasons()
                        .iter()
                        .filter(|r| *r == EventReason::VolumeDetached.as_str())
                        .count();
                    format!("attachment table empty; {detached} VolumeDetached events in all")
                }
                Holding::Snapshots | Holding::Volumes => listed,
            })
        })
        .await;
    }

    pub async fn cleanup(&mut self, r: &mut Report) {
        // Latest first.
        for h in [
            Holding::NodePublished,
            Holding::Staged,
            Holding::ControllerPublished,
            Holding::Snapshots,
            Holding::Volumes,
        ] {
            self.release_step(r, h).await;
        }
        r.step("the RDS is empty again", Kind::Cleanup, async {
            let left: Vec<String> = self
                .stack
                .sim
                .disks()
                .into_iter()
                .map(|d| d.slot.to_string())
                .collect();
            if !left.is_empty() {
                return Err(format!(
                    "disks left on the simulator: {}; they are removed with the work directory",
                    left.join(", ")
                ));
            }
            let listed = self
                .csi()
                .list_volumes()
                .await
                .map_err(|e| e.to_string())?
                .len();
            if listed != 0 {
                return Err(format!("ListVolumes still lists {listed} volumes"));
            }
            Ok((
                (),
                "no disks on the simulator; ListVolumes is empty".to_string(),
            ))
        })
        .await;
    }
}
