//! The image's build stage gets every file cargo needs to load the workspace: this copies
//! exactly what the Dockerfile's build stage `COPY`s into a temporary directory and runs
//! `cargo metadata --locked` there, as `cargo build --locked` in the image does first. No
//! container runtime is needed. A second test proves the check catches a missing member.
//!
//! `--offline`: the dependencies were fetched to build this test; the check is about the
//! copied tree, not the registry.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dockerfile() -> String {
    std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile at the repository root")
}

/// One `COPY` of the build stage: context-relative sources and the destination inside the
/// stage, relative to its WORKDIR.
#[derive(Debug)]
struct Copy {
    sources: Vec<String>,
    dest: String,
}

/// The build stage (`FROM ... AS build`) of a Dockerfile: its WORKDIR and its `COPY` lines
/// from the build context (not `--from=`). Line continuations are joined first.
fn build_stage(text: &str) -> (String, Vec<Copy>) {
    let joined = text.replace("\\\n", " ");
    let mut in_build = false;
    let mut workdir = String::from("/");
    let mut copies = Vec::new();
    for line in joined.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        let Some(instr) = words.next() else { continue };
        match instr.to_ascii_uppercase().as_str() {
            "FROM" => {
                let rest: Vec<&str> = words.collect();
                in_build = rest.len() >= 3 && rest[rest.len() - 1].eq_ignore_ascii_case("build");
            }
            "WORKDIR" if in_build => workdir = words.next().expect("WORKDIR path").to_owned(),
            "COPY" | "ADD" if in_build => {
                let args: Vec<&str> = words.collect();
                if args.iter().any(|a| a.starts_with("--from")) {
                    continue;
                }
                let paths: Vec<&str> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
                assert!(paths.len() >= 2, "COPY without a destination: {line}");
                let (dest, sources) = paths.split_last().unwrap();
                copies.push(Copy {
                    sources: sources.iter().map(|s| s.to_string()).collect(),
                    dest: dest.to_string(),
                });
            }
            _ => {}
        }
    }
    assert!(
        !copies.is_empty(),
        "no build stage `FROM ... AS build` with COPY lines"
    );
    (workdir, copies)
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// Lays out in `into` what the build stage would hold under its WORKDIR, with Docker's COPY
/// rules: a directory source copies its contents; several sources or a destination ending in
/// `/` mean "into this directory".
fn lay_out(text: &str, into: &Path) {
    let (workdir, copies) = build_stage(text);
    for c in copies {
        let dest = if c.dest.starts_with('/') {
            let rel = Path::new(&c.dest)
                .strip_prefix(&workdir)
                .unwrap_or_else(|_| panic!("COPY to {} outside WORKDIR {workdir}", c.dest));
            into.join(rel)
        } else {
            into.join(&c.dest)
        };
        let into_dir = c.sources.len() > 1 || c.dest.ends_with('/');
        for s in &c.sources {
            let from = root().join(s);
            assert!(
                from.exists(),
                "the Dockerfile copies {s}, which is not in the repository"
            );
            let to: PathBuf = if into_dir && from.is_file() {
                dest.join(from.file_name().unwrap())
            } else {
                dest.clone()
            };
            copy_tree(&from, &to);
        }
    }
}

fn host_triple() -> String {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// The strings of a JSON array.
fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str())
        .collect()
}

fn metadata(dir: &Path, extra: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1"])
        .args(extra)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .expect("run cargo metadata");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("metadata JSON"))
}

/// `(package, target)` of every library, binary and build script of the workspace members.
fn built_targets(meta: &serde_json::Value) -> std::collections::BTreeSet<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for p in meta["packages"].as_array().unwrap() {
        if p["source"].is_string() {
            continue;
        }
        for t in p["targets"].as_array().unwrap() {
            let built = t["kind"].as_array().unwrap().iter().any(|k| {
                matches!(
                    k.as_str(),
                    Some("lib" | "rlib" | "proc-macro" | "bin" | "custom-build")
                )
            });
            if built {
                out.insert((
                    p["name"].as_str().unwrap().to_owned(),
                    t["name"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

/// `cargo metadata --locked --offline` in a tree laid out from `text`; Err with cargo's
/// message when the workspace does not load, or when a library, binary or build script of
/// the checkout is missing there (cargo discovers build.rs and src/main.rs by their presence:
/// left out, they are silently not built).
fn load_workspace(text: &str) -> Result<serde_json::Value, String> {
    let dir = tempfile::tempdir().unwrap();
    lay_out(text, dir.path());
    // The host's platform only, as the image's `cargo build` needs: other platforms' crates
    // may never have been downloaded on this machine.
    let host = host_triple();
    let meta = metadata(
        dir.path(),
        &["--locked", "--offline", "--filter-platform", &host],
    )?;
    let here = metadata(root(), &["--no-deps", "--offline"]).expect("metadata of the checkout");
    let missing: Vec<_> = built_targets(&here)
        .difference(&built_targets(&meta))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "targets of the checkout missing from the copied tree: {missing:?}"
        ));
    }
    // Every target the image builds (libraries, binaries, build scripts) and every declared
    // bench has its source in the copied tree: cargo only checks some of them at load time.
    for p in meta["packages"].as_array().unwrap() {
        if p["source"].is_string() {
            continue; // a registry dependency
        }
        for t in p["targets"].as_array().unwrap() {
            let kinds = strings(&t["kind"]);
            let src = Path::new(t["src_path"].as_str().unwrap());
            let needed = kinds
                .iter()
                .any(|k| matches!(*k, "lib" | "rlib" | "bin" | "custom-build" | "bench"));
            if needed && !src.exists() {
                return Err(format!(
                    "{} target {} has no source {} in the copied tree",
                    p["name"],
                    t["name"],
                    src.display()
                ));
            }
        }
    }
    Ok(meta)
}

#[test]
fn the_dockerfile_build_stage_copies_everything_cargo_needs() {
    let meta = load_workspace(&dockerfile()).unwrap_or_else(|e| {
        panic!("the workspace does not load from what the Dockerfile's build stage copies:\n{e}")
    });
    let members = strings(&meta["workspace_members"]);
    for want in ["rds-csi", "csi-proto", "node-io"] {
        assert!(
            members.iter().any(|m| m.contains(&format!("#{want}@"))
                || m.contains(&format!("/{want}#"))
                || m.contains(&format!("{want} "))),
            "{want} is not a workspace member of the copied tree: {members:?}"
        );
    }
}

#[test]
fn the_check_fails_when_a_workspace_member_is_not_copied() {
    let text = dockerfile();
    let without_e2e: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("COPY e2e"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(text, without_e2e, "the Dockerfile has no `COPY e2e` line");
    let err = load_workspace(&without_e2e).expect_err("a tree without e2e/ loaded");
    assert!(err.contains("e2e"), "{err}");
}

#[test]
fn the_check_fails_when_the_build_script_is_not_copied() {
    let text = dockerfile();
    let without = text.replace("Cargo.lock build.rs ./", "Cargo.lock ./");
    assert_ne!(
        text, without,
        "the Dockerfile does not copy build.rs with the manifests"
    );
    let err = load_workspace(&without).expect_err("a tree without build.rs loaded");
    assert!(err.contains("build-script-build"), "{err}");
}

#[test]
fn the_image_is_labelled_and_on_debian_stable() {
    let text = dockerfile();
    let froms: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    // Debian 13 (trixie) is the current stable; both stages on it, so the binary's glibc is
    // the one it runs with.
    assert!(froms[0].contains("rust:1-trixie"), "{}", froms[0]);
    assert!(froms[1].contains("debian:trixie-slim"), "{}", froms[1]);
    for label in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.version",
    ] {
        assert!(text.contains(label), "no {label} label");
    }
    let version = format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"));
    assert!(
        text.lines().any(|l| l.trim() == version),
        "the image's default version label is not Cargo.toml's: want `{version}`"
    );
    // The commit reaches build.rs through the environment of the build stage.
    assert!(text.contains("ENV RDS_CSI_GIT_COMMIT=${GIT_COMMIT}"));
}
