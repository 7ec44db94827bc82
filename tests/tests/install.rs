//! The `.deb` that `scripts/package.sh` builds installs into a clean root and works
//! there: dpkg registers it, its postinst makes /etc/tenet and /var/lib/tenet inside
//! that root (never this machine's), the installed binaries run and are stripped,
//! and `systemd-analyze verify` passes on the installed units, with their commands
//! and `Documentation=man:` pages resolved inside the root.
//!
//! The package comes from a release build (minutes), so the test runs when
//! `TENET_DEB` names the `.deb` (`.ci/run` builds it and sets it); without it the
//! test says so and checks nothing. `TENET_REQUIRE_PACKAGE=1` turns that into a failure.
#![expect(
    clippy::disallowed_methods,
    reason = "the test runs dpkg, the installed binaries and systemd-analyze"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARIES: [&str; 3] = ["tenet-agent", "tenet-policyd", "tenet-keys"];
const UNITS: [&str; 3] = [
    "tenet-agent.service",
    "tenet-policyd.service",
    "tenet-agent.timer",
];

fn the_deb() -> Option<PathBuf> {
    match std::env::var_os("TENET_DEB") {
        Some(deb) => Some(PathBuf::from(deb)),
        None => {
            assert!(
                std::env::var_os("TENET_REQUIRE_PACKAGE").is_none(),
                "TENET_REQUIRE_PACKAGE is set but TENET_DEB is not: run scripts/package.sh deb \
                 and set TENET_DEB=target/debian/tenet_VERSION_ARCH.deb"
            );
            #[expect(clippy::print_stderr, reason = "say why nothing was checked")]
            {
                eprintln!("skipped: set TENET_DEB to the .deb that scripts/package.sh built");
            }
            None
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} could not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A root with an empty dpkg database: nothing installed, not even libc6.
fn clean_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let admin = root.path().join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(dir)).expect("dpkg database");
    }
    for file in ["status", "available"] {
        std::fs::File::create(admin.join(file)).expect("dpkg database");
    }
    root
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The man pages the units' `Documentation=man:NAME(SECTION)` lines name.
fn documented_pages(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter_map(|l| l.strip_prefix("Documentation="))
        .flat_map(str::split_whitespace)
        .filter_map(|d| d.strip_prefix("man:"))
        .filter_map(|d| {
            let (name, section) = d.strip_suffix(')')?.split_once('(')?;
            Some((name.to_owned(), section.to_owned()))
        })
        .collect()
}

#[test]
fn the_deb_installs_into_a_clean_root_and_its_units_verify() {
    let Some(deb) = the_deb() else { return };
    let root = clean_root();
    let r = root.path();

    // --force-script-chrootless: the postinst runs here with DPKG_ROOT=root, so it
    // must create its directories under $DPKG_ROOT (asserted below); libc6 is not
    // in the empty database, hence --force-depends.
    run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["--force-script-chrootless", "--force-depends", "--install"])
        .arg(&deb));
    let status = run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["--status", "tenet"]));
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("Status: install ok installed"), "{status}");

    // FHS directories from the postinst, inside the root.
    assert_eq!(mode(&r.join("etc/tenet")), 0o755);
    assert_eq!(mode(&r.join("var/lib/tenet")), 0o700);

    let version = format!(" {}\n", env!("CARGO_PKG_VERSION"));
    for bin in BINARIES {
        let path = r.join("usr/sbin").join(bin);
        assert_eq!(mode(&path), 0o755, "{}", path.display());
        let out = run(Command::new(&path).arg("--version"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{bin}{version}")
        );
        let sections = run(Command::new("readelf").arg("--section-headers").arg(&path));
        let sections = String::from_utf8_lossy(&sections.stdout);
        assert!(
            sections.contains(".text") && !sections.contains(".symtab"),
            "{bin} is not stripped:\n{sections}"
        );
    }

    for (file, want) in [
        ("usr/lib/ocf/resource.d/tenet/policyd", 0o755),
        ("usr/lib/ocf/resource.d/tenet/package", 0o755),
        ("usr/share/tenet/serviceguard/tenet-policyd.sh", 0o755),
        (
            "usr/share/tenet/serviceguard/tenet-policyd-service.sh",
            0o755,
        ),
        ("usr/share/tenet/serviceguard/tenet-policyd.conf", 0o644),
        ("usr/share/tenet/serviceguard/tenet-nfs.sh", 0o755),
        ("usr/share/tenet/powerha/tenet-policyd-start", 0o755),
        ("usr/share/tenet/powerha/tenet-node-up-pre", 0o755),
        ("usr/share/tenet/powerha/tenet-dce-start", 0o755),
        ("usr/share/tenet/powerha/tenet-node-down-post", 0o755),
        ("usr/share/tenet/powerha/tenet-members-post", 0o755),
        ("usr/lib/tenet/tenet-members-alert", 0o755),
        ("usr/share/tenet/keepalived/tenet-policyd-notify", 0o755),
        ("usr/share/tenet/keepalived/tenet-policyd-check", 0o755),
        ("usr/share/tenet/pacemaker/tenet-policyd.crm", 0o644),
        ("usr/share/doc/tenet/examples/agent.toml", 0o644),
        ("usr/share/doc/tenet/examples/policyd.toml", 0o644),
        ("usr/share/doc/tenet/install.md", 0o644),
        ("usr/share/doc/tenet/copyright", 0o644),
        ("usr/share/bash-completion/completions/tenet-agent", 0o644),
        ("usr/share/zsh/vendor-completions/_tenet-policyd", 0o644),
        ("usr/share/fish/vendor_completions.d/tenet-keys.fish", 0o644),
        ("usr/share/man/man8/tenet-agent-run.8.gz", 0o644),
        ("usr/share/man/man8/tenet-keys.8.gz", 0o644),
    ] {
        assert_eq!(mode(&r.join(file)), want, "{file}");
    }

    // The units as installed name the installed binaries and man pages.
    for unit in UNITS {
        let text = std::fs::read_to_string(r.join("usr/lib/systemd/system").join(unit))
            .expect("installed unit");
        for (name, section) in documented_pages(&text) {
            let page = r.join(format!("usr/share/man/man{section}/{name}.{section}.gz"));
            assert!(
                page.is_file(),
                "{unit}: {} is not installed",
                page.display()
            );
        }
    }

    // systemd-analyze verify --root resolves ExecStart= inside the root and runs
    // `man` for Documentation= (MANPATH points it at the root's pages). The units
    // it loads beside ours (sysinit.target, ...) are the systemd package's: copy
    // them in, never over ours.
    run(Command::new("cp")
        .args(["-a", "-n", "/usr/lib/systemd/system/."])
        .arg(r.join("usr/lib/systemd/system/")));
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .args(UNITS)
        .env("MANPATH", r.join("usr/share/man"))
        .output()
        .expect("systemd-analyze (.ci/run installs systemd and man-db)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify --root:\n{stderr}"
    );

    // Removal takes the files away again.
    run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["--force-script-chrootless", "--remove", "tenet"]));
    for bin in BINARIES {
        assert!(!r.join("usr/sbin").join(bin).exists(), "{bin} left behind");
    }
}

#[test]
fn unit_documentation_lines_are_parsed() {
    assert_eq!(
        documented_pages("[Unit]\nDocumentation=man:tenet-agent(8) https://x\n"),
        vec![("tenet-agent".to_owned(), "8".to_owned())]
    );
}
