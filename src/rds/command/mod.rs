//! Typed RouterOS command builder (docs/architecture.md, "Correctness rules", rule 4). Every interpolated value is a newtype that
//! was checked against an allow-list when it was built, and is double-quoted when rendered,
//! so a [`Command`] can only ever hold one RouterOS command with the arguments intended.
//!
//! Allow-lists (deliberately narrower than RouterOS allows):
//! - [`Slot`] — 1–63 bytes of `[a-z0-9-]`, starting and ending with `[a-z0-9]` (a DNS label;
//!   fits `pvc-<uuid>`, `snap-<uuid>`). No `.`/`_`: slots are also matched with `~`, which is
//!   a regex, and an allow-list without metacharacters needs no regex escaping.
//! - [`SlotPrefix`] — 1–63 bytes of `[a-z0-9-]`, starting with `[a-z0-9]` (may end in `-`).
//! - [`Nqn`] — node-io's one NQN type (`node_io::nqn`): at most 223 bytes,
//!   `nqn.YYYY-MM.<domain>:<unique>` where the domain is `[A-Za-z0-9.-]` and the unique part
//!   `[A-Za-z0-9.:_-]`.
//! - [`BasePath`] / [`RdsPath`] — absolute, components of 1–255 bytes of `[A-Za-z0-9._-]`,
//!   never `.` or `..`, no empty components (so no `//` or trailing `/`), at most 1024 bytes;
//!   an `RdsPath` lies strictly inside its base, compared component by component.
//! - [`MountPoint`] — one path component.
//! - [`Port`] — 1–65535.
//!
//! Here: [`Command`] and the system commands; the disk and file command families in `disk`
//! and `file`; the checked values in `slot`, `path` and `export`; the allow-list checks,
//! [`ValidationError`] and the quoting in `validation`.

use std::fmt;

pub use node_io::nqn::{Nqn, NqnError};

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<&str> for $name {
            type Error = ValidationError;
            fn try_from(value: &str) -> Result<Self, ValidationError> {
                Self::new(value)
            }
        }
    };
}

mod disk;
mod export;
mod file;
mod path;
mod slot;
mod validation;

pub use export::{NvmeExport, Port};
pub use path::{BasePath, MountPoint, RdsPath, MAX_COMPONENT_LEN, MAX_PATH_LEN};
pub use slot::{slot_nqn, Slot, SlotPrefix, MAX_SLOT_LEN, MIKROTIK_NQN_PREFIX};
pub use validation::ValidationError;

/// One RouterOS command line, built only from validated parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Command(String);

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Command {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn identity() -> Self {
        Command("/system identity print".to_string())
    }

    pub fn resource() -> Self {
        Command("/system resource print".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::slot::is_slot_char;
    use super::*;

    const HOSTILE: &[&str] = &[
        ";", "\"", "[", "]", "$", "\n", "\r", "\\", "`", " ", "\t", "\0", "{", "}", "'", "=", "~",
        "^", "*", "|", "\u{7f}", "é", "\u{202e}",
    ];

    fn base() -> BasePath {
        BasePath::new("/storage-pool/csi").unwrap()
    }

    fn slot(s: &str) -> Slot {
        Slot::new(s).unwrap()
    }

    /// The slot `name` and the path of its volume file under [`base`].
    fn volume(name: &str) -> (Slot, RdsPath) {
        let s = slot(name);
        let path = RdsPath::volume_file(&base(), &s).unwrap();
        (s, path)
    }

    fn export(s: &Slot) -> NvmeExport {
        NvmeExport {
            port: Port::default(),
            nqn: slot_nqn(MIKROTIK_NQN_PREFIX, s).unwrap(),
        }
    }

    #[test]
    fn error_messages_name_the_rule() {
        let err = Slot::new("pvc;rm").unwrap_err().to_string();
        assert_eq!(
            err,
            "slot \"pvc;rm\": ';' at byte 3 is not allowed (allowed: lowercase letters, digits, '-')"
        );
        let err = RdsPath::new(&base(), "/storage-pool/csi2/x.img")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not inside the base path"), "{err}");
        let err = RdsPath::new(&base(), "/storage-pool/csi/../x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("relative step"), "{err}");
    }

    #[test]
    fn commands_render_exactly() {
        let b = base();
        let (s, path) = volume("pvc-1");
        assert_eq!(
            Command::create_disk(&path, 1 << 30, &s, &export(&s))
                .unwrap()
                .as_str(),
            "/disk add type=file file-path=\"/storage-pool/csi/pvc-1.img\" file-size=\"1G\" \
             slot=\"pvc-1\" nvme-tcp-export=yes nvme-tcp-server-port=\"4420\" \
             nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\""
        );
        let (snap, snap_path) = volume("snap-1");
        assert_eq!(
            Command::copy_disk(&s, &snap_path, &snap, None, None)
                .unwrap()
                .as_str(),
            "/disk add type=file copy-from=[find slot=\"pvc-1\"] \
             file-path=\"/storage-pool/csi/snap-1.img\" slot=\"snap-1\""
        );
        let (clone, clone_path) = volume("pvc-2");
        assert_eq!(
            Command::copy_disk(
                &snap,
                &clone_path,
                &clone,
                Some(1_610_612_736),
                Some(&export(&clone))
            )
            .unwrap()
            .as_str(),
            "/disk add type=file copy-from=[find slot=\"snap-1\"] \
             file-path=\"/storage-pool/csi/pvc-2.img\" slot=\"pvc-2\" file-size=\"1536M\" \
             nvme-tcp-export=yes nvme-tcp-server-port=\"4420\" \
             nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-2\""
        );
        assert_eq!(
            Command::resize_disk(&s, 2 << 30).unwrap().as_str(),
            "/disk set [find slot=\"pvc-1\"] file-size=\"2G\""
        );
        assert_eq!(
            Command::remove_disk(&s).as_str(),
            "/disk remove [find slot=\"pvc-1\"]"
        );
        assert_eq!(
            Command::remove_file(&path).as_str(),
            "/file remove [find name=\"storage-pool/csi/pvc-1.img\"]"
        );
        assert_eq!(
            Command::print_disk(&s).as_str(),
            "/disk print detail where slot=\"pvc-1\""
        );
        assert_eq!(
            Command::list_disks(&SlotPrefix::new("pvc-").unwrap()).as_str(),
            "/disk print detail where slot~\"^pvc-\""
        );
        assert_eq!(
            Command::pool_capacity(&b.mount_point()).as_str(),
            "/disk print detail where mount-point=\"storage-pool\""
        );
        assert_eq!(
            Command::list_files(&b).as_str(),
            "/file print detail where name~\"^storage-pool/csi/\""
        );
        assert_eq!(Command::identity().to_string(), "/system identity print");
        assert_eq!(Command::resource().to_string(), "/system resource print");
    }

    #[test]
    fn zero_sizes_are_refused() {
        let (s, path) = volume("pvc-1");
        assert_eq!(
            Command::create_disk(&path, 0, &s, &export(&s)),
            Err(ValidationError::ZeroSize)
        );
        assert_eq!(Command::resize_disk(&s, 0), Err(ValidationError::ZeroSize));
        assert_eq!(
            Command::copy_disk(&s, &path, &s, Some(0), None),
            Err(ValidationError::ZeroSize)
        );
    }

    #[test]
    fn injection_attempts_are_refused_in_every_argument() {
        let b = base();
        for h in HOSTILE {
            let payloads = [
                format!("pvc{h}1"),
                format!("{h}pvc"),
                format!("pvc{h}"),
                format!("pvc-1{h}] ; /system reboot"),
            ];
            for p in &payloads {
                assert!(Slot::new(p).is_err(), "slot {p:?}");
                assert!(SlotPrefix::new(p).is_err(), "prefix {p:?}");
                assert!(MountPoint::new(p).is_err(), "mount point {p:?}");
                assert!(
                    Nqn::new(format!("{MIKROTIK_NQN_PREFIX}{p}")).is_err(),
                    "nqn {p:?}"
                );
                assert!(
                    Nqn::new(format!("nqn.2000-02.com{h}x:pvc")).is_err(),
                    "nqn domain {h:?}"
                );
                assert!(
                    RdsPath::new(&b, &format!("/storage-pool/csi/{p}.img")).is_err(),
                    "path {p:?}"
                );
                assert!(
                    BasePath::new(&format!("/storage-pool/{p}")).is_err(),
                    "base {p:?}"
                );
            }
        }
        // `/` and `.` are allowed in paths but can never climb out of the base.
        assert!(RdsPath::new(&b, "/storage-pool/csi/../../etc/passwd").is_err());
    }

    proptest::proptest! {
        #[test]
        fn every_accepted_slot_is_inert_inside_quotes(s in "[ -~]{1,70}") {
            if let Ok(slot) = Slot::new(&s) {
                proptest::prop_assert!(slot.as_str().chars().all(is_slot_char));
                let cmd = Command::print_disk(&slot);
                proptest::prop_assert_eq!(cmd.as_str().matches('"').count(), 2);
            }
        }
    }
}
