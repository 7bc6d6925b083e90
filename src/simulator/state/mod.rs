//! The simulated RDS's state: disks persisted atomically in the state directory, each with a
//! sparse backing file of its exact size in the data directory (`/storage-pool/csi/x.img`
//! is `<data-dir>/storage-pool/csi/x.img`), and a pool whose free space is its size minus
//! the sum of the disk sizes.
//!
//! Here: the disk record, the reply, the store (open, persist, select); the `/disk` commands
//! in `disks`; the `/file` commands and the sparse backing files in `files`.

mod disks;
mod files;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::commands::{Cond, Request, Target};
use super::export::ExportBackend;
use crate::rds::size::human_size;
use crate::rds::Disk;

pub(super) const STATE_FILE: &str = "disks.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimDisk {
    pub slot: String,
    pub file_path: String,
    pub size_bytes: u64,
    pub nvme_tcp_export: bool,
    pub nvme_tcp_port: Option<u16>,
    pub nvme_tcp_nqn: Option<String>,
}

impl SimDisk {
    pub fn to_disk(&self) -> Disk {
        let mut d = Disk::file(&self.slot, &self.file_path, self.size_bytes);
        d.nvme_tcp_export = self.nvme_tcp_export;
        d.nvme_tcp_port = self.nvme_tcp_port;
        d.nvme_tcp_nqn = self.nvme_tcp_nqn.clone();
        d
    }

    fn field(&self, key: &str) -> Option<String> {
        match key {
            "slot" => Some(self.slot.clone()),
            "file-path" => Some(self.file_path.clone()),
            "type" => Some("file".into()),
            "nvme-tcp-server-nqn" => self.nvme_tcp_nqn.clone(),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    disks: Vec<SimDisk>,
}

/// The answer to one command: output text and exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub stdout: String,
    pub status: u32,
}

impl Reply {
    pub fn ok(stdout: impl Into<String>) -> Self {
        Reply {
            stdout: stdout.into(),
            status: 0,
        }
    }

    /// A refusal: the text goes to stdout (as RouterOS does) with exit status 1.
    pub fn fail(text: impl Into<String>) -> Self {
        let mut stdout = text.into();
        stdout.push('\n');
        Reply { stdout, status: 1 }
    }
}

pub struct Store {
    state_dir: PathBuf,
    data_dir: PathBuf,
    pool_name: String,
    pool_size: u64,
    identity: String,
    disks: Vec<SimDisk>,
    backend: Box<dyn ExportBackend>,
}

pub(super) fn failure(text: &str) -> Reply {
    Reply::fail(format!("failure: {text}"))
}

pub(super) fn io_failure(what: &str, e: io::Error) -> Reply {
    failure(&format!("{what}: {e}"))
}

impl Store {
    /// Loads the persisted disks (or starts empty) and re-applies their exports, so an
    /// nvmet export survives a simulator restart.
    pub fn open(
        state_dir: &Path,
        data_dir: &Path,
        pool_name: &str,
        pool_size: u64,
        identity: &str,
        backend: Box<dyn ExportBackend>,
    ) -> io::Result<Self> {
        fs::create_dir_all(state_dir)?;
        fs::create_dir_all(data_dir)?;
        let persisted: Persisted = match fs::read(state_dir.join(STATE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is corrupt: {e}; move it away to start with no disks",
                        state_dir.join(STATE_FILE).display()
                    ),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(e),
        };
        let store = Store {
            state_dir: state_dir.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            pool_name: pool_name.to_string(),
            pool_size,
            identity: identity.to_string(),
            disks: persisted.disks,
            backend,
        };
        for d in store.disks.iter().filter(|d| d.nvme_tcp_export) {
            if let Some(nqn) = &d.nvme_tcp_nqn {
                store.backend.export(nqn, &store.host_path(&d.file_path))?;
            }
        }
        Ok(store)
    }

    pub fn disks(&self) -> &[SimDisk] {
        &self.disks
    }

    fn used(&self) -> u64 {
        self.disks.iter().map(|d| d.size_bytes).sum()
    }

    fn free(&self) -> u64 {
        self.pool_size.saturating_sub(self.used())
    }

    /// Where an RDS path lives on this host.
    pub fn host_path(&self, rds_path: &str) -> PathBuf {
        self.data_dir.join(rds_path.trim_start_matches('/'))
    }

    /// Write to a temporary file, fsync, then rename: a crash leaves the old or new state,
    /// never a torn one.
    fn persist(&self) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&Persisted {
            disks: self.disks.clone(),
        })
        .map_err(io::Error::other)?;
        let tmp = self.state_dir.join(format!("{STATE_FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, self.state_dir.join(STATE_FILE))
    }

    /// Checks an RDS file path: absolute, on this pool, no empty/relative components.
    fn check_path(&self, path: &str) -> Result<(), Reply> {
        let parts: Vec<&str> = path.strip_prefix('/').unwrap_or("").split('/').collect();
        let ok = parts.len() >= 2
            && parts[0] == self.pool_name
            && parts
                .iter()
                .all(|p| !p.is_empty() && *p != "." && *p != "..");
        if ok {
            Ok(())
        } else {
            Err(failure(&format!(
                "file-path {path:?} is not a file on mounted disk {}",
                self.pool_name
            )))
        }
    }

    fn select(&self, conds: &[Cond]) -> Vec<usize> {
        (0..self.disks.len())
            .filter(|&i| {
                conds
                    .iter()
                    .all(|c| c.holds(self.disks[i].field(&c.key).as_deref()))
            })
            .collect()
    }

    fn target(&self, target: &Target) -> Result<Vec<usize>, Reply> {
        match target {
            Target::Find(conds) => Ok(self.select(conds)),
            // Items by number, as `print` numbered them.
            Target::Name(n) => match n.parse::<usize>() {
                Ok(i) if i < self.disks.len() => Ok(vec![i]),
                _ => Err(Reply::fail("no such item")),
            },
        }
    }

    pub fn execute(&mut self, request: &Request, disk_full: bool) -> Reply {
        match request {
            Request::DiskAdd(args) => self.add(args, disk_full),
            Request::DiskSet { target, args } => self.set(target, args, disk_full),
            Request::DiskRemove(target) => self.remove(target),
            Request::DiskPrint(conds) => self.print_disks(conds),
            Request::FilePrint(conds) => self.print_files(conds),
            Request::FileRemove(target) => self.remove_file(target),
            Request::IdentityPrint => Reply::ok(format!("  name: {}\n", self.identity)),
            Request::ResourcePrint => Reply::ok(format!(
                "                   uptime: 1h\n                  version: 7.20 (rds-csi simulator)\n\
                 \x20           total-hdd-space: {}\n",
                human_size(self.pool_size)
            )),
            Request::SimFault(_) | Request::SimPrint => {
                Reply::fail("failure: simulator commands are handled by the server")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::{Read, Seek, SeekFrom};

    use super::*;
    use crate::simulator::commands::parse;
    use crate::simulator::export::NoExport;

    fn store(dir: &Path) -> Store {
        Store::open(
            &dir.join("state"),
            &dir.join("data"),
            "storage-pool",
            10 << 30,
            "rds-sim",
            Box::new(NoExport),
        )
        .unwrap()
    }

    fn run(s: &mut Store, line: &str) -> Reply {
        s.execute(&parse(line).unwrap(), false)
    }

    #[test]
    fn copies_keep_data_and_holes_and_grow_to_the_asked_size() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path());
        let add =
            "/disk add type=file file-path=\"/storage-pool/csi/a.img\" file-size=\"1G\" slot=\"a\"";
        assert_eq!(run(&mut s, add), Reply::ok(""));
        let a = s.host_path("/storage-pool/csi/a.img");
        {
            let mut f = OpenOptions::new().write(true).open(&a).unwrap();
            f.seek(SeekFrom::Start(512 << 20)).unwrap();
            f.write_all(b"hello").unwrap();
        }
        let copy = "/disk add type=file copy-from=[find slot=\"a\"] file-path=\"/storage-pool/csi/b.img\" slot=\"b\" file-size=\"2G\"";
        assert_eq!(run(&mut s, copy), Reply::ok(""));
        let b = s.host_path("/storage-pool/csi/b.img");
        let meta = fs::metadata(&b).unwrap();
        assert_eq!(meta.len(), 2 << 30);
        use std::os::unix::fs::MetadataExt;
        assert!(
            meta.blocks() * 512 < 64 << 20,
            "copy is sparse: {} blocks",
            meta.blocks()
        );
        let mut f = File::open(&b).unwrap();
        f.seek(SeekFrom::Start(512 << 20)).unwrap();
        let mut got = [0u8; 5];
        f.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
    }

    #[test]
    fn refusals_use_routeros_wording() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path());
        let add = |slot: &str, size: &str| {
            format!("/disk add type=file file-path=\"/storage-pool/csi/{slot}.img\" file-size=\"{size}\" slot=\"{slot}\"")
        };
        assert_eq!(run(&mut s, &add("a", "8G")).status, 0);
        assert_eq!(
            run(&mut s, &add("a", "1G")).stdout,
            "failure: item with such name already exists\n"
        );
        assert_eq!(
            run(&mut s, &add("b", "3G")).stdout,
            "failure: not enough space\n"
        );
        assert_eq!(
            run(&mut s, "/disk set [find slot=\"a\"] file-size=\"1G\"").status,
            1
        );
        assert_eq!(
            run(&mut s, "/disk set [find slot=\"zz\"] file-size=\"9G\"").stdout,
            "no such item\n"
        );
        assert_eq!(
            run(
                &mut s,
                "/file remove [find name=\"storage-pool/csi/a.img\"]"
            )
            .stdout,
            "failure: file storage-pool/csi/a.img is in use by a disk\n"
        );
        assert_eq!(run(&mut s, "/disk remove [find slot=\"a\"]"), Reply::ok(""));
        assert_eq!(run(&mut s, "/disk remove [find slot=\"a\"]"), Reply::ok(""));
        assert!(
            s.host_path("/storage-pool/csi/a.img").exists(),
            "disk remove keeps the file"
        );
        assert_eq!(
            run(
                &mut s,
                "/file remove [find name=\"storage-pool/csi/a.img\"]"
            ),
            Reply::ok("")
        );
        assert!(!s.host_path("/storage-pool/csi/a.img").exists());
        let outside = "/disk add type=file file-path=\"/other/x.img\" file-size=\"1G\" slot=\"x\"";
        assert!(run(&mut s, outside)
            .stdout
            .starts_with("failure: file-path"));
    }
}
