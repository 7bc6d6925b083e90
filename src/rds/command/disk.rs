//! The `/disk` commands: add (new or copied), set, remove, print.

use super::path::{MountPoint, RdsPath};
use super::slot::{Slot, SlotPrefix};
use super::validation::{quote, ValidationError};
use super::{Command, NvmeExport};
use crate::rds::size::routeros_size_arg;

fn size_arg(bytes: u64) -> Result<String, ValidationError> {
    if bytes == 0 {
        return Err(ValidationError::ZeroSize);
    }
    Ok(quote(&routeros_size_arg(bytes)))
}

fn export_args(export: &NvmeExport) -> String {
    format!(
        " nvme-tcp-export=yes nvme-tcp-server-port={} nvme-tcp-server-nqn={}",
        quote(&export.port.to_string()),
        quote(export.nqn.as_str())
    )
}

fn find_slot(slot: &Slot) -> String {
    format!("[find slot={}]", quote(slot.as_str()))
}

impl Command {
    /// `/disk add type=file file-path=.. file-size=.. slot=.. nvme-tcp-export=yes ..`
    pub fn create_disk(
        path: &RdsPath,
        size_bytes: u64,
        slot: &Slot,
        export: &NvmeExport,
    ) -> Result<Self, ValidationError> {
        Ok(Command(format!(
            "/disk add type=file file-path={} file-size={} slot={}{}",
            quote(path.as_str()),
            size_arg(size_bytes)?,
            quote(slot.as_str()),
            export_args(export)
        )))
    }

    /// `/disk add type=file copy-from=[find slot=<src>] file-path=.. slot=.. [file-size=..]
    /// [nvme-tcp-export=yes ..]` — snapshot, clone and restore.
    pub fn copy_disk(
        source: &Slot,
        path: &RdsPath,
        slot: &Slot,
        size_bytes: Option<u64>,
        export: Option<&NvmeExport>,
    ) -> Result<Self, ValidationError> {
        let mut cmd = format!(
            "/disk add type=file copy-from={} file-path={} slot={}",
            find_slot(source),
            quote(path.as_str()),
            quote(slot.as_str())
        );
        if let Some(bytes) = size_bytes {
            cmd.push_str(" file-size=");
            cmd.push_str(&size_arg(bytes)?);
        }
        if let Some(export) = export {
            cmd.push_str(&export_args(export));
        }
        Ok(Command(cmd))
    }

    /// `/disk set [find slot=..] file-size=..`
    pub fn resize_disk(slot: &Slot, size_bytes: u64) -> Result<Self, ValidationError> {
        Ok(Command(format!(
            "/disk set {} file-size={}",
            find_slot(slot),
            size_arg(size_bytes)?
        )))
    }

    /// `/disk remove [find slot=..]` (removes the export with the disk, not the file).
    pub fn remove_disk(slot: &Slot) -> Self {
        Command(format!("/disk remove {}", find_slot(slot)))
    }

    /// `/disk print detail where slot=".."`
    pub fn print_disk(slot: &Slot) -> Self {
        Command(format!(
            "/disk print detail where slot={}",
            quote(slot.as_str())
        ))
    }

    /// `/disk print detail where slot~"^<prefix>"`; the prefix has no regex metacharacters.
    /// Every disk (ListVolumes filters by backing-file path: volume ids share no prefix).
    pub fn list_all_disks() -> Self {
        Command("/disk print detail".to_string())
    }

    pub fn list_disks(prefix: &SlotPrefix) -> Self {
        Command(format!(
            "/disk print detail where slot~{}",
            quote(&format!("^{prefix}"))
        ))
    }

    /// `/disk print detail where mount-point=".."`
    pub fn pool_capacity(mount_point: &MountPoint) -> Self {
        Command(format!(
            "/disk print detail where mount-point={}",
            quote(mount_point.as_str())
        ))
    }
}
