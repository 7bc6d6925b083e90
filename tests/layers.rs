//! The layers of `src/` are as docs/architecture.md ("Layers") draws them: every arrow in
//! the drawing is an import the non-test code really makes, and the code makes no import the
//! drawing lacks — so no module imports a layer above it (e.g. `k8s/` never imports
//! `controller/`) without the drawing, and this test, being changed on purpose.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lines of the "Layers" block, top to bottom: `module/ ─▶ dep/ · dep/ · error`.
fn drawn_lines() -> Vec<(String, BTreeSet<String>)> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let section = doc
        .split("\n## Layers\n")
        .nth(1)
        .expect("docs/architecture.md has a Layers section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the Layers section draws its arrows in a code block");
    let name = |s: &str| s.trim().trim_end_matches('/').to_owned();
    block
        .lines()
        .filter_map(|l| l.split_once('─'))
        .map(|(from, to)| {
            let to = to.trim_start_matches('─').trim_start_matches('▶');
            (name(from), to.split('·').map(name).collect())
        })
        .collect()
}

/// The drawing's arrows.
fn drawn() -> Graph {
    drawn_lines().into_iter().collect()
}

/// The drawing's modules, top to bottom.
fn drawn_order() -> Vec<String> {
    drawn_lines().into_iter().map(|(m, _)| m).collect()
}

/// Every `crate::<module>` the non-test code of each top-level module of `src/` names
/// (code before a file's first `#[cfg(test)]`, comments and test-only files skipped).
fn imported() -> Graph {
    let src = root().join("src");
    let files = common::rs_files(&src);
    let mut g = Graph::new();
    for p in files {
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        let test_only = matches!(
            file.as_str(),
            "tests.rs" | "testing.rs" | "fake_api.rs" | "proptests.rs"
        ) || file.ends_with("_tests.rs");
        let rel = p.strip_prefix(&src).unwrap();
        let mut parts = rel.components();
        let first = parts.next().unwrap().as_os_str().to_string_lossy();
        let is_root_file = parts.next().is_none();
        if test_only || (is_root_file && matches!(&*first, "lib.rs" | "main.rs")) {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_owned();
        let text = std::fs::read_to_string(&p).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let deps = g.entry(module.clone()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                // `crate::{a, b::c}` names several modules at once.
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap().split(',').collect(),
                    None => vec![rest],
                };
                for name in names {
                    let dep: String = name
                        .trim_start()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !dep.is_empty() && dep != "self" && dep != module {
                        deps.insert(dep);
                    }
                }
            }
        }
    }
    g.retain(|_, deps| !deps.is_empty());
    g
}

#[test]
fn the_code_imports_exactly_the_layers_the_architecture_draws() {
    let (drawn, code) = (drawn(), imported());
    let mut wrong = Vec::new();
    for (m, deps) in &code {
        let allowed = drawn.get(m).cloned().unwrap_or_default();
        for d in deps.difference(&allowed) {
            wrong.push(format!(
                "src/{m} imports {d}, which the Layers drawing does not show"
            ));
        }
    }
    for (m, deps) in &drawn {
        let used = code.get(m).cloned().unwrap_or_default();
        for d in deps.difference(&used) {
            wrong.push(format!(
                "the Layers drawing shows {m} ─▶ {d}, which the code no longer imports"
            ));
        }
    }
    // The drawing lists the layers top to bottom: an arrow to a module drawn above its source
    // is an import pointing up (a cycle in the making).
    let order = drawn_order();
    let rank = |m: &str| order.iter().position(|o| o == m);
    for (m, deps) in &drawn {
        for d in deps {
            if let (Some(from), Some(to)) = (rank(m), rank(d)) {
                if to <= from {
                    wrong.push(format!(
                        "the Layers drawing has {m} ─▶ {d}, an arrow pointing up"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/architecture.md, \"Layers\" (if an import is meant, draw its arrow there, below \
         its source; otherwise remove the import):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn k8s_does_not_import_the_controller() {
    let code = imported();
    assert!(!code["k8s"].contains("controller"), "{:?}", code["k8s"]);
    assert!(
        !code["attachment"].contains("k8s"),
        "{:?}",
        code["attachment"]
    );
    for lower in ["rds", "csi", "volume", "attachment", "k8s", "observability"] {
        for upper in ["controller", "node", "demo", "scenario", "simulator"] {
            assert!(
                !code.get(lower).is_some_and(|d| d.contains(upper)),
                "src/{lower} imports {upper}"
            );
        }
    }
}
