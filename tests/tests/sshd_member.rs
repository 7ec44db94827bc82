//! Issue 14's "done when" with sshd on a network-namespace member: one policy
//! manages sshd's package, its `sshd_config` (a Jinja template over a list value),
//! a `sshd_config.d` tree with `purge`, the `ssh` unit's enablement, sshd's
//! privilege-separation user and the group of the users it admits, the running
//! daemon, and a validate-then-reload handler on change. It converges a member
//! that lives in its own network namespace from the signed bundle a real
//! `tenet-policyd` serves over TLS on the namespace link; a second run is all kept;
//! `tenet-agent run --dry-run --diff` on the fresh member listed exactly the
//! changes its first run then made; and a new serial that changes
//! `VersionAddendum` reloads the same sshd process, whose identification line, read
//! over TCP from the host, then carries the new addendum.
//!
//! What is real: the master (`tenet-policyd serve` on the host's end of a veth pair,
//! the bundle signed with the deployment's keys, fetched over TLS and verified by
//! `tenet-agent run`, which runs inside the namespace through `ip netns exec`); the
//! network namespace and the veth pair the test makes (addresses in 10.215.0.0/16,
//! deleted by name when the test ends); the daemon, Debian 12's own
//! `/usr/sbin/sshd` (OpenSSH 9.2) from the `openssh-server` package, which `.ci/run`
//! downloads and unpacks into `/opt/tenet-ci/openssh` without installing it (its
//! maintainer scripts would write the host's `/etc/ssh` and start a daemon on the
//! host); the host keys, made by that package's `ssh-keygen` beneath the member's
//! root; the package promise (a real `dpkg --root` installing into the member's
//! root, which holds an empty dpkg database); the accounts (the real `groupadd` and
//! `useradd --prefix` on the root's `passwd`, `group`, `shadow`, `gshadow`); the
//! unit's enablement (the real `systemctl --root`, with the package's own
//! `ssh.service`); the reload (`sshd -t` then `SIGHUP`, which makes sshd re-execute
//! itself with the same process id and re-read its configuration), and the check of
//! it (the identification line sshd sends on the namespace's address, port 22).
//!
//! What stands in: the package the policy installs is `openssh-server-tenet-test`,
//! which the test builds with `dpkg-deb` from the unpacked Debian `sshd` binary, the
//! privilege-separation directory `/run/sshd`, and `/usr/sbin/sshd-member`, a
//! wrapper that runs sshd in a private mount namespace where `/etc/passwd`,
//! `/etc/group`, `/etc/ssh` and `/run` are the member's (bind mounts of its root):
//! the member is a network namespace and a sandbox root, not a whole machine with
//! its own `/etc`, and sshd reads its privilege-separation user through the name
//! service and its paths from compiled-in names. Debian's package is not what the
//! policy installs because a dependency-resolving install needs the member's own
//! package sources, and its scripts assume a booted system. The unit file is in the
//! member's root before the first run, as a base image would ship it (a dry run
//! cannot see a unit that a package it would install brings; see
//! `service_stack.rs`). systemd is not booted here, so the unit is enabled but not
//! started by systemd: `[[process]]` keeps sshd running and a `command:` handler
//! reloads it, rather than `service:ssh:reload`.
//!
//! The test needs root, `ip` and the unpacked package; without them it is skipped
//! with the reason, unless `TENET_REQUIRE_HA=1` (which `.ci/run` sets): then it fails.
#![expect(
    clippy::disallowed_methods,
    reason = "the test builds a package, makes a network namespace and spawns the real binaries"
)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tenet_tests::fixture::{Deployment, PidFile, Policyd, wait_for};
use tenet_tests::ha::{ha_required, skip, which};
use tenet_tests::{Run, binary};

/// Where `.ci/run` unpacks Debian's `openssh-server` and `openssh-client`.
const OPENSSH: &str = "/opt/tenet-ci/openssh";

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Debian's `libwrap.so.0` as `.ci/run` unpacked it beside sshd.
fn libwrap() -> Option<PathBuf> {
    fs::read_dir(Path::new(OPENSSH).join("usr/lib"))
        .ok()?
        .filter_map(Result::ok)
        .map(|d| d.path().join("libwrap.so.0"))
        .find(|p| p.is_file())
}

/// Whether the test can run here; when it cannot, it is skipped with the reason, or
/// fails under `TENET_REQUIRE_HA=1`.
fn can_run() -> bool {
    let sshd = Path::new(OPENSSH).join("usr/sbin/sshd");
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("not root (a network namespace needs it)".to_string())
    } else if which("ip").is_none() || which("unshare").is_none() {
        Some("ip or unshare is not installed (iproute2, util-linux)".to_string())
    } else if !sshd.is_file() || libwrap().is_none() {
        Some(format!(
            "{} or libwrap.so.0 beside it is missing (.ci/run unpacks openssh-server and libwrap0 there: apt-get download, dpkg-deb -x)",
            sshd.display()
        ))
    } else {
        None
    };
    let Some(why) = missing else { return true };
    assert!(!ha_required(), "sshd_member: TENET_REQUIRE_HA=1 but {why}");
    skip(&format!(
        "sshd_member: {why}; TENET_REQUIRE_HA=1 makes this a failure"
    ));
    false
}

/// A network namespace and a veth pair, both made by the test and deleted by name
/// when dropped (after the processes still inside are killed by PID).
struct Netns {
    name: String,
    host_if: String,
    /// The host's end.
    host: String,
    /// The member's end.
    member: String,
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id();
        let name = format!("tenet-sshd-{id}");
        let host_if = format!("tsh{}h", id % 1_000_000);
        let member_if = format!("tsh{}m", id % 1_000_000);
        let addrs =
            String::from_utf8_lossy(&tool("ip", &["-o", "-4", "addr", "show"]).stdout).into_owned();
        let x = (0..250)
            .map(|i| (id + i) % 250 + 1)
            .find(|x| !addrs.contains(&format!(" 10.215.{x}.")))
            .expect("a free 10.215.X.0/30");
        let ns = Netns {
            name,
            host_if,
            host: format!("10.215.{x}.1"),
            member: format!("10.215.{x}.2"),
        };
        for args in [
            vec!["netns", "add", &ns.name],
            vec![
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &member_if,
            ],
            vec!["link", "set", &member_if, "netns", &ns.name],
            vec![
                "addr",
                "add",
                &format!("{}/30", ns.host),
                "dev",
                &ns.host_if,
            ],
            vec!["link", "set", &ns.host_if, "up"],
            vec![
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{}/30", ns.member),
                "dev",
                &member_if,
            ],
            vec!["-n", &ns.name, "link", "set", &member_if, "up"],
            vec!["-n", &ns.name, "link", "set", "lo", "up"],
        ] {
            let out = tool("ip", &args);
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        ns
    }

    /// `ip netns exec NAME program args...`.
    fn exec(&self, program: &Path, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec runs")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let pids = tool("ip", &["netns", "pids", &self.name]);
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = tool("ip", &["link", "del", &self.host_if]);
        let _ = tool("ip", &["netns", "del", &self.name]);
    }
}

/// The identification line sshd sends on `addr:22`, if it answers.
fn banner(addr: &str) -> Option<String> {
    let addr: SocketAddr = format!("{addr}:22").parse().ok()?;
    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).ok()?;
    Some(line.trim_end().to_string())
}

/// The stand-in package: Debian's `sshd` binary, the privilege-separation
/// directory, and the wrapper that gives sshd the member's `/etc` and `/run` (see
/// the module doc).
fn build_deb(dir: &Path) -> PathBuf {
    let tree = dir.join("openssh-server-tenet-test");
    write(
        &tree.join("DEBIAN/control"),
        "Package: openssh-server-tenet-test\nVersion: 9.2p1-1\nArchitecture: amd64\nMaintainer: tenet tests <tests@example.org>\nDescription: Debian's sshd, repacked for a test member\n",
    );
    let sshd = tree.join("usr/sbin/sshd");
    fs::create_dir_all(sshd.parent().expect("usr/sbin")).expect("usr/sbin");
    fs::copy(Path::new(OPENSSH).join("usr/sbin/sshd"), &sshd).expect("the sshd binary");
    // The one library sshd links that a stock Debian 12 lacks (libwrap0), shipped
    // beside it and found through the wrapper's LD_LIBRARY_PATH.
    let lib = tree.join("usr/lib/openssh-server-tenet-test/libwrap.so.0");
    fs::create_dir_all(lib.parent().expect("the library dir")).expect("lib dir");
    fs::copy(libwrap().expect("libwrap.so.0 (checked by can_run)"), &lib).expect("libwrap");
    let wrapper = tree.join("usr/sbin/sshd-member");
    write(
        &wrapper,
        "#!/bin/sh\n# sshd with the member's /etc/passwd, /etc/group, /etc/ssh and /run, in a\n# private mount namespace; the member's root is $TENET_ROOT.\nset -e\n[ -d \"$TENET_ROOT\" ]\nexport LD_LIBRARY_PATH=\"$TENET_ROOT/usr/lib/openssh-server-tenet-test\"\nexec unshare --mount --propagation private sh -c 'for d in etc/passwd etc/group etc/ssh run; do mount --bind \"$0/$d\" \"/$d\"; done; exec \"$0/usr/sbin/sshd\" \"$@\"' \"$TENET_ROOT\" \"$@\"\n",
    );
    for f in [&sshd, &wrapper] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    fs::create_dir_all(tree.join("run/sshd")).expect("run/sshd");
    write(
        &tree.join("usr/share/doc/openssh-server-tenet-test/README"),
        "Debian's sshd for a test member; the unit comes with the image.\n",
    );
    let deb = dir.join("openssh-server-tenet-test_9.2p1-1_amd64.deb");
    let out = tool(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "-Zgzip",
            "-z1",
            "--build",
            s(&tree),
            s(&deb),
        ],
    );
    assert!(out.status.success(), "dpkg-deb: {out:?}");
    deb
}

/// A member's root as its base image leaves it: an empty dpkg database, the account
/// databases, `ssh.service`, the host key, and the package file.
fn seed_root(root: &Path, work: &Path) {
    for d in ["info", "updates", "triggers"] {
        fs::create_dir_all(root.join("var/lib/dpkg").join(d)).expect("dpkg dirs");
    }
    write(&root.join("var/lib/dpkg/status"), "");
    write(&root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    write(&root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n");
    write(&root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n");
    write(&root.join("etc/gshadow"), "root:*::\nnogroup:*::\n");
    fs::create_dir_all(root.join("run")).expect("run");
    let unit = fs::read_to_string(Path::new(OPENSSH).join("lib/systemd/system/ssh.service"))
        .expect("the package's ssh.service");
    write(&root.join("usr/lib/systemd/system/ssh.service"), &unit);
    fs::create_dir_all(root.join("etc/ssh")).expect("etc/ssh");
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    let keygen = Path::new(OPENSSH).join("usr/bin/ssh-keygen");
    let out = tool(
        s(&keygen),
        &["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", s(&key)],
    );
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    let deb = build_deb(work);
    fs::create_dir_all(root.join("srv/debs")).expect("debs");
    fs::copy(
        &deb,
        root.join("srv/debs/openssh-server-tenet-test_9.2p1-1_amd64.deb"),
    )
    .expect("the package");
}

/// The policy tree: sshd listens on `listen` (the member's address) and says
/// `addendum` after its version.
fn policy_tree(dir: &Path, root: &Path, listen: &str, addendum: &str) {
    write(
        &dir.join("cluster.toml"),
        "[cluster]\nname = \"ssh\"\n\n[[member]]\nname = \"alpha\"\n\n[[member]]\nname = \"beta\"\n",
    );
    let escaped = s(root).replace('.', "\\.");
    write(
        &dir.join("sshd.toml"),
        &format!(
            r#"[[value]]
name = "admins"
list = ["alice", "bob"]

[[value]]
name = "listen"
text = "{listen}"

[[value]]
name = "addendum"
text = "{addendum}"

[[group]]
group = "ssh-users"
gid = 3300

[[user]]
user = "sshd"
uid = 3200
group = "nogroup"
home = "/run/sshd"
shell = "/usr/sbin/nologin"

[[user]]
for_each = "${{admins}}"
user = "${{item}}"
group = "ssh-users"
shell = "/bin/sh"

[[pkg]]
pkg = "openssh-server-tenet-test"
version = "9.2p1-1"
source = "/srv/debs/openssh-server-tenet-test_9.2p1-1_amd64.deb"

[[service]]
unit = "ssh"
enablement = "enabled"

[[file]]
name = "sshd_config"
path = "/etc/ssh/sshd_config"
source = "sshd_config.j2"
engine = "jinja"
mode = "0644"
notify = ["command:reload-sshd"]

[[tree]]
name = "sshd.d"
path = "/etc/ssh/sshd_config.d"
source = "sshd.d"
purge = true
mode = "0644"
dir_mode = "0755"
notify = ["command:reload-sshd"]

[[process]]
name = "sshd"
match = '^sshd: {escaped}/usr/sbin/sshd -f /etc/ssh/sshd_config \[listener\]'
start = ["/usr/sbin/sshd-member", "-f", "/etc/ssh/sshd_config"]
timeout = "10s"

[[handler]]
name = "reload-sshd"
shell = '"$TENET_ROOT/usr/sbin/sshd-member" -t -f /etc/ssh/sshd_config && kill -HUP "$(cat "$TENET_ROOT/run/sshd.pid")"'
"#
        ),
    );
    write(
        &dir.join("files/sshd_config.j2"),
        "# {{ cluster }}: managed by tenet on {{ member }}\nInclude /etc/ssh/sshd_config.d/*.conf\nListenAddress {{ listen }}\nHostKey /etc/ssh/ssh_host_ed25519_key\nPidFile /run/sshd.pid\nUsePAM no\nVersionAddendum {{ addendum }}\n{% for u in admins %}\nAllowUsers {{ u }}\n{% endfor %}\n",
    );
    write(
        &dir.join("files/sshd.d/10-auth.conf"),
        "PasswordAuthentication no\nPermitRootLogin no\nMaxAuthTries 3\n",
    );
}

/// `ip netns exec NS tenet-agent run` once for beta, with extra arguments.
fn run_beta(ns: &Netns, config: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["run", "--config", s(config), "--deadline", "30s", "--json"];
    args.extend_from_slice(extra);
    Run::from_output(ns.exec(&binary("tenet-agent"), &args))
}

#[test]
fn sshd_converges_on_a_namespace_member_and_reloads_on_a_new_serial() {
    if !can_run() {
        return;
    }
    let dep = Deployment::new(&["alpha", "beta"], &[]);
    let ns = Netns::create();
    let mut config = dep.policyd_config("alpha");
    if let Some(serve) = config.serve.as_mut() {
        serve.listen = format!("{}:0", ns.host);
    }
    let config = config.write(&dep.path("policyd.toml"));
    let master = Policyd::start(&binary("tenet-policyd"), &config, "warn");
    let beta = dep.path("beta");
    let root = beta.join("root");
    seed_root(&root, &dep.path("work"));
    let daemon = PidFile(root.join("run/sshd.pid"));
    let listen = format!("{}:22", ns.member);

    let tree1 = dep.path("trees/1");
    policy_tree(&tree1, &root, &listen, "tenet-serial-1");
    master.promote(&dep.sign_tree(&tree1, 1, Duration::from_secs(86_400)));
    let serving = master.serving().expect("a serving address");
    assert!(
        serving.starts_with(&format!("{}:", ns.host)),
        "the master serves on the link: {serving}"
    );
    let agent_toml = beta.join("agent.toml");
    write(
        &agent_toml,
        &format!(
            "member = \"beta\"\nmaster = \"{serving}\"\nstate_dir = \"state\"\nnode_key = \"{}\"\ntrusted_root = \"{}\"\nroot = \"root\"\n",
            s(&dep.node_key_path("beta")),
            s(&dep.root_path())
        ),
    );

    // A dry run on the fresh member: every promise would be repaired, nothing changes.
    let dry = run_beta(&ns, &agent_toml, &["--dry-run", "--diff"]);
    assert_eq!(dry.code(), Some(0), "{}", dry.text());
    assert!(
        dry.outcomes().values().all(|o| o.status == "would_repair"),
        "{:#?}",
        dry.outcomes()
    );
    assert!(
        !root.join("etc/ssh/sshd_config").exists(),
        "the dry run wrote"
    );
    assert!(banner(&ns.member).is_none(), "the dry run started sshd");
    let dry_text = String::from_utf8_lossy(&dry.output.stdout).into_owned();
    for line in ["VersionAddendum tenet-serial-1", "AllowUsers bob"] {
        assert!(
            dry_text.contains(line),
            "the dry run's diff shows the rendered {line:?}: {dry_text}"
        );
    }

    // The first run makes exactly those changes, and sshd answers on the member's
    // address with the addendum.
    let first = run_beta(&ns, &agent_toml, &[]);
    assert_eq!(first.code(), Some(0), "{}", first.text());
    assert_eq!(
        first.changes(),
        dry.changes(),
        "the dry run did not list the first run's changes"
    );
    assert!(
        first.outcomes().values().all(|o| o.status == "repaired"),
        "{:#?}",
        first.outcomes()
    );
    let hello = wait_for(
        "sshd's identification line",
        Duration::from_secs(10),
        || banner(&ns.member).filter(|l| l.ends_with(" tenet-serial-1")),
    );
    assert!(hello.starts_with("SSH-2.0-OpenSSH_9.2"), "{hello}");
    let pid = daemon.pid().expect("sshd wrote its pid file");
    let dpkg = tool(
        "dpkg-query",
        &[
            &format!("--admindir={}", s(&root.join("var/lib/dpkg"))),
            "-W",
            "-f=${db:Status-Abbrev}${Version}",
            "openssh-server-tenet-test",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&dpkg.stdout).trim(), "ii 9.2p1-1");
    let wants = root.join("etc/systemd/system/multi-user.target.wants/ssh.service");
    assert!(
        fs::symlink_metadata(&wants).is_ok_and(|m| m.file_type().is_symlink()),
        "systemctl --root made no wants link"
    );
    let passwd = fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(
        passwd.contains("sshd:x:3200:65534::/run/sshd:/usr/sbin/nologin"),
        "{passwd}"
    );
    let group = fs::read_to_string(root.join("etc/group")).expect("group");
    assert!(group.contains("ssh-users:x:3300:"), "{group}");
    for u in ["alice", "bob"] {
        assert!(passwd.contains(&format!("\n{u}:x:")), "{passwd}");
    }
    let host_passwd = fs::read_to_string("/etc/passwd").expect("the host's passwd");
    assert!(
        !host_passwd.contains(":/run/sshd:"),
        "the member's accounts reached the host"
    );

    // The second run keeps everything.
    let second = run_beta(&ns, &agent_toml, &[]);
    assert_eq!(second.code(), Some(0), "{}", second.text());
    assert!(
        second.outcomes().values().all(|o| o.status == "kept"),
        "{:#?}",
        second.outcomes()
    );

    // Serial 2 changes the addendum, and a stray file appears in the tree: the
    // configuration and the tree are repaired, the handler validates and reloads the
    // same sshd process, which then says the new addendum.
    write(
        &root.join("etc/ssh/sshd_config.d/99-stray.conf"),
        "PasswordAuthentication yes\n",
    );
    let tree2 = dep.path("trees/2");
    policy_tree(&tree2, &root, &listen, "tenet-serial-2");
    master.promote(&dep.sign_tree(&tree2, 2, Duration::from_secs(86_400)));
    let third = run_beta(&ns, &agent_toml, &[]);
    assert_eq!(third.code(), Some(0), "{}", third.text());
    assert_eq!(
        third.with_status("repaired"),
        ["reload-sshd", "sshd.d", "sshd_config"],
        "{:#?}",
        third.outcomes()
    );
    assert_eq!(
        third.outcomes()["sshd.d"].changes,
        ["removed /etc/ssh/sshd_config.d/99-stray.conf (not in files/sshd.d)"]
    );
    wait_for(
        "the new identification line",
        Duration::from_secs(10),
        || banner(&ns.member).filter(|l| l.ends_with(" tenet-serial-2")),
    );
    assert_eq!(
        daemon.pid(),
        Some(pid),
        "a reload, not a restart, of the sshd process"
    );
    drop(daemon);
    drop(master);
    drop(ns);
}
