//! The demo's work directory and the guarantee that nothing outlives the demo: on the normal
//! path and on drop (a panic), every mount under it is unmounted, every loop device backed
//! by a file under it is detached, and the directory is removed unless `--keep`.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use node_io::mount::UnmountMode;
use node_io::mountinfo::{read_mountinfo, Pid};

pub struct WorkDir {
    root: PathBuf,
    keep: bool,
    finished: bool,
}

impl WorkDir {
    /// A fresh private directory under the system temp dir (canonical: mountinfo and sysfs
    /// show canonical paths).
    pub fn create(keep: bool) -> Result<Self, String> {
        let base = std::env::temp_dir();
        for _ in 0..8 {
            let name = format!(
                "rds-csi-demo-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            );
            let p = base.join(name);
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => {
                    let root = std::fs::canonicalize(&p).map_err(|e| {
                        format!("cannot resolve the work directory {}: {e}", p.display())
                    })?;
                    return Ok(WorkDir {
                        root,
                        keep,
                        finished: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(format!(
                    "cannot create a work directory in {}: {e}; set TMPDIR to a writable directory",
                    base.display()
                ))
                }
            }
        }
        Err(format!(
            "cannot create a unique work directory in {}",
            base.display()
        ))
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn keep(&self) -> bool {
        self.keep
    }

    /// Mount points under the work dir (deepest last), as this mount namespace sees them.
    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(&self.root)
    }

    /// Loop devices whose backing file lies under the work dir.
    pub fn loops(&self) -> Vec<String> {
        loops_under(&self.root)
    }

    /// Removes whatever is still mounted or attached under the work dir; returns what it had
    /// to remove (empty when the driver's own cleanup already did everything).
    pub fn sweep(&self) -> Vec<String> {
        let mut forced = Vec::new();
        for m in self.mounts().into_iter().rev() {
            // Best effort: what cannot be detached shows in the directory's removal error.
            let _ = node_io::mount::unmount(&m, UnmountMode::Detach);
            forced.push(format!("mount {}", m.display()));
        }
        for l in self.loops() {
            let _ = std::process::Command::new("losetup")
                .arg("-d")
                .arg(format!("/dev/{l}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            forced.push(format!("loop device /dev/{l}"));
        }
        forced
    }

    /// Sweeps, then removes the directory unless `--keep`. Returns what was forced and the
    /// error of the removal, if any.
    pub fn finish(&mut self) -> (Vec<String>, Result<(), String>) {
        self.finished = true;
        let forced = self.sweep();
        let removed = if self.keep {
            Ok(())
        } else {
            std::fs::remove_dir_all(&self.root).map_err(|e| {
                format!(
                    "cannot remove {}: {e}; remove it by hand",
                    self.root.display()
                )
            })
        };
        (forced, removed)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.finish();
        }
    }
}

/// Mount points under `root` in this mount namespace, in mount order.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    read_mountinfo(Path::new("/proc"), Pid::Current)
        .map(|t| t.mounts)
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(root))
        .collect()
}

/// Loop devices (not already being detached) backed by a file under `root`, deleted or not.
pub fn loops_under(root: &Path) -> Vec<String> {
    node_io::block::list_loop_devices(Path::new("/sys"))
        .unwrap_or_default()
        .into_iter()
        .filter(|d| !d.autoclear && d.backing_file.starts_with(root))
        .map(|d| d.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_removed_unless_kept() {
        let mut w = WorkDir::create(false).unwrap();
        let p = w.path().to_owned();
        std::fs::write(p.join("f"), b"x").unwrap();
        let (forced, removed) = w.finish();
        assert!(forced.is_empty(), "{forced:?}");
        removed.unwrap();
        assert!(!p.exists());
        let mut k = WorkDir::create(true).unwrap();
        let kp = k.path().to_owned();
        drop(k.finish());
        assert!(kp.is_dir());
        std::fs::remove_dir_all(kp).unwrap();
    }
}
