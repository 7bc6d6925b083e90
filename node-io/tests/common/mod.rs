//! Test fixtures shared by the integration tests: the fake sysfs tree (node_io::testing,
//! also used by the driver's node tests), a fake kernel for the waits, and real devices.
#![allow(dead_code)] // each test binary uses a different subset

#[allow(unused_imports)] // not every test binary builds a fake sysfs
pub use node_io::testing::*;

mod fake_kernel;
#[allow(unused_imports)] // only the wait tests play the kernel
pub use fake_kernel::*;

use std::fs;
use std::path::{Path, PathBuf};

// ---- real devices (need root; tests skip with a printed reason otherwise) ----

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use node_io::dev_num::DevNum;

/// Print why a test is skipped and return None.
pub fn skip<T>(test: &str, reason: impl std::fmt::Display) -> Option<T> {
    eprintln!("SKIP {test}: {reason}");
    None
}

/// The running test's name (libtest runs each test on a thread named after it).
pub fn this_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string()
}

/// A loop device of `size` bytes whose backing file starts with `content`, when every tool
/// of `tools` is installed; else `None`, the skip printed (a tool missing, not root, no
/// loop device).
pub fn loop_dev(size: u64, content: &[u8], tools: &[&str]) -> Option<LoopDev> {
    if let Some(tool) = tools.iter().find(|t| !have_tool(t)) {
        return skip(&this_test(), format!("{tool} missing"));
    }
    LoopDev::with_content(size, content).map_or_else(|e| skip(&this_test(), e), Some)
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

    /// The backing file's path.
    pub fn backing(&self) -> &Path {
        self._backing.path()
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
