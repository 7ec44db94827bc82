//! Fixtures of the HA tests: a deployment made with the `tenet-keys` CLI (keys,
//! enrolled members, the shipped example signed into bundles), `policyd.toml` and
//! `agent.toml` files, processes killed by PID when a guard drops, and the rule for
//! tests that need HA tools (`TENET_REQUIRE_HA`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::binary;
use crate::fixture::PolicydConfig;
pub use crate::fixture::{example, wait_for};

/// The repository's `packaging/` directory.
pub fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

/// Whether the environment demands the HA tests (CI sets `TENET_REQUIRE_HA=1`).
pub fn ha_required() -> bool {
    std::env::var("TENET_REQUIRE_HA").is_ok_and(|v| v == "1")
}

/// Whether every program in `tools` is on PATH. When one is missing, the test is
/// skipped with a printed reason, unless `TENET_REQUIRE_HA=1`: then it fails.
///
/// # Panics
/// When a tool is missing and `TENET_REQUIRE_HA=1`.
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    have_tools_from(
        test,
        tools,
        "pacemaker corosync resource-agents libxml2-utils keepalived",
    )
}

/// [`have_tools`] for tools from other Debian packages, named in the skip message.
///
/// # Panics
/// When a tool is missing and `TENET_REQUIRE_HA=1`.
pub fn have_tools_from(test: &str, tools: &[&str], packages: &str) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !ha_required(),
        "{test}: TENET_REQUIRE_HA=1 but {} missing (.ci/run installs them)",
        missing.join(", ")
    );
    skip(&format!(
        "{test}: {} not installed (apt-get install {packages}; TENET_REQUIRE_HA=1 makes this a failure)",
        missing.join(", ")
    ));
    false
}

/// Prints that a test is skipped and why (the test then returns).
pub fn skip(reason: &str) {
    #[expect(
        clippy::print_stderr,
        reason = "a skipped test says so on the test's stderr"
    )]
    {
        eprintln!("SKIPPED {reason}");
    }
}

/// The path of `tool` on PATH (or in /usr/sbin, /sbin), if any.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Runs `program args` and returns its output.
///
/// # Panics
/// When the program cannot be started.
pub fn run(program: &Path, args: &[&str]) -> Output {
    #[expect(clippy::disallowed_methods, reason = "tests run the real programs")]
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output();
    out.unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// stdout and stderr of `out`, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Kills every process it holds by PID (SIGKILL) when dropped.
#[derive(Debug, Default)]
pub struct Pids(pub Vec<u32>);

impl Pids {
    /// Adds a PID.
    pub fn push(&mut self, pid: u32) {
        if !self.0.contains(&pid) {
            self.0.push(pid);
        }
    }
}

impl Drop for Pids {
    fn drop(&mut self) {
        for pid in &self.0 {
            kill(*pid, "KILL");
        }
    }
}

/// Sends `signal` (a name such as `KILL`) to `pid`.
pub fn kill(pid: u32, signal: &str) {
    #[expect(clippy::disallowed_methods, reason = "signals a process by PID")]
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A deployment made with the `tenet-keys` CLI in `dir`: root 1 of 1, policy,
/// timestamp and server keys, and members with node keys in `dir/nodes/NAME`, enrolled.
#[derive(Debug)]
pub struct Deployment {
    /// Where everything lives.
    pub dir: PathBuf,
}

impl Deployment {
    /// Makes the deployment and enrols `members`.
    ///
    /// # Panics
    /// When a `tenet-keys` command fails.
    pub fn new(dir: &Path, members: &[&str]) -> Deployment {
        let keys = binary("tenet-keys");
        let d = Deployment {
            dir: dir.to_path_buf(),
        };
        let deploy = d.deployment();
        let out = run(
            &keys,
            &[
                "init",
                "--root-keys",
                "1",
                "--root-threshold",
                "1",
                deploy.to_str().expect("utf-8 path"),
            ],
        );
        assert!(out.status.success(), "tenet-keys init: {}", text(&out));
        for m in members {
            let nodes = d.node_dir(m);
            let out = run(
                &keys,
                &["node-key", "--out", nodes.to_str().expect("utf-8 path")],
            );
            assert!(out.status.success(), "tenet-keys node-key: {}", text(&out));
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let id = stdout
                .split(|c: char| !c.is_ascii_hexdigit())
                .find(|w| w.len() == 64)
                .unwrap_or_else(|| panic!("no key id in {stdout}"))
                .to_string();
            let out = run(
                &keys,
                &[
                    "enroll",
                    deploy.to_str().expect("utf-8 path"),
                    "--member",
                    m,
                    "--key-id",
                    &id,
                ],
            );
            assert!(out.status.success(), "tenet-keys enroll: {}", text(&out));
        }
        d
    }

    /// The deployment directory (`dir/deploy`).
    pub fn deployment(&self) -> PathBuf {
        self.dir.join("deploy")
    }

    /// A member's node key directory (`localhost.key` inside).
    pub fn node_dir(&self, member: &str) -> PathBuf {
        self.dir.join("nodes").join(member)
    }

    /// The enrolment root members and policyd trust.
    pub fn root(&self) -> PathBuf {
        self.deployment().join("root/1.root.toml")
    }

    /// Signs `tree` as `serial` into `out`.
    ///
    /// # Panics
    /// When signing fails.
    pub fn sign(&self, tree: &Path, serial: u64, out: &Path) {
        let out_s = out.to_str().expect("utf-8 path");
        let result = run(
            &binary("tenet-keys"),
            &[
                "sign",
                tree.to_str().expect("utf-8 path"),
                "--deployment",
                self.deployment().to_str().expect("utf-8 path"),
                "--out",
                out_s,
                "--serial",
                &serial.to_string(),
            ],
        );
        assert!(
            result.status.success(),
            "tenet-keys sign: {}",
            text(&result)
        );
    }

    /// A policyd configuration for `member` at `path`: listener and serving socket as
    /// given, metrics off, state in `state_dir`, the deployment's online keys.
    pub fn policyd_toml(
        &self,
        member: &str,
        state_dir: &Path,
        listen: &str,
        serve_listen: &str,
    ) -> String {
        let path = |p: &Path| p.display().to_string();
        let mut config = PolicydConfig::new(
            member,
            &path(&self.node_dir(member).join("localhost.key")),
            &path(&self.root()),
        )
        .state_dir(&path(state_dir))
        .serve(
            Some(&path(&self.deployment().join("keys/timestamp.key"))),
            Some(&path(&self.deployment().join("keys/server-tls.key"))),
        )
        .metrics("off")
        .limits("drain_timeout = \"1s\"\n");
        config.listener = listen.to_string();
        if let Some(serve) = config.serve.as_mut() {
            serve.listen = serve_listen.to_string();
            serve.watch_interval = Some("200ms".to_string());
        }
        config.render()
    }

    /// An agent configuration for `member` naming `master`, with its state and sandbox
    /// root as given.
    pub fn agent_toml(&self, member: &str, master: &str, state_dir: &Path, root: &Path) -> String {
        format!(
            "member = \"{member}\"\nmaster = \"{master}\"\nstate_dir = \"{}\"\nnode_key = \"{}\"\ntrusted_root = \"{}\"\nroot = \"{}\"\nconnect_timeout = \"2s\"\n",
            state_dir.display(),
            self.node_dir(member).join("localhost.key").display(),
            self.root().display(),
            root.display(),
        )
    }
}

/// The `pid:` line of `tenet-policyd status` for `config`, if the daemon answers.
pub fn policyd_pid(config: &Path) -> Option<u32> {
    let out = run(
        &binary("tenet-policyd"),
        &["status", "--config", config.to_str()?],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pid: ")?.trim().parse().ok())
}
