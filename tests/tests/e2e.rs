//! End-to-end: three members converge from the shipped example, each in its own
//! sandbox, as separate processes running at the same time; hand-made drift on one
//! member is repaired by its next run and the others are untouched.
#![expect(
    clippy::disallowed_methods,
    reason = "the test spawns the real binary and edits a member's file by hand"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use tenet_tests::{Member, Run, binary, json_lines};

fn example() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/examples/dce-cluster"
    ))
}

fn spawn(m: &Member) -> Child {
    let mut cmd = Command::new(binary("tenet-agent"));
    cmd.arg("apply")
        .arg(example())
        .arg("--root")
        .arg(m.root.path())
        .arg("--json");
    for f in &m.facts {
        cmd.arg("--fact").arg(f);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tenet-agent starts")
}

fn finish(child: Child) -> Run {
    let output = child.wait_with_output().expect("tenet-agent finishes");
    tenet_tests::schema::validate("tenet-agent apply --json", &output.stdout);
    let events = json_lines(&output.stdout);
    Run { output, events }
}

fn run_all(members: &[Member]) -> Vec<Run> {
    let children: Vec<Child> = members.iter().map(spawn).collect();
    children.into_iter().map(finish).collect()
}

fn members() -> Vec<Member> {
    vec![
        Member::new(
            "alpha",
            &["hostname=alpha", "addresses=9.3.240.1,9.3.240.66,9.3.240.2"],
        ),
        Member::new(
            "beta",
            &[
                "hostname=beta.example.com",
                "addresses=9.3.240.3,9.3.240.67",
            ],
        ),
        Member::new(
            "gamma",
            &[
                "hostname=gamma",
                "addresses=9.3.240.4,9.3.240.68,9.3.240.10",
            ],
        ),
    ]
}

#[test]
fn three_members_converge_then_drift_is_repaired() {
    let members = members();
    for m in &members {
        std::fs::create_dir_all(m.path("/etc")).unwrap();
        std::fs::write(m.path("/etc/services"), "ssh\t22/tcp\n").unwrap();
    }

    let first = run_all(&members);
    for (m, r) in members.iter().zip(&first) {
        assert_eq!(
            r.code(),
            Some(0),
            "{}: {}",
            m.name,
            String::from_utf8_lossy(&r.output.stderr)
        );
        assert_eq!(r.summary()["member"], m.name.as_str());
        assert!(r.count("repaired") > 0, "{}: {:?}", m.name, r.summary());
        assert_eq!(r.count("failed") + r.count("blocked"), 0);
    }
    // Each member's own addresses, minus every service address (9.3.240.2, 9.3.240.10).
    let env = |m: &Member| std::fs::read_to_string(m.path("/etc/environment")).unwrap();
    assert_eq!(
        env(&members[0]),
        "RPC_UNSUPPORTED_NETADDRS=9.3.240.1:9.3.240.66\n"
    );
    assert_eq!(
        env(&members[1]),
        "RPC_UNSUPPORTED_NETADDRS=9.3.240.3:9.3.240.67\n"
    );
    assert_eq!(
        env(&members[2]),
        "RPC_UNSUPPORTED_NETADDRS=9.3.240.4:9.3.240.68\n"
    );
    // The DCE motd goes to the package's members only.
    assert!(members[0].path("/etc/motd.d/tenet-dce").is_file());
    assert!(members[1].path("/etc/motd.d/tenet-dce").is_file());
    assert!(!members[2].path("/etc/motd.d/tenet-dce").exists());

    let second = run_all(&members);
    for (m, r) in members.iter().zip(&second) {
        assert_eq!(r.code(), Some(0), "{}", m.name);
        assert_eq!(
            r.count("repaired"),
            0,
            "{}: a second run changed something: {:?}",
            m.name,
            r.events
        );
    }

    // Drift: an administrator removes the kerberos5 line on beta by hand.
    std::fs::write(members[1].path("/etc/services"), "ssh\t22/tcp\n").unwrap();
    let third = run_all(&members);
    assert_eq!(third[1].count("repaired"), 1, "{:?}", third[1].events);
    let repaired: Vec<_> = third[1]
        .events
        .iter()
        .filter(|e| e["status"] == "repaired")
        .collect();
    assert_eq!(repaired[0]["promise"], "line");
    assert_eq!(
        std::fs::read_to_string(members[1].path("/etc/services")).unwrap(),
        "ssh\t22/tcp\nkerberos5\t88/udp\t\tkdc\n"
    );
    assert_eq!(third[0].count("repaired") + third[2].count("repaired"), 0);
}
