//! g. A volume with data is not reformatted when staged again.

use crate::harness::{nqn, E2e};
use crate::{say, R};

pub async fn restage(e: &mut E2e) -> R<()> {
    let v = e.create_fs("pvc-e2e-restage", "xfs", &[]).await?;
    let log = e.node_logs.get("node-a").cloned().unwrap_or_default();
    e.releasing(&v, async |e| {
        e.attach(&v, "node-a").await?;
        let md5 = e.fs_write(&v, "node-a", "keep.bin").await?;
        e.csi.node_unpublish(&v, "node-a").await?;
        e.csi.node_unstage(&v, "node-a").await?;
        let c = e.ctrls("node-a", nqn(&v)).await?;
        ensure!(c.is_empty(), "after unstage, controllers left: {c:?}");
        e.csi.node_stage(&v, "node-a").await?;
        e.csi.node_publish(&v, "node-a").await?;
        let back = e.fs_read(&v, "node-a", "keep.bin").await?;
        ensure!(
            back == md5,
            "after restage keep.bin md5 {back}, written {md5}"
        );
        if !log.is_empty() {
            let cmd = format!(
                "grep 'formatting a blank fresh volume' '{log}' | grep -c 'pvc-e2e-restage'; true"
            );
            let n = e.sh_out("node-a", &cmd).await?;
            ensure!(
                n == "1",
                "the node log shows {n} format(s) of the volume, expected exactly 1"
            );
        }
        say(
            "restage: unstage + stage again kept the file; the node formatted the volume once only",
        );
        e.detach_delete(&v, "node-a").await
    })
    .await
}
