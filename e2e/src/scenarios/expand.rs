//! f. Online expansion: ControllerExpand + NodeExpand grow a mounted ext4, the staging mount
//! stays the same mount and the data stays.

use crate::harness::{E2e, VOLUME_BYTES};
use crate::{say, R};

pub async fn expand(e: &mut E2e) -> R<()> {
    let v = e.create_fs("pvc-e2e-grow", "ext4", &[]).await?;
    e.releasing(&v, async |e| {
        e.attach(&v, "node-a").await?;
        let md5 = e.fs_write(&v, "node-a", "before-grow.bin").await?;
        let (target, staging) = (e.target(&v, "node-a"), e.staging(&v, "node-a"));
        let k0 = e.df_k("node-a", &target).await?;
        let m0 = e.mount_at("node-a", &staging).await?;
        let grown = 2 * VOLUME_BYTES;
        let cr = e.csi.controller_expand(&v, grown).await?;
        ensure!(cr.capacity_bytes >= grown, "ControllerExpandVolume gave {} bytes", cr.capacity_bytes);
        ensure!(cr.node_expansion_required, "ControllerExpandVolume: node_expansion_required is false for ext4");
        let nr = e.csi.node_expand(&v, "node-a", grown).await?;
        ensure!(nr.capacity_bytes >= grown, "NodeExpandVolume gave {} bytes", nr.capacity_bytes);
        let k1 = e.df_k("node-a", &target).await?;
        let m1 = e.mount_at("node-a", &staging).await?;
        ensure!(k1 > k0 + 900 * 1024, "ext4 size {k0} KiB -> {k1} KiB: not grown by ~1 GiB");
        ensure!(
            m0.is_some() && m0 == m1,
            "the staging mount changed during the expansion (was {m0:?}, now {m1:?}): it must grow mounted"
        );
        let back = e.fs_read(&v, "node-a", "before-grow.bin").await?;
        ensure!(back == md5, "file changed across the grow: {back} != {md5}");
        say(format!("expand: ext4 {k0} KiB -> {k1} KiB online (mount id {} unchanged), data intact", m1.map(|m| m.0).unwrap_or_default()));
        e.detach_delete(&v, "node-a").await
    })
    .await
}
