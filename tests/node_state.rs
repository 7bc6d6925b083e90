//! Issue 15: earlier state — the volume context a request carries, the stage records the node
//! wrote, the mounts at the staging and target paths, the paths themselves — is validated
//! and checked against the kernel before it is trusted or used as a reason to refuse. On
//! real loop devices with real mkfs/mount, each test in its own pid namespace (see
//! `run_here`).

mod common;

use std::path::Path;

use common::loop_node::*;
use tonic::Code;

/// Issue 15.1, replayed: NodeStage of B whose context's nvmeAddress carries a second line
/// naming A's backing file, while A is staged and block-published, then NodeUnstage of B.
/// Before: B's record said `target=<A's file>`, and unstaging B detached A. Now: the stage
/// is INVALID_ARGUMENT naming the key, nothing is saved or attached, and A is untouched.
/// The same for every other way a context can point B at A's disk or smuggle a line in.
#[test]
fn a_context_that_could_inject_is_refused_before_anything_is_saved_or_attached() {
    on_loop_node(async |h| {
        let a = h.block_published("pvc-a").await;
        let a_loops = a.loops();
        let a_dev = dev_of(&a.target);
        let b = h.volume("pvc-b", true, &[]);
        let a_file = a.file.display().to_string();
        let cases = [
            ("nvmeAddress", format!("127.0.0.1\ntarget={a_file}")),
            (
                "nvmeAddress",
                "127.0.0.1,hostnqn=nqn.2014-08.org.nvmexpress:x".into(),
            ),
            (
                "nqn",
                format!("nqn.2000-02.com.mikrotik:pvc-b\ntarget={a_file}"),
            ),
            ("volumeFile", "/storage-pool/csi/../csi/pvc-a.img".into()),
            (
                "volumeFile",
                "/storage-pool/csi/pvc-b.img\ntarget=/x".into(),
            ),
            ("fsType", "ext4\ntarget=/x".into()),
        ];
        for (key, value) in cases {
            let bad = b.with(key, &value);
            for cap in [block_cap(), mount_cap("")] {
                let m = expect_code(h.stage(&bad, cap).await, Code::InvalidArgument, &[key]);
                assert!(!m.contains('\n'), "the value is echoed escaped: {m}");
                assert!(!h.record("pvc-b").exists(), "{key}: a record was saved");
                assert!(b.loops().is_empty(), "{key}: B was attached");
            }
            h.unstage(&b).await.unwrap();
            assert_eq!(a.loops(), a_loops, "{key}: A's device changed");
            assert_eq!(dev_of(&a.target), a_dev);
        }
        // A well-formed context naming A's own disk: B may not take it over either (else
        // unstaging B would detach A).
        let takeover = b.with("volumeFile", "/storage-pool/csi/pvc-a.img");
        expect_code(
            h.stage(&takeover, block_cap()).await,
            Code::FailedPrecondition,
            &["pvc-a", "its own disk"],
        );
        assert!(!h.record("pvc-b").exists());
        h.unstage(&b).await.unwrap();
        assert_eq!(a.loops(), a_loops);
        h.release(&a).await;
    });
}

/// A stage record tampered with — rewritten in the first format with a second `target=`
/// line (what the old writer produced for the failing input above), or truncated — is
/// refused, not misread: NodeUnstage of B answers FAILED_PRECONDITION naming the file, and
/// neither A's device nor B's is detached. Once the operator removes the bad file, B stages
/// and unstages again.
#[test]
fn a_record_tampered_with_or_truncated_is_refused_and_detaches_nothing() {
    on_loop_node(async |h| {
        let [a, b] = ["pvc-a", "pvc-b"].map(|id| h.volume(id, false, &[]));
        for v in [&a, &b] {
            h.stage(v, block_cap()).await.unwrap();
        }
        h.publish(&a, block_cap(), false).await.unwrap();
        let (a_loops, b_loops) = (a.loops(), b.loops());
        let good = std::fs::read_to_string(h.record("pvc-b")).unwrap();
        let v1 = format!(
            "volume_id=pvc-b\ntarget={}\naccess=block\nstaging_path={}\ndevice=\ndev=\nfs_type=\n\
             address=127.0.0.1\ntarget={}\nport=4420\nctrl_loss_tmo=600\nreconnect_delay=2\n\
             keep_alive_tmo=5\n",
            b.file.display(),
            b.staging.display(),
            a.file.display()
        );
        let truncated = good[..good.len() / 3].to_owned();
        let retargeted = good.replace(
            &b.file.display().to_string(),
            &format!("{}\\n", a.file.display()),
        );
        for (text, words) in [
            (v1.as_str(), &["target appears twice"][..]),
            (truncated.as_str(), &["damaged"][..]),
            (retargeted.as_str(), &["target"][..]),
        ] {
            std::fs::write(h.record("pvc-b"), text).unwrap();
            let mut want = vec!["staged/pvc-b", "remove the file"];
            want.extend_from_slice(words);
            expect_code(h.unstage(&b).await, Code::FailedPrecondition, &want);
            // NodeStage of B does not trust it either.
            expect_code(
                h.stage(&b, block_cap()).await,
                Code::FailedPrecondition,
                &["staged/pvc-b"],
            );
            assert_eq!((a.loops(), b.loops()), (a_loops.clone(), b_loops.clone()));
        }
        std::fs::remove_file(h.record("pvc-b")).unwrap();
        h.stage(&b, block_cap()).await.unwrap();
        assert_eq!(
            b.loops(),
            b_loops,
            "the attached device is found again, not doubled"
        );
        h.unstage_detached(&b).await;
        assert_eq!(a.loops(), a_loops);
        h.release(&a).await;
    });
}

/// Issue 15.2 on the RPC side: a record from an earlier boot is not trusted by publish or
/// stats (NOT_FOUND / FAILED_PRECONDITION "stage it again") and the next NodeStage of the
/// volume confirms it (rewrites it with the running boot). A record of the first format is
/// this boot's only if it was written after the boot began.
#[test]
fn a_record_from_an_earlier_boot_is_confirmed_by_the_next_stage_and_trusted_by_nothing_else() {
    on_loop_node(async |h| {
        let v = h.fs_staged("pvc-boot", "ext4").await;
        let path = h.record("pvc-boot");
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(boot.trim()),
            "the record carries the boot id: {text}"
        );
        std::fs::write(
            &path,
            text.replace(boot.trim(), "11111111-2222-4333-8444-555555555555"),
        )
        .unwrap();
        expect_code(
            h.publish(&v, mount_cap("ext4"), false).await,
            Code::FailedPrecondition,
            &["pvc-boot", "not staged"],
        );
        let e = h.stats(&v, &v.staging).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{}", e.message());
        // The kubelet stages it again after the reboot: confirmed, and usable.
        h.stage(&v, mount_cap("ext4")).await.unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains(boot.trim()));
        h.publish(&v, mount_cap("ext4"), false).await.unwrap();
        h.release(&v).await;
    });
}

/// Mounts replaced under the driver (issue 15.3 and 15.9): a staging mount that is no longer
/// the volume's device is never bound into a pod, and neither unpublish nor unstage unmounts
/// something that is not the volume's — they refuse, naming what is mounted, and leave it.
#[test]
fn mounts_replaced_under_the_driver_are_never_published_or_unmounted() {
    on_loop_node(async |h| {
        let v = h.fs_published("pvc-swap", "ext4").await;
        let dev = dev_of(&v.device());

        // Something else mounted over the target: unpublish refuses and leaves it.
        mount_tmpfs(&v.target);
        expect_code(
            h.unpublish(&v).await,
            Code::FailedPrecondition,
            &["pvc-swap", "not a device of this volume", "left mounted"],
        );
        assert_eq!(mount_at(&v.target).unwrap().1, "tmpfs");
        umount_lazy(&v.target);
        // Underneath is the volume's own bind: that one is unmounted.
        h.unpublish(&v).await.unwrap();
        assert!(mount_at(&v.target).is_none() && !v.target.exists());

        // The staging mount replaced: publishing it anywhere is refused.
        umount_lazy(&v.staging);
        mount_tmpfs(&v.staging);
        expect_code(
            h.publish(&v, mount_cap("ext4"), false).await,
            Code::FailedPrecondition,
            &["pvc-swap", "staging path", &dev],
        );
        assert!(mount_at(&v.target).is_none(), "nothing was bound");
        // ...and unstage does not unmount it, nor detach the device.
        expect_code(
            h.unstage(&v).await,
            Code::FailedPrecondition,
            &["not a device of this volume"],
        );
        assert_eq!(mount_at(&v.staging).unwrap().1, "tmpfs");
        assert_eq!(v.loops().len(), 1);
        umount_lazy(&v.staging);
        h.unstage_detached(&v).await;

        // No record at all: a mount at the staging path is nobody's the node knows of.
        mount_tmpfs(&v.staging);
        expect_code(
            h.unstage(&v).await,
            Code::FailedPrecondition,
            &["not a device of this volume"],
        );
        assert_eq!(mount_at(&v.staging).unwrap().1, "tmpfs");
        umount_lazy(&v.staging);
        h.unstage(&v).await.unwrap();
    });
}

/// Issue 15.9: paths that resolve through a symbolic link are refused at every RPC that
/// writes or mounts there, and nothing lands where the link points; a block publish never
/// deletes or replaces a regular file at the target.
#[test]
fn paths_through_symlinks_are_refused_and_a_regular_file_at_a_block_target_is_kept() {
    on_loop_node(async |h| {
        let victim = h.path("victim");
        std::fs::create_dir_all(&victim).unwrap();
        let root = h.root();
        let linked = |dir: &str| {
            let link = root.join(dir);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(&victim, &link).unwrap();
            link
        };
        // Staging path through a link.
        let mut s = h.volume("pvc-link-s", true, &[]);
        let link = linked("kubelet/plugins/linked");
        s.staging = link.join("globalmount");
        expect_code(
            h.stage(&s, mount_cap("ext4")).await,
            Code::FailedPrecondition,
            &["staging_target_path", "symbolic link"],
        );
        assert!(s.loops().is_empty() && !h.record("pvc-link-s").exists());
        // Filesystem target through a link.
        let mut f = h.fs_staged("pvc-link-f", "ext4").await;
        let link = linked("kubelet/pods/p2");
        f.target = link.join("mount");
        expect_code(
            h.publish(&f, mount_cap("ext4"), false).await,
            Code::FailedPrecondition,
            &["target_path", "symbolic link"],
        );
        // Block target that is itself a link.
        let mut b = h.volume("pvc-link-b", false, &[]);
        h.stage(&b, block_cap()).await.unwrap();
        let t = h.path("kubelet/pods/p3/dev");
        std::fs::create_dir_all(&t).unwrap();
        b.target = t.join("pvc-link-b");
        std::os::unix::fs::symlink(victim.join("node"), &b.target).unwrap();
        expect_code(
            h.publish(&b, block_cap(), false).await,
            Code::FailedPrecondition,
            &["target_path", "symbolic link"],
        );
        assert_eq!(
            std::fs::read_dir(&victim).unwrap().count(),
            0,
            "nothing landed where the links point"
        );
        assert!(mount_at(&victim).is_none());

        // A regular file at a block target: refused, kept byte for byte, and unpublish leaves it.
        std::fs::remove_file(&b.target).unwrap();
        std::fs::write(&b.target, b"a pod's data").unwrap();
        expect_code(
            h.publish(&b, block_cap(), false).await,
            Code::FailedPrecondition,
            &["regular file", "left alone"],
        );
        h.unpublish(&b).await.unwrap();
        assert_eq!(std::fs::read(&b.target).unwrap(), b"a pod's data");
        std::fs::remove_file(&b.target).unwrap();
        h.publish(&b, block_cap(), false).await.unwrap();
        h.unpublish(&b).await.unwrap();

        for v in [&f, &b] {
            h.unstage(v).await.unwrap();
            assert!(v.loops().is_empty());
        }
    });
}

/// Issue 15.5: a read-only publish of a block volume is refused — by the `readonly` field
/// and by a reader-only access mode — and nothing is made at the target; a read-only
/// filesystem publish is read-only for real.
#[test]
fn a_read_only_block_publish_is_refused_and_a_read_only_filesystem_refuses_writes() {
    use csi_proto::v1::volume_capability::access_mode::Mode;
    on_loop_node(async |h| {
        let b = h.volume("pvc-ro-b", false, &[]);
        h.stage(&b, block_cap()).await.unwrap();
        expect_code(
            h.publish(&b, block_cap(), true).await,
            Code::InvalidArgument,
            &["read-only", "block"],
        );
        let mut reader = block_cap();
        reader.access_mode.as_mut().unwrap().mode = Mode::SingleNodeReaderOnly as i32;
        expect_code(
            h.publish(&b, reader, false).await,
            Code::InvalidArgument,
            &["read-only", "block"],
        );
        assert!(
            std::fs::symlink_metadata(&b.target).is_err(),
            "nothing made"
        );
        h.unstage(&b).await.unwrap();

        let f = h.fs_staged("pvc-ro-f", "ext4").await;
        h.publish(&f, mount_cap("ext4"), true).await.unwrap();
        let e = std::fs::write(f.target.join("x"), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
        h.release(&f).await;
        assert!(Path::new(&f.file).exists());
    });
}

/// The first record format (`key=value` lines, what the previous version wrote) on real
/// devices: a record of this boot is checked against the kernel and serves stats, publish,
/// unpublish and unstage as before; one written before the running boot began is trusted by
/// nothing until the next NodeStage confirms it (rewritten in today's format).
#[test]
fn a_record_of_the_first_format_is_checked_against_the_kernel_and_still_serves() {
    on_loop_node(async |h| {
        let f = h.volume("pvc-v1-f", true, &[]);
        let b = h.volume("pvc-v1-b", false, &[]);
        h.stage(&f, mount_cap("ext4")).await.unwrap();
        h.publish(&f, mount_cap("ext4"), false).await.unwrap();
        h.stage(&b, block_cap()).await.unwrap();
        h.publish(&b, block_cap(), false).await.unwrap();
        std::fs::write(f.target.join("kept"), b"v1").unwrap();
        let first_format = |v: &Vol, access: &str, fs: &str| {
            let dev = v.device();
            format!(
                "volume_id={}\ntarget={}\naccess={access}\nstaging_path={}\ndevice={}\ndev={}\n\
                 fs_type={fs}\naddress=127.0.0.1\nport=4420\nctrl_loss_tmo=600\n\
                 reconnect_delay=2\nkeep_alive_tmo=5\n",
                v.id,
                v.file.display(),
                v.staging.display(),
                dev.file_name().unwrap().to_string_lossy(),
                dev_of(&dev),
            )
        };
        let (f_v1, b_v1) = (
            first_format(&f, "filesystem", "ext4"),
            first_format(&b, "block", ""),
        );
        std::fs::write(h.record(&f.id), &f_v1).unwrap();
        std::fs::write(h.record(&b.id), &b_v1).unwrap();
        for (v, cap) in [(&f, mount_cap("ext4")), (&b, block_cap())] {
            let c = h.condition(v, &v.target).await;
            assert!(!c.abnormal, "{}: {}", v.id, c.message);
            // Publishing again is the same publish (idempotent), from the record's facts.
            h.publish(v, cap, false).await.unwrap();
        }
        assert_eq!(std::fs::read(f.target.join("kept")).unwrap(), b"v1");

        // Written before this boot began: not this boot's; the next stage confirms it.
        let before_boot = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        std::fs::File::options()
            .write(true)
            .open(h.record(&f.id))
            .unwrap()
            .set_modified(before_boot)
            .unwrap();
        let other = Vol {
            target: h.path("kubelet/pods/p2/volumes/pvc-v1-f/mount"),
            ..f.clone()
        };
        expect_code(
            h.publish(&other, mount_cap("ext4"), false).await,
            Code::FailedPrecondition,
            &["pvc-v1-f", "not staged"],
        );
        assert!(mount_at(&other.target).is_none());
        h.stage(&f, mount_cap("ext4")).await.unwrap();
        let text = std::fs::read_to_string(h.record(&f.id)).unwrap();
        assert!(
            text.contains("\"version\""),
            "rewritten in today's format: {text}"
        );

        for v in [&f, &b] {
            h.unpublish(v).await.unwrap();
            h.unstage(v).await.unwrap();
            assert!(v.loops().is_empty(), "{}", v.id);
            assert!(!h.record(&v.id).exists());
        }
    });
}

/// Records tampered with, of the valid shape: B's record names A's device (and then A's
/// staging path). A recorded device counts as the volume's only if the kernel does not
/// show it as something else's now, so neither NodeUnpublish nor NodeUnstage of B unmounts
/// anything of A — they refuse, naming what is mounted. With B's true record back, B
/// unstages and A never noticed.
#[test]
fn a_record_naming_another_volumes_device_never_unmounts_that_volume() {
    on_loop_node(async |h| {
        let a = h.fs_published("pvc-a", "ext4").await;
        let b = h.fs_published("pvc-b", "ext4").await;
        std::fs::write(a.target.join("a"), b"a's data").unwrap();
        let (a_loops, a_dev) = (a.loops(), dev_of(&a.device()));
        let good = std::fs::read_to_string(h.record(&b.id)).unwrap();
        let mut j: serde_json::Value = serde_json::from_str(&good).unwrap();
        j["device"] = serde_json::json!({ "name": a_loops[0], "dev": a_dev });
        let names_a = serde_json::to_string_pretty(&j).unwrap();
        j["staging_path"] = a.staging.to_string_lossy().into();
        let names_a_and_its_path = serde_json::to_string_pretty(&j).unwrap();

        // A's filesystem bound at B's target (a mount replaced under the driver) while B's
        // record names A's device: left mounted.
        h.unpublish(&b).await.unwrap();
        std::fs::create_dir_all(&b.target).unwrap();
        let st = std::process::Command::new("mount")
            .arg("--bind")
            .arg(&a.staging)
            .arg(&b.target)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::write(h.record(&b.id), &names_a).unwrap();
        expect_code(
            h.unpublish(&b).await,
            Code::FailedPrecondition,
            &["not a device of this volume", &a_dev],
        );
        assert_eq!(mount_at(&b.target).unwrap().0, a_dev, "left mounted");
        umount_lazy(&b.target);

        // B's record names A's staging path too: B's unstage leaves A's staging mount alone.
        std::fs::write(h.record(&b.id), &names_a_and_its_path).unwrap();
        expect_code(
            h.unstage(&b).await,
            Code::FailedPrecondition,
            &["not a device of this volume", &a_dev],
        );
        assert_eq!(
            mount_at(&a.staging).unwrap().0,
            a_dev,
            "A's staging mount kept"
        );
        assert_eq!(std::fs::read(a.target.join("a")).unwrap(), b"a's data");
        assert_eq!(b.loops().len(), 1, "nothing detached on that record's word");

        std::fs::write(h.record(&b.id), &good).unwrap();
        h.unstage_detached(&b).await;
        assert_eq!(a.loops(), a_loops);
        assert_eq!(std::fs::read(a.target.join("a")).unwrap(), b"a's data");
        h.release(&a).await;
    });
}

/// A mount replaced under the driver, seen by NodeExpandVolume: the filesystem at the
/// volume path is grown only if it is on the volume's own device. Asked to expand A at the
/// path where B's xfs is mounted (B's device already larger), the call is refused and B is
/// not grown; B's own expansion then grows it.
#[test]
fn expand_grows_only_a_filesystem_on_the_volumes_own_device() {
    use csi_proto::v1 as csi;
    on_loop_node(async |h| {
        let a = h.fs_published("pvc-grow-a", "xfs").await;
        let b = h.fs_published("pvc-grow-b", "xfs").await;
        set_file_len(&b.file, 2 * SIZE);
        let st = std::process::Command::new("losetup")
            .arg("-c")
            .arg(b.device())
            .status()
            .unwrap();
        assert!(st.success());
        let blocks = |v: &Vol| {
            let s = rustix::fs::statvfs(&v.target).unwrap();
            s.f_blocks * s.f_frsize
        };
        let b_before = blocks(&b);
        let expand = |id: &str, path: &Path, bytes: u64| csi::NodeExpandVolumeRequest {
            volume_id: id.into(),
            volume_path: path.to_string_lossy().into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: bytes as i64,
                limit_bytes: 0,
            }),
            volume_capability: Some(mount_cap("xfs")),
            ..Default::default()
        };
        let r =
            h.c.node_expand_volume(expand(&a.id, &b.target, SIZE))
                .await
                .map(|_| ());
        expect_code(
            r,
            Code::FailedPrecondition,
            &["not a device of this volume", &dev_of(&b.device())],
        );
        assert_eq!(blocks(&b), b_before, "B was grown on A's request");
        let r =
            h.c.node_expand_volume(expand(&b.id, &b.target, 2 * SIZE))
                .await
                .unwrap()
                .into_inner();
        assert_eq!(r.capacity_bytes, (2 * SIZE) as i64);
        assert!(
            blocks(&b) > b_before + SIZE / 2,
            "B grows on its own request"
        );
        for v in [&a, &b] {
            h.unpublish(v).await.unwrap();
            h.unstage(v).await.unwrap();
        }
    });
}
