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

impl Scenario<'_> {
    pub async fn cleanup(&mut self, r: &mut Report) {
        let held = |s: &Self, h| s.stack.csi.taken().count(h);
        let n = held(self, Holding::NodePublished);
        if n > 0 {
            r.step(
                format!("cleanup: NodeUnpublish ({n} targets)"),
                Kind::Cleanup,
                async {
                    let errors = self.csi().release(Holding::NodePublished).await;
                    all_ok(errors, || {
                        "targets unmounted / device nodes removed".to_string()
                    })
                },
            )
            .await;
        }
        let n = held(self, Holding::Staged);
        if n > 0 {
            r.step(
                format!("cleanup: NodeUnstage ({n} volumes, holder scan)"),
                Kind::Cleanup,
                async {
                    let errors = self.csi().release(Holding::Staged).await;
                    all_ok(errors, || {
                        "unmounted; holder scans complete and empty; loop devices detached"
                            .to_string()
                    })
                },
            )
            .await;
        }
        let n = held(self, Holding::ControllerPublished);
        if n > 0 {
            r.step(
                format!("cleanup: ControllerUnpublish ({n} attachments)"),
                Kind::Cleanup,
                async {
                    let errors = self.csi().release(Holding::ControllerPublished).await;
                    let detached = self
                        .stack
                        .events
                        .reasons()
                        .iter()
                        .filter(|r| *r == EventReason::VolumeDetached.as_str())
                        .count();
                    all_ok(errors, || {
                        format!("attachment table empty; {detached} VolumeDetached events in all")
                    })
                },
            )
            .await;
        }
        let snaps = self.stack.csi.taken().snapshots.clone();
        if !snaps.is_empty() {
            r.step(
                format!("cleanup: DeleteSnapshot ({})", snaps.len()),
                Kind::Cleanup,
                async {
                    let errors = self.csi().release(Holding::Snapshots).await;
                    all_ok(errors, || snaps.join(", "))
                },
            )
            .await;
        }
        let vols = self.stack.csi.taken().volumes.clone();
        if !vols.is_empty() {
            r.step(
                format!("cleanup: DeleteVolume ({})", vols.len()),
                Kind::Cleanup,
                async {
                    let errors = self.csi().release(Holding::Volumes).await;
                    all_ok(errors, || vols.join(", "))
                },
            )
            .await;
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
