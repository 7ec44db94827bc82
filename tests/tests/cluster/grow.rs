//! A fourth member: node4 joins the running Pacemaker cluster (a corosync nodelist
//! reload, no restart of the others), the membership alert proposes it, it joins tenet
//! with one command and one approval, receives the next serial, takes the policy server
//! over, and once revoked is refused.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tenet_tests::ha::{text, wait_for};

use super::{Cluster, NODES};

const ALL: [u32; 4] = [1, 2, 3, 4];

impl Cluster {
    /// `tenet-keys ARGS` as the administrator (on the host, with the deployment).
    fn keys(&self, args: &[&str]) -> Output {
        let out = Command::new(self.bin.join("tenet-keys"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "tenet-keys {args:?}: {}", text(&out));
        out
    }

    fn exec(&self, n: u32, args: &[&str]) -> Output {
        let mut all = vec!["exec".to_string(), n.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.sh(&all)
    }

    fn standby(&self, from: u32, node: u32, on: bool) {
        let name = format!("node{node}");
        let args: &[&str] = if on {
            &[
                "crm_attribute",
                "-t",
                "nodes",
                "-N",
                &name,
                "-n",
                "standby",
                "-v",
                "on",
            ]
        } else {
            &[
                "crm_attribute",
                "-t",
                "nodes",
                "-N",
                &name,
                "-n",
                "standby",
                "-D",
            ]
        };
        let out = self.exec(from, args);
        assert!(out.status.success(), "standby {name} {on}: {}", text(&out));
    }

    /// Waits until the policy server package runs on a node `pick` accepts and it
    /// serves; returns the node.
    fn wait_master(&self, what: &str, pick: impl Fn(u32) -> bool) -> u32 {
        wait_for(what, Duration::from_secs(60), || {
            let out = self.sh(&["active"]);
            let a: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            (pick(a) && self.serving(a).is_some()).then_some(a)
        })
    }

    /// `tenet-keys members --from pacemaker` on node N against the served bundle.
    fn members(&self, n: u32) -> Output {
        let keys = self.bin.join("tenet-keys");
        self.exec(
            n,
            &[
                keys.to_str().unwrap(),
                "members",
                "--from",
                "pacemaker",
                "--bundle",
                "/run/tenet/pkg/bundle",
                "--root",
                "/run/tenet/node/root.toml",
            ],
        )
    }
}

fn first_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Runs the scenario after serial `last`; returns the last serial it published.
pub(crate) fn fourth_member(c: &Cluster, last: u64) -> u64 {
    let started = Instant::now();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let deploy = s(&c.state.join("deploy"));
    // A node the DCE part crashed comes back first (node4 needs the others online).
    for n in NODES {
        if !c.node(n).join("holder.pid").exists() {
            let out = c.sh(&["recover", &n.to_string(), "crash"]);
            assert!(out.status.success(), "recover node{n}: {}", text(&out));
        }
    }
    // The DCE group stays where it is (node4 has no DCE sandbox): stopped for this part.
    let out = c.exec(
        1,
        &[
            "crm_resource",
            "-r",
            "dce",
            "--meta",
            "-p",
            "target-role",
            "-v",
            "Stopped",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the dce group to stop", Duration::from_secs(60), || {
        let out = c.exec(1, &["crm_mon", "-1", "-X"]);
        let x = String::from_utf8_lossy(&out.stdout);
        (!x.lines()
            .any(|l| l.contains("resource id=\"dce-pkg\"") && l.contains("active=\"true\"")))
        .then_some(())
    });

    // node4 joins the running cluster.
    let t0 = Instant::now();
    let out = c.sh(&["grow"]);
    assert!(out.status.success(), "cluster.sh grow: {}", text(&out));
    println!(
        "node4 joined the Pacemaker cluster in {} ms",
        t0.elapsed().as_millis()
    );

    // The membership alert (Pacemaker ran it on the node event) proposes node4.
    let members = c.state.join("pkg/members");
    let commands = wait_for(
        "the membership alert's proposal",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(members.join("commands.txt"))
                .ok()
                .filter(|t| t.contains("joined the cluster, not a member: node4"))
        },
    );
    assert!(
        commands.contains(&format!("tenet-keys join-token {deploy} --member node4")),
        "{commands}"
    );
    let proposal = std::fs::read_to_string(members.join("cluster.toml")).unwrap();
    assert!(
        proposal.contains("members = [\"alpha\", \"beta\", \"gamma\", \"node4\"]"),
        "{proposal}"
    );

    // The administrator: an admin key in root 2, carried by the next serial (the master
    // checks join tokens against the root its own agent verified last).
    c.keys(&["admin-key", &deploy, "ops", "--member", "*"]);
    c.keys(&["root-next", &deploy]);
    c.keys(&[
        "attest",
        &format!("{deploy}/root/2.root.toml"),
        "--key",
        &format!("{deploy}/keys/root-1.key"),
        "--deployment",
        &deploy,
    ]);
    let mut serial = last + 1;
    c.publish(serial);
    for n in NODES {
        c.agent(n).assert_on(serial);
    }
    // ... takes the proposal and gives node4's operator a token and the fingerprint.
    std::fs::copy(
        members.join("cluster.toml"),
        c.state.join("policy/cluster.toml"),
    )
    .unwrap();
    let token = first_line(&c.keys(&["join-token", &deploy, "--member", "node4"]));
    let fp = first_line(&c.keys(&["fingerprint", &format!("{deploy}/root/1.root.toml")]));

    // One command on the member, one approval.
    let agent = c.bin.join("tenet-agent");
    let out = c.exec(
        4,
        &[
            agent.to_str().unwrap(),
            "join",
            "tenet-master:8741",
            "--token",
            &token,
            "--trusted-root",
            "/run/tenet/node/root.toml",
            "--expect-fingerprint",
            &fp,
            "--key",
            "/run/tenet/node/node.key",
        ],
    );
    assert!(out.status.success(), "tenet-agent join: {}", text(&out));
    c.keys(&[
        "approve",
        &deploy,
        "node4",
        "--join-dir",
        &s(&c.state.join("pkg/join")),
    ]);

    // The next serial carries node4: it converges to it, and the membership follows.
    serial += 1;
    c.publish(serial);
    let out = c.sh(&["listener", "4"]);
    assert!(out.status.success(), "{}", text(&out));
    for n in ALL {
        c.agent(n).assert_on(serial);
    }
    let out = c.members(1);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("nothing to sign"), "{}", text(&out));

    // node4 takes the policy server over (the three others in standby); every member
    // gets the next serial from it.
    let t0 = Instant::now();
    for n in NODES {
        c.standby(4, n, true);
    }
    c.wait_master("the policy server on node4", |a| a == 4);
    println!(
        "node4 took the policy server over in {} ms",
        t0.elapsed().as_millis()
    );
    serial += 1;
    c.publish(serial);
    for n in ALL {
        c.agent(n).assert_on(serial);
    }
    // Back to the first three.
    for n in NODES {
        c.standby(4, n, false);
    }
    c.standby(1, 4, true);
    c.wait_master("the policy server off node4", |a| a != 4);
    c.standby(1, 4, false);

    // Revoked, node4 is refused by the master and keeps its last serial.
    c.keys(&["revoke", &deploy, "--member", "node4"]);
    serial += 1;
    c.publish(serial);
    for n in NODES {
        c.agent(n).assert_on(serial);
    }
    let run = c.agent(4);
    assert_eq!(run.code(), Some(10), "{}", run.describe());
    assert!(run.describe().contains("403"), "{}", run.describe());
    assert_eq!(run.serial, Some(serial - 1), "{}", run.describe());
    // The membership hook now says node4 has no enrolled key.
    let out = c.members(1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("a member with no enrolled key: node4"),
        "{}",
        text(&out)
    );
    println!(
        "fourth member scenario {} ms",
        started.elapsed().as_millis()
    );
    serial
}
