//! Every alert in deploy/monitoring/prometheusrule.yaml has promtool unit tests that show it
//! firing and staying quiet (deploy/monitoring/prometheusrule-test.yaml), and they pass:
//! `promtool check rules` on the rule groups, then `promtool test rules`. promtool comes from
//! Debian's `prometheus` package (scripts/install-promtool.sh, run by .ci/run); without it the
//! promtool run is skipped with a printed reason, the coverage check still runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::{Mapping, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn yaml(rel: &str) -> Value {
    let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn rule_groups() -> Value {
    let rule = yaml("deploy/monitoring/prometheusrule.yaml");
    rule["spec"]["groups"].clone()
}

fn alert_names(groups: &Value) -> Vec<String> {
    groups
        .as_sequence()
        .expect("spec.groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .map(|r| r["alert"].as_str().expect("alert").to_owned())
        .collect()
}

/// For each alert: (test cases where it is expected to fire, cases where it is expected quiet).
fn coverage(tests: &Value) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for t in tests["tests"].as_sequence().expect("tests") {
        for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = a["alertname"].as_str().expect("alertname").to_owned();
            let fires = a["exp_alerts"].as_sequence().is_some_and(|s| !s.is_empty());
            let e = out.entry(name).or_default();
            if fires {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    out
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_promtool_case() {
    let names = alert_names(&rule_groups());
    let cov = coverage(&yaml("deploy/monitoring/prometheusrule-test.yaml"));
    for n in &names {
        let (fire, quiet) = cov.get(n).copied().unwrap_or_default();
        assert!(
            fire > 0 && quiet > 0,
            "{n}: {fire} firing and {quiet} quiet case(s) in prometheusrule-test.yaml; it needs both"
        );
    }
    let unknown: Vec<_> = cov.keys().filter(|k| !names.contains(k)).collect();
    assert!(
        unknown.is_empty(),
        "tests for alerts the rule lacks: {unknown:?}"
    );
}

/// Writes `rules.yaml` (the groups, annotations cut to `summary`, which the test cases
/// expect rendered), `full-rules.yaml` (the groups as shipped) and the test file into `dir`.
fn lay_out(dir: &Path) {
    let groups = rule_groups();
    let mut full = Mapping::new();
    full.insert("groups".into(), groups.clone());
    std::fs::write(
        dir.join("full-rules.yaml"),
        serde_yaml_ng::to_string(&full).unwrap(),
    )
    .unwrap();
    let mut cut = groups;
    for g in cut.as_sequence_mut().unwrap() {
        for r in g["rules"].as_sequence_mut().unwrap() {
            let summary = r["annotations"]["summary"].clone();
            let mut a = Mapping::new();
            a.insert("summary".into(), summary);
            r["annotations"] = Value::Mapping(a);
        }
    }
    let mut m = Mapping::new();
    m.insert("groups".into(), cut);
    std::fs::write(
        dir.join("rules.yaml"),
        serde_yaml_ng::to_string(&m).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        root().join("deploy/monitoring/prometheusrule-test.yaml"),
        dir.join("prometheusrule-test.yaml"),
    )
    .unwrap();
}

fn promtool(dir: &Path, args: &[&str]) -> Option<(bool, String)> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    let dir = tempfile::tempdir().unwrap();
    lay_out(dir.path());
    let Some((ok, text)) = promtool(dir.path(), &["check", "rules", "full-rules.yaml"]) else {
        eprintln!(
            "SKIPPED: promtool is not installed (bash scripts/install-promtool.sh installs it \
             from Debian's prometheus package)"
        );
        return;
    };
    assert!(ok, "promtool check rules:\n{text}");
    let n = alert_names(&rule_groups()).len();
    assert!(
        text.contains(&format!("SUCCESS: {n} rules found")),
        "{text}"
    );
    let (ok, text) = promtool(dir.path(), &["test", "rules", "prometheusrule-test.yaml"])
        .expect("promtool ran a moment ago");
    assert!(ok, "promtool test rules:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn the_promtool_tests_catch_a_wrong_threshold() {
    let dir = tempfile::tempdir().unwrap();
    lay_out(dir.path());
    // The pool alert at 5% instead of 10%: its firing case (6% free) must fail.
    let rules = std::fs::read_to_string(dir.path().join("rules.yaml")).unwrap();
    let broken = rules.replace("< 0.1", "< 0.05");
    assert_ne!(
        rules, broken,
        "the pool alert's threshold moved; update this test"
    );
    std::fs::write(dir.path().join("rules.yaml"), broken).unwrap();
    let Some((ok, text)) = promtool(dir.path(), &["test", "rules", "prometheusrule-test.yaml"])
    else {
        eprintln!("SKIPPED: promtool is not installed (bash scripts/install-promtool.sh)");
        return;
    };
    assert!(!ok, "a wrong threshold passed:\n{text}");
    assert!(text.contains("RdsCsiPoolNearlyFull"), "{text}");
}
