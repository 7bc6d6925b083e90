//! Today's RouterOS parser (the borrowing scanner, `parse_items`, `parse_disks`) against the
//! parser it replaced, kept verbatim in tests/routeros_reference/: on every input both give
//! the same items (numbers, flags, comments, fields in order), the same typed field values,
//! the same disks, and the same error (variant, line and text). Inputs: the fuzz corpus and
//! saved crashers of `routeros_print`, hand-written edge cases, random RouterOS-like text,
//! and rendered disk listings with random edits.

mod routeros_reference;

use std::path::Path;

use proptest::prelude::*;
use rds_csi::rds::{
    parse_disks, parse_items, render_disk_list, Disk, Item, ListingError, ParseError,
};
use routeros_reference as old;

type Shape = (Option<u64>, String, Option<String>, Vec<(String, String)>);

/// The same accessors on both parsers' item types (the reference is a copy, not a trait impl).
macro_rules! shape {
    ($item:expr) => {
        (
            $item.number(),
            $item.flags().to_string(),
            $item.comment().map(str::to_string),
            $item
                .fields()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
}

fn shape_new(item: &Item) -> Shape {
    shape!(item)
}

fn shape_old(item: &old::Item) -> Shape {
    shape!(item)
}

/// Panics with the input when the two parsers disagree on anything.
fn same(text: &str) {
    let new = parse_items(text);
    let before = old::parse_items(text);
    let new_shapes: Result<Vec<Shape>, ParseError> = new
        .as_ref()
        .map(|v| v.iter().map(shape_new).collect())
        .map_err(Clone::clone);
    let old_shapes: Result<Vec<Shape>, ParseError> = before
        .as_ref()
        .map(|v| v.iter().map(shape_old).collect())
        .map_err(Clone::clone);
    assert_eq!(new_shapes, old_shapes, "items differ for {text:?}");

    let old_disks: Result<Vec<Disk>, ListingError> = match &before {
        Err(e) => Err(ListingError::Parse(e.clone())),
        Ok(items) => old::disks_from_items(items).map_err(ListingError::Model),
    };
    assert_eq!(parse_disks(text), old_disks, "disks differ for {text:?}");

    let (Ok(new), Ok(before)) = (new, before) else {
        return;
    };
    for (n, o) in new.iter().zip(&before) {
        assert_eq!(
            Disk::from_item(n),
            old::disk_from_item(o),
            "disk differs for {text:?}"
        );
        for (key, _) in o.fields() {
            assert_eq!(n.get_u64(key), o.get_u64(key), "{key} as u64 in {text:?}");
            assert_eq!(
                n.get_bytes(key),
                o.get_bytes(key),
                "{key} as bytes in {text:?}"
            );
            assert_eq!(
                n.get_bool(key),
                o.get_bool(key),
                "{key} as bool in {text:?}"
            );
        }
    }
}

#[test]
fn fuzz_corpus_and_crashers_parse_alike() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let dir = root.join(dir).join("routeros_print");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            same(&String::from_utf8_lossy(&data));
            count += 1;
        }
    }
    assert!(count >= 9, "only {count} corpus files");
}

#[test]
fn edge_cases_parse_alike() {
    for text in [
        "",
        "\n",
        "\n\n\n",
        "Flags: X - disabled\n\n",
        "Columns: SLOT, TYPE\n 0 a=1",
        "type=file slot=\"pvc-1\" slot-default=\"\" fs=- a=\"x\\\"y\\\\z\\_w\\41\"",
        "a=\"\\ab\\AB\\g\\\\\\n\" b=1",
        "a=\"\\ff\"",
        "a=\"\\c3\\a9\" b=\"é\"",
        "comment=\"a b=c\" next=1",
        "size=53 687 091 200 type=.img file last-modified=2025-11-11 14:32:41",
        "size=53  687\t091 200",
        "size=53 687\n               091 200 free=1",
        "size=53 687\n\t091\n  200",
        " 9  size=1 000\n               200 x=1\n10  y=2\n",
        " 0 X type=file slot=\"a\"\n\n 1 XR type=file\n 2 X R a=1\n 3   b=2",
        "X R a=1 B\nC",
        " 0   ;;; made by csi\n     type=file slot=\"a\"\n   ;;;  second   \n  ;;;",
        " 0 ;;; one\n ;;; two\n a=1 ;;; three",
        "a=1\n  a=2",
        "a=1 a=\"x",
        "a=1 b=\"x\"y",
        "a=1\n   b=2\n\n   c=3\nd=4\n",
        "a=1\r\n\tb=\"2\"\r\n",
        "\r5 x=1",
        " \r5 x=1\n\r\r",
        "99999999999999999999999 x=1",
        " 1 a=1\n  99999999999999999999999 y",
        "    4 a=1",
        "   4 a=1",
        "4=x",
        " 4=x 5",
        "a=b=c d==e",
        "=x",
        "a/b=x",
        "a=b\"c",
        "a=1 \"b\"",
        "failure: no such item",
        "bad command name x (line 1 column 7)",
        "a=1 failure: no",
        "a=yes b=No c=TRUE d=fAlSe e=maybe f=50.0GiB g=1.3KiB h=7 949 127 950 336 i=-",
        "a= b=\"\" c=- d",
        "type=file slot=\"a\" size=1 nvme-tcp-server-port=70000",
        "type=file slot=\"a\" size=1 nvme-tcp-export=maybe",
        "type=file slot=\"a\" file-size=1.5GiB",
        "type=file slot=\"a\" size=1 file-path=\"\" nvme-tcp-server-nqn=-",
        "type=file slot=\"a\"",
        "type=file slot=\"a\" size=1\n\nfailure: x",
        "type=file size=1\n\na=\"unterminated",
        "k=\"é ü\" ;;; ümlaut",
        "a=1 ;;;",
        ";;; only a comment",
    ] {
        same(text);
    }
}

fn disk(i: usize) -> Disk {
    let slot = format!("pvc-{i:04}");
    let mut d = Disk::file(
        &slot,
        &format!("/storage-pool/csi/{slot}.img"),
        (i as u64 + 1) << 30,
    );
    d.nvme_tcp_export = !i.is_multiple_of(3);
    d.nvme_tcp_port = i.is_multiple_of(2).then_some(4420);
    d.nvme_tcp_nqn = (!i.is_multiple_of(5)).then(|| format!("nqn.2000-02.com.mikrotik:{slot}"));
    if i % 7 == 3 {
        d.flags = "X".into();
    }
    d
}

#[test]
fn a_rendered_listing_parses_alike() {
    let disks: Vec<Disk> = (0..200).map(disk).collect();
    let text = render_disk_list(&disks);
    same(&text);
    assert_eq!(parse_disks(&text).unwrap(), disks);
}

/// Bytes that make RouterOS output interesting: delimiters, escapes, digits, flags.
const EDITS: &[&str] = &[
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    "\"",
    "\\",
    "=",
    ";;;",
    "0",
    "12",
    " 345",
    "X",
    "R",
    "a",
    "-",
    "é",
    "\\\"",
    "\\41",
    "\\ff",
    "\\_",
    "Flags: X\n",
    "slot=\"y\"",
    "size=1",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_routeros_like_text_parses_alike(text in "[ 0-9a-zA-Z=\"\\\\;:.\n\t\r-]{0,300}") {
        same(&text);
    }

    #[test]
    fn random_text_parses_alike(text in "(?s).{0,200}") {
        same(&text);
    }

    #[test]
    fn edited_listings_parse_alike(
        n in 1usize..6,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..EDITS.len(), any::<bool>()), 1..8),
    ) {
        let mut text = render_disk_list(&(0..n).map(disk).collect::<Vec<_>>());
        for (at, what, delete) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            if delete && i < text.len() {
                let c = text[i..].chars().next().unwrap();
                text.replace_range(i..i + c.len_utf8(), "");
            } else {
                text.insert_str(i, EDITS[what]);
            }
        }
        same(&text);
    }
}
