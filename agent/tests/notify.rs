//! `notify`: a repaired promise's actions run once, at the end of the run. A
//! handler that writes a line to a log beneath the root proves how often it ran:
//! once when two repaired promises notify it, never on a kept run, never in a dry
//! run (which says it would run).

use std::fs;

use crate::util::Sandbox;

const POLICY: &str = r#"
[[handler]]
name = "bump"
shell = "echo ran >> \"$TENET_ROOT/bump.log\""

[[handler]]
name = "never"
shell = "echo ran >> \"$TENET_ROOT/never.log\""

[[file]]
path = "/etc/app/a.conf"
content = "a\n"
notify = ["command:bump"]

[[file]]
path = "/etc/app/b.conf"
content = "b\n"
notify = ["command:bump"]

[[file]]
path = "/etc/app/c.conf"
content = "c\n"
notify = ["command:never"]
"#;

fn runs(sb: &Sandbox, log: &str) -> usize {
    fs::read_to_string(sb.at(log)).map_or(0, |s| s.lines().count())
}

#[test]
fn a_handler_runs_once_per_run_and_not_on_a_kept_run() {
    let sb = Sandbox::new();
    sb.policy(&[("app.toml", POLICY)]);
    // c.conf is already right, so its handler is never notified.
    crate::util::write(&sb.at("/etc/app/c.conf"), b"c\n");
    sb.check().expect_code(0);

    let dry = sb.apply_outside_state(&["--json", "--dry-run"]);
    dry.expect_code(0);
    let report = dry.report();
    let bump = report.event("bump");
    assert_eq!(bump["status"], "would_repair", "{bump}");
    assert_eq!(bump["promise"], "handler", "{bump}");
    assert_eq!(report.event("never")["status"], "kept");
    assert_eq!(runs(&sb, "/bump.log"), 0, "a dry run ran the handler");

    let first = sb.apply_outside_state(&["--json"]);
    first.expect_code(0);
    let report = first.report();
    assert_eq!(report.event("bump")["status"], "repaired");
    assert_eq!(report.event("never")["status"], "kept");
    let ids: Vec<String> = report.statuses().into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids.iter().filter(|id| *id == "bump").count(),
        1,
        "one event for the handler: {ids:?}"
    );
    assert_eq!(
        ids.last().map(String::as_str),
        Some("never"),
        "handlers are reported after every promise: {ids:?}"
    );
    assert_eq!(
        runs(&sb, "/bump.log"),
        1,
        "notified twice, it must run once"
    );
    assert_eq!(runs(&sb, "/never.log"), 0);

    let second = sb.apply_outside_state(&["--json"]);
    second.expect_code(0);
    assert_eq!(second.report().event("bump")["status"], "kept");
    assert_eq!(runs(&sb, "/bump.log"), 1, "a kept run notified the handler");
}

#[test]
fn a_service_notification_beneath_a_sandbox_root_is_blocked_with_its_reason() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "app.toml",
        "[[file]]\npath = \"/etc/app.conf\"\ncontent = \"x\\n\"\nnotify = [\"service:app:reload\"]\n",
    )]);
    let r = sb.apply_outside_state(&["--json"]);
    r.expect_code(1);
    let report = r.report();
    assert_eq!(report.event("file:/etc/app.conf")["status"], "repaired");
    let e = report.event("service:app.service:reload");
    assert_eq!(e["status"], "blocked", "{e}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("only when the agent's root is /"),
        "{e}"
    );
    assert_eq!(
        fs::read_to_string(sb.at("/etc/app.conf")).ok().as_deref(),
        Some("x\n")
    );
    let again = sb.apply_outside_state(&["--json"]);
    again.expect_code(0);
    assert!(
        again
            .report()
            .statuses()
            .iter()
            .all(|(id, s)| s == "kept" && id != "service:app.service:reload"),
        "{}",
        again.stdout
    );
}

#[test]
fn check_locates_notify_mistakes() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "app.toml",
        "[[file]]\npath = \"/etc/a\"\ncontent = \"\"\nnotify = [\"command:nope\", \"service:x:bounce\", \"restart\"]\n\n[[handler]]\nname = \"h\"\nargv = [\"/bin/true\"]\nnotfy = 1\n",
    )]);
    let r = sb.check();
    r.expect_code(3);
    let out = format!("{}{}", r.stdout, r.stderr);
    for want in [
        "app.toml:4:11: file[0].notify[0]: unknown handler `nope`",
        "app.toml:4:27: file[0].notify[1]: `bounce` is not one of reload, restart, try-restart, reload-or-restart",
        "app.toml:4:47: file[0].notify[2]: `restart` is neither `service:UNIT:VERB` nor `command:NAME`",
        "app.toml:9:1: handler[0].notfy: unknown field `notfy`",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}
