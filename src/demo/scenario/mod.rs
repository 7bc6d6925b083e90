//! The demo's scenario: volumes walked through their whole life over the real CSI sockets,
//! one module per part of that life (a filesystem volume's life, a live migration, online
//! expansion, snapshot/restore/clone, cleanup). Every row of the table is the outcome of
//! real RPCs (and, for node steps, real loop devices, mkfs and mounts); nothing is assumed.

mod cleanup;
mod copies;
mod expansion;
mod migration;
mod volume_life;

use std::path::{Path, PathBuf};

use super::checks::{device_name, mount_at};
use super::report::{Kind, Report};
use super::stack::{Stack, NODE_IDS};
use crate::attachment::EventReason;
use crate::scenario::{ContentSource, CsiClient, Volume};
use crate::volume::keys;

/// The node the volumes start on, the migration target, and a third node fencing refuses.
const A: &str = NODE_IDS[0];
const B: &str = NODE_IDS[1];
const C: &str = NODE_IDS[2];

pub struct Scenario<'a> {
    stack: &'a mut Stack,
    work: PathBuf,
}

impl<'a> Scenario<'a> {
    pub fn new(stack: &'a mut Stack, work: &Path) -> Self {
        Scenario {
            stack,
            work: work.to_owned(),
        }
    }

    /// Every part in turn; a part that cannot run after an earlier failure says so in its rows.
    pub async fn run(&mut self, r: &mut Report) {
        let fs = self.filesystem_volume(r).await;
        self.migration(r).await;
        if let Some((fs, target)) = fs {
            self.expansion(r, &fs, target.as_ref()).await;
            self.copies(r, &fs, target.as_ref()).await;
        } else {
            // Only reached after a failure: the row says what did not run.
            r.step::<(), _>(
                "ControllerExpand, NodeExpand, snapshot, restore, clone",
                Kind::Controller,
                async { Err("not run: pvc-demo-fs was not created".to_string()) },
            )
            .await;
        }
    }

    fn csi(&mut self) -> &mut CsiClient {
        &mut self.stack.csi
    }

    /// `p` relative to the work directory, for the table.
    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.work)
            .map(|r| format!("<work>/{}", r.display()))
            .unwrap_or_else(|_| p.display().to_string())
    }

    /// Events recorded for `volume` with `reason`, latest last.
    fn events(&self, volume: &str, reason: EventReason) -> Vec<String> {
        self.stack
            .events
            .all()
            .into_iter()
            .filter(|(v, e)| v == volume && e.reason == reason)
            .map(|(_, e)| {
                format!(
                    "{} {}: {}",
                    e.event_type.as_str(),
                    e.reason.as_str(),
                    e.message
                )
            })
            .collect()
    }

    // ---- calls whose row shows what they did on this host ----------------------------

    /// CreateVolume; the detail gives the size created and the backing file.
    async fn create(
        &mut self,
        name: &str,
        bytes: i64,
        cap: csi_proto::v1::VolumeCapability,
        params: &[(&str, &str)],
        source: Option<ContentSource>,
    ) -> Result<(Volume, String), String> {
        let v = self
            .csi()
            .create_volume(name, bytes, cap, params, source)
            .await
            .map_err(|e| e.to_string())?;
        let detail = format!(
            "{} on the RDS, file {}",
            super::checks::gib(v.capacity_bytes),
            v.context_value(keys::VOLUME_FILE).unwrap_or("?")
        );
        Ok((v, detail))
    }

    /// ControllerPublish; the detail gives the NQN of the publish_context.
    async fn ctrl_publish(&mut self, v: &Volume, node: &str) -> Result<((), String), String> {
        let ctx = self
            .csi()
            .controller_publish(v, node)
            .await
            .map_err(|e| e.status_text())?;
        let nqn = ctx.get(keys::NQN).cloned().unwrap_or_default();
        Ok(((), format!("granted; publish_context nqn={nqn}")))
    }

    /// NodeStage; the detail says what is mounted at the staging path.
    async fn stage(&mut self, node: &str, v: &Volume) -> Result<String, String> {
        let staging = self
            .csi()
            .node_stage(v, node)
            .await
            .map_err(|e| e.to_string())?;
        if v.is_block() {
            return Ok("device attached (block: nothing to format or mount)".into());
        }
        let (src, fs) = mount_at(&staging).ok_or_else(|| {
            format!(
                "NodeStage {} on {node} answered OK but nothing is mounted at {}",
                v.id,
                staging.display()
            )
        })?;
        Ok(format!("{src} ({fs}) mounted at {}", self.rel(&staging)))
    }

    /// NodePublish; the detail says what the target is (a device node or a bind mount).
    async fn publish(&mut self, node: &str, v: &Volume) -> Result<(PathBuf, String), String> {
        let target = self
            .csi()
            .node_publish(v, node)
            .await
            .map_err(|e| e.to_string())?;
        let what = if v.is_block() {
            format!(
                "device node {} → /dev/{}",
                self.rel(&target),
                device_name(&target)?
            )
        } else {
            let (src, fs) = mount_at(&target).ok_or_else(|| {
                format!(
                    "NodePublish {} on {node} answered OK but nothing is mounted at {}",
                    v.id,
                    target.display()
                )
            })?;
            format!("{src} ({fs}) bind-mounted at {}", self.rel(&target))
        };
        Ok((target, what))
    }

    /// Stage + publish on `node`; the detail of both.
    async fn attach(&mut self, node: &str, v: &Volume) -> Result<(PathBuf, String), String> {
        let staged = self.stage(node, v).await?;
        let (target, published) = self.publish(node, v).await?;
        Ok((target, format!("{staged}; {published}")))
    }
}
