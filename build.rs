//! Build script of the rds-csi package: records the git commit (build/commit.rs says from
//! where) as the compile-time variable RDS_CSI_GIT_COMMIT.

include!("build/commit.rs");

fn main() {
    println!("cargo:rerun-if-env-changed={COMMIT_ENV}");
    println!("cargo:rerun-if-changed=build/commit.rs");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let from_env = std::env::var(COMMIT_ENV).ok();
    let found = match find_commit(from_env.as_deref(), Path::new(&dir)) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    for f in &found.watch {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    println!("cargo:rustc-env={COMMIT_ENV}={}", found.commit);
}
