//! The end-to-end harness: finds the workspace's binaries and runs them as a
//! member would, each member in its own sandbox root; and [`fixture`], the fixtures
//! every crate's tests share (`agent` and `policyd` take this crate as a
//! dev-dependency).
//!
//! The binaries are built by `cargo test --workspace` (or `cargo build`) before the
//! tests run; a missing one is a clear failure, never a silent skip.

pub mod fixture;
pub mod fleet;
pub mod ha;
pub mod report_client;
pub mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

/// The path of a workspace binary next to the test executable's target directory.
///
/// # Panics
/// When the binary has not been built: the message says how to build it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` (or `cargo test --workspace`) first",
        bin.display()
    );
    bin
}

/// One member: a name, a sandbox root and the facts that make it that member.
#[derive(Debug)]
pub struct Member {
    /// The member's name in the cluster config.
    pub name: String,
    /// Its sandbox root.
    pub root: tempfile::TempDir,
    /// `--fact` arguments.
    pub facts: Vec<String>,
}

impl Member {
    /// A member with an empty sandbox root.
    pub fn new(name: &str, facts: &[&str]) -> Self {
        let root = tempfile::Builder::new()
            .prefix(&format!("tenet-e2e-{name}."))
            .tempdir()
            .expect("a sandbox root");
        Self {
            name: name.to_string(),
            root,
            facts: facts.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A path beneath the member's root.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p.trim_start_matches('/'))
    }
}

/// The outcome of one `tenet-agent apply --json`.
#[derive(Debug)]
pub struct Run {
    /// The process output.
    pub output: Output,
    /// Every JSON line.
    pub events: Vec<Value>,
}

/// One promise's outcome in a run, from its `promise` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `kept`, `repaired`, `would_repair`, `failed`, ...
    pub status: String,
    /// The changes it made, or would make.
    pub changes: Vec<String>,
}

impl Run {
    /// A finished `tenet-agent apply|run --json`.
    pub fn from_output(output: Output) -> Self {
        let events = json_lines(&output.stdout);
        Self { output, events }
    }

    /// Its stdout and stderr, for a failing assertion's message.
    pub fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }

    /// Each promise's outcome, by id.
    pub fn outcomes(&self) -> BTreeMap<String, Outcome> {
        self.events
            .iter()
            .filter(|e| e["type"] == "promise")
            .map(|e| {
                let changes = e["changes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let status = e["status"].as_str().unwrap_or_default().to_string();
                let id = e["id"].as_str().unwrap_or_default().to_string();
                (id, Outcome { status, changes })
            })
            .collect()
    }

    /// Each promise's changes, by id: what a dry run and the run it foretold
    /// must agree on.
    pub fn changes(&self) -> BTreeMap<String, Vec<String>> {
        self.outcomes()
            .into_iter()
            .map(|(id, o)| (id, o.changes))
            .collect()
    }

    /// The ids of the promises with this status, in id order.
    pub fn with_status(&self, status: &str) -> Vec<String> {
        self.outcomes()
            .into_iter()
            .filter(|(_, o)| o.status == status)
            .map(|(id, _)| id)
            .collect()
    }

    /// The exit code.
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// The summary line.
    pub fn summary(&self) -> &Value {
        self.events
            .iter()
            .rev()
            .find(|e| e["type"] == "summary")
            .expect("every run ends with a summary line")
    }

    /// A summary count such as `repaired`.
    pub fn count(&self, key: &str) -> u64 {
        self.summary()[key].as_u64().unwrap_or(u64::MAX)
    }
}

/// Parses JSON Lines, failing loudly on anything else.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
