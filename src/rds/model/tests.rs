//! Reading and rendering together: the real samples parse, the renderers reproduce them, and
//! every disk and pool round-trips through render and read.

use super::*;
use crate::rds::parse::parse_items;
use crate::rds::parse::Item;
use crate::rds::size::GIB;

// Samples pasted verbatim from /work/shared/reference/routeros.md.
const SAMPLE_DETAIL: &str = r#"type=file slot="pvc-test-123" slot-default="" parent="" fs=-
               model="/storage-pool/test.img"
               size=53 687 091 200 mount-filesystem=yes mount-read-only=no
               compress=no sector-size=512 raid-master=none
               nvme-tcp-export=yes nvme-tcp-server-port=4420
               nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-test-123"
               nvme-tcp-server-allow-host-name="" iscsi-export=no
               nfs-sharing=no smb-sharing=no media-sharing=no
               media-interface=none swap=no
               file-path=/storage-pool/test.img
               file-size=50.0GiB file-offset=0
"#;

const SAMPLE_LIST: &str = r#" 0  type=file slot="pvc-test-1" size=53 687 091 200
               file-path=/storage-pool/test1.img file-size=50.0GiB
               nvme-tcp-export=yes nvme-tcp-server-port=4420
               nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-test-1"

 1  type=file slot="pvc-test-2" size=107 374 182 400
               file-path=/storage-pool/test2.img file-size=100.0GiB
               nvme-tcp-export=yes nvme-tcp-server-port=4420
               nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-test-2"
"#;

const SAMPLE_POOL: &str = "slot=storage-pool type=partition mount-point=storage-pool file-system=btrfs size=7 949 127 950 336 free=5 963 595 964 416 use=25%\n";

const SAMPLE_POOL_OLD: &str = "name=/storage-pool type=directory size=7 681 574 174 720
               free=5 632 440 000 000 use=27%
               creation-time=jan/01/2025 00:00:00
";

const SAMPLE_FILES: &str = " 0   name=storage-pool/metal-csi type=directory
     last-modified=2025-11-11 16:47:07

 1   name=storage-pool/metal-csi/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img
     type=.img file size=10.0GiB last-modified=2025-11-11 14:32:41
";

fn exported(slot: &str, path: &str, size: u64) -> Disk {
    Disk {
        nvme_tcp_export: true,
        nvme_tcp_port: Some(4420),
        nvme_tcp_nqn: Some(format!("nqn.2000-02.com.mikrotik:{slot}")),
        ..Disk::file(slot, path, size)
    }
}

#[test]
fn sample_detail_parses() {
    let items = parse_items(SAMPLE_DETAIL).unwrap();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.get_str("fs"), Some("-"));
    assert_eq!(item.get_str("model"), Some("/storage-pool/test.img"));
    assert_eq!(item.get_bytes("file-size"), Ok(50 * GIB));
    assert_eq!(item.get_bool("mount-filesystem"), Ok(true));
    assert_eq!(item.get_u64("file-offset"), Ok(0));
    assert_eq!(item.fields().count(), 25);
    assert_eq!(
        Disk::from_item(item).unwrap(),
        exported("pvc-test-123", "/storage-pool/test.img", 53_687_091_200)
    );
}

#[test]
fn sample_list_parses() {
    let items = parse_items(SAMPLE_LIST).unwrap();
    assert_eq!(
        items.iter().map(Item::number).collect::<Vec<_>>(),
        [Some(0), Some(1)]
    );
    assert_eq!(
        Disk::from_items(&items).unwrap(),
        [
            exported("pvc-test-1", "/storage-pool/test1.img", 50 * GIB),
            exported("pvc-test-2", "/storage-pool/test2.img", 100 * GIB),
        ]
    );
}

#[test]
fn sample_pool_forms_parse() {
    let new = PoolCapacity::from_items(&parse_items(SAMPLE_POOL).unwrap()).unwrap();
    assert_eq!(
        new,
        PoolCapacity {
            size: 7_949_127_950_336,
            free: 5_963_595_964_416
        }
    );
    let items = parse_items(SAMPLE_POOL_OLD).unwrap();
    assert_eq!(
        items[0].get_str("creation-time"),
        Some("jan/01/2025 00:00:00")
    );
    assert_eq!(items[0].get_str("use"), Some("27%"));
    assert_eq!(
        PoolCapacity::from_items(&items).unwrap(),
        PoolCapacity {
            size: 7_681_574_174_720,
            free: 5_632_440_000_000
        }
    );
}

#[test]
fn sample_files_parse() {
    let items = parse_items(SAMPLE_FILES).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].get_str("name"), Some("storage-pool/metal-csi"));
    assert_eq!(items[0].get_str("type"), Some("directory"));
    assert_eq!(
        items[0].get_str("last-modified"),
        Some("2025-11-11 16:47:07")
    );
    assert_eq!(
        items[1].get_str("name"),
        Some("storage-pool/metal-csi/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img")
    );
    assert_eq!(items[1].get_str("type"), Some(".img file"));
    assert_eq!(items[1].get_bytes("size"), Ok(10 * GIB));
    assert_eq!(
        items[1].get_str("last-modified"),
        Some("2025-11-11 14:32:41")
    );
}

#[test]
fn renderer_reproduces_the_real_sample_byte_for_byte() {
    let disk = exported("pvc-test-123", "/storage-pool/test.img", 53_687_091_200);
    assert_eq!(render_disk_detail(&disk), SAMPLE_DETAIL);
}

#[test]
fn pool_renderer_reproduces_the_sample() {
    let cap = PoolCapacity {
        size: 7_949_127_950_336,
        free: 5_963_595_964_416,
    };
    assert_eq!(render_pool_capacity("storage-pool", &cap), SAMPLE_POOL);
}

#[test]
fn list_renderer_numbers_and_separates_items() {
    let mut second = exported("pvc-b", "/p/b.img", GIB);
    second.flags = "X".into();
    let text = render_disk_list(&[Disk::file("pvc-a", "/p/a.img", 2 * GIB), second.clone()]);
    assert!(text.starts_with(" 0  type=file slot=\"pvc-a\""), "{text}");
    assert!(text.contains("\n\n 1 X type=file slot=\"pvc-b\""), "{text}");
    let disks = Disk::from_items(&parse_items(&text).unwrap()).unwrap();
    assert_eq!(disks, [Disk::file("pvc-a", "/p/a.img", 2 * GIB), second]);
    assert!(disks[1].is_disabled());
    assert_eq!(render_disk_list(&[]), "");
}

#[test]
fn size_prefers_exact_size_over_human_file_size() {
    // 1.5 GiB + 512 prints as file-size=1.5GiB; only size= is exact.
    let disk = Disk::file("pvc-x", "/p/x.img", GIB + GIB / 2 + 512);
    let text = render_disk_detail(&disk);
    assert!(text.contains("file-size=1.5GiB"), "{text}");
    let items = parse_items(&text).unwrap();
    assert_eq!(
        Disk::from_item(&items[0]).unwrap().size_bytes,
        GIB + GIB / 2 + 512
    );
    let only_human = parse_items("type=file slot=\"a\" file-size=1.5GiB").unwrap();
    assert_eq!(
        Disk::from_item(&only_human[0]).unwrap().size_bytes,
        GIB + GIB / 2
    );
}

#[test]
fn model_errors() {
    let no_size = parse_items("type=file slot=\"a\"").unwrap();
    assert_eq!(
        Disk::from_item(&no_size[0]),
        Err(ModelError::Field(FieldError::Missing {
            key: "size".into()
        }))
    );
    let no_slot = parse_items("type=file size=1").unwrap();
    assert!(Disk::from_item(&no_slot[0]).is_err());
    let bad_port = parse_items("type=file slot=\"a\" size=1 nvme-tcp-server-port=70000").unwrap();
    assert!(matches!(
        Disk::from_item(&bad_port[0]),
        Err(ModelError::BadPort { value: 70000, .. })
    ));
    let bad_bool = parse_items("type=file slot=\"a\" size=1 nvme-tcp-export=maybe").unwrap();
    assert!(matches!(
        Disk::from_item(&bad_bool[0]),
        Err(ModelError::Field(_))
    ));
    let over = parse_items("size=1 free=2").unwrap();
    assert_eq!(
        PoolCapacity::from_items(&over),
        Err(ModelError::FreeAboveSize { size: 1, free: 2 })
    );
    assert_eq!(
        PoolCapacity::from_items(&[]),
        Err(ModelError::NotExactlyOne(0))
    );
    let unset =
        parse_items("type=file slot=\"a\" size=1 file-path=\"\" nvme-tcp-server-nqn=-").unwrap();
    let d = Disk::from_item(&unset[0]).unwrap();
    assert_eq!((d.file_path, d.nvme_tcp_nqn), (None, None));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn arb_slot() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    }

    fn arb_disk() -> impl Strategy<Value = Disk> {
        (
            arb_slot(),
            proptest::option::of("(/[A-Za-z0-9._-]{1,20}){1,4}"),
            0u64..=(1u64 << 41),
            any::<bool>(),
            proptest::option::of(1u16..),
            any::<bool>(),
            "(X|R|XR|D)?",
        )
            .prop_map(|(slot, file_path, blocks, export, port, nqn, flags)| Disk {
                nvme_tcp_nqn: nqn.then(|| format!("nqn.2000-02.com.mikrotik:{slot}")),
                slot,
                disk_type: "file".into(),
                file_path,
                size_bytes: blocks * 512,
                nvme_tcp_export: export,
                nvme_tcp_port: port,
                flags,
            })
    }

    proptest! {
        #[test]
        fn detail_round_trips(disk in arb_disk()) {
            let items = parse_items(&render_disk_detail(&disk)).unwrap();
            prop_assert_eq!(items.len(), 1);
            prop_assert_eq!(Disk::from_item(&items[0]).unwrap(), disk);
        }

        #[test]
        fn list_round_trips(disks in proptest::collection::vec(arb_disk(), 0..12)) {
            let items = parse_items(&render_disk_list(&disks)).unwrap();
            prop_assert_eq!(Disk::from_items(&items).unwrap(), disks);
        }

        #[test]
        fn pool_round_trips(size in any::<u64>(), free_frac in 0u64..=100) {
            let free = (u128::from(size) * u128::from(free_frac) / 100) as u64;
            let cap = PoolCapacity { size, free };
            let items = parse_items(&render_pool_capacity("storage-pool", &cap)).unwrap();
            prop_assert_eq!(PoolCapacity::from_items(&items).unwrap(), cap);
        }
    }
}
