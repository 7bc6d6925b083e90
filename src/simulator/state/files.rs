//! The `/file` commands on the store (print, remove), and the sparse backing files a disk
//! add creates or copies.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{failure, io_failure, Reply, Store};
use crate::rds::size::{group_digits, human_size};
use crate::simulator::commands::{Cond, Target};

impl Store {
    /// Every file and directory under the data directory, as RouterOS names them.
    pub(super) fn files(&self) -> Vec<(String, Option<u64>)> {
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

    pub(super) fn print_files(&self, conds: &[Cond]) -> Reply {
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

    pub(super) fn remove_file(&mut self, target: &Target) -> Reply {
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
pub(super) fn create_sparse(path: &Path, size: u64) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.set_len(size)
}

/// Copies only the data regions of `src` (SEEK_DATA/SEEK_HOLE), so a copy of a sparse
/// 100 GiB disk costs what it holds, then sizes the copy to `size`.
pub(super) fn copy_sparse(src: &Path, dst: &Path, size: u64) -> io::Result<()> {
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
