//! A volume id as the table keeps it: inline when short, so matching a request against an
//! entry reads only the entry (with a million volumes, an id behind a pointer is one more
//! cache miss on every call). PV names (`pvc-` + a UUID) are 40 bytes; longer ids go to the
//! heap.

use std::cmp::Ordering;

/// Ids up to this many bytes are stored inline (the key is then 48 bytes).
const INLINE: usize = 46;

#[derive(Clone, PartialEq, Eq)]
pub(super) enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Key {
    pub(super) fn new(id: &str) -> Self {
        if id.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            Key::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(id.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(s) => s.as_bytes(),
        }
    }

    /// Whether this is the key of `id` (bytes compared, nothing decoded).
    pub(super) fn is(&self, id: &str) -> bool {
        self.as_bytes() == id.as_bytes()
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` whole, so always UTF-8; checked rather than assumed (this is
            // off the hot path: copies and sweeps).
            Key::Inline { .. } => std::str::from_utf8(self.as_bytes()).expect("copied from a str"),
            Key::Heap(s) => s,
        }
    }
}

/// The order of the ids as strings (byte-wise), like the `Arc<str>` keys it replaces.
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_ids_compare_and_order_as_strings() {
        let long = "pvc-".to_string() + &"x".repeat(60);
        let ids = [
            "",
            "a",
            "pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f",
            &long,
            "é",
        ];
        for a in ids {
            let k = Key::new(a);
            assert!(k.is(a));
            assert_eq!(k.as_str(), a);
            assert_eq!(matches!(k, Key::Inline { .. }), a.len() <= INLINE);
            for b in ids {
                assert_eq!(k.is(b), a == b);
                assert_eq!(k.cmp(&Key::new(b)), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }
}
