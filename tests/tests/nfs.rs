//! The shipped `nfs-cluster` example's file lock migration, end to end with the real
//! agent: on the member running the package, `watch nfs` copies the status monitor's
//! entries into the holding directory every round; when the package filesystem
//! arrives on the adoptive member, `event package-start nfs` copies them back into
//! the status monitor's directory, then restarts the lock daemons and notifies the
//! clients under the package's relocatable name. Each member is its own sandbox
//! root; the package filesystem "moves" by being copied from one root to the other.
#![expect(
    clippy::disallowed_methods,
    reason = "the test starts the real binary and plays the package filesystem and the lock daemons"
)]
#![expect(clippy::unwrap_used, reason = "a failed setup fails the test")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tenet_tests::{Member, binary};

const DEADLINE: Duration = Duration::from_secs(30);

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/nfs-cluster")
}

/// `tenet-agent ARGS --policy nfs-cluster --root R --fact member=NAME --fact holds=nfs`.
fn agent(m: &Member, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary("tenet-agent"));
    cmd.args(args)
        .arg("--policy")
        .arg(example())
        .arg("--root")
        .arg(m.root.path())
        .args([
            "--fact",
            &format!("member={}", m.name),
            "--fact",
            "holds=nfs",
        ]);
    cmd
}

/// A program beneath the root that appends its name and arguments to /daemons.log.
fn fake(m: &Member, path: &str) {
    let file = m.path(path);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    let log = m.path("/daemons.log");
    fs::write(
        &file,
        format!(
            "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> '{}'\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
}

fn entries(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn status_monitor_entries_follow_the_nfs_package() {
    let red = Member::new("red", &[]);
    let blue = Member::new("blue", &[]);
    let clients = [("client-a", "a lock holder\n"), ("client-b", "another\n")];

    // red runs the package: statd has recorded two clients.
    fs::create_dir_all(red.path("/var/statmon/sm")).unwrap();
    for (name, text) in clients {
        fs::write(red.path(&format!("/var/statmon/sm/{name}")), text).unwrap();
    }
    fs::create_dir_all(red.path("/export/nfs/.sm")).unwrap();
    let mut watch = agent(&red, &["watch", "nfs"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let holding = red.path("/export/nfs/.sm");
    while entries(&holding).len() < clients.len() {
        if let Some(status) = watch.try_wait().unwrap() {
            panic!("watch exited early: {status}");
        }
        assert!(start.elapsed() < DEADLINE, "no entries propagated");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A client that stops holding locks leaves the holding directory too (purge).
    fs::remove_file(red.path("/var/statmon/sm/client-b")).unwrap();
    while entries(&holding).len() != 1 {
        if let Some(status) = watch.try_wait().unwrap() {
            panic!("watch exited early: {status}");
        }
        assert!(start.elapsed() < DEADLINE, "the dropped client stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(watch.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("nfs round 1: ok"), "{text}");

    // red fails; the package filesystem, holding directory included, is mounted on
    // blue, which has its own (empty) status monitor directory and lock daemons.
    fs::create_dir_all(blue.path("/export/nfs/.sm")).unwrap();
    for (name, text) in entries(&holding) {
        fs::write(blue.path(&format!("/export/nfs/.sm/{name}")), text).unwrap();
    }
    fake(&blue, "/usr/bin/systemctl");
    fake(&blue, "/usr/sbin/sm-notify");
    let out = agent(&blue, &["event", "package-start", "nfs", "--id", "nfs-1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        entries(&blue.path("/var/statmon/sm")),
        vec![("client-a".to_string(), "a lock holder\n".to_string())],
        "the adoptive member's status monitor has the package's clients"
    );
    // The daemons restart after the entries are back, and the notification names
    // the package, not the member.
    assert_eq!(
        fs::read_to_string(blue.path("/daemons.log")).unwrap(),
        "systemctl restart rpc-statd.service\nsm-notify -f -P /var/statmon -v nfs.example.com\n"
    );
}
