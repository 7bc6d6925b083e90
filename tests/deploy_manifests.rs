//! The deploy manifests (deploy/) render and validate: scripts/validate-manifests.sh checks
//! every object against the Kubernetes API schemas and the flags of the binary built for
//! this test. A second test proves the script catches broken manifests, so a green run
//! means something.
//!
//! Needs kubectl (kustomize v5) and, on the first run, PyPI for kubernetes-validate; without
//! them the script exits non-zero with the reason and these tests fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_rds-csi")
}

/// The venv lives next to the build output (`<target>/validate-venv`), so reruns are fast.
fn venv() -> PathBuf {
    let bin = Path::new(binary());
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("binary is under <target>/<profile>/");
    target.join("validate-venv")
}

fn run_script(deploy_dir: Option<&Path>) -> (Output, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/validate-manifests.sh"))
        .arg(binary())
        .env("RDS_CSI_VALIDATE_VENV", venv())
        .env_remove("RDS_CSI_BIN");
    match deploy_dir {
        Some(d) => cmd.env("RDS_CSI_DEPLOY_DIR", d),
        None => cmd.env_remove("RDS_CSI_DEPLOY_DIR"),
    };
    let out = cmd
        .output()
        .expect("could not run bash scripts/validate-manifests.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn deploy_manifests_validate() {
    let (out, text) = run_script(None);
    assert!(
        out.status.success(),
        "scripts/validate-manifests.sh failed ({}):\n{text}",
        out.status
    );
    // It really rendered and validated the tree, not an empty one.
    for expected in [
        "rendered kubernetes/base",
        "rendered kubernetes/overlays/example",
        "rendered kubernetes/overlays/dev",
        "Kubernetes 1.35, 1.37 schemas (strict)",
        "x CSIDriver (storage.k8s.io/v1) against Kubernetes 1.35 and 1.37",
        "x DaemonSet (apps/v1) against Kubernetes",
        "x VolumeSnapshotClass (snapshot.storage.k8s.io/v1) against deploy/schemas/",
        "x ServiceMonitor (monitoring.coreos.com/v1) against deploy/schemas/",
        "SKIPPED     1 x VirtualMachine (kubevirt.io/v1)",
        "deploy manifests OK",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Replaces `from` (which must occur exactly once) in `file` under `dir`.
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.matches(from).count(),
        1,
        "{file}: {from:?} must occur exactly once for this test to mean anything"
    );
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn broken_manifests_are_rejected_with_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    copy_tree(&root().join("deploy"), &deploy);
    let k = "kubernetes/";
    // A flag the binary does not have.
    edit(
        &deploy,
        &format!("{k}base/controller.yaml"),
        "--metrics-address=:9809",
        "--metrics-adress=:9809",
    );
    // A StorageClass parameter the driver does not read.
    edit(
        &deploy,
        &format!("{k}base/storageclasses.yaml"),
        "  migrationTimeoutSeconds: \"300\"\n",
        "  migrationTimeoutSeconds: \"300\"\n  volumeSize: \"1\"\n",
    );
    // An image without a tag.
    edit(
        &deploy,
        &format!("{k}base/node.yaml"),
        "csi-node-driver-registrar:v2.17.0",
        "csi-node-driver-registrar",
    );
    // A schema violation in a built-in kind, and an unknown field.
    edit(
        &deploy,
        &format!("{k}base/csidriver.yaml"),
        "attachRequired: true",
        "attachRequired: sometimes",
    );
    edit(
        &deploy,
        &format!("{k}base/node.yaml"),
        "      hostPID: true\n",
        "      hostPID: true\n      hostPIDs: true\n",
    );
    // A schema violation in a shipped CRD schema.
    edit(
        &deploy,
        &format!("{k}base/volumesnapshotclass.yaml"),
        "deletionPolicy: Delete",
        "deletionPolicy: Sometimes",
    );
    // Host key checking switched off in the dev overlay.
    edit(
        &deploy,
        &format!("{k}overlays/dev/small.yaml"),
        "      containers:\n        - name: rds-csi\n          resources:\n            requests: {cpu: 5m, memory: 24Mi}\n            limits: {memory: 128Mi}\n",
        "      containers:\n        - name: rds-csi\n          env:\n            - name: RDS_CSI_RDS_INSECURE_SKIP_HOST_KEY_CHECK\n              value: \"true\"\n          resources:\n            requests: {cpu: 5m, memory: 24Mi}\n            limits: {memory: 128Mi}\n",
    );
    // A site setting missing from an overlay.
    edit(
        &deploy,
        &format!("{k}overlays/example/kustomization.yaml"),
        "      - rds-user=k8s-csi\n",
        "",
    );
    // An RBAC rule without its justification.
    edit(
        &deploy,
        &format!("{k}base/rbac-node.yaml"),
        "  # The same for events.k8s.io/v1 Events (the kube-rs recorder).\n",
        "",
    );
    // Two controller replicas whose driver does not follow the attacher's Lease (two
    // attachment tables answering at once), and a sidecar without leader election.
    edit(
        &deploy,
        &format!("{k}base/controller.yaml"),
        "            - --leader-election\n            - --leader-election-namespace=$(NAMESPACE)\n          env:\n",
        "          env:\n",
    );
    edit(
        &deploy,
        &format!("{k}base/controller.yaml"),
        "            - --timeout=120s\n            - --leader-election\n",
        "            - --timeout=120s\n",
    );
    // A node plugin that cannot see the host's processes.
    edit(
        &deploy,
        &format!("{k}base/node.yaml"),
        "      hostPID: true\n      hostPIDs: true\n",
        "      hostPIDs: true\n",
    );
    // RWX on a filesystem volume.
    edit(
        &deploy,
        &format!("{k}examples/kubevirt-vm.yaml"),
        "  volumeMode: Block",
        "  volumeMode: Filesystem",
    );

    let (out, text) = run_script(Some(&deploy));
    assert!(
        !out.status.success(),
        "the script accepted broken manifests:\n{text}"
    );
    for expected in [
        "--metrics-adress is not a flag of `rds-csi controller`",
        "parameter 'volumeSize' is not one the driver reads",
        "image 'registry.k8s.io/sig-storage/csi-node-driver-registrar' has no explicit tag",
        // Both the supported floor and the newest API reject it.
        "CSIDriver/rds.csi.mikrotik.com does not match the Kubernetes 1.35 schema at spec.attachRequired",
        "CSIDriver/rds.csi.mikrotik.com does not match the Kubernetes 1.37 schema at spec.attachRequired",
        "'hostPIDs' was unexpected",
        "VolumeSnapshotClass/rds-snapshots does not match deploy/schemas/",
        "[kubernetes/overlays/dev] Deployment/rds-csi/rds-csi-controller container rds-csi: host key verification must stay on",
        "has no key 'rds-user'",
        "kubernetes/base/rbac-node.yaml] line ",
        "PersistentVolumeClaim/rds-vm-disk: ReadWriteMany is accepted for volumeMode: Block only",
        "Deployment/rds-csi/rds-csi-controller: replicas: 2 / strategy RollingUpdate needs --leader-election on the rds-csi container",
        "Deployment/rds-csi/rds-csi-controller: replicas: 2 needs --leader-election on sidecar csi-resizer",
        "DaemonSet/rds-csi/rds-csi-node: the node plugin needs hostPID: true",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
