//! Loop devices over the simulator's backing files (development and tests): `losetup`
//! attaches, sysfs `loop/backing_file` resolves.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use node_io::dev_num::DevNum;
use tokio::time::Instant;

use super::Device;
use crate::node::error::NodeError;
use crate::node::mount::run_tool;
use crate::volume_context::VolumeContext;

#[derive(Debug, Clone)]
pub struct LoopDevices {
    pub data_dir: PathBuf,
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
}

impl LoopDevices {
    /// `<data-dir>/<volumeFile without its leading />`, without `..` escapes.
    pub fn backing_file(&self, ctx: &VolumeContext) -> Result<PathBuf, NodeError> {
        let f = ctx.volume_file.as_deref().ok_or(NodeError::NoVolumeFile)?;
        let rel = Path::new(f.trim_start_matches('/'));
        // Raw segments too: Path::components() silently drops an inner ".".
        if rel.as_os_str().is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
            || f.split('/').any(|c| c == "." || c == "..")
        {
            return Err(NodeError::BadVolumeFile { file: f.to_owned() });
        }
        Ok(self.data_dir.join(rel))
    }

    /// Loop devices backed by `file` that are not being detached (autoclear set by a
    /// `losetup -d` on a busy device: it disappears at the last close, like a deleting
    /// NVMe controller).
    pub fn resolve(&self, file: &Path) -> Result<Option<Device>, NodeError> {
        let want = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
        let block = self.sys_root.join("block");
        let entries = std::fs::read_dir(&block).map_err(|source| NodeError::Io {
            what: "listing",
            path: block.clone(),
            source,
        })?;
        let mut found = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                continue;
            }
            let dir = block.join(&name);
            let read = |a: &str| {
                std::fs::read_to_string(dir.join(a))
                    .ok()
                    .map(|s| s.trim_end_matches('\n').to_owned())
            };
            let Some(backing) = read("loop/backing_file") else {
                continue;
            };
            if Path::new(&backing) != want || read("loop/autoclear").as_deref() == Some("1") {
                continue;
            }
            let (Some(dev), Some(size)) = (read("dev"), read("size")) else {
                continue;
            };
            let (Ok(dev), Ok(sectors)) = (dev.parse::<DevNum>(), size.parse::<u64>()) else {
                continue;
            };
            found.push(Device {
                path: self.dev_root.join(&name),
                name,
                dev,
                size_bytes: sectors * 512,
            });
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(NodeError::SeveralLoopDevices {
                devices: found.into_iter().map(|d| d.name).collect(),
                file: file.to_owned(),
            }),
        }
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
        loop {
            if self.resolve(file)?.is_none() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NodeError::DetachStuck {
                    device: d.name,
                    file: file.to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume_context::Tunables;

    const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-1";

    #[test]
    fn loop_backing_files_stay_inside_the_data_dir() {
        let l = LoopDevices {
            data_dir: "/data".into(),
            sys_root: "/sys".into(),
            dev_root: "/dev".into(),
        };
        let ctx = |f: &str| VolumeContext {
            nvme_address: "127.0.0.1".into(),
            nvme_port: 4420,
            nqn: NQN.into(),
            tunables: Tunables::default(),
            migration_timeout_seconds: 300,
            fs_type: None,
            fresh: true,
            volume_file: Some(f.into()),
        };
        assert_eq!(
            l.backing_file(&ctx("/storage-pool/csi/pvc-1.img")).unwrap(),
            Path::new("/data/storage-pool/csi/pvc-1.img")
        );
        for bad in ["/../etc/passwd", "/a/../../b", "/", "a/./b"] {
            assert!(l.backing_file(&ctx(bad)).is_err(), "{bad}");
        }
    }
}
