//! The harness the scenarios drive: the shared CSI scenario client (`rds_csi::scenario`) to
//! the controller and both node plugins, plus shell checks of what the kernel did on each
//! node (NVMe controllers in sysfs, block devices, mounts, data patterns).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use csi_proto::v1 as csi;
use csi_proto::v1::volume_capability::access_mode::Mode;
use rds_csi::scenario::{exposition, mount_capability, CsiClient, Volume};

use crate::shell::{run_local, run_remote};
use crate::{say, R};

/// Every scenario volume's size (1 GiB).
pub const VOLUME_BYTES: i64 = 1 << 30;

/// An NVMe host controller on a node: (name, state), e.g. `("nvme1", "live")`.
pub type Ctrl = (String, String);

pub struct E2e {
    pub csi: CsiClient,
    /// node id -> agent address; nodes without one run commands locally.
    pub agents: HashMap<String, String>,
    pub metrics_url: String,
    /// node id -> its plugin log file readable by `sh` on that node.
    pub node_logs: HashMap<String, String>,
}

/// The volume's NQN from its context (CreateVolume in [`E2e::create`] made sure it is there).
pub fn nqn(v: &Volume) -> &str {
    v.context_value("nqn").unwrap_or_default()
}

/// The configfs link that exports the subsystem `nqn` on the target's port 1: removing it
/// takes the volume away from every host, as an RDS that stops serving it would.
pub fn port_link(nqn: &str) -> String {
    format!("/sys/kernel/config/nvmet/ports/1/subsystems/{nqn}")
}

/// Whether one of `c` is connected.
pub fn live(c: &[Ctrl]) -> bool {
    c.iter().any(|(_, s)| s == "live")
}

impl E2e {
    pub async fn sh(&self, node: &str, cmd: &str) -> R<(i32, String)> {
        match self.agents.get(node) {
            Some(a) => run_remote(a, cmd).await,
            None => run_local(cmd).await,
        }
    }

    pub async fn sh_ok(&self, node: &str, cmd: &str) -> R<String> {
        let (code, out) = self.sh(node, cmd).await?;
        ensure!(
            code == 0,
            "on {node}: `{cmd}` exited {code}: {}",
            out.trim()
        );
        Ok(out)
    }

    /// `cmd`'s output on `node`, trimmed; an exit status other than 0 fails.
    pub async fn sh_out(&self, node: &str, cmd: &str) -> R<String> {
        Ok(self.sh_ok(node, cmd).await?.trim().to_owned())
    }

    /// NodePublish's target path of `v` on `node`.
    pub fn target(&self, v: &Volume, node: &str) -> String {
        self.csi.target(node, v).display().to_string()
    }

    /// NodeStage's staging path of `v` on `node`.
    pub fn staging(&self, v: &Volume, node: &str) -> String {
        self.csi.staging(node, v).display().to_string()
    }

    /// CreateVolume of [`VOLUME_BYTES`] with StorageClass `params`; checks the capacity and
    /// that the context carries the NQN.
    pub async fn create(
        &mut self,
        name: &str,
        cap: csi::VolumeCapability,
        params: &[(&str, &str)],
    ) -> R<Volume> {
        let bytes = VOLUME_BYTES;
        let v = self
            .csi
            .create_volume(name, bytes, cap, params, None)
            .await?;
        ensure!(
            v.capacity_bytes >= bytes,
            "CreateVolume {name}: capacity {} < {bytes}",
            v.capacity_bytes
        );
        ensure!(
            !nqn(&v).is_empty(),
            "CreateVolume {name}: no nqn in the volume context {:?}",
            v.context
        );
        Ok(v)
    }

    /// [`E2e::create`] of a single-node-writer volume with an `fs` filesystem (RWO).
    pub async fn create_fs(&mut self, name: &str, fs: &str, params: &[(&str, &str)]) -> R<Volume> {
        let cap = mount_capability(fs, Mode::SingleNodeWriter);
        self.create(name, cap, params).await
    }

    /// ControllerPublish + NodeStage + NodePublish.
    pub async fn attach(&mut self, v: &Volume, node: &str) -> R<()> {
        self.csi.controller_publish(v, node).await?;
        self.csi.node_stage(v, node).await?;
        self.csi.node_publish(v, node).await?;
        Ok(())
    }

    /// NodeUnpublish + NodeUnstage + ControllerUnpublish, then: no controller of the NQN left.
    pub async fn detach(&mut self, v: &Volume, node: &str) -> R<()> {
        self.csi.node_unpublish(v, node).await?;
        self.csi.node_unstage(v, node).await?;
        self.csi.controller_unpublish(&v.id, node).await?;
        let c = self.ctrls(node, nqn(v)).await?;
        ensure!(
            c.is_empty(),
            "after unstage on {node}, controllers of {} are left: {c:?}",
            nqn(v)
        );
        Ok(())
    }

    /// [`E2e::detach`] from `node`, then DeleteVolume: the end of a scenario that passed.
    pub async fn detach_delete(&mut self, v: &Volume, node: &str) -> R<()> {
        self.detach(v, node).await?;
        Ok(self.csi.delete_volume(&v.id).await?)
    }

    /// Runs a scenario's `body` on the harness; when it fails, releases what the calls took
    /// for `v` ([`E2e::cleanup`]) so the next scenario starts clean.
    pub async fn releasing<T>(
        &mut self,
        v: &Volume,
        body: impl AsyncFnOnce(&mut E2e) -> R<T>,
    ) -> R<T> {
        let r = body(self).await;
        if r.is_err() {
            self.cleanup(v).await;
        }
        r
    }

    /// Best-effort teardown after a failure: releases what the calls took for `v` (errors
    /// are shown, not returned: the scenario's own failure is the one reported).
    pub async fn cleanup(&mut self, v: &Volume) {
        for e in self.csi.release_volume(&v.id).await {
            say(format!("cleanup of {}: {e}", v.id));
        }
    }

    /// NVMe controllers on `node` whose subsysnqn is `nqn`.
    pub async fn ctrls(&self, node: &str, nqn: &str) -> R<Vec<Ctrl>> {
        let out = self
            .sh_ok(
                node,
                &format!(
                    "for c in /sys/class/nvme/nvme*; do [ -e $c/subsysnqn ] || continue; \
                     [ \"$(cat $c/subsysnqn)\" = '{nqn}' ] && echo \"${{c##*/}} $(cat $c/state)\"; done; true"
                ),
            )
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect())
    }

    /// Polls `cond` on `node`'s controllers of `nqn` every 200 ms for up to `secs`; returns
    /// the controllers that met it and the seconds it took.
    pub async fn wait_ctrls(
        &self,
        node: &str,
        nqn: &str,
        secs: u64,
        what: &str,
        cond: impl Fn(&[Ctrl]) -> bool,
    ) -> R<(Vec<Ctrl>, f64)> {
        let t0 = Instant::now();
        loop {
            let c = self.ctrls(node, nqn).await?;
            if cond(&c) {
                return Ok((c, t0.elapsed().as_secs_f64()));
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(secs),
                "{what}: not within {secs}s; controllers now {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The kernel block device behind a published block target (`nvme1n1`).
    pub async fn block_dev(&self, v: &Volume, node: &str) -> R<String> {
        let t = self.target(v, node);
        let name = self
            .sh_out(
                node,
                &format!(
                    "set -e; [ -b '{t}' ]; mm=$(stat -c '%t %T' '{t}'); set -- $mm; \
                     l=$(readlink /sys/dev/block/$((0x$1)):$((0x$2))); echo ${{l##*/}}"
                ),
            )
            .await?;
        ensure!(
            name.starts_with("nvme"),
            "{t} on {node} is not an NVMe device: {name:?}"
        );
        Ok(name)
    }

    /// Writes `mib` MiB of random data at MiB offset `at` of a published block target,
    /// O_DIRECT; returns its md5.
    pub async fn block_write(&self, v: &Volume, node: &str, at: u32, mib: u32) -> R<String> {
        let t = self.target(v, node);
        self.sh_out(
                node,
                &format!(
                    "set -e; dd if=/dev/urandom of=/tmp/pat bs=1M count={mib} 2>/dev/null; \
                     dd if=/tmp/pat of='{t}' bs=1M seek={at} oflag=direct conv=notrunc 2>/dev/null; \
                     md5sum < /tmp/pat | cut -d' ' -f1"
                ),
            )
            .await
    }

    /// The md5 of `mib` MiB at MiB offset `at` of a published block target, read O_DIRECT.
    pub async fn block_read(&self, v: &Volume, node: &str, at: u32, mib: u32) -> R<String> {
        let t = self.target(v, node);
        self
            .sh_out(
                node,
                &format!(
                    "set -o pipefail; dd if='{t}' bs=1M skip={at} count={mib} iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1"
                ),
            )
            .await
    }

    /// Writes 4 MiB of random data to `file` on a published filesystem, syncs; its md5.
    pub async fn fs_write(&self, v: &Volume, node: &str, file: &str) -> R<String> {
        let t = self.target(v, node);
        self.sh_out(
            node,
            &format!(
                "set -e; dd if=/dev/urandom of='{t}/{file}' bs=1M count=4 2>/dev/null; sync; \
                     md5sum < '{t}/{file}' | cut -d' ' -f1"
            ),
        )
        .await
    }

    /// The md5 of `file` on a published filesystem.
    pub async fn fs_read(&self, v: &Volume, node: &str, file: &str) -> R<String> {
        let t = self.target(v, node);
        self.sh_out(node, &format!("md5sum < '{t}/{file}' | cut -d' ' -f1"))
            .await
    }

    /// (mount id, fs type) of what is mounted at `path` on `node`, from mountinfo.
    pub async fn mount_at(&self, node: &str, path: &str) -> R<Option<(String, String)>> {
        let out = self
            .sh_ok(
                node,
                &format!("awk '$5 == \"{path}\" {{ for (i = 7; $i != \"-\"; i++); print $1, $(i+1) }}' /proc/self/mountinfo"),
            )
            .await?;
        Ok(out
            .lines()
            .last()
            .and_then(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_owned(), b.to_owned())))
    }

    /// Size in KiB of the filesystem mounted at `path`.
    pub async fn df_k(&self, node: &str, path: &str) -> R<u64> {
        let out = self
            .sh_ok(
                node,
                &format!("df -k '{path}' | awk 'NR == 2 {{ print $2 }}'"),
            )
            .await?;
        Ok(out
            .trim()
            .parse()
            .map_err(|_| format!("df -k {path} on {node}: {out:?}"))?)
    }

    /// One series of the controller's metrics (fetched from node-a).
    pub async fn metric(&self, series: &str) -> R<Option<f64>> {
        let out = self
            .sh_ok("node-a", &format!("wget -q -O - '{}'", self.metrics_url))
            .await?;
        Ok(exposition::sample(&out, series))
    }

    /// NodeGetVolumeStats of `v` on `node`: (abnormal, message).
    pub async fn stats(&mut self, v: &Volume, node: &str) -> R<(bool, String)> {
        let c = self
            .csi
            .node_volume_stats(v, node)
            .await?
            .volume_condition
            .ok_or("NodeGetVolumeStats: no volume_condition")?;
        Ok((c.abnormal, c.message))
    }
}
