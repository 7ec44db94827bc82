//! The DCE package on the cluster: group `dce` (its own VIP + ocf:tenet:package
//! package=dce) runs the DCE plans of `tests/ha/policy/plans.toml` from the signed
//! bundle each agent cached; `tests/ha/fake-dce` logs each program's run in the node's
//! sandbox (`var/log/dce.log`: `NAME NODE NS ep=.. creds=.. rc=..`).

use std::time::{Duration, Instant};

use serde_json::Value;
use tenet_tests::ha::{text, wait_for};
use tenet_tests::json_lines;

use super::{Cluster, NODES, field};

/// One line of a node's dce.log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ran {
    name: String,
    node: String,
    ns: u128,
    rest: String,
}

impl Cluster {
    fn dce_log(&self, n: u32) -> Vec<Ran> {
        std::fs::read_to_string(self.node(n).join("sandbox/var/log/dce.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut w = l.splitn(4, ' ');
                Ran {
                    name: w.next().unwrap_or_default().to_string(),
                    node: w.next().unwrap_or_default().to_string(),
                    ns: w.next().and_then(|t| t.parse().ok()).unwrap_or_default(),
                    rest: w.next().unwrap_or_default().to_string(),
                }
            })
            .collect()
    }

    /// Runs `cluster.sh ARGS` and asserts it succeeded; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.sh(args);
        assert!(out.status.success(), "cluster.sh {args:?}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The CIB status section, seen from node N.
    fn cib_status(&self, n: u32) -> String {
        self.ok(&["exec", &n.to_string(), "cibadmin", "-Q", "-o", "status"])
    }

    fn dce_pkg_started_on(&self, via: u32) -> Option<u32> {
        let x = self.ok(&["exec", &via.to_string(), "crm_mon", "-1", "-X"]);
        let started = x.lines().any(|l| {
            l.contains("resource id=\"dce-pkg\"")
                && l.contains("role=\"Started\"")
                && l.contains("active=\"true\"")
        });
        if !started {
            return None;
        }
        let out = self.sh(&["dce-node"]);
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    fn flag(&self, n: u32, kind: &str, name: &str) {
        let d = self.node(n).join(format!("sandbox/etc/dce-{kind}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), "").unwrap();
    }
}

/// The names of the programs that ran on node N since `since` (ns).
fn names(log: &[Ran], since: u128) -> Vec<&str> {
    log.iter()
        .filter(|r| r.ns >= since)
        .map(|r| r.name.as_str())
        .collect()
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The id of the newest package-start:dce journal in node N's agent state.
fn last_start_id(c: &Cluster, n: u32) -> String {
    let dir = c.node(n).join("agent-state/events");
    let mut found: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let e = e.ok()?;
            let p = e.path();
            let first = std::fs::read_to_string(&p).ok()?;
            let begin: Value = serde_json::from_str(first.lines().next()?).ok()?;
            (begin["event"] == "package-start:dce").then(|| {
                (
                    e.metadata().unwrap().modified().unwrap(),
                    p.file_stem().unwrap().to_string_lossy().into_owned(),
                )
            })
        })
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no package-start:dce journal in {}", dir.display()))
        .1
}

pub(super) fn dce_plans(c: &Cluster) {
    let start = Instant::now();
    let first: u32 = c.ok(&["dce-up"]).trim().parse().unwrap();
    // The first start ran the plan where the group started, and only there.
    let log = c.dce_log(first);
    assert_eq!(names(&log, 0), ["start.dce", "start.dfs"], "{log:?}");
    for n in NODES.into_iter().filter(|&n| n != first) {
        assert!(c.dce_log(n).is_empty(), "node{n}: {:?}", c.dce_log(n));
        assert!(
            c.node(n)
                .join("sandbox/opt/dcelocal/var/dced/Ep.db")
                .exists(),
            "node{n} still has its stale Ep.db"
        );
    }

    // Takeover after a crash of the dce node.
    let t0 = now_ns();
    let out = c.ok(&["dce-failover", "crash"]);
    let result = out
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT: {out}"))
        .to_string();
    println!("mode=dce-crash {}", result.trim_start_matches("RESULT "));
    let to: u32 = field(&result, "to")
        .trim_start_matches("node")
        .parse()
        .unwrap();
    assert_ne!(to, first);
    let log = c.dce_log(to);
    // In order: the stale files were gone when start.dce ran; start.dfs after start.dce.
    assert_eq!(names(&log, t0), ["start.dce", "start.dfs"], "{log:?}");
    assert!(log[0].rest.starts_with("ep=absent creds=0 rc=0"), "{log:?}");
    assert_eq!(log[0].node, format!("node{to}"));
    assert!(log[0].ns < log[1].ns);
    let sandbox = c.node(to).join("sandbox/opt/dcelocal/var");
    assert!(!sandbox.join("dced/Ep.db").exists());
    assert_eq!(
        std::fs::read_dir(sandbox.join("security/creds"))
            .unwrap()
            .count(),
        0
    );

    // Exactly once: the cluster re-probes dce-pkg on every node; nothing runs again.
    c.ok(&["dce-refresh"]);
    assert_eq!(c.dce_pkg_started_on(to).unwrap_or(0), to);
    assert_eq!(c.dce_log(to), log, "a probe ran the plan again");
    // The same event id by hand: the earlier result, nothing run.
    let id = last_start_id(c, to);
    let bin = c.bin.join("tenet-agent");
    let out = c.sh(&[
        "exec",
        &to.to_string(),
        bin.to_str().unwrap(),
        "event",
        "package-start",
        "dce",
        "--id",
        &id,
        "--config",
        "/run/tenet/node/agent.toml",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = json_lines(&out.stdout)
        .into_iter()
        .rfind(|e| e["type"] == "event")
        .unwrap_or_else(|| panic!("no event line: {}", text(&out)));
    assert_eq!(summary["replay"], true, "{summary}");
    assert_eq!(summary["ok"], 3, "{summary}");
    assert_eq!(c.dce_log(to), log, "the replay ran something");

    // A failing step stops the plan: start.dce fails on the last node up; the group is
    // moved there, fails to start, and Pacemaker moves it elsewhere, where it runs.
    let bad = NODES.into_iter().find(|&n| n != to && n != first).unwrap();
    c.flag(bad, "fail", "start.dce");
    for n in [to, bad] {
        c.ok(&["dce-seed", &n.to_string()]);
    }
    let t1 = now_ns();
    c.ok(&[
        "exec",
        &to.to_string(),
        "crm_resource",
        "--move",
        "-r",
        "dce",
        "-N",
        &format!("node{bad}"),
    ]);
    let failure = wait_for(
        "the dce-pkg start on the failing node to be recorded",
        Duration::from_secs(60),
        || {
            c.cib_status(to)
                .lines()
                .flat_map(|l| l.split("<lrm_rsc_op "))
                .find(|op| {
                    op.contains("id=\"dce-pkg_last_failure_0\"")
                        && op.contains("operation=\"start\"")
                        && op.contains(&format!("on_node=\"node{bad}\""))
                })
                .map(str::to_string)
        },
    );
    assert!(failure.contains("rc-code=\"1\""), "{failure}");
    assert!(
        failure.contains(
            "exit-reason=\"package-start dce failed at step 2 `start.dce` of plan dce-start: exited with status 3"
        ),
        "{failure}"
    );
    let now_on = wait_for(
        "the dce group to run again after the failed start",
        Duration::from_secs(60),
        || {
            c.dce_pkg_started_on(to)
                .filter(|&n| n != bad && names(&c.dce_log(n), t1).ends_with(&["start.dfs"]))
        },
    );
    let bad_log = c.dce_log(bad);
    // On the failing node: start.dce ran and failed, start.dfs never ran, and the
    // cluster's stop cleaned up with the stop plan.
    assert_eq!(
        names(&bad_log, t1),
        ["start.dce", "stop.dfs", "stop.dce"],
        "{bad_log:?}"
    );
    assert!(bad_log[0].rest.ends_with("rc=3"), "{bad_log:?}");
    let good = c.dce_log(now_on);
    let after: Vec<&Ran> = good.iter().filter(|r| r.ns >= t1).collect();
    let starts: Vec<&str> = after
        .iter()
        .filter(|r| r.name.starts_with("start."))
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(starts, ["start.dce", "start.dfs"], "{good:?}");
    let dce = after.iter().find(|r| r.name == "start.dce").unwrap();
    assert!(dce.rest.starts_with("ep=absent creds=0 rc=0"), "{good:?}");
    let mon = c.ok(&["exec", &to.to_string(), "crm_mon", "-1", "-r", "-f"]);
    assert!(
        mon.contains("dce-pkg start on") && mon.contains("`start.dce` of plan dce-start"),
        "crm_mon shows the failed step:\n{mon}"
    );
    c.ok(&[
        "exec",
        &to.to_string(),
        "crm_resource",
        "--clear",
        "-r",
        "dce",
    ]);
    println!(
        "dce: takeover node{first}->node{to}, failing start on node{bad}, then running on node{now_on}; {} ms",
        start.elapsed().as_millis()
    );
}
