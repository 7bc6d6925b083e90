//! The `/disk` commands on the store: add (new or copied), set (grow), remove, print (the
//! pool is a disk too, shown by mount point).

use std::fs::{self, OpenOptions};

use super::files::{copy_sparse, create_sparse};
use super::{failure, io_failure, Reply, SimDisk, Store};
use crate::rds::model::{render_disk_detail, render_disk_list, render_pool_capacity};
use crate::rds::size::parse_user_size;
use crate::rds::{Disk, PoolCapacity};
use crate::simulator::commands::{Cond, Target, Value};

impl Store {
    pub(super) fn add(&mut self, args: &[(String, Value)], disk_full: bool) -> Reply {
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

    pub(super) fn set(
        &mut self,
        target: &Target,
        args: &[(String, Value)],
        disk_full: bool,
    ) -> Reply {
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
    pub(super) fn remove(&mut self, target: &Target) -> Reply {
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

    pub(super) fn print_disks(&self, conds: &[Cond]) -> Reply {
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
}
