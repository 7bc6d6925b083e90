//! Test fixtures shared by the integration tests: a fake sysfs tree shaped like the
//! kernel 6.1 dump in /work/shared/reference/sysfs-nvme-tcp-6.1.txt.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
pub const NQN: &str = "nqn.2024-01.io.example:vol1";
pub const OTHER_NQN: &str = "nqn.2024-01.io.example:vol2";
pub const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:0e0e0e0e-1111-2222-3333-444444444444";
pub const UUID: &str = "afc78958-a1ea-4f47-8976-3ed6be4ecb93";

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
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
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

    /// multipath=Y head nvme<S>n<N> under the subsystem, with a /dev node.
    pub fn mp_head(&self, subsys: u32, ns: &Ns) -> &Self {
        let name = format!("nvme{subsys}n{}", ns.ns);
        let dir = self.subsys_dir(subsys).join(&name);
        Self::ns_attrs(&dir, ns, false);
        symlink(format!("../../nvme-subsys{subsys}"), dir.join("device")).unwrap();
        self.block_link(&name, &format!("nvme-subsystem/nvme-subsys{subsys}"));
        self
    }

    /// multipath=Y hidden path nvme<S>c<C>n<N> under the controller, no /dev node.
    pub fn mp_path(&self, subsys: u32, ctrl: u32, ns: &Ns) -> &Self {
        let name = format!("nvme{subsys}c{ctrl}n{}", ns.ns);
        let dir = self.ctl_dir(ctrl).join(&name);
        Self::ns_attrs(&dir, ns, true);
        fs::write(dir.join("ana_state"), "optimized\n").unwrap();
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

    /// The two-port multipath=Y capture: nvme0, nvme1, head nvme0n1, paths nvme0c0n1/nvme0c1n1.
    pub fn multipath_y() -> Self {
        let s = Self::new();
        s.controller(0, NQN, 4420, "live")
            .controller(1, NQN, 4421, "live")
            .subsystem(0, NQN, &[0, 1])
            .mp_head(0, &NS1)
            .mp_path(0, 0, &NS1)
            .mp_path(0, 1, &NS1);
        s
    }

    /// The two-port multipath=N capture: nvme0n1 (minor 0) and nvme1n1 (minor 1).
    pub fn multipath_n() -> Self {
        let s = Self::new();
        s.controller(0, NQN, 4420, "live")
            .controller(1, NQN, 4421, "live")
            .subsystem(0, NQN, &[0, 1])
            .private_ns(0, &Ns { minor: 0, ..NS1 })
            .private_ns(1, &Ns { minor: 1, ..NS1 });
        s
    }
}

// ---- real devices (need root; tests skip with a printed reason otherwise) ----

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use node_io::dev_num::DevNum;

/// Print why a test is skipped and return None.
pub fn skip<T>(test: &str, reason: impl std::fmt::Display) -> Option<T> {
    eprintln!("SKIP {test}: {reason}");
    None
}

pub fn is_root() -> bool {
    // The effective uid from /proc keeps the tests free of unsafe.
    fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

pub fn have_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Loop-device tests in one binary run one at a time: device numbers are reused as soon as
/// a device is detached, so a holder from a parallel test could otherwise match ours.
static LOOP_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A loop device over a temporary file, detached on drop (also when a test fails).
pub struct LoopDev {
    pub path: PathBuf,
    pub name: String,
    _backing: tempfile::NamedTempFile,
    // Last field: released only after Drop has detached the device.
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl LoopDev {
    /// A loop device of `size` bytes whose backing file starts with `content`.
    pub fn with_content(size: u64, content: &[u8]) -> Result<Self, String> {
        if !is_root() {
            return Err("not root".into());
        }
        let serial = LOOP_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let backing = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        fs::write(backing.path(), content).map_err(|e| e.to_string())?;
        backing
            .as_file()
            .set_len(size.max(content.len() as u64))
            .map_err(|e| e.to_string())?;
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(backing.path())
            .output()
            .map_err(|e| format!("losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup -f failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            path,
            name,
            _backing: backing,
            _serial: serial,
        })
    }

    pub fn new(size: u64) -> Result<Self, String> {
        Self::with_content(size, &[])
    }

    pub fn dev(&self) -> DevNum {
        let s = fs::read_to_string(format!("/sys/class/block/{}/dev", self.name)).unwrap();
        s.trim().parse().unwrap()
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// A mount, unmounted on drop (lazily if still busy).
pub struct Mounted {
    pub dir: tempfile::TempDir,
}

impl Mounted {
    pub fn new(dev: &Path) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let st = Command::new("mount")
            .arg(dev)
            .arg(dir.path())
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("mount {} failed", dev.display()));
        }
        Ok(Self { dir })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

pub fn mkfs(tool: &str, dev: &Path) -> Result<(), String> {
    let mut cmd = Command::new(tool);
    if tool == "mkfs.ext4" {
        cmd.args(["-q", "-F"]);
    } else if tool == "mkfs.xfs" {
        cmd.args(["-q", "-f"]);
    }
    let out = cmd.arg(dev).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A child process (`sleep`) that holds `path` open as fd 3; killed and reaped on drop.
pub struct HoldingChild {
    pub child: Child,
}

impl HoldingChild {
    pub fn open(path: &Path) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$1\" && echo ready && exec sleep 30")
            .arg("sh")
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "child could not open {}",
            path.display()
        );
        // Wait for the exec so the holder's comm is stable ("sleep", not "sh").
        let comm = format!("/proc/{}/comm", child.id());
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fs::read_to_string(&comm)
            .map(|c| c.trim() != "sleep")
            .unwrap_or(false)
            && std::time::Instant::now() < until
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HoldingChild {
    fn drop(&mut self) {
        self.stop();
    }
}
