//! A KubeVirt live migration of an RWX block volume: the VM writes on demo-node-a, the
//! volume is granted to demo-node-b as well (MigrationStarted), the target reads what the
//! source wrote, a third node is refused, and the source lets go (MigrationCompleted).

use csi_proto::v1::volume_capability::access_mode::Mode;
use tonic::Code;

use super::{Scenario, A, B, C};
use crate::attachment::EventReason;
use crate::demo::checks::{
    metric, migration_metrics, pattern, present, read_head, write_synced, GIB,
};
use crate::demo::report::{Kind, Report};
use crate::scenario::block_capability;
use crate::volume::keys;

const BLOCK_PATTERN_LEN: usize = 1 << 20;
const BLOCK_SEED: u64 = 2;

impl Scenario<'_> {
    pub(super) async fn migration(&mut self, r: &mut Report) {
        let Some(v) = r
            .step(
                "CreateVolume pvc-demo-vm (1 GiB, RWX block, KubeVirt)",
                Kind::Controller,
                self.create(
                    "pvc-demo-vm",
                    GIB,
                    block_capability(Mode::MultiNodeMultiWriter),
                    &[(keys::MIGRATION_TIMEOUT_SECONDS, "300")],
                    None,
                ),
            )
            .await
        else {
            return;
        };
        r.step(
            "ControllerPublish pvc-demo-vm → demo-node-a (VM runs)",
            Kind::Controller,
            self.ctrl_publish(&v, A),
        )
        .await;
        let source = r
            .step(
                "NodeStage+NodePublish pvc-demo-vm on demo-node-a",
                Kind::Node,
                self.attach(A, &v),
            )
            .await;
        r.step(
            "VM on demo-node-a writes 1 MiB to the raw device",
            Kind::Node,
            async {
                let data = pattern(BLOCK_SEED, BLOCK_PATTERN_LEN);
                write_synced(present(source.as_ref())?, &data, false)?;
                Ok(((), format!("{} bytes at offset 0, fsync'd", data.len())))
            },
        )
        .await;
        r.step(
            "ControllerPublish pvc-demo-vm → demo-node-b (migration)",
            Kind::Controller,
            async {
                self.ctrl_publish(&v, B).await?;
                let ev = self.events(&v.id, EventReason::MigrationStarted);
                let ev = ev.last().ok_or_else(|| {
                    format!(
                        "{} was granted to a second node but no MigrationStarted event was posted",
                        v.id
                    )
                })?;
                let active = metric(&self.stack.metrics, "rds_csi_migration_active_migrations");
                Ok((
                    (),
                    format!("event {ev}; rds_csi_migration_active_migrations={active}"),
                ))
            },
        )
        .await;
        r.step(
            "both nodes hold pvc-demo-vm (ControllerGetVolume)",
            Kind::Controller,
            async {
                let nodes = self
                    .csi()
                    .published_node_ids(&v.id)
                    .await
                    .map_err(|e| e.to_string())?;
                if nodes != [A, B] {
                    return Err(format!(
                        "{} is published to {nodes:?}, expected both {A} and {B}",
                        v.id
                    ));
                }
                Ok(((), format!("published_node_ids = {}", nodes.join(", "))))
            },
        )
        .await;
        let target = r
            .step(
                "NodeStage+NodePublish pvc-demo-vm on demo-node-b",
                Kind::Node,
                async {
                    let (t, d) = self.attach(B, &v).await?;
                    Ok((t, format!("{d} (its own loop device over the same file, as a second host has its own NVMe controller)")))
                },
            )
            .await;
        r.step(
            "demo-node-b reads what demo-node-a wrote",
            Kind::Node,
            async {
                let dev = present(target.as_ref())?;
                let want = pattern(BLOCK_SEED, BLOCK_PATTERN_LEN);
                if read_head(dev, want.len())? != want {
                    return Err(format!(
                        "{} on demo-node-b does not show the bytes demo-node-a wrote",
                        dev.display()
                    ));
                }
                Ok(((), "1 MiB identical on the migration target".to_string()))
            },
        )
        .await;
        r.step(
            "ControllerPublish pvc-demo-vm → demo-node-c refused",
            Kind::Controller,
            async {
                match self.csi().controller_publish(&v, C).await {
                    Ok(_) => Err(format!(
                        "{} was granted to a third node ({C}) during a migration: fencing is broken",
                        v.id
                    )),
                    Err(e) if e.code() == Some(Code::FailedPrecondition) => {
                        let ev = self.events(&v.id, EventReason::AttachmentConflict);
                        let msg: String = e.message().chars().take(110).collect();
                        Ok((
                            (),
                            format!(
                                "FAILED_PRECONDITION as expected: {msg}…{}",
                                ev.last()
                                    .map(|e| format!(
                                        "; event {}",
                                        e.split(':').next().unwrap_or("")
                                    ))
                                    .unwrap_or_default()
                            ),
                        ))
                    }
                    Err(e) => Err(format!(
                        "expected FAILED_PRECONDITION, got {}",
                        e.status_text()
                    )),
                }
            },
        )
        .await;
        // The third node was never granted anything: nothing to clean up for it.
        self.csi().forget_controller_publish(&v.id, C);
        r.step(
            "source demo-node-a: NodeUnpublish+NodeUnstage",
            Kind::Node,
            async {
                present(source.as_ref())?;
                let csi = self.csi();
                csi.node_unpublish(&v, A).await.map_err(|e| e.to_string())?;
                csi.node_unstage(&v, A).await.map_err(|e| e.to_string())?;
                Ok((
                    (),
                    "holder scan complete and empty; loop device detached".to_string(),
                ))
            },
        )
        .await;
        r.step(
            "ControllerUnpublish pvc-demo-vm from demo-node-a",
            Kind::Controller,
            async {
                self.csi()
                    .controller_unpublish(&v.id, A)
                    .await
                    .map_err(|e| e.to_string())?;
                let ev = self.events(&v.id, EventReason::MigrationCompleted);
                let ev = ev.last().ok_or_else(|| {
                    format!("the source let go of {} but no MigrationCompleted event was posted", v.id)
                })?;
                let ok = metric(
                    &self.stack.metrics,
                    "rds_csi_migration_migrations_total{result=\"success\"}",
                );
                if ok < 1.0 {
                    return Err("MigrationCompleted was posted but rds_csi_migration_migrations_total{result=\"success\"} is 0".into());
                }
                Ok(((), format!("event {ev}; {}", migration_metrics(&self.stack.metrics))))
            },
        )
        .await;
    }
}
