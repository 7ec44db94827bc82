//! The fleet benchmark's smoke test (`bench/fleet.sh` at a small size): 20 simulated
//! members, each with its own enrolled key and source address, against a real
//! `tenet-policyd serve`; every member fetches the first serial over the wire, a second
//! serial (one file changed) is promoted, and every member must hold it with no failed
//! poll.
#![expect(
    clippy::disallowed_methods,
    reason = "the test writes its policy tree and runs the real policyd to promote"
)]

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tenet_keys::deployment::Deployment;
use tenet_keys::publish::{self, SignOptions, Signing};
use tenet_tests::binary;
use tenet_tests::fixture::{self, Policyd, PolicydConfig};
use tenet_tests::fleet::{self, Options, SERVER_MEMBER};

const MEMBERS: usize = 20;

fn sign(dir: &Path, serial: u64) -> std::path::PathBuf {
    let mut d = Deployment::open(&dir.join("deploy")).expect("the deployment opens");
    let out = dir.join(format!("bundles/{serial}"));
    let key = d.policy_key_path();
    publish::sign(
        &mut d,
        &SignOptions {
            tree: dir.join("tree"),
            out: out.clone(),
            serial: Some(serial),
            expires_in: fixture::BUNDLE_EXPIRY,
            now: fixture::now(),
            signing: Signing::WithKey(key),
        },
    )
    .expect("the tree is signed");
    out
}

#[test]
fn every_member_picks_up_a_new_serial_with_no_failure() {
    let tmp = tempfile::tempdir().expect("a temp directory");
    let dir = fs::canonicalize(tmp.path()).expect("canonical");
    fleet::setup(&dir, MEMBERS).expect("the fleet's deployment");
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("files")).expect("files/");
    let mut policy = String::new();
    for i in 0..5 {
        fs::write(tree.join(format!("files/f{i}")), format!("file {i}\n")).expect("a file");
        policy.push_str(&format!(
            "\n[[file]]\npath = \"/dist/f{i}\"\nsource = \"f{i}\"\nmode = \"0644\"\n"
        ));
    }
    // Two files with the same content: one blob, fetched once.
    fs::write(tree.join("files/same"), "file 0\n").expect("a file");
    policy.push_str("\n[[file]]\npath = \"/dist/same\"\nsource = \"same\"\nmode = \"0644\"\n");
    fs::write(tree.join("dist.toml"), policy).expect("dist.toml");
    let b1 = sign(&dir, 1);
    fs::write(tree.join("files/f3"), "file 3, changed\n").expect("a changed file");
    let b2 = sign(&dir, 2);

    let config = PolicydConfig::new(
        SERVER_MEMBER,
        "srv/localhost.key",
        "deploy/root/1.root.toml",
    )
    .serve(
        Some("deploy/keys/timestamp.key"),
        Some("deploy/keys/server-tls.key"),
    )
    .metrics("off")
    .write(&dir.join("policyd.toml"));
    let mut policyd = Policyd::start(&binary("tenet-policyd"), &config, "warn");
    policyd.promote(&b1);
    let server = policyd.wait_for("the serving socket", Policyd::serving);

    let promote = {
        let (bin, config, b2) = (binary("tenet-policyd"), config.clone(), b2.clone());
        Box::new(move || {
            let out = Command::new(bin)
                .arg("promote")
                .arg("--config")
                .arg(&config)
                .arg("--bundle")
                .arg(&b2)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        })
    };
    let report = fleet::run(
        &Options {
            dir: dir.clone(),
            members: MEMBERS,
            server: server.parse().expect("a socket address"),
            interval: Duration::from_millis(500),
            concurrency: 64,
            first_serial: 1,
            seed: None,
            server_pid: Some(policyd.pid()),
            warmup: Duration::ZERO,
            deadline: Duration::from_secs(20),
        },
        promote,
    )
    .expect("the fleet runs");
    let log = policyd.log();
    assert!(report.first_all.is_some(), "{report}\n{log}");
    assert_eq!(report.new_serial, Some(2), "{report}\n{log}");
    assert!(report.new_all.is_some(), "{report}\n{log}");
    assert_eq!(report.members_without_new, 0, "{report}\n{log}");
    assert_eq!(report.failed_polls, 0, "{report}\n{log}");
    assert!(report.failures.is_empty(), "{report}\n{log}");
    assert!(report.is_clean(), "{report}\n{log}");
    // Each member fetched both manifests; the first time seven distinct blobs (the
    // six files hold five contents, plus cluster.toml and dist.toml), the second
    // only the changed one.
    assert_eq!(report.manifests, 2 * MEMBERS as u64, "{report}");
    assert_eq!(report.blobs, (7 + 1) * MEMBERS as u64, "{report}");
    assert!(report.server.is_some_and(|s| s.hwm_kb > 0), "{report}");
}
