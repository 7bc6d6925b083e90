//! i. The target lost for good while a filesystem volume is staged and published, with writes
//! the kernel can never complete: NodeGetVolumeStats is abnormal, NodeUnpublish and
//! NodeUnstage answer OK within the kubelet's deadlines (the staging unmount waits for the
//! kernel to fail the pending writes at ctrl_loss_tmo), the node answers other calls
//! meanwhile, and no mount or controller is left.

use std::path::Path;
use std::time::{Duration, Instant};

use rds_csi::scenario::{CsiClient, Volume};
use tonic::Code;

use super::{CTRL_LOSS_TMO, QUICK_LOSS};
use crate::harness::{live, nqn, port_link, E2e};
use crate::run::RPC_TIMEOUT as KUBELET;
use crate::{say, R};

/// The deadline of the NodeGetVolumeStats sent while the NodeUnstage runs.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the NodeUnstage starts the probe is sent.
const PROBE_AFTER: Duration = Duration::from_millis(500);

pub async fn target_lost(e: &mut E2e) -> R<()> {
    let v = e.create_fs("pvc-e2e-lost", "ext4", &QUICK_LOSS).await?;
    let nqn = nqn(&v).to_owned();
    let link = port_link(&nqn);
    let (target, staging) = (e.target(&v, "node-a"), e.staging(&v, "node-a"));
    e.releasing(&v, async |e| {
        e.attach(&v, "node-a").await?;
        e.fs_write(&v, "node-a", "synced.bin").await?;
        // Dirty pages, left for writeback: they can never reach the target.
        e.sh_ok(
            "node-a",
            &format!("dd if=/dev/urandom of='{target}/dirty.bin' bs=1M count=8 2>/dev/null"),
        )
        .await?;
        // The export is removed for good (an operator, a failed RDS): never restored.
        e.sh_ok("node-a", &format!("[ -L '{link}' ] && rm '{link}'")).await?;
        let (c, t) = e.wait_ctrls("node-a", &nqn, 15, "controller leaves live after the export is removed", |c| !c.is_empty() && !live(c)).await?;
        let (abn, msg) = e.stats(&v, "node-a").await?;
        ensure!(abn, "target lost ({c:?}): NodeGetVolumeStats must be abnormal; got normal: {msg}");
        say(format!("lost: export removed; after {t:.1}s the controller is {c:?}; stats abnormal: {msg}"));
        // Both calls carry the harness's deadline, the kubelet's.
        let t0 = Instant::now();
        e.csi
            .node_unpublish(&v, "node-a")
            .await
            .map_err(|err| format!("NodeUnpublish with the target lost: {err}"))?;
        let t_unpub = t0.elapsed().as_secs_f64();
        ensure!(
            e.mount_at("node-a", &target).await?.is_none(),
            "after NodeUnpublish something is still mounted at {target}"
        );
        // NodeUnstage while the kernel still retries; another call for the volume answers
        // meanwhile (ABORTED while the unstage runs, NOT_FOUND once it is done).
        let probe_csi = e.csi.clone().with_timeout(PROBE_TIMEOUT);
        let t0 = Instant::now();
        let (u, p) = tokio::join!(
            e.csi.node_unstage(&v, "node-a"),
            stats_during_unstage(probe_csi, &v, Path::new(&staging))
        );
        u.map_err(|err| format!("NodeUnstage with the target lost: {err}"))?;
        let t_unstage = t0.elapsed().as_secs_f64();
        let p = p?;
        ensure!(
            e.mount_at("node-a", &staging).await?.is_none(),
            "after NodeUnstage something is still mounted at {staging}"
        );
        let c = e.ctrls("node-a", &nqn).await?;
        ensure!(c.is_empty(), "after NodeUnstage, controllers of {nqn} are left: {c:?}");
        say(format!(
            "lost: NodeUnpublish OK in {t_unpub:.1}s, NodeUnstage OK in {t_unstage:.1}s (ctrl_loss_tmo {CTRL_LOSS_TMO}s, deadlines {}s); stats during the unstage: {p}; nothing mounted, no controller left",
            KUBELET.as_secs()
        ));
        e.csi.controller_unpublish(&v.id, "node-a").await?;
        Ok(e.csi.delete_volume(&v.id).await?)
    })
    .await
}

/// NodeGetVolumeStats of `v` on node-a at its staging path, sent [`PROBE_AFTER`] the
/// NodeUnstage started: ABORTED, NOT_FOUND or an abnormal condition pass (what it saw and how
/// long it took); a normal condition or any other answer fails.
async fn stats_during_unstage(mut csi: CsiClient, v: &Volume, staging: &Path) -> R<String> {
    tokio::time::sleep(PROBE_AFTER).await;
    let t = Instant::now();
    let r = csi.node_volume_stats_at(v, "node-a", staging).await;
    let secs = t.elapsed().as_secs_f64();
    match r {
        Err(err) => match err.code() {
            Some(code @ (Code::Aborted | Code::NotFound)) => Ok(format!("{code:?} in {secs:.1}s")),
            _ => Err(format!(
                "NodeGetVolumeStats during the unstage (expected ABORTED or NOT_FOUND): {err}"
            )
            .into()),
        },
        Ok(r) if r.volume_condition.as_ref().is_some_and(|c| c.abnormal) => {
            Ok(format!("OK abnormal in {secs:.1}s"))
        }
        Ok(r) => Err(format!(
            "NodeGetVolumeStats during the unstage: normal: {:?}",
            r.volume_condition
        )
        .into()),
    }
}
