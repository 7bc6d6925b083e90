//! How volumes and snapshots are named on the RDS (docs/architecture.md, "Names").
//!
//! A CreateVolume / CreateSnapshot name is any Unicode string of at most 128 bytes without the
//! control characters CSI v1.12 bans; an RDS slot is at most 63 bytes of `[a-z0-9-]`. The
//! mapping from one to the other is deterministic (a retried create finds its disk by
//! looking), keeps every name that already is a valid slot as it is (every `pvc-<uuid>` the
//! external-provisioner sends, so existing volumes keep their ids), and encodes every other
//! name as `pvc-<readable>--<digest>`: a lowercase hint of the name and 128 bits of its
//! SHA-256 (`pvc-`, so the volume's NQN is under the node's default `--nqn-prefix`).
//! Names of that encoded shape are encoded too, never kept, so no name can be crafted to
//! land on another name's slot; two names share a slot only if they share a 128-bit digest.
//!
//! RouterOS prints neither a disk's source nor its creation time, so everything the driver
//! must know later is encoded in names it chooses: the snapshot id carries its slot, source
//! volume and creation time, and the backing file path carries the same (so ListSnapshots can
//! rebuild ids from a plain `/disk print`) and a volume's content source (so a CreateVolume
//! retry with a different source is detected as ALREADY_EXISTS).

use std::fmt;

use sha2::{Digest, Sha256};

use super::error::ControllerError;
use crate::rds::command::MAX_SLOT_LEN;
use crate::rds::{BasePath, RdsPath, Slot};
use crate::volume::VolumeId;
pub use crate::volume::SNAPSHOT_SLOT_PREFIX;

/// CSI v1.12 ("Size Limits"): a string field is at most 128 bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Hex digits of the name's SHA-256 in an encoded slot (128 bits).
const DIGEST_HEX: usize = 32;
/// Separates the readable hint from the digest in an encoded slot.
const DIGEST_SEPARATOR: &str = "--";

/// CSI v1.12, CreateVolumeRequest.name: U+0000–U+0008, U+000B, U+000C, U+000E–U+001F and
/// U+007F–U+009F are banned (control characters other than tab, line feed and carriage return).
fn is_banned(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Checks a CO-chosen name against CSI's rules for names.
fn check_name(what: &'static str, field: &'static str, name: &str) -> Result<(), ControllerError> {
    if name.is_empty() {
        return Err(ControllerError::missing(field));
    }
    let invalid = |reason: String| ControllerError::InvalidName {
        what,
        name: name.to_owned(),
        reason,
    };
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "is {} bytes long; CSI allows at most {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    if let Some((i, c)) = name.char_indices().find(|&(_, c)| is_banned(c)) {
        return Err(invalid(format!(
            "holds the control character U+{:04X} at byte {i}, which CSI does not allow in names",
            u32::from(c)
        )));
    }
    Ok(())
}

/// The first 128 bits of SHA-256(`name`), in lowercase hex.
fn digest(name: &str) -> String {
    Sha256::digest(name.as_bytes())[..DIGEST_HEX / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `s` has the encoded shape `<anything>--<32 lowercase hex digits>`.
fn is_encoded_shape(s: &str) -> bool {
    let n = s.len();
    n >= DIGEST_SEPARATOR.len() + DIGEST_HEX
        && s[..n - DIGEST_HEX].ends_with(DIGEST_SEPARATOR)
        && s[n - DIGEST_HEX..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Encoded ids start with this: the node only ever connects NQNs under its `--nqn-prefix`
/// (by default `nqn.2000-02.com.mikrotik:pvc-`, so a host's boot disk under the vendor prefix is
/// never touched), and an id's NQN is the controller's prefix + the id.
pub const ENCODED_ID_PREFIX: &str = "pvc";

/// A readable hint of `name` for its encoded slot: `pvc-` and the name's lowercase ASCII
/// letters and digits, runs of anything else as one `-`, at most what fits before the digest.
fn readable(name: &str) -> String {
    let room = MAX_SLOT_LEN - DIGEST_SEPARATOR.len() - DIGEST_HEX;
    let mut out = String::new();
    for c in name.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    let mut out = if out.is_empty() || out == ENCODED_ID_PREFIX {
        ENCODED_ID_PREFIX.to_owned()
    } else if out.starts_with(&format!("{ENCODED_ID_PREFIX}-")) {
        out.to_owned()
    } else {
        format!("{ENCODED_ID_PREFIX}-{out}")
    };
    out.truncate(room);
    out.trim_end_matches('-').to_owned()
}

/// The encoded slot of `name`: `<readable>--<digest>`.
fn encoded(name: &str) -> Slot {
    Slot::new(&format!(
        "{}{DIGEST_SEPARATOR}{}",
        readable(name),
        digest(name)
    ))
    .expect("a readable hint and a hex digest make a valid slot")
}

/// A CreateVolume name and the volume id it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeName {
    name: String,
    id: VolumeId,
}

impl VolumeName {
    /// Checks a CO-chosen volume name (CSI's rules) and maps it to its volume id (see the
    /// module notes).
    pub fn parse(name: &str) -> Result<Self, ControllerError> {
        check_name("volume", "volume name", name)?;
        let kept = Slot::new(name)
            .ok()
            .filter(|_| !is_encoded_shape(name))
            .and_then(VolumeId::from_slot);
        let id = kept.unwrap_or_else(|| {
            VolumeId::from_slot(encoded(name)).expect("an encoded slot is never a snapshot's")
        });
        Ok(VolumeName {
            name: name.to_owned(),
            id,
        })
    }

    /// The volume id (and RDS slot) the name maps to.
    pub fn id(&self) -> &VolumeId {
        &self.id
    }

    /// The name as the CO sent it.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

/// The snapshot slot for a CO-chosen snapshot name (CSI's rules, as for volumes):
/// `snap-<digest>`, deterministic, so a retried CreateSnapshot finds the snapshot it made.
pub fn snapshot_slot(name: &str) -> Result<Slot, ControllerError> {
    check_name("snapshot", "snapshot name", name)?;
    Ok(Slot::new(&format!("{SNAPSHOT_SLOT_PREFIX}{}", digest(name))).expect("hex is a valid slot"))
}

/// Snapshots live under `<base>/snapshots/<source volume>/`.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Where a volume's content came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Empty,
    Volume(VolumeId),
    Snapshot(SnapshotId),
}

impl Source {
    /// The suffix of the volume's file name that records the source.
    fn file_suffix(&self) -> String {
        match self {
            Source::Empty => String::new(),
            Source::Volume(v) => format!(".clone-of-{v}"),
            Source::Snapshot(s) => format!(".from-{}", s.slot),
        }
    }
}

/// Whether `file_name` (a path's last component) is a backing file of volume `id` as
/// [`volume_file`] names them: `<id>.img`, `<id>.clone-of-<volume id>.img` or
/// `<id>.from-<snapshot slot>.img`.
pub fn is_volume_file_of(id: &VolumeId, file_name: &str) -> bool {
    let Some(rest) = file_name
        .strip_prefix(id.as_str())
        .and_then(|r| r.strip_suffix(".img"))
    else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    if let Some(v) = rest.strip_prefix(".clone-of-") {
        return VolumeId::parse(v).is_ok();
    }
    rest.strip_prefix(".from-")
        .is_some_and(|s| s.starts_with(SNAPSHOT_SLOT_PREFIX) && Slot::new(s).is_ok())
}

/// The backing file of a volume in `dir` (the base path or a StorageClass volumePath).
pub fn volume_file(
    base: &BasePath,
    dir: &str,
    id: &VolumeId,
    source: &Source,
) -> Result<RdsPath, ControllerError> {
    let path = format!("{dir}/{id}{}.img", source.file_suffix());
    RdsPath::new(base, &path).map_err(|source| ControllerError::FilePath {
        volume: id.to_string(),
        path,
        source: Box::new(source),
    })
}

/// A snapshot's id: `<slot>:<source volume>:<creation unix seconds>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotId {
    pub slot: Slot,
    pub source: VolumeId,
    pub created_unix: u64,
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.slot, self.source, self.created_unix)
    }
}

impl SnapshotId {
    /// Parses an id this driver issued; `None` for anything else (it cannot exist).
    pub fn parse(id: &str) -> Option<Self> {
        let mut parts = id.split(':');
        let (slot, source, t) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !slot.starts_with(SNAPSHOT_SLOT_PREFIX) {
            return None;
        }
        if !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(SnapshotId {
            slot: Slot::new(slot).ok()?,
            source: VolumeId::parse(source).ok()?,
            created_unix: t.parse().ok()?,
        })
    }

    pub fn file(&self, base: &BasePath) -> Result<RdsPath, ControllerError> {
        let path = format!(
            "{base}/{SNAPSHOT_DIR}/{}/{}-{}.img",
            self.source, self.created_unix, self.slot
        );
        RdsPath::new(base, &path).map_err(|e| {
            ControllerError::internal(
                format!("snapshot {self}"),
                format!("file path {path:?}: {e}"),
            )
        })
    }

    /// Rebuilds the id of a snapshot disk from its slot and backing file path.
    pub fn from_disk(base: &BasePath, slot: &str, file_path: &str) -> Option<Self> {
        let rest = file_path
            .strip_prefix(&format!("{base}/{SNAPSHOT_DIR}/"))?
            .strip_suffix(".img")?;
        let (source, file) = rest.split_once('/')?;
        let (t, file_slot) = file.split_once('-')?;
        if file_slot != slot {
            return None;
        }
        SnapshotId::parse(&format!("{slot}:{source}:{t}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id_of(name: &str) -> String {
        VolumeName::parse(name).unwrap().id().to_string()
    }

    #[test]
    fn names_that_are_valid_slots_keep_exactly_their_id() {
        let longest = "a".repeat(63);
        for name in [
            "pvc-0b7c1e2a-1234-4cde-8f00-0123456789ab",
            "vol",
            "a",
            "vol-1",
            "a--b",
            &longest,
        ] {
            assert_eq!(id_of(name), name);
        }
    }

    #[test]
    fn every_name_csi_allows_maps_to_a_valid_distinct_slot() {
        let (a64, a128) = ("a".repeat(64), "a".repeat(128));
        let names = [
            "sanity-x-1A2B3C4D",
            "Vol",
            "VOL",
            "vol+1",
            "vol_1",
            "ünïcødé-名前",
            &a64,
            &a128,
            "snap-x",
            "snapshot",
            "a\tb",
            "line\nbreak",
            "-",
            "名前",
            "vol",
        ];
        let mut ids = std::collections::BTreeSet::new();
        for name in names {
            let id = id_of(name);
            assert!(
                Slot::new(&id).is_ok() && !id.starts_with(SNAPSHOT_SLOT_PREFIX),
                "{name:?} → {id}"
            );
            assert_eq!(id_of(name), id, "deterministic");
            assert!(ids.insert(id.clone()), "{name:?} → {id} collides");
        }
        assert!(id_of("Vol").starts_with("pvc-vol--"), "{}", id_of("Vol"));
        assert!(
            id_of("ünïcødé-名前").starts_with("pvc-n-c-d--"),
            "{}",
            id_of("ünïcødé-名前")
        );
        assert!(id_of("名前").starts_with("pvc--"));
        assert!(id_of("snap-x").starts_with("pvc-snap-x--"));
        assert!(id_of("PVC-X").starts_with("pvc-x--"), "{}", id_of("PVC-X"));
        assert_eq!(id_of(&a128).len(), 63);
        // Every encoded id's NQN is under the node's default --nqn-prefix.
        for name in names {
            let id = id_of(name);
            assert!(id == name || id.starts_with("pvc-"), "{name:?} → {id}");
        }
    }

    #[test]
    fn a_name_shaped_like_an_encoded_id_is_encoded_too_and_never_lands_on_it() {
        for victim in ["Vol", "sanity-x-1A2B3C4D", "vol_1"] {
            let taken = id_of(victim);
            let crafted = id_of(&taken);
            assert_ne!(crafted, taken, "{victim:?}");
            assert!(is_encoded_shape(&crafted));
        }
    }

    #[test]
    fn control_characters_and_names_over_128_bytes_are_invalid_argument() {
        for bad in [
            "a\u{1}".to_string(),
            "\u{0}".into(),
            "a\u{7f}b".into(),
            "a\u{85}".into(),
            "\u{1b}[31m".into(),
            "a".repeat(129),
            "名".repeat(43),
        ] {
            let e = VolumeName::parse(&bad).unwrap_err();
            assert_eq!(
                tonic::Status::from(e).code(),
                tonic::Code::InvalidArgument,
                "{bad:?}"
            );
            assert_eq!(
                tonic::Status::from(snapshot_slot(&bad).unwrap_err()).code(),
                tonic::Code::InvalidArgument
            );
        }
        assert!(VolumeName::parse("").is_err() && snapshot_slot("").is_err());
        // 42 × 3 bytes = 126: allowed.
        assert!(VolumeName::parse(&"名".repeat(42)).is_ok());
    }

    #[test]
    fn snapshot_slots_are_deterministic_valid_and_distinct() {
        let a = snapshot_slot("CreateSnapshot-1A2B3C4D").unwrap();
        assert_eq!(a, snapshot_slot("CreateSnapshot-1A2B3C4D").unwrap());
        assert_ne!(a, snapshot_slot("createsnapshot-1a2b3c4d").unwrap());
        assert!(a.as_str().starts_with(SNAPSHOT_SLOT_PREFIX));
        assert!(VolumeId::parse(a.as_str()).is_err(), "never a volume id");
        let long = snapshot_slot(&"s".repeat(128)).unwrap();
        // The id `<slot>:<source>:<seconds>` stays within CSI's 128 bytes.
        let id = SnapshotId {
            slot: long,
            source: VolumeId::parse(&"v".repeat(63)).unwrap(),
            created_unix: u64::MAX,
        };
        assert!(
            id.to_string().len() <= MAX_NAME_BYTES,
            "{}",
            id.to_string().len()
        );
    }

    proptest! {
        #[test]
        fn any_allowed_name_maps_to_a_slot_and_an_nqn(name in "[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\u{9f}]{1,60}") {
            prop_assume!(name.len() <= MAX_NAME_BYTES);
            let v = VolumeName::parse(&name).unwrap();
            prop_assert!(Slot::new(v.id().as_str()).is_ok());
            prop_assert_eq!(VolumeId::parse(v.id().as_str()), Ok(v.id().clone()));
            prop_assert!(crate::rds::slot_nqn(crate::rds::command::MIKROTIK_NQN_PREFIX, v.id().slot()).is_ok());
            prop_assert_eq!(VolumeName::parse(&name).unwrap(), v);
        }

        #[test]
        fn different_names_get_different_ids(a in "[a-zA-Z0-9_+. -]{1,40}", b in "[a-zA-Z0-9_+. -]{1,40}") {
            prop_assume!(a != b);
            prop_assert_ne!(id_of(&a), id_of(&b));
        }
    }

    #[test]
    fn snapshot_ids_round_trip_through_the_disk_listing() {
        let base = BasePath::new("/storage-pool/csi").unwrap();
        let id = SnapshotId {
            slot: snapshot_slot("snapshot-1234").unwrap(),
            source: VolumeId::parse("pvc-abc").unwrap(),
            created_unix: 1_764_000_000,
        };
        assert_eq!(SnapshotId::parse(&id.to_string()), Some(id.clone()));
        let file = id.file(&base).unwrap();
        assert_eq!(
            SnapshotId::from_disk(&base, id.slot.as_str(), file.as_str()),
            Some(id.clone())
        );
        assert_eq!(
            SnapshotId::from_disk(&base, "snap-other", file.as_str()),
            None
        );
    }

    #[test]
    fn foreign_snapshot_ids_do_not_parse() {
        for bad in [
            "",
            "snap-1",
            "pvc-1:pvc-2:3",
            "snap-1:pvc-2:x",
            "snap-1:pvc-2:3:4",
            "snap-1:snap-2:3",
            "snap-1:PVC:3",
        ] {
            assert_eq!(SnapshotId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_source_is_recorded_in_the_file_name_and_read_back() {
        let base = BasePath::new("/storage-pool/csi").unwrap();
        let v = VolumeId::parse("pvc-1").unwrap();
        let f = |s: &Source| {
            volume_file(&base, "/storage-pool/csi", &v, s)
                .unwrap()
                .to_string()
        };
        assert_eq!(f(&Source::Empty), "/storage-pool/csi/pvc-1.img");
        assert_eq!(
            f(&Source::Volume(VolumeId::parse("pvc-0").unwrap())),
            "/storage-pool/csi/pvc-1.clone-of-pvc-0.img"
        );
        for (name, ours) in [
            ("pvc-1.img", true),
            ("pvc-1.clone-of-pvc-0.img", true),
            ("pvc-1.from-snap-0123abcd.img", true),
            ("pvc-10.img", false),
            ("pvc-1.img.bak", false),
            ("pvc-1.from-pvc-2.img", false),
            ("pvc-1.clone-of-.img", false),
            ("xpvc-1.img", false),
        ] {
            assert_eq!(is_volume_file_of(&v, name), ours, "{name}");
        }
    }
}
