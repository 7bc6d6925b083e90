//! Disk slots (the volume id on the RDS), slot prefixes, and the NQN a slot is exported under.

use std::fmt;

use super::validation::{check_chars, check_len, ValidationError};
use super::{Nqn, NqnError};

pub const MAX_SLOT_LEN: usize = 63;
/// NQN prefix RouterOS uses for exported disks: `nqn.2000-02.com.mikrotik:<slot>`.
pub const MIKROTIK_NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik:";
const SLOT_ALLOWED: &str = "lowercase letters, digits, '-'";

pub(super) fn is_slot_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

pub(super) fn is_slot_edge(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Which ends of a slot-like value must be a letter or digit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edges {
    Both,
    /// A prefix may end in `-`.
    Start,
}

/// The slot allow-list under the name `what`: length, characters, edges.
fn check_slot(what: &'static str, value: &str, edges: Edges) -> Result<(), ValidationError> {
    check_len(what, value, MAX_SLOT_LEN)?;
    check_chars(what, value, SLOT_ALLOWED, is_slot_char)?;
    let edges_ok =
        value.starts_with(is_slot_edge) && (edges == Edges::Start || value.ends_with(is_slot_edge));
    if !edges_ok {
        return Err(ValidationError::BadEdge {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// A disk slot (the volume id on the RDS).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(String);
string_newtype!(Slot);

impl Slot {
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        check_slot("slot", value, Edges::Both)?;
        Ok(Slot(value.to_string()))
    }
}

/// A slot prefix for listing (`pvc-`). Its characters are not regex metacharacters, so it is
/// used in `slot~"^<prefix>"` unescaped and matches literally.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotPrefix(String);
string_newtype!(SlotPrefix);

impl SlotPrefix {
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        check_slot("slot prefix", value, Edges::Start)?;
        Ok(SlotPrefix(value.to_string()))
    }
}

/// The NQN RouterOS exports `slot` under: `<prefix><slot>`, e.g.
/// `nqn.2000-02.com.mikrotik:pvc-1` with [`MIKROTIK_NQN_PREFIX`].
pub fn slot_nqn(prefix: &str, slot: &Slot) -> Result<Nqn, NqnError> {
    Nqn::new(format!("{prefix}{slot}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_allow_list() {
        for ok in [
            "pvc-1",
            "a",
            "snap-0b1c",
            "pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f",
            &"a".repeat(63),
        ] {
            assert_eq!(Slot::new(ok).unwrap().as_str(), ok);
        }
        assert_eq!(Slot::new(""), Err(ValidationError::Empty { what: "slot" }));
        assert!(matches!(
            Slot::new(&"a".repeat(64)),
            Err(ValidationError::TooLong { len: 64, .. })
        ));
        assert!(matches!(
            Slot::new("-a"),
            Err(ValidationError::BadEdge { .. })
        ));
        assert!(matches!(
            Slot::new("a-"),
            Err(ValidationError::BadEdge { .. })
        ));
        for bad in ["Pvc", "a.b", "a_b", "a/b", "../x"] {
            assert!(
                matches!(Slot::new(bad), Err(ValidationError::ForbiddenChar { .. })),
                "{bad}"
            );
        }
        assert!(SlotPrefix::new("pvc-").is_ok());
        assert!(matches!(
            SlotPrefix::new("-pvc"),
            Err(ValidationError::BadEdge { .. })
        ));
        assert!(matches!(
            SlotPrefix::new("pvc."),
            Err(ValidationError::ForbiddenChar { .. })
        ));
    }

    #[test]
    fn every_slot_makes_an_nqn_under_the_prefix() {
        let long = Slot::new(&"a".repeat(MAX_SLOT_LEN)).unwrap();
        let nqn = slot_nqn(MIKROTIK_NQN_PREFIX, &long).unwrap();
        assert_eq!(nqn.as_str(), format!("{MIKROTIK_NQN_PREFIX}{long}"));
        assert!(matches!(
            slot_nqn("iqn.2000-02.x:", &long),
            Err(NqnError::Format { .. })
        ));
    }
}
