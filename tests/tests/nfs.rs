//! The shipped `nfs-cluster` example's file lock migration, end to end with the real
//! agent and Linux's paths: on the member running the package, `watch nfs` copies
//! the status monitor's entries (`/var/lib/nfs/sm`, owned by statd) into the holding
//! directory every round; `event package-stop nfs` copies the last ones and stops
//! the NFS daemons; when the package filesystem arrives on the adoptive member,
//! `event package-start nfs` starts the NFS server, copies the entries back with
//! their owner and mode, restarts lockd and rpc.statd and notifies the clients
//! under the package's relocatable name. Each member is its own sandbox root; the
//! package filesystem "moves" by `cp -a` from one root to the other.
#![expect(
    clippy::disallowed_methods,
    reason = "the test starts the real binary and plays the package filesystem and the lock daemons"
)]
#![expect(clippy::unwrap_used, reason = "a failed setup fails the test")]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tenet_tests::{Member, binary};

const DEADLINE: Duration = Duration::from_secs(30);

/// The status monitor's user (`statd` on Debian): not root, and not this process.
const STATD: (u32, u32) = (4242, 4243);
const SM: &str = "/var/lib/nfs/sm";

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

/// A program beneath the root that appends its name, its arguments and how many
/// entries the status monitor's directory holds to /daemons.log.
fn fake(m: &Member, path: &str) {
    let file = m.path(path);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(
        &file,
        format!(
            "#!/bin/sh\necho \"$(basename \"$0\") $* [$(ls '{}' | wc -l)]\" >> '{}'\n",
            m.path(SM).display(),
            m.path("/daemons.log").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
}

fn fakes(m: &Member) {
    for p in [
        "/usr/bin/systemctl",
        "/usr/bin/pgrep",
        "/usr/bin/pkill",
        "/usr/sbin/sm-notify",
    ] {
        fake(m, p);
    }
}

/// Each entry's name, content, owner and mode.
fn entries(dir: &Path) -> Vec<(String, String, (u32, u32), u32)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| {
                let e = e.unwrap();
                let meta = e.metadata().unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read_to_string(e.path()).unwrap(),
                    (meta.uid(), meta.gid()),
                    meta.mode() & 0o7777,
                )
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn chown(path: &Path, mode: u32) {
    std::os::unix::fs::chown(path, Some(STATD.0), Some(STATD.1)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The status monitor's directory as nfs-common makes it, with `clients` in it.
fn status_monitor(m: &Member, clients: &[(&str, &str)]) {
    fs::create_dir_all(m.path(SM)).unwrap();
    chown(&m.path(SM), 0o700);
    for (name, text) in clients {
        let p = m.path(&format!("{SM}/{name}"));
        fs::write(&p, text).unwrap();
        chown(&p, 0o600);
    }
}

fn event(m: &Member, args: &[&str]) -> String {
    let out = agent(m, &[&["event"], args].concat()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn statd_entry(name: &str, text: &str) -> (String, String, (u32, u32), u32) {
    (name.to_string(), text.to_string(), STATD, 0o600)
}

#[test]
fn status_monitor_entries_follow_the_nfs_package() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the entries belong to statd: run as root (CI does)"
    );
    let red = Member::new("red", &[]);
    let blue = Member::new("blue", &[]);

    // red runs the package: statd has recorded two clients.
    status_monitor(
        &red,
        &[("client-a", "a lock holder\n"), ("client-b", "another\n")],
    );
    fs::create_dir_all(red.path("/export/nfs/.sm")).unwrap();
    let mut watch = agent(&red, &["watch", "nfs"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let holding = red.path("/export/nfs/.sm");
    while entries(&holding).len() < 2 {
        if let Some(status) = watch.try_wait().unwrap() {
            panic!("watch exited early: {status}");
        }
        assert!(start.elapsed() < DEADLINE, "no entries propagated");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A client that stops holding locks leaves the holding directory too (purge).
    fs::remove_file(red.path(&format!("{SM}/client-b"))).unwrap();
    while entries(&holding).len() != 1 {
        if let Some(status) = watch.try_wait().unwrap() {
            panic!("watch exited early: {status}");
        }
        assert!(start.elapsed() < DEADLINE, "the dropped client stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        entries(&holding),
        vec![statd_entry("client-a", "a lock holder\n")],
        "the holding directory keeps statd's owner and mode"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(watch.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("nfs round 1: ok"), "{text}");

    // An operator moves the package: a client locked since the last round, and
    // red's stop side takes it along, then stops the NFS daemons.
    status_monitor(&red, &[("client-c", "a late one\n")]);
    fakes(&red);
    event(&red, &["package-stop", "nfs", "--id", "nfs-1"]);
    let moved = vec![
        statd_entry("client-a", "a lock holder\n"),
        statd_entry("client-c", "a late one\n"),
    ];
    assert_eq!(entries(&holding), moved);
    assert_eq!(
        fs::read_to_string(red.path("/daemons.log")).unwrap(),
        "systemctl stop nfs-server.service [2]\n"
    );

    // The package filesystem, holding directory included, is mounted on blue,
    // whose status monitor directory is empty.
    status_monitor(&blue, &[]);
    fs::create_dir_all(blue.path("/export")).unwrap();
    let cp = Command::new("cp")
        .arg("-a")
        .arg(red.path("/export/nfs"))
        .arg(blue.path("/export/nfs"))
        .status()
        .unwrap();
    assert!(cp.success());
    fakes(&blue);
    event(&blue, &["package-start", "nfs", "--id", "nfs-2"]);
    assert_eq!(
        entries(&blue.path(SM)),
        moved,
        "the adoptive member's status monitor has the package's clients, still statd's"
    );
    // The NFS server before the entries are back (its own sm-notify runs under
    // the member's name); lockd and statd restarted after; the notification names
    // the package, not the member.
    assert_eq!(
        fs::read_to_string(blue.path("/daemons.log")).unwrap(),
        "systemctl start nfs-server.service [0]\n\
         pgrep --exact lockd [2]\n\
         pkill --signal KILL --exact lockd [2]\n\
         systemctl restart rpc-statd.service [2]\n\
         sm-notify -f -P /var/lib/nfs -v nfs.example.com [2]\n"
    );
}
