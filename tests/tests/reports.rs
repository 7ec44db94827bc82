//! End-to-end: members' run reports reach the master, are kept in its report database
//! on the "package filesystem" (a directory both policyd candidates name in
//! `[reports] database`), and are read back with `tenet-policyd report`.
//!
//! Members are real `tenet-agent run` processes and the masters real `tenet-policyd
//! serve` processes; bad reports are sent with a mutual-TLS client that sends what it
//! is told ([`tenet_tests::report_client`]).
#![expect(
    clippy::disallowed_methods,
    reason = "the test spawns the real binaries and writes their configuration files"
)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tenet_tests::fixture::{Policyd, PolicydConfig, wait_for};
use tenet_tests::report_client::{ReportClient, report_body, tls_config};
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

/// A deployment, its members and their policyds, in one temp directory.
pub(crate) struct World {
    _dir: tempfile::TempDir,
    base: PathBuf,
    members: Vec<Member>,
}

/// One member: its files and its policyd (killed by PID on drop).
pub(crate) struct Member {
    name: String,
    dir: PathBuf,
    policyd: Option<Policyd>,
}

impl World {
    /// `names` enrolled, each with a policyd whose report database is `pkg/reports.db`
    /// (shared: the package filesystem), plus `extra` lines of `[reports]`; `outsider`
    /// gets a node key but is not enrolled.
    pub(crate) fn new(names: &[&str], extra: &str) -> World {
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
        fs::create_dir_all(base.join("pkg")).expect("package dir");
        let mut w = World {
            _dir: dir,
            base,
            members: Vec::new(),
        };
        for name in names {
            w.add_member(name, extra);
        }
        let outsider = w.base.join("members/outsider");
        fs::create_dir_all(&outsider).expect("outsider dir");
        ok(
            "tenet-keys",
            &["node-key", "--out", s(&outsider.join("node"))],
        );
        w
    }

    pub(crate) fn deploy(&self) -> PathBuf {
        self.base.join("deploy")
    }

    pub(crate) fn root_file(&self) -> PathBuf {
        self.deploy().join("root/1.root.toml")
    }

    fn add_member(&mut self, name: &str, extra: &str) {
        let dir = self.base.join("members").join(name);
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
        PolicydConfig::new(name, "node/localhost.key", s(&self.root_file()))
            .state_dir("policyd-state")
            .serve(
                Some(s(&deploy.join("keys/timestamp.key"))),
                Some(s(&deploy.join("keys/server-tls.key"))),
            )
            .metrics("127.0.0.1:0")
            .reports(&format!(
                "database = \"{}\"\n{extra}",
                s(&self.base.join("pkg/reports.db"))
            ))
            .write(&dir.join("policyd.toml"));
        let mut m = Member {
            name: name.to_string(),
            dir,
            policyd: None,
        };
        m.start();
        self.members.push(m);
    }

    pub(crate) fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .expect("a member of the world")
    }

    pub(crate) fn member_mut(&mut self, name: &str) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .expect("a member of the world")
    }

    /// Signs serial `serial`: a file on every member, and a command that fails on each
    /// of `failing`.
    pub(crate) fn sign(&self, serial: u64, failing: &[&str]) -> PathBuf {
        let tree = self.base.join(format!("trees/{serial}"));
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
        let mut files = format!(
            "[[file]]\npath = \"/etc/tenet-serial\"\ncontent = \"serial {serial} on ${{member}}\\n\"\ntemplate = true\nmode = \"0644\"\n"
        );
        for name in failing {
            files.push_str(&format!(
                "\n[[command]]\nname = \"{name}-fails\"\nwhen = \"member({name})\"\nshell = \"echo broken on {name} >&2; exit 3\"\n"
            ));
        }
        fs::write(tree.join("files.toml"), files).expect("files");
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
        out
    }

    /// Writes every member's agent.toml with `master`.
    pub(crate) fn write_agent_configs(&self, master: &str) {
        for m in &self.members {
            let text = format!(
                "member = \"{}\"\nmaster = \"{master}\"\nstate_dir = \"state\"\nnode_key = \"node/localhost.key\"\ntrusted_root = \"{}\"\nroot = \"root\"\n",
                m.name,
                s(&self.root_file()),
            );
            fs::write(m.dir.join("agent.toml"), text).expect("agent config");
        }
    }

    pub(crate) fn run_agent(&self, name: &str) -> Output {
        run(
            "tenet-agent",
            &[
                "run",
                "--config",
                s(&self.member(name).dir.join("agent.toml")),
            ],
        )
    }

    /// `tenet-policyd report --json ARGS` through `name`'s configuration, validated
    /// against the schema.
    pub(crate) fn report(&self, name: &str, args: &[&str]) -> Vec<Value> {
        let config = self.member(name).dir.join("policyd.toml");
        let mut all = vec!["report", "--json", "--config", s(&config)];
        all.extend_from_slice(args);
        let out = run("tenet-policyd", &all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "report {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tenet_tests::schema::validate("tenet-policyd report", &out.stdout);
        json_lines(&out.stdout)
    }

    /// `GET /metrics` from `name`'s policyd.
    pub(crate) fn metrics(&self, name: &str) -> String {
        let status = self.member(name).policyd().status();
        let addr = status
            .lines()
            .find_map(|l| l.strip_prefix("metrics: "))
            .expect("a metrics address")
            .trim()
            .to_string();
        http_get(&addr, "/metrics").1
    }

    /// A client with `name`'s node key (or the outsider's) to `addr`.
    pub(crate) fn client(&self, name: &str, addr: &str) -> Result<ReportClient, String> {
        let key = self
            .base
            .join("members")
            .join(name)
            .join("node/localhost.key");
        let config = tls_config(&key, &self.root_file()).map_err(|e| e.to_string())?;
        ReportClient::connect(config, addr).map_err(|e| e.to_string())
    }
}

impl Member {
    pub(crate) fn policyd(&self) -> &Policyd {
        self.policyd.as_ref().expect("the policyd runs")
    }

    pub(crate) fn start(&mut self) {
        let mut p = Policyd::spawn(
            &binary("tenet-policyd"),
            &self.dir.join("policyd.toml"),
            "info",
        );
        p.wait_for(&format!("the policyd of {} to answer", self.name), |p| {
            p.listener()
        });
        self.policyd = Some(p);
    }

    /// Promotes this member's policyd with `bundle`; returns the serving address.
    pub(crate) fn promote(&self, bundle: &Path) -> String {
        let status = self.policyd().promote(bundle);
        status
            .lines()
            .find_map(|l| l.strip_prefix("serving: "))
            .expect("serving address")
            .trim()
            .to_string()
    }

    pub(crate) fn queued(&self) -> usize {
        fs::read_dir(self.dir.join("state/reports")).map_or(0, |d| d.count())
    }
}

/// A plain-HTTP GET (the metrics endpoint, the status page): status and body.
pub(crate) fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .expect("request");
    let mut text = String::new();
    tcp.read_to_string(&mut text).expect("answer");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn by_member<'a>(lines: &'a [Value], member: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["member"] == member)
        .unwrap_or_else(|| panic!("no line for {member} in {lines:#?}"))
}

#[test]
fn three_members_report_and_the_history_follows_a_failover() {
    let mut w = World::new(&["alpha", "beta", "gamma"], "");
    let bundle = w.sign(1, &["gamma"]);
    let master = w.member("alpha").promote(&bundle);
    w.write_agent_configs(&master);
    for (name, want) in [("alpha", 0), ("beta", 0), ("gamma", 1)] {
        let out = w.run_agent(name);
        assert_eq!(
            code(&out),
            Some(want),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(w.member(name).queued(), 0, "{name}'s report was delivered");
    }
    let lines = w.report("alpha", &[]);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for l in &lines {
        assert_eq!(l["schema"], "tenet.report.member/1");
        assert_eq!(l["serial"], 1);
    }
    let gamma = by_member(&lines, "gamma");
    assert_eq!(gamma["failed"], 1);
    assert_eq!(gamma["exit_code"], 1);
    assert_eq!(gamma["failures"][0]["promise"], "gamma-fails");
    assert_eq!(by_member(&lines, "alpha")["failed"], 0);
    assert_eq!(by_member(&lines, "alpha")["repaired"], 1);

    // /metrics: each member's last report age and failures.
    let metrics = w.metrics("alpha");
    for line in [
        "tenet_policyd_member_failed_promises{member=\"gamma\"} 1",
        "tenet_policyd_member_failed_promises{member=\"beta\"} 0",
        "tenet_policyd_reports_stored_total 3",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    let age: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("tenet_policyd_member_last_report_age_seconds{member=\"alpha\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no report age for alpha in\n{metrics}"));
    assert!(age < 60, "{age}");

    // The master goes away: alpha's run cannot report and queues it.
    ok(
        "tenet-policyd",
        &[
            "demote",
            "--config",
            s(&w.member("alpha").dir.join("policyd.toml")),
        ],
    );
    let out = w.run_agent("alpha");
    assert_eq!(
        code(&out),
        Some(10),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        w.member("alpha").queued(),
        1,
        "the undelivered report is queued"
    );

    // Failover: beta serves the same bundle with the same database path.
    let master = w.member("beta").promote(&bundle);
    w.write_agent_configs(&master);
    let before = w.report("beta", &[]);
    assert_eq!(before.len(), 3, "the new master shows the same history");
    assert_eq!(
        by_member(&before, "gamma")["failures"][0]["promise"],
        "gamma-fails"
    );
    for name in ["alpha", "beta", "gamma"] {
        w.run_agent(name);
        assert_eq!(w.member(name).queued(), 0, "{name}'s queue was sent");
    }
    // A failover event reports too (no plans here: nothing runs, and it says so).
    let event = run(
        "tenet-agent",
        &[
            "event",
            "node-down",
            "alpha",
            "--id",
            "e1",
            "--config",
            s(&w.member("gamma").dir.join("agent.toml")),
        ],
    );
    assert_eq!(
        code(&event),
        Some(0),
        "{}",
        String::from_utf8_lossy(&event.stderr)
    );
    assert_eq!(w.member("gamma").queued(), 0, "the event's report was sent");
    let gamma = w.report("beta", &["--member", "gamma"]);
    assert_eq!(gamma[0]["kind"], "event", "{gamma:#?}");
    assert_eq!(gamma[0]["serial"], 1, "{gamma:#?}");
    let alpha = w.report("beta", &["--member", "alpha"]);
    assert_eq!(
        alpha.len(),
        3,
        "two runs through alpha, one through beta: {alpha:#?}"
    );
    assert!(alpha.iter().all(|l| l["schema"] == "tenet.report.run/1"));
    assert_eq!(alpha[1]["exit_code"], 10, "the queued report arrived");
    let drift = w.report("beta", &["--drift"]);
    assert!(
        drift
            .iter()
            .all(|l| l["repaired"].as_u64().unwrap_or(0) > 0),
        "{drift:#?}"
    );
    assert_eq!(
        drift.len(),
        3,
        "each member repaired once, on its first run"
    );
    drop(w.member_mut("alpha").policyd.take());
}

#[test]
fn bad_reports_are_refused_and_nothing_is_stored() {
    let w = World::new(
        &["alpha", "beta", "gamma"],
        "burst = 5\nper_minute = 1\nmax_body = 65536\n",
    );
    let bundle = w.sign(1, &[]);
    let master = w.member("alpha").promote(&bundle);

    // Not enrolled: the handshake refuses the key; nothing reaches HTTP.
    let refused = w.client("outsider", &master).and_then(|mut c| {
        c.post("/v1/report", report_body("alpha", 1, 1, 0, "").as_bytes())
            .map_err(|e| e.to_string())
    });
    assert!(
        refused.is_err(),
        "an unenrolled key is refused: {refused:?}"
    );

    let mut beta = w.client("beta", &master).expect("beta connects");
    let status = |c: &mut ReportClient, body: &[u8]| c.post("/v1/report", body).expect("answer");
    // Malformed, another member's, oversized: each refused, none counted.
    let a = status(&mut beta, b"{\"schema\":\"tenet.agent.report/1\"");
    assert_eq!(a.status, 400, "{a:?}");
    let a = status(&mut beta, report_body("alpha", 2, 1, 0, "").as_bytes());
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.body.contains("member beta"), "{a:?}");
    let big = report_body("beta", 3, 1, 2000, &"x".repeat(100));
    assert!(big.len() > 65536);
    let a = status(&mut beta, big.as_bytes());
    assert_eq!(a.status, 413, "{a:?}");

    // A flood from beta: the burst passes, the rest is 429, gamma is not affected.
    let mut gamma = w.client("gamma", &master).expect("gamma connects");
    let mut stored = 0;
    let mut limited = 0;
    for i in 0..12 {
        let beta = w.client("beta", &master).expect("beta connects");
        let mut beta = beta;
        let a = status(&mut beta, report_body("beta", 100 + i, 1, 0, "").as_bytes());
        match a.status {
            200 => stored += 1,
            429 => limited += 1,
            other => panic!("status {other}: {a:?}"),
        }
    }
    // The three refusals above used three of the five, so two (or three, if a token
    // came back) pass.
    assert!((2..=3).contains(&stored), "{stored} stored");
    assert_eq!(stored + limited, 12);
    let a = status(&mut gamma, report_body("gamma", 200, 1, 0, "").as_bytes());
    assert_eq!(a.status, 200, "gamma is not limited by beta's flood: {a:?}");

    let lines = w.report("alpha", &[]);
    let names: BTreeSet<&str> = lines.iter().filter_map(|l| l["member"].as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["beta", "gamma"]),
        "nothing stored for alpha"
    );
    let beta_runs = w.report("alpha", &["--member", "beta", "--limit", "100"]);
    assert_eq!(
        beta_runs.len(),
        stored,
        "only the accepted reports are stored"
    );

    // Revoked: a newer bundle without gamma; its open connection is refused with 403,
    // and a new one at the handshake.
    ok(
        "tenet-keys",
        &["revoke", s(&w.deploy()), "--member", "gamma"],
    );
    let newer = w.sign(2, &[]);
    w.member("alpha").promote(&newer);
    let a = status(&mut gamma, report_body("gamma", 201, 2, 0, "").as_bytes());
    assert_eq!(a.status, 403, "{a:?}");
    assert!(
        w.client("gamma", &master)
            .and_then(|mut c| c
                .post("/v1/report", report_body("gamma", 202, 2, 0, "").as_bytes())
                .map_err(|e| e.to_string()))
            .is_err()
    );
    let gamma_runs = w.report("alpha", &["--member", "gamma"]);
    assert_eq!(gamma_runs.len(), 1, "{gamma_runs:#?}");
}

#[test]
fn an_acknowledged_report_survives_kill_9() {
    let mut w = World::new(&["alpha", "beta"], "burst = 100000\nper_minute = 100000\n");
    let bundle = w.sign(1, &[]);
    let master = w.member("alpha").promote(&bundle);
    let key = w.base.join("members/beta/node/localhost.key");
    let config = tls_config(&key, &w.root_file()).expect("tls config");
    let acked = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4u64)
        .map(|t| {
            let (config, master, acked, stop) =
                (config.clone(), master.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let Ok(mut c) = ReportClient::connect(config, &master) else {
                    return;
                };
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let started = 1_000_000 + t * 1_000_000 + i;
                    i += 1;
                    match c.post(
                        "/v1/report",
                        report_body("beta", started, 1, 1, "x").as_bytes(),
                    ) {
                        Ok(a) if a.status == 200 => {
                            acked.lock().expect("lock").push(started);
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    wait_for("reports to be acknowledged", DEADLINE, || {
        (acked.lock().expect("lock").len() >= 200).then_some(())
    });
    let pid = w.member("alpha").policyd().pid();
    // SIGKILL while the senders are still sending.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    for s in senders {
        let _ = s.join();
    }
    stop.store(true, Ordering::Relaxed);
    let acked = acked.lock().expect("lock").clone();
    let alpha = w.member_mut("alpha");
    if let Some(mut p) = alpha.policyd.take() {
        p.kill();
    }
    alpha.start();
    w.member("alpha").promote(&bundle);
    let runs = w.report("alpha", &["--member", "beta", "--limit", "1000000"]);
    let stored: BTreeSet<String> = runs
        .iter()
        .filter_map(|l| l["started"].as_str().map(str::to_string))
        .collect();
    for started in &acked {
        let t = tenet_keys::Time::from_unix(*started)
            .expect("time")
            .to_string();
        assert!(
            stored.contains(&t),
            "report {started} was acknowledged but is not stored"
        );
    }
    assert!(runs.len() >= acked.len());
}

/// The DOM of `url` after its scripts ran, from a real headless Chromium
/// (`/usr/bin/chromium`, installed by `.ci/run`); killed by PID past the deadline.
fn browser_dom(url: &str) -> String {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.is_file(),
        "/usr/bin/chromium is missing: install the chromium package (.ci/run does)"
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            // The tests may run as root, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--user-data-dir={}", s(profile.path())),
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > DEADLINE * 2 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {url} in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium {url}: {status}");
    reader.join().expect("reader")
}

/// The parts of `dom` that start with `open` (an element's opening text), each up to
/// its line's next `</li>` or `</tr>`.
fn elements<'a>(dom: &'a str, open: &str) -> Vec<&'a str> {
    dom.match_indices(open)
        .map(|(at, _)| {
            let rest = &dom[at..];
            let end = ["</li>", "</tr>"]
                .iter()
                .filter_map(|e| rest.find(e))
                .min()
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn the_page_shows_a_failing_promise_within_one_run_in_a_real_browser() {
    let w = World::new(&["alpha", "beta", "gamma"], "");
    let bundle = w.sign(1, &[]);
    let alpha = w.member("alpha");
    let master = alpha.promote(&bundle);
    w.write_agent_configs(&master);
    let page = alpha
        .policyd()
        .status()
        .lines()
        .find_map(|l| l.strip_prefix("page: "))
        .expect("the page's address in status")
        .trim()
        .to_string();
    for name in ["alpha", "beta", "gamma"] {
        assert_eq!(code(&w.run_agent(name)), Some(0), "{name}");
    }
    let dom = browser_dom(&format!("http://{page}/"));
    assert!(
        dom.contains("data-script=\"done\""),
        "the script ran:\n{dom}"
    );
    let rows = elements(&dom, "<tr class=\"member");
    assert_eq!(rows.len(), 3, "{dom}");
    assert!(rows.iter().all(|r| r.contains("member ok")), "{rows:#?}");
    // The script turned each time into an age.
    assert!(rows.iter().all(|r| r.contains("s ago</td>")), "{rows:#?}");
    assert!(elements(&dom, "<li class=\"failure\"").is_empty(), "{dom}");

    // Serial 2 makes a promise fail on beta: one run of beta later the page shows it.
    let newer = w.sign(2, &["beta"]);
    alpha.promote(&newer);
    assert_eq!(code(&w.run_agent("beta")), Some(1));
    let dom = browser_dom(&format!("http://{page}/"));
    let failures = elements(&dom, "<li class=\"failure\"");
    assert_eq!(failures.len(), 1, "{dom}");
    assert!(failures[0].contains("data-member=\"beta\""), "{failures:?}");
    assert!(failures[0].contains("beta-fails"), "{failures:?}");
    assert!(
        failures[0].contains("class=\"reason\""),
        "its message: {failures:?}"
    );
    let beta = elements(&dom, "<tr class=\"member failing\" data-member=\"beta\"");
    assert_eq!(beta.len(), 1, "{dom}");
    assert!(beta[0].contains("<td class=\"serial\">2</td>"), "{beta:?}");

    // beta's history: two reports, charted.
    let dom = browser_dom(&format!("http://{page}/member/beta"));
    assert!(dom.contains("data-script=\"done\""), "{dom}");
    assert_eq!(elements(&dom, "<tr class=\"report\"").len(), 2, "{dom}");
    assert_eq!(dom.matches("<circle class=\"point\"").count(), 2, "{dom}");
    assert!(dom.contains("<li class=\"outcome failure\">"), "{dom}");
}
