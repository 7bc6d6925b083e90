//! Records are input: they round-trip, and a record tampered with, truncated, from another
//! format version or from an earlier boot is refused or recognised — never misread.

use super::*;
use crate::node::transport::NvmeTarget;

const BOOT: &str = "6f1c0a4e-8a3b-4c1d-9e2f-0123456789ab";
const OTHER_BOOT: &str = "11111111-2222-4333-8444-555555555555";

fn boot() -> Boot {
    Boot {
        id: BootId::parse(BOOT).unwrap(),
        started: SystemTime::now() - std::time::Duration::from_secs(3600),
    }
}

pub(crate) fn nvme_record(volume_id: &str, boot: &str) -> StageRecord {
    StageRecord {
        volume_id: volume_id.into(),
        boot_id: Some(BootId::parse(boot).unwrap()),
        target: Target::NvmeTcp(NvmeTarget {
            nqn: Nqn::new(format!("nqn.2000-02.com.mikrotik:{volume_id}")).unwrap(),
            address: NvmeAddress::parse("10.0.0.5").unwrap(),
            port: 4420,
            tunables: Tunables::default(),
        }),
        access: AccessType::Mount,
        staging_path: "/var/lib/kubelet/plugins/x/globalmount".into(),
        device: Some(StagedDevice {
            name: "nvme1n1".into(),
            dev: DevNum::new(259, 3),
        }),
        fs_type: Some(FsType::Ext4),
        formatting: None,
    }
}

fn write(d: &Path, id: &str, text: &str) {
    std::fs::create_dir_all(d.join("staged")).unwrap();
    std::fs::write(d.join("staged").join(id), text).unwrap();
}

fn damaged(d: &Path, id: &str) -> String {
    let e = StageRecord::load(d, id, &boot()).unwrap_err();
    assert!(matches!(e, NodeError::RecordDamaged { .. }), "{e}");
    let m = e.to_string();
    assert!(
        m.contains(&format!("staged/{id}")) && m.contains("remove the file"),
        "{m}"
    );
    m
}

#[test]
fn records_round_trip_and_survive_a_restart() {
    let d = tempfile::tempdir().unwrap();
    let loop_rec = StageRecord {
        target: Target::LoopFile("/data/storage-pool/csi/pvc-2.img".into()),
        access: AccessType::Block,
        device: None,
        fs_type: None,
        formatting: Some(FsType::Xfs),
        ..nvme_record("pvc-2", BOOT)
    };
    for r in [nvme_record("pvc-1", BOOT), loop_rec] {
        r.save(d.path()).unwrap();
        assert_eq!(
            StageRecord::load(d.path(), &r.volume_id, &boot()).unwrap(),
            Some(r)
        );
    }
    let (all, bad) = StageRecord::all(d.path(), &boot()).unwrap();
    assert_eq!((all.len(), bad.len()), (2, 0));
    StageRecord::remove(d.path(), "pvc-1").unwrap();
    StageRecord::remove(d.path(), "pvc-1").unwrap();
    assert_eq!(StageRecord::load(d.path(), "pvc-1", &boot()).unwrap(), None);
}

#[test]
fn a_record_tampered_with_or_truncated_is_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    nvme_record("pvc-1", BOOT).save(d.path()).unwrap();
    let good = std::fs::read_to_string(d.path().join("staged/pvc-1")).unwrap();
    let cases = [
        (good[..good.len() / 2].to_owned(), "EOF"),
        (good.replacen('{', "{\"extra\": 1,", 1), "unknown field"),
        (
            good.replacen("\"access\"", "\"access\": \"block\", \"access\"", 1),
            "duplicate field",
        ),
        (
            good.replace("\"version\": 2", "\"version\": 3"),
            "version 3",
        ),
        (good.replace("10.0.0.5", "10.0.0.5\\ntarget=/x"), "address"),
        (
            good.replace("mikrotik:pvc-1", "mikrotik:pvc-1,hostnqn=x"),
            "nqn",
        ),
        (
            good.replace("/var/lib/kubelet/plugins/x/globalmount", "relative/path"),
            "staging_path",
        ),
        (good.replace("\"nvme1n1\"", "\"../sda\""), "device"),
        (good.replace("259:3", "x"), "dev"),
        (good.replace(BOOT, "not-a-uuid"), "boot"),
        ("".to_owned(), "no "),
    ];
    for (text, words) in cases {
        write(d.path(), "pvc-1", &text);
        let m = damaged(d.path(), "pvc-1");
        assert!(m.contains(words), "{words:?} not in {m}");
    }
    // A record copied to another volume's file is not that volume's.
    write(d.path(), "pvc-2", &good);
    assert!(damaged(d.path(), "pvc-2").contains("pvc-1"));
}

#[test]
fn a_record_of_the_first_format_loads_through_the_same_checks() {
    let d = tempfile::tempdir().unwrap();
    let v1 = "volume_id=pvc-1\ntarget=nqn.2000-02.com.mikrotik:pvc-1\naccess=filesystem\n\
              staging_path=/var/lib/kubelet/plugins/x/globalmount\ndevice=nvme1n1\ndev=259:3\n\
              fs_type=ext4\naddress=10.0.0.5\nport=4420\nctrl_loss_tmo=600\nreconnect_delay=2\n\
              keep_alive_tmo=5\n";
    write(d.path(), "pvc-1", v1);
    // Written after the running boot started: it is this boot's.
    let r = StageRecord::load(d.path(), "pvc-1", &boot())
        .unwrap()
        .unwrap();
    assert_eq!(r, nvme_record("pvc-1", BOOT));
    // A loop record of the first format: the target is the backing file.
    let loop_v1 = v1
        .replace(
            "nqn.2000-02.com.mikrotik:pvc-1",
            "/data/storage-pool/csi/pvc-1.img",
        )
        .replace("access=filesystem", "access=block");
    write(d.path(), "pvc-1", &loop_v1);
    let r = StageRecord::load(d.path(), "pvc-1", &boot())
        .unwrap()
        .unwrap();
    assert_eq!(
        r.target,
        Target::LoopFile("/data/storage-pool/csi/pvc-1.img".into())
    );
    // Written before the running boot began (the boot started after the file): no boot.
    let later = Boot {
        started: SystemTime::now() + std::time::Duration::from_secs(60),
        ..boot()
    };
    let r = StageRecord::load(d.path(), "pvc-1", &later)
        .unwrap()
        .unwrap();
    assert_eq!(r.boot_id, None);
    assert!(!r.of_boot(&later.id));
}

/// The failing input of issue 15.1 as the old writer left it: an address carrying a second
/// `target=` line. The first format read the last one; it is refused now.
#[test]
fn a_first_format_record_with_a_repeated_or_unknown_key_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let v1 = "volume_id=pvc-b\ntarget=/data/storage-pool/csi/pvc-b.img\naccess=block\n\
              staging_path=/s\ndevice=\ndev=\nfs_type=\naddress=127.0.0.1\n\
              target=/data/storage-pool/csi/pvc-a.img\nport=4420\nctrl_loss_tmo=600\n\
              reconnect_delay=2\nkeep_alive_tmo=5\n";
    write(d.path(), "pvc-b", v1);
    assert!(damaged(d.path(), "pvc-b").contains("target appears twice"));
    write(
        d.path(),
        "pvc-b",
        &v1.replace("target=/data/storage-pool/csi/pvc-a.img\n", "owner=x\n"),
    );
    assert!(damaged(d.path(), "pvc-b").contains("unknown field"));
    write(
        d.path(),
        "pvc-b",
        &v1.replace(
            "target=/data/storage-pool/csi/pvc-a.img\n",
            "no equals sign\n",
        ),
    );
    assert!(damaged(d.path(), "pvc-b").contains("not key=value"));
}

#[test]
fn records_of_an_earlier_boot_are_recognised() {
    let d = tempfile::tempdir().unwrap();
    nvme_record("pvc-1", OTHER_BOOT).save(d.path()).unwrap();
    let r = StageRecord::load(d.path(), "pvc-1", &boot())
        .unwrap()
        .unwrap();
    assert!(!r.of_boot(&boot().id));
    assert!(r.of_boot(&BootId::parse(OTHER_BOOT).unwrap()));
}

#[test]
fn unreadable_records_are_reported_not_skipped() {
    let d = tempfile::tempdir().unwrap();
    nvme_record("pvc-1", BOOT).save(d.path()).unwrap();
    write(d.path(), "pvc-2", "{");
    write(d.path(), "Bad Name", "{}");
    let (ok, bad) = StageRecord::all(d.path(), &boot()).unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(bad.len(), 2, "{bad:?}");
}

#[test]
fn the_running_boot_is_read_from_the_proc_root() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("sys/kernel/random")).unwrap();
    std::fs::write(
        d.path().join("sys/kernel/random/boot_id"),
        format!("{BOOT}\n"),
    )
    .unwrap();
    std::fs::write(d.path().join("stat"), "cpu 1 2 3\nbtime 1700000000\n").unwrap();
    let b = Boot::current(d.path()).unwrap();
    assert_eq!(b.id.as_str(), BOOT);
    assert_eq!(
        b.started,
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
    );
    assert!(Boot::current(&d.path().join("nowhere")).is_err());
}
