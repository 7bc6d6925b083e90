//! The binary's command line: help, version, the demo, and clear bad-flag errors.

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
fn demo_runs_its_table_and_ends_with_an_ok_line() {
    let o = run(&["demo", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--keep"));
    let o = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .arg("demo")
        .env_remove("RDS_CSI_DEMO_FAULT")
        .env_remove("RDS_CSI_KEEP")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "demo failed:\n{out}\n{}", stderr(&o));
    assert!(out.contains("transport: loop devices"), "{out}");
    assert!(out.contains("CreateVolume pvc-demo-fs"), "{out}");
    assert!(!stderr(&o).contains("not available"), "{}", stderr(&o));
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("demo: OK")),
        "{out}"
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
