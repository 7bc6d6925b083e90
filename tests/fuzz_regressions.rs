//! The fuzz corpora and saved crashers as regression tests.
//!
//! Every file in `fuzz/corpus/<target>/` (the seed corpus, from real samples) and in
//! `fuzz/regressions/<target>/` (inputs that once crashed a target, copied there by
//! `scripts/fuzz.sh`) is fed to the very check the fuzz target runs: `fuzz/src/lib.rs` is
//! compiled into this test with `#[path]`, so the two cannot drift apart. A panic fails the
//! test with the file's path and its bytes in hex. A missing directory is an error, never a
//! silent pass, and the list of targets must match fuzz/Cargo.toml and both directories.

#[path = "../fuzz/src/lib.rs"]
mod fuzz_checks;

use std::collections::BTreeSet;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The regular files of `dir`, sorted; a missing or unreadable directory fails the test.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (every fuzz target needs this directory)",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn hex(data: &[u8]) -> String {
    const SHOWN: usize = 512;
    let mut s: String = data
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect();
    if data.len() > SHOWN {
        s.push_str(&format!("... ({} bytes)", data.len()));
    }
    s
}

/// Runs `check` on every file of `dir`; returns how many passed, or the failures.
fn replay_dir(check: fuzz_checks::Check, dir: &Path) -> Result<usize, Vec<String>> {
    let files = files_in(dir);
    let mut failures = Vec::new();
    for file in &files {
        let data = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failures.push(format!("{}: {}", file.display(), hex(&data)));
        }
    }
    if failures.is_empty() {
        Ok(files.len())
    } else {
        Err(failures)
    }
}

/// Replays `fuzz/<kind>/<target>/` for every target; `min_files` per directory.
fn replay(kind: &str, min_files: usize) {
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, check) in fuzz_checks::TARGETS {
        let dir = fuzz_dir().join(kind).join(name);
        let count = files_in(&dir).len();
        assert!(
            count >= min_files,
            "{}: {count} files, expected at least {min_files}",
            dir.display()
        );
        match replay_dir(*check, &dir) {
            Ok(n) => total += n,
            Err(f) => failures.extend(f),
        }
    }
    assert!(
        failures.is_empty(),
        "{} input(s) under fuzz/{kind}/ fail their target's check:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "replayed {total} files of fuzz/{kind}/ through {} targets",
        fuzz_checks::TARGETS.len()
    );
}

#[test]
fn seed_corpora_pass_every_check() {
    replay("corpus", 1);
}

#[test]
fn saved_crashers_stay_fixed() {
    replay("regressions", 0);
}

fn subdirs(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_fuzz_target_has_its_corpus_and_regression_directories() {
    let targets: BTreeSet<String> = fuzz_checks::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(targets.len(), fuzz_checks::TARGETS.len(), "duplicate names");
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let bins: BTreeSet<String> = manifest
        .split("[[bin]]")
        .skip(1)
        .map(|section| {
            let line = section
                .lines()
                .find(|l| l.trim_start().starts_with("name"))
                .expect("a [[bin]] has a name");
            line.split('"').nth(1).expect("quoted name").to_string()
        })
        .collect();
    assert_eq!(bins, targets, "fuzz/Cargo.toml [[bin]]s vs TARGETS");
    for (name, _) in fuzz_checks::TARGETS {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = fs::read_to_string(&source).unwrap_or_else(|e| panic!("{source:?}: {e}"));
        assert!(
            text.contains(&format!("rds_csi_fuzz::{name}(data)")),
            "{source:?} must call rds_csi_fuzz::{name}"
        );
    }
    assert_eq!(subdirs(&fuzz_dir().join("corpus")), targets, "fuzz/corpus/");
    assert_eq!(
        subdirs(&fuzz_dir().join("regressions")),
        targets,
        "fuzz/regressions/"
    );
}

#[test]
fn the_replay_reports_a_failing_input() {
    // The harness itself must not be vacuous: a check that panics on some input is reported
    // with that input's path and bytes.
    fn rejects_failure_lines(data: &[u8]) {
        assert!(!data.windows(8).any(|w| w == b"failure:"));
    }
    let dir = fuzz_dir().join("corpus").join("routeros_error");
    let failures =
        replay_dir(rejects_failure_lines, &dir).expect_err("the corpus has failure lines");
    assert!(
        failures
            .iter()
            .any(|f| f.contains("no_space_stdout_exit0") && f.contains("6661696c7572653a")),
        "{failures:?}"
    );
}
