//! Export backends: what "nvme-tcp-export=yes" does on the simulated RDS. `none` records
//! the export only in the disk; `nvmet` makes it a real NVMe/TCP subsystem through the
//! kernel's nvmet configfs, so a node can connect to it. The configfs root is injectable so
//! the layout is tested on a plain directory tree (the real kernel is tested elsewhere).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Turns disk exports on and off. Both calls are idempotent.
pub trait ExportBackend: Send + Sync {
    fn export(&self, nqn: &str, backing_file: &Path) -> io::Result<()>;
    fn unexport(&self, nqn: &str) -> io::Result<()>;
}

/// Exports exist only as disk fields.
pub struct NoExport;

impl ExportBackend for NoExport {
    fn export(&self, _: &str, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn unexport(&self, _: &str) -> io::Result<()> {
        Ok(())
    }
}

/// nvmet through configfs: `subsystems/<nqn>` (any host allowed) with namespace 1 on the
/// backing file, linked into one TCP port.
pub struct Nvmet {
    root: PathBuf,
    port_id: u32,
    addr: String,
    port: u16,
}

fn write_attr(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("nvmet: writing {value:?} to {}: {e}", path.display()),
        )
    })
}

/// `rmdir`, which is how configfs removes objects; on a fake tree the attribute files are
/// plain files, so they are removed first (configfs refuses unlinking real attributes, so
/// that step only ever runs on a fake tree).
fn remove_object(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(first) => {
            let entries = fs::read_dir(dir)?;
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    fs::remove_file(entry.path())?;
                }
            }
            fs::remove_dir(dir).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("nvmet: removing {}: {e} (first: {first})", dir.display()),
                )
            })
        }
    }
}

impl Nvmet {
    /// `listen` is `ipv4:port`. The port object is created (or reused) right away so that a
    /// broken configfs shows at start, not at the first export.
    pub fn new(root: impl Into<PathBuf>, listen: &str) -> io::Result<Self> {
        let root = root.into();
        let (addr, port) = listen
            .rsplit_once(':')
            .and_then(|(a, p)| Some((a.to_string(), p.parse::<u16>().ok()?)))
            .filter(|(a, _)| a.parse::<std::net::Ipv4Addr>().is_ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--nvme-listen {listen:?} must be IPv4:port, e.g. 127.0.0.1:4420"),
                )
            })?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "nvmet configfs {} is missing: load the nvmet and nvmet-tcp modules \
                     and mount configfs",
                    root.display()
                ),
            ));
        }
        let nvmet = Nvmet {
            root,
            port_id: 1,
            addr,
            port,
        };
        nvmet.ensure_port()?;
        Ok(nvmet)
    }

    fn port_dir(&self) -> PathBuf {
        self.root.join("ports").join(self.port_id.to_string())
    }

    fn ensure_port(&self) -> io::Result<()> {
        let dir = self.port_dir();
        fs::create_dir_all(dir.join("subsystems"))?;
        // A port's address cannot change while subsystems are linked to it.
        let linked = fs::read_dir(dir.join("subsystems"))?.next().is_some();
        if !linked {
            write_attr(&dir.join("addr_trtype"), "tcp")?;
            write_attr(&dir.join("addr_adrfam"), "ipv4")?;
            write_attr(&dir.join("addr_traddr"), &self.addr)?;
            write_attr(&dir.join("addr_trsvcid"), &self.port.to_string())?;
        }
        Ok(())
    }
}

impl ExportBackend for Nvmet {
    fn export(&self, nqn: &str, backing_file: &Path) -> io::Result<()> {
        let subsys = self.root.join("subsystems").join(nqn);
        fs::create_dir_all(&subsys)?;
        write_attr(&subsys.join("attr_allow_any_host"), "1")?;
        let ns = subsys.join("namespaces").join("1");
        fs::create_dir_all(&ns)?;
        write_attr(&ns.join("device_path"), &backing_file.display().to_string())?;
        // Buffered I/O lets a sparse file serve reads of holes cheaply; older kernels lack it.
        if ns.join("buffered_io").exists() {
            write_attr(&ns.join("buffered_io"), "1")?;
        }
        write_attr(&ns.join("enable"), "1")?;
        self.ensure_port()?;
        let link = self.port_dir().join("subsystems").join(nqn);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(&subsys, &link)?;
        }
        Ok(())
    }

    fn unexport(&self, nqn: &str) -> io::Result<()> {
        let link = self.port_dir().join("subsystems").join(nqn);
        match fs::remove_file(&link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let subsys = self.root.join("subsystems").join(nqn);
        let ns = subsys.join("namespaces").join("1");
        if ns.join("enable").exists() {
            write_attr(&ns.join("enable"), "0")?;
        }
        remove_object(&ns)?;
        let namespaces = subsys.join("namespaces");
        // On configfs `namespaces` is a default group that goes with its parent.
        if namespaces.is_dir() && fs::read_dir(&namespaces)?.next().is_none() {
            let _ = fs::remove_dir(&namespaces);
        }
        remove_object(&subsys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn nvmet_builds_and_tears_down_the_configfs_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("nvmet");
        fs::create_dir_all(root.join("subsystems")).unwrap();
        fs::create_dir_all(root.join("ports")).unwrap();
        let nvmet = Nvmet::new(&root, "127.0.0.1:4420").unwrap();
        let port = root.join("ports/1");
        assert_eq!(read(&port.join("addr_trtype")), "tcp");
        assert_eq!(read(&port.join("addr_adrfam")), "ipv4");
        assert_eq!(read(&port.join("addr_traddr")), "127.0.0.1");
        assert_eq!(read(&port.join("addr_trsvcid")), "4420");

        let nqn = "nqn.2000-02.com.mikrotik:pvc-1";
        // A kernel with buffered_io shows the attribute as soon as the namespace exists.
        let ns = root.join("subsystems").join(nqn).join("namespaces/1");
        fs::create_dir_all(&ns).unwrap();
        fs::write(ns.join("buffered_io"), "0").unwrap();
        let file = tmp.path().join("pvc-1.img");
        nvmet.export(nqn, &file).unwrap();
        nvmet.export(nqn, &file).unwrap(); // idempotent
        let subsys = root.join("subsystems").join(nqn);
        assert_eq!(read(&subsys.join("attr_allow_any_host")), "1");
        assert_eq!(read(&ns.join("device_path")), file.display().to_string());
        assert_eq!(read(&ns.join("buffered_io")), "1");
        assert_eq!(read(&ns.join("enable")), "1");
        let link = port.join("subsystems").join(nqn);
        assert_eq!(fs::read_link(&link).unwrap(), subsys);

        nvmet.unexport(nqn).unwrap();
        assert!(fs::symlink_metadata(&link).is_err());
        assert!(!subsys.exists());
        nvmet.unexport(nqn).unwrap(); // idempotent
        assert!(port.is_dir(), "the port stays for the next export");
    }

    #[test]
    fn nvmet_refuses_a_missing_root_or_bad_listen_address() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Nvmet::new(tmp.path().join("absent"), "127.0.0.1:4420")
            .err()
            .unwrap();
        assert!(err.to_string().contains("nvmet"), "{err}");
        let err = Nvmet::new(tmp.path(), "localhost").err().unwrap();
        assert!(err.to_string().contains("IPv4:port"), "{err}");
    }
}
