//! Structural rules of the workspace, kept by an ordinary test: the agent's layers
//! (ARCHITECTURE.md, `agent/src/lib.rs`), a `//!` header on every module, and no
//! import cycle between a crate's top-level modules beyond the documented exceptions.
//!
//! Edges are the `crate::<module>` paths in a file, outside comments. The agent's
//! layering counts test modules too (a test that needs a command belongs beside the
//! command); the cycle check leaves them out, as a test may reach across a crate. A
//! failure names the file and line of each offending edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The agent's layer of each top-level module; a module missing here fails the test,
/// so a new module is placed deliberately.
const AGENT_LAYERS: &[(&str, Layer)] = &[
    ("cli", Layer::Entry),
    ("ops", Layer::Ops),
    ("sync", Layer::Sync),
    ("converge", Layer::Engine),
    ("failover", Layer::Engine),
    ("exit", Layer::Base),
    ("config", Layer::Base),
    ("facts", Layer::Base),
    ("lock", Layer::Base),
    ("report", Layer::Base),
    ("escape", Layer::Base),
    ("fsops", Layer::Base),
    ("exec", Layer::Base),
    ("statcache", Layer::Base),
    ("statefs", Layer::Base),
    ("test_util", Layer::Base),
];

/// Import cycles between top-level modules that are kept on purpose. A cycle found
/// passes when all its modules are within one entry of its crate.
const ALLOWED_CYCLES: &[(&str, &[&str])] = &[
    // One `error.rs` per crate: its errors name the document kinds (`document`) and
    // key roles (`key`), and `document` and `key` return those errors. The normal
    // cost of a crate-wide error module; splitting it would scatter the errors.
    ("keys", &["document", "error", "key"]),
];

/// The crates whose `src/` the header and cycle checks read.
const CRATES: &[&str] = &["agent", "keys", "policies", "policyd", "tests"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    /// `cli` (and `main.rs`): may use everything.
    Entry,
    /// `ops/`: the commands.
    Ops,
    /// `sync/`: the sync client.
    Sync,
    /// `converge`, `failover`: the engine.
    Engine,
    /// Everything the layers above share.
    Base,
}

impl Layer {
    /// Whether a module of this layer may import one of `to`.
    fn may_use(self, to: Layer) -> bool {
        match self {
            Layer::Entry => true,
            Layer::Ops => to != Layer::Entry,
            Layer::Sync => matches!(to, Layer::Sync | Layer::Base),
            Layer::Engine => matches!(to, Layer::Engine | Layer::Base),
            Layer::Base => to == Layer::Base,
        }
    }
}

#[test]
fn agent_modules_import_only_their_layer_and_below() {
    let layers: BTreeMap<&str, Layer> = AGENT_LAYERS.iter().copied().collect();
    let src = workspace().join("agent/src");
    let mut problems = Vec::new();
    for file in rust_files(&src) {
        let Some(from) = top_module(&src, &file) else {
            continue;
        };
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(&from_layer) = layers.get(from.as_str()) else {
            problems.push(format!(
                "{}: module `{from}` has no layer in AGENT_LAYERS",
                file.display()
            ));
            continue;
        };
        for (line, to) in crate_paths(&read(&file)) {
            if to == from {
                continue;
            }
            match layers.get(to.as_str()) {
                Some(&to_layer) if from_layer.may_use(to_layer) => {}
                Some(&to_layer) => problems.push(format!(
                    "{}:{line}: `{from}` ({from_layer:?}) imports `crate::{to}` ({to_layer:?})",
                    file.display()
                )),
                None => problems.push(format!(
                    "{}:{line}: `crate::{to}` is no module in AGENT_LAYERS",
                    file.display()
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_module_starts_with_a_doc_header() {
    let mut missing = Vec::new();
    for krate in CRATES {
        for file in rust_files(&workspace().join(krate).join("src")) {
            let text = read(&file);
            let first = text.lines().find(|l| !l.trim().is_empty());
            if !first.is_some_and(|l| l.starts_with("//!")) {
                missing.push(file.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a `//!` header:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let mut problems = Vec::new();
    for krate in CRATES {
        let src = workspace().join(krate).join("src");
        // Edge -> where it was first seen.
        let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
        for file in rust_files(&src) {
            let Some(from) = top_module(&src, &file) else {
                continue;
            };
            // `main.rs` is a crate of its own (the binary), and `lib.rs` only declares.
            if from == "main" || from == "lib" || is_test_file(&src, &file) {
                continue;
            }
            for (line, to) in crate_paths(without_tests(&read(&file))) {
                if to != from {
                    edges
                        .entry((from.clone(), to))
                        .or_insert_with(|| format!("{}:{line}", file.display()));
                }
            }
        }
        for cycle in cycles(&edges) {
            let allowed = ALLOWED_CYCLES
                .iter()
                .any(|(k, set)| k == krate && cycle.iter().all(|m| set.contains(&m.as_str())));
            if !allowed {
                let within: Vec<String> = edges
                    .iter()
                    .filter(|((a, b), _)| cycle.contains(a) && cycle.contains(b))
                    .map(|((a, b), at)| format!("  {a} -> {b} ({at})"))
                    .collect();
                problems.push(format!(
                    "{krate}: import cycle between {:?}:\n{}",
                    cycle,
                    within.join("\n")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A file of tests only: `tests.rs`, `test.rs`, or beneath a `tests/` folder of `src`.
fn is_test_file(src: &Path, file: &Path) -> bool {
    let rel = file.strip_prefix(src).unwrap_or(file);
    rel.file_stem().is_some_and(|s| s == "tests" || s == "test")
        || rel.components().any(|c| c.as_os_str() == "tests")
}

/// The text before an inline `#[cfg(test)] mod tests {` (kept last in a file).
fn without_tests(text: &str) -> &str {
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim_end() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests {"))
        {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Every `.rs` file beneath `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to: `ops/run.rs` and `ops.rs` are `ops`.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.strip_suffix(".rs").unwrap_or(first).to_string())
}

/// `(line, module)` for each `crate::module` path (and each name of a
/// `crate::{a, b}` group) outside comments.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + "crate::".len()..];
            rest = after;
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            if let Some(group) = after.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name = ident(item.trim());
                    if !name.is_empty() {
                        out.push((n + 1, name));
                    }
                }
            } else {
                let name = ident(after);
                if !name.is_empty() {
                    out.push((n + 1, name));
                }
            }
        }
    }
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The strongly connected components of more than one module, each sorted.
fn cycles(edges: &BTreeMap<(String, String), String>) -> Vec<BTreeSet<String>> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        next.entry(a.as_str()).or_default().insert(b.as_str());
    }
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(m) = todo.pop() {
            for &n in next.get(m).into_iter().flatten() {
                if seen.insert(n.to_string()) {
                    todo.push(n);
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<String>> = next.keys().map(|&m| (m, reach(m))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for (&m, from_m) in &reached {
        if !from_m.contains(m) {
            continue;
        }
        let component: BTreeSet<String> = from_m
            .iter()
            .filter(|o| reached.get(o.as_str()).is_some_and(|r| r.contains(m)))
            .cloned()
            .collect();
        if component.len() > 1 && !out.contains(&component) {
            out.push(component);
        }
    }
    out
}
