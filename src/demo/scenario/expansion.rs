//! Online expansion of the mounted pvc-demo-fs: ControllerExpandVolume grows the disk on the
//! RDS, NodeExpandVolume grows the xfs filesystem while it stays mounted.

use std::path::PathBuf;

use super::{Scenario, A};
use crate::demo::checks::{fs_size, gib, present, GIB};
use crate::demo::report::{Kind, Report};
use crate::scenario::Volume;

impl Scenario<'_> {
    pub(super) async fn expansion(
        &mut self,
        r: &mut Report,
        fs: &Volume,
        target: Option<&PathBuf>,
    ) {
        r.step(
            "ControllerExpand pvc-demo-fs 1 → 2 GiB",
            Kind::Controller,
            async {
                let resp = self
                    .csi()
                    .controller_expand(fs, 2 * GIB)
                    .await
                    .map_err(|e| e.to_string())?;
                if resp.capacity_bytes < 2 * GIB {
                    return Err(format!(
                        "{} is {} bytes after the expansion, 2 GiB was asked",
                        fs.id, resp.capacity_bytes
                    ));
                }
                Ok((
                    (),
                    format!(
                        "RDS disk now {}, node_expansion_required={}",
                        gib(resp.capacity_bytes),
                        resp.node_expansion_required
                    ),
                ))
            },
        )
        .await;
        r.step(
            "NodeExpand pvc-demo-fs (xfs_growfs online)",
            Kind::Node,
            async {
                let t = present(target)?;
                let before = fs_size(t)?;
                let resp = self
                    .csi()
                    .node_expand(fs, A, 2 * GIB)
                    .await
                    .map_err(|e| e.to_string())?;
                let after = fs_size(t)?;
                if after <= before {
                    return Err(format!(
                        "the filesystem at {} did not grow ({before} → {after} bytes)",
                        t.display()
                    ));
                }
                Ok((
                    (),
                    format!(
                        "device {}, filesystem {:.2} → {:.2} GiB while mounted",
                        gib(resp.capacity_bytes),
                        before as f64 / GIB as f64,
                        after as f64 / GIB as f64
                    ),
                ))
            },
        )
        .await;
    }
}
