//! `[[pkg]]` against the real rpm in a throwaway root: tiny noarch `.rpm` files
//! built by the test with `rpmbuild` (every rpmbuild directory in the test's temp
//! directory), an rpm database made with `rpm --root --initdb`, and the state read
//! back with `rpm --root -q` by the test itself. An `rpm` wrapper first on `PATH`
//! (it logs its arguments, then runs the real one) shows how many transactions a
//! run made. The agent runs with `HOME` in a temp directory, which must stay empty:
//! Debian's rpm keeps its database in `~/.rpmdb` unless told otherwise.
//!
//! Without `rpm` or `rpmbuild` (Debian package `rpm`) the tests are skipped with a
//! printed reason, unless `TENET_REQUIRE_HA=1` (which `.ci/run` sets): then they fail.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tenet_tests::ha::{have_tools_from, which};

use crate::util::{Run, Sandbox, agent, listing, mkdir, symlink, write, write_mode};

/// The database directory the tests make beneath the root, as most roots have it.
const DBPATH: &str = "/var/lib/rpm";

/// Whether `rpm` and `rpmbuild` are here (else the test is skipped or, with
/// `TENET_REQUIRE_HA=1`, fails).
fn rpm_tools(test: &str) -> bool {
    have_tools_from(test, &["rpm", "rpmbuild"], "rpm")
}

/// A root with an empty rpm database at `dbpath`, the test's packages in
/// `/srv/rpms` beneath it, and a home and a log outside it.
struct RpmRoot {
    sb: Sandbox,
    dbpath: &'static str,
}

impl RpmRoot {
    fn new(dbpath: &'static str) -> Self {
        let sb = Sandbox::new();
        mkdir(&sb.outside.join("home"));
        mkdir(&sb.outside.join("fixture-home"));
        let r = Self { sb, dbpath };
        let out = r.rpm(&["--initdb"]);
        assert!(out.status.success(), "rpm --initdb: {out:?}");
        let rpms = r.sb.at("/srv/rpms");
        for (name, version, requires) in [
            ("tenet-alpha", "1.0", None),
            ("tenet-alpha", "2.0", None),
            ("tenet-beta", "1.0", None),
            ("tenet-gamma", "1.0", None),
            ("tenet-delta", "1.0", Some("tenet-alpha")),
            ("tenet_Epsilon", "1.0", None),
        ] {
            r.build_rpm(&rpms, name, version, requires);
        }
        r
    }

    /// Runs a fixture tool (never the code under test) with the fixtures' home.
    #[expect(
        clippy::disallowed_methods,
        reason = "fixtures build packages and read the rpm database with the real tools"
    )]
    fn tool(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("HOME", self.sb.outside.join("fixture-home"))
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// The real `rpm` on the root's database.
    fn rpm(&self, args: &[&str]) -> Output {
        let root = format!("--root={}", self.sb.root.display());
        let dbpath = format!("--dbpath={}", self.dbpath);
        let mut all = vec![root.as_str(), dbpath.as_str()];
        all.extend_from_slice(args);
        self.tool("rpm", &all)
    }

    /// Builds `NAME-VERSION-1.rpm` in `dir`: noarch, one file,
    /// `/usr/share/NAME/version`, and a `Requires:` when given.
    fn build_rpm(&self, dir: &Path, name: &str, version: &str, requires: Option<&str>) -> PathBuf {
        let work = self.sb.outside.join(format!("rpmbuild-{name}-{version}"));
        let requires = requires
            .map(|r| format!("Requires: {r}\n"))
            .unwrap_or_default();
        let spec = work.join(format!("{name}.spec"));
        write(
            &spec,
            format!(
                "Name: {name}\nVersion: {version}\nRelease: 1\nSummary: a test package\nLicense: MIT\nBuildArch: noarch\n{requires}\
                 %description\na test package\n\
                 %install\nmkdir -p %{{buildroot}}/usr/share/{name}\nprintf {version} > %{{buildroot}}/usr/share/{name}/version\n\
                 %files\n/usr/share/{name}/version\n"
            )
            .as_bytes(),
        );
        mkdir(&work.join("tmp"));
        mkdir(dir);
        let def = |k: &str, v: &Path| format!("{k} {}", v.display());
        let out = self.tool(
            "rpmbuild",
            &[
                "-bb",
                "--quiet",
                "--define",
                &def("_topdir", &work.join("top")),
                "--define",
                &def("_tmppath", &work.join("tmp")),
                "--define",
                &def("_rpmdir", dir),
                "--define",
                "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.rpm",
                spec.to_str().expect("UTF-8 temp path"),
            ],
        );
        assert!(out.status.success(), "rpmbuild: {out:?}");
        let file = dir.join(format!("{name}-{version}-1.rpm"));
        assert!(file.is_file(), "rpmbuild made no {}", file.display());
        file
    }

    /// Installs package files with the real rpm (a starting state).
    fn install(&self, files: &[&str]) {
        let paths: Vec<String> = files
            .iter()
            .map(|f| self.sb.at(f).display().to_string())
            .collect();
        let mut args = vec!["-U"];
        args.extend(paths.iter().map(String::as_str));
        let out = self.rpm(&args);
        assert!(out.status.success(), "{out:?}");
    }

    /// `VERSION-RELEASE` of an installed package, as rpm reads the root's database.
    fn query(&self, name: &str) -> Option<String> {
        let out = self.rpm(&["-q", "--qf", "%{VERSION}-%{RELEASE}", name]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// An `rpm` that logs each call, then runs the real one.
    fn wrapper(&self) -> PathBuf {
        let bin = self.sb.outside.join("bin");
        let real = which("rpm").expect("rpm on PATH");
        write_mode(
            &bin.join("rpm"),
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                self.log().display(),
                real.display()
            )
            .as_bytes(),
            0o755,
        );
        bin
    }

    fn log(&self) -> PathBuf {
        self.sb.outside.join("rpm-calls")
    }

    /// The logged rpm calls that changed the database (not queries).
    fn transactions(&self) -> Vec<String> {
        fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" -U ") || l.contains(" -e "))
            .map(str::to_string)
            .collect()
    }

    /// `apply --json` with the wrapper first on `PATH` and `HOME` outside the root.
    fn apply(&self, extra: &[&str]) -> Run {
        let mut path = OsString::from(self.wrapper());
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        let out = agent()
            .arg("apply")
            .arg(&self.sb.policy)
            .arg("--root")
            .arg(&self.sb.root)
            .arg("--state-dir")
            .arg(&self.sb.state)
            .arg("--json")
            .args(extra)
            .env("PATH", path)
            .env("HOME", self.sb.outside.join("home"))
            .output()
            .expect("run tenet-agent");
        let run = Run {
            code: out.status.code().expect("exit code"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert_eq!(
            listing(&self.sb.outside.join("home")),
            Vec::<String>::new(),
            "rpm wrote into HOME"
        );
        run
    }
}

/// What the host's own rpm databases hold, to show a test left them alone.
fn host_rpm_state() -> Vec<(PathBuf, Option<Vec<String>>)> {
    let mut dirs = vec![
        PathBuf::from("/var/lib/rpm"),
        PathBuf::from("/usr/lib/sysimage/rpm"),
    ];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".rpmdb"));
    }
    dirs.into_iter()
        .map(|d| {
            let seen = d.is_dir().then(|| listing(&d));
            (d, seen)
        })
        .collect()
}

/// Each promise's changes, by id.
fn changes(run: &Run) -> Vec<(String, String)> {
    let report = run.report();
    report
        .statuses()
        .into_iter()
        .map(|(id, _)| (id.clone(), report.event(&id)["changes"].to_string()))
        .collect()
}

#[test]
fn packages_converge_through_rpm_in_one_transaction_per_run() {
    if !rpm_tools("packages_converge_through_rpm_in_one_transaction_per_run") {
        return;
    }
    let host = host_rpm_state();
    let r = RpmRoot::new(DBPATH);
    // Starting state: beta installed, which the policy wants gone.
    r.install(&["/srv/rpms/tenet-beta-1.0-1.rpm"]);
    assert_eq!(r.query("tenet-beta").as_deref(), Some("1.0-1"));

    r.sb.policy(&[(
        "pkgs.toml",
        r#"
[[pkg]]
pkg = "tenet-alpha"
version = "1.0-1"
source = "/srv/rpms/tenet-alpha-1.0-1.rpm"

[[pkg]]
pkg = "tenet-gamma"
source = "/srv/rpms/tenet-gamma-1.0-1.rpm"

[[pkg]]
pkg = "tenet-beta"
state = "absent"
"#,
    )]);
    r.sb.check().expect_code(0);

    let dry = r.apply(&["--dry-run"]);
    dry.expect_code(0);
    let report = dry.report();
    assert_eq!(
        report.event("pkg:tenet-alpha")["changes"][0],
        "installed package tenet-alpha 1.0-1"
    );
    assert_eq!(
        report.event("pkg:tenet-gamma")["changes"][0],
        "installed package tenet-gamma"
    );
    assert_eq!(
        report.event("pkg:tenet-beta")["changes"][0],
        "removed package tenet-beta"
    );
    for (id, s) in report.statuses() {
        assert_eq!(s, "would_repair", "{id}: {}", dry.stdout);
    }
    assert_eq!(r.query("tenet-alpha"), None, "a dry run installed");
    assert_eq!(
        r.query("tenet-beta").as_deref(),
        Some("1.0-1"),
        "a dry run removed"
    );
    assert_eq!(
        r.transactions(),
        Vec::<String>::new(),
        "a dry run changed the database"
    );

    let first = r.apply(&[]);
    first.expect_code(0);
    for (id, s) in first.report().statuses() {
        assert_eq!(s, "repaired", "{id}: {}", first.stdout);
    }
    assert_eq!(
        changes(&first),
        changes(&dry),
        "the dry run listed other changes"
    );
    assert_eq!(r.query("tenet-alpha").as_deref(), Some("1.0-1"));
    assert_eq!(r.query("tenet-gamma").as_deref(), Some("1.0-1"));
    assert_eq!(r.query("tenet-beta"), None);
    assert_eq!(
        fs::read_to_string(r.sb.at("/usr/share/tenet-alpha/version"))
            .ok()
            .as_deref(),
        Some("1.0")
    );
    assert!(!r.sb.at("/usr/share/tenet-beta/version").exists());
    let made = r.transactions();
    assert_eq!(made.len(), 2, "one install and one removal: {made:?}");
    assert!(
        made[0].contains(" -U ")
            && made[0].contains(&format!("--dbpath={DBPATH}"))
            && made[0].contains("tenet-alpha-1.0-1.rpm")
            && made[0].contains("tenet-gamma-1.0-1.rpm"),
        "both packages in one rpm -U: {made:?}"
    );
    assert!(made[1].ends_with(" -e --allmatches tenet-beta"), "{made:?}");

    let again = r.apply(&[]);
    again.expect_code(0);
    for (id, s) in again.report().statuses() {
        assert_eq!(s, "kept", "{id}");
    }
    assert_eq!(r.transactions().len(), 2, "a kept run changed the database");

    // A version mismatch: the file's version is installed over the old one.
    r.sb.policy(&[(
        "pkgs.toml",
        "[[pkg]]\npkg = \"tenet-alpha\"\nversion = \"2.0-1\"\nsource = \"/srv/rpms/tenet-alpha-2.0-1.rpm\"\n",
    )]);
    let upgrade = r.apply(&[]);
    upgrade.expect_code(0);
    let e = upgrade.report().event("pkg:tenet-alpha").clone();
    assert_eq!(e["status"], "repaired", "{e}");
    assert_eq!(
        e["changes"][0],
        "installed package tenet-alpha 2.0-1 (was 1.0-1)"
    );
    assert_eq!(r.query("tenet-alpha").as_deref(), Some("2.0-1"));
    assert_eq!(
        fs::read_to_string(r.sb.at("/usr/share/tenet-alpha/version"))
            .ok()
            .as_deref(),
        Some("2.0")
    );

    // And back down: a pinned older version is what the policy asks for.
    r.sb.policy(&[(
        "pkgs.toml",
        "[[pkg]]\npkg = \"tenet-alpha\"\nversion = \"0:1.0-1\"\nsource = \"/srv/rpms/tenet-alpha-1.0-1.rpm\"\n",
    )]);
    r.apply(&[]).expect_code(0);
    assert_eq!(r.query("tenet-alpha").as_deref(), Some("1.0-1"));
    assert_eq!(host_rpm_state(), host, "the host's rpm databases changed");
}

#[test]
fn an_rpm_removal_that_breaks_a_dependency_fails_the_transaction() {
    if !rpm_tools("an_rpm_removal_that_breaks_a_dependency_fails_the_transaction") {
        return;
    }
    let r = RpmRoot::new(DBPATH);
    r.install(&[
        "/srv/rpms/tenet-alpha-1.0-1.rpm",
        "/srv/rpms/tenet-delta-1.0-1.rpm",
    ]);
    r.sb.policy(&[(
        "pkgs.toml",
        r#"
[[pkg]]
pkg = "tenet-alpha"
state = "absent"

[[pkg]]
pkg = "tenet-gamma"
source = "/srv/rpms/tenet-gamma-1.0-1.rpm"
"#,
    )]);
    let run = r.apply(&[]);
    run.expect_code(1);
    let report = run.report();
    for id in ["pkg:tenet-alpha", "pkg:tenet-gamma"] {
        let e = report.event(id);
        assert_eq!(
            e["status"], "failed",
            "every unit of the transaction fails: {e}"
        );
        let reason = e["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("rpm exited with status 1")
                && reason.contains("tenet-alpha is needed by (installed) tenet-delta"),
            "{e}"
        );
    }
    assert_eq!(
        r.query("tenet-alpha").as_deref(),
        Some("1.0-1"),
        "rpm broke a dependency"
    );
    assert_eq!(r.query("tenet-delta").as_deref(), Some("1.0-1"));
}

/// A database rpm cannot open fails each promise with rpm's reason, never as an
/// absent package (rpm prints "not installed" then too), and never a panic.
#[test]
fn a_malformed_or_unreadable_rpm_database_is_an_error() {
    if !rpm_tools("a_malformed_or_unreadable_rpm_database_is_an_error") {
        return;
    }
    let garbage = Sandbox::new();
    write(
        &garbage.at("/var/lib/rpm/rpmdb.sqlite"),
        b"not a database\n",
    );
    let unreadable = Sandbox::new();
    mkdir(&unreadable.at("/var/lib/rpm/rpmdb.sqlite"));
    for sb in [garbage, unreadable] {
        mkdir(&sb.outside.join("home"));
        let r = RpmRoot { sb, dbpath: DBPATH };
        r.sb.policy(&[(
            "pkgs.toml",
            "[[pkg]]\npkg = \"tenet-alpha\"\nstate = \"absent\"\n\n[[pkg]]\npkg = \"tenet-beta\"\nsource = \"/srv/b.rpm\"\n",
        )]);
        for extra in [&["--dry-run"][..], &[]] {
            let run = r.apply(extra);
            run.expect_code(1);
            let report = run.report();
            for id in ["pkg:tenet-alpha", "pkg:tenet-beta"] {
                let e = report.event(id);
                assert_eq!(e["status"], "failed", "{e}");
                let reason = e["reason"].as_str().unwrap_or_default();
                assert!(
                    reason.contains("rpm ") && reason.contains("cannot open Packages database"),
                    "{e}"
                );
            }
        }
        assert_eq!(r.transactions(), Vec::<String>::new());
    }
}

/// The newer place of the database, found through Fedora's link from the old one;
/// a name with capitals and `_`, as RPM names have (`NetworkManager`, `mod_ssl`);
/// and a version without a release, which rpm never prints, is blocked.
#[test]
fn a_sysimage_rpm_database_and_a_version_without_a_release() {
    if !rpm_tools("a_sysimage_rpm_database_and_a_version_without_a_release") {
        return;
    }
    let r = RpmRoot::new("/usr/lib/sysimage/rpm");
    mkdir(&r.sb.at("/var/lib"));
    symlink("../../usr/lib/sysimage/rpm", &r.sb.at("/var/lib/rpm"));
    r.sb.policy(&[(
        "pkgs.toml",
        r#"
[[pkg]]
pkg = "tenet-alpha"
version = "1.0-1"
source = "/srv/rpms/tenet-alpha-1.0-1.rpm"

[[pkg]]
pkg = "tenet-gamma"
version = "1.0"
source = "/srv/rpms/tenet-gamma-1.0-1.rpm"

[[pkg]]
pkg = "tenet_Epsilon"
source = "/srv/rpms/tenet_Epsilon-1.0-1.rpm"
"#,
    )]);
    let run = r.apply(&[]);
    run.expect_code(1);
    let report = run.report();
    assert_eq!(
        report.event("pkg:tenet-alpha")["status"],
        "repaired",
        "{}",
        run.stdout
    );
    let e = report.event("pkg:tenet-gamma");
    assert_eq!(e["status"], "blocked", "{e}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("`1.0` names no release"),
        "{e}"
    );
    assert_eq!(r.query("tenet-alpha").as_deref(), Some("1.0-1"));
    assert_eq!(r.query("tenet-gamma"), None);
    assert_eq!(r.query("tenet_Epsilon").as_deref(), Some("1.0-1"));
    let made = r.transactions();
    assert!(
        made.len() == 1
            && made[0].contains("--dbpath=/usr/lib/sysimage/rpm ")
            && made[0].contains("tenet_Epsilon-1.0-1.rpm"),
        "{made:?}"
    );
}
