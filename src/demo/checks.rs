//! What the demo looks at on this host to show that a step really happened: what is mounted
//! where, which device a node points at, a filesystem's size, the bytes written and read
//! back, and the controller's metrics.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use node_io::mountinfo::{read_mountinfo, Pid};

use crate::observability::Metrics;
use crate::scenario::exposition;

pub const GIB: i64 = 1 << 30;

/// Deterministic pseudo-random bytes (xorshift64*): a pattern no filesystem or zeroed disk
/// reproduces by accident.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The path an earlier step produced. A node step only runs when that step succeeded
/// (a failure or a skip stops node steps first), so absence here is a bug in the scenario.
pub fn present(p: Option<&PathBuf>) -> Result<&PathBuf, String> {
    p.ok_or_else(|| "the step that makes this path did not run".to_string())
}

/// `bytes` in GiB with one decimal (`1.5 GiB`).
pub fn gib(bytes: i64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

/// `(source, fs type)` of the visible (last) mount at `p` in this mount namespace.
pub fn mount_at(p: &Path) -> Option<(String, String)> {
    let table = read_mountinfo(Path::new("/proc"), Pid::Current).ok()?;
    let m = table.by_target(p).pop()?;
    Some((m.source.to_string_lossy().into_owned(), m.fs_type.clone()))
}

/// The kernel name of the block device a device node points at (`loop3`).
pub fn device_name(node: &Path) -> Result<String, String> {
    let md = std::fs::metadata(node).map_err(|e| format!("stat {}: {e}", node.display()))?;
    if !md.file_type().is_block_device() {
        return Err(format!("{} is not a block device node", node.display()));
    }
    let (maj, min) = (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()));
    let link = std::fs::read_link(format!("/sys/dev/block/{maj}:{min}"))
        .map_err(|e| format!("/sys/dev/block/{maj}:{min}: {e}"))?;
    Ok(link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default())
}

/// Bytes of the filesystem mounted at `p`.
pub fn fs_size(p: &Path) -> Result<u64, String> {
    let s = rustix::fs::statvfs(p).map_err(|e| format!("statvfs {}: {e}", p.display()))?;
    Ok(s.f_blocks * s.f_frsize)
}

/// Flushes a mounted filesystem's data and log to its device, as an application would
/// before asking for a snapshot: a CSI snapshot is a crash-consistent copy of the disk.
pub fn syncfs(p: &Path) -> Result<(), String> {
    let f = std::fs::File::open(p).map_err(|e| format!("open {}: {e}", p.display()))?;
    rustix::fs::syncfs(&f).map_err(|e| format!("syncfs {}: {e}", p.display()))
}

/// Writes `data` to the file or device `p` at offset 0 and fsyncs it.
pub fn write_synced(p: &Path, data: &[u8], create: bool) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(create)
        .truncate(create)
        .open(p)
        .map_err(|e| {
            format!(
                "{} {}: {e}",
                if create { "create" } else { "open" },
                p.display()
            )
        })?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("write {}: {e}", p.display()))
}

/// The first `len` bytes of the file or device `p`.
pub fn read_head(p: &Path, len: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut got = vec![0u8; len];
    std::fs::File::open(p)
        .map_err(|e| format!("open {}: {e}", p.display()))?
        .read_exact(&mut got)
        .map_err(|e| format!("read {}: {e}", p.display()))?;
    Ok(got)
}

/// The value of one series of the controller's metrics (`name{labels}` exactly), 0 if absent.
pub fn metric(m: &Metrics, series: &str) -> f64 {
    exposition::sample(&m.render(), series).unwrap_or(0.0)
}

pub fn migration_metrics(m: &Metrics) -> String {
    format!(
        "rds_csi_migration_migrations_total{{result=\"success\"}}={}, rds_csi_migration_duration_seconds_count={}, rds_csi_migration_active_migrations={}",
        metric(m, "rds_csi_migration_migrations_total{result=\"success\"}"),
        metric(m, "rds_csi_migration_duration_seconds_count"),
        metric(m, "rds_csi_migration_active_migrations"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_deterministic_and_differ_by_seed() {
        let a = pattern(1, 1000);
        assert_eq!(a.len(), 1000);
        assert_eq!(a, pattern(1, 1000));
        assert_eq!(&pattern(1, 4096)[..1000], &a[..]);
        assert_ne!(a, pattern(2, 1000));
        assert!(a.iter().any(|b| *b != 0));
    }

    #[test]
    fn sizes_read_in_gib() {
        assert_eq!(gib(GIB), "1.0 GiB");
        assert_eq!(gib(3 * GIB / 2), "1.5 GiB");
    }

    #[test]
    fn a_file_written_reads_back_and_is_not_a_device() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("p.bin");
        write_synced(&f, &pattern(3, 5000), true).unwrap();
        assert_eq!(read_head(&f, 5000).unwrap(), pattern(3, 5000));
        assert!(read_head(&f, 5001).unwrap_err().starts_with("read "));
        assert!(device_name(&f)
            .unwrap_err()
            .contains("is not a block device node"));
        assert!(write_synced(&d.path().join("none"), b"x", false)
            .unwrap_err()
            .starts_with("open "));
    }

    #[test]
    fn the_root_mount_is_seen() {
        let (_, fs) = mount_at(Path::new("/")).expect("/ is mounted");
        assert!(!fs.is_empty());
        assert_eq!(mount_at(Path::new("/surely/not/a/mount/point")), None);
        assert!(fs_size(Path::new("/")).unwrap() > 0);
    }

    #[test]
    fn metrics_absent_read_as_zero() {
        let m = Metrics::new("controller");
        assert_eq!(metric(&m, "rds_csi_no_such_series"), 0.0);
        assert!(migration_metrics(&m)
            .starts_with("rds_csi_migration_migrations_total{result=\"success\"}="));
    }
}
