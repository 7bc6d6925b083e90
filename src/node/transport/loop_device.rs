//! Loop devices over the simulator's backing files (development and tests): `losetup`
//! attaches, sysfs `loop/backing_file` resolves.

use std::path::{Path, PathBuf};

use node_io::block;
use node_io::dev_num::DevNum;
use node_io::wait::{self, Waker};
use tokio::time::Instant;

use super::{blocking_wait, Device};
use crate::node::error::NodeError;
use crate::node::mount::run_tool;
use crate::volume::context::VolumeFile;

#[derive(Debug, Clone)]
pub struct LoopDevices {
    pub data_dir: PathBuf,
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
}

impl LoopDevices {
    /// `<data-dir>/<volumeFile without its leading />`: [`VolumeFile`] has only plain
    /// components, so the path stays inside the data directory.
    pub fn backing_file(&self, file: Option<&VolumeFile>) -> Result<PathBuf, NodeError> {
        let f = file.ok_or(NodeError::NoVolumeFile)?;
        Ok(self.data_dir.join(f.relative()))
    }

    /// The loop device backing `file` that is not being detached (autoclear set by a
    /// `losetup -d` on a busy device: it disappears at the last close, like a deleting NVMe
    /// controller), or None. Several are refused: this driver attaches one.
    pub fn resolve(&self, file: &Path) -> Result<Option<Device>, NodeError> {
        let mut found =
            block::loop_devices_backing(&self.sys_root, file).map_err(NodeError::Sysfs)?;
        match found.len() {
            0 => Ok(None),
            1 => {
                let d = found.remove(0);
                Ok(Some(Device {
                    path: self.dev_root.join(&d.name),
                    name: d.name,
                    dev: d.dev,
                    size_bytes: d.size_bytes,
                }))
            }
            _ => Err(NodeError::SeveralLoopDevices {
                devices: found.into_iter().map(|d| d.name).collect(),
                file: file.to_owned(),
            }),
        }
    }

    /// The device numbers of every loop device over `file` now, those being detached (waiting
    /// for their last close) and those whose file was unlinked since included.
    pub fn kernel_devices(&self, file: &Path) -> Result<Vec<DevNum>, NodeError> {
        let want = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
        let all = block::list_loop_devices(&self.sys_root).map_err(NodeError::Sysfs)?;
        Ok(all
            .into_iter()
            .filter(|d| d.backing_file == want)
            .map(|d| d.dev)
            .collect())
    }

    pub async fn attach(&self, file: &Path, deadline: Instant) -> Result<Device, NodeError> {
        if let Some(d) = self.resolve(file)? {
            return Ok(d);
        }
        if !file.is_file() {
            return Err(NodeError::BackingFileMissing {
                path: file.to_owned(),
            });
        }
        run_tool(
            "losetup",
            &["-f", "--show", &file.to_string_lossy()],
            deadline,
        )
        .await?;
        self.resolve(file)?.ok_or_else(|| NodeError::LoopNotShown {
            file: file.to_owned(),
        })
    }

    pub async fn detach(&self, file: &Path, deadline: Instant) -> Result<(), NodeError> {
        let Some(d) = self.resolve(file)? else {
            return Ok(());
        };
        run_tool("losetup", &["-d", &d.path.to_string_lossy()], deadline).await?;
        // Woken by the device's uevent (polling only without netlink).
        let (sys, name, file) = (self.sys_root.clone(), d.name.clone(), file.to_owned());
        let std_deadline = deadline.into_std();
        blocking_wait(
            format!("waiting for {name} to detach"),
            deadline,
            move || {
                wait::wait_for_loop_detached(&sys, &name, &file, std_deadline, &mut Waker::open())
                    .map(|_| ())
                    .map_err(NodeError::Detach)
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_backing_files_stay_inside_the_data_dir() {
        let l = LoopDevices {
            data_dir: "/data".into(),
            sys_root: "/sys".into(),
            dev_root: "/dev".into(),
        };
        let file = VolumeFile::parse("/storage-pool/csi/pvc-1.img").unwrap();
        assert_eq!(
            l.backing_file(Some(&file)).unwrap(),
            Path::new("/data/storage-pool/csi/pvc-1.img")
        );
        assert!(l.backing_file(None).is_err());
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/",
            "a/./b",
            "/a/./b",
            "/a//b",
        ] {
            assert!(VolumeFile::parse(bad).is_err(), "{bad}");
        }
    }
}
