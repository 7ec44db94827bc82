//! Issue 14's "done when": one policy manages a daemon's whole stack (its package,
//! its main configuration file, a directory tree of site configurations with
//! `purge`, its unit's enablement, a user and a group, the running daemon, and a
//! reload on change through `notify` and a `[[handler]]`). It converges a real
//! member from the signed bundle a real `tenet-policyd` serves over TLS on
//! loopback; a second run is all kept; `tenet-agent run --dry-run --diff` on the
//! fresh member listed exactly the changes its first run then made; and a new
//! serial that changes one file of the tree reloads the running daemon.
//!
//! What is real: the master (`tenet-policyd serve`, the bundle signed with the
//! deployment's keys, fetched and verified by `tenet-agent run`), the package (a
//! `.deb` the test builds with `dpkg-deb`, installed by the real `dpkg --root` into
//! the member's sandbox root, which holds an empty dpkg database), the user and
//! group (the real `groupadd`/`useradd --root` on the sandbox's `/etc/passwd`,
//! `group`, `shadow`, `gshadow`), the unit's enablement (the real `systemctl --root`,
//! which makes the `multi-user.target.wants` link in the sandbox), and the daemon: the
//! host's real `nginx` (installed by `.ci/run`), started by the `[[process]]` promise
//! with a configuration that lives wholly in the sandbox and listens on a free
//! loopback port, and reloaded by the handler with `SIGHUP`; the test checks the
//! reload by fetching the page over HTTP and seeing the new text from the same
//! master process.
//!
//! What is not: the daemon is nginx, not sshd (`openssh-server` is not installed
//! here, and installing it would write the host's `/etc/ssh`); the binary run is
//! the host's, not one from the test's package (which carries the daemon's
//! directories). The unit file is in the member's root before the first run, as a
//! base image would ship it, not in the package: a dry run cannot see a unit that
//! the package it would install brings (it reports that `[[service]]` blocked,
//! "no unit file here", while the real run enables it), so with the unit in the
//! package the dry run could not list exactly the first run's changes. The unit is enabled but not started by systemd, since
//! systemd is not booted on this machine and a unit's running state beneath a
//! sandbox root is `blocked` (`agent/src/converge/service.rs`), so the policy keeps
//! the daemon running with `[[process]]` and reloads it with a `command:` handler
//! rather than `service:tenet-web:reload`. The member is a sandbox root, not a
//! network namespace: the harness has no cheap namespace member, and loopback is
//! enough for the master and the daemon.
#![expect(
    clippy::disallowed_methods,
    reason = "the test builds a package, seeds a member's root and spawns the real binaries"
)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tenet_tests::fixture::{Deployment, PidFile, Policyd, wait_for};
use tenet_tests::{Run, binary};

const NGINX: &str = "/usr/sbin/nginx";

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
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// A free loopback port (bound, then released for nginx to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The body nginx answers `GET /` with, if it answers.
fn page(port: u16) -> Option<String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    c.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// The package: the daemon's directories and a README (the program is the host's
/// nginx; the unit file comes with the member's image, see the module doc).
fn build_deb(dir: &Path) -> PathBuf {
    let tree = dir.join("tenet-web-1.0");
    write(
        &tree.join("DEBIAN/control"),
        "Package: tenet-web\nVersion: 1.0\nArchitecture: all\nMaintainer: tenet tests <tests@example.org>\nDescription: a test web service\n",
    );
    write(
        &tree.join("usr/share/doc/tenet-web/README"),
        "The daemon's directories; the unit comes with the image.\n",
    );
    write(&tree.join("var/lib/tenet-web/.keep"), "");
    write(&tree.join("var/log/tenet-web/.keep"), "");
    let deb = dir.join("tenet-web_1.0_all.deb");
    let out = tool(
        "dpkg-deb",
        &["--root-owner-group", "--build", s(&tree), s(&deb)],
    );
    assert!(out.status.success(), "dpkg-deb: {out:?}");
    deb
}

/// A member's root: an empty dpkg database, the account databases, the package file.
fn seed_root(root: &Path, work: &Path) {
    for d in ["info", "updates", "triggers"] {
        fs::create_dir_all(root.join("var/lib/dpkg").join(d)).expect("dpkg dirs");
    }
    write(&root.join("var/lib/dpkg/status"), "");
    write(&root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    write(&root.join("etc/group"), "root:x:0:\n");
    write(&root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n");
    write(&root.join("etc/gshadow"), "root:*::\n");
    fs::create_dir_all(root.join("run")).expect("run");
    write(
        &root.join("usr/lib/systemd/system/tenet-web.service"),
        "[Unit]\nDescription=tenet test web service\n[Service]\nType=forking\nPIDFile=/run/tenet-web.pid\nExecStart=/usr/sbin/nginx -c /etc/tenet-web/nginx.conf\nExecReload=/bin/kill -HUP $MAINPID\n[Install]\nWantedBy=multi-user.target\n",
    );
    let deb = build_deb(work);
    fs::create_dir_all(root.join("srv/debs")).expect("debs");
    fs::copy(&deb, root.join("srv/debs/tenet-web_1.0_all.deb")).expect("the package");
}

/// The policy tree of serial `serial` for a member whose root is `root`: the
/// daemon's paths are the sandbox's (the daemon is the host's nginx, so its
/// configuration names them in full).
fn policy_tree(dir: &Path, root: &Path, port: u16, text: &str) {
    let r = s(root);
    write(
        &dir.join("cluster.toml"),
        "[cluster]\nname = \"web\"\n\n[[member]]\nname = \"alpha\"\n\n[[member]]\nname = \"beta\"\n",
    );
    let escaped = r.replace('.', "\\.");
    write(
        &dir.join("web.toml"),
        &format!(
            r#"[[group]]
group = "web"
gid = 3100

[[user]]
user = "web"
uid = 3100
group = "web"
home = "/var/lib/tenet-web"
shell = "/usr/sbin/nologin"

[[pkg]]
pkg = "tenet-web"
version = "1.0"
source = "/srv/debs/tenet-web_1.0_all.deb"

[[service]]
unit = "tenet-web"
enablement = "enabled"

[[file]]
name = "nginx.conf"
path = "/etc/tenet-web/nginx.conf"
source = "nginx.conf"
mode = "0644"
notify = ["command:reload-web"]

[[tree]]
name = "sites"
path = "/etc/tenet-web/sites.d"
source = "sites.d"
purge = true
mode = "0640"
group = "3100"
dir_mode = "0750"
notify = ["command:reload-web"]

[[process]]
name = "nginx"
match = '^nginx: master process {NGINX} -e {escaped}/var/log/tenet-web/error\.log'
start = ["/bin/sh", "-c", "exec {NGINX} -e \"$TENET_ROOT/var/log/tenet-web/error.log\" -c \"$TENET_ROOT/etc/tenet-web/nginx.conf\""]

[[handler]]
name = "reload-web"
shell = "kill -HUP \"$(cat \"$TENET_ROOT/run/tenet-web.pid\")\""
"#
        ),
    );
    write(
        &dir.join("files/nginx.conf"),
        &format!(
            "pid {r}/run/tenet-web.pid;\nerror_log {r}/var/log/tenet-web/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {r}/var/lib/tenet-web/body;\n    proxy_temp_path {r}/var/lib/tenet-web/proxy;\n    fastcgi_temp_path {r}/var/lib/tenet-web/fastcgi;\n    uwsgi_temp_path {r}/var/lib/tenet-web/uwsgi;\n    scgi_temp_path {r}/var/lib/tenet-web/scgi;\n    include {r}/etc/tenet-web/sites.d/*.conf;\n}}\n"
        ),
    );
    write(
        &dir.join("files/sites.d/site.conf"),
        &format!(
            "server {{\n    listen 127.0.0.1:{port};\n    include {r}/etc/tenet-web/sites.d/pages/index.conf;\n}}\n"
        ),
    );
    write(
        &dir.join("files/sites.d/pages/index.conf"),
        &format!("location / {{ return 200 \"{text}\\n\"; }}\n"),
    );
}

/// `tenet-agent run` once for beta, with extra arguments.
fn run_beta(config: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["run", "--config", s(config), "--deadline", "30s", "--json"];
    args.extend_from_slice(extra);
    Run::from_output(
        Command::new(binary("tenet-agent"))
            .args(&args)
            .output()
            .expect("tenet-agent runs"),
    )
}

#[test]
fn a_daemon_stack_converges_from_the_signed_bundle_and_reloads_on_change() {
    assert!(
        Path::new(NGINX).exists(),
        "{NGINX} is missing; .ci/run installs nginx-light"
    );
    let dep = Deployment::new(&["alpha", "beta"], &[]);
    let config = dep.policyd_config("alpha").write(&dep.path("policyd.toml"));
    let master = Policyd::start(&binary("tenet-policyd"), &config, "warn");
    let beta = dep.path("beta");
    let root = beta.join("root");
    seed_root(&root, &dep.path("work"));
    let daemon = PidFile(root.join("run/tenet-web.pid"));
    let port = free_port();

    let tree1 = dep.path("trees/1");
    policy_tree(&tree1, &root, port, "v1");
    master.promote(&dep.sign_tree(&tree1, 1, Duration::from_secs(86_400)));
    let serving = master.serving().expect("a serving address");
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
    let dry = run_beta(&agent_toml, &["--dry-run", "--diff"]);
    assert_eq!(dry.code(), Some(0), "{}", dry.text());
    assert!(
        dry.outcomes().values().all(|o| o.status == "would_repair"),
        "{:#?}",
        dry.outcomes()
    );
    assert!(!root.join("etc/tenet-web").exists(), "the dry run wrote");
    assert!(page(port).is_none(), "the dry run started the daemon");
    let dry_text = String::from_utf8_lossy(&dry.output.stdout).into_owned();
    assert!(
        dry_text.contains("return 200 \\\"v1\\\\n\\\""),
        "the dry run's diff shows the tree's file: {dry_text}"
    );

    // The first run makes exactly those changes, and the daemon serves the page.
    let first = run_beta(&agent_toml, &[]);
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
    let served = wait_for("nginx to serve v1", Duration::from_secs(10), || {
        page(port).filter(|p| p == "v1\n")
    });
    assert_eq!(served, "v1\n");
    let master_pid = daemon.pid().expect("nginx wrote its pid file");
    let dpkg = tool(
        "dpkg-query",
        &[
            &format!("--admindir={}", s(&root.join("var/lib/dpkg"))),
            "-W",
            "-f=${db:Status-Abbrev}${Version}",
            "tenet-web",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&dpkg.stdout).trim(), "ii 1.0");
    let wants = root.join("etc/systemd/system/multi-user.target.wants/tenet-web.service");
    assert!(
        fs::symlink_metadata(&wants).is_ok_and(|m| m.file_type().is_symlink()),
        "systemctl --root made no wants link"
    );
    let passwd = fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(
        passwd.contains("web:x:3100:3100::/var/lib/tenet-web:/usr/sbin/nologin"),
        "{passwd}"
    );
    let group = fs::read_to_string(root.join("etc/group")).expect("group");
    assert!(group.contains("web:x:3100:"), "{group}");

    // The second run keeps everything.
    let second = run_beta(&agent_toml, &[]);
    assert_eq!(second.code(), Some(0), "{}", second.text());
    assert!(
        second.outcomes().values().all(|o| o.status == "kept"),
        "{:#?}",
        second.outcomes()
    );

    // Serial 2 changes one file of the tree and drops a stray one: the tree is
    // repaired, the handler reloads the same master process, the page changes.
    write(
        &root.join("etc/tenet-web/sites.d/stray.conf"),
        "# not in the source\n",
    );
    let tree2 = dep.path("trees/2");
    policy_tree(&tree2, &root, port, "v2");
    master.promote(&dep.sign_tree(&tree2, 2, Duration::from_secs(86_400)));
    let third = run_beta(&agent_toml, &[]);
    assert_eq!(third.code(), Some(0), "{}", third.text());
    assert_eq!(
        third.with_status("repaired"),
        ["reload-web", "sites"],
        "{:#?}",
        third.outcomes()
    );
    assert_eq!(
        third.outcomes()["sites"].changes,
        [
            "rewrote /etc/tenet-web/sites.d/pages/index.conf (content differed)",
            "removed /etc/tenet-web/sites.d/stray.conf (not in files/sites.d)",
        ]
    );
    wait_for("nginx to serve v2", Duration::from_secs(10), || {
        page(port).filter(|p| p == "v2\n")
    });
    assert_eq!(
        daemon.pid(),
        Some(master_pid),
        "a reload, not a restart, of the master process"
    );
}
