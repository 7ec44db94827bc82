//! The shipped systemd units pass `systemd-analyze verify` with their commands
//! pointed at the built binaries, and say what the daemons and the timer need.
#![expect(
    clippy::disallowed_methods,
    reason = "the test runs systemd-analyze and writes unit copies"
)]

use std::path::Path;
use std::process::Command;

use tenet_tests::binary;

fn units() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/systemd"))
}

#[test]
fn units_verify_with_the_built_binaries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = binary("tenet-agent");
    let policyd = binary("tenet-policyd");
    for name in [
        "tenet-policyd.service",
        "tenet-agent.service",
        "tenet-agent.timer",
    ] {
        let text = std::fs::read_to_string(units().join(name)).expect("unit file");
        let text = text
            .replace("/usr/sbin/tenet-agent", &agent.to_string_lossy())
            .replace("/usr/sbin/tenet-policyd", &policyd.to_string_lossy());
        std::fs::write(dir.path().join(name), text).expect("unit copy");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(
            [
                "tenet-policyd.service",
                "tenet-agent.service",
                "tenet-agent.timer",
            ]
            .map(|n| dir.path().join(n)),
        )
        .output()
        .expect("systemd-analyze is installed (.ci/run installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[test]
fn the_timer_splays_and_the_agent_tolerates_report_codes() {
    let timer = std::fs::read_to_string(units().join("tenet-agent.timer")).expect("timer");
    assert!(
        timer.contains("RandomizedDelaySec="),
        "runs must be splayed"
    );
    let service = std::fs::read_to_string(units().join("tenet-agent.service")).expect("service");
    // Trust refused (4), an expired bundle (11) and a stale timestamp (12) fail the
    // unit; a master unreachable this once (10) does not.
    assert!(
        service.contains("SuccessExitStatus=1 5 6 10\n"),
        "{service}"
    );
    let policyd = std::fs::read_to_string(units().join("tenet-policyd.service")).expect("policyd");
    assert!(policyd.contains("serve --config"), "{policyd}");
}

/// policyd's unit is sandboxed for real now that pushed runs leave it (a transient
/// unit through systemd-run): the sandbox a pushed run used to inherit is asserted
/// here, and policyd's own tests check the argv that starts the agent outside it.
#[test]
fn finding_14_policyd_is_sandboxed_and_pushed_runs_leave_the_sandbox() {
    let policyd = std::fs::read_to_string(units().join("tenet-policyd.service")).expect("policyd");
    for line in [
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "ReadWritePaths=/var/lib/tenet",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ] {
        assert!(
            policyd.lines().any(|l| l == line),
            "{line} missing:\n{policyd}"
        );
    }
    assert!(policyd.contains("systemd-run"), "{policyd}");
    // By default (under systemd) the daemon starts pushed runs through systemd-run.
    let config = Command::new(binary("tenet-policyd"))
        .args(["serve", "--help"])
        .output()
        .expect("tenet-policyd serve --help");
    let help = String::from_utf8_lossy(&config.stdout);
    assert!(
        help.contains("start = MODE") && help.contains("\"auto\""),
        "{help}"
    );
}
