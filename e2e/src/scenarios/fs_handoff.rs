//! a. A filesystem volume moved between nodes (RWO handoff) keeps its data.

use csi_proto::v1::volume_capability::access_mode::Mode;
use rds_csi::scenario::mount_capability;

use super::GIB;
use crate::harness::{nqn, E2e};
use crate::{say, R};

pub async fn fs_handoff(e: &mut E2e, fs: &str) -> R<()> {
    let v = e
        .create(
            &format!("pvc-e2e-fs-{fs}"),
            mount_capability(fs, Mode::SingleNodeWriter),
            GIB,
            &[],
        )
        .await?;
    let r = async {
        e.attach(&v, "node-a").await?;
        let m = e.mount_at("node-a", &e.target(&v, "node-a")).await?;
        ensure!(
            m.as_ref().is_some_and(|(_, t)| t == fs),
            "node-a: {} is not a {fs} mount: {m:?}",
            e.target(&v, "node-a")
        );
        let md5 = e.fs_write(&v, "node-a", "pattern.bin").await?;
        say(format!("{fs}: wrote 4 MiB on node-a, md5 {md5}"));
        e.detach(&v, "node-a").await?;
        say(format!(
            "{fs}: node-a detached; no controller left for {}",
            nqn(&v)
        ));
        e.attach(&v, "node-b").await?;
        let m = e.mount_at("node-b", &e.target(&v, "node-b")).await?;
        ensure!(
            m.as_ref().is_some_and(|(_, t)| t == fs),
            "node-b: {} is not a {fs} mount: {m:?}",
            e.target(&v, "node-b")
        );
        let back = e.fs_read(&v, "node-b", "pattern.bin").await?;
        ensure!(back == md5, "node-b read md5 {back}, node-a wrote {md5}");
        say(format!("{fs}: node-b reads the same pattern (md5 {back})"));
        e.detach(&v, "node-b").await?;
        Ok(e.csi.delete_volume(&v.id).await?)
    }
    .await;
    if r.is_err() {
        e.cleanup(&v).await;
    }
    r
}
