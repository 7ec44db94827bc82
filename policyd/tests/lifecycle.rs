//! The daemon's life through its binary: configuration errors, status exit codes,
//! promotion refusals that keep the previous state, demotion, picking up a newer
//! serial, re-signing the timestamp, and SIGTERM.

use hyper::StatusCode;
use tenet_keys::bundle;
use tenet_keys::deployment::Deployment;

use crate::serving::tamper;
use crate::util::{Client, Daemon, Fixture, flip, metric, run};

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_configuration_exits_3_naming_the_problem() {
    let fx = Fixture::new();
    let path = fx.path("bad.toml");
    for (text, expected) in [
        // Each names the file, line and column, then the field.
        ("member = \"alpha\"\n", ":1:1: state_dir: is required"),
        (
            "member = \"alpha\"\nstate_dir = \"s\"\nnode_key = \"k\"\ntrusted_root = \"r\"\n[limits]\nmax_conections = 3\n",
            ":6:1: the configuration is malformed",
        ),
        (
            "member = \"alpha\"\nstate_dir = \"s\"\nnode_key = \"k\"\ntrusted_root = \"r\"\n[listener]\nlisten = \"localhost\"\n",
            ":6:10: listener.listen: ",
        ),
        (
            "member = \"alpha\"\nstate_dir = \"s\"\nnode_key = \"k\"\ntrusted_root = \"r\"\n\n[limits]\nidle_timeout = \"1h 30m\"\n",
            ":7:16: limits.idle_timeout: \"1h 30m\" is not a duration",
        ),
    ] {
        #[expect(clippy::disallowed_methods, reason = "a starting file for the test")]
        std::fs::write(&path, text).unwrap();
        let out = run(&["serve", "--config", path.to_str().unwrap()]);
        assert_eq!(code(&out), Some(3), "{text}: {}", stderr(&out));
        let expected = format!("{}{expected}", path.display());
        assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    }
    // A node key that cannot be read is the configuration's fault too.
    let cfg = fx.config("");
    std::fs::remove_file(fx.node_key_path("alpha")).unwrap();
    let out = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot use the node key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn status_exit_codes_follow_the_state() {
    let fx = Fixture::new();
    let cfg = fx.config("");
    // No daemon: 1.
    let out = run(&["status", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is it running?"), "{}", stderr(&out));

    let mut daemon = Daemon::start(&cfg);
    let out = daemon.command(&["status"]);
    assert_eq!(code(&out), Some(7), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("state: listening\n"));

    daemon.promote(&fx.sign(1));
    let out = daemon.command(&["status"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("state: serving\nserial: 1\n"), "{text}");

    let out = daemon.command(&["demote"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(code(&daemon.command(&["status"])), Some(7));
    // Demoting again is harmless.
    assert_eq!(code(&daemon.command(&["demote"])), Some(0));

    // SIGTERM: a clean exit, and the control socket is gone.
    let exit = daemon.terminate();
    assert_eq!(exit.code(), Some(0), "{}", daemon.log());
    assert!(!fx.path("state/control.sock").exists());
    assert_eq!(code(&daemon.command(&["status"])), Some(1));
}

#[tokio::test]
async fn a_tampered_bundle_is_refused_and_the_previous_one_keeps_being_served() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx.config(""));
    let one = fx.sign(1);
    // Nothing served yet: a bad bundle leaves the daemon listening.
    let two = fx.sign(2);
    let blob = std::fs::read_dir(two.join(bundle::BLOB_DIR))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let original = std::fs::read(&blob).unwrap();
    tamper(&blob, b"rm -rf /\n");
    let out = daemon.command(&["promote", "--bundle", two.to_str().unwrap()]);
    assert_eq!(code(&out), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not verify"), "{}", stderr(&out));
    assert!(stderr(&out).contains("still listening"), "{}", stderr(&out));
    assert_eq!(daemon.status().unwrap().serial, None);
    tamper(&blob, &original);

    daemon.promote(&one);
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());

    // A manifest edited after signing.
    let m = two.join(bundle::MANIFEST);
    let text = std::fs::read_to_string(&m).unwrap();
    tamper(&m, text.replace("serial = 2", "serial = 3").as_bytes());
    let out = daemon.command(&["promote", "--bundle", two.to_str().unwrap()]);
    assert_eq!(code(&out), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("still serving serial 1"),
        "{}",
        stderr(&out)
    );
    tamper(&m, text.as_bytes());

    // Serial 1 is still what members get.
    let (status, body) = beta.get(daemon.serving(), "/v1/manifest").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("serial = 1"));

    // The repaired serial 2 is taken; serial 1 is then refused as a rollback.
    daemon.promote(&two);
    let out = daemon.command(&["promote", "--bundle", one.to_str().unwrap()]);
    assert_eq!(code(&out), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("still serving serial 2"),
        "{}",
        stderr(&out)
    );
    // Promoting the served bundle again is fine (an HA engine may start twice).
    assert_eq!(daemon.promote(&two).serial, Some(2));
    let refused = metric(
        &daemon.metrics().await,
        "tenet_policyd_bundles_refused_total",
    );
    assert_eq!(refused, 3);
}

#[tokio::test]
async fn demotion_stops_the_bundle_routes_and_the_listener_keeps_answering() {
    let fx = Fixture::new();
    let bundle = fx.sign(1);
    // beta is an enrolled member in the manifest alpha's agent runs: the listener
    // admits it whether or not alpha serves.
    fx.agent_cache(&bundle);
    let mut daemon = Daemon::start(&fx.config(""));
    daemon.promote(&bundle);
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    let serving = daemon.serving();
    assert_eq!(
        beta.get(serving, "/v1/manifest").await.unwrap().0,
        StatusCode::OK
    );

    assert_eq!(daemon.command(&["demote"]).status.code(), Some(0));
    assert!(
        beta.get(serving, "/v1/manifest").await.is_err(),
        "the bundle is still served after demotion"
    );
    let listener = daemon.status().unwrap().listener;
    let health = Client::new(&fx.node_key("beta"), vec![fx.node_key("alpha").key_id()]);
    let (status, body) = health.get(listener, "/v1/health").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "state = \"listening\"\n");
    let text = daemon.metrics().await;
    assert_eq!(metric(&text, "tenet_policyd_promoted"), 0);
    assert_eq!(metric(&text, "tenet_policyd_serving_serial"), 0);

    // Promoted again, it serves again.
    daemon.promote(&bundle);
    let (status, _) = beta.get(daemon.serving(), "/v1/manifest").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    daemon.wait_for("serial 1", |d| {
        (d.status().ok()?.serial == Some(1)).then_some(())
    });
}

#[tokio::test]
async fn a_newer_serial_is_picked_up_without_a_restart() {
    let fx = Fixture::new();
    let mut daemon = Daemon::start(&fx.config(""));
    let current = fx.path("current");
    flip(&current, &fx.sign(1));
    daemon.promote(&current);

    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    let alpha = Client::new(&fx.node_key("alpha"), fx.server_pins());
    assert_eq!(
        beta.get(daemon.serving(), "/v1/manifest").await.unwrap().0,
        StatusCode::OK
    );

    // The publisher revokes beta, writes serial 2 into a new directory and flips the
    // link.
    Deployment::open(&fx.deployment)
        .unwrap()
        .revoke("beta")
        .unwrap();
    let two = fx.sign_tree(&fx.edited_tree("two", "second edition"), 2);
    flip(&current, &two);
    daemon.wait_for("serial 2 to be picked up", |d| {
        (d.status().ok()?.serial == Some(2)).then_some(())
    });
    let (_, body) = alpha.get(daemon.serving(), "/v1/manifest").await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("serial = 2"));
    let (_, ts) = alpha.get(daemon.serving(), "/v1/timestamp").await.unwrap();
    assert!(String::from_utf8_lossy(&ts).contains("serial = 2"));
    // The handshake now follows serial 2's inventory.
    let err = beta
        .get(daemon.serving(), "/v1/manifest")
        .await
        .expect_err("a revoked member must not be served");
    assert_eq!(
        crate::util::refusal(&err),
        Some(tenet_keys::tls::Refusal::ClientNotAdmitted),
        "{err}"
    );

    // A tampered serial 3 is refused once, and serial 2 stays.
    let three = fx.sign_tree(&fx.edited_tree("three", "third edition"), 3);
    let m = three.join(bundle::MANIFEST);
    let text = std::fs::read_to_string(&m).unwrap();
    tamper(&m, text.replace("serial = 3", "serial = 4").as_bytes());
    flip(&current, &three);
    daemon.wait_for("the tampered bundle to be refused", |d| {
        d.log()
            .contains("refused a new bundle; still serving the previous one")
            .then_some(())
    });
    assert_eq!(daemon.status().unwrap().serial, Some(2));

    // An older serial behind the link is refused too: serials never go backwards.
    flip(&current, &fx.path("bundles/1"));
    daemon.wait_for("the older bundle to be refused", |d| {
        (d.log().matches("refused a new bundle").count() >= 2).then_some(())
    });
    assert_eq!(daemon.status().unwrap().serial, Some(2));
}

#[test]
fn the_timestamp_is_signed_again_every_half_ttl() {
    let fx = Fixture::new();
    let cfg = fx.config("");
    // A 2 s TTL: signed again after 1 s.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "watch_interval = \"100ms\"",
        "watch_interval = \"100ms\"\ntimestamp_ttl = \"2s\"",
    );
    #[expect(clippy::disallowed_methods, reason = "a starting file for the test")]
    std::fs::write(&cfg, text).unwrap();
    let mut daemon = Daemon::start(&cfg);
    let first = daemon.promote(&fx.sign(1)).timestamp_version.unwrap();
    let second = daemon.wait_for("a newer timestamp", |d| {
        d.status().ok()?.timestamp_version.filter(|v| *v > first)
    });
    assert!(second > first);
}

/// The served serial survives a restart: a daemon that served serial 2 refuses to be
/// promoted with serial 1 after it was restarted, and still serves 2 and higher.
#[test]
fn a_restarted_daemon_never_serves_an_older_serial() {
    let fx = Fixture::new();
    let cfg = fx.config("");
    let (one, two) = (fx.sign(1), fx.sign(2));
    let mut daemon = Daemon::start(&cfg);
    daemon.promote(&two);
    assert_eq!(daemon.terminate().code(), Some(0), "{}", daemon.log());
    assert!(fx.path("state/ratchet.toml").is_file());

    let mut daemon = Daemon::start(&cfg);
    let out = daemon.command(&["promote", "--bundle", one.to_str().unwrap()]);
    assert_ne!(code(&out), Some(0), "serial 1 was promoted after serving 2");
    assert_eq!(code(&daemon.command(&["status"])), Some(7));
    assert!(
        daemon.log().contains("ratchet restored"),
        "{}",
        daemon.log()
    );
    let status = daemon.promote(&two);
    assert_eq!(status.serial, Some(2));
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// On a terminal (a pty made by `script` from util-linux) the daemon's logging starts
/// without a panic and without a line about a missing `ansi` feature.
#[test]
fn a_terminal_gets_no_panic_or_stray_line() {
    let fx = Fixture::new();
    let cfg = fx.config("");
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let line = [crate::util::POLICYD, "-vv", "status", "--config"]
        .iter()
        .map(|s| quote(s))
        .chain(std::iter::once(quote(cfg.to_str().unwrap())))
        .collect::<Vec<_>>()
        .join(" ");
    #[expect(
        clippy::disallowed_methods,
        reason = "runs script(1), which runs the daemon"
    )]
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1) from util-linux");
    let tty = String::from_utf8_lossy(&out.stdout);
    // No daemon runs: status exits 1 saying so, as off a terminal.
    assert_eq!(code(&out), Some(1), "{tty}");
    assert!(tty.contains("is it running?"), "{tty}");
    assert!(
        !tty.contains("panicked") && !tty.contains("crate feature"),
        "{tty}"
    );
}
