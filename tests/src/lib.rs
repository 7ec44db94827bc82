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

impl Run {
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
