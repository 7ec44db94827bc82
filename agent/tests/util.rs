//! Helpers shared by the integration tests: a sandbox (temp root, policy tree and
//! state directory side by side), fixture writers for starting trees, the agent
//! binary, a listing of a tree to compare before and after, JSON report parsing and
//! golden files.
//!
//! Only the fixture writers here call `std::fs::write`, `std::os::unix::fs::symlink`
//! and `std::process::Command::new`: a starting tree is built directly, never
//! through the code under test.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

/// The agent binary under test.
pub(crate) const AGENT: &str = env!("CARGO_BIN_EXE_tenet-agent");

pub(crate) use tenet_tests::fixture::example;

/// A temp directory holding `root/` (the managed sandbox), `policy/` (a policy
/// tree) and `state/` (a state directory outside the root), removed on drop.
pub(crate) struct Sandbox {
    _dir: TempDir,
    /// The root every policy path resolves beneath (canonical).
    pub(crate) root: PathBuf,
    /// A policy tree to fill with [`Sandbox::policy`].
    pub(crate) policy: PathBuf,
    /// A state directory outside the root, for runs that must not touch the root.
    pub(crate) state: PathBuf,
    /// A directory outside the root, for "nothing leaves the root" checks.
    pub(crate) outside: PathBuf,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = fs::canonicalize(dir.path()).expect("canonical temp dir");
        let sub = |name: &str| {
            let p = base.join(name);
            fs::create_dir(&p).expect("sandbox directory");
            p
        };
        Self {
            root: sub("root"),
            policy: sub("policy"),
            state: sub("state"),
            outside: sub("outside"),
            _dir: dir,
        }
    }

    /// Writes the policy files (`name`, `text`) into the policy tree.
    pub(crate) fn policy(&self, files: &[(&str, &str)]) {
        for (name, text) in files {
            write(&self.policy.join(name), text.as_bytes());
        }
    }

    /// Where a policy path lies beneath the root.
    pub(crate) fn at(&self, policy_path: &str) -> PathBuf {
        self.root.join(policy_path.trim_start_matches('/'))
    }

    /// `apply POLICY --root ROOT` with extra arguments.
    pub(crate) fn apply(&self, extra: &[&str]) -> Run {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("apply"),
            self.policy.as_os_str(),
            OsStr::new("--root"),
            self.root.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        run(args)
    }

    /// `apply` with the state directory outside the root, so the root holds only
    /// what the policy puts there.
    pub(crate) fn apply_outside_state(&self, extra: &[&str]) -> Run {
        let state = self.state.to_str().expect("UTF-8 temp path");
        let mut args = vec!["--state-dir", state];
        args.extend_from_slice(extra);
        self.apply(&args)
    }

    /// `check POLICY`.
    pub(crate) fn check(&self) -> Run {
        run([OsStr::new("check"), self.policy.as_os_str()])
    }
}

/// The agent binary with a fixed help width and no inherited log filter.
#[expect(
    clippy::disallowed_methods,
    reason = "the tests run the agent binary itself"
)]
pub(crate) fn agent() -> Command {
    let mut c = Command::new(AGENT);
    c.env("COLUMNS", "100").env_remove("RUST_LOG");
    c
}

/// What a finished run of the binary left.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Asserts the exit code, showing both outputs when it differs.
    #[track_caller]
    pub(crate) fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The JSON-lines report on stdout (needs `--json`).
    pub(crate) fn report(&self) -> Report {
        Report::parse(&self.stdout)
    }
}

/// Runs the agent to completion.
pub(crate) fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = agent().args(args).output().expect("run tenet-agent");
    Run {
        code: out
            .status
            .code()
            .unwrap_or_else(|| panic!("tenet-agent ended by a signal: {:?}", out.status)),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A parsed `--json` report.
#[derive(Debug)]
pub(crate) struct Report {
    /// `{"type":"promise",...}` objects in order.
    pub(crate) events: Vec<Value>,
    /// The last line, `{"type":"summary",...}`.
    pub(crate) summary: Value,
}

impl Report {
    pub(crate) fn parse(stdout: &str) -> Self {
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{stdout}"))
            })
            .collect();
        let summary = lines
            .last()
            .filter(|v| v["type"] == "summary")
            .unwrap_or_else(|| panic!("the last line is not a summary:\n{stdout}"))
            .clone();
        let events = lines
            .into_iter()
            .filter(|v| v["type"] == "promise")
            .collect();
        Self { events, summary }
    }

    /// A count from the summary.
    pub(crate) fn count(&self, key: &str) -> u64 {
        self.summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("summary has no count {key}: {}", self.summary))
    }

    /// Each promise's id and status, in order.
    pub(crate) fn statuses(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap_or_default().to_string(),
                    e["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The one event for promise `id`.
    pub(crate) fn event(&self, id: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("no event for {id}: {:#?}", self.statuses()))
    }
}

/// Writes `content` to `path`, creating parents.
#[expect(
    clippy::disallowed_methods,
    reason = "fixtures build starting trees, not managed changes"
)]
pub(crate) fn write(path: &Path, content: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("fixture parent directory");
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
}

/// Writes `content` to `path` with permission bits `mode`.
pub(crate) fn write_mode(path: &Path, content: &[u8], mode: u32) {
    write(path, content);
    set_mode(path, mode);
}

/// Sets permission bits (never through a link).
pub(crate) fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("fixture mode {}: {e}", path.display()));
}

/// Makes a directory and its parents.
pub(crate) fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("fixture dir {}: {e}", path.display()));
}

/// Makes a symlink at `at` pointing to `target`, creating parents.
#[expect(
    clippy::disallowed_methods,
    reason = "fixtures build starting trees, not managed changes"
)]
pub(crate) fn symlink(target: impl AsRef<Path>, at: &Path) {
    if let Some(p) = at.parent() {
        fs::create_dir_all(p).expect("fixture parent directory");
    }
    std::os::unix::fs::symlink(target.as_ref(), at)
        .unwrap_or_else(|e| panic!("fixture link {}: {e}", at.display()));
}

/// One line per entry beneath `dir` (not following links), sorted: type, mode,
/// owner, inode and content for files; mode and owner for directories; the
/// target for links, with `dir` itself written as `ROOT`. Two equal listings
/// mean nothing was created, removed, rewritten (a rewrite is a new inode) or
/// re-moded.
pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let base = dir.to_string_lossy().into_owned();
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
            let rel = e.path().strip_prefix(dir).unwrap_or(e.path()).display();
            let m = e
                .path()
                .symlink_metadata()
                .unwrap_or_else(|err| panic!("listing {rel}: {err}"));
            let perms = format!("{:04o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid());
            let ft = m.file_type();
            if ft.is_symlink() {
                let target = fs::read_link(e.path()).expect("read link");
                let target = target.to_string_lossy().replace(&base, "ROOT");
                format!("/{rel} link ino {} -> {target}", m.ino())
            } else if ft.is_dir() {
                format!("/{rel}/ dir {perms}")
            } else if ft.is_file() {
                let content = fs::read(e.path()).expect("read file");
                format!(
                    "/{rel} file {perms} ino {} {:?}",
                    m.ino(),
                    String::from_utf8_lossy(&content)
                )
            } else {
                format!("/{rel} other {perms}")
            }
        })
        .collect()
}

/// The `.NAME.tenet-new` temp files beneath `dir`.
pub(crate) fn temp_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tenet-new"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// Compares `actual` with `tests/golden/NAME`; with `UPDATE_GOLDEN=1` rewrites the
/// file instead. A mismatch fails with a unified diff.
#[track_caller]
#[expect(
    clippy::disallowed_methods,
    reason = "golden files are test data, rewritten only on request"
)]
pub(crate) fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        fs::create_dir_all(path.parent().expect("golden dir")).expect("golden dir");
        fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read golden file {} ({e}); run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .context_radius(3)
            .header(&format!("golden/{name}"), "actual")
            .to_string();
        panic!(
            "output differs from {}; UPDATE_GOLDEN=1 rewrites it\n{diff}\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}
