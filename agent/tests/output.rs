//! How the binary behaves toward its own streams: on a terminal (a real pty made by
//! `script` from util-linux), with a reader that has gone, with a log reader that
//! stamps lines itself (journald), and with an operator watching a long step.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;

use tenet_tests::fixture::DEADLINE;

use crate::util::{AGENT, Sandbox, agent, example};

/// Single-quotes `s` for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `AGENT args` with a pty as stdin, stdout and stderr (`script -qec`), and
/// returns its exit status and everything it wrote to the terminal.
#[expect(
    clippy::disallowed_methods,
    reason = "runs script(1), which runs the agent"
)]
fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let line = std::iter::once(AGENT)
        .chain(args.iter().copied())
        .map(sh_quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run script(1) from util-linux");
    let code = out.status.code().expect("script(1) exited");
    (code, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_terminal_gets_coloured_logs_and_no_panic_or_stray_line() {
    let tree = example();
    let tree = tree.to_str().expect("UTF-8 path");
    let (code, tty) = on_a_terminal(&["-vv", "check", tree], &[]);
    assert_eq!(code, 0, "{tty}");
    assert!(tty.contains("valid:"), "{tty}");
    assert!(!tty.contains("panicked"), "{tty}");
    assert!(!tty.contains("crate feature"), "{tty}");
    // With RUST_LOG, a debug line is logged; on a terminal it is coloured.
    let (code, tty) = on_a_terminal(&["check", tree], &[("RUST_LOG", "trace")]);
    assert_eq!(code, 0, "{tty}");
    assert!(
        !tty.contains("panicked") && !tty.contains("crate feature"),
        "{tty}"
    );
}

#[test]
fn a_reader_that_closes_early_ends_check_quietly() {
    let tree = example();
    let mut child = agent()
        .args([std::ffi::OsStr::new("check"), tree.as_os_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tenet-agent");
    // The only read end is closed before the agent writes: its first write fails with
    // EPIPE, as under `check | head -0`.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("tenet-agent ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "not quiet: {stderr}");
}

#[test]
fn log_lines_have_no_timestamp_when_stderr_is_not_a_terminal() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "f.toml",
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
    )]);
    let r = sb.apply_outside_state(&["-vv"]);
    r.expect_code(0);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("DEBUG") || l.contains("INFO")),
        "no log line to look at:\n{}",
        r.stderr
    );
    for l in lines {
        let stamped = l.len() > 10
            && l.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && l.as_bytes()[4] == b'-';
        assert!(!stamped, "a timestamp journald would duplicate: {l}");
    }
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "the test releases the command by a file"
)]
fn apply_shows_each_promise_while_a_later_step_still_runs() {
    let sb = Sandbox::new();
    let go = sb.outside.join("go");
    let go = go.to_str().expect("UTF-8 path");
    sb.policy(&[(
        "c.toml",
        &format!(
            "[[file]]\npath = \"/first\"\ncontent = \"x\\n\"\n\n\
             [[command]]\nshell = \"while [ ! -e {go} ]; do sleep 0.02; done\"\n"
        ),
    )]);
    let state = sb.state.to_str().expect("UTF-8 path");
    let root = sb.root.to_str().expect("UTF-8 path");
    let policy = sb.policy.to_str().expect("UTF-8 path");
    let mut child = agent()
        .args([
            "apply",
            policy,
            "--root",
            root,
            "--state-dir",
            state,
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tenet-agent");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The file promise is reported while the command is still waiting for `go`.
    let first = loop {
        match rx.recv_timeout(DEADLINE) {
            Ok(line) if line.contains("\"type\":\"promise\"") => break Ok(line),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    let seen_early = first.is_ok();
    std::fs::write(go, b"").expect("release the command");
    let status = child.wait().expect("tenet-agent ends");
    reader.join().expect("reader thread");
    assert!(status.success(), "{status:?}");
    let first = first.expect("a promise line while the command still ran");
    assert!(seen_early && first.contains("/first"), "{first}");
}
