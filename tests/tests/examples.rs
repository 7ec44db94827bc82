//! The shipped `dce-cluster` example against what stock hosts already have: the
//! real `/etc/services` of Debian 12 and the Kerberos entries of a RHEL-family one
//! (`stock/`), read back with the C library's own `getent services` inside a
//! mount namespace where the converged file is bind-mounted over `/etc/services`
//! (this machine's file is never touched); and the addresses the DCE start steps
//! receive in `RPC_UNSUPPORTED_NETADDRS` on a member with IPv6, loopback and
//! bridge addresses besides its cluster ones.
#![expect(
    clippy::disallowed_methods,
    reason = "the test starts the real binary, getent in a namespace, and plays the DCE start scripts"
)]
#![expect(clippy::unwrap_used, reason = "a failed setup fails the test")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tenet_tests::{Member, binary};

const KDC: &str = "kerberos5\t88/udp\t\tkdc\n";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/dce-cluster")
}

fn stock(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/stock")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// alpha, the owner of `dce`, holding its service address.
fn alpha(addresses: &str) -> Member {
    Member::new(
        "alpha",
        &[
            "member=alpha",
            "hostname=alpha.example.com",
            &format!("addresses={addresses}"),
        ],
    )
}

fn agent(m: &Member, args: &[&str]) -> Output {
    let mut cmd = Command::new(binary("tenet-agent"));
    cmd.args(args).arg("--root").arg(m.root.path());
    for f in &m.facts {
        cmd.arg("--fact").arg(f);
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "tenet-agent {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn apply(m: &Member) {
    agent(m, &["apply", example().to_str().unwrap()]);
}

/// `getent services KEY` with `services` bind-mounted over /etc/services in a
/// mount namespace of its own (as root, or else in a user namespace too).
fn getent_services(services: &Path, key: &str) -> String {
    let mut cmd = Command::new("unshare");
    if !nix::unistd::geteuid().is_root() {
        cmd.args(["--user", "--map-root-user"]);
    }
    let out = cmd
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" /etc/services && exec getent services "$2""#)
        .args(["sh"])
        .arg(services)
        .arg(key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "getent services {key} over {}: {:?} {}",
        services.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // getent pads the name; compare words.
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn converge_services(original: &str) -> (Member, String) {
    let m = alpha("9.3.240.1,9.3.240.66,9.3.240.2");
    fs::create_dir_all(m.path("/etc")).unwrap();
    fs::write(m.path("/etc/services"), original).unwrap();
    apply(&m);
    let after = fs::read_to_string(m.path("/etc/services")).unwrap();
    (m, after)
}

#[test]
fn the_debian_fixture_is_netbase_s_file_unmodified() {
    // The sum `dpkg-query -W -f='${Conffiles}' netbase` lists for /etc/services.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stock/debian12-services");
    let out = Command::new("md5sum").arg(&path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next(),
        Some("3975f0d8c4e1ecb25f035edfb1ba27ac")
    );
}

#[test]
fn the_dce_example_adds_no_second_kerberos5_entry_to_stock_services() {
    for fixture in ["debian12-services", "rhel9-services"] {
        let original = stock(fixture);
        let (m, after) = converge_services(&original);
        let added: Vec<&str> = after
            .lines()
            .filter(|l| !original.lines().any(|o| o == *l))
            .collect();
        assert!(
            after == original,
            "{fixture}: /etc/services was changed; lines added: {added:?}"
        );
        assert_eq!(
            getent_services(&m.path("/etc/services"), "kerberos5/udp"),
            "kerberos 88/udp kerberos5 krb5 kerberos-sec",
            "{fixture}"
        );
    }
}

#[test]
fn the_dce_example_adds_kerberos5_where_no_udp_entry_names_it() {
    let debian = stock("debian12-services");
    let without = |pred: &dyn Fn(&str) -> bool| -> String {
        debian
            .lines()
            .filter(|l| !pred(l))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let cases = [
        (
            "no kerberos entry",
            without(&|l| l.starts_with("kerberos\t88/")),
        ),
        ("tcp only", without(&|l| l.starts_with("kerberos\t88/udp"))),
        (
            "kerberos5 only in a comment",
            without(&|l| l.starts_with("kerberos\t88/")) + "# kerberos5\t88/udp\n",
        ),
    ];
    for (case, original) in cases {
        assert!(!original.contains("kerberos\t88/udp"), "{case}");
        let (m, after) = converge_services(&original);
        assert_eq!(after, format!("{original}{KDC}"), "{case}");
        assert_eq!(
            getent_services(&m.path("/etc/services"), "kerberos5/udp"),
            "kerberos5 88/udp kdc",
            "{case}"
        );
        // A second run keeps the one entry.
        apply(&m);
        assert_eq!(
            fs::read_to_string(m.path("/etc/services")).unwrap(),
            after,
            "{case}"
        );
    }
}

/// A program beneath the root that appends its name and RPC_UNSUPPORTED_NETADDRS
/// to /dce.log.
fn fake_start(m: &Member, path: &str) {
    let file = m.path(path);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(
        &file,
        format!(
            "#!/bin/sh\necho \"$(basename \"$0\") ${{RPC_UNSUPPORTED_NETADDRS-unset}}\" >> '{}'\n",
            m.path("/dce.log").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_dce_servers_get_only_ipv4_non_service_addresses_of_the_cluster_network() {
    // alpha's cluster addresses and the dce service address, one more address on
    // the cluster's network, and what a real host also has: a docker and a libvirt
    // bridge, loopback, a ULA, a global and a link-local IPv6 address.
    let m = alpha(
        "9.3.240.1,9.3.240.66,9.3.240.2,9.3.240.99,172.17.0.1,192.168.122.1,127.0.0.1,\
         fd00::2,2001:db8::5,fe80::1",
    );
    let want = "9.3.240.1:9.3.240.66:9.3.240.99";
    fs::create_dir_all(m.path("/etc")).unwrap();
    fs::write(m.path("/etc/services"), stock("debian12-services")).unwrap();
    apply(&m);
    assert_eq!(
        fs::read_to_string(m.path("/etc/environment")).unwrap(),
        format!("RPC_UNSUPPORTED_NETADDRS={want}\n")
    );
    // The takeover: the servers see the value in their own environment.
    fake_start(&m, "/usr/bin/start.dce");
    fake_start(&m, "/usr/bin/start.dfs");
    let policy = example();
    agent(
        &m,
        &[
            "event",
            "package-start",
            "dce",
            "--id",
            "dce-1",
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    assert_eq!(
        fs::read_to_string(m.path("/dce.log")).unwrap(),
        format!("start.dce {want}\nstart.dfs {want}\n")
    );
}
