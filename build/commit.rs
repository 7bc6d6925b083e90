// The git commit a build is made from, for `rds-csi version` and the rds_csi_build_info metric.
// Included by build.rs and by tests/build_commit.rs (so the rules are tested with a real git).
//
// Sources, first that answers: the RDS_CSI_GIT_COMMIT environment variable (the image build
// sets it from a build argument: .git is not copied there), `git rev-parse HEAD` when building
// from a checkout, else "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable an image build (or a packager) sets to the commit.
pub const COMMIT_ENV: &str = "RDS_CSI_GIT_COMMIT";

/// What build.rs tells cargo: the commit, and the files whose change means HEAD moved.
#[derive(Debug, PartialEq, Eq)]
pub struct Commit {
    pub commit: String,
    /// `.git/HEAD`, the branch's ref file and `packed-refs`, those that exist (a path that
    /// does not exist would make cargo rerun the script, and rebuild the crate, every time).
    pub watch: Vec<PathBuf>,
}

/// `from_env` is the value of [`COMMIT_ENV`]; `checkout` the directory to ask git in.
/// Err when the variable holds something that is not a commit-like word (at most 64 of
/// `[0-9A-Za-z._-]`): it ends up in a metric label and a version line.
pub fn find_commit(from_env: Option<&str>, checkout: &Path) -> Result<Commit, String> {
    if let Some(v) = from_env.map(str::trim).filter(|v| !v.is_empty()) {
        let ok = v.len() <= 64
            && v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            let shown: String = v.chars().take(80).collect();
            return Err(format!(
                "{COMMIT_ENV}={shown:?} is not a commit (at most 64 of [0-9A-Za-z._-]); \
                 set it to `git rev-parse HEAD` or unset it"
            ));
        }
        return Ok(Commit {
            commit: v.to_owned(),
            watch: Vec::new(),
        });
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(checkout)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let Some(commit) = git(&["rev-parse", "--verify", "-q", "HEAD"]) else {
        return Ok(Commit {
            commit: "unknown".to_owned(),
            watch: Vec::new(),
        });
    };
    // --git-path resolves worktrees (.git is then a file) and the common dir for refs.
    let mut watch = Vec::new();
    let mut path = |p: &str| {
        if let Some(f) = git(&["rev-parse", "--path-format=absolute", "--git-path", p]) {
            let f = PathBuf::from(f);
            if f.exists() {
                watch.push(f);
            }
        }
    };
    path("HEAD");
    path("packed-refs");
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        path(&r);
    }
    Ok(Commit { commit, watch })
}
