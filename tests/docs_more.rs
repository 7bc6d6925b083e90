//! Docs stay true, continued (tests/docs.rs checks metrics and flags): every event reason the
//! docs name exists in the code and every reason is documented; the StorageClass parameter
//! table of docs/configuration.md is exactly the set the controller reads.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use rds_csi::attachment::EventReason;
use rds_csi::volume::keys::STORAGE_CLASS_PARAMETERS;

fn docs() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read_to_string(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// First-column values (backticked) of every markdown table whose header's first cell is
/// `header`.
fn table_keys(text: &str, header: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_table = false;
    for line in text.lines() {
        let l = line.trim();
        if !l.starts_with('|') {
            in_table = false;
            continue;
        }
        let first = l.trim_matches('|').split('|').next().unwrap_or("").trim();
        if !in_table {
            in_table = first == header;
            continue;
        }
        if let Some(k) = first.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
            out.insert(k.to_owned());
        }
    }
    out
}

/// Words that look like event reasons: `Volume…`, `Migration…`, `Attachment…`,
/// `StaleAttachment…` CamelCase words standing alone (not inside a longer identifier such as
/// the alert `RdsCsiMigrationTimeout`), plus every `reason=X` / `reason=="X"`.
/// Names of Kubernetes kinds and driver types that share a prefix with event reasons.
const NOT_REASONS: &[&str] = &[
    "VolumeAttachment",
    "VolumeAttachments",
    "VolumeSnapshot",
    "VolumeSnapshots",
    "VolumeSnapshotClass",
    "VolumeSnapshotContent",
    "AttachmentSource",
];

fn reason_like_words(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["Volume", "Migration", "Attachment", "StaleAttachment"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(prefix) {
            let start = from + i;
            from = start + prefix.len();
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            let end = text[start..]
                .find(|c: char| !c.is_ascii_alphanumeric())
                .map_or(text.len(), |e| start + e);
            let word = &text[start..end];
            // CamelCase with at least two humps, e.g. VolumeAttached; `Volume` alone or
            // `VolumeAttachment` (the Kubernetes kind) are not reasons.
            let humps = word.chars().filter(char::is_ascii_uppercase).count();
            if humps >= 2 && !NOT_REASONS.contains(&word) {
                out.insert(word.to_owned());
            }
        }
    }
    for marker in ["reason=", "reason==\""] {
        let mut from = 0;
        while let Some(i) = text[from..].find(marker) {
            let start = from + i + marker.len();
            from = start;
            let word: String = text[start..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            if !word.is_empty() {
                out.insert(word);
            }
        }
    }
    out
}

fn code_reasons() -> BTreeSet<String> {
    EventReason::ALL
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect()
}

#[test]
fn event_reasons_in_docs_exist_and_every_reason_is_documented() {
    let code = code_reasons();
    let mut tabled = BTreeSet::new();
    for (name, text) in docs() {
        let unknown: Vec<_> = reason_like_words(&text)
            .into_iter()
            .filter(|w| !code.contains(w))
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/{name} names event reasons the code lacks: {unknown:?} (known: {code:?})"
        );
        tabled.extend(table_keys(&text, "reason"));
    }
    common::assert_same_names(
        &tabled,
        &code,
        "event tables list unknown reasons",
        "reasons missing from every docs event table (| reason | ... |)",
    );
}

#[test]
fn configuration_lists_exactly_the_storageclass_parameters_the_controller_reads() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let section = text
        .split("\n## StorageClass parameters")
        .nth(1)
        .expect("docs/configuration.md has a `## StorageClass parameters` section");
    let section = section.split("\n## ").next().unwrap();
    let documented = table_keys(section, "parameter");
    let code: BTreeSet<String> = STORAGE_CLASS_PARAMETERS
        .iter()
        .map(|s| s.to_string())
        .collect();
    common::assert_same_names(
        &documented,
        &code,
        "docs/configuration.md documents parameters the controller does not read",
        "StorageClass parameters missing from docs/configuration.md",
    );
    // Every parameter row states a default and a range.
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<_> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 4 && !cells[1].is_empty() && !cells[2].is_empty(),
            "row without default or range: {line}"
        );
    }
}

#[test]
fn the_reason_scanner_catches_what_it_should() {
    let w = reason_like_words(
        "`MigrationTimedOut` and VolumeAttached, not RdsCsiMigrationTimeout nor VolumeAttachments; reason=Foo",
    );
    assert!(w.contains("MigrationTimedOut") && w.contains("VolumeAttached") && w.contains("Foo"));
    assert!(!w
        .iter()
        .any(|x| x.contains("Timeout") || x == "VolumeAttachments"));
    let t = table_keys(
        "| reason | type |\n|---|---|\n| `A` | x |\n\n| other |\n|---|\n| `B` |",
        "reason",
    );
    assert_eq!(t.into_iter().collect::<Vec<_>>(), ["A"]);
}
