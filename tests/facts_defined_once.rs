//! Each fact that crosses the controller/node boundary is defined once, in the type that
//! enforces it (docs/architecture.md, "Crates and module boundaries"): a second literal of
//! the same fact in the driver's or node-io's code is a bug waiting for the first to change.
//! Scans the non-test code (everything before a file's first `#[cfg(test)]`, test-only files
//! skipped) and names the file holding a stray copy.

mod common;

use std::path::Path;

/// (file relative to the repository, non-test source text).
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = common::rs_files(&root.join("src"));
    files.extend(common::rs_files(&root.join("node-io/src")));
    files
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            // Test-only modules (`#[cfg(test)] mod fake_api;`), and node-io's probe, which
            // names every filesystem signature the kernel knows (a Linux fact).
            !matches!(
                &*name,
                "tests.rs" | "testing.rs" | "fake_api.rs" | "probe.rs"
            ) && !name.ends_with("_tests.rs")
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap().to_owned();
            // Doc and line comments describe facts; they do not define them.
            let code = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            (p.strip_prefix(root).unwrap().display().to_string(), code)
        })
        .collect()
}

/// The files whose non-test code contains `needle`. A port after a `:` is an example
/// address in a message (`127.0.0.1:4420`), not the fact.
fn holders(sources: &[(String, String)], needle: &str) -> Vec<String> {
    sources
        .iter()
        .filter(|(_, code)| {
            code.match_indices(needle)
                .any(|(i, _)| !code[..i].ends_with(':'))
        })
        .map(|(f, _)| f.clone())
        .collect()
}

#[test]
fn every_shared_fact_has_one_home() {
    let src = sources();
    let facts: &[(&str, &[&str], &str)] = &[
        // (what, literals of the fact, its one home)
        (
            "StorageClass / volume-context keys",
            &[
                "\"volumePath\"",
                "\"nvmeAddress\"",
                "\"nvmePort\"",
                "\"ctrlLossTmo\"",
                "\"reconnectDelay\"",
                "\"keepAliveTmo\"",
                "\"migrationTimeoutSeconds\"",
                "\"fsType\"",
                "\"volumeFile\"",
                "\"fresh\"",
            ],
            "src/volume/keys.rs",
        ),
        (
            "the filesystem types",
            &["\"ext4\"", "\"xfs\""],
            "src/volume/fs_type.rs",
        ),
        (
            "the migration-timeout range and default",
            &["MIN_SECS: u64 =", "MAX_SECS: u64 =", "DEFAULT_SECS: u64 ="],
            "src/volume/migration_timeout.rs",
        ),
        ("the NVMe/TCP port", &["4420"], "node-io/src/fabrics.rs"),
        (
            "the NQN newtype",
            &["pub struct Nqn", "NQN_MAX_LEN: usize ="],
            "node-io/src/nqn.rs",
        ),
        (
            "the volume-capability parser",
            &["Mode::try_from"],
            "src/volume/capability.rs",
        ),
        (
            "the refusal of filesystem RWX",
            &["ReadWriteMany is"],
            "src/volume/capability.rs",
        ),
        (
            "the volume-id rule",
            &["pub struct VolumeId", "SNAPSHOT_SLOT_PREFIX: &str ="],
            "src/volume/id.rs",
        ),
    ];
    let mut stray = Vec::new();
    for (what, literals, home) in facts {
        for lit in *literals {
            let found = holders(&src, lit);
            assert!(
                found.iter().any(|f| f == home),
                "{what}: {lit} is not defined in {home} (found in {found:?})"
            );
            for f in found.iter().filter(|f| f != home) {
                stray.push(format!("{what}: {lit} also in {f}"));
            }
        }
    }
    assert!(
        stray.is_empty(),
        "facts defined twice:\n{}",
        stray.join("\n")
    );
}

#[test]
fn one_type_is_named_access_and_one_migration_timeout() {
    let src = sources();
    for decl in [
        "enum Access ",
        "struct MigrationTimeout",
        "enum FsType",
        "struct Capability ",
    ] {
        let found = holders(&src, decl);
        assert_eq!(found.len(), 1, "{decl} declared in {found:?}");
    }
}
