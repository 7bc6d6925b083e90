//! The git commit a build carries (issue 18.2): build/commit.rs's rules run against real git
//! repositories, and the binary built for these tests shows the commit of this checkout in
//! `rds-csi version` and the `rds_csi_build_info` metric.

// Brings `Path`, `PathBuf` and `Command` in too.
include!("../build/commit.rs");

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn has_git() -> bool {
    Command::new("git").arg("--version").output().is_ok()
}

#[test]
fn the_variable_wins_over_the_checkout() {
    let c = find_commit(Some(" 0123abcd \n"), Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert_eq!(c.commit, "0123abcd");
    assert!(c.watch.is_empty());
}

#[test]
fn a_variable_that_is_not_a_commit_is_refused_by_name() {
    for bad in ["abc def", "a\"b", "x\ny", &"a".repeat(65)] {
        let e = find_commit(Some(bad), Path::new("/")).unwrap_err();
        assert!(
            e.contains("RDS_CSI_GIT_COMMIT") && e.contains("not a commit"),
            "{e}"
        );
        assert!(e.len() < 300, "{e}");
    }
}

#[test]
fn a_checkout_gives_its_head_and_the_files_that_move_with_it() {
    if !has_git() {
        eprintln!("SKIPPED: no git on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q"]);
    std::fs::write(d.join("f"), "1").unwrap();
    git(d, &["add", "f"]);
    git(d, &["commit", "-q", "-m", "one"]);
    let head = git(d, &["rev-parse", "HEAD"]);
    // An empty variable is as good as none.
    let c = find_commit(Some(""), d).unwrap();
    assert_eq!(c.commit, head);
    let git_dir = d.join(".git").canonicalize().unwrap();
    assert!(c.watch.contains(&git_dir.join("HEAD")), "{:?}", c.watch);
    assert!(
        c.watch.contains(&git_dir.join("refs/heads/main")),
        "{:?}",
        c.watch
    );
    assert!(c.watch.iter().all(|p| p.exists()));
    // A new commit is seen; a packed ref still is.
    std::fs::write(d.join("f"), "2").unwrap();
    git(d, &["commit", "-q", "-am", "two"]);
    git(d, &["pack-refs", "--all"]);
    let c2 = find_commit(None, d).unwrap();
    assert_eq!(c2.commit, git(d, &["rev-parse", "HEAD"]));
    assert_ne!(c2.commit, head);
    assert!(
        c2.watch.contains(&git_dir.join("packed-refs")),
        "{:?}",
        c2.watch
    );
}

#[test]
fn neither_variable_nor_checkout_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    // GIT_CEILING_DIRECTORIES is not passed down by find_commit; a temp dir is outside any
    // repository on the machines this runs on, checked here.
    if has_git()
        && Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(dir.path())
            .output()
            .unwrap()
            .status
            .success()
    {
        eprintln!("SKIPPED: the temp dir is inside a git repository");
        return;
    }
    let c = find_commit(None, dir.path()).unwrap();
    assert_eq!(
        c,
        Commit {
            commit: "unknown".into(),
            watch: vec![]
        }
    );
}

/// This checkout's HEAD, which build.rs found when it built the binary under test (cargo
/// reruns it when HEAD moves).
fn expected_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn version_and_build_info_carry_the_commit_of_this_checkout() {
    let out = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .arg("version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let metric = rds_csi::observability::Metrics::new("node").render();
    match expected_commit() {
        Some(c) if std::env::var_os("RDS_CSI_GIT_COMMIT").is_none() => {
            assert_eq!(
                line,
                format!(
                    "rds-csi {} (commit {c}, CSI spec 1.12.0)",
                    env!("CARGO_PKG_VERSION")
                )
            );
            assert!(metric.contains(&format!("commit=\"{c}\"")), "{metric}");
        }
        _ => {
            eprintln!("SKIPPED the exact commit: not a git checkout, or RDS_CSI_GIT_COMMIT is set");
            assert!(line.contains("(commit "), "{line}");
        }
    }
}
