//! Fixtures every crate's tests share: a [`Deployment`] made with the `tenet-keys`
//! library (choosing who is enrolled), a `policyd.toml` rendered by [`PolicydConfig`], a
//! running `tenet-policyd serve` held by [`Policyd`] (killed by PID when dropped), the
//! shipped [`example`] tree, [`DEADLINE`] and [`wait_for`].
//!
//! This crate depends on `tenet-keys` only (never on `tenet-agent` or `tenet-policyd`
//! as libraries), so `agent` and `policyd` can take it as a dev-dependency without a
//! cycle; the binaries under test are found by path.
#![expect(
    clippy::disallowed_methods,
    reason = "fixtures start the binaries under test and write starting files directly"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tenet_keys::deployment::{self, InitOptions};
use tenet_keys::publish::{self, SignOptions, Signing};
use tenet_keys::{SecretKey, Time, TrustedRoot};

/// How long any wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// How long a bundle signed by [`Deployment::sign_tree`] callers usually lives.
pub const BUNDLE_EXPIRY: Duration = Duration::from_secs(14 * 86_400);

/// The shipped example tree.
pub fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/dce-cluster")
}

/// The current time, as the keys library takes it.
pub fn now() -> Time {
    Time::from_system(SystemTime::now())
}

/// Polls `check` every 20 ms until it gives a value.
///
/// # Panics
/// After `limit`, naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A deployment in a temp directory, made with the keys library: `deploy/` (root 1 of
/// 1, policy, timestamp and server keys) and `nodes/<member>/localhost.key` for each
/// member named, enrolled or not.
#[derive(Debug)]
pub struct Deployment {
    dir: tempfile::TempDir,
    base: PathBuf,
}

impl Deployment {
    /// Members `enrolled` enrolled, and `not_enrolled` with a node key but not enrolled;
    /// the root expires in 30 days.
    ///
    /// # Panics
    /// On any setup error.
    pub fn new(enrolled: &[&str], not_enrolled: &[&str]) -> Deployment {
        Deployment::with_root_expiry(enrolled, not_enrolled, Duration::from_secs(30 * 86_400))
    }

    /// As [`Deployment::new`], with a root that expires `expires_in` from now.
    ///
    /// # Panics
    /// On any setup error.
    pub fn with_root_expiry(
        enrolled: &[&str],
        not_enrolled: &[&str],
        expires_in: Duration,
    ) -> Deployment {
        let dir = tempfile::tempdir().expect("a temp directory");
        let base = fs::canonicalize(dir.path()).expect("a canonical temp directory");
        let deploy = base.join("deploy");
        deployment::init(
            &deploy,
            &InitOptions {
                root_keys: 1,
                root_threshold: 1,
                expires_in,
                now: now(),
            },
        )
        .expect("a new deployment");
        let d = deployment::Deployment::open(&deploy).expect("the new deployment opens");
        for name in enrolled.iter().chain(not_enrolled) {
            let (_, keyid) =
                deployment::node_key(&base.join("nodes").join(name)).expect("a node key");
            if enrolled.contains(name) {
                d.enroll(name, keyid).expect("the member is enrolled");
            }
        }
        Deployment { dir, base }
    }

    /// A path beneath the temp directory (canonical).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.base.join(rel)
    }

    /// The temp directory as created (not canonicalised).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The deployment directory, `deploy/`.
    pub fn deployment(&self) -> PathBuf {
        self.base.join("deploy")
    }

    /// The deployment opened with the keys library.
    ///
    /// # Panics
    /// If it does not open.
    pub fn open(&self) -> deployment::Deployment {
        deployment::Deployment::open(&self.deployment()).expect("the deployment opens")
    }

    /// A member's node key file.
    pub fn node_key_path(&self, member: &str) -> PathBuf {
        self.path(&format!("nodes/{member}/localhost.key"))
    }

    /// A member's node key.
    ///
    /// # Panics
    /// If the member has none.
    pub fn node_key(&self, member: &str) -> SecretKey {
        SecretKey::read(&self.node_key_path(member)).expect("the member's node key")
    }

    /// The first root, `deploy/root/1.root.toml` (its `.sig` beside it).
    pub fn root_path(&self) -> PathBuf {
        self.deployment().join("root/1.root.toml")
    }

    /// The first root, verified, as a member holds it.
    ///
    /// # Panics
    /// If it does not verify.
    pub fn trusted_root(&self) -> TrustedRoot {
        let bytes = fs::read(self.root_path()).expect("the root");
        let sig = fs::read(self.deployment().join("root/1.root.toml.sig")).expect("its sig");
        TrustedRoot::bootstrap(&bytes, &sig, None).expect("the root verifies")
    }

    /// The policy server's TLS key.
    ///
    /// # Panics
    /// If it cannot be read.
    pub fn server_key(&self) -> SecretKey {
        SecretKey::read(&self.deployment().join("keys/server-tls.key")).expect("the server key")
    }

    /// Signs `tree` as serial `serial`, expiring `expires_in` from now, into
    /// `bundles/<serial>`, and returns that directory.
    ///
    /// # Panics
    /// If signing fails.
    pub fn sign_tree(&self, tree: &Path, serial: u64, expires_in: Duration) -> PathBuf {
        let mut d = self.open();
        let out = self.path(&format!("bundles/{serial}"));
        let key = d.policy_key_path();
        publish::sign(
            &mut d,
            &SignOptions {
                tree: tree.to_path_buf(),
                out: out.clone(),
                serial: Some(serial),
                expires_in,
                now: now(),
                signing: Signing::WithKey(key),
            },
        )
        .expect("the tree is signed");
        out
    }

    /// The `policyd.toml` of `member` in this deployment, with paths relative to the temp
    /// directory (where [`PolicydConfig::write`] is expected to put it): its node key,
    /// the first root, and a serving socket with the deployment's timestamp and server
    /// keys.
    pub fn policyd_config(&self, member: &str) -> PolicydConfig {
        PolicydConfig::new(
            member,
            &format!("nodes/{member}/localhost.key"),
            "deploy/root/1.root.toml",
        )
        .serve(
            Some("deploy/keys/timestamp.key"),
            Some("deploy/keys/server-tls.key"),
        )
    }
}

/// A `policyd.toml`: every socket on 127.0.0.1 with port 0 unless set otherwise.
/// Values are written as given (paths relative to the file, or absolute).
#[derive(Debug, Clone)]
pub struct PolicydConfig {
    /// `member`.
    pub member: String,
    /// `state_dir` (default `state`).
    pub state_dir: String,
    /// `node_key`.
    pub node_key: String,
    /// `trusted_root`.
    pub trusted_root: String,
    /// `[listener] listen`.
    pub listener: String,
    /// `[serve]`, if written.
    pub serve: Option<ServeConfig>,
    /// `[metrics] listen` (`off` for none).
    pub metrics: String,
    /// `[run]` entries, as `key = "value"`, in order; no table when empty.
    pub run: Vec<(String, String)>,
    /// Lines of `[limits]`, verbatim; no table when empty.
    pub limits: String,
    /// Lines of `[reports]`, verbatim, after `page = "127.0.0.1:0"` (so that daemons
    /// side by side do not share the status page's port).
    pub reports: String,
}

/// The `[serve]` table.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `listen`.
    pub listen: String,
    /// `timestamp_key`.
    pub timestamp_key: Option<String>,
    /// `server_key`.
    pub server_key: Option<String>,
    /// `watch_interval` (default `100ms`, so tests see a flipped bundle link soon).
    pub watch_interval: Option<String>,
}

impl PolicydConfig {
    /// The listener and metrics on 127.0.0.1, port 0; state in `state`; no `[serve]`,
    /// `[run]` or `[limits]`.
    pub fn new(member: &str, node_key: &str, trusted_root: &str) -> PolicydConfig {
        PolicydConfig {
            member: member.to_string(),
            state_dir: "state".to_string(),
            node_key: node_key.to_string(),
            trusted_root: trusted_root.to_string(),
            listener: "127.0.0.1:0".to_string(),
            serve: None,
            metrics: "127.0.0.1:0".to_string(),
            run: Vec::new(),
            limits: String::new(),
            reports: String::new(),
        }
    }

    /// With a serving socket on 127.0.0.1, port 0, these keys, and a 100 ms watch
    /// interval.
    pub fn serve(mut self, timestamp_key: Option<&str>, server_key: Option<&str>) -> Self {
        self.serve = Some(ServeConfig {
            listen: "127.0.0.1:0".to_string(),
            timestamp_key: timestamp_key.map(str::to_string),
            server_key: server_key.map(str::to_string),
            watch_interval: Some("100ms".to_string()),
        });
        self
    }

    /// With `state_dir` set.
    pub fn state_dir(mut self, dir: &str) -> Self {
        self.state_dir = dir.to_string();
        self
    }

    /// With `[metrics] listen` set (`off` for none).
    pub fn metrics(mut self, listen: &str) -> Self {
        self.metrics = listen.to_string();
        self
    }

    /// With one more `[run]` entry.
    pub fn run(mut self, key: &str, value: &str) -> Self {
        self.run.push((key.to_string(), value.to_string()));
        self
    }

    /// With these lines appended to `[limits]`.
    pub fn limits(mut self, lines: &str) -> Self {
        self.limits.push_str(lines);
        self
    }

    /// With these lines appended to `[reports]` (a `page` line here replaces the
    /// default one).
    pub fn reports(mut self, lines: &str) -> Self {
        self.reports.push_str(lines);
        self
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = format!(
            "member = {}\nstate_dir = {}\nnode_key = {}\ntrusted_root = {}\n\n[listener]\nlisten = {}\n",
            quote(&self.member),
            quote(&self.state_dir),
            quote(&self.node_key),
            quote(&self.trusted_root),
            quote(&self.listener),
        );
        if let Some(serve) = &self.serve {
            text.push_str(&format!("\n[serve]\nlisten = {}\n", quote(&serve.listen)));
            for (key, value) in [
                ("timestamp_key", &serve.timestamp_key),
                ("server_key", &serve.server_key),
                ("watch_interval", &serve.watch_interval),
            ] {
                if let Some(v) = value {
                    text.push_str(&format!("{key} = {}\n", quote(v)));
                }
            }
        }
        text.push_str(&format!("\n[metrics]\nlisten = {}\n", quote(&self.metrics)));
        if !self.run.is_empty() {
            text.push_str("\n[run]\n");
            for (key, value) in &self.run {
                text.push_str(&format!("{key} = {}\n", quote(value)));
            }
        }
        if !self.limits.is_empty() {
            text.push_str("\n[limits]\n");
            text.push_str(&self.limits);
            if !self.limits.ends_with('\n') {
                text.push('\n');
            }
        }
        text.push_str("\n[reports]\n");
        if !self
            .reports
            .lines()
            .any(|l| l.trim_start().starts_with("page"))
        {
            text.push_str("page = \"127.0.0.1:0\"\n");
        }
        text.push_str(&self.reports);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// Writes the file at `path` and returns `path`.
    ///
    /// # Panics
    /// If it cannot be written.
    pub fn write(&self, path: &Path) -> PathBuf {
        fs::write(path, self.render()).expect("policyd.toml is written");
        path.to_path_buf()
    }
}

/// A TOML basic string.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A running `tenet-policyd serve`, killed by PID when dropped. Its stderr goes to the
/// configuration's path with the extension `log`.
#[derive(Debug)]
pub struct Policyd {
    child: Option<Child>,
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Policyd {
    /// Starts `binary serve --config CONFIG` with `RUST_LOG=rust_log`, without waiting.
    ///
    /// # Panics
    /// If it cannot be started.
    pub fn spawn(binary: &Path, config: &Path, rust_log: &str) -> Policyd {
        let log = config.with_extension("log");
        let child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("the daemon's log"))
            .spawn()
            .expect("tenet-policyd starts");
        Policyd {
            child: Some(child),
            binary: binary.to_path_buf(),
            config: config.to_path_buf(),
            log,
        }
    }

    /// Starts the daemon and waits until `status` names its listener.
    ///
    /// # Panics
    /// If it exits first, or does not answer within [`DEADLINE`].
    pub fn start(binary: &Path, config: &Path, rust_log: &str) -> Policyd {
        let mut p = Policyd::spawn(binary, config, rust_log);
        p.wait_for("tenet-policyd to answer", |p| p.listener());
        p
    }

    /// Its configuration file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Its process id (0 once killed).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `tenet-policyd ARGS --config CONFIG`.
    ///
    /// # Panics
    /// If the binary cannot be run.
    pub fn command(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .expect("tenet-policyd runs")
    }

    /// What `status` prints (empty if it failed).
    pub fn status(&self) -> String {
        String::from_utf8_lossy(&self.command(&["status"]).stdout).into_owned()
    }

    /// The listener's address, from `status`.
    pub fn listener(&self) -> Option<String> {
        status_field(&self.status(), "listener")
    }

    /// The serving socket's address, from `status`.
    pub fn serving(&self) -> Option<String> {
        status_field(&self.status(), "serving")
    }

    /// Promotes (or re-promotes) with `bundle` and returns `status` after it.
    ///
    /// # Panics
    /// Unless `promote` exits 0.
    pub fn promote(&self, bundle: &Path) -> String {
        let bundle = bundle.to_str().expect("a UTF-8 bundle path");
        let out = self.command(&["promote", "--bundle", bundle]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "promote failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.status()
    }

    /// The exit status, if the daemon has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Polls `check` every 20 ms until it gives a value.
    ///
    /// # Panics
    /// With the daemon's last status and log after [`DEADLINE`], or at once if it
    /// exited.
    pub fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut(&Policyd) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if let Some(exit) = self.exited() {
                panic!(
                    "tenet-policyd exited ({exit}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; last status {:?}\n{}",
                self.status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process, taken out of this guard (which then kills nothing); for a test
    /// that stops it its own way.
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// Kills the daemon by PID and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Policyd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of `name: value` in `status` output.
fn status_field(status: &str, name: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .map(|v| v.trim().to_string())
}

/// A daemon a test's policy started, known by the pid file it writes; sent SIGTERM
/// by that PID when dropped.
#[derive(Debug)]
pub struct PidFile(pub PathBuf);

impl PidFile {
    /// The PID the file holds now, if it holds one.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}
