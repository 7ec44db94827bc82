//! `[[pkg]]` against the real dpkg in a throwaway root: tiny `.deb` files built by
//! the test with `dpkg-deb --build`, a dpkg database made empty beneath the root,
//! and the state read back with `dpkg-query --admindir` by the test itself. A
//! `dpkg` wrapper first on `PATH` (it logs its arguments, then runs the real one)
//! shows how many transactions a run made.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{Sandbox, agent, mkdir, write, write_mode};

/// Runs a fixture tool (never the code under test) and returns its output.
#[expect(
    clippy::disallowed_methods,
    reason = "fixtures build packages and read the dpkg database with the real tools"
)]
fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Builds `NAME_VERSION.deb` in `dir`: one file, `/usr/share/NAME/version`.
fn build_deb(dir: &Path, name: &str, version: &str) -> PathBuf {
    let tree = dir.join(format!("{name}-{version}"));
    write(
        &tree.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: tenet tests <tests@example.org>\nDescription: a test package\n"
        )
        .as_bytes(),
    );
    write(
        &tree.join(format!("usr/share/{name}/version")),
        version.as_bytes(),
    );
    let deb = dir.join(format!("{name}_{version}.deb"));
    let out = tool(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "--build",
            tree.to_str().expect("UTF-8 temp path"),
            deb.to_str().expect("UTF-8 temp path"),
        ],
    );
    assert!(out.status.success(), "dpkg-deb: {out:?}");
    deb
}

/// A root with an empty dpkg database and the test's packages in `/srv/debs`.
fn dpkg_root() -> Sandbox {
    let sb = Sandbox::new();
    for d in ["info", "updates", "triggers"] {
        mkdir(&sb.at(&format!("/var/lib/dpkg/{d}")));
    }
    write(&sb.at("/var/lib/dpkg/status"), b"");
    let debs = sb.at("/srv/debs");
    for (name, version) in [
        ("tenet-alpha", "1.0"),
        ("tenet-alpha", "2.0"),
        ("tenet-beta", "1.0"),
        ("tenet-gamma", "1.0"),
    ] {
        build_deb(&debs, name, version);
    }
    sb
}

/// `STATUS VERSION` of a package, as `dpkg-query` reads the root's database.
fn query(sb: &Sandbox, name: &str) -> Option<String> {
    let admindir = format!("--admindir={}", sb.at("/var/lib/dpkg").display());
    let out = tool(
        "dpkg-query",
        &[&admindir, "-W", "-f=${db:Status-Abbrev}${Version}", name],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `dpkg` that logs each call to `log`, then runs the real one.
fn wrapper(sb: &Sandbox) -> (PathBuf, PathBuf) {
    let bin = sb.outside.join("bin");
    let log = sb.outside.join("dpkg-calls");
    write_mode(
        &bin.join("dpkg"),
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec /usr/bin/dpkg \"$@\"\n",
            log.display()
        )
        .as_bytes(),
        0o755,
    );
    (bin, log)
}

fn apply(sb: &Sandbox, bin: &Path, extra: &[&str]) -> crate::util::Run {
    let mut path = OsString::from(bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let out = agent()
        .arg("apply")
        .arg(&sb.policy)
        .arg("--root")
        .arg(&sb.root)
        .arg("--state-dir")
        .arg(&sb.state)
        .arg("--json")
        .args(extra)
        .env("PATH", path)
        .output()
        .expect("run tenet-agent");
    crate::util::Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn calls(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn packages_converge_through_dpkg_in_one_transaction_per_run() {
    let sb = dpkg_root();
    let (bin, log) = wrapper(&sb);
    // Starting state: beta installed, which the policy wants gone.
    let root = format!("--root={}", sb.root.display());
    let beta = sb.at("/srv/debs/tenet-beta_1.0.deb");
    let out = tool(
        "dpkg",
        &[&root, "--install", beta.to_str().expect("UTF-8 temp path")],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(query(&sb, "tenet-beta").as_deref(), Some("ii 1.0"));

    sb.policy(&[(
        "pkgs.toml",
        r#"
[[pkg]]
pkg = "tenet-alpha"
version = "1.0"
source = "/srv/debs/tenet-alpha_1.0.deb"

[[pkg]]
pkg = "tenet-gamma"
source = "/srv/debs/tenet-gamma_1.0.deb"

[[pkg]]
pkg = "tenet-beta"
state = "absent"
"#,
    )]);
    sb.check().expect_code(0);

    let dry = apply(&sb, &bin, &["--dry-run"]);
    dry.expect_code(0);
    let report = dry.report();
    assert_eq!(
        report.event("pkg:tenet-alpha")["changes"][0],
        "installed package tenet-alpha 1.0"
    );
    assert_eq!(report.event("pkg:tenet-beta")["status"], "would_repair");
    assert_eq!(query(&sb, "tenet-alpha"), None, "a dry run installed");
    assert_eq!(calls(&log), Vec::<String>::new(), "a dry run ran dpkg");

    let first = apply(&sb, &bin, &[]);
    first.expect_code(0);
    for (id, s) in first.report().statuses() {
        assert_eq!(s, "repaired", "{id}: {}", first.stdout);
    }
    assert_eq!(query(&sb, "tenet-alpha").as_deref(), Some("ii 1.0"));
    assert_eq!(query(&sb, "tenet-gamma").as_deref(), Some("ii 1.0"));
    assert_eq!(query(&sb, "tenet-beta"), None);
    assert_eq!(
        fs::read_to_string(sb.at("/usr/share/tenet-alpha/version"))
            .ok()
            .as_deref(),
        Some("1.0")
    );
    let made = calls(&log);
    assert_eq!(made.len(), 2, "one install and one removal: {made:?}");
    assert!(
        made[0].contains("--install")
            && made[0].contains("tenet-alpha_1.0.deb")
            && made[0].contains("tenet-gamma_1.0.deb"),
        "both packages in one dpkg --install: {made:?}"
    );
    assert!(made[1].ends_with("--remove tenet-beta"), "{made:?}");

    let again = apply(&sb, &bin, &[]);
    again.expect_code(0);
    for (id, s) in again.report().statuses() {
        assert_eq!(s, "kept", "{id}");
    }
    assert_eq!(calls(&log).len(), 2, "a kept run ran dpkg");

    // An upgrade to a pinned version.
    sb.policy(&[(
        "pkgs.toml",
        "[[pkg]]\npkg = \"tenet-alpha\"\nversion = \"2.0\"\nsource = \"/srv/debs/tenet-alpha_2.0.deb\"\n",
    )]);
    let upgrade = apply(&sb, &bin, &[]);
    upgrade.expect_code(0);
    assert_eq!(
        upgrade.report().event("pkg:tenet-alpha")["changes"][0],
        "installed package tenet-alpha 2.0 (was 1.0)"
    );
    assert_eq!(query(&sb, "tenet-alpha").as_deref(), Some("ii 2.0"));
}

#[test]
fn a_package_file_of_another_version_does_not_converge_and_repositories_are_blocked() {
    let sb = dpkg_root();
    let (bin, _) = wrapper(&sb);
    sb.policy(&[(
        "pkgs.toml",
        r#"
[[pkg]]
pkg = "tenet-alpha"
version = "2.0"
source = "/srv/debs/tenet-alpha_1.0.deb"

[[pkg]]
pkg = "tenet-delta"
"#,
    )]);
    let r = apply(&sb, &bin, &[]);
    r.expect_code(1);
    let report = r.report();
    let e = report.event("pkg:tenet-alpha");
    assert_eq!(e["status"], "did_not_converge", "{e}");
    let e = report.event("pkg:tenet-delta");
    assert_eq!(e["status"], "blocked", "{e}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("only from a `source` file"),
        "{e}"
    );
}

/// Neither database blocks, naming both; an empty `/var/lib/rpm` (Debian's rpm
/// package ships one) is no database, and nothing is made in it.
#[test]
fn a_root_without_a_package_database_blocks_packages() {
    let sb = Sandbox::new();
    mkdir(&sb.at("/var/lib/rpm"));
    sb.policy(&[("pkgs.toml", "[[pkg]]\npkg = \"tenet-alpha\"\n")]);
    let r = sb.apply_outside_state(&["--json"]);
    r.expect_code(1);
    let e = r.report().event("pkg:tenet-alpha").clone();
    assert_eq!(e["status"], "blocked", "{e}");
    let reason = e["reason"].as_str().unwrap_or_default();
    for named in [
        "no package database",
        "/var/lib/dpkg/status",
        "/var/lib/rpm",
        "/usr/lib/sysimage/rpm",
    ] {
        assert!(reason.contains(named), "{named}: {e}");
    }
    assert_eq!(
        crate::util::listing(&sb.at("/var/lib/rpm")),
        Vec::<String>::new()
    );
}
