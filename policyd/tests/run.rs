//! `POST /v1/run` on a real listener: every refusal on the wire (status and reason
//! code), an accepted request streaming `accepted` then `end`, and a replay refused even
//! after the daemon restarts.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use serde_json::Value;
use tenet_keys::deployment::{Deployment, NextRootOptions, next_root};
use tenet_keys::runreq::{self, RunMode, RunRequest, SIGNATURE_HEADER, SignedRunRequest};
use tenet_keys::{SecretKey, Time, publish};

use crate::util::{Client, Daemon, Fixture, now};

/// Reads a streamed body until a line satisfies `want`; returns the lines read.
async fn read_until(
    body: &mut hyper::body::Incoming,
    buf: &mut Vec<u8>,
    want: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    use http_body_util::BodyExt as _;
    let mut lines = Vec::new();
    loop {
        while let Some(at) = buf.iter().position(|b| *b == b'\n') {
            let l: Vec<u8> = buf.drain(..=at).collect();
            let v: Value = serde_json::from_slice(&l).unwrap();
            let done = want(&v);
            lines.push(v);
            if done {
                return lines;
            }
        }
        let frame = body
            .frame()
            .await
            .unwrap_or_else(|| panic!("the stream ended early: {lines:?}"))
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

/// A fixture whose root 2 lists alice (every member, `maint_*`), bob (beta only) and
/// carol (every member, every class), and a daemon for alpha trusting root 2 whose "agent" is /bin/true.
struct World {
    fx: Fixture,
    daemon: Daemon,
    alice: SecretKey,
    bob: SecretKey,
    /// Every member, every class.
    carol: SecretKey,
}

impl World {
    fn new() -> World {
        World::with_agent("/bin/true")
    }

    fn with_agent(agent: &str) -> World {
        World::with_run(agent, "start = \"direct\"\n")
    }

    /// A world whose `[run]` table ends with `run_extra` (how the agent is started).
    fn with_run(agent: &str, run_extra: &str) -> World {
        let fx = Fixture::new();
        let d = Deployment::open(&fx.deployment).unwrap();
        let (alice, _) = d
            .add_admin("alice", vec!["*".into()], vec!["maint_*".into()])
            .unwrap();
        let (bob, _) = d.add_admin("bob", vec!["beta".into()], vec![]).unwrap();
        let (carol, _) = d
            .add_admin("carol", vec!["*".into()], vec!["*".into()])
            .unwrap();
        let r = next_root(
            &d,
            &NextRootOptions {
                expires_in: Duration::from_secs(30 * 86_400),
                now: now(),
                rotate: vec![],
                bump_epoch: false,
                drop_pins: vec![],
            },
        )
        .unwrap();
        let root_key = SecretKey::read(&fx.deployment.join("keys/root-1.key")).unwrap();
        publish::attest(&r.path, &root_key, None).unwrap();
        let key = |name: &str| {
            SecretKey::read(&fx.deployment.join(format!("keys/admin-{name}.key"))).unwrap()
        };
        assert_eq!(key("alice").key_id(), alice.keyid);
        assert_eq!(key("bob").key_id(), bob.keyid);
        // alpha's agent has verified serial 1 under root 2: its members reach the
        // listener (and are refused runs there unless they are admins).
        fx.agent_cache_for(&fx.deployment.join("root/2.root.toml"), &fx.sign(1));
        assert_eq!(key("carol").key_id(), carol.keyid);
        let config = fx.path("run-policyd.toml");
        #[expect(clippy::disallowed_methods, reason = "a starting file for the test")]
        std::fs::write(
            &config,
            r#"member = "alpha"
state_dir = "state"
node_key = "nodes/alpha/localhost.key"
trusted_root = "deploy/root/2.root.toml"

[listener]
listen = "127.0.0.1:0"

[serve]
listen = "127.0.0.1:0"

[metrics]
listen = "127.0.0.1:0"

[reports]
page = "127.0.0.1:0"

[run]
agent = "AGENT"
agent_config = "agent.toml"
agent_state = "agent-state"
timeout = "30s"
"#
            .replace("AGENT", agent)
                + run_extra,
        )
        .unwrap();
        let daemon = Daemon::start(&config);
        World {
            daemon,
            alice: key("alice"),
            bob: key("bob"),
            carol: key("carol"),
            fx,
        }
    }

    fn request(&self, member: &str, classes: &[&str]) -> RunRequest {
        let mut r = RunRequest::new(
            self.fx.trusted_root().root().deployment,
            member,
            now(),
            Duration::from_secs(300),
            RunMode::Apply,
            classes.iter().map(|s| s.to_string()).collect(),
        )
        .unwrap();
        r.issued = Time::from_unix(now().unix() - 5).unwrap();
        r
    }

    /// Posts `signed` over a connection with `client_key`; returns status and lines.
    fn post(&self, client_key: &SecretKey, signed: &SignedRunRequest) -> (StatusCode, Vec<Value>) {
        self.post_raw(
            client_key,
            Some(runreq::signature_header(&signed.signatures)),
            signed.bytes.clone(),
        )
    }

    fn post_raw(
        &self,
        client_key: &SecretKey,
        header: Option<String>,
        body: Vec<u8>,
    ) -> (StatusCode, Vec<Value>) {
        self.try_post(client_key, header, body).unwrap()
    }

    /// [`World::post_raw`], or the connection's error.
    fn try_post(
        &self,
        client_key: &SecretKey,
        header: Option<String>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Vec<Value>), crate::util::BoxError> {
        let addr = self.daemon.status().unwrap().listener;
        let client = Client::new(client_key, vec![self.fx.node_key("alpha").key_id()]);
        let mut builder = Request::post("/v1/run");
        if let Some(h) = header {
            builder = builder.header(SIGNATURE_HEADER, h);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (status, body) =
            rt.block_on(client.send(addr, builder, Full::new(Bytes::from(body))))?;
        let lines = String::from_utf8_lossy(&body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        Ok((status, lines))
    }

    /// Asserts a refusal's status and reason.
    #[track_caller]
    fn refused(&self, got: (StatusCode, Vec<Value>), status: StatusCode, reason: &str) {
        assert_eq!(got.0, status, "{:?}", got.1);
        assert_eq!(got.1.len(), 1, "{:?}", got.1);
        assert_eq!(got.1[0]["type"], "refused");
        assert_eq!(got.1[0]["reason"], reason, "{:?}", got.1);
    }
}

#[test]
fn an_accepted_request_streams_the_run_and_its_nonce_is_never_accepted_again() {
    let mut w = World::new();
    let signed = runreq::sign(&w.request("alpha", &["maint_x"]), &w.alice).unwrap();
    let (status, lines) = w.post(&w.alice, &signed);
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    assert_eq!(lines.first().unwrap()["type"], "accepted");
    assert_eq!(lines.first().unwrap()["classes"][0], "maint_x");
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end", "{lines:?}");
    assert_eq!(end["exit_code"], 0);
    let replay = w.post(&w.alice, &signed);
    w.refused(replay, StatusCode::FORBIDDEN, "replayed");

    // A restart does not reopen the window: the nonce cache is on disk.
    w.daemon.terminate();
    w.daemon = Daemon::start(&w.daemon.config);
    let replay = w.post(&w.alice, &signed);
    w.refused(replay, StatusCode::FORBIDDEN, "replayed");
}

/// The value of one series in `/metrics` (`None` when absent).
fn metric(w: &World, series: &str) -> Option<u64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = rt.block_on(w.daemon.metrics());
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Pushed runs are counted on `/metrics`: accepted, refused by the reason on the wire,
/// finished by the agent's exit code.
#[test]
fn pushed_runs_are_counted_accepted_refused_by_reason_and_finished_by_exit_code() {
    let w = World::with_agent("/bin/false");
    assert_eq!(metric(&w, "tenet_policyd_runs_accepted_total"), Some(0));
    let signed = runreq::sign(&w.request("alpha", &[]), &w.alice).unwrap();
    let (status, lines) = w.post(&w.alice, &signed);
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    assert_eq!(lines.last().unwrap()["exit_code"], 1, "{lines:?}");
    for _ in 0..2 {
        w.refused(w.post(&w.alice, &signed), StatusCode::FORBIDDEN, "replayed");
    }
    let mut r = w.request("alpha", &[]);
    r.issued = Time::from_unix(now().unix() - 600).unwrap();
    r.expires = Time::from_unix(now().unix() - 300).unwrap();
    let expired = runreq::sign(&r, &w.alice).unwrap();
    w.refused(w.post(&w.alice, &expired), StatusCode::FORBIDDEN, "expired");

    assert_eq!(metric(&w, "tenet_policyd_runs_accepted_total"), Some(1));
    assert_eq!(
        metric(&w, "tenet_policyd_runs_refused_total{reason=\"replayed\"}"),
        Some(2)
    );
    assert_eq!(
        metric(&w, "tenet_policyd_runs_refused_total{reason=\"expired\"}"),
        Some(1)
    );
    assert_eq!(
        metric(&w, "tenet_policyd_runs_finished_total{code=\"1\"}"),
        Some(1)
    );
    assert_eq!(
        metric(&w, "tenet_policyd_runs_finished_total{code=\"0\"}"),
        None
    );
    let version = format!(
        "tenet_policyd_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric(&w, &version), Some(1));
}

#[test]
fn every_refusal_on_the_wire() {
    let w = World::new();
    let forbidden = StatusCode::FORBIDDEN;
    let sign = |r: &RunRequest, k: &SecretKey| runreq::sign(r, k).unwrap();

    // Expired, not yet valid, a lifetime over 15 minutes.
    let mut r = w.request("alpha", &[]);
    r.issued = Time::from_unix(now().unix() - 600).unwrap();
    r.expires = Time::from_unix(now().unix() - 300).unwrap();
    w.refused(w.post(&w.alice, &sign(&r, &w.alice)), forbidden, "expired");
    let mut r = w.request("alpha", &[]);
    r.issued = Time::from_unix(now().unix() + 600).unwrap();
    r.expires = Time::from_unix(now().unix() + 900).unwrap();
    w.refused(
        w.post(&w.alice, &sign(&r, &w.alice)),
        forbidden,
        "not_yet_valid",
    );
    let mut r = w.request("alpha", &[]);
    r.expires = Time::from_unix(now().unix() + 3600).unwrap();
    w.refused(w.post(&w.alice, &sign(&r, &w.alice)), forbidden, "lifetime");

    // Scope: bob may trigger beta only; alice may set maint_* only.
    let r = w.request("alpha", &[]);
    w.refused(
        w.post(&w.bob, &sign(&r, &w.bob)),
        forbidden,
        "member_out_of_scope",
    );
    let r = w.request("alpha", &["web"]);
    w.refused(
        w.post(&w.alice, &sign(&r, &w.alice)),
        forbidden,
        "class_out_of_scope",
    );

    // Unsigned, wrongly signed, signed by another admin than the connection's key.
    let r = w.request("alpha", &[]);
    let good = sign(&r, &w.alice);
    w.refused(
        w.post_raw(&w.alice, None, good.bytes.clone()),
        forbidden,
        "unsigned",
    );
    let mut tampered = good.clone();
    tampered.bytes.extend_from_slice(b"# x\n");
    w.refused(w.post(&w.alice, &tampered), forbidden, "bad_signature");
    w.refused(
        w.post(&w.bob, &sign(&w.request("alpha", &[]), &w.alice)),
        forbidden,
        "peer_not_signer",
    );
    w.refused(
        w.post_raw(&w.alice, Some("nonsense".into()), good.bytes.clone()),
        StatusCode::BAD_REQUEST,
        "malformed_signature",
    );

    // An unknown key is refused at the handshake; an enrolled member's, at the
    // connection's key before the body.
    let stranger = SecretKey::from_seed(&[42; 32]);
    let signed = sign(&w.request("alpha", &[]), &stranger);
    let err = w
        .try_post(
            &stranger,
            Some(runreq::signature_header(&signed.signatures)),
            signed.bytes,
        )
        .expect_err("an unknown key must not reach HTTP");
    assert_eq!(
        crate::util::refusal(&err),
        Some(tenet_keys::tls::Refusal::ClientNotAdmitted),
        "{err}"
    );
    let member = w.fx.node_key("beta");
    w.refused(
        w.post(&member, &sign(&w.request("alpha", &[]), &member)),
        forbidden,
        "not_admin_peer",
    );
    let policy = SecretKey::read(&w.fx.deployment.join("keys/policy.key")).unwrap();
    w.refused(
        w.post(&w.alice, &sign(&w.request("alpha", &[]), &policy)),
        forbidden,
        "not_admin",
    );
    w.refused(
        w.post(&w.alice, &sign(&w.request("alpha", &[]), &stranger)),
        forbidden,
        "unknown_key",
    );

    // Oversized, malformed, wrong deployment, wrong member.
    let big = vec![b'#'; 5000];
    let sig = w.alice.sign(tenet_keys::Context::RunRequest, &big);
    let header = format!(
        "{}:{}",
        w.alice.key_id(),
        sig.to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    w.refused(
        w.post_raw(&w.alice, Some(header), big),
        StatusCode::PAYLOAD_TOO_LARGE,
        "oversized",
    );
    let text = b"schema = 1\nkind = \"runreq\"\ncommand = \"reboot\"\n".to_vec();
    let signed = SignedRunRequest {
        signatures: vec![tenet_keys::sig::SignatureEntry {
            keyid: w.alice.key_id(),
            sig: w.alice.sign(tenet_keys::Context::RunRequest, &text),
        }],
        bytes: text,
    };
    w.refused(
        w.post(&w.alice, &signed),
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    let mut r = w.request("alpha", &[]);
    r.deployment = "ffeeddccbbaa99887766554433221100".parse().unwrap();
    w.refused(
        w.post(&w.alice, &sign(&r, &w.alice)),
        forbidden,
        "wrong_deployment",
    );
    w.refused(
        w.post(&w.alice, &sign(&w.request("beta", &[]), &w.alice)),
        forbidden,
        "wrong_member",
    );

    // Only POST.
    let addr = w.daemon.status().unwrap().listener;
    let client = Client::new(&w.alice, vec![w.fx.node_key("alpha").key_id()]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, _) = rt.block_on(client.get(addr, "/v1/run")).unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

/// A class that looks like an option (`--dry-run`) is refused by the member, even from an
/// administrator whose scope allows every class: passed to the agent it would be read as
/// an option. An accepted class reaches the agent as one `--class=VALUE` argument.
#[test]
fn finding_10_a_class_starting_with_a_dash_is_refused_and_classes_pass_as_one_argument() {
    let dir = tempfile::tempdir().unwrap();
    let argv = dir.path().join("argv");
    let agent = dir.path().join("agent.sh");
    #[expect(clippy::disallowed_methods, reason = "a stand-in agent for the test")]
    std::fs::write(
        &agent,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", argv.display()),
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let w = World::with_agent(agent.to_str().unwrap());

    for class in ["--dry-run", "-x"] {
        let mut r = w.request("alpha", &[]);
        r.classes = vec![class.to_string()];
        let (status, lines) = w.post(&w.carol, &runreq::sign(&r, &w.carol).unwrap());
        assert_eq!(status, StatusCode::BAD_REQUEST, "{lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["reason"], "malformed", "{lines:?}");
        let message = lines[0]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{class:?} is not a class name")),
            "{message}"
        );
    }
    assert!(!argv.exists(), "a refused request started the agent");

    let r = w.request("alpha", &["web-1", "db.x"]);
    let (status, lines) = w.post(&w.carol, &runreq::sign(&r, &w.carol).unwrap());
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    assert_eq!(lines.last().unwrap()["exit_code"], 0, "{lines:?}");
    let got = std::fs::read_to_string(&argv).unwrap();
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(
        got,
        [
            "run",
            "--json",
            "--config",
            w.fx.path("agent.toml").to_str().unwrap(),
            "--class=web-1",
            "--class=db.x"
        ]
    );
}

/// A second request while a pushed run is going is attached to it: it gets `busy`
/// naming the run's pid, then that run's own lines and end; no second run starts.
#[test]
fn a_request_during_a_pushed_run_reports_that_run() {
    let fx_dir = tempfile::tempdir().unwrap();
    let go = fx_dir.path().join("go");
    let script = fx_dir.path().join("agent.sh");
    let count = fx_dir.path().join("runs");
    #[expect(clippy::disallowed_methods, reason = "a fake agent for the test")]
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho started >> {count}\necho '{{\"type\":\"warning\",\"message\":\"waiting\"}}'\nwhile [ ! -e {go} ]; do sleep 0.02; done\necho '{{\"type\":\"summary\",\"repaired\":1}}'\n",
            count = count.display(),
            go = go.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = World::with_agent(script.to_str().unwrap());
    let addr = w.daemon.status().unwrap().listener;
    let client = Client::new(&w.alice, vec![w.fx.node_key("alpha").key_id()]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let post = |r: &RunRequest| {
            let signed = runreq::sign(r, &w.alice).unwrap();
            let builder = Request::post("/v1/run").header(
                SIGNATURE_HEADER,
                runreq::signature_header(&signed.signatures),
            );
            client.open(addr, builder, Full::new(Bytes::from(signed.bytes)))
        };
        let (status, mut first) = post(&w.request("alpha", &[])).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let mut first_buf = Vec::new();
        let head = read_until(&mut first, &mut first_buf, |v| v["type"] == "warning").await;
        let pid = head[0]["pid"].as_u64().unwrap();

        let (status, mut second) = post(&w.request("alpha", &[])).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let mut second_buf = Vec::new();
        let busy = read_until(&mut second, &mut second_buf, |v| v["type"] == "busy").await;
        assert_eq!(busy[0]["attached"], true, "{busy:?}");
        assert_eq!(busy[0]["pid"].as_u64(), Some(pid));

        #[expect(clippy::disallowed_methods, reason = "releases the fake agent")]
        std::fs::write(&go, "").unwrap();
        let first_rest = read_until(&mut first, &mut first_buf, |v| v["type"] == "end").await;
        let second_rest = read_until(&mut second, &mut second_buf, |v| v["type"] == "end").await;
        assert!(
            first_rest.iter().any(|v| v["type"] == "summary"),
            "{first_rest:?}"
        );
        assert!(
            second_rest.iter().any(|v| v["type"] == "summary"),
            "{second_rest:?}"
        );
        assert_eq!(
            first_rest.last(),
            second_rest.last(),
            "both see the same end"
        );
        assert_eq!(second_rest.last().unwrap()["pid"].as_u64(), Some(pid));
    });
    let runs = std::fs::read_to_string(&count).unwrap();
    assert_eq!(runs.lines().count(), 1, "exactly one run started");
}

/// A request while another process holds the agent's run lock gets `busy` naming the
/// holder; once the lock is free, the agent's `last-run.json` is reported as
/// `attached_summary` before `busy_end`, but only when its pid and start are the
/// holder's: an older summary is never passed off as this run's. No run starts.
#[test]
fn a_request_during_a_foreign_run_reports_its_summary_only_if_it_is_that_run() {
    let fx_dir = tempfile::tempdir().unwrap();
    let count = fx_dir.path().join("runs");
    let script = fx_dir.path().join("agent.sh");
    #[expect(clippy::disallowed_methods, reason = "a fake agent for the test")]
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho started >> {}\n", count.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = World::with_agent(script.to_str().unwrap());
    let state = w.fx.path("agent-state");
    std::fs::create_dir_all(&state).unwrap();
    let addr = w.daemon.status().unwrap().listener;
    let client = Client::new(&w.alice, vec![w.fx.node_key("alpha").key_id()]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // (summary's pid, summary's start) against the holder's "pid 4242 ... 1700000000".
    for (pid, started, reported) in [
        (4242, 1_700_000_000, true),
        (4242, 1_699_999_999, false),
        (4243, 1_700_000_000, false),
    ] {
        use std::io::Write as _;
        let mut lock = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(state.join("run.lock"))
            .unwrap();
        lock.lock().unwrap();
        lock.write_all(b"pid 4242 run started at unix time 1700000000\n")
            .unwrap();
        let summary = serde_json::json!({
            "type": "summary", "kept": 3, "repaired": 2, "would_repair": 0, "failed": 0,
            "blocked": 0, "skipped": 0, "duration_ms": 5, "member": "alpha", "dry_run": false,
            "pid": pid, "started": started, "ended": started + 1, "exit_code": 0,
            "serial": 1, "error": null,
        });
        #[expect(
            clippy::disallowed_methods,
            reason = "the agent's summary, for the test"
        )]
        std::fs::write(state.join("last-run.json"), format!("{summary}\n")).unwrap();
        rt.block_on(async {
            let signed = runreq::sign(&w.request("alpha", &[]), &w.alice).unwrap();
            let builder = Request::post("/v1/run").header(
                SIGNATURE_HEADER,
                runreq::signature_header(&signed.signatures),
            );
            let (status, mut body) = client
                .open(addr, builder, Full::new(Bytes::from(signed.bytes)))
                .await
                .unwrap();
            assert_eq!(status, StatusCode::OK);
            let mut buf = Vec::new();
            let busy = read_until(&mut body, &mut buf, |v| v["type"] == "busy").await;
            assert_eq!(busy[0]["attached"], false, "{busy:?}");
            assert_eq!(busy[0]["pid"], 4242, "{busy:?}");
            assert_eq!(busy[0]["started"], 1_700_000_000, "{busy:?}");
            lock.unlock().unwrap();
            let rest = read_until(&mut body, &mut buf, |v| v["type"] == "busy_end").await;
            let attached: Vec<&Value> = rest
                .iter()
                .filter(|v| v["type"] == "attached_summary")
                .collect();
            assert_eq!(rest.last().unwrap()["reported"], reported, "{rest:?}");
            if reported {
                assert_eq!(attached.len(), 1, "{rest:?}");
                assert_eq!(attached[0]["repaired"], 2);
                assert_eq!(attached[0]["exit_code"], 0);
                assert_eq!(attached[0]["pid"], 4242);
            } else {
                assert!(
                    attached.is_empty(),
                    "an older summary is not reported: {rest:?}"
                );
            }
            assert!(!rest.iter().any(|v| v["type"] == "end"), "{rest:?}");
        });
    }
    assert!(!count.exists(), "no run was started");
}

/// Writes an executable shell script.
fn script(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    #[expect(clippy::disallowed_methods, reason = "a fake program for the test")]
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Pushed runs used to be children of policyd, inside its service sandbox
/// (`ProtectSystem=strict`, a private `/tmp`, ...). With `start = "systemd-run"` the
/// agent is started as a transient unit instead, with this exact argv; `systemd-run` is
/// a stand-in here that records its arguments and runs the command after `--` (no
/// systemd in the test: the unit itself is not exercised).
#[test]
fn finding_14_pushed_runs_start_as_a_transient_unit() {
    let dir = tempfile::tempdir().unwrap();
    let argv = dir.path().join("argv");
    let fake = dir.path().join("systemd-run");
    script(
        &fake,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {argv}\nwhile [ \"$1\" != -- ]; do shift; done\nshift\nexec \"$@\"\n",
            argv = argv.display()
        ),
    );
    let w = World::with_run(
        "/bin/true",
        &format!(
            "start = \"systemd-run\"\nsystemd_run = \"{}\"\n",
            fake.display()
        ),
    );
    let request = w.request("alpha", &["maint_x"]);
    let nonce = request.nonce.to_string();
    let (status, lines) = w.post(&w.alice, &runreq::sign(&request, &w.alice).unwrap());
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    assert_eq!(lines.first().unwrap()["type"], "accepted");
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end", "{lines:?}");
    assert_eq!(end["exit_code"], 0, "{lines:?}");
    let recorded = std::fs::read_to_string(&argv).unwrap();
    let config = w.fx.path("agent.toml");
    let expected = [
        format!("--unit=tenet-agent-push-{}", &nonce[..16]),
        "--description=tenet pushed run".to_string(),
        "--wait".to_string(),
        "--collect".to_string(),
        "--pipe".to_string(),
        "--quiet".to_string(),
        "--service-type=exec".to_string(),
        "--property=RuntimeMaxSec=30".to_string(),
        "--".to_string(),
        "/bin/true".to_string(),
        "run".to_string(),
        "--json".to_string(),
        "--config".to_string(),
        config.display().to_string(),
        "--class=maint_x".to_string(),
    ];
    assert_eq!(recorded.lines().collect::<Vec<_>>(), expected);
}

/// Without systemd (`start = "direct"`) the agent is a child of policyd, as before.
#[test]
fn finding_14_direct_mode_starts_the_agent_as_a_child() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("parent");
    let agent = dir.path().join("agent.sh");
    script(
        &agent,
        &format!(
            "#!/bin/sh\necho $PPID > {}\necho '{{\"type\":\"summary\",\"repaired\":0}}'\n",
            parent.display()
        ),
    );
    let w = World::with_run(agent.to_str().unwrap(), "start = \"direct\"\n");
    let (status, lines) = w.post(
        &w.alice,
        &runreq::sign(&w.request("alpha", &[]), &w.alice).unwrap(),
    );
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    assert_eq!(lines.last().unwrap()["exit_code"], 0, "{lines:?}");
    let ppid: u32 = std::fs::read_to_string(&parent)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ppid, w.daemon.pid());
}

/// The root run requests are checked against is held in memory and read again only
/// when `trust.toml` changes, not read and signature-checked for every request: a
/// trust state that turns unreadable keeps the last verified root (it used to refuse
/// every request with `no_root`).
#[test]
fn finding_12_run_requests_use_the_root_held_in_memory() {
    let w = World::new();
    let trust = w.fx.path("agent-state/trust.toml");
    #[expect(clippy::disallowed_methods, reason = "damages the agent's trust state")]
    std::fs::write(&trust, "not a trust state\n").unwrap();
    let (status, lines) = w.post(
        &w.alice,
        &runreq::sign(&w.request("alpha", &[]), &w.alice).unwrap(),
    );
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    assert_eq!(lines.last().unwrap()["exit_code"], 0, "{lines:?}");
    let log = w.daemon.log();
    assert!(log.contains("cannot use the agent's trust state"), "{log}");
}

/// What the process `pid` has written and read so far (`wchar`, `rchar` of
/// `/proc/PID/io`: every byte through `write` and `read`, files and sockets alike).
fn io_of(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap()
    };
    (field("wchar:"), field("rchar:"))
}

/// The member writes and reads as much for a run request when its replay cache holds
/// hundreds of nonces as when it holds a few: a request appends one line, it does not
/// read and rewrite the whole cache. Measured on the real daemon with `/proc/PID/io`.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "the measured bytes per request are the result"
)]
fn finding_11_a_request_costs_the_daemon_the_same_bytes_with_a_full_cache() {
    let w = World::new();
    let pid = w.daemon.pid();
    let send = |count: usize| {
        for _ in 0..count {
            let signed = runreq::sign(&w.request("alpha", &[]), &w.alice).unwrap();
            let (status, lines) = w.post(&w.alice, &signed);
            assert_eq!(status, StatusCode::OK, "{lines:?}");
        }
    };
    let batch = 40;
    let measure = || {
        let (w0, r0) = io_of(pid);
        send(batch);
        let (w1, r1) = io_of(pid);
        ((w1 - w0) / batch as u64, (r1 - r0) / batch as u64)
    };
    send(10);
    let (early_w, early_r) = measure();
    send(400);
    let (late_w, late_r) = measure();
    eprintln!(
        "per request with ~30 nonces cached: {early_w} bytes written, {early_r} read; with ~470: {late_w} written, {late_r} read"
    );
    assert!(
        late_w <= early_w + early_w / 4 + 1024,
        "{early_w} -> {late_w}"
    );
    assert!(
        late_r <= early_r + early_r / 4 + 1024,
        "{early_r} -> {late_r}"
    );
}
