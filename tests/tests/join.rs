//! End-to-end: a new member joins with one command and one approval.
//!
//! A deployment made with the `tenet-keys` command line (root 1 of 1, an administrator
//! in root 2); the master `alpha` is a real `tenet-policyd serve` with `[serve]
//! join_dir`, promoted with a bundle whose cluster config already names `beta`. Then:
//! `tenet-agent join` with a token from `tenet-keys join-token` and the fingerprint
//! `tenet-keys init` printed makes beta's key and stores the request; every refusal
//! (replayed token, before and after a policyd restart; expired; another member's name;
//! signed by a key that is not an admin's; a wrong fingerprint) has its status and
//! reason; `tenet-keys approve` enrols beta, the next serial carries it and `tenet-agent
//! run` on beta converges, with the class its token named. An `--auto` token's request
//! is approved by `approve --auto`. Revoked, beta's run is refused by the master, its old
//! token is refused as used, and a token issued before the revocation is refused at
//! approval.
#![expect(
    clippy::disallowed_methods,
    reason = "the test spawns the real binaries and writes their configuration files"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tenet_keys::SecretKey;
use tenet_keys::join::{Approval, JoinToken};
use tenet_tests::binary;
use tenet_tests::fixture::{Policyd, PolicydConfig, now};
use tenet_tests::report_client::{ReportClient, tls_config};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(binary(bin))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(bin: &str, args: &[&str]) -> String {
    let out = run(bin, args);
    assert_eq!(out.status.code(), Some(0), "{bin} {args:?}\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn first_line(out: &str) -> String {
    out.lines().next().expect("a first line").trim().to_string()
}

struct World {
    _dir: tempfile::TempDir,
    base: PathBuf,
    fingerprint: String,
    master: Option<Policyd>,
    /// Lines for policyd.toml's `[limits]`.
    limits: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = fs::canonicalize(dir.path()).expect("canonical");
        let deploy = base.join("deploy");
        let init = ok(
            "tenet-keys",
            &[
                "init",
                s(&deploy),
                "--root-keys",
                "1",
                "--root-threshold",
                "1",
            ],
        );
        let fingerprint = init
            .lines()
            .find_map(|l| l.strip_prefix("fingerprint:"))
            .and_then(|l| l.split_whitespace().next())
            .expect("init prints the root's fingerprint")
            .to_string();
        ok(
            "tenet-keys",
            &[
                "admin-key",
                s(&deploy),
                "alice",
                "--member",
                "*",
                "--class",
                "maint_*",
            ],
        );
        ok("tenet-keys", &["root-next", s(&deploy)]);
        ok(
            "tenet-keys",
            &[
                "attest",
                s(&deploy.join("root/2.root.toml")),
                "--key",
                s(&deploy.join("keys/root-1.key")),
                "--deployment",
                s(&deploy),
            ],
        );
        let alpha = base.join("alpha");
        fs::create_dir_all(&alpha).expect("alpha dir");
        let keyid = first_line(&ok(
            "tenet-keys",
            &["node-key", "--out", s(&alpha.join("node"))],
        ));
        ok(
            "tenet-keys",
            &[
                "enroll",
                s(&deploy),
                "--member",
                "alpha",
                "--key-id",
                &keyid,
            ],
        );
        let mut w = World {
            _dir: dir,
            base,
            fingerprint,
            master: None,
            limits: String::new(),
        };
        w.start_master();
        w
    }

    fn deploy(&self) -> PathBuf {
        self.base.join("deploy")
    }

    fn join_dir(&self) -> PathBuf {
        self.base.join("alpha/join")
    }

    fn root1(&self) -> PathBuf {
        self.deploy().join("root/1.root.toml")
    }

    /// Starts alpha's policyd with joins on (trusting root 2, which lists the admin).
    fn start_master(&mut self) {
        let deploy = self.deploy();
        let config = PolicydConfig::new(
            "alpha",
            "node/localhost.key",
            s(&deploy.join("root/2.root.toml")),
        )
        .state_dir("policyd-state")
        .serve(
            Some(s(&deploy.join("keys/timestamp.key"))),
            Some(s(&deploy.join("keys/server-tls.key"))),
        )
        .metrics("off")
        .run("agent_state", "state")
        .limits(&self.limits)
        .render()
        .replace("\n[metrics]", "join_dir = \"join\"\n\n[metrics]");
        let path = self.base.join("alpha/policyd.toml");
        fs::write(&path, config).expect("policyd.toml");
        self.master = Some(Policyd::start(&binary("tenet-policyd"), &path, "info"));
    }

    fn master(&self) -> &Policyd {
        self.master.as_ref().expect("the master runs")
    }

    /// Signs serial `serial` (cluster: alpha, beta) and serves it; returns the address.
    fn publish(&self, serial: u64) -> String {
        let tree = self.base.join(format!("trees/{serial}"));
        fs::create_dir_all(&tree).expect("tree");
        let mut cluster = "[cluster]\nname = \"test\"\n".to_string();
        for (i, m) in ["alpha", "beta"].iter().enumerate() {
            cluster.push_str(&format!(
                "\n[[member]]\nname = \"{m}\"\nhostname = \"{m}.example.com\"\naddresses = [{{ ip = \"10.0.0.{}\", role = \"boot\" }}]\n",
                i + 1
            ));
        }
        fs::write(tree.join("cluster.toml"), cluster).expect("cluster");
        fs::write(
            tree.join("files.toml"),
            format!(
                "[[file]]\npath = \"/etc/tenet-serial\"\ncontent = \"serial {serial} on ${{member}}\\n\"\ntemplate = true\nmode = \"0644\"\n\n[[file]]\nwhen = \"class(maint_motd)\"\npath = \"/etc/motd\"\ncontent = \"maintenance\\n\"\nmode = \"0644\"\n"
            ),
        )
        .expect("files");
        let out = self.base.join(format!("bundles/{serial}"));
        ok(
            "tenet-keys",
            &[
                "sign",
                s(&tree),
                "--deployment",
                s(&self.deploy()),
                "--out",
                s(&out),
                "--serial",
                &serial.to_string(),
            ],
        );
        self.master().promote(&out);
        self.master().serving().expect("a serving address")
    }

    fn token(&self, member: &str, extra: &[&str]) -> String {
        let deploy = self.deploy();
        let mut args = vec!["join-token", s(&deploy), "--member", member];
        args.extend_from_slice(extra);
        first_line(&ok("tenet-keys", &args))
    }

    /// `tenet-agent join` for a member whose files are under `name/`.
    fn join(&self, serving: &str, name: &str, token: &str, extra: &[&str]) -> Output {
        self.join_expecting(serving, name, token, &self.fingerprint, extra)
    }

    /// `join`, expecting the root to have `fingerprint`.
    fn join_expecting(
        &self,
        serving: &str,
        name: &str,
        token: &str,
        fingerprint: &str,
        extra: &[&str],
    ) -> Output {
        let key = self.base.join(name).join("node/localhost.key");
        let root = self.root1();
        let mut args = vec![
            "join",
            serving,
            "--token",
            token,
            "--trusted-root",
            s(&root),
            "--expect-fingerprint",
            fingerprint,
            "--key",
            s(&key),
            "--timeout",
            "10s",
        ];
        args.extend_from_slice(extra);
        run("tenet-agent", &args)
    }

    /// Writes beta's agent.toml and runs `tenet-agent run` once.
    fn run_beta(&self, serving: &str) -> Output {
        let dir = self.base.join("beta");
        fs::create_dir_all(dir.join("root")).expect("beta root");
        fs::write(
            dir.join("agent.toml"),
            format!(
                "member = \"beta\"\nmaster = \"{serving}\"\nstate_dir = \"state\"\nnode_key = \"node/localhost.key\"\ntrusted_root = \"{}\"\nroot = \"root\"\n",
                s(&self.root1())
            ),
        )
        .expect("agent.toml");
        run(
            "tenet-agent",
            &[
                "run",
                "--config",
                s(&dir.join("agent.toml")),
                "--deadline",
                "20s",
            ],
        )
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut m) = self.master.take() {
            m.kill();
        }
    }
}

/// Asserts `out` exited with `code` and says `words`.
fn refused(out: &Output, code: i32, words: &[&str]) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    for w in words {
        assert!(all.contains(w), "expected {w:?} in:\n{all}");
    }
}

/// A token made with the library, signed by `key` (the CLI refuses to make bad ones).
fn forged(w: &World, member: &str, key: &Path, issued_ago: u64, lifetime: u64) -> String {
    let d = tenet_keys::deployment::Deployment::open(&w.deploy()).expect("deployment");
    let issued = tenet_keys::Time::from_unix(now().unix() - issued_ago).expect("time");
    let token = JoinToken::new(
        d.id(),
        member,
        issued,
        Duration::from_secs(lifetime),
        Approval::Manual,
        Vec::new(),
    )
    .expect("a token");
    token.issue(&SecretKey::read(key).expect("key"))
}

#[test]
fn a_member_joins_with_one_command_and_one_approval_and_a_revoked_one_is_refused() {
    let mut w = World::new();
    // The fingerprint init printed is the one `fingerprint` shows later.
    let shown = first_line(&ok("tenet-keys", &["fingerprint", s(&w.root1())]));
    assert_eq!(shown, w.fingerprint);
    let serving = w.publish(1);

    // Beta joins: its key is made, the master stores the request.
    let token = w.token("beta", &["--expires", "1h", "--classes", "maint_motd"]);
    let out = w.join(&serving, "beta", &token, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("made node key"), "{}", text(&out));
    assert!(w.base.join("beta/node/localhost.key").exists());
    let stored = w.join_dir().join("requests/beta.toml");
    assert!(stored.exists(), "no stored request");

    // Refusals, each with its reason; none stores anything.
    refused(
        &w.join(&serving, "gamma", &token, &[]),
        4,
        &["409", "token_used"],
    );
    let other = w.token("delta", &[]);
    refused(
        &w.join(&serving, "gamma", &other, &["--member", "gamma"]),
        4,
        &["403", "wrong_member"],
    );
    let admin = w.deploy().join("keys/admin-alice.key");
    let expired = forged(&w, "gamma", &admin, 7200, 3600);
    refused(
        &w.join(&serving, "gamma", &expired, &[]),
        4,
        &["403", "expired"],
    );
    let by_policy_key = forged(&w, "gamma", &w.deploy().join("keys/policy.key"), 0, 3600);
    refused(
        &w.join(&serving, "gamma", &by_policy_key, &[]),
        4,
        &["403", "not_admin"],
    );
    let by_member_key = forged(
        &w,
        "gamma",
        &w.base.join("beta/node/localhost.key"),
        0,
        3600,
    );
    refused(
        &w.join(&serving, "gamma", &by_member_key, &[]),
        4,
        &["403", "unknown_key"],
    );
    let wrong_fp = "0".repeat(64);
    refused(
        &w.join_expecting(&serving, "gamma", &w.token("gamma", &[]), &wrong_fp, &[]),
        4,
        &["has fingerprint", &w.fingerprint],
    );
    assert!(!w.join_dir().join("requests/gamma.toml").exists());
    assert!(!w.join_dir().join("requests/delta.toml").exists());

    // A replay after the master restarts is refused too: used ids are on disk.
    if let Some(mut m) = w.master.take() {
        m.kill();
    }
    w.start_master();
    let serving = w.publish(2);
    refused(
        &w.join(&serving, "gamma", &token, &[]),
        4,
        &["409", "token_used"],
    );

    // Before approval the master does not serve beta.
    assert_ne!(w.run_beta(&serving).status.code(), Some(0));

    // One approval; the next serial carries beta, whose run converges.
    let listed = ok(
        "tenet-keys",
        &["requests", s(&w.deploy()), "--join-dir", s(&w.join_dir())],
    );
    assert!(
        listed.contains("beta") && listed.contains(" ok"),
        "{listed}"
    );
    let approved = ok(
        "tenet-keys",
        &[
            "approve",
            s(&w.deploy()),
            "beta",
            "--join-dir",
            s(&w.join_dir()),
        ],
    );
    assert!(approved.contains("approved member beta"), "{approved}");
    assert!(!stored.exists(), "the approved request is removed");
    let serving = w.publish(3);
    let out = w.run_beta(&serving);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        fs::read_to_string(w.base.join("beta/root/etc/tenet-serial")).expect("converged"),
        "serial 3 on beta\n"
    );
    // The token's class reached the signed inventory, and so beta's run.
    assert_eq!(
        fs::read_to_string(w.base.join("beta/root/etc/motd")).expect("class file"),
        "maintenance\n"
    );

    // An --auto token: stored, and approved with every other auto request.
    let auto = w.token("gamma", &["--auto"]);
    let out = w.join(&serving, "gamma", &auto, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let approved = ok(
        "tenet-keys",
        &[
            "approve",
            s(&w.deploy()),
            "--auto",
            "--join-dir",
            s(&w.join_dir()),
        ],
    );
    assert!(approved.contains("approved member gamma"), "{approved}");

    // Revoked: the master no longer serves beta, its old token is used, and a token
    // issued before the revocation is stored by the master but refused at approval.
    let early = w.token("beta", &[]);
    ok(
        "tenet-keys",
        &["revoke", s(&w.deploy()), "--member", "beta"],
    );
    let serving = w.publish(4);
    let out = w.run_beta(&serving);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert!(text(&out).contains("403"), "{}", text(&out));
    refused(
        &w.join(&serving, "beta", &token, &[]),
        4,
        &["409", "token_used"],
    );
    let out = w.join(&serving, "beta", &early, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(
        "tenet-keys",
        &[
            "approve",
            s(&w.deploy()),
            "beta",
            "--join-dir",
            s(&w.join_dir()),
        ],
    );
    refused(&out, 4, &["revoked"]);
}

/// With joins on, keys that are not members get past the handshake, but they must not
/// take the members' connection slots: with `max_connections` of them held open, an
/// enrolled member still gets an answer, and each stranger's connection ends after
/// its one request.
#[test]
fn keys_that_are_not_members_cannot_hold_the_members_connection_slots() {
    let mut w = World::new();
    if let Some(mut m) = w.master.take() {
        m.kill();
    }
    w.limits = "max_connections = 10\n".to_string();
    w.start_master();
    let serving = w.publish(1);
    let root = w.root1();
    let mut strangers = Vec::new();
    for i in 0..10 {
        let dir = w.base.join(format!("stranger-{i}"));
        ok("tenet-keys", &["node-key", "--out", s(&dir)]);
        let config = tls_config(&dir.join("localhost.key"), &root).expect("a client config");
        // Past the handshake or closed at once: either way it holds nothing later.
        if let Ok(c) = ReportClient::connect(config, &serving) {
            strangers.push(c);
        }
    }
    assert!(!strangers.is_empty(), "no stranger got past the handshake");
    for c in &mut strangers {
        if let Ok(answer) = c.post("/v1/report", b"{}") {
            assert_eq!(answer.status, 403, "{}", answer.body);
            // One request each: the connection is closed after it.
            assert!(
                c.post("/v1/report", b"{}").is_err(),
                "a stranger kept its connection"
            );
        }
    }
    let alpha = tls_config(&w.base.join("alpha/node/localhost.key"), &root).expect("config");
    let mut member = ReportClient::connect(alpha, &serving).expect("the member connects");
    let answer = member
        .post("/v1/report", b"{}")
        .expect("the member gets an answer while strangers hold connections");
    assert_ne!(answer.status, 403, "{}", answer.body);
}
