//! End-to-end: `tenet-agent push` to members, each a real `tenet-policyd serve` (its
//! listener on loopback) plus `tenet-agent`, with its own sandbox root and state.
//!
//! The deployment is made with the `tenet-keys` command line: root, member keys,
//! an administrator (`admin-key`, then `root-next` and `attest`), signed bundles. One
//! member's policyd is promoted and serves the bundle; every member first runs once (so
//! it trusts the root that lists the administrator), a new serial is published, and a
//! push makes every member converge to it. Then: a member enrolled later accepts a push
//! with no other change, a revoked one is left out and refused, an operator's run holding
//! the run lock is reported by its summary instead of a second run, a lock held by
//! another run whose summary is not there is reported busy, and a stopped member is
//! reported unreachable.
#![expect(
    clippy::disallowed_methods,
    reason = "the test spawns the real binaries and writes their configuration files"
)]

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tenet_tests::fixture::{Policyd, PolicydConfig};
use tenet_tests::{binary, json_lines};

const DEADLINE: Duration = Duration::from_secs(30);

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(binary(bin))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn ok(bin: &str, args: &[&str]) -> String {
    let out = run(bin, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{bin} {args:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A deployment and its members in one temp directory.
struct World {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

/// One member: its policyd (killed by PID on drop) and its files.
struct Member {
    name: String,
    dir: PathBuf,
    policyd: Option<Policyd>,
    listener: String,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Member {
    fn stop(&mut self) {
        if let Some(mut p) = self.policyd.take() {
            p.kill();
        }
    }

    fn agent_config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    fn policyd_config(&self) -> PathBuf {
        self.dir.join("policyd.toml")
    }

    fn root_file(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.dir.join("root").join(rel)).ok()
    }

    fn status(&self) -> String {
        let out = run(
            "tenet-policyd",
            &["status", "--config", s(&self.policyd_config())],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl World {
    fn new(names: &[&str]) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = fs::canonicalize(dir.path()).expect("canonical");
        let deploy = base.join("deploy");
        ok(
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
        let mut w = World {
            dir,
            members: Vec::new(),
        };
        for name in names {
            w.add_member(name);
        }
        w
    }

    fn base(&self) -> PathBuf {
        fs::canonicalize(self.dir.path()).expect("canonical")
    }

    fn deploy(&self) -> PathBuf {
        self.base().join("deploy")
    }

    /// Makes a member's node key, enrolls it, writes its policyd config and starts it.
    fn add_member(&mut self, name: &str) {
        let dir = self.base().join("members").join(name);
        fs::create_dir_all(dir.join("root")).expect("member dir");
        let out = ok("tenet-keys", &["node-key", "--out", s(&dir.join("node"))]);
        let keyid = out.lines().next().expect("key id line").trim().to_string();
        ok(
            "tenet-keys",
            &[
                "enroll",
                s(&self.deploy()),
                "--member",
                name,
                "--key-id",
                &keyid,
            ],
        );
        let deploy = self.deploy();
        let config = PolicydConfig::new(
            name,
            "node/localhost.key",
            s(&deploy.join("root/1.root.toml")),
        )
        .state_dir("policyd-state")
        .serve(
            Some(s(&deploy.join("keys/timestamp.key"))),
            Some(s(&deploy.join("keys/server-tls.key"))),
        )
        .metrics("off")
        .run("agent", s(&binary("tenet-agent")))
        .run("agent_config", "agent.toml")
        .run("agent_state", "state")
        .run("timeout", "60s")
        .run("start", "direct")
        .write(&dir.join("policyd.toml"));
        let mut policyd = Policyd::spawn(&binary("tenet-policyd"), &config, "info");
        let listener = policyd.wait_for(&format!("the policyd of {name} to answer"), |p| {
            p.listener()
        });
        let m = Member {
            name: name.to_string(),
            dir,
            policyd: Some(policyd),
            listener,
        };
        self.members.push(m);
    }

    fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .expect("a member of the world")
    }

    fn member_mut(&mut self, name: &str) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .expect("a member of the world")
    }

    /// Signs a tree saying `serial` into bundles/SERIAL and returns it.
    fn sign(&self, serial: u64) -> PathBuf {
        let tree = self.base().join(format!("trees/{serial}"));
        fs::create_dir_all(&tree).expect("tree");
        let mut cluster = "[cluster]\nname = \"test\"\n".to_string();
        for (i, m) in self.members.iter().enumerate() {
            cluster.push_str(&format!(
                "\n[[member]]\nname = \"{}\"\nhostname = \"{}.example.com\"\naddresses = [{{ ip = \"10.0.0.{}\", role = \"boot\" }}]\n",
                m.name,
                m.name,
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
        let out = self.base().join(format!("bundles/{serial}"));
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
        out
    }

    /// Promotes the first member's policyd with `bundle`; returns the serving address.
    fn promote(&self, bundle: &Path) -> String {
        let master = &self.members[0];
        ok(
            "tenet-policyd",
            &[
                "promote",
                "--bundle",
                s(bundle),
                "--config",
                s(&master.policyd_config()),
            ],
        );
        master
            .status()
            .lines()
            .find_map(|l| l.strip_prefix("serving: "))
            .expect("serving address")
            .trim()
            .to_string()
    }

    /// Writes every member's agent.toml (the first member's with a [push] table naming
    /// every member's listener, plus `extra` addresses).
    fn write_agent_configs(&self, master: &str, extra: &[(&str, &str)]) {
        let mut addresses: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{} = \"{}\"", m.name, m.listener))
            .collect();
        addresses.extend(extra.iter().map(|(n, a)| format!("{n} = \"{a}\"")));
        for (i, m) in self.members.iter().enumerate() {
            let mut text = format!(
                "member = \"{}\"\nmaster = \"{master}\"\nstate_dir = \"state\"\nnode_key = \"node/localhost.key\"\ntrusted_root = \"{}\"\nroot = \"root\"\n",
                m.name,
                s(&self.deploy().join("root/1.root.toml")),
            );
            if i == 0 {
                text.push_str(&format!(
                    "\n[push]\nkey = \"{}\"\naddresses = {{ {} }}\n",
                    s(&self.deploy().join("keys/admin-alice.key")),
                    addresses.join(", ")
                ));
            }
            fs::write(m.agent_config(), text).expect("agent config");
        }
    }

    fn run_agent(&self, name: &str) -> Output {
        run(
            "tenet-agent",
            &["run", "--config", s(&self.member(name).agent_config())],
        )
    }

    /// `tenet-agent push ARGS --json` from the first member.
    fn push(&self, args: &[&str]) -> Pushed {
        let config = self.members[0].agent_config();
        let mut all = vec!["push", "--json", "--timeout", "30s", "--config", s(&config)];
        all.extend_from_slice(args);
        let out = run("tenet-agent", &all);
        Pushed::new(out)
    }
}

/// A finished push: exit code, JSON lines.
struct Pushed {
    code: Option<i32>,
    lines: Vec<Value>,
    text: String,
}

impl Pushed {
    fn new(out: Output) -> Pushed {
        tenet_tests::schema::validate("tenet-agent push --json", &out.stdout);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Pushed {
            code: out.status.code(),
            lines: json_lines(&out.stdout),
            text,
        }
    }

    fn member(&self, name: &str) -> &Value {
        self.lines
            .iter()
            .find(|l| l["type"] == "push_member" && l["member"] == name)
            .unwrap_or_else(|| panic!("no result for {name}:\n{}", self.text))
    }

    fn result(&self, name: &str) -> String {
        self.member(name)["result"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

#[test]
fn push_converges_members_and_reports_each_one() {
    let mut w = World::new(&["alpha", "beta", "gamma"]);
    let master = w.promote(&w.sign(1));
    w.write_agent_configs(&master, &[]);
    // Installation: every member runs once and so trusts root 2, which lists alice.
    for m in ["alpha", "beta", "gamma"] {
        let out = w.run_agent(m);
        assert_eq!(out.status.code(), Some(0), "{m}: {out:?}");
        assert_eq!(
            w.member(m).root_file("etc/tenet-serial").as_deref(),
            Some(format!("serial 1 on {m}\n").as_str())
        );
    }

    // A new serial; a push makes every member converge to it now, with a class.
    w.promote(&w.sign(2));
    let p = w.push(&["--all", "--class", "maint_motd"]);
    assert_eq!(p.code, Some(0), "{}", p.text);
    for m in ["alpha", "beta", "gamma"] {
        assert_eq!(p.result(m), "ok", "{}", p.text);
        assert_eq!(p.member(m)["changed"], 2, "{m}: {}", p.text);
        assert_eq!(
            w.member(m).root_file("etc/tenet-serial").as_deref(),
            Some(format!("serial 2 on {m}\n").as_str())
        );
        assert_eq!(
            w.member(m).root_file("etc/motd").as_deref(),
            Some("maintenance\n")
        );
    }
    let summary = p.lines.last().expect("a summary");
    assert_eq!(summary["type"], "push_summary");
    assert_eq!(summary["ok"], 3);
    // Each member streamed its own run: accepted, promise events, summary, end.
    let events: Vec<&Value> = p
        .lines
        .iter()
        .filter(|l| l["type"] == "push_event" && l["member"] == "beta")
        .map(|l| &l["event"])
        .collect();
    assert_eq!(
        events.first().map(|e| &e["type"]),
        Some(&Value::from("accepted"))
    );
    assert!(events.iter().any(|e| e["type"] == "summary"));
    assert_eq!(events.last().map(|e| &e["type"]), Some(&Value::from("end")));

    // The human form: a table with one row per member.
    let out = run(
        "tenet-agent",
        &[
            "push",
            "--config",
            s(&w.members[0].agent_config()),
            "--dry-run",
            "alpha",
            "beta",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("MEMBER") && text.contains("RESULT"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("alpha") && l.contains(" ok ")),
        "{text}"
    );

    // An administrator out of scope: the member refuses, push exits 9.
    ok(
        "tenet-keys",
        &["admin-key", s(&w.deploy()), "bob", "--member", "beta"],
    );
    ok("tenet-keys", &["root-next", s(&w.deploy())]);
    ok(
        "tenet-keys",
        &[
            "attest",
            s(&w.deploy().join("root/3.root.toml")),
            "--key",
            s(&w.deploy().join("keys/root-1.key")),
        ],
    );
    w.promote(&w.sign(3));
    for m in ["alpha", "beta", "gamma"] {
        assert_eq!(w.run_agent(m).status.code(), Some(0));
    }
    let bob = s(&w.deploy().join("keys/admin-bob.key")).to_string();
    let p = w.push(&["--key", &bob, "alpha", "beta"]);
    assert_eq!(p.code, Some(9), "{}", p.text);
    assert_eq!(p.result("beta"), "ok", "{}", p.text);
    assert_eq!(p.result("alpha"), "refused");
    assert_eq!(p.member("alpha")["reason"], "member_out_of_scope");
    let p = w.push(&["--key", &bob, "--class", "maint_motd", "beta"]);
    assert_eq!(
        p.member("beta")["reason"],
        "class_out_of_scope",
        "{}",
        p.text
    );

    // A member enrolled later: with its key in the next signed inventory, it fetches
    // policy and accepts pushes; nothing else changed.
    w.add_member("delta");
    let master = w.promote(&w.sign(4));
    w.write_agent_configs(&master, &[]);
    assert_eq!(w.run_agent("alpha").status.code(), Some(0));
    let out = w.run_agent("delta");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let p = w.push(&["delta"]);
    assert_eq!(p.code, Some(0), "{}", p.text);
    assert_eq!(p.result("delta"), "ok");

    // A revoked member: left out of --all, refused when named, and the master no
    // longer serves it.
    ok(
        "tenet-keys",
        &["revoke", s(&w.deploy()), "--member", "gamma"],
    );
    w.promote(&w.sign(5));
    assert_eq!(w.run_agent("alpha").status.code(), Some(0));
    let p = w.push(&["--all"]);
    assert_eq!(p.code, Some(0), "{}", p.text);
    assert!(
        !p.lines.iter().any(|l| l["member"] == "gamma"),
        "{}",
        p.text
    );
    let p = w.push(&["gamma"]);
    assert_eq!(p.code, Some(9));
    assert_eq!(
        p.member("gamma")["reason"],
        "not_in_inventory",
        "{}",
        p.text
    );
    let out = w.run_agent("gamma");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("rejected by the server"), "{said}");
    assert_eq!(
        w.member("gamma").root_file("etc/tenet-serial").as_deref(),
        Some("serial 3 on gamma\n"),
        "a revoked member keeps its last good bundle and gets nothing newer"
    );

    // An operator's `tenet-agent run` is going on beta (its master accepts and stays
    // silent, so the run waits out its connect_timeout under the sync lock, then
    // converges from the cache; --degraded-ok: exit 0 all the same): the push starts
    // no second run and reports that run by its summary.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("silent master");
    let beta_dir = w.member("beta").dir.clone();
    let slow = beta_dir.join("agent-slow.toml");
    let text: String = fs::read_to_string(w.member("beta").agent_config())
        .expect("beta's config")
        .lines()
        .map(|l| {
            if l.starts_with("master =") {
                format!(
                    "master = \"{}\"\nconnect_timeout = \"5s\"",
                    silent.local_addr().expect("address")
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&slow, text + "\n").expect("slow config");
    let operator = Command::new(binary("tenet-agent"))
        .args(["run", "--json", "--degraded-ok", "--config", s(&slow)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run starts");
    let note = format!("pid {} run", operator.id());
    let start = Instant::now();
    while !fs::read_to_string(beta_dir.join("state/sync.lock"))
        .unwrap_or_default()
        .starts_with(&note)
    {
        assert!(
            start.elapsed() < DEADLINE,
            "the operator's run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = w.push(&["beta"]);
    let ran = operator
        .wait_with_output()
        .expect("the operator's run ends");
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    tenet_tests::schema::validate("tenet-agent run --json", &ran.stdout);
    assert_eq!(p.code, Some(0), "{}", p.text);
    let beta = p.member("beta");
    assert_eq!(beta["result"], "ok", "{}", p.text);
    assert_eq!(beta["reported_existing"], true, "{}", p.text);
    assert_eq!(beta["existing_pid"], ran_pid(&note), "{}", p.text);
    let attached = p
        .lines
        .iter()
        .find(|l| l["event"]["type"] == "attached_summary")
        .unwrap_or_else(|| panic!("no attached summary:\n{}", p.text));
    assert_eq!(attached["event"]["exit_code"], 0, "{}", p.text);
    assert!(attached["event"]["kept"].as_u64().is_some(), "{}", p.text);
    assert!(
        !p.lines.iter().any(|l| l["event"]["type"] == "accepted"),
        "no second run: {}",
        p.text
    );
    let last: Value = serde_json::from_str(
        &fs::read_to_string(beta_dir.join("state/last-run.json")).expect("last-run.json"),
    )
    .expect("JSON");
    assert_eq!(last["pid"], attached["event"]["pid"]);
    drop(silent);

    // Another run holds beta's run lock (its note names a run other than the one
    // last-run.json is about): the push reports it busy and does not start a second
    // run; when the lock is released the member says so, and passes off no older summary.
    let mut lock = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(w.member("beta").dir.join("state/run.lock"))
        .expect("lock file");
    lock.lock().expect("the test holds the run lock");
    std::io::Write::write_all(&mut lock, b"pid 1 run started at unix time 1\n").expect("note");
    let mut child = Command::new(binary("tenet-agent"))
        .args([
            "push",
            "--json",
            "--config",
            s(&w.members[0].agent_config()),
            "beta",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("push starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut seen = Vec::new();
    loop {
        let mut l = String::new();
        assert!(
            reader.read_line(&mut l).expect("reads") > 0,
            "push ended before reporting the busy member: {seen:?}"
        );
        let v: Value = serde_json::from_str(&l).expect("JSON line");
        seen.push(v.clone());
        if v["type"] == "push_event" && v["event"]["type"] == "busy" {
            break;
        }
    }
    lock.unlock().expect("unlock");
    drop(lock);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("rest");
    let status = child.wait().expect("push ends");
    assert_eq!(status.code(), Some(9), "{seen:?}\n{rest}");
    let lines = json_lines(rest.as_bytes());
    let beta = lines
        .iter()
        .find(|l| l["type"] == "push_member")
        .expect("beta's result");
    assert_eq!(beta["result"], "busy", "{rest}");
    assert!(
        lines.iter().any(|l| l["event"]["type"] == "busy_end"
            && l["event"]["ended"] == true
            && l["event"]["reported"] == false),
        "{rest}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l["event"]["type"] == "attached_summary"),
        "{rest}"
    );

    // A stopped member is unreachable; the others still run.
    w.member_mut("beta").stop();
    let p = w.push(&["alpha", "beta"]);
    assert_eq!(p.code, Some(9), "{}", p.text);
    assert_eq!(p.result("alpha"), "ok");
    assert_eq!(p.result("beta"), "unreachable", "{}", p.text);
}

/// The pid in a run lock note's start (`pid N run`).
fn ran_pid(note: &str) -> u64 {
    note.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("pid")
}
