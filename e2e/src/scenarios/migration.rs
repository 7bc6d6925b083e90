//! b + c. An RWX block volume's live migration node-a -> node-b (both attached, each sees
//! the other's writes, the migration metric counts it), with a third node refused in the
//! window.

use csi_proto::v1::volume_capability::access_mode::Mode;
use rds_csi::scenario::block_capability;
use tonic::Code;

use crate::harness::{live, nqn, E2e};
use crate::{say, R};

const SUCCESS_SERIES: &str = "rds_csi_migration_migrations_total{result=\"success\"}";

/// Returns (b's result, c's result).
pub async fn migration(e: &mut E2e) -> (R<()>, R<()>) {
    let before = match e.metric(SUCCESS_SERIES).await {
        Ok(v) => v.unwrap_or(0.0),
        Err(err) => return (Err(err), Err("not reached".into())),
    };
    let v = match e
        .create(
            "pvc-e2e-rwx",
            block_capability(Mode::MultiNodeMultiWriter),
            &[],
        )
        .await
    {
        Ok(v) => v,
        Err(err) => return (Err(err), Err("not reached".into())),
    };
    let mut c_result: R<()> =
        Err("not reached (migration failed before the third node was tried)".into());
    let r = e.releasing(&v, async |e| {
        e.attach(&v, "node-a").await?;
        let dev_a = e.block_dev(&v, "node-a").await?;
        let p1 = e.block_write(&v, "node-a", 8, 2).await?;
        say(format!("rwx: node-a published {dev_a}, wrote 2 MiB at 8 MiB (md5 {p1})"));
        e.attach(&v, "node-b").await?;
        let (ca, cb) = (e.ctrls("node-a", nqn(&v)).await?, e.ctrls("node-b", nqn(&v)).await?);
        ensure!(
            live(&ca) && live(&cb),
            "both nodes must be connected during the migration: node-a {ca:?}, node-b {cb:?}"
        );
        say(format!("rwx: both attached at once: node-a {ca:?}, node-b {cb:?}"));
        let seen = e.block_read(&v, "node-b", 8, 2).await?;
        ensure!(seen == p1, "node-b reads md5 {seen} at 8 MiB, node-a wrote {p1}");
        say("rwx: node-b sees node-a's data");
        // c. a third node during the window
        c_result = match e.csi.controller_publish(&v, "node-c").await {
            Err(err) if err.code() == Some(Code::FailedPrecondition) => {
                say(format!("third node refused: FAILED_PRECONDITION: {}", err.message()));
                // Refused: node-c was granted nothing to release.
                e.csi.forget_controller_publish(&v.id, "node-c");
                Ok(())
            }
            Err(err) => Err(format!("expected FAILED_PRECONDITION: {err}").into()),
            Ok(_) => Err("ControllerPublish to node-c during the migration succeeded; it must be refused".into()),
        };
        let p2 = e.block_write(&v, "node-b", 16, 1).await?;
        let seen = e.block_read(&v, "node-a", 16, 1).await?;
        ensure!(seen == p2, "node-a reads md5 {seen} at 16 MiB, node-b wrote {p2}");
        e.detach(&v, "node-a").await?;
        say("rwx: node-a unpublished, unstaged (no controller left), ControllerUnpublish(node-a) done");
        let seen = e.block_read(&v, "node-b", 8, 2).await?;
        ensure!(seen == p1, "after the source left, node-b reads md5 {seen}, expected {p1}");
        let after = e.metric(SUCCESS_SERIES).await?.unwrap_or(0.0);
        ensure!(
            after - before == 1.0,
            "{SUCCESS_SERIES} went {before} -> {after}, expected +1"
        );
        say(format!("rwx: controller metrics: {SUCCESS_SERIES} {after}"));
        e.detach_delete(&v, "node-b").await
    })
    .await;
    (r, c_result)
}
