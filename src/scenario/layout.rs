//! Where a scenario asks a node plugin to stage and publish a volume: the paths kubelet
//! would pass in NodeStage/NodePublish.

use std::path::PathBuf;

/// The staging and target paths a scenario uses, as kubelet chooses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One node per host, kubelet's own directories (the VM e2e): staging
    /// `/var/lib/kubelet/plugins/kubernetes.io/csi/<driver>/<volume>/globalmount`; block
    /// targets `/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/<volume>/pod-<node>`,
    /// filesystem targets `/var/lib/kubelet/pods/pod-<node>/volumes/kubernetes.io~csi/<volume>/mount`.
    Kubelet { driver: String },
    /// Several nodes on one host, each under its own directory (the demo): staging
    /// `<root>/<node>/staging/<volume>`, targets `<root>/<node>/pods/<volume>/dev` (block) or
    /// `.../mount` (filesystem).
    PerNodeDir { root: PathBuf },
}

const KUBELET: &str = "/var/lib/kubelet";

impl Layout {
    /// NodeStage's `staging_target_path` for `volume` on `node`.
    pub fn staging(&self, node: &str, volume: &str) -> PathBuf {
        match self {
            Layout::Kubelet { driver } => PathBuf::from(format!(
                "{KUBELET}/plugins/kubernetes.io/csi/{driver}/{volume}/globalmount"
            )),
            Layout::PerNodeDir { root } => root.join(node).join("staging").join(volume),
        }
    }

    /// NodePublish's `target_path` for `volume` on `node`: a device node for a block volume,
    /// a directory for a filesystem.
    pub fn target(&self, node: &str, volume: &str, block: bool) -> PathBuf {
        match self {
            Layout::Kubelet { .. } if block => PathBuf::from(format!(
                "{KUBELET}/plugins/kubernetes.io/csi/volumeDevices/publish/{volume}/pod-{node}"
            )),
            Layout::Kubelet { .. } => PathBuf::from(format!(
                "{KUBELET}/pods/pod-{node}/volumes/kubernetes.io~csi/{volume}/mount"
            )),
            Layout::PerNodeDir { root } => {
                let d = root.join(node).join("pods").join(volume);
                d.join(if block { "dev" } else { "mount" })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn kubelet_paths_are_kubelets() {
        let l = Layout::Kubelet {
            driver: "rds.csi.mikrotik.com".into(),
        };
        assert_eq!(
            l.staging("node-a", "pvc-1"),
            Path::new(
                "/var/lib/kubelet/plugins/kubernetes.io/csi/rds.csi.mikrotik.com/pvc-1/globalmount"
            )
        );
        assert_eq!(
            l.target("node-b", "pvc-1", true),
            Path::new(
                "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-1/pod-node-b"
            )
        );
        assert_eq!(
            l.target("node-b", "pvc-1", false),
            Path::new("/var/lib/kubelet/pods/pod-node-b/volumes/kubernetes.io~csi/pvc-1/mount")
        );
    }

    #[test]
    fn per_node_paths_keep_nodes_apart() {
        let l = Layout::PerNodeDir {
            root: "/w/nodes".into(),
        };
        assert_eq!(
            l.staging("a", "pvc-1"),
            Path::new("/w/nodes/a/staging/pvc-1")
        );
        assert_eq!(
            l.target("b", "pvc-1", true),
            Path::new("/w/nodes/b/pods/pvc-1/dev")
        );
        assert_eq!(
            l.target("b", "pvc-1", false),
            Path::new("/w/nodes/b/pods/pvc-1/mount")
        );
        assert_ne!(l.staging("a", "v"), l.staging("b", "v"));
    }
}
