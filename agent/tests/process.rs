//! `[[process]]` with real processes: a start command that daemonizes (a `sleep`
//! left in the background, its number unique to this test run) is started once,
//! kept while it runs, and stopped with a signal; the test reads `/proc` itself.
//! The run must not wait on the daemon: it keeps no pipe of the run's open. The
//! test kills whatever it started, by PID, when it ends.

use std::fs;

use crate::util::Sandbox;

/// The daemon's command line, unique to this test process.
fn daemon() -> String {
    format!("sleep 86400.{}", std::process::id())
}

/// Live (not zombie) processes whose command line is exactly `cmd`.
fn live(cmd: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']));
        let line = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = line
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !zombie && args.join(" ") == cmd {
            out.push(pid);
        }
    }
    out
}

/// Kills, on drop, every live process running the daemon's command line.
struct Reap(String);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in live(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn policy(sb: &Sandbox, state: &str) {
    let cmd = daemon();
    let pattern = format!("^{}$", cmd.replace('.', "\\\\."));
    sb.policy(&[(
        "proc.toml",
        &format!(
            "[[process]]\nname = \"daemon\"\nmatch = \"{pattern}\"\nstate = \"{state}\"\nstart = [\"/bin/sh\", \"-c\", \"{cmd} &\"]\ntimeout = \"20s\"\n"
        ),
    )]);
}

#[test]
fn a_daemon_is_started_once_kept_and_stopped() {
    let cmd = daemon();
    let _reap = Reap(cmd.clone());
    let sb = Sandbox::new();
    policy(&sb, "running");
    sb.check().expect_code(0);

    let dry = sb.apply_outside_state(&["--json", "--dry-run"]);
    dry.expect_code(0);
    let e = dry.report().event("daemon").clone();
    assert_eq!(e["status"], "would_repair", "{e}");
    assert_eq!(e["changes"][0], format!("started /bin/sh -c {cmd} &"));
    assert!(live(&cmd).is_empty(), "a dry run started it");

    let first = sb.apply_outside_state(&["--json"]);
    first.expect_code(0);
    assert_eq!(first.report().event("daemon")["status"], "repaired");
    assert_eq!(
        first.report().summary["duration_ms"]
            .as_u64()
            .map(|ms| ms < 15_000),
        Some(true),
        "the run waited on the daemon"
    );
    let pids = live(&cmd);
    assert_eq!(pids.len(), 1, "one daemon: {pids:?}");

    let again = sb.apply_outside_state(&["--json"]);
    again.expect_code(0);
    assert_eq!(again.report().event("daemon")["status"], "kept");
    assert_eq!(live(&cmd), pids, "a kept run started another");

    policy(&sb, "stopped");
    let stop = sb.apply_outside_state(&["--json"]);
    stop.expect_code(0);
    let e = stop.report().event("daemon").clone();
    assert_eq!(e["status"], "repaired", "{e}");
    assert_eq!(
        e["changes"][0],
        format!("signalled {} ({cmd}) with SIGTERM", pids[0])
    );
    assert!(live(&cmd).is_empty(), "still running after stop");
    let kept = sb.apply_outside_state(&["--json"]);
    kept.expect_code(0);
    assert_eq!(kept.report().event("daemon")["status"], "kept");
}

#[test]
fn check_locates_process_mistakes() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "proc.toml",
        "[[process]]\nmatch = \"(\"\n\n[[process]]\nmatch = \"x\"\nstate = \"stopped\"\nsignal = \"STOP\"\n\n[[process]]\nmatch = \"y\"\n",
    )]);
    let r = sb.check();
    r.expect_code(3);
    let out = format!("{}{}", r.stdout, r.stderr);
    for want in [
        "proc.toml:2:9: process[0].match: invalid regular expression",
        "proc.toml:7:10: process[1].signal: `STOP` is not one of TERM, KILL, INT, HUP, QUIT, USR1, USR2",
        "proc.toml:9:1: process[2].start: missing required field",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}
