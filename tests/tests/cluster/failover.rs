//! The cluster test (a `cfg(test)` module, so helpers get the tests' `unwrap` allowance).
#![expect(
    clippy::disallowed_methods,
    reason = "the test drives the cluster harness and the agents as processes"
)]
#![expect(clippy::print_stdout, reason = "the test prints its measured figures")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tenet_tests::ha::{Pids, ha_required, have_tools, policyd_pid, skip, text, wait_for};
use tenet_tests::{binary, json_lines};

#[path = "dce.rs"]
mod dce;
#[path = "grow.rs"]
mod grow;

const NODES: [u32; 3] = [1, 2, 3];

/// A cluster brought up by `tests/ha/cluster.sh up`; `down` when dropped, whatever
/// happened.
pub(crate) struct Cluster {
    pfx: String,
    state: PathBuf,
    bin: PathBuf,
    net: String,
}

impl Cluster {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ha/cluster.sh")
    }

    fn command(pfx: &str, state: &Path, bin: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(Self::script())
            .args(args)
            .env("PFX", pfx)
            .env("STATE", state)
            .env("TENET_BIN", bin)
            .stdin(Stdio::null());
        c
    }

    fn up() -> Cluster {
        let pfx = format!("tn{}", std::process::id());
        let state = PathBuf::from(format!("/var/tmp/tenet-ha-{pfx}"));
        let bin = binary("tenet-policyd").parent().unwrap().to_path_buf();
        let mut cluster = Cluster {
            pfx,
            state,
            bin,
            net: String::new(),
        };
        let start = Instant::now();
        let out = cluster.sh(&["up"]);
        assert!(out.status.success(), "cluster.sh up:\n{}", text(&out));
        // The nodes run the copies `up` made (their private /tmp may hide a checkout).
        cluster.bin = cluster.state.join("bin");
        println!(
            "cluster {} up in {} ms",
            cluster.pfx,
            start.elapsed().as_millis()
        );
        let env = String::from_utf8_lossy(&cluster.sh(&["env"]).stdout).into_owned();
        cluster.net = env
            .split_whitespace()
            .find_map(|w| w.strip_prefix("NET="))
            .expect("NET= in cluster.sh env")
            .to_string();
        cluster
    }

    fn sh(&self, args: &[&str]) -> Output {
        Self::command(&self.pfx, &self.state, &self.bin, args)
            .output()
            .unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        Self::command(&self.pfx, &self.state, &self.bin, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn node(&self, n: u32) -> PathBuf {
        self.state.join(format!("n{n}"))
    }

    fn active(&self) -> u32 {
        let out = self.sh(&["active"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no active node: {}", text(&out)))
    }

    /// The serial node N's policyd serves, if any.
    fn serving(&self, n: u32) -> Option<u64> {
        let out = Command::new(self.bin.join("tenet-policyd"))
            .args(["status", "--config"])
            .arg(self.node(n).join("policyd.toml"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("serial: ")?.parse().ok())
    }

    fn publish(&self, serial: u64) {
        let out = self.sh(&["publish", &serial.to_string()]);
        assert!(out.status.success(), "publish {serial}: {}", text(&out));
        let a = self.active();
        wait_for(
            &format!("node{a} to serve serial {serial}"),
            Duration::from_secs(20),
            || (self.serving(a) == Some(serial)).then_some(()),
        );
    }

    /// One `tenet-agent run` in node N.
    fn agent(&self, n: u32) -> AgentRun {
        let output = self.sh(&["agent", &n.to_string()]);
        let events = json_lines(&output.stdout);
        let unreachable = events.iter().any(|e| {
            e["type"] == "warning"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("master unreachable"))
        });
        let serial = std::fs::read_link(self.node(n).join("agent-state/current"))
            .ok()
            .and_then(|t| t.file_name()?.to_str()?.parse().ok());
        AgentRun {
            node: n,
            output,
            events,
            unreachable,
            serial,
            sandbox: self.sandbox(n),
        }
    }

    /// Every file of node N's sandbox root and its content.
    /// Every file of node `n`'s sandbox root, except the model of its kernel state
    /// (`proc/`: the boot id changes when a crashed node comes back).
    fn sandbox(&self, n: u32) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        let root = self.node(n).join("sandbox");
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p == root.join("proc") {
                    continue;
                }
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    let rel = p.strip_prefix(&root).unwrap().to_path_buf();
                    files.insert(rel, std::fs::read(&p).unwrap_or_default());
                }
            }
        }
        files
    }

    fn set_master(&self, n: u32, master: &str) {
        let out = self.sh(&["agent-master", &n.to_string(), master]);
        assert!(out.status.success(), "{}", text(&out));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = self.sh(&["down"]);
        if !out.status.success() {
            println!("cluster.sh down failed:\n{}", text(&out));
        }
    }
}

#[derive(Debug)]
struct AgentRun {
    node: u32,
    output: Output,
    events: Vec<Value>,
    unreachable: bool,
    serial: Option<u64>,
    sandbox: BTreeMap<PathBuf, Vec<u8>>,
}

impl AgentRun {
    fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    fn describe(&self) -> String {
        format!(
            "node{} exit {:?} serial {:?} unreachable {}: {}\n{:?}",
            self.node,
            self.code(),
            self.serial,
            self.unreachable,
            String::from_utf8_lossy(&self.output.stderr),
            self.events
        )
    }

    /// A run that converged to `serial` and left `serial N` in the sandbox (exit 10
    /// when it found the master unreachable and converged from its cache).
    fn assert_on(&self, serial: u64) {
        let code = if self.unreachable { 10 } else { 0 };
        assert_eq!(self.code(), Some(code), "{}", self.describe());
        assert_eq!(self.serial, Some(serial), "{}", self.describe());
        assert_eq!(
            self.sandbox
                .get(Path::new("etc/tenet-serial"))
                .map(Vec::as_slice),
            Some(format!("serial {serial}\n").as_bytes()),
            "{}",
            self.describe()
        );
    }
}

/// `key=value` of a RESULT line.
fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key}= missing in {line}"))
        .to_string()
}

/// One failover: the fault, agent runs during the gap, the takeover; then every agent
/// fetches the same serial from the new master by the same name.
fn failover(c: &Cluster, mode: &str, serial: u64) -> u32 {
    let from = c.active();
    let before: BTreeMap<u32, _> = NODES.iter().map(|&n| (n, c.sandbox(n))).collect();
    let mut waiting = c.spawn(&["failover", mode]);
    // The gap: agents on the nodes that are still up run as usual.
    let mut gap_runs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while waiting.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{mode}: no takeover in 90 s");
        for n in NODES {
            if mode == "crash" && n == from {
                continue;
            }
            gap_runs.push(c.agent(n));
        }
    }
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cluster.sh failover {mode}:\n{}",
        text(&out)
    );
    let result = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {}", text(&out)))
        .to_string();
    let to: u32 = field(&result, "to")
        .trim_start_matches("node")
        .parse()
        .unwrap();
    assert_ne!(to, from, "{mode}: the package did not move: {result}");
    println!("mode={mode} {}", result.trim_start_matches("RESULT "));

    // During the gap nobody lost configuration: a run either found the master
    // unreachable and converged from its cache, or reached a master serving `serial`.
    let unreachable = gap_runs.iter().filter(|r| r.unreachable).count();
    for r in &gap_runs {
        r.assert_on(serial);
        assert_eq!(
            r.sandbox,
            before[&r.node],
            "{mode}: a run during the gap changed the sandbox: {}",
            r.describe()
        );
    }
    println!(
        "mode={mode} gap_runs={} unreachable_runs={unreachable}",
        gap_runs.len()
    );
    if mode == "crash" {
        assert!(
            unreachable > 0,
            "a crash leaves seconds without a master, yet no run during them reported it: {gap_runs:?}"
        );
    }

    // Afterwards: every agent that is up fetches the same serial from the new master,
    // by the same name, and nothing changes.
    for n in NODES {
        if mode == "crash" && n == from {
            continue;
        }
        let r = c.agent(n);
        r.assert_on(serial);
        assert!(
            !r.unreachable,
            "{mode}: after the takeover: {}",
            r.describe()
        );
        assert_eq!(r.sandbox, before[&n], "{mode}: {}", r.describe());
    }
    assert_eq!(c.serving(to), Some(serial));

    let out = c.sh(&["recover", &from.to_string(), mode]);
    assert!(out.status.success(), "recover {mode}: {}", text(&out));
    if mode == "crash" {
        // The node is back (its disk survived): its agent is still on `serial`.
        let r = c.agent(from);
        r.assert_on(serial);
        assert!(!r.unreachable, "{}", r.describe());
        assert_eq!(r.sandbox, before[&from]);
    }
    to
}

/// Two masters at once: the package's policyd on the VIP and a second policyd promoted
/// by hand on another node with a higher serial. Members see both in turn and all end
/// on the highest serial; nobody goes back.
fn split_brain(c: &Cluster, low: u64, high: u64) {
    let active = c.active();
    let rogue_node = NODES.into_iter().find(|&n| n != active).unwrap();
    let dir = c.node(rogue_node);
    let text_cfg = std::fs::read_to_string(dir.join("policyd.toml"))
        .unwrap()
        .replace("0.0.0.0:8740", "0.0.0.0:8750")
        .replace("0.0.0.0:8741", "0.0.0.0:8751")
        .replace("127.0.0.1:8742", "off")
        .replace("\"policyd-state\"", "\"rogue-state\"");
    // The node's own policyd holds the status page's loopback port.
    assert!(!text_cfg.contains("[reports]"), "{text_cfg}");
    let text_cfg = format!("{text_cfg}\n[reports]\npage = \"off\"\n");
    std::fs::write(dir.join("rogue.toml"), text_cfg).unwrap();
    let bundle = c.state.join("rogue-bundle");
    let out = c.sh(&["publish", &high.to_string(), bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let rogue_cfg = dir.join("rogue.toml");
    let mut rogue = Cluster::command(
        &c.pfx,
        &c.state,
        &c.bin,
        &[
            "exec",
            &rogue_node.to_string(),
            c.bin.join("tenet-policyd").to_str().unwrap(),
            "serve",
            "--config",
            "/run/tenet/node/rogue.toml",
        ],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.join("rogue.log")).unwrap())
    .spawn()
    .unwrap();
    let mut guard = Pids::default();
    guard.push(rogue.id());
    let pid = wait_for("the second policyd", Duration::from_secs(20), || {
        if let Ok(Some(exit)) = rogue.try_wait() {
            panic!("the second policyd exited ({exit})");
        }
        policyd_pid(&rogue_cfg)
    });
    guard.push(pid);
    let promote = Command::new(c.bin.join("tenet-policyd"))
        .args(["promote", "--config"])
        .arg(&rogue_cfg)
        .arg("--bundle")
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(promote.status.success(), "promote: {}", text(&promote));
    let rogue_master = format!("{}.{}:8751", c.net, 10 + rogue_node);
    println!(
        "split brain: node{active} serves serial {low} on the VIP, node{rogue_node} serial {high} on {rogue_master}"
    );

    // Round 1: alpha and beta ask the second master, gamma the VIP.
    c.set_master(1, &rogue_master);
    c.set_master(2, &rogue_master);
    c.agent(1).assert_on(high);
    c.agent(2).assert_on(high);
    c.agent(3).assert_on(low);
    // Round 2: swapped. The older serial does not take anyone back.
    c.set_master(1, "tenet-master:8741");
    c.set_master(2, "tenet-master:8741");
    c.set_master(3, &rogue_master);
    for n in NODES {
        let r = c.agent(n);
        assert_eq!(r.serial, Some(high), "{}", r.describe());
        assert_eq!(
            r.sandbox
                .get(Path::new("etc/tenet-serial"))
                .map(Vec::as_slice),
            Some(format!("serial {high}\n").as_bytes()),
            "{}",
            r.describe()
        );
        assert!(
            matches!(r.code(), Some(0 | 4)),
            "a refused older bundle is reported, never applied: {}",
            r.describe()
        );
    }
    // Round 3: everyone on the VIP again: still the highest.
    c.set_master(3, "tenet-master:8741");
    for n in NODES {
        let r = c.agent(n);
        assert_eq!(r.serial, Some(high), "{}", r.describe());
    }
    drop(guard);
    let _ = rogue.wait();
}

#[test]
fn policyd_fails_over_on_a_real_pacemaker_cluster() {
    let name = "policyd_fails_over_on_a_real_pacemaker_cluster";
    if !have_tools(
        name,
        &[
            "pacemakerd",
            "corosync",
            "cibadmin",
            "crm_mon",
            "crm_attribute",
            "crm_resource",
            "ip",
            "nsenter",
            "unshare",
        ],
    ) {
        return;
    }
    if !Path::new("/usr/lib/ocf/resource.d/heartbeat/IPaddr2").is_file() {
        assert!(
            !ha_required(),
            "TENET_REQUIRE_HA=1 but resource-agents is missing"
        );
        skip(&format!("{name}: resource-agents (IPaddr2) not installed"));
        return;
    }
    let root = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        assert!(
            !ha_required(),
            "TENET_REQUIRE_HA=1 but the test is not root"
        );
        skip(&format!("{name}: needs root (network namespaces)"));
        return;
    }
    let started = Instant::now();
    let c = Cluster::up();

    // Serial 2 published on the package filesystem: the master picks it up, every
    // member converges to it.
    c.publish(2);
    for n in NODES {
        c.agent(n).assert_on(2);
    }

    for mode in ["crash", "standby", "app"] {
        failover(&c, mode, 2);
    }

    split_brain(&c, 2, 3);
    // The package's master moves everyone on with the next serial.
    c.publish(4);
    for n in NODES {
        c.agent(n).assert_on(4);
    }

    dce::dce_plans(&c);
    grow::fourth_member(&c, 4);
    drop(c);
    println!(
        "cluster test wall time {} ms",
        started.elapsed().as_millis()
    );
}
