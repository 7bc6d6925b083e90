//! The binary's command line: help, version, unavailable roles, and clear bad-flag errors.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .args(args)
        .env_remove("RDS_CSI_ENDPOINT")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["controller", "node", "simulator", "demo", "version"] {
        let o = run(&[sub, "--help"]);
        assert!(o.status.success(), "{sub} --help failed: {}", stderr(&o));
        assert!(!o.stdout.is_empty());
    }
    let o = run(&["--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for sub in ["controller", "node", "simulator", "demo", "version"] {
        assert!(out.contains(sub), "{sub} missing from --help");
    }
}

#[test]
fn version_names_the_csi_spec() {
    let o = run(&["version"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(env!("CARGO_PKG_VERSION")) && out.contains("CSI spec 1.12.0"),
        "{out}"
    );
}

#[test]
fn bad_configuration_names_flag_value_and_expectation() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["controller", "--endpoint", "csi.sock"],
            "--endpoint",
            "csi.sock",
        ),
        (
            &["node", "--endpoint", "tcp://nohost"],
            "--endpoint",
            "tcp://nohost",
        ),
        (
            &["controller", "--metrics-address", "abc"],
            "--metrics-address",
            "abc",
        ),
        (&["node", "--log-format", "xml"], "--log-format", "xml"),
        (&["node", "--transport", "iscsi"], "--transport", "iscsi"),
        (
            &["controller", "--log-level", "info,=[x"],
            "--log-level",
            "info,=[x",
        ),
        (
            &["controller", "--driver-name", "bad_name"],
            "--driver-name",
            "bad_name",
        ),
    ];
    for (args, flag, value) in cases {
        let o = run(args);
        assert!(!o.status.success(), "{args:?} accepted");
        let e = stderr(&o);
        assert!(e.contains(flag) && e.contains(value), "{args:?}: {e}");
        assert!(
            e.contains("expected") || e.contains("possible values"),
            "{args:?} does not say what is expected: {e}"
        );
    }
}

#[test]
fn environment_variables_are_read_for_flags() {
    let o = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .args(["controller"])
        .env("RDS_CSI_ENDPOINT", "not-an-endpoint")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not-an-endpoint"));
}

#[test]
fn roles_not_yet_built_say_so_and_fail() {
    let o = run(&["demo"]);
    assert!(!o.status.success(), "demo pretended to run");
    assert!(
        stderr(&o).contains("not available in this build yet"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn simulator_without_a_state_dir_names_the_flag() {
    let o = run(&["simulator"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--state-dir"), "{}", stderr(&o));
}

#[test]
fn controller_without_kubernetes_flag_or_rds_settings_says_what_is_missing() {
    let o = run(&["controller"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--no-kubernetes"), "{}", stderr(&o));
    let o = run(&["controller", "--no-kubernetes"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--rds-address"), "{}", stderr(&o));
}
