//! The HA core through the binary: `start` starts the listener when needed and
//! returns only once serving, and is idempotent; `stop` demotes, keeps the listener,
//! and succeeds when nothing runs; `watch` exits as soon as serving stops; `validate`
//! checks without starting anything.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{DEADLINE, Daemon, Fixture, POLICYD, run};

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Kills a process by PID when dropped (the listener `start` spawned).
struct Pid(Option<i32>);

impl Drop for Pid {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn status_pid(cfg: &str) -> Option<i32> {
    let out = run(&["status", "--config", cfg]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pid: ")?.parse().ok())
}

#[test]
fn start_starts_the_listener_promotes_and_is_idempotent_and_stop_keeps_the_listener() {
    let fx = Fixture::new();
    let cfg = fx.config("");
    let cfg = cfg.to_str().unwrap();
    let bundle = fx.sign(1);
    let bundle = bundle.to_str().unwrap();

    // Nothing runs: stop is a success, status 1, watch 1.
    let out = run(&["stop", "--config", cfg]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(code(&run(&["status", "--config", cfg])), Some(1));
    assert_eq!(code(&run(&["watch", "--config", cfg])), Some(1));

    let out = run(&["start", "--config", cfg, "--bundle", bundle]);
    let mut guard = Pid(status_pid(cfg));
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("started the listener (pid"),
        "{}",
        text(&out)
    );
    assert!(guard.0.is_some(), "status names the daemon's pid");
    // Serving when start returns.
    let out = run(&["status", "--config", cfg]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(text(&out).contains("serial: 1\n"), "{}", text(&out));
    assert!(fx.path("state/serve.log").is_file());

    // Again: same daemon, still serving.
    let out = run(&["start", "--config", cfg, "--bundle", bundle]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(
        !text(&out).contains("started the listener"),
        "{}",
        text(&out)
    );
    assert_eq!(status_pid(cfg), guard.0);

    // A foreground watch exits 7 as soon as stop demotes; the listener stays.
    #[expect(clippy::disallowed_methods, reason = "runs the binary under test")]
    let mut watch = Command::new(POLICYD)
        .args(["watch", "--interval", "50ms", "--config", cfg])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        watch.try_wait().unwrap().is_none(),
        "watch exited while serving"
    );
    let out = run(&["stop", "--config", cfg]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = watch.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = watch.kill();
            let _ = watch.wait();
            panic!("watch did not exit after stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(7));
    assert_eq!(code(&run(&["status", "--config", cfg])), Some(7));
    assert_eq!(status_pid(cfg), guard.0, "the listener survives stop");
    assert_eq!(code(&run(&["stop", "--config", cfg])), Some(0));

    // The listener dies: stop is still a success (nothing is served), and start
    // brings up a new listener.
    let pid = guard.0.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let start = Instant::now();
    while code(&run(&["status", "--config", cfg])) != Some(1) {
        assert!(
            start.elapsed() < DEADLINE,
            "the killed daemon still answers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run(&["stop", "--config", cfg]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(text(&out).contains("not running"), "{}", text(&out));
    let out = run(&["start", "--config", cfg, "--bundle", bundle]);
    guard.0 = status_pid(cfg);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_ne!(guard.0, Some(pid));
    assert_eq!(code(&run(&["status", "--config", cfg])), Some(0));
}

#[test]
fn start_reports_a_refused_bundle_and_a_listener_that_cannot_start() {
    let fx = Fixture::new();
    let cfg = fx.config("");
    let cfg_s = cfg.to_str().unwrap();
    // No bundle there: the listener starts, the promotion fails, nothing is served.
    let out = run(&[
        "start",
        "--config",
        cfg_s,
        "--bundle",
        "/nonexistent/bundle",
    ]);
    let _guard = Pid(status_pid(cfg_s));
    assert_ne!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(code(&run(&["status", "--config", cfg_s])), Some(7));
    drop(_guard);

    // A node key that cannot be read: validate says 3, and so does start.
    let fx = Fixture::new();
    let cfg = fx.config("");
    let cfg_s = cfg.to_str().unwrap();
    let out = run(&["validate", "--config", cfg_s]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    std::fs::remove_file(fx.node_key_path("alpha")).unwrap();
    let out = run(&["validate", "--config", cfg_s]);
    assert_eq!(code(&out), Some(3), "{}", text(&out));
    assert!(text(&out).contains("node_key"), "{}", text(&out));
    let bundle = fx.sign(1);
    let out = run(&[
        "start",
        "--config",
        cfg_s,
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), Some(3), "{}", text(&out));
    assert!(text(&out).contains("exited"), "{}", text(&out));
}

#[test]
fn stop_demotes_a_daemon_started_elsewhere() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx.config(""));
    daemon.promote(&fx.sign(1));
    let out = daemon.command(&["stop"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(code(&daemon.command(&["status"])), Some(7));
}
