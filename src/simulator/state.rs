//! The simulated RDS's state: disks persisted atomically in the state directory, each with a
//! sparse backing file of its exact size in the data directory (`/storage-pool/csi/x.img`
//! is `<data-dir>/storage-pool/csi/x.img`), and a pool whose free space is its size minus
//! the sum of the disk sizes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::commands::{Cond, Request, Target, Value};
use super::export::ExportBackend;
use crate::rds::model::{render_disk_detail, render_disk_list, render_pool_capacity};
use crate::rds::size::{group_digits, human_size, parse_user_size};
use crate::rds::{Disk, PoolCapacity};

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

fn failure(text: &str) -> Reply {
    Reply::fail(format!("failure: {text}"))
}

fn io_failure(what: &str, e: io::Error) -> Reply {
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

    fn add(&mut self, args: &[(String, Value)], disk_full: bool) -> Reply {
        let get = |k: &str| args.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let text = |k: &str| get(k).and_then(Value::text);
        if let Some(t) = text("type") {
            if t != "file" {
                return failure(&format!("type={t} is not simulated; only type=file"));
            }
        }
        let (Some(slot), Some(path)) = (text("slot"), text("file-path")) else {
            return failure("slot and file-path are required for a file disk");
        };
        if let Err(r) = self.check_path(path) {
            return r;
        }
        if self.disks.iter().any(|d| d.slot == slot) {
            return failure("item with such name already exists");
        }
        let source = match get("copy-from") {
            None => None,
            Some(Value::Find(conds)) => match self.select(conds).as_slice() {
                [i] => Some(self.disks[*i].clone()),
                [] => return failure("no such item"),
                _ => return failure("copy-from matches more than one disk"),
            },
            Some(Value::Text(t)) => match self.disks.iter().find(|d| d.slot == *t) {
                Some(d) => Some(d.clone()),
                None => return failure("no such item"),
            },
        };
        let size = match (text("file-size"), &source) {
            (Some(s), _) => match parse_user_size(s) {
                Ok(0) | Err(_) => return failure(&format!("invalid file-size {s:?}")),
                Ok(n) => n,
            },
            (None, Some(src)) => src.size_bytes,
            (None, None) => return failure("file-size is required for a new file disk"),
        };
        if let Some(src) = &source {
            if size < src.size_bytes {
                return failure("file-size is smaller than the disk copied from");
            }
        }
        let export = match text("nvme-tcp-export") {
            None | Some("no") => false,
            Some("yes") => true,
            Some(v) => {
                return Reply::fail(format!(
                    "input does not match any value of nvme-tcp-export: {v}"
                ))
            }
        };
        let (port, nqn) = if export {
            // RouterOS exports on the NVMe/TCP port unless told otherwise.
            let port = match text("nvme-tcp-server-port") {
                None => node_io::fabrics::NVME_TCP_PORT,
                Some(p) => match p.parse::<u16>() {
                    Ok(p) => p,
                    Err(_) => {
                        return Reply::fail(format!("invalid value for nvme-tcp-server-port: {p}"))
                    }
                },
            };
            let Some(nqn) = text("nvme-tcp-server-nqn") else {
                return failure("nvme-tcp-server-nqn is required with nvme-tcp-export=yes");
            };
            if self
                .disks
                .iter()
                .any(|d| d.nvme_tcp_nqn.as_deref() == Some(nqn))
            {
                return failure(&format!("nqn {nqn} is in use by another disk"));
            }
            (Some(port), Some(nqn.to_string()))
        } else {
            (None, None)
        };
        if self.disks.iter().any(|d| d.file_path == path) {
            return failure("file is in use by another disk");
        }
        let host = self.host_path(path);
        if host.exists() {
            return failure(&format!("file {} already exists", &path[1..]));
        }
        if disk_full || size > self.free() {
            return failure("not enough space");
        }
        let created = match &source {
            None => create_sparse(&host, size),
            Some(src) => copy_sparse(&self.host_path(&src.file_path), &host, size),
        };
        if let Err(e) = created {
            let _ = fs::remove_file(&host);
            return io_failure("could not create the file", e);
        }
        let disk = SimDisk {
            slot: slot.to_string(),
            file_path: path.to_string(),
            size_bytes: size,
            nvme_tcp_export: export,
            nvme_tcp_port: port,
            nvme_tcp_nqn: nqn,
        };
        if let Some(nqn) = &disk.nvme_tcp_nqn {
            if let Err(e) = self.backend.export(nqn, &host) {
                let _ = self.backend.unexport(nqn);
                let _ = fs::remove_file(&host);
                return io_failure("could not export the disk", e);
            }
        }
        self.disks.push(disk);
        if let Err(e) = self.persist() {
            let disk = self.disks.pop().expect("just pushed");
            if let Some(nqn) = &disk.nvme_tcp_nqn {
                let _ = self.backend.unexport(nqn);
            }
            let _ = fs::remove_file(&host);
            return io_failure("could not save the disk list", e);
        }
        Reply::ok("")
    }

    fn set(&mut self, target: &Target, args: &[(String, Value)], disk_full: bool) -> Reply {
        // An empty selection is an error here (a lost disk must not look resized); see
        // `remove` for the opposite choice.
        let indexes = match self.target(target) {
            Ok(v) if v.is_empty() => return Reply::fail("no such item"),
            Ok(v) => v,
            Err(r) => return r,
        };
        let Some(size) = args
            .iter()
            .find(|(k, _)| k == "file-size")
            .and_then(|(_, v)| v.text())
        else {
            return Reply::ok("");
        };
        let size = match parse_user_size(size) {
            Ok(0) | Err(_) => return failure(&format!("invalid file-size {size:?}")),
            Ok(n) => n,
        };
        for i in indexes {
            let current = self.disks[i].size_bytes;
            if size < current {
                return failure("file disks cannot shrink; new file-size is smaller");
            }
            if size > current && (disk_full || size - current > self.free()) {
                return failure("not enough space");
            }
            let host = self.host_path(&self.disks[i].file_path);
            if let Err(e) = OpenOptions::new()
                .write(true)
                .open(&host)
                .and_then(|f| f.set_len(size))
            {
                return io_failure("could not grow the file", e);
            }
            self.disks[i].size_bytes = size;
            if let Err(e) = self.persist() {
                self.disks[i].size_bytes = current;
                return io_failure("could not save the disk list", e);
            }
        }
        Reply::ok("")
    }

    /// Like RouterOS, removing an empty `[find]` selection is a no-op, so a repeated
    /// delete succeeds. The backing file stays (it is `/file remove`'s job).
    fn remove(&mut self, target: &Target) -> Reply {
        let mut indexes = match self.target(target) {
            Ok(v) => v,
            Err(r) => return r,
        };
        indexes.sort_unstable_by(|a, b| b.cmp(a));
        for i in indexes {
            if let Some(nqn) = self.disks[i].nvme_tcp_nqn.clone() {
                if let Err(e) = self.backend.unexport(&nqn) {
                    return io_failure("could not remove the export", e);
                }
            }
            let disk = self.disks.remove(i);
            if let Err(e) = self.persist() {
                self.disks.insert(i, disk);
                return io_failure("could not save the disk list", e);
            }
        }
        Reply::ok("")
    }

    fn print_disks(&self, conds: &[Cond]) -> Reply {
        // The pool is a disk too on a real RDS (`type=partition`); show it by mount point.
        if let Some(mp) = conds.iter().find(|c| c.key == "mount-point") {
            if !mp.holds(Some(&self.pool_name)) {
                return Reply::ok("");
            }
            let capacity = PoolCapacity {
                size: self.pool_size,
                free: self.free(),
            };
            return Reply::ok(render_pool_capacity(&self.pool_name, &capacity));
        }
        let disks: Vec<Disk> = self
            .select(conds)
            .into_iter()
            .map(|i| self.disks[i].to_disk())
            .collect();
        match disks.as_slice() {
            [one] if conds.iter().any(|c| c.key == "slot") => Reply::ok(render_disk_detail(one)),
            _ => Reply::ok(render_disk_list(&disks)),
        }
    }

    /// Every file and directory under the data directory, as RouterOS names them.
    fn files(&self) -> Vec<(String, Option<u64>)> {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, Option<u64>)>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            let mut entries: Vec<_> = entries.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = format!("{rel}{}", e.file_name().to_string_lossy());
                match e.metadata() {
                    Ok(m) if m.is_dir() => {
                        out.push((name.clone(), None));
                        walk(&e.path(), &format!("{name}/"), out);
                    }
                    Ok(m) => out.push((name, Some(m.len()))),
                    Err(_) => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir, "", &mut out);
        out
    }

    fn print_files(&self, conds: &[Cond]) -> Reply {
        let mut out = String::new();
        let selected = self
            .files()
            .into_iter()
            .filter(|(name, _)| conds.iter().all(|c| c.key != "name" || c.holds(Some(name))));
        for (n, (name, size)) in selected.enumerate() {
            if n > 0 {
                out.push('\n');
            }
            match size {
                None => out.push_str(&format!("{n:>2}   name={name} type=directory\n")),
                Some(size) => {
                    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
                    out.push_str(&format!(
                        "{n:>2}   name={name}\n     type=.{ext} file size={}\n",
                        if size >= 1024 {
                            human_size(size)
                        } else {
                            group_digits(size)
                        }
                    ));
                }
            }
        }
        Reply::ok(out)
    }

    fn remove_file(&mut self, target: &Target) -> Reply {
        let names: Vec<String> = match target {
            Target::Find(conds) => self
                .files()
                .into_iter()
                .filter(|(name, size)| {
                    size.is_some() && conds.iter().all(|c| c.key == "name" && c.holds(Some(name)))
                })
                .map(|(name, _)| name)
                .collect(),
            Target::Name(name) => vec![name.clone()],
        };
        for name in names {
            let rds_path = format!("/{name}");
            if self.disks.iter().any(|d| d.file_path == rds_path) {
                return failure(&format!("file {name} is in use by a disk"));
            }
            match fs::remove_file(self.host_path(&rds_path)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if matches!(target, Target::Name(_)) {
                        return Reply::fail("no such item");
                    }
                }
                Err(e) => return io_failure(&format!("could not remove {name}"), e),
            }
        }
        Reply::ok("")
    }
}

/// A sparse file of exactly `size` bytes (no blocks allocated).
fn create_sparse(path: &Path, size: u64) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.set_len(size)
}

/// Copies only the data regions of `src` (SEEK_DATA/SEEK_HOLE), so a copy of a sparse
/// 100 GiB disk costs what it holds, then sizes the copy to `size`.
fn copy_sparse(src: &Path, dst: &Path, size: u64) -> io::Result<()> {
    use rustix::fs::{seek, SeekFrom as RSeek};
    create_sparse(dst, size)?;
    let mut input = File::open(src)?;
    let mut output = OpenOptions::new().write(true).open(dst)?;
    let len = input.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let data = match seek(&input, RSeek::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let hole = seek(&input, RSeek::Hole(data)).map_err(io::Error::from)?;
        input.seek(SeekFrom::Start(data))?;
        output.seek(SeekFrom::Start(data))?;
        let mut left = hole - data;
        while left > 0 {
            let chunk = left.min(buf.len() as u64) as usize;
            let n = input.read(&mut buf[..chunk])?;
            if n == 0 {
                break;
            }
            output.write_all(&buf[..n])?;
            left -= n as u64;
        }
        pos = hole;
    }
    output.sync_all()
}

#[cfg(test)]
mod tests {
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
