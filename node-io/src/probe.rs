//! What is on a device, from its on-disk signatures, before anything may format it.
//!
//! A device that cannot be read in full yet (error, timeout, short read) is `NotReady`,
//! never `Blank`: formatting is only allowed on a positive proof of all-zero bytes.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use thiserror::Error;

use crate::reader::{DeviceReader, ReadError};

/// Bytes read from the start: every signature below lies inside (btrfs needs
/// 65536 + 64 + 8), rounded to whole 4 KiB blocks.
pub const PROBE_LEN: usize = 68 * 1024;

/// Content found by its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Btrfs,
    Swap,
    /// A LUKS encrypted volume header.
    Luks,
    /// An LVM2 physical volume label.
    Lvm2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionTableKind {
    Gpt,
    Mbr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Every byte read is zero.
    Blank,
    Filesystem(FsKind),
    PartitionTable(PartitionTableKind),
    /// More than one signature that do not belong together: treat as holding data.
    Ambiguous(Vec<String>),
    /// Non-zero bytes and no known signature.
    Unknown,
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ext2 => "ext2",
            Self::Ext3 => "ext3",
            Self::Ext4 => "ext4",
            Self::Xfs => "xfs",
            Self::Btrfs => "btrfs",
            Self::Swap => "swap",
            Self::Luks => "crypto_LUKS",
            Self::Lvm2 => "LVM2_member",
        })
    }
}

impl fmt::Display for PartitionTableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gpt => "gpt",
            Self::Mbr => "dos",
        })
    }
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("{device} is not ready to probe: {cause}")]
    NotReady {
        device: String,
        #[source]
        cause: NotReadyCause,
    },
}

#[derive(Debug, Error)]
pub enum NotReadyCause {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("short read: {got} of {want} bytes")]
    ShortRead { got: usize, want: usize },
}

/// Read the first [`PROBE_LEN`] bytes of `dev_path` (O_DIRECT) and classify them.
/// Devices smaller than that cannot be probed and are `NotReady`.
pub fn probe_device(
    reader: &DeviceReader,
    dev_path: &Path,
    deadline: Instant,
) -> Result<Probe, ProbeError> {
    let not_ready = |cause| ProbeError::NotReady {
        device: dev_path.display().to_string(),
        cause,
    };
    let bytes = reader
        .read_at(dev_path, 0, PROBE_LEN, deadline)
        .map_err(|e| not_ready(NotReadyCause::Read(e)))?;
    if bytes.len() < PROBE_LEN {
        return Err(not_ready(NotReadyCause::ShortRead {
            got: bytes.len(),
            want: PROBE_LEN,
        }));
    }
    Ok(classify(&bytes))
}

fn at(buf: &[u8], off: usize, magic: &[u8]) -> bool {
    buf.get(off..off + magic.len()) == Some(magic)
}

fn le32(buf: &[u8], off: usize) -> u32 {
    buf.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

/// ext2/3/4 superblock at 1024: s_magic at +56, s_feature_compat at +92,
/// s_feature_incompat at +96.
fn ext_kind(buf: &[u8]) -> Option<FsKind> {
    if !at(buf, 1024 + 56, &[0x53, 0xEF]) {
        return None;
    }
    const COMPAT_HAS_JOURNAL: u32 = 0x4;
    // Features ext2/ext3 lack: extents, 64bit, flex_bg.
    const INCOMPAT_EXT4: u32 = 0x40 | 0x80 | 0x200;
    let compat = le32(buf, 1024 + 92);
    let incompat = le32(buf, 1024 + 96);
    Some(if incompat & INCOMPAT_EXT4 != 0 {
        FsKind::Ext4
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        FsKind::Ext3
    } else {
        FsKind::Ext2
    })
}

/// Classify the first bytes of a device. Pure, so every signature is unit-tested on
/// buffers; fewer bytes than [`PROBE_LEN`] just means the later signatures are absent.
pub fn classify(buf: &[u8]) -> Probe {
    if buf.iter().all(|&b| b == 0) {
        return Probe::Blank;
    }
    let mut content: Vec<FsKind> = Vec::new();
    if at(buf, 0, b"LUKS\xba\xbe") {
        content.push(FsKind::Luks);
    }
    if at(buf, 0, b"XFSB") {
        content.push(FsKind::Xfs);
    }
    if at(buf, 65536 + 64, b"_BHRfS_M") {
        content.push(FsKind::Btrfs);
    }
    if let Some(k) = ext_kind(buf) {
        content.push(k);
    }
    if at(buf, 4086, b"SWAPSPACE2") || at(buf, 4086, b"SWAP-SPACE") {
        content.push(FsKind::Swap);
    }
    // The LVM2 label may sit in any of the first four 512-byte sectors.
    if (0..4).any(|s| at(buf, s * 512, b"LABELONE") && at(buf, s * 512 + 24, b"LVM2 001")) {
        content.push(FsKind::Lvm2);
    }
    let gpt = at(buf, 512, b"EFI PART");
    let mbr = at(buf, 510, &[0x55, 0xAA]);
    // A GPT disk carries a protective MBR: together they are one GPT.
    let table = if gpt {
        Some(PartitionTableKind::Gpt)
    } else if mbr {
        Some(PartitionTableKind::Mbr)
    } else {
        None
    };
    match (content.as_slice(), table) {
        ([], None) => Probe::Unknown,
        ([one], None) => Probe::Filesystem(*one),
        ([], Some(t)) => Probe::PartitionTable(t),
        _ => Probe::Ambiguous(
            content
                .iter()
                .map(ToString::to_string)
                .chain(table.map(|t| t.to_string()))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf() -> Vec<u8> {
        vec![0u8; PROBE_LEN]
    }

    fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
        b[off..off + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn zeroes_are_blank() {
        assert_eq!(classify(&buf()), Probe::Blank);
    }

    #[test]
    fn one_stray_byte_is_unknown_not_blank() {
        let mut b = buf();
        b[PROBE_LEN - 1] = 1;
        assert_eq!(classify(&b), Probe::Unknown);
    }

    #[test]
    fn ext_family_is_told_apart_by_features() {
        let mut b = buf();
        put(&mut b, 1080, &[0x53, 0xEF]);
        assert_eq!(classify(&b), Probe::Filesystem(FsKind::Ext2));
        put(&mut b, 1024 + 92, &4u32.to_le_bytes());
        assert_eq!(classify(&b), Probe::Filesystem(FsKind::Ext3));
        put(&mut b, 1024 + 96, &0x40u32.to_le_bytes());
        assert_eq!(classify(&b), Probe::Filesystem(FsKind::Ext4));
    }

    #[test]
    fn every_content_signature_is_found() {
        let cases: &[(usize, &[u8], FsKind)] = &[
            (0, b"XFSB", FsKind::Xfs),
            (65536 + 64, b"_BHRfS_M", FsKind::Btrfs),
            (4086, b"SWAPSPACE2", FsKind::Swap),
            (4086, b"SWAP-SPACE", FsKind::Swap),
            (0, b"LUKS\xba\xbe", FsKind::Luks),
        ];
        for (off, magic, kind) in cases {
            let mut b = buf();
            put(&mut b, *off, magic);
            assert_eq!(classify(&b), Probe::Filesystem(*kind), "{kind}");
        }
        for sector in 0..4 {
            let mut b = buf();
            put(&mut b, sector * 512, b"LABELONE");
            put(&mut b, sector * 512 + 24, b"LVM2 001");
            assert_eq!(classify(&b), Probe::Filesystem(FsKind::Lvm2));
        }
    }

    #[test]
    fn partition_tables_are_found_and_gpt_wins_over_its_protective_mbr() {
        let mut b = buf();
        put(&mut b, 510, &[0x55, 0xAA]);
        assert_eq!(classify(&b), Probe::PartitionTable(PartitionTableKind::Mbr));
        put(&mut b, 512, b"EFI PART");
        assert_eq!(classify(&b), Probe::PartitionTable(PartitionTableKind::Gpt));
    }

    #[test]
    fn signatures_that_contradict_each_other_are_ambiguous() {
        let mut b = buf();
        put(&mut b, 0, b"XFSB");
        put(&mut b, 1080, &[0x53, 0xEF]);
        assert!(matches!(classify(&b), Probe::Ambiguous(v) if v.len() == 2));
        let mut b = buf();
        put(&mut b, 1080, &[0x53, 0xEF]);
        put(&mut b, 510, &[0x55, 0xAA]);
        assert!(matches!(classify(&b), Probe::Ambiguous(_)));
    }

    #[test]
    fn magic_off_by_one_is_not_a_match() {
        let mut b = buf();
        put(&mut b, 1, b"XFSB");
        assert_eq!(classify(&b), Probe::Unknown);
    }

    #[test]
    fn short_buffers_never_panic() {
        for len in [0, 1, 511, 512, 1081, 4095, 65600] {
            let b = vec![0xFFu8; len];
            let _ = classify(&b);
        }
        assert_eq!(classify(&[]), Probe::Blank);
    }
}
