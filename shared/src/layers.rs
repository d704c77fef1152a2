//! The modules' imports, read from the sources: no two modules may import each other, directly or
//! through others, and every layer may import only the layers below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import its own layer's modules (acyclically) and lower ones.
const LAYERS: &[&[&str]] = &[
    &["model", "secret", "endpoints"],
    &["store", "crypto", "outbound", "published_keys", "aws_client", "aws_http", "secret_store", "files", "telemetry"],
    &["auth", "oauth", "providers", "stripe", "github"],
    &["use_cases"],
    &["config", "http", "app"],
];

fn layer_of(module: &str) -> usize {
    LAYERS.iter().position(|layer| layer.contains(&module)).unwrap_or_else(|| panic!("`{module}` is in no layer"))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a source file belongs to, one level below `prefix` (`use_cases/keys.rs` → `keys`).
fn module_of(relative: &Path) -> String {
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Each module's imports of its siblings: `crate::<name>`, or inside a directory `super::<name>`
/// and `crate::<dir>::<name>`.
fn imports(root: &Path, prefixes: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap();
        // Test modules and their fixtures import what they test.
        if file.file_name().is_some_and(|n| n == "tests.rs" || n == "testing.rs") {
            continue;
        }
        let module = module_of(relative);
        if module == "lib" || module == "mod" || module == "layers" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Test code may reach anywhere (fixtures of other layers); only the product's imports count.
        let product = text.split("#[cfg(test)]").next().unwrap_or_default();
        let edges = graph.entry(module.clone()).or_default();
        for prefix in prefixes {
            for (at, _) in product.match_indices(prefix.as_str()) {
                let rest = &product[at + prefix.len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != module {
                    edges.insert(name);
                }
            }
        }
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|m| known.contains(m));
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn top_level_modules_import_no_cycle_and_only_downwards() {
    let graph = imports(&src(), &["crate::".to_owned()]);
    assert_eq!(cycle(&graph), None, "an import cycle between shared's modules");
    let upward: Vec<String> = graph
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |to| (from, to)))
        .filter(|(from, to)| layer_of(to) > layer_of(from))
        .map(|(from, to)| format!("{from} → {to}"))
        .collect();
    assert!(upward.is_empty(), "imports of a higher layer: {upward:?}");
}

#[test]
fn the_modules_inside_each_directory_import_no_cycle() {
    for entry in std::fs::read_dir(src()).unwrap() {
        let dir = entry.unwrap().path();
        if dir.is_dir() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let graph = imports(&dir, &["super::".to_owned(), format!("crate::{name}::")]);
            assert_eq!(cycle(&graph), None, "an import cycle inside {}: {graph:?}", dir.display());
        }
    }
}

#[test]
fn a_cycle_is_found() {
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let acyclic =
        BTreeMap::from([("a".to_owned(), BTreeSet::from(["b".to_owned()])), ("b".to_owned(), BTreeSet::new())]);
    assert_eq!(cycle(&acyclic), None);
}
