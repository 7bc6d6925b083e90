//! The binary's command line: help, version, the demo, and clear bad-flag errors.

use std::process::{Command, Output};

const SUBCOMMANDS: [&str; 6] = [
    "controller",
    "node",
    "simulator",
    "demo",
    "doctor",
    "version",
];

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
    for sub in SUBCOMMANDS {
        let o = run(&[sub, "--help"]);
        assert!(o.status.success(), "{sub} --help failed: {}", stderr(&o));
        assert!(!o.stdout.is_empty());
    }
    let o = run(&["--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for sub in SUBCOMMANDS {
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
    // [role, flag, value]: the error names the flag and the value.
    let cases: &[[&str; 3]] = &[
        ["controller", "--endpoint", "csi.sock"],
        ["node", "--endpoint", "tcp://nohost"],
        ["controller", "--metrics-address", "abc"],
        ["node", "--log-format", "xml"],
        ["node", "--transport", "iscsi"],
        ["controller", "--log-level", "info,=[x"],
        ["controller", "--driver-name", "bad_name"],
    ];
    for args @ [_, flag, value] in cases {
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

/// A role that did not start exits 2 (docs/cli.md, "Exit status") with `rds-csi <role>: `
/// and the reason as the last line on stderr.
fn assert_did_not_start(o: &Output, role: &str, words: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{role}: {e}");
    let last = e.lines().last().unwrap_or("");
    assert!(
        last.starts_with(&format!("rds-csi {role}: ")),
        "{role}: {e}"
    );
    for w in words {
        assert!(last.contains(w), "{role}: {w:?} not in {last:?}");
    }
}

#[test]
fn simulator_without_a_state_dir_names_the_flag() {
    let o = run(&["simulator"]);
    assert_did_not_start(&o, "simulator", &["--state-dir"]);
}

#[test]
fn controller_without_kubernetes_flag_or_rds_settings_says_what_is_missing() {
    let o = run(&["controller", "--metrics-address", ""]);
    assert_did_not_start(&o, "controller", &["--no-kubernetes"]);
    let o = run(&["controller", "--no-kubernetes", "--metrics-address", ""]);
    assert_did_not_start(&o, "controller", &["--rds-address"]);
}

fn node_args(dir: &std::path::Path) -> Vec<String> {
    let p = |n: &str| dir.join(n).display().to_string();
    vec![
        "node".into(),
        "--node-id=w1".into(),
        format!("--endpoint=unix://{}", p("csi.sock")),
        "--metrics-address=".into(),
        format!("--state-dir={}", p("state")),
        format!("--host-nqn-file={}", p("hostnqn")),
        format!("--host-id-file={}", p("hostid")),
        format!("--dev-root={}", p("dev")),
        "--reconcile-interval=0".into(),
    ]
}

fn node_process(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rds-csi"));
    c.args(node_args(dir));
    for (k, _) in std::env::vars() {
        if k.starts_with("RDS_CSI_") {
            c.env_remove(k);
        }
    }
    c
}

/// The command's output, or Err (the child killed) when it is still running after `limit`:
/// a process that should refuse to start must not be left serving.
fn output_within(mut cmd: Command, limit: std::time::Duration) -> Result<Output, String> {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            return Err(format!(
                "still running after {limit:?} (it started serving instead of refusing): {}",
                stderr(&o)
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(child.wait_with_output().unwrap())
}

#[test]
fn a_second_node_plugin_on_the_socket_a_live_one_serves_refuses_to_start() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("csi.sock");
    let mut first = node_process(d.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first node plugin never served"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first node plugin exited"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let inode = std::fs::metadata(&sock).unwrap().ino();
    let second = output_within(node_process(d.path()), std::time::Duration::from_secs(15));
    let still_running = first.try_wait().unwrap().is_none();
    let same_socket = std::fs::metadata(&sock).map(|m| m.ino()).ok() == Some(inode);
    let answers = std::os::unix::net::UnixStream::connect(&sock).is_ok();
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    let status = first.wait().unwrap();
    let second = second.unwrap_or_else(|e| panic!("the second node plugin is {e}"));
    assert_did_not_start(
        &second,
        "node",
        &["already answers", "--endpoint", "csi.sock"],
    );
    assert!(
        still_running && same_socket && answers,
        "the first plugin lost its socket"
    );
    assert!(
        status.success(),
        "the first plugin did not stop gracefully: {status}"
    );
}

#[test]
fn a_socket_path_that_is_a_regular_file_stops_the_node_with_exit_2() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("csi.sock"), b"keep").unwrap();
    let o = node_process(d.path()).output().unwrap();
    assert_did_not_start(&o, "node", &["not a socket", "--endpoint"]);
    assert_eq!(std::fs::read(d.path().join("csi.sock")).unwrap(), b"keep");
}
