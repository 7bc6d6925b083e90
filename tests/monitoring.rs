//! deploy/monitoring/ stays true to the code: the Grafana dashboard parses, every `rds_csi_*`
//! metric in its queries and in the PrometheusRule is one the driver registers (used the way
//! its type allows), and every alert is complete with a runbook anchor that exists in
//! docs/operations.md.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rds_csi::observability::Metrics;
use serde::Deserialize;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric the driver registers (as tests/docs.rs builds it: the common metrics, a real
/// RDS client against a simulator, the attachment table's and the node's), with its type.
async fn code_metrics() -> BTreeMap<String, Type> {
    common::with_driver_metrics(typed).await
}

fn typed(m: &Metrics) -> BTreeMap<String, Type> {
    let exposition = m.render();
    let declared: BTreeMap<&str, &str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    m.registered_names()
        .into_iter()
        .map(|n| {
            // By the naming convention the code follows; checked against the exposition's
            // TYPE line wherever the family already has a series.
            let t = if n.ends_with("_total") {
                Type::Counter
            } else if n.ends_with("_seconds") {
                Type::Histogram
            } else {
                Type::Gauge
            };
            if let Some(d) = declared.get(n.as_str()) {
                let want = match t {
                    Type::Counter => "counter",
                    Type::Gauge => "gauge",
                    Type::Histogram => "histogram",
                };
                assert_eq!(
                    *d, want,
                    "{n}: the naming convention disagrees with the code"
                );
            }
            (n, t)
        })
        .collect()
}

/// `(series name as written, innermost enclosing function)` of every `rds_csi_*` reference.
fn references(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut from = 0;
    while let Some(i) = expr[from..].find("rds_csi_") {
        let start = from + i;
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |e| start + e);
        from = end;
        if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
            continue;
        }
        // Walk back to the nearest unmatched '(' and take the identifier before it.
        let mut depth = 0i32;
        let mut func = String::new();
        for j in (0..start).rev() {
            match b[j] {
                b')' => depth += 1,
                b'(' if depth > 0 => depth -= 1,
                b'(' => {
                    let head = expr[..j].trim_end();
                    let k = head
                        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .map_or(0, |k| k + 1);
                    func = head[k..].to_owned();
                    // `sum by (x) (...)`: the aggregation's argument list is not a function.
                    if func == "by" || func == "without" || func.is_empty() {
                        func.clear();
                        continue;
                    }
                    break;
                }
                _ => {}
            }
        }
        out.push((expr[start..end].to_owned(), func));
    }
    out
}

/// Checks one PromQL expression; returns the problems found.
fn check_expr(expr: &str, code: &BTreeMap<String, Type>) -> Vec<String> {
    let mut problems = Vec::new();
    let balance = |open: char, close: char| {
        expr.chars().filter(|c| *c == open).count() == expr.chars().filter(|c| *c == close).count()
    };
    if !balance('(', ')') || !balance('{', '}') || !balance('[', ']') {
        problems.push(format!("unbalanced brackets in {expr}"));
    }
    let refs = references(expr);
    let ups = up_jobs(expr);
    if refs.is_empty() && ups.is_empty() {
        problems.push(format!("no rds_csi_ metric and no up{{job=...}} in {expr}"));
    }
    let services = metrics_services();
    for job in ups {
        match job {
            Some(j) if services.contains(&j) => {}
            Some(j) => problems.push(format!(
                "up{{job=\"{j}\"}}: no Service {j} in the monitoring component ({expr})"
            )),
            None => problems.push(format!("up without a job=\"...\" matcher in {expr}")),
        }
    }
    for (series, func) in refs {
        let (family, suffix) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| series.strip_suffix(s).map(|f| (f.to_owned(), *s)))
            .filter(|(f, _)| code.get(f) == Some(&Type::Histogram))
            .unwrap_or((series.clone(), ""));
        let Some(t) = code.get(&family) else {
            problems.push(format!(
                "{series} is not a metric the driver registers ({expr})"
            ));
            continue;
        };
        let rated = func == "rate" || func == "increase";
        match t {
            Type::Counter if !rated => problems.push(format!(
                "counter {series} used without rate()/increase() in {expr}"
            )),
            Type::Gauge if rated => {
                problems.push(format!("gauge {series} used with {func}() in {expr}"))
            }
            Type::Histogram if suffix.is_empty() => problems.push(format!(
                "histogram {series} used without _bucket/_sum/_count in {expr}"
            )),
            Type::Histogram
                if suffix == "_bucket" && (!rated || !expr.contains("histogram_quantile(")) =>
            {
                problems.push(format!(
                    "{series} needs rate() inside histogram_quantile() in {expr}"
                ))
            }
            _ => {}
        }
    }
    problems
}

/// The `job` of every `up{...}` selector in an expression (`None`: no `job="..."` matcher).
fn up_jobs(expr: &str) -> Vec<Option<String>> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = expr[from..].find("up{") {
        let start = from + i;
        from = start + 3;
        if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
            continue;
        }
        let body = &expr[start + 3..];
        let body = &body[..body.find('}').unwrap_or(body.len())];
        out.push(body.split(',').find_map(|m| {
            m.trim()
                .strip_prefix("job=\"")
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_owned)
        }));
    }
    out
}

/// Names of the Services the monitoring component's ServiceMonitors scrape: the Prometheus
/// Operator's `job` label of their targets.
fn metrics_services() -> BTreeSet<String> {
    let text = read("deploy/kubernetes/components/monitoring/services.yaml");
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|d| {
            let v = serde_yaml_ng::Value::deserialize(d).ok()?;
            (v["kind"].as_str() == Some("Service"))
                .then(|| v["metadata"]["name"].as_str().map(str::to_owned))
                .flatten()
        })
        .collect()
}

/// GitHub-style anchors of every heading in a markdown text.
fn anchors(md: &str) -> BTreeSet<String> {
    md.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let d: serde_json::Value =
        serde_json::from_str(&read("deploy/monitoring/grafana-dashboard.json"))
            .expect("grafana-dashboard.json is valid JSON");
    assert!(d["title"].is_string() && d["uid"].is_string());
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            out.push((title, t["expr"].as_str().expect("target expr").to_owned()));
        }
    }
    out
}

#[tokio::test]
async fn dashboard_parses_and_queries_only_metrics_the_code_registers() {
    let code = code_metrics().await;
    let exprs = dashboard_exprs();
    let titles: BTreeSet<&str> = exprs.iter().map(|(t, _)| t.as_str()).collect();
    for want in [
        "Migrations by result",
        "Migration duration p50 / p95",
        "Active migrations",
        "Attachment conflicts",
        "Node stage latency",
        "RDS circuit breaker",
        "RDS command errors",
    ] {
        assert!(titles.contains(want), "panel {want:?} missing: {titles:?}");
    }
    let problems: Vec<String> = exprs
        .iter()
        .flat_map(|(t, e)| {
            check_expr(e, &code)
                .into_iter()
                .map(move |p| format!("{t}: {p}"))
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|(_, e)| references(e))
        .map(|(s, _)| s)
        .collect();
    for m in [
        "rds_csi_migration_migrations_total",
        "rds_csi_migration_duration_seconds_bucket",
        "rds_csi_migration_active_migrations",
        "rds_csi_attachment_conflicts_total",
        "rds_csi_node_stage_duration_seconds_bucket",
        "rds_csi_rds_breaker_state",
        "rds_csi_rds_commands_total",
    ] {
        assert!(used.contains(m), "the dashboard does not show {m}");
    }
}

#[tokio::test]
async fn prometheus_rule_alerts_are_complete_and_point_at_existing_runbooks() {
    let code = code_metrics().await;
    let rule: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("deploy/monitoring/prometheusrule.yaml"))
            .expect("prometheusrule.yaml is valid YAML");
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    let ops = read("docs/operations.md");
    let ops_anchors = anchors(&ops);
    let mut alerts = BTreeMap::new();
    for g in rule["spec"]["groups"].as_sequence().expect("spec.groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_owned();
            let expr = r["expr"].as_str().unwrap_or_else(|| panic!("{name}: expr"));
            let problems = check_expr(expr, &code);
            assert!(problems.is_empty(), "{name}: {problems:#?}");
            let f = r["for"].as_str().unwrap_or_else(|| panic!("{name}: for"));
            assert!(
                f.ends_with('m') || f.ends_with('s') || f.ends_with('h'),
                "{name}: for {f:?} is not a duration"
            );
            assert!(
                matches!(
                    r["labels"]["severity"].as_str(),
                    Some("critical" | "warning" | "info")
                ),
                "{name}: labels.severity"
            );
            let summary = r["annotations"]["summary"].as_str().unwrap_or("");
            assert!(!summary.trim().is_empty(), "{name}: annotations.summary");
            let url = r["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: annotations.runbook_url"));
            let (doc, anchor) = url
                .split_once('#')
                .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} has no anchor"));
            assert!(doc.ends_with("docs/operations.md"), "{name}: {url}");
            assert!(
                ops_anchors.contains(anchor),
                "{name}: docs/operations.md has no heading for #{anchor} (has {ops_anchors:?})"
            );
            // The docs' alert table shows the same expression and duration.
            let row = ops
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| {
                    panic!("{name} is missing from the alert table in docs/operations.md")
                });
            assert!(
                row.contains(&format!("`{expr}`")),
                "{name}: docs show another expr: {row}"
            );
            assert!(
                row.contains(&format!("| {f} |")),
                "{name}: docs show another for: {row}"
            );
            alerts.insert(name, f.to_owned());
        }
    }
    assert_eq!(
        alerts.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "RdsCsiAttachmentConflicts",
            "RdsCsiControllerDown",
            "RdsCsiMigrationStuck",
            "RdsCsiMigrationTimeout",
            "RdsCsiNodePluginDown",
            "RdsCsiPoolNearlyFull",
            "RdsCsiRdsUnreachable",
            "RdsCsiUnstageRefused",
        ]
    );
    assert_eq!(alerts["RdsCsiMigrationStuck"], "15m");
    assert_eq!(alerts["RdsCsiRdsUnreachable"], "5m");
}

#[test]
fn the_expression_checker_rejects_what_it_should() {
    let code: BTreeMap<String, Type> = [
        ("rds_csi_a_total".to_string(), Type::Counter),
        ("rds_csi_g".to_string(), Type::Gauge),
        ("rds_csi_h_seconds".to_string(), Type::Histogram),
    ]
    .into();
    assert!(check_expr("sum by (x) (rate(rds_csi_a_total[5m]))", &code).is_empty());
    assert!(check_expr(
        "histogram_quantile(0.9, sum by (le) (rate(rds_csi_h_seconds_bucket[5m])))",
        &code
    )
    .is_empty());
    assert!(check_expr("max(rds_csi_g) == 1", &code).is_empty());
    assert!(check_expr(
        "absent(up{job=\"rds-csi-controller-metrics\",endpoint=\"metrics\"} == 1)",
        &code
    )
    .is_empty());
    for bad in [
        "sum(rds_csi_a_total)",
        "rate(rds_csi_g[5m])",
        "rds_csi_h_seconds",
        "sum(rate(rds_csi_h_seconds_bucket[5m]))",
        "rate(rds_csi_nope_total[5m])",
        "sum(rate(rds_csi_a_total[5m])",
        "up{job=\"prometheus\"} == 0",
        "up == 0",
    ] {
        assert!(!check_expr(bad, &code).is_empty(), "{bad} was accepted");
    }
    assert!(anchors("### RDS unreachable (circuit breaker open)")
        .contains("rds-unreachable-circuit-breaker-open"));
}

/// The Grafana dashboard as a ConfigMap for the Grafana sidecar (kube-prometheus-stack's
/// `grafana.sidecar.dashboards`, which loads ConfigMaps labelled `grafana_dashboard: "1"`),
/// generated from deploy/monitoring/grafana-dashboard.json.
fn dashboard_configmap(json: &str) -> String {
    let mut out = String::from(
        "# Generated from deploy/monitoring/grafana-dashboard.json; do not edit. Regenerate with\n\
         #   RDS_CSI_REGENERATE=1 cargo test --test monitoring grafana\n\
         # The Grafana sidecar (kube-prometheus-stack: grafana.sidecar.dashboards.enabled) loads\n\
         # ConfigMaps labelled grafana_dashboard: \"1\"; by default only from Grafana's own\n\
         # namespace: set grafana.sidecar.dashboards.searchNamespace to ALL (or rds-csi).\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  \
           name: rds-csi-grafana-dashboard\n  \
           namespace: rds-csi\n  \
           labels:\n    \
             app.kubernetes.io/name: rds-csi\n    \
             app.kubernetes.io/component: monitoring\n    \
             grafana_dashboard: \"1\"\n\
         data:\n  \
           rds-csi.json: |\n",
    );
    for line in json.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn grafana_dashboard_configmap_is_the_dashboard_json() {
    let json = read("deploy/monitoring/grafana-dashboard.json");
    let rel = "deploy/kubernetes/components/monitoring/grafana-dashboard.yaml";
    let want = dashboard_configmap(&json);
    if std::env::var_os("RDS_CSI_REGENERATE").is_some() {
        std::fs::write(root().join(rel), &want).unwrap();
    }
    let have = read(rel);
    assert!(
        have == want,
        "{rel} is not generated from grafana-dashboard.json; run \
         RDS_CSI_REGENERATE=1 cargo test --test monitoring grafana"
    );
    // And it parses back to the same dashboard, with the sidecar's label.
    let cm: serde_yaml_ng::Value = serde_yaml_ng::from_str(&have).unwrap();
    assert_eq!(
        cm["metadata"]["labels"]["grafana_dashboard"].as_str(),
        Some("1")
    );
    let embedded: serde_json::Value =
        serde_json::from_str(cm["data"]["rds-csi.json"].as_str().unwrap()).unwrap();
    let file: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(embedded, file);
    // The component ships it.
    let k = read("deploy/kubernetes/components/monitoring/kustomization.yaml");
    assert!(k.contains("- grafana-dashboard.yaml"), "{k}");
}
