//! a. A filesystem volume moved between nodes (RWO handoff) keeps its data.

use rds_csi::scenario::Volume;

use crate::harness::{nqn, E2e};
use crate::{say, R};

pub async fn fs_handoff(e: &mut E2e, fs: &str) -> R<()> {
    let v = e.create_fs(&format!("pvc-e2e-fs-{fs}"), fs, &[]).await?;
    e.releasing(&v, async |e| {
        attach_as(e, &v, "node-a", fs).await?;
        let md5 = e.fs_write(&v, "node-a", "pattern.bin").await?;
        say(format!("{fs}: wrote 4 MiB on node-a, md5 {md5}"));
        e.detach(&v, "node-a").await?;
        say(format!(
            "{fs}: node-a detached; no controller left for {}",
            nqn(&v)
        ));
        attach_as(e, &v, "node-b", fs).await?;
        let back = e.fs_read(&v, "node-b", "pattern.bin").await?;
        ensure!(back == md5, "node-b read md5 {back}, node-a wrote {md5}");
        say(format!("{fs}: node-b reads the same pattern (md5 {back})"));
        e.detach_delete(&v, "node-b").await
    })
    .await
}

/// Attaches `v` to `node` and checks its target is an `fs` mount.
async fn attach_as(e: &mut E2e, v: &Volume, node: &str, fs: &str) -> R<()> {
    e.attach(v, node).await?;
    let target = e.target(v, node);
    let m = e.mount_at(node, &target).await?;
    ensure!(
        m.as_ref().is_some_and(|(_, t)| t == fs),
        "{node}: {target} is not a {fs} mount: {m:?}"
    );
    Ok(())
}
