//! Test fixtures for crates that use node-io (feature `testing`): a fake sysfs tree shaped
//! like the kernel 6.1 NVMe/TCP capture in /work/shared/reference/sysfs-nvme-tcp-6.1.txt.
//! node-io's own integration tests and the driver's node tests build their trees here, so
//! the two can never disagree about what the kernel shows.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
pub const NQN: &str = "nqn.2024-01.io.example:vol1";
pub const OTHER_NQN: &str = "nqn.2024-01.io.example:vol2";
pub const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:0e0e0e0e-1111-2222-3333-444444444444";
pub const UUID: &str = "afc78958-a1ea-4f47-8976-3ed6be4ecb93";

/// A temporary /sys with the NVMe/TCP shapes the kernel shows; builders chain.
pub struct FakeSys {
    /// Owns (and removes) the tree; `None` for a second handle made with [`FakeSys::at`].
    pub dir: Option<tempfile::TempDir>,
    root: PathBuf,
}

pub struct Ns {
    pub ns: u32,
    pub nsid: u32,
    pub minor: u32,
    pub uuid: &'static str,
    pub sectors: u64,
}

pub const NS1: Ns = Ns {
    ns: 1,
    nsid: 1,
    minor: 1,
    uuid: UUID,
    sectors: 131072,
};

impl FakeSys {
    /// A tree on /dev/shm when it is there (tmpfs, like sysfs: creating it stays fast on a
    /// loaded machine, so tests that time a wait measure the wait), else in the temp dir.
    pub fn new() -> Self {
        let shm = Path::new("/dev/shm");
        match tempfile::tempdir_in(shm) {
            Ok(dir) if shm.is_dir() => Self::in_dir(dir),
            _ => Self::in_dir(tempfile::tempdir().unwrap()),
        }
    }

    /// A tree in a temporary directory under `parent` (e.g. a tmpfs such as /dev/shm, so a
    /// benchmark measures the reads, not a disk filesystem's inode allocation).
    pub fn new_in(parent: &Path) -> Self {
        Self::in_dir(tempfile::tempdir_in(parent).unwrap())
    }

    fn in_dir(dir: tempfile::TempDir) -> Self {
        let s = Self {
            root: dir.path().to_path_buf(),
            dir: Some(dir),
        };
        for d in ["class/nvme", "class/nvme-subsystem", "class/block", "block"] {
            fs::create_dir_all(s.root().join(d)).unwrap();
        }
        s
    }

    /// A second handle on an existing tree (for a thread that changes it later).
    pub fn at(root: &Path) -> Self {
        Self {
            dir: None,
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ctl_dir(&self, ctrl: u32) -> PathBuf {
        self.root()
            .join(format!("devices/virtual/nvme-fabrics/ctl/nvme{ctrl}"))
    }

    pub fn subsys_dir(&self, subsys: u32) -> PathBuf {
        self.root().join(format!(
            "devices/virtual/nvme-subsystem/nvme-subsys{subsys}"
        ))
    }

    pub fn attrs(dir: &Path, attrs: &[(&str, &str)]) {
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
                ("cntrltype", "io"),
                ("ctrl_loss_tmo", "30"),
                ("dev", &format!("247:{ctrl}")),
                ("hostid", "0e0e0e0e-1111-2222-3333-444444444444"),
                ("hostnqn", HOSTNQN),
                ("kato", "5"),
                ("state", state),
                ("subsysnqn", nqn),
                ("transport", "tcp"),
            ],
        );
        fs::write(dir.join("delete_controller"), "").unwrap();
        fs::write(dir.join("rescan_controller"), "").unwrap();
        symlink(
            format!("../../devices/virtual/nvme-fabrics/ctl/nvme{ctrl}"),
            self.root().join(format!("class/nvme/nvme{ctrl}")),
        )
        .unwrap();
        self
    }

    pub fn set_state(&self, ctrl: u32, state: &str) {
        fs::write(self.ctl_dir(ctrl).join("state"), format!("{state}\n")).unwrap();
    }

    /// /sys/class/nvme-subsystem/nvme-subsys<S> with one link per controller.
    pub fn subsystem(&self, subsys: u32, nqn: &str, ctrls: &[u32]) -> &Self {
        let dir = self.subsys_dir(subsys);
        Self::attrs(
            &dir,
            &[
                ("iopolicy", "numa"),
                ("subsysnqn", nqn),
                ("subsystype", "nvm"),
            ],
        );
        for c in ctrls {
            symlink(
                format!("../../nvme-fabrics/ctl/nvme{c}"),
                dir.join(format!("nvme{c}")),
            )
            .unwrap();
        }
        symlink(
            format!("../../devices/virtual/nvme-subsystem/nvme-subsys{subsys}"),
            self.root()
                .join(format!("class/nvme-subsystem/nvme-subsys{subsys}")),
        )
        .unwrap();
        self
    }

    pub fn ns_attrs(dir: &Path, ns: &Ns, hidden: bool) {
        let uuid = ns.uuid;
        let wwid = format!("uuid.{uuid}");
        Self::attrs(
            dir,
            &[
                ("hidden", if hidden { "1" } else { "0" }),
                ("nsid", &ns.nsid.to_string()),
                ("size", &ns.sectors.to_string()),
                ("ro", "0"),
                ("uuid", uuid),
                ("wwid", &wwid),
            ],
        );
        if !hidden {
            fs::write(dir.join("dev"), format!("259:{}\n", ns.minor)).unwrap();
        }
    }

    pub fn block_link(&self, name: &str, under: &str) {
        symlink(
            format!("../devices/virtual/{under}/{name}"),
            self.root().join("block").join(name),
        )
        .unwrap();
    }

    /// Namespace block device `name` below the object `under` (a path below
    /// devices/virtual, e.g. `nvme-subsystem/nvme-subsys0`): its attributes, its `device`
    /// link to that object and its /sys/block link. Returns its directory.
    fn namespace(&self, under: &str, name: &str, ns: &Ns, hidden: bool) -> PathBuf {
        let dir = self.root().join("devices/virtual").join(under).join(name);
        Self::ns_attrs(&dir, ns, hidden);
        let parent = under.rsplit('/').next().unwrap_or(under);
        symlink(format!("../../{parent}"), dir.join("device")).unwrap();
        self.block_link(name, under);
        dir
    }

    /// multipath=Y head nvme<S>n<N> under the subsystem, with a /dev node.
    pub fn mp_head(&self, subsys: u32, ns: &Ns) -> &Self {
        let under = format!("nvme-subsystem/nvme-subsys{subsys}");
        self.namespace(&under, &format!("nvme{subsys}n{}", ns.ns), ns, false);
        self
    }

    /// multipath=Y hidden path nvme<S>c<C>n<N> under the controller, no /dev node.
    pub fn mp_path(&self, subsys: u32, ctrl: u32, ns: &Ns) -> &Self {
        let under = format!("nvme-fabrics/ctl/nvme{ctrl}");
        let dir = self.namespace(&under, &format!("nvme{subsys}c{ctrl}n{}", ns.ns), ns, true);
        fs::write(dir.join("ana_state"), "optimized\n").unwrap();
        self
    }

    /// multipath=N private namespace nvme<C>n<N> under the controller.
    pub fn private_ns(&self, ctrl: u32, ns: &Ns) -> &Self {
        let under = format!("nvme-fabrics/ctl/nvme{ctrl}");
        self.namespace(&under, &format!("nvme{ctrl}n{}", ns.ns), ns, false);
        self
    }

    /// Plays the kernel for a disconnect: within `within`, each controller of `ctrls` whose
    /// `delete_controller` was written "1" disappears from /sys/class/nvme.
    pub fn kernel_deletes(
        &self,
        ctrls: Vec<u32>,
        within: std::time::Duration,
    ) -> std::thread::JoinHandle<()> {
        let root = self.root().to_owned();
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + within;
            let mut left = ctrls;
            while !left.is_empty() && std::time::Instant::now() < until {
                left.retain(|c| {
                    let dir = root.join(format!("devices/virtual/nvme-fabrics/ctl/nvme{c}"));
                    if fs::read_to_string(dir.join("delete_controller")).unwrap_or_default() == "1"
                    {
                        let _ = fs::remove_file(root.join(format!("class/nvme/nvme{c}")));
                        false
                    } else {
                        true
                    }
                });
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    }

    /// Subsystem 0 of `nqn` with one controller per entry of `states` (its state): nvme0,
    /// nvme1, … on ports 4420, 4421, …; no namespace yet.
    pub fn with_controllers(nqn: &str, states: &[&str]) -> Self {
        let s = Self::new();
        let ctrls: Vec<u32> = (0..states.len() as u32).collect();
        for (&c, state) in ctrls.iter().zip(states) {
            s.controller(c, nqn, 4420 + c as u16, state);
        }
        s.subsystem(0, nqn, &ctrls);
        s
    }

    /// The two-port multipath=Y capture: nvme0, nvme1, head nvme0n1, paths nvme0c0n1/nvme0c1n1.
    pub fn multipath_y() -> Self {
        Self::multipath_y_of(NQN)
    }

    /// [`multipath_y`](Self::multipath_y) for the subsystem `nqn`.
    pub fn multipath_y_of(nqn: &str) -> Self {
        let s = Self::with_controllers(nqn, &["live", "live"]);
        s.mp_head(0, &NS1).mp_path(0, 0, &NS1).mp_path(0, 1, &NS1);
        s
    }

    /// The two-port multipath=N capture: nvme0n1 (minor 0) and nvme1n1 (minor 1).
    pub fn multipath_n() -> Self {
        let s = Self::with_controllers(NQN, &["live", "live"]);
        s.private_ns(0, &Ns { minor: 0, ..NS1 })
            .private_ns(1, &Ns { minor: 1, ..NS1 });
        s
    }

    /// multipath=N after a reconnect to `nqn` that the kernel renumbered: nvme0 (deleting)
    /// with nvme0n1 (minor 0), and nvme3 (live) with nvme3n1 (minor 7), both in subsystem 0.
    pub fn renumbered(nqn: &str) -> Self {
        let s = Self::new();
        s.controller(0, nqn, 4420, "deleting")
            .private_ns(0, &Ns { minor: 0, ..NS1 })
            .controller(3, nqn, 4420, "live")
            .private_ns(3, &Ns { minor: 7, ..NS1 })
            .subsystem(0, nqn, &[0, 3]);
        s
    }
}

impl Default for FakeSys {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether this process runs as root (effective uid 0), as tests of real loop devices,
/// mounts and the kernel's uevent socket need.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether `name` is an installed command (`command -v name` in sh succeeds).
pub fn have_tool(name: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A filesystem on `dev` mounted in a private mount namespace of a child process: invisible
/// in this process's and pid 1's mountinfo, held by no fd — what a leaked mount in another
/// container looks like. Needs root and `unshare` (util-linux). Killed and reaped on drop,
/// which releases the mount with its namespace.
pub struct MountedElsewhere {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl MountedElsewhere {
    pub fn new(dev: &Path) -> Result<Self, String> {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount \"$1\" \"$2\" && echo ready && exec sleep 60")
            .arg("sh")
            .arg(dev)
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "mounting {} in a private namespace failed: {}",
                dev.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self { child, _dir: dir })
    }
}

impl Drop for MountedElsewhere {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
