//! A fake sysfs tree shaped like the kernel 6.1 NVMe/TCP capture
//! (/work/shared/reference/sysfs-nvme-tcp-6.1.txt), for the transport and reconciler tests.
//! A trimmed copy of node-io's test builder (node-io/tests/common/mod.rs).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

pub struct FakeSys {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

pub struct Ns {
    pub ns: u32,
    pub nsid: u32,
    pub minor: u32,
    pub sectors: u64,
}

pub const NS1: Ns = Ns {
    ns: 1,
    nsid: 1,
    minor: 1,
    sectors: 131072,
};

impl FakeSys {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for d in ["class/nvme", "class/nvme-subsystem", "class/block", "block"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        FakeSys { _dir: dir, root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ctl_dir(&self, ctrl: u32) -> PathBuf {
        self.root
            .join(format!("devices/virtual/nvme-fabrics/ctl/nvme{ctrl}"))
    }

    fn subsys_dir(&self, subsys: u32) -> PathBuf {
        self.root.join(format!(
            "devices/virtual/nvme-subsystem/nvme-subsys{subsys}"
        ))
    }

    fn attrs(dir: &Path, attrs: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (k, v) in attrs {
            fs::write(dir.join(k), format!("{v}\n")).unwrap();
        }
    }

    /// /sys/class/nvme/nvme<C> -> ../../devices/virtual/nvme-fabrics/ctl/nvme<C>
    pub fn controller(&self, ctrl: u32, nqn: &str, port: u16, state: &str) -> &Self {
        let dir = self.ctl_dir(ctrl);
        Self::attrs(
            &dir,
            &[
                (
                    "address",
                    &format!("traddr=127.0.0.1,trsvcid={port},src_addr=127.0.0.1"),
                ),
                ("cntlid", &(ctrl + 1).to_string()),
                ("dev", &format!("247:{ctrl}")),
                ("state", state),
                ("subsysnqn", nqn),
                ("transport", "tcp"),
            ],
        );
        fs::write(dir.join("delete_controller"), "").unwrap();
        fs::write(dir.join("rescan_controller"), "").unwrap();
        symlink(
            format!("../../devices/virtual/nvme-fabrics/ctl/nvme{ctrl}"),
            self.root.join(format!("class/nvme/nvme{ctrl}")),
        )
        .unwrap();
        self
    }

    pub fn subsystem(&self, subsys: u32, nqn: &str, ctrls: &[u32]) -> &Self {
        let dir = self.subsys_dir(subsys);
        Self::attrs(&dir, &[("subsysnqn", nqn), ("subsystype", "nvm")]);
        for c in ctrls {
            symlink(
                format!("../../nvme-fabrics/ctl/nvme{c}"),
                dir.join(format!("nvme{c}")),
            )
            .unwrap();
        }
        symlink(
            format!("../../devices/virtual/nvme-subsystem/nvme-subsys{subsys}"),
            self.root
                .join(format!("class/nvme-subsystem/nvme-subsys{subsys}")),
        )
        .unwrap();
        self
    }

    fn ns_attrs(dir: &Path, ns: &Ns, hidden: bool) {
        Self::attrs(
            dir,
            &[
                ("hidden", if hidden { "1" } else { "0" }),
                ("nsid", &ns.nsid.to_string()),
                ("size", &ns.sectors.to_string()),
            ],
        );
        if !hidden {
            fs::write(dir.join("dev"), format!("259:{}\n", ns.minor)).unwrap();
        }
    }

    fn block_link(&self, name: &str, under: &str) {
        symlink(
            format!("../devices/virtual/{under}/{name}"),
            self.root.join("block").join(name),
        )
        .unwrap();
    }

    /// multipath=Y head nvme<S>n<N> under the subsystem.
    pub fn mp_head(&self, subsys: u32, ns: &Ns) -> &Self {
        let name = format!("nvme{subsys}n{}", ns.ns);
        let dir = self.subsys_dir(subsys).join(&name);
        Self::ns_attrs(&dir, ns, false);
        symlink(format!("../../nvme-subsys{subsys}"), dir.join("device")).unwrap();
        self.block_link(&name, &format!("nvme-subsystem/nvme-subsys{subsys}"));
        self
    }

    /// multipath=Y hidden path nvme<S>c<C>n<N> under the controller.
    pub fn mp_path(&self, subsys: u32, ctrl: u32, ns: &Ns) -> &Self {
        let name = format!("nvme{subsys}c{ctrl}n{}", ns.ns);
        let dir = self.ctl_dir(ctrl).join(&name);
        Self::ns_attrs(&dir, ns, true);
        symlink(format!("../../nvme{ctrl}"), dir.join("device")).unwrap();
        self.block_link(&name, &format!("nvme-fabrics/ctl/nvme{ctrl}"));
        self
    }

    /// multipath=N private namespace nvme<C>n<N> under the controller.
    pub fn private_ns(&self, ctrl: u32, ns: &Ns) -> &Self {
        let name = format!("nvme{ctrl}n{}", ns.ns);
        let dir = self.ctl_dir(ctrl).join(&name);
        Self::ns_attrs(&dir, ns, false);
        symlink(format!("../../nvme{ctrl}"), dir.join("device")).unwrap();
        self.block_link(&name, &format!("nvme-fabrics/ctl/nvme{ctrl}"));
        self
    }
}

impl FakeSys {
    pub fn set_state_deleting(&self, ctrl: u32) {
        fs::write(self.ctl_dir(ctrl).join("state"), "deleting\n").unwrap();
    }
}
