//! A filesystem volume's life on one node: CreateVolume, ControllerPublish, NodeStage (mkfs
//! of a blank, fresh volume), NodePublish, and data written and read back through the mount.

use std::path::PathBuf;

use csi_proto::v1::volume_capability::access_mode::Mode;

use super::{Scenario, A};
use crate::demo::checks::{pattern, present, write_synced, GIB};
use crate::demo::report::{Kind, Report};
use crate::scenario::{mount_capability, Volume};
use crate::volume::{keys, FsType};

/// The file written to pvc-demo-fs, and read again from its snapshot and clone.
pub(super) const FS_FILE: &str = "demo-pattern.bin";
pub(super) const FS_PATTERN_LEN: usize = 4 << 20;
/// The pattern's seed.
pub(super) const FS_SEED: u64 = 1;

impl Scenario<'_> {
    /// pvc-demo-fs and, when node steps ran, where it is published on demo-node-a.
    pub(super) async fn filesystem_volume(
        &mut self,
        r: &mut Report,
    ) -> Option<(Volume, Option<PathBuf>)> {
        let v = r
            .step(
                "CreateVolume pvc-demo-fs (1 GiB, xfs, RWO)",
                Kind::Controller,
                self.create(
                    "pvc-demo-fs",
                    GIB,
                    mount_capability(FsType::Xfs.as_str(), Mode::SingleNodeWriter),
                    &[(keys::FS_TYPE, FsType::Xfs.as_str())],
                    None,
                ),
            )
            .await?;
        r.step(
            "ControllerPublish pvc-demo-fs → demo-node-a",
            Kind::Controller,
            self.ctrl_publish(&v, A),
        )
        .await;
        r.step(
            "NodeStage pvc-demo-fs on demo-node-a (mkfs: blank+fresh)",
            Kind::Node,
            async { self.stage(A, &v).await.map(|d| ((), d)) },
        )
        .await;
        let target = r
            .step(
                "NodePublish pvc-demo-fs on demo-node-a",
                Kind::Node,
                self.publish(A, &v),
            )
            .await;
        r.step(
            "write + read back 4 MiB through the mount",
            Kind::Node,
            async {
                let f = present(target.as_ref())?.join(FS_FILE);
                let data = pattern(FS_SEED, FS_PATTERN_LEN);
                write_synced(&f, &data, true)?;
                let back = std::fs::read(&f).map_err(|e| format!("read {}: {e}", f.display()))?;
                if back != data {
                    return Err(format!(
                        "{} reads back different bytes than were written",
                        f.display()
                    ));
                }
                Ok((
                    (),
                    format!("{FS_FILE} written, fsync'd, read back identical"),
                ))
            },
        )
        .await;
        Some((v, target))
    }
}
