//! Who holds a volume's device, and the message an unstage refused for it answers with.

use std::path::Path;

use node_io::holders::{self, HolderError, HolderReport, ScanMode};
use tokio::time::Instant;

use crate::node::error::NodeError;
use crate::node::ops::Node;
use crate::node::transport::{blocking_until, Device};
use crate::volume::AccessType;

impl Node {
    pub(super) async fn holders(
        &self,
        d: &Device,
        deadline: Instant,
    ) -> Result<HolderReport, NodeError> {
        let scan = self.holder_scan(d);
        let name = d.name.clone();
        blocking_until(
            format!("scanning holders of {}", d.name),
            deadline,
            move || {
                scan().map_err(|source| NodeError::HolderScan {
                    device: name,
                    source,
                })
            },
        )
        .await
    }

    /// The blocking scan of who holds `d`, to run off the async threads. It reads /proc and
    /// two mount namespaces; the kernel's exclusive-open claim covers every namespace.
    pub(super) fn holder_scan(
        &self,
        d: &Device,
    ) -> impl FnOnce() -> Result<HolderReport, HolderError> + Send + 'static {
        let (proc_root, sys_root, name, path) = (
            self.proc_root.clone(),
            self.sys_root.clone(),
            d.name.clone(),
            d.path.clone(),
        );
        move || {
            holders::holder_report_with_claim(
                &proc_root,
                &sys_root,
                &name,
                &path,
                ScanMode::default(),
            )
        }
    }
}

/// The FAILED_PRECONDITION message of an unstage refused because the device is held.
pub fn describe_holders(
    d: &Device,
    r: &HolderReport,
    access: AccessType,
    staging: &Path,
) -> String {
    let mut parts = Vec::new();
    if !r.processes.is_empty() {
        let p: Vec<String> = r
            .processes
            .iter()
            .map(|h| format!("pid {} ({}) fd {}", h.pid, h.comm, h.fd))
            .collect();
        parts.push(format!("held by {}", p.join(", ")));
    }
    if !r.mounts.is_empty() {
        let m: Vec<String> = r
            .mounts
            .iter()
            .map(|m| m.mount_point.display().to_string())
            .collect();
        parts.push(format!("mounted at {}", m.join(", ")));
    }
    if !r.sysfs_holders.is_empty() {
        parts.push(format!(
            "used by kernel device(s) {}",
            r.sysfs_holders.join(", ")
        ));
    }
    if r.claimed {
        parts.push(
            "mounted or claimed where the scan cannot see it (the kernel refuses an exclusive \
             open: EBUSY; e.g. a mount in another mount namespace, or an O_EXCL opener)"
                .to_owned(),
        );
    }
    if !r.skipped_pids.is_empty() {
        let s: Vec<String> = r
            .skipped_pids
            .iter()
            .take(5)
            .map(|s| format!("pid {}: {}", s.pid, s.error))
            .collect();
        parts.push(format!(
            "{} process(es) could not be inspected ({}), so the scan is incomplete — the node plugin needs hostPID and CAP_SYS_PTRACE",
            r.skipped_pids.len(),
            s.join("; ")
        ));
    }
    let after = match access {
        AccessType::Mount => format!(
            "The filesystem at {} is already unmounted and needs no re-mount: the retry only disconnects.",
            staging.display()
        ),
        AccessType::Block => "Nothing needs to be re-published: the retry only disconnects.".to_owned(),
    };
    format!(
        "device {} ({}) is still in use: {}. The device stays connected; stop those processes \
         (or remove the mounts/holders) and NodeUnstageVolume is retried. {after}",
        d.name,
        d.dev,
        parts.join("; "),
    )
}
