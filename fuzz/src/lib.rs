//! The checks behind every fuzz target, one function per target.
//!
//! Each function takes the raw fuzzer input, feeds it to a parser of outside text exactly as
//! the driver receives it (bytes from SSH are decoded lossily, as `rds::transport` does;
//! `&str` APIs get the input only when it is UTF-8), and asserts properties that must hold
//! for EVERY input: no panic, and where a value is accepted, that it satisfies the rules the
//! code documents (ranges, allow-lists) and survives a round trip through the matching
//! renderer. A failed assertion is a crash to libFuzzer.
//!
//! The same file is compiled into the root crate's `tests/fuzz_regressions.rs` (with
//! `#[path]`), which replays `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through
//! [`TARGETS`] under `cargo test`: the fuzz targets and the regression tests cannot drift apart.

use std::collections::HashMap;
use std::path::Path;

use node_io::dev_num::DevNum;
use node_io::device_path::NvmeDevice;
use node_io::fabrics::{self, ConnectOptions, ConnectReply, OptionValue};
use node_io::mountinfo::{parse_line, MountInfo, MountTable};
use node_io::sysfs::{ControllerState, TransportAddress};
use node_io::uevent::Uevent;
use rds_csi::controller::naming::{snapshot_slot, SnapshotId, VolumeName};
use rds_csi::controller::params::VolumeParams;
use rds_csi::csi::endpoint::{Endpoint, MetricsAddress};
use rds_csi::rds::command::{Command, MIKROTIK_NQN_PREFIX};
use rds_csi::rds::size::{group_digits, human_size, parse_routeros_bytes, MIB};
use rds_csi::rds::{
    classify_output, parse_disks, parse_items, parse_user_size, plan_volume_size,
    render_disk_detail, render_disk_list, render_pool_capacity, routeros_size_arg, visit_items,
    BasePath, Disk, ListingError, Nqn, PoolCapacity, RdsErrorKind, RdsPath, Slot, SlotPrefix,
};
use rds_csi::simulator::commands::{self, Cond, Op, Request, Target};
use rds_csi::simulator::faults::Faults;
use rds_csi::volume::context::VolumeContext;
use rds_csi::volume::{keys, FsType, MigrationTimeout, VolumeId};

/// A target's check: panics (fails) on an input that breaks a property.
pub type Check = fn(&[u8]);

/// Every fuzz target: its name (a `[[bin]]` in fuzz/Cargo.toml, a directory under
/// fuzz/corpus/ and fuzz/regressions/) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("endpoint", endpoint),
    ("device_path", device_path),
    ("routeros_print", routeros_print),
    ("routeros_error", routeros_error),
    ("sizes", sizes),
    ("mountinfo", mountinfo),
    ("uevent", uevent),
    ("fabrics_reply", fabrics_reply),
    ("sysfs_attrs", sysfs_attrs),
    ("storageclass_params", storageclass_params),
    ("volume_ids_nqns", volume_ids_nqns),
    ("volume_context", volume_context),
    ("simulator_command", simulator_command),
];

/// The base path the checks configure (the one the deploy manifests and tests use).
pub const BASE_PATH: &str = "/storage-pool/csi";

fn base() -> BasePath {
    BasePath::new(BASE_PATH).expect("the base path is valid")
}

/// `key=value` lines (split at the first `=`; a line without `=` is a key with an empty
/// value), the decoding used for string maps (StorageClass parameters, volume contexts).
pub fn key_values(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect()
}

/// `--endpoint` / `--metrics-address` flags: never panic; accepted endpoints round-trip.
pub fn endpoint(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = s.parse::<Endpoint>() {
        let shown = e.to_string();
        assert_eq!(shown.parse::<Endpoint>().as_ref().ok(), Some(&e), "{s:?}");
    }
    let _ = s.parse::<MetricsAddress>();
}

/// NVMe device names and `/dev` paths: an accepted device renders to a name (and a path
/// under /dev) that parses back to the same device.
pub fn device_path(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(dev) = NvmeDevice::parse(s) else {
        return;
    };
    let shown = dev.to_string();
    assert_eq!(
        NvmeDevice::parse(&shown).ok().as_ref(),
        Some(&dev),
        "{s:?} shown as {shown:?}"
    );
    let path = dev.dev_path(Path::new("/dev"));
    let path = path.to_str().expect("a parsed device's path is UTF-8");
    assert_eq!(
        NvmeDevice::parse(path).ok().as_ref(),
        Some(&dev),
        "{s:?} at {path:?}"
    );
    let whole = dev.whole_disk();
    assert_eq!(whole.partition(), None, "{s:?}");
    assert_eq!(whole.is_block(), dev.is_block(), "{s:?}");
    assert_eq!(whole == dev, dev.partition().is_none(), "{s:?}");
}

/// RouterOS `print detail` output: items, typed disks and pool capacity. Whatever parses as
/// a disk or a pool renders (with the simulator's renderer) to text that parses back to the
/// same value, byte-exact sizes included. The one-pass disk reader (`parse_disks`) and the
/// lent items (`visit_items`) agree with the owned items.
pub fn routeros_print(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let items = match parse_items(&text) {
        Ok(items) => items,
        Err(e) => {
            assert_eq!(parse_disks(&text), Err(ListingError::Parse(e)));
            return;
        }
    };
    let mut lent = Vec::new();
    visit_items(&text, |item| lent.push(item.to_item())).expect("parsed once, parses again");
    assert_eq!(lent, items);
    assert_eq!(
        parse_disks(&text),
        Disk::from_items(&items).map_err(ListingError::Model)
    );
    for item in &items {
        let _ = (item.number(), item.comment(), item.has_flag('X'));
        for (key, _) in item.fields() {
            let _ = (item.get_u64(key), item.get_bytes(key), item.get_bool(key));
        }
        if let Ok(disk) = Disk::from_item(item) {
            let shown = render_disk_detail(&disk);
            let back = parse_items(&shown)
                .unwrap_or_else(|e| panic!("rendered disk does not parse: {e}\n{shown}"));
            assert_eq!(back.len(), 1, "{shown}");
            assert_eq!(Disk::from_item(&back[0]).as_ref(), Ok(&disk), "{shown}");
        }
        if let Ok(cap) = PoolCapacity::from_item(item) {
            assert!(cap.free <= cap.size, "{cap:?}");
            let shown = render_pool_capacity("storage-pool", &cap);
            let back = parse_items(&shown).expect("rendered pool parses");
            assert_eq!(PoolCapacity::from_items(&back), Ok(cap), "{shown}");
        }
    }
    if let Ok(disks) = Disk::from_items(&items) {
        assert_eq!(disks.len(), items.len());
        let shown = render_disk_list(&disks);
        let back = parse_items(&shown)
            .unwrap_or_else(|e| panic!("rendered list does not parse: {e}\n{shown}"));
        assert_eq!(Disk::from_items(&back).as_ref(), Ok(&disks), "{shown}");
    }
    if PoolCapacity::from_items(&items).is_ok() {
        assert_eq!(items.len(), 1, "a pool answer names exactly one pool");
    }
}

/// Line prefixes that RouterOS prints for a failed command (routeros.md); output with such
/// a line on either stream must never be taken for success.
const FAILURE_PREFIXES: &[&str] = &[
    "failure:",
    "bad command name",
    "syntax error",
    "expected end of command",
    "no such item",
];

/// Error classification. Input: byte 0 is the exit status (0xff = none reported), then
/// stdout, a NUL, stderr. Either stream counts the same; a non-zero exit or a failure line
/// is never success; every error maps to a driver error naming its subject.
pub fn routeros_error(data: &[u8]) {
    let Some((&status, rest)) = data.split_first() else {
        return;
    };
    let exit = (status != 0xff).then_some(u32::from(status));
    let (out, err) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let (out, err) = (String::from_utf8_lossy(out), String::from_utf8_lossy(err));
    let result = classify_output(&out, &err, exit);
    let swapped = classify_output(&err, &out, exit);
    assert_eq!(
        result.is_ok(),
        swapped.is_ok(),
        "the stream must not matter"
    );
    if matches!(exit, Some(code) if code != 0) {
        assert!(result.is_err(), "exit {exit:?} taken for success");
    }
    let failure_line = out.lines().chain(err.lines()).any(|line| {
        let line = line.trim().to_ascii_lowercase();
        FAILURE_PREFIXES.iter().any(|p| line.starts_with(p))
    });
    if failure_line {
        assert!(result.is_err(), "a failure line was taken for success");
    }
    if let Err(e) = result {
        assert!(!e.message().is_empty(), "{e:?}");
        assert!(
            !matches!(e.kind(), RdsErrorKind::Transport | RdsErrorKind::Timeout),
            "output text cannot be a transport error: {e:?}"
        );
        let mapped = rds_csi::controller::ControllerError::rds("volume pvc-fuzz", e);
        assert!(mapped.to_string().contains("volume pvc-fuzz"), "{mapped}");
    }
}

/// Sizes: RouterOS-printed and user-typed. An accepted size renders (grouped digits, the
/// exact `file-size=` argument) to text that parses back to the same byte count; planning a
/// volume of it never rounds down.
pub fn sizes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut values: Vec<u64> = Vec::new();
    values.extend(parse_routeros_bytes(&text).ok());
    values.extend(parse_user_size(&text).ok());
    if let Some(raw) = data.get(..8) {
        values.push(u64::from_le_bytes(raw.try_into().expect("8 bytes")));
    }
    for v in values {
        assert_eq!(parse_routeros_bytes(&group_digits(v)), Ok(v), "{v}");
        assert_eq!(parse_routeros_bytes(&v.to_string()), Ok(v), "{v}");
        let arg = routeros_size_arg(v);
        assert_eq!(parse_user_size(&arg), Ok(v), "{v} rendered as {arg:?}");
        let _ = human_size(v);
        if let Ok(planned) = plan_volume_size(v, 0) {
            assert!(planned >= v, "{v} planned as {planned}");
            assert_eq!(planned % MIB, 0, "{v} planned as {planned}");
        }
    }
}

/// Escapes a mountinfo field the way the kernel does (and a little more: `,` inside an
/// option, CR and other control bytes), so a parsed mount can be printed and parsed again.
fn escape_field(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b <= b' ' || b == b'\\' || b == b',' || b == 0x7f {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

fn render_mount(m: &MountInfo) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut line = format!("{} {} {} ", m.mount_id, m.parent_id, m.dev).into_bytes();
    escape_field(&mut line, m.root.as_os_str().as_bytes());
    line.push(b' ');
    escape_field(&mut line, m.mount_point.as_os_str().as_bytes());
    line.push(b' ');
    let options = |line: &mut Vec<u8>, opts: &[String]| {
        for (i, o) in opts.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            escape_field(line, o.as_bytes());
        }
    };
    options(&mut line, &m.mount_options);
    for f in &m.optional_fields {
        line.push(b' ');
        line.extend_from_slice(f.as_bytes());
    }
    line.extend_from_slice(b" - ");
    escape_field(&mut line, m.fs_type.as_bytes());
    line.push(b' ');
    escape_field(&mut line, m.source.as_bytes());
    line.push(b' ');
    options(&mut line, &m.super_options);
    line
}

/// `/proc/<pid>/mountinfo`: one entry (mount or malformed) per non-blank line; lookups find
/// every mount; a parsed mount printed with kernel escapes parses back to itself.
pub fn mountinfo(data: &[u8]) {
    let table = MountTable::parse_bytes(data);
    let lines = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
        .count();
    assert_eq!(table.mounts.len() + table.malformed.len(), lines);
    for m in &table.mounts {
        assert!(!m.fs_type.is_empty() && !m.root.as_os_str().is_empty());
        assert!(table
            .by_target(&m.mount_point)
            .iter()
            .any(|x| std::ptr::eq(*x, m)));
        let same_dev = table.by_device(m.dev);
        assert!(same_dev.iter().any(|x| std::ptr::eq(*x, m)));
        let bound = same_dev.len() > 1 || m.root != Path::new("/");
        assert_eq!(table.is_bind_mounted(m.dev), bound, "{m:?}");
        let shown = render_mount(m);
        let back = MountTable::parse_bytes(&shown);
        assert_eq!(
            back.mounts.as_slice(),
            std::slice::from_ref(m),
            "printed as {:?}",
            String::from_utf8_lossy(&shown)
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(MountTable::parse(text), table);
        let ok = text
            .split('\n')
            .filter(|l| !l.bytes().all(|b| b.is_ascii_whitespace()))
            .filter(|l| parse_line(l).is_ok())
            .count();
        assert_eq!(ok, table.mounts.len());
    }
}

/// Kernel uevents (`ACTION@DEVPATH\0KEY=VALUE\0...`): an accepted event re-encoded in the
/// kernel format parses back to the same event; MAJOR/MINOR only ever decode together.
pub fn uevent(data: &[u8]) {
    let Ok(ev) = Uevent::parse(data) else {
        return;
    };
    assert!(ev.devpath.starts_with('/'));
    assert_eq!(
        ev.dev.is_some(),
        ev.get("MAJOR").is_some() && ev.get("MINOR").is_some(),
        "{ev:?}"
    );
    let _ = (ev.is_nvme_block_event(), ev.is_nvme_controller_event());
    let name = ev.kernel_name();
    assert!(!name.contains('/'));
    if ev.is_nvme_block_event() {
        assert!(NvmeDevice::parse(name).is_ok_and(|d| d.is_block()));
    }
    let mut msg = format!("{}@{}", ev.action, ev.devpath).into_bytes();
    for (k, v) in &ev.env {
        msg.push(0);
        msg.extend_from_slice(format!("{k}={v}").as_bytes());
    }
    msg.push(0);
    assert_eq!(Uevent::parse(&msg).as_ref(), Ok(&ev), "{msg:?}");
}

/// The kernel's `/dev/nvme-fabrics` reply, and the values put into a connect string: an
/// accepted reply re-renders to itself; accepted values can never add, drop or change an
/// option of the connect string (no `,`/`=` injection).
pub fn fabrics_reply(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(reply) = ConnectReply::parse(&text) {
        let shown = format!("instance={},cntlid={}\n", reply.instance, reply.cntlid);
        assert_eq!(ConnectReply::parse(&shown).ok(), Some(reply), "{shown:?}");
    }
    let value = text.trim_end_matches('\n');
    let nqn = fabrics::Nqn::new(value).ok();
    if let Some(n) = &nqn {
        assert!(n.as_str().starts_with("nqn.") && n.as_str().len() <= fabrics::NQN_MAX_LEN);
    }
    let traddr = OptionValue::new("traddr", value).ok();
    if nqn.is_none() && traddr.is_none() {
        return;
    }
    // Whichever value was accepted goes into every slot of its kind; the other kind gets a
    // known-good value.
    let nqn = nqn.unwrap_or_else(|| {
        fabrics::Nqn::new("nqn.2000-02.com.mikrotik:pvc-1").expect("a valid NQN")
    });
    let traddr = traddr.unwrap_or_else(|| OptionValue::new("traddr", "10.0.0.1").expect("valid"));
    let mut opts = ConnectOptions::new(traddr.as_str(), 4420, nqn.as_str())
        .expect("validated values make valid options");
    opts.hostnqn = Some(nqn.clone());
    opts.hostid = Some(traddr.clone());
    opts.ctrl_loss_tmo = Some(-1);
    let shown = opts.to_string();
    let pairs: Vec<(&str, &str)> = shown
        .split(',')
        .map(|t| t.split_once('=').expect("every option is key=value"))
        .collect();
    let expected = [
        ("transport", "tcp"),
        ("traddr", traddr.as_str()),
        ("trsvcid", "4420"),
        ("nqn", nqn.as_str()),
        ("hostnqn", nqn.as_str()),
        ("hostid", traddr.as_str()),
        ("ctrl_loss_tmo", "-1"),
    ];
    assert_eq!(pairs, expected, "{shown:?}");
}

/// Controller attributes read from sysfs (`address`, `state`, `dev`, as in
/// sysfs-nvme-tcp-6.1.txt): no panic; accepted values re-render to what was read.
pub fn sysfs_attrs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let value = text.trim_end();
    if let Some(addr) = TransportAddress::parse(&text) {
        let tokens: Vec<&str> = value.split(',').collect();
        // A key given twice keeps its last value.
        let last_traddr = tokens.iter().rev().find_map(|t| t.strip_prefix("traddr="));
        assert_eq!(last_traddr, Some(addr.traddr.as_str()), "{value:?}");
        assert!(addr.other.len() < tokens.len(), "{value:?}");
        for (k, v) in &addr.other {
            assert!(tokens.contains(&format!("{k}={v}").as_str()), "{value:?}");
        }
    }
    let state = ControllerState::parse(value);
    assert_eq!(state.to_string(), value);
    assert_eq!(ControllerState::parse(&state.to_string()), state);
    if let Ok(dev) = value.parse::<DevNum>() {
        assert_eq!(dev.to_string().parse::<DevNum>().ok(), Some(dev));
    }
}

/// StorageClass parameters (`key=value` lines): never panics; whatever is accepted lies in
/// the documented ranges and allow-lists, and an unknown key is always refused.
pub fn storageclass_params(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let map = key_values(text);
    let base = base();
    let Ok(p) = VolumeParams::parse(&map, &base) else {
        return;
    };
    for key in map.keys() {
        assert!(
            keys::STORAGE_CLASS_PARAMETERS.contains(&key.as_str())
                || key.starts_with(keys::PROVISIONER_KEY_PREFIX),
            "unknown key {key:?} accepted"
        );
    }
    let int = |key: &str| {
        map.get(key)
            .map(|v| v.trim().parse::<i64>().expect("accepted"))
    };
    assert_eq!(
        i64::from(p.nvme_port),
        int(keys::NVME_PORT).unwrap_or(i64::from(fabrics::NVME_TCP_PORT))
    );
    assert!(p.nvme_port >= 1);
    let secs = p.migration_timeout.as_secs();
    assert!((MigrationTimeout::MIN_SECS..=MigrationTimeout::MAX_SECS).contains(&secs));
    if let Some(v) = int(keys::MIGRATION_TIMEOUT_SECONDS) {
        assert_eq!(i64::try_from(secs).ok(), Some(v));
    } else {
        assert_eq!(secs, MigrationTimeout::DEFAULT_SECS);
    }
    let t = p.tunables;
    assert!((-1..=86_400).contains(&t.ctrl_loss_tmo), "{t:?}");
    assert!((1..=3600).contains(&t.reconnect_delay), "{t:?}");
    assert!((1..=3600).contains(&t.keep_alive_tmo), "{t:?}");
    for (key, got) in [
        (keys::CTRL_LOSS_TMO, t.ctrl_loss_tmo),
        (keys::RECONNECT_DELAY, t.reconnect_delay),
        (keys::KEEP_ALIVE_TMO, t.keep_alive_tmo),
    ] {
        if let Some(v) = int(key) {
            assert_eq!(i64::from(got), v, "{key}");
        }
    }
    if let Some(fs) = p.fs_type {
        assert!(FsType::ALL.contains(&fs), "{fs:?}");
        assert_eq!(
            map.get(keys::FS_TYPE).map(String::as_str),
            Some(fs.as_str())
        );
    }
    if let Some(addr) = &p.nvme_address {
        let addr = addr.as_str();
        assert!(!addr.is_empty() && addr.len() <= 253, "{addr:?}");
        assert!(
            addr.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':')),
            "{addr:?}"
        );
        assert!(OptionValue::new("traddr", addr).is_ok(), "{addr:?}");
    }
    if let Some(dir) = &p.volume_dir {
        if dir != BASE_PATH {
            assert!(
                RdsPath::new(&base, dir).is_ok(),
                "{dir:?} outside {BASE_PATH}"
            );
        }
    }
}

/// Slots, prefixes, NQNs, paths on the RDS, snapshot ids: accepted values satisfy their
/// allow-lists, re-validate, and make commands that the RouterOS-subset parser (the
/// simulator's) reads back with exactly the value given.
pub fn volume_ids_nqns(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let base = base();
    let slot_rule = |v: &str| {
        (1..=63).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !v.starts_with('-')
    };
    if let Ok(slot) = Slot::new(s) {
        assert!(slot_rule(s) && !s.ends_with('-'), "{s:?}");
        assert_eq!(Slot::new(slot.as_str()).as_ref(), Ok(&slot));
        let nqn =
            rds_csi::rds::slot_nqn(MIKROTIK_NQN_PREFIX, &slot).expect("every slot makes an NQN");
        assert!(
            OptionValue::new("nqn", nqn.as_str()).is_ok(),
            "{nqn} unsafe in the kernel's connect string"
        );
        let find = |key: &str, value: &str| {
            Target::Find(vec![Cond {
                key: key.into(),
                op: Op::Eq,
                value: value.into(),
            }])
        };
        assert_eq!(
            commands::parse(Command::remove_disk(&slot).as_str()),
            Ok(Request::DiskRemove(find("slot", s)))
        );
        let print = commands::parse(Command::print_disk(&slot).as_str());
        assert_eq!(
            print,
            Ok(Request::DiskPrint(vec![Cond {
                key: "slot".into(),
                op: Op::Eq,
                value: s.into()
            }]))
        );
        let file = RdsPath::volume_file(&base, &slot).expect("a slot's file is inside the base");
        assert_eq!(
            commands::parse(Command::remove_file(&file).as_str()),
            Ok(Request::FileRemove(find("name", file.file_name())))
        );
    }
    if let Ok(prefix) = SlotPrefix::new(s) {
        assert!(slot_rule(prefix.as_str()), "{s:?}");
    }
    if let Ok(nqn) = Nqn::new(s) {
        assert!(s.len() <= 223 && s.starts_with("nqn."), "{s:?}");
        assert_eq!(Nqn::new(nqn.as_str()).as_ref(), Ok(&nqn));
        assert!(
            OptionValue::new("nqn", nqn.as_str()).is_ok(),
            "{s:?} unsafe in the kernel's connect string"
        );
    }
    if let Ok(path) = RdsPath::new(&base, s) {
        let inside = s.strip_prefix(BASE_PATH).and_then(|r| r.strip_prefix('/'));
        let rest = inside.unwrap_or_else(|| panic!("{s:?} accepted outside {BASE_PATH}"));
        assert!(
            rest.split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."),
            "{s:?}"
        );
        assert!(base.contains_file_name(path.file_name()), "{s:?}");
        assert_eq!(
            commands::parse(Command::remove_file(&path).as_str()),
            Ok(Request::FileRemove(Target::Find(vec![Cond {
                key: "name".into(),
                op: Op::Eq,
                value: path.file_name().into(),
            }])))
        );
    }
    if let Ok(other) = BasePath::new(s) {
        // Room for `/<slot>.img` under the 1024-byte path limit: every slot's file fits.
        if s.len() + 1 + 63 + 4 <= 1024 {
            let slot = Slot::new(&"a".repeat(63)).expect("valid");
            assert!(RdsPath::volume_file(&other, &slot).is_ok(), "{s:?}");
        }
    }
    match VolumeName::parse(s) {
        Ok(name) => {
            let id = name.id().as_str();
            assert!(VolumeId::parse(id).is_ok(), "{s:?} → {id:?}");
            assert_eq!(
                VolumeName::parse(s).as_ref().ok(),
                Some(&name),
                "deterministic"
            );
            // A name that is a volume id keeps it, unless it has the encoded shape.
            if VolumeId::parse(s).is_ok() && id != s {
                assert!(id.contains("--") && s.contains("--"), "{s:?} → {id:?}");
            }
            assert!(
                rds_csi::rds::slot_nqn(MIKROTIK_NQN_PREFIX, name.id().slot()).is_ok(),
                "{id}"
            );
        }
        Err(_) => assert!(
            s.is_empty()
                || s.len() > 128
                || s.chars()
                    .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
            "a name CSI allows was refused: {s:?}"
        ),
    }
    if let Some(id) = SnapshotId::parse(s) {
        assert!(id.slot.as_str().starts_with("snap-"));
        assert!(!id.source.as_str().starts_with("snap-"));
        assert_eq!(SnapshotId::parse(&id.to_string()).as_ref(), Some(&id));
        let file = id
            .file(&base)
            .expect("a snapshot's file is inside the base");
        assert_eq!(
            SnapshotId::from_disk(&base, id.slot.as_str(), file.as_str()).as_ref(),
            Some(&id),
            "{file}"
        );
    }
    if let Ok(snap) = snapshot_slot(s) {
        assert_eq!(snapshot_slot(s).ok(), Some(snap.clone()), "deterministic");
        assert!(
            VolumeId::parse(snap.as_str()).is_err(),
            "a snapshot slot is never a volume id"
        );
    }
}

/// The volume context the node reads back (`key=value` lines): whatever is accepted
/// round-trips through `to_map`; the node's fsType check never panics.
pub fn volume_context(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let map = key_values(text);
    let Ok(ctx) = VolumeContext::from_map(&map) else {
        return;
    };
    assert_ne!(ctx.nvme_port, 0);
    assert_eq!(ctx.fresh, map.get("fresh").is_some_and(|v| v == "true"));
    assert_eq!(
        VolumeContext::from_map(&ctx.to_map()).as_ref().ok(),
        Some(&ctx)
    );
    // Accepted values passed their types: nothing that could inject a line or an option.
    let fs = map.get("fsType").map_or("", String::as_str);
    assert_eq!(ctx.fs_type.map(|f| f.as_str()).unwrap_or(""), fs);
    for v in [ctx.nvme_address.as_str(), ctx.nqn.as_str()] {
        assert!(!v.contains(['\n', ',', '=', ' ']), "{v:?}");
    }
}

/// Command lines an SSH client sends to the simulator: never panic; conditions evaluate;
/// a `/simulator fault` spec applies or is refused without panicking.
pub fn simulator_command(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let Ok(request) = commands::parse(&line) else {
        return;
    };
    let _ = request.kind();
    let conds: Vec<&Cond> = match &request {
        Request::DiskPrint(c) | Request::FilePrint(c) => c.iter().collect(),
        Request::DiskSet {
            target: Target::Find(c),
            ..
        }
        | Request::DiskRemove(Target::Find(c))
        | Request::FileRemove(Target::Find(c)) => c.iter().collect(),
        _ => Vec::new(),
    };
    for c in conds {
        assert!(!c.key.is_empty());
        let _ = c.holds(Some(&c.value));
        let _ = c.holds(None);
        // An exact condition, or a pattern without metacharacters, matches its own text.
        let literal = !c.value.contains(['^', '$', '.', '\\']);
        if c.op == Op::Eq || literal {
            assert!(c.holds(Some(&c.value)), "{c:?}");
        }
    }
    if let Request::SimFault(spec) = &request {
        let mut faults = Faults::default();
        let _ = faults.apply(spec);
    }
    if let Request::DiskAdd(args) = &request {
        for (key, value) in args {
            if key == "file-size" {
                if let Some(size) = value.text() {
                    let _ = parse_user_size(size);
                }
            }
        }
    }
}
