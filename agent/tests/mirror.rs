//! `tenet-agent run` against untrusted static mirrors: `tenet-keys publish --to` lays
//! bundles out, a real nginx serves them over HTTPS on loopback (a certificate made
//! here), and a member whose master is gone converges from a good mirror and refuses an
//! older, tampered or mixed one on trust (exit 4), keeping the bundle in force.
#![expect(
    clippy::disallowed_methods,
    reason = "fixtures start nginx and the binaries under test and write files directly"
)]
#![expect(
    clippy::unwrap_used,
    reason = "fixtures fail the test on any setup error"
)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tenet_tests::fixture::wait_for;

use crate::run::{World, assert_code, read, run_agent};

const NGINX: &str = "/usr/sbin/nginx";

/// `tenet-keys`, built beside the agent by `cargo build --workspace`.
fn keys_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_tenet-agent")).with_file_name("tenet-keys");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` before these tests",
        path.display()
    );
    path
}

/// `tenet-keys publish BUNDLE --to DIR` with the deployment's timestamp key.
fn publish(world: &World, bundle: &Path, to: &Path) -> String {
    let out = Command::new(keys_binary())
        .arg("publish")
        .arg(bundle)
        .arg("--to")
        .arg(to)
        .arg("--key")
        .arg(world.path("deploy/keys/timestamp.key"))
        .arg("--deployment")
        .arg(world.path("deploy"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

/// nginx serving `www` over HTTPS on a loopback port, with its own config, logs and
/// temp paths in `dir`; killed by PID on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx with a self-signed certificate for 127.0.0.1; the CA file members
    /// name is `dir/cert.pem`.
    fn start(dir: &Path, www: &Path) -> Nginx {
        assert!(
            Path::new(NGINX).is_file(),
            "{NGINX} is missing: install nginx-light (.ci/run does)"
        );
        fs::create_dir_all(dir.join("logs")).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
        fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        // A free port, released for nginx to bind (it is the only one asking for it).
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/logs/access.log;\n  client_body_temp_path {d}/tmp-body;\n  proxy_temp_path {d}/tmp-proxy;\n  fastcgi_temp_path {d}/tmp-fastcgi;\n  uwsgi_temp_path {d}/tmp-uwsgi;\n  scgi_temp_path {d}/tmp-scgi;\n  keepalive_requests 5;\n\
             \x20 server {{\n    listen {addr} ssl;\n    ssl_protocols TLSv1.3;\n    ssl_certificate {d}/cert.pem;\n    ssl_certificate_key {d}/key.pem;\n    root {www};\n    location / {{ }}\n  }}\n}}\n",
            www = www.display()
        );
        fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut nginx = Nginx {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        wait_for("nginx to listen", Duration::from_secs(20), || {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!(
                    "nginx exited ({status}): {}",
                    fs::read_to_string(nginx.dir.join("logs/error.log")).unwrap_or_default()
                );
            }
            TcpStream::connect(addr).ok()
        });
        nginx
    }

    fn url(&self, prefix: &str) -> String {
        format!("https://{}/{prefix}", self.addr)
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A member of `world` whose master is gone (a closed port) and whose mirrors are
/// `urls`, in order, each checked against `ca`.
fn mirrored_member(world: &World, instance: &str, ca: &Path, urls: &[String]) -> PathBuf {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = world.member("alpha", instance, closed);
    point_at_mirrors(&config, ca, urls);
    config
}

/// Replaces the member's `mirrors` with `urls`.
fn point_at_mirrors(config: &Path, ca: &Path, urls: &[String]) {
    let text = fs::read_to_string(config).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("mirrors"))
        .map(|l| format!("{l}\n"))
        .collect();
    let list = urls
        .iter()
        .map(|u| format!("{{ url = \"{u}\", ca = \"{}\" }}", ca.display()))
        .collect::<Vec<_>>()
        .join(", ");
    fs::write(config, format!("mirrors = [{list}]\n{kept}")).unwrap();
}

fn serial_in_force(config: &Path) -> String {
    fs::read_link(config.with_file_name("state/current"))
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A member with no reachable master converges from a static nginx mirror and follows
/// a new serial published there; a mirror serving an older serial (rollback), a
/// tampered blob, or a timestamp and manifest of different serials (mixed) is refused
/// on trust, exit 4, naming the mirror, and the bundle in force is kept; with a good
/// mirror listed after the bad one, the member converges from the good one.
#[test]
fn a_member_converges_from_a_static_mirror_and_refuses_rollback_tampered_and_mixed_ones() {
    let world = World::new();
    let www = world.path("www");
    let b1 = world.sign(1);
    let b2 = world.sign(2);
    let b3 = world.sign(3);
    let text = publish(&world, &b1, &www.join("old"));
    assert!(text.contains("published serial 1"), "{text}");
    publish(&world, &b1, &www.join("good"));
    let nginx = Nginx::start(&world.path("nginx"), &www);

    // (a) From the mirror alone: serial 1, then serial 2 once published there.
    let config = mirrored_member(&world, "alpha", &nginx.ca(), &[nginx.url("good/")]);
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert!(
        r.out
            .contains(&format!("answered by mirror {}", nginx.url("good/"))),
        "{}",
        r.out
    );
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 1 on alpha\n")
    );
    let text = publish(&world, &b2, &www.join("good"));
    assert!(text.contains("published serial 2"), "{text}");
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 2 on alpha\n")
    );
    // The mirror never goes backwards.
    let out = Command::new(keys_binary())
        .args(["publish"])
        .arg(&b1)
        .arg("--to")
        .arg(www.join("good"))
        .arg("--key")
        .arg(world.path("deploy/keys/timestamp.key"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a mirror never goes backwards"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // (b) Bad mirrors, each alone: trust refused, serial 2 kept and enforced.
    publish(&world, &b3, &www.join("tampered"));
    let motd = fs::read_dir(www.join("tampered/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| fs::read_to_string(p).is_ok_and(|t| t == "motd of serial 3\n"))
        .unwrap();
    fs::write(&motd, "motd of serial 3, changed\n").unwrap();
    publish(&world, &b3, &www.join("mixed"));
    for doc in ["manifest.toml", "manifest.toml.sig"] {
        fs::copy(www.join("good").join(doc), www.join("mixed").join(doc)).unwrap();
    }
    for (name, why) in [
        ("old", "rollback"),
        ("tampered", "blob"),
        ("mixed", "manifest"),
    ] {
        point_at_mirrors(&config, &nginx.ca(), &[nginx.url(&format!("{name}/"))]);
        fs::remove_file(config.with_file_name("root/etc/tenet-serial")).unwrap();
        let r = run_agent(&config);
        assert_code(&r, 4);
        assert!(
            r.out.contains("trust refused")
                && r.out
                    .contains(&format!("mirror {}", nginx.url(&format!("{name}/"))))
                && r.out.contains(why),
            "{name}: {}",
            r.out
        );
        assert_eq!(serial_in_force(&config), "2", "{name}");
        assert_eq!(
            read(&config, "etc/tenet-serial").as_deref(),
            Some("serial 2 on alpha\n"),
            "{name}: the bundle in force is still enforced"
        );
        let last: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(config.with_file_name("state/last-run.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(last["exit_code"], 4, "{name}");
    }
    assert_eq!(
        read(&config, "etc/motd").as_deref(),
        Some("motd of serial 2\n")
    );

    // (c) A bad mirror, then a good one holding serial 3: the good one wins, and the
    // bad one is named in a warning.
    publish(&world, &b3, &www.join("good"));
    point_at_mirrors(
        &config,
        &nginx.ca(),
        &[nginx.url("tampered/"), nginx.url("good/")],
    );
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert!(
        r.out
            .contains(&format!("mirror {}", nginx.url("tampered/")))
            && r.out
                .contains(&format!("answered by mirror {}", nginx.url("good/"))),
        "{}",
        r.out
    );
    assert_eq!(serial_in_force(&config), "3");
    assert_eq!(
        read(&config, "etc/motd").as_deref(),
        Some("motd of serial 3\n")
    );

    // (d) A mirror whose certificate does not chain to the CA named is not asked: the
    // member has no master and no mirror, and keeps serial 3 (exit 10).
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let wrong_ca = world.path("wrong-ca.pem");
    fs::write(&wrong_ca, other.cert.pem()).unwrap();
    point_at_mirrors(&config, &wrong_ca, &[nginx.url("good/")]);
    let r = run_agent(&config);
    assert_code(&r, 10);
    assert!(r.out.contains("master unreachable"), "{}", r.out);
    assert_eq!(serial_in_force(&config), "3");
}

/// `tenet-keys publish --to DIR` writes only inside DIR: a `blobs/` or `root/` link
/// planted there (pointing at a directory the publisher must not fill) is refused
/// before anything is created, and the link's target stays empty.
#[test]
fn publishing_refuses_a_mirror_whose_blobs_or_root_is_a_symlink() {
    let world = World::new();
    let bundle = world.sign(1);
    for planted in ["blobs", "blobs/sha256", "root"] {
        let mirror = world.path(&format!("www-{}", planted.replace('/', "-")));
        let elsewhere = world.path(&format!("elsewhere-{}", planted.replace('/', "-")));
        fs::create_dir_all(&elsewhere).unwrap();
        let link = mirror.join(planted);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let out = Command::new(keys_binary())
            .arg("publish")
            .arg(&bundle)
            .arg("--to")
            .arg(&mirror)
            .arg("--key")
            .arg(world.path("deploy/keys/timestamp.key"))
            .arg("--deployment")
            .arg(world.path("deploy"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{planted}: {stderr}");
        assert!(stderr.contains("is a symbolic link"), "{planted}: {stderr}");
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "{planted}: the link's target was written to"
        );
        assert!(!mirror.join("timestamp.toml").exists(), "{planted}");
    }
}
