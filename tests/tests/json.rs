//! `--json` on every command that reports: the real output of `tenet-agent` (check,
//! apply, event, plan show, plan simulate, watch), `tenet-policyd status` and the
//! `tenet-keys` commands is validated line by line against `docs/json.schema.json`
//! (JSON Schema 2020-12, `date-time` formats checked), and each command must print the
//! line types `docs/json.md` says it prints. A command without `--json` fails here
//! (clap refuses the flag, so no line comes).
#![expect(
    clippy::disallowed_methods,
    reason = "the test spawns the real binaries and writes policy files"
)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tenet_tests::binary;
use tenet_tests::fixture::{Deployment, Policyd, example};
use tenet_tests::schema::{schema, validate};

/// Runs `bin args`, checks its exit code, validates its stdout, and checks that every
/// schema in `expected` was printed.
fn json_command(bin: &str, args: &[&str], code: i32, expected: &[&str]) -> Vec<Value> {
    let out: Output = Command::new(binary(bin))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    let what = format!("{bin} {}", args.join(" "));
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit code\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = validate(&what, &out.stdout);
    for e in expected {
        assert!(
            seen.contains(*e),
            "{what}: no {e} line; printed {seen:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("a directory");
    for entry in fs::read_dir(from).expect("a readable directory") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("a copy");
        }
    }
}

/// The dce-cluster example plus a package-running plan for `dce` every second: one
/// step that succeeds, one that fails with output (so the optional fields show).
fn tree(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    copy_dir(&example(), &tree);
    fs::write(
        tree.join("running.toml"),
        r#"[[plan]]
name = "dce-alive"
on = "package-running"
package = "dce"
every = "1s"

[[plan.step]]
name = "probe"
type = "command"
argv = ["/bin/sh", "-c", "exit 0"]

[[plan.step]]
name = "complain"
type = "command"
argv = ["/bin/sh", "-c", "echo not today >&2; exit 3"]
"#,
    )
    .expect("running.toml");
    fs::create_dir_all(dir.join("root")).expect("root");
    tree
}

#[test]
fn check_prints_diagnostics_and_a_result() {
    let example = example();
    let lines = json_command(
        "tenet-agent",
        &["check", "--json", s(&example)],
        0,
        &["tenet.check.check/1"],
    );
    assert_eq!(
        lines.last().map(|l| l["valid"].clone()),
        Some(Value::Bool(true))
    );
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("bad.toml"), "[[file]]\npath = 3\n").expect("bad tree");
    let lines = json_command(
        "tenet-agent",
        &["check", "--json", s(dir.path())],
        3,
        &["tenet.check.diagnostic/1", "tenet.check.check/1"],
    );
    let d = &lines[0];
    assert_eq!(
        (d["file"].as_str(), d["severity"].as_str()),
        (Some("bad.toml"), Some("error"))
    );
}

#[test]
fn apply_event_and_plans_print_their_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tree = tree(dir.path());
    let root = dir.path().join("root");
    let state = dir.path().join("state");
    let member = ["--fact", "member=alpha", "--fact", "holds=dce"];
    let mut apply = vec!["apply", "--json", "--dry-run", "--diff", "--root", s(&root)];
    apply.extend(member);
    apply.push(s(&tree));
    json_command(
        "tenet-agent",
        &apply,
        0,
        &["tenet.converge.promise/1", "tenet.converge.summary/1"],
    );
    let place = [
        "--policy",
        s(&tree),
        "--root",
        s(&root),
        "--state-dir",
        s(&state),
    ];
    let mut event = vec!["event", "package-running", "dce", "--json", "--id", "j1"];
    event.extend(place);
    event.extend(member);
    let lines = json_command(
        "tenet-agent",
        &event,
        1,
        &[
            "tenet.event.plan/1",
            "tenet.event.step/1",
            "tenet.event.event/1",
        ],
    );
    let failed = lines
        .iter()
        .find(|l| l["type"] == "step" && l["status"] == "failed")
        .expect("the failing step is reported");
    assert_eq!(failed["exit_code"], 3);
    let mut show = vec!["plan", "show", "--json", "--member", "alpha"];
    show.extend(place);
    json_command("tenet-agent", &show, 0, &["tenet.plan.show.plan/1"]);
    let mut simulate = vec![
        "plan",
        "simulate",
        "--json",
        "--member",
        "beta",
        "--event",
        "package-start:dce",
    ];
    simulate.extend(place);
    json_command(
        "tenet-agent",
        &simulate,
        0,
        &[
            "tenet.plan.simulate.simulation/1",
            "tenet.plan.simulate.note/1",
            "tenet.plan.simulate.plan/1",
        ],
    );
}

#[test]
fn watch_prints_a_line_per_round_as_it_ends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tree = tree(dir.path());
    let root = dir.path().join("root");
    let state = dir.path().join("state");
    let mut child = Command::new(binary("tenet-agent"))
        .args([
            "watch",
            "dce",
            "--json",
            "--policy",
            s(&tree),
            "--root",
            s(&root),
        ])
        .args([
            "--state-dir",
            s(&state),
            "--fact",
            "member=alpha",
            "--fact",
            "holds=dce",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch starts");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = Vec::new();
    // Two rounds read while watch still runs: each line comes as its round ends.
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        let round = line.contains(r#""type":"round""#);
        lines.push(line);
        if round
            && lines
                .iter()
                .filter(|l| l.contains(r#""type":"round""#))
                .count()
                == 2
        {
            break;
        }
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM to watch");
    let status = child.wait().expect("watch ends");
    assert_eq!(status.code(), Some(0), "watch ends 0 on SIGTERM");
    let out = lines.join("\n");
    let seen = validate("tenet-agent watch --json", out.as_bytes());
    assert!(seen.contains("tenet.watch.round/1"), "{out}");
    let first: Value = serde_json::from_str(
        lines
            .iter()
            .find(|l| l.contains(r#""type":"round""#))
            .expect("a round"),
    )
    .expect("JSON");
    assert_eq!(
        (first["round"].as_u64(), first["status"].as_str()),
        (Some(1), Some("failed"))
    );
}

#[test]
fn policyd_status_prints_one_line() {
    let dep = Deployment::new(&["alpha"], &[]);
    let config = dep.policyd_config("alpha").write(&dep.path("policyd.toml"));
    let policyd = Policyd::start(&binary("tenet-policyd"), &config, "warn");
    let status = ["status", "--json", "--config", s(&config)];
    let lines = json_command("tenet-policyd", &status, 7, &["tenet.policyd.status/1"]);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["state"], "listening");
    let bundle = dep.sign_tree(&example(), 1, Duration::from_secs(86_400));
    policyd.promote(&bundle);
    let lines = json_command("tenet-policyd", &status, 0, &["tenet.policyd.status/1"]);
    assert_eq!(
        (lines[0]["state"].as_str(), lines[0]["serial"].as_u64()),
        (Some("serving"), Some(1))
    );
    assert!(lines[0]["manifest_expires"].is_string(), "{}", lines[0]);
}

#[test]
fn every_keys_command_prints_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |rel: &str| dir.path().join(rel);
    let dep = p("deploy");
    let keys = |args: &[&str], schema: &str| -> Value {
        let mut lines = json_command("tenet-keys", args, 0, &[schema]);
        assert_eq!(lines.len(), 1, "{args:?}");
        lines.remove(0)
    };
    keys(
        &[
            "init",
            s(&dep),
            "--root-keys",
            "1",
            "--root-threshold",
            "1",
            "--json",
        ],
        "tenet.keys.init/1",
    );
    let node = keys(
        &["node-key", "--out", s(&p("node")), "--json"],
        "tenet.keys.node_key/1",
    );
    let id = node["keyid"].as_str().expect("a key id").to_string();
    keys(
        &[
            "enroll",
            s(&dep),
            "--member",
            "alpha",
            "--key-id",
            &id,
            "--json",
        ],
        "tenet.keys.enroll/1",
    );
    keys(
        &["admin-key", s(&dep), "alice", "--member", "*", "--json"],
        "tenet.keys.admin_key/1",
    );
    let bundle = p("bundle");
    let example = example();
    keys(
        &[
            "sign",
            s(&example),
            "--deployment",
            s(&dep),
            "--out",
            s(&bundle),
            "--json",
        ],
        "tenet.keys.sign/1",
    );
    let ts_key = dep.join("keys/timestamp.key");
    keys(
        &["timestamp", s(&bundle), "--key", s(&ts_key), "--json"],
        "tenet.keys.timestamp/1",
    );
    keys(
        &[
            "publish",
            s(&bundle),
            "--to",
            s(&p("mirror")),
            "--key",
            s(&ts_key),
            "--json",
        ],
        "tenet.keys.publish/1",
    );
    let root1 = dep.join("root/1.root.toml");
    let verified = keys(
        &["verify", s(&bundle), "--root", s(&root1), "--json"],
        "tenet.keys.verify/1",
    );
    assert_eq!(verified["members"][0]["name"], "alpha");
    keys(&["root-next", s(&dep), "--json"], "tenet.keys.root_next/1");
    let root2 = dep.join("root/2.root.toml");
    let root_key = dep.join("keys/root-1.key");
    keys(
        &[
            "attest",
            s(&root2),
            "--key",
            s(&root_key),
            "--deployment",
            s(&dep),
            "--json",
        ],
        "tenet.keys.attest/1",
    );
    let token = keys(
        &[
            "join-token",
            s(&dep),
            "--member",
            "beta",
            "--auto",
            "--json",
        ],
        "tenet.keys.join_token/1",
    );
    keys(
        &["fingerprint", s(&root1), "--json"],
        "tenet.keys.fingerprint/1",
    );
    // A request as the master stores it, for `requests` and `approve` to list.
    let join_dir = p("join");
    tenet_keys::join::JoinRequest {
        member: "beta".to_string(),
        keyid: tenet_keys::SecretKey::from_seed(&[7; 32]).key_id(),
        received: tenet_tests::fixture::now(),
        approval: tenet_keys::join::Approval::Auto,
        classes: Vec::new(),
        token: token["token"].as_str().expect("a token").to_string(),
    }
    .store(&join_dir)
    .expect("a stored request");
    let listed = keys(
        &["requests", s(&dep), "--join-dir", s(&join_dir), "--json"],
        "tenet.keys.requests/1",
    );
    assert_eq!(listed["requests"][0]["refused"], Value::Null, "{listed}");
    let approved = keys(
        &[
            "approve",
            s(&dep),
            "--auto",
            "--join-dir",
            s(&join_dir),
            "--json",
        ],
        "tenet.keys.approve/1",
    );
    assert_eq!(approved["approved"][0]["member"], "beta", "{approved}");
    keys(
        &["admin-revoke", s(&dep), "alice", "--json"],
        "tenet.keys.admin_revoke/1",
    );
    keys(
        &["revoke", s(&dep), "--member", "alpha", "--json"],
        "tenet.keys.revoke/1",
    );
}

/// `docs/json.md` names every line type of the schema, and the schema defines every
/// line type the document names.
#[test]
fn the_document_and_the_schema_name_the_same_lines() {
    let schema = schema();
    let defined: BTreeSet<String> = schema["$defs"]
        .as_object()
        .expect("$defs")
        .keys()
        .map(|k| format!("tenet.{k}/1"))
        .collect();
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/json.md"))
        .expect("docs/json.md");
    let named: BTreeSet<String> = doc
        .split('`')
        .filter(|w| w.starts_with("tenet.") && w.ends_with("/1"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        named, defined,
        "docs/json.md and docs/json.schema.json differ"
    );
}
