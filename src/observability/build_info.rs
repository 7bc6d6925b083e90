//! What this binary is: the package version and the git commit it was built from (build.rs:
//! the `RDS_CSI_GIT_COMMIT` variable of the image build, else `git rev-parse HEAD` of the
//! checkout, else `unknown`). `rds-csi version` and the `rds_csi_build_info` metric show both.

use crate::csi::CSI_SPEC_VERSION;

/// The package version (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit, or `unknown` when the build had neither the variable nor a checkout.
pub const GIT_COMMIT: &str = env!("RDS_CSI_GIT_COMMIT");

/// The line `rds-csi version` prints, e.g.
/// `rds-csi 0.1.0 (commit 4d02555…, CSI spec 1.12.0)`.
pub fn version_line() -> String {
    format!("rds-csi {VERSION} (commit {GIT_COMMIT}, CSI spec {CSI_SPEC_VERSION})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_line_names_version_commit_and_spec() {
        let l = version_line();
        assert!(l.starts_with(&format!("rds-csi {VERSION} (commit ")), "{l}");
        assert!(
            l.contains(GIT_COMMIT) && l.contains(CSI_SPEC_VERSION),
            "{l}"
        );
        assert!(!GIT_COMMIT.is_empty());
    }
}
