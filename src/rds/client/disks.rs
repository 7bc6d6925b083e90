//! Disk operations: look up, list, create, copy, resize and delete, each idempotent; a
//! create or copy whose answer was lost is resolved by looking at the slot.

use tokio::time::Instant;

use super::{invalid, unparsable, RdsClient};
use crate::rds::command::{Command, NvmeExport, RdsPath, Slot, SlotPrefix};
use crate::rds::error::{RdsError, RdsErrorKind};
use crate::rds::model::{parse_disks, Disk};

/// What the caller wants a disk to look like, for idempotent create/copy.
struct Want<'a> {
    path: &'a RdsPath,
    size_bytes: Option<u64>,
    export: Option<&'a NvmeExport>,
}

/// Whether an add looks in its slot first. `No` is for a caller that has just looked in the
/// slot with [`RdsClient::get_disk`] and found nothing (CreateVolume): the add is sent without
/// a second look, saving one `/disk print` per create. Still safe against a disk that appeared
/// since: RouterOS refuses the duplicate slot and the look after compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookFirst {
    Yes,
    No,
}

impl RdsClient {
    /// The disk in `slot`, or `None`.
    pub async fn get_disk(&self, slot: &Slot, deadline: Instant) -> Result<Option<Disk>, RdsError> {
        let cmd = Command::print_disk(slot);
        let mut disks = self.read_disks(&cmd, deadline).await?;
        disks.retain(|d| d.slot == slot.as_str());
        match disks.len() {
            0 => Ok(None),
            1 => Ok(disks.pop()),
            n => Err(RdsError::new(
                RdsErrorKind::Unknown,
                cmd.as_str(),
                format!("{n} disks carry slot {slot:?}; resolve the duplicate on the RDS"),
            )),
        }
    }

    /// Every disk on the RDS, volumes and snapshots of this driver among them.
    pub async fn list_all_disks(&self, deadline: Instant) -> Result<Vec<Disk>, RdsError> {
        self.read_disks(&Command::list_all_disks(), deadline).await
    }

    /// Disks whose slot starts with `prefix`.
    pub async fn list_disks(
        &self,
        prefix: &SlotPrefix,
        deadline: Instant,
    ) -> Result<Vec<Disk>, RdsError> {
        let cmd = Command::list_disks(prefix);
        let mut disks = self.read_disks(&cmd, deadline).await?;
        disks.retain(|d| d.slot.starts_with(prefix.as_str()));
        Ok(disks)
    }

    /// Creates an exported file disk of exactly `size_bytes`. Idempotent: a disk already in
    /// `slot` with the same path, size and export is returned; a different one is
    /// `AlreadyExists`. A lost answer is resolved by looking, never by sending again.
    pub async fn create_disk(
        &self,
        path: &RdsPath,
        size_bytes: u64,
        slot: &Slot,
        export: &NvmeExport,
        look_first: LookFirst,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        let cmd = Command::create_disk(path, size_bytes, slot, export)
            .map_err(|e| invalid("/disk add", e))?;
        let want = Want {
            path,
            size_bytes: Some(size_bytes),
            export: Some(export),
        };
        self.add_disk(&cmd, slot, &want, look_first, deadline).await
    }

    /// Copies the disk in `source` into a new disk (snapshot, clone, restore). Idempotent
    /// like [`Self::create_disk`]. RouterOS does not print a copy's source, so an existing
    /// disk is compared on path, size (when given) and export only.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_disk(
        &self,
        source: &Slot,
        path: &RdsPath,
        slot: &Slot,
        size_bytes: Option<u64>,
        export: Option<&NvmeExport>,
        look_first: LookFirst,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        let cmd = Command::copy_disk(source, path, slot, size_bytes, export)
            .map_err(|e| invalid("/disk add copy-from", e))?;
        let want = Want {
            path,
            size_bytes,
            export,
        };
        self.add_disk(&cmd, slot, &want, look_first, deadline).await
    }

    async fn add_disk(
        &self,
        cmd: &Command,
        slot: &Slot,
        want: &Want<'_>,
        look_first: LookFirst,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        // Rule 4: the path was checked against *a* base when built; it must be this one.
        RdsPath::new(self.base_path(), want.path.as_str()).map_err(|e| invalid(cmd.as_str(), e))?;
        // Look before: a retried CreateVolume finds its disk and must not add a second.
        if look_first == LookFirst::Yes {
            if let Some(existing) = self.get_disk(slot, deadline).await? {
                return compare(existing, want, cmd);
            }
        }
        match self.mutate(cmd, deadline).await {
            Ok(_) => {}
            Err(e) if e.outcome_unknown || e.err.kind() == RdsErrorKind::AlreadyExists => {
                // Look after: the add may have happened (lost answer) or raced with another.
                return match self.get_disk(slot, deadline).await {
                    Ok(Some(disk)) => compare(disk, want, cmd),
                    Ok(None) => Err(e.err),
                    Err(look) => {
                        tracing::warn!(%slot, error = %look, "could not look for the disk after a lost answer");
                        Err(e.err)
                    }
                };
            }
            Err(e) => return Err(e.err),
        }
        let disk = self.get_disk(slot, deadline).await?.ok_or_else(|| {
            RdsError::new(
                RdsErrorKind::Unknown,
                cmd.as_str(),
                format!("the RDS accepted the command but prints no disk in slot {slot:?}"),
            )
        })?;
        if let Some(size) = want.size_bytes {
            if disk.size_bytes < size {
                return Err(RdsError::new(
                    RdsErrorKind::Unknown,
                    cmd.as_str(),
                    format!(
                        "disk {slot:?} was created with {} bytes, less than the {size} asked; \
                         delete it and report this RDS behaviour",
                        disk.size_bytes
                    ),
                ));
            }
        }
        Ok(disk)
    }

    /// Grows the disk in `slot` to `size_bytes` (exact). Growing to its current size is a
    /// no-op; shrinking is refused (it would destroy data).
    pub async fn resize_disk(
        &self,
        slot: &Slot,
        size_bytes: u64,
        deadline: Instant,
    ) -> Result<Disk, RdsError> {
        let cmd = Command::resize_disk(slot, size_bytes).map_err(|e| invalid("/disk set", e))?;
        let current = self.get_disk(slot, deadline).await?.ok_or_else(|| {
            RdsError::new(
                RdsErrorKind::NotFound,
                cmd.as_str(),
                format!("no disk in slot {slot:?} to resize"),
            )
        })?;
        if current.size_bytes == size_bytes {
            return Ok(current);
        }
        if current.size_bytes > size_bytes {
            return Err(RdsError::new(
                RdsErrorKind::Invalid,
                cmd.as_str(),
                format!(
                    "disk {slot:?} is {} bytes; shrinking it to {size_bytes} is refused",
                    current.size_bytes
                ),
            ));
        }
        let sent = self.mutate(&cmd, deadline).await;
        if let Err(e) = &sent {
            if !e.outcome_unknown {
                return Err(e.err.clone());
            }
        }
        // Look after, also to learn a lost answer's outcome.
        let after = self.get_disk(slot, deadline).await;
        match (sent, after) {
            (_, Ok(Some(disk))) if disk.size_bytes >= size_bytes => Ok(disk),
            (Err(e), _) => Err(e.err),
            (Ok(_), Ok(Some(disk))) => Err(RdsError::new(
                RdsErrorKind::Unknown,
                cmd.as_str(),
                format!(
                    "the RDS accepted the resize but disk {slot:?} is still {} bytes",
                    disk.size_bytes
                ),
            )),
            (Ok(_), Ok(None)) => Err(RdsError::new(
                RdsErrorKind::NotFound,
                cmd.as_str(),
                format!("disk {slot:?} vanished during the resize"),
            )),
            (Ok(_), Err(look)) => Err(look),
        }
    }

    /// Removes the disk in `slot` (its export goes with it) and then its backing file, and
    /// returns that file. `None` when no disk is in the slot: nothing is removed then, because
    /// only the caller knows where a backing file that an earlier, half-finished delete left
    /// behind may live (see [`Self::files_of_slot`] and [`Self::remove_file`]).
    pub async fn delete_disk(
        &self,
        slot: &Slot,
        deadline: Instant,
    ) -> Result<Option<RdsPath>, RdsError> {
        let base = &self.inner.cfg.base_path;
        let remove = Command::remove_disk(slot);
        let Some(d) = self.get_disk(slot, deadline).await? else {
            return Ok(None);
        };
        let path = d.file_path.as_deref().filter(|_| d.disk_type == "file");
        let path = path.ok_or_else(|| {
            RdsError::new(
                RdsErrorKind::Invalid,
                remove.as_str(),
                format!(
                    "slot {slot:?} holds a {:?} disk, not a file disk; refusing to delete it",
                    d.disk_type
                ),
            )
        })?;
        // Never delete a file outside the configured base (docs/security.md).
        let file = RdsPath::new(base, path).map_err(|e| {
            RdsError::new(
                RdsErrorKind::Invalid,
                remove.as_str(),
                format!(
                    "disk {slot:?} is backed by {path:?}, outside the base path {base}: {e}; \
                     refusing to delete it, remove it by hand if intended"
                ),
            )
        })?;
        match self.mutate(&remove, deadline).await {
            Ok(_) => {}
            Err(e) if e.err.kind() == RdsErrorKind::NotFound => {}
            Err(e) if e.outcome_unknown => {
                if self.get_disk(slot, deadline).await?.is_some() {
                    return Err(e.err);
                }
            }
            Err(e) => return Err(e.err),
        }
        self.remove_file(&file, deadline).await?;
        Ok(Some(file))
    }

    pub(super) async fn read_disks(
        &self,
        cmd: &Command,
        deadline: Instant,
    ) -> Result<Vec<Disk>, RdsError> {
        let out = self.read(cmd, deadline).await?;
        parse_disks(&out).map_err(|e| unparsable(cmd, e))
    }
}

/// An existing disk against what a create/copy wants: the same disk, or `AlreadyExists`
/// naming every difference.
fn compare(disk: Disk, want: &Want<'_>, cmd: &Command) -> Result<Disk, RdsError> {
    let mut diffs = Vec::new();
    if disk.file_path.as_deref() != Some(want.path.as_str()) {
        diffs.push(format!(
            "file-path is {:?}, wanted {:?}",
            disk.file_path.as_deref().unwrap_or(""),
            want.path.as_str()
        ));
    }
    if let Some(size) = want.size_bytes {
        if disk.size_bytes != size {
            diffs.push(format!("size is {} bytes, wanted {size}", disk.size_bytes));
        }
    }
    if let Some(export) = want.export {
        let same = disk.nvme_tcp_export
            && disk.nvme_tcp_port == Some(export.port.get())
            && disk.nvme_tcp_nqn.as_deref() == Some(export.nqn.as_str());
        if !same {
            diffs.push(format!(
                "export is {}:{:?}, wanted {}:{}",
                disk.nvme_tcp_nqn.as_deref().unwrap_or("none"),
                disk.nvme_tcp_port,
                export.nqn,
                export.port
            ));
        }
    }
    if diffs.is_empty() {
        Ok(disk)
    } else {
        Err(RdsError::new(
            RdsErrorKind::AlreadyExists,
            cmd.as_str(),
            format!(
                "slot {:?} already holds a different disk: {}; delete it first or use \
                 another name",
                disk.slot,
                diffs.join("; ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rds::command::BasePath;

    #[test]
    fn compare_names_every_difference() {
        let base = BasePath::new("/storage-pool/csi").unwrap();
        let slot = Slot::new("pvc-1").unwrap();
        let path = RdsPath::volume_file(&base, &slot).unwrap();
        let export = NvmeExport {
            port: Default::default(),
            nqn: crate::rds::command::slot_nqn("nqn.2000-02.com.mikrotik:", &slot).unwrap(),
        };
        let mut disk = Disk::file("pvc-1", path.as_str(), 1 << 30);
        disk.nvme_tcp_export = true;
        disk.nvme_tcp_port = Some(4420);
        disk.nvme_tcp_nqn = Some(export.nqn.to_string());
        let cmd = Command::print_disk(&slot);
        let want = Want {
            path: &path,
            size_bytes: Some(1 << 30),
            export: Some(&export),
        };
        assert_eq!(compare(disk.clone(), &want, &cmd).unwrap(), disk);
        let bigger = Want {
            size_bytes: Some(2 << 30),
            ..want
        };
        let err = compare(disk.clone(), &bigger, &cmd).unwrap_err();
        assert_eq!(err.kind(), RdsErrorKind::AlreadyExists);
        assert!(
            err.message()
                .contains("size is 1073741824 bytes, wanted 2147483648"),
            "{err}"
        );
        disk.nvme_tcp_export = false;
        let err = compare(disk, &want, &cmd).unwrap_err();
        assert!(err.message().contains("export is"), "{err}");
    }
}
