//! e. The target port removed and re-added: within ctrl_loss_tmo the same device keeps
//! working; past it the node's reconciler restores the volume, and NodeGetVolumeStats is
//! abnormal meanwhile.

use std::time::Duration;

use csi_proto::v1::volume_capability::access_mode::Mode;
use rds_csi::scenario::block_capability;

use super::{CTRL_LOSS_TMO, QUICK_LOSS};
use crate::harness::{live, nqn, port_link, E2e};
use crate::{say, R};

pub async fn reconnect(e: &mut E2e) -> R<()> {
    let v = e
        .create(
            "pvc-e2e-recon",
            block_capability(Mode::SingleNodeWriter),
            &QUICK_LOSS,
        )
        .await?;
    let nqn = nqn(&v).to_owned();
    let link = port_link(&nqn);
    let subsys = format!("/sys/kernel/config/nvmet/subsystems/{nqn}");
    let r = async {
        e.attach(&v, "node-a").await?;
        let dev0 = e.block_dev(&v, "node-a").await?;
        let p = e.block_write(&v, "node-a", 4, 1).await?;
        // 1. short outage, well inside ctrl_loss_tmo
        e.sh_ok("node-a", &format!("[ -L '{link}' ] && rm '{link}'")).await?;
        let (c, t) = e.wait_ctrls("node-a", &nqn, 15, "controller leaves live after the port link is removed", |c| !c.is_empty() && !live(c)).await?;
        say(format!("reconnect: port link removed; after {t:.1}s the host controller is {c:?}"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        e.sh_ok("node-a", &format!("ln -s '{subsys}' '{link}'")).await?;
        let (c, t) = e.wait_ctrls("node-a", &nqn, 20, "controller live again after the port link is back", live).await?;
        let dev1 = e.block_dev(&v, "node-a").await?;
        ensure!(dev1 == dev0, "the device changed across a short outage: {dev0} -> {dev1}");
        let seen = e.block_read(&v, "node-a", 4, 1).await?;
        ensure!(seen == p, "after the short outage node-a reads md5 {seen}, wrote {p}");
        let (abn, msg) = e.stats(&v, "node-a").await?;
        ensure!(!abn, "after the short outage NodeGetVolumeStats is abnormal: {msg}");
        say(format!("reconnect: link back; live again after {t:.1}s ({c:?}), same device {dev1}, data intact, stats normal"));
        // 2. long outage, past ctrl_loss_tmo: the kernel drops the controller
        e.sh_ok("node-a", &format!("rm '{link}'")).await?;
        let (_, t) = e.wait_ctrls("node-a", &nqn, CTRL_LOSS_TMO + 30, "kernel removes the controller after ctrl_loss_tmo", |c| c.is_empty()).await?;
        let (abn, msg) = e.stats(&v, "node-a").await?;
        ensure!(abn, "with no controller left, NodeGetVolumeStats must report abnormal; got normal: {msg}");
        say(format!("reconnect: controller gone after {t:.1}s (ctrl_loss_tmo {CTRL_LOSS_TMO}s); NodeGetVolumeStats abnormal: {msg}"));
        e.sh_ok("node-a", &format!("ln -s '{subsys}' '{link}'")).await?;
        let (c, t) = e.wait_ctrls("node-a", &nqn, 60, "the node's reconciler reconnects the staged volume", live).await?;
        say(format!("reconnect: link back; the reconciler reconnected after {t:.1}s: {c:?}"));
        // The device may be renumbered: NodeGetVolumeStats says so (stale), a NodePublish
        // repairs the block node (what a pod restart does); then all is normal.
        let (abn, msg) = e.stats(&v, "node-a").await?;
        if abn {
            say(format!("reconnect: stats after reconnect: abnormal ({msg}); publishing again"));
            e.csi.node_publish(&v, "node-a").await?;
        }
        let (abn, msg) = e.stats(&v, "node-a").await?;
        ensure!(!abn, "after the reconciler's reconnect NodeGetVolumeStats stays abnormal: {msg}");
        let seen = e.block_read(&v, "node-a", 4, 1).await?;
        ensure!(seen == p, "after the reconnect node-a reads md5 {seen}, wrote {p}");
        say(format!("reconnect: volume restored, data intact, stats normal: {msg}"));
        e.detach_delete(&v, "node-a").await
    }
    .await;
    if r.is_err() {
        let _ = e
            .sh(
                "node-a",
                &format!("[ -e '{link}' ] || ln -s '{subsys}' '{link}'"),
            )
            .await;
        e.cleanup(&v).await;
    }
    r
}
