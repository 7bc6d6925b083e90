//! Docs stay true: every metric and flag a doc names exists in the code, and every metric the
//! code registers is documented.
// The event recorder that registers one of the documented metrics is a kube-rs adapter.
#![cfg(feature = "kubernetes")]

mod common;

use std::collections::BTreeSet;

use clap::CommandFactory;
use rds_csi::runtime::cli::Cli;

fn docs_text() -> String {
    let mut text = String::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            text.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
    text
}

fn words_with_prefix(text: &str, prefix: &str, allowed: impl Fn(char) -> bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before_ok = i == 0
            || !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let tail = &rest[i + prefix.len()..];
        let end = tail.find(|c: char| !allowed(c)).unwrap_or(tail.len());
        if before_ok && tail.starts_with(|c: char| c.is_ascii_lowercase()) {
            out.insert(format!("{prefix}{}", &tail[..end]));
        }
        rest = &rest[i + prefix.len()..];
    }
    out
}

/// Every metric the driver registers: the common ones, the RDS client's (a real client,
/// built against a simulator's key), the attachment table's, the node's and the Kubernetes
/// event recorder's.
async fn code_metric_names() -> BTreeSet<String> {
    common::with_driver_metrics(|m| {
        let _sync = rds_csi::controller::attachment_sync::reconciled_counter(m);
        let _leader = rds_csi::controller::leader::Leadership::always(m);
        // A client is only configured here, never used: no API server is contacted.
        let kube =
            ::kube::Client::try_from(::kube::Config::new("http://127.0.0.1:1".parse().unwrap()))
                .unwrap();
        let _events = rds_csi::k8s::kube::KubeEvents::new(kube, "rds.csi.mikrotik.com", m, None);
        m.registered_names().into_iter().collect()
    })
    .await
}

/// Histograms expose `_bucket`, `_sum` and `_count` series; docs may name those.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

#[tokio::test]
async fn metrics_named_in_docs_exist_and_every_metric_is_documented() {
    let docs = docs_text();
    let named: BTreeSet<String> =
        words_with_prefix(&docs, "rds_csi_", |c| c.is_ascii_lowercase() || c == '_')
            .iter()
            .map(|n| family(n).to_owned())
            .collect();
    let code = code_metric_names().await;
    common::assert_same_names(
        &named,
        &code,
        "docs name metrics the code lacks",
        "metrics missing from docs",
    );
}

#[test]
fn flags_named_in_docs_exist() {
    let mut flags = BTreeSet::new();
    let cmd = Cli::command();
    for sub in cmd.get_subcommands() {
        for a in sub.get_arguments() {
            if let Some(l) = a.get_long() {
                flags.insert(format!("--{l}"));
            }
        }
    }
    let named = words_with_prefix(&docs_text(), "--", |c| c.is_ascii_lowercase() || c == '-');
    let unknown: Vec<_> = named
        .iter()
        .filter(|f| {
            !flags.contains(*f)
                && !["--help", "--check", "--release", "--workspace"].contains(&f.as_str())
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "docs name flags the CLI lacks: {unknown:?}"
    );
}
