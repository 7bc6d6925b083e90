//! Copies of pvc-demo-fs: a snapshot (after a syncfs, as an application would flush first),
//! a volume restored from it and a clone of the live volume; each copy is published on
//! demo-node-a and must show the file written to the source, unformatted.

use std::path::PathBuf;

use csi_proto::v1::volume_capability::access_mode::Mode;

use super::volume_life::{FS_FILE, FS_PATTERN_LEN, FS_SEED};
use super::{Scenario, A};
use crate::demo::checks::{gib, pattern, syncfs, GIB};
use crate::demo::report::{Kind, Report};
use crate::scenario::{mount_capability, ContentSource, Volume};
use crate::volume::{keys, FsType};

const SNAPSHOT: &str = "snapshot-demo-fs";

impl Scenario<'_> {
    pub(super) async fn copies(&mut self, r: &mut Report, fs: &Volume, target: Option<&PathBuf>) {
        let snap = r
            .step("CreateSnapshot snapshot-demo-fs", Kind::Controller, async {
                if let Some(t) = target {
                    syncfs(t)?;
                }
                let s = self
                    .csi()
                    .create_snapshot(&fs.id, SNAPSHOT)
                    .await
                    .map_err(|e| e.to_string())?;
                if !s.ready_to_use {
                    return Err(format!("snapshot {} is not ready_to_use", s.snapshot_id));
                }
                Ok((
                    s.snapshot_id.clone(),
                    format!(
                        "id {}, {}, ready_to_use{}",
                        s.snapshot_id,
                        gib(s.size_bytes),
                        if target.is_some() {
                            " (syncfs'd the mount first)"
                        } else {
                            ""
                        }
                    ),
                ))
            })
            .await;
        let copies = [
            (
                "pvc-demo-restore",
                "restore from the snapshot",
                snap.map(ContentSource::Snapshot),
            ),
            (
                "pvc-demo-clone",
                "clone of pvc-demo-fs",
                Some(ContentSource::Volume(fs.id.clone())),
            ),
        ];
        for (name, what, source) in copies {
            let Some(source) = source else {
                r.step::<(), _>(
                    format!("CreateVolume {name} ({what})"),
                    Kind::Controller,
                    async { Err("not run: there is no snapshot to restore from".to_string()) },
                )
                .await;
                continue;
            };
            if let (Some(t), ContentSource::Volume(_)) = (target, &source) {
                // The clone copies the live disk: flush first, as for the snapshot.
                if let Err(e) = syncfs(t) {
                    r.fail("syncfs before the clone", e);
                }
            }
            self.copy(r, name, what, source).await;
        }
    }

    /// One restored or cloned volume: created, published on demo-node-a, its data checked.
    async fn copy(&mut self, r: &mut Report, name: &str, what: &str, source: ContentSource) {
        let Some(copy) = r
            .step(
                format!("CreateVolume {name} ({what})"),
                Kind::Controller,
                async {
                    let (v, d) = self
                        .create(
                            name,
                            2 * GIB,
                            mount_capability(FsType::Xfs.as_str(), Mode::SingleNodeWriter),
                            &[(keys::FS_TYPE, FsType::Xfs.as_str())],
                            Some(source),
                        )
                        .await?;
                    let fresh = v.context_value(keys::FRESH).unwrap_or("?").to_owned();
                    Ok((v, format!("{d}; fresh={fresh} (never formatted)")))
                },
            )
            .await
        else {
            return;
        };
        r.step(
            format!("ControllerPublish {name} → demo-node-a"),
            Kind::Controller,
            self.ctrl_publish(&copy, A),
        )
        .await;
        r.step(
            format!("stage+publish {name}, read the data"),
            Kind::Node,
            async {
                let (t, d) = self.attach(A, &copy).await?;
                let f = t.join(FS_FILE);
                let got = std::fs::read(&f)
                    .map_err(|e| format!("{name}: {} is missing on the copy: {e}", f.display()))?;
                if got != pattern(FS_SEED, FS_PATTERN_LEN) {
                    return Err(format!(
                        "{name}: {} differs from what was written to pvc-demo-fs",
                        f.display()
                    ));
                }
                Ok(((), format!("{d}; {FS_FILE} identical to the source's")))
            },
        )
        .await;
    }
}
