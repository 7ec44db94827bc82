//! `[[service]]` against the real `systemctl`: enablement on a sandbox root with
//! `systemctl --root`, observed through the links systemctl itself makes (never
//! through the agent's own report alone), and the running state's blocked paths
//! (beneath a sandbox root, and on a root where systemd is not running), where
//! nothing of such a promise is applied.
//!
//! The running state and `service:` notify actions against a live manager are in
//! `service_booted.rs`, which boots systemd as PID 1 of a throwaway container and
//! runs the agent inside it. `systemd --user` is no way around that here: systemd
//! 252 refuses to start it ("Trying to run as user instance, but the system has not
//! been booted with systemd") wherever `/run/systemd/system` is missing.

use std::fs;
use std::path::Path;

use crate::util::{Sandbox, run, write};

const UNIT: &str = "[Unit]\nDescription=tenet test unit\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n";

/// Where `systemctl enable` links the unit, beneath the root.
const WANTS: &str = "/etc/systemd/system/multi-user.target.wants/tenet-demo.service";
/// Where `systemctl mask` links the unit, beneath the root.
const MASK: &str = "/etc/systemd/system/tenet-demo.service";

fn sandbox_with_unit() -> Sandbox {
    let sb = Sandbox::new();
    write(
        &sb.at("/usr/lib/systemd/system/tenet-demo.service"),
        UNIT.as_bytes(),
    );
    sb
}

fn service_policy(sb: &Sandbox, fields: &str) {
    sb.policy(&[(
        "services.toml",
        &format!("[[service]]\nunit = \"tenet-demo\"\n{fields}\n"),
    )]);
}

fn link_target(p: &Path) -> Option<String> {
    fs::read_link(p)
        .ok()
        .map(|t| t.to_string_lossy().into_owned())
}

#[test]
fn service_enablement_converges_through_systemctl_root() {
    let sb = sandbox_with_unit();
    service_policy(&sb, "enablement = \"enabled\"");
    let id = "service:tenet-demo.service";

    let dry = sb.apply_outside_state(&["--json", "--dry-run"]);
    dry.expect_code(0);
    let e = dry.report().event(id).clone();
    assert_eq!(e["status"], "would_repair", "{e}");
    assert_eq!(e["changes"][0], "enabled tenet-demo.service", "{e}");
    assert_eq!(link_target(&sb.at(WANTS)), None, "a dry run made a link");

    let applied = sb.apply_outside_state(&["--json"]);
    applied.expect_code(0);
    assert_eq!(applied.report().event(id)["status"], "repaired");
    assert_eq!(
        link_target(&sb.at(WANTS)).as_deref(),
        Some("/usr/lib/systemd/system/tenet-demo.service"),
        "systemctl --root made no wants link"
    );
    let again = sb.apply_outside_state(&["--json"]);
    again.expect_code(0);
    assert_eq!(again.report().event(id)["status"], "kept");

    service_policy(&sb, "enablement = \"masked\"");
    let masked = sb.apply_outside_state(&["--json"]);
    masked.expect_code(0);
    assert_eq!(
        masked.report().event(id)["changes"][0],
        "masked tenet-demo.service"
    );
    assert_eq!(link_target(&sb.at(MASK)).as_deref(), Some("/dev/null"));
    assert_eq!(
        sb.apply_outside_state(&["--json"]).report().event(id)["status"],
        "kept"
    );

    service_policy(&sb, "enablement = \"disabled\"");
    let disabled = sb.apply_outside_state(&["--json"]);
    disabled.expect_code(0);
    let e = disabled.report().event(id).clone();
    assert_eq!(e["status"], "repaired", "{e}");
    assert_eq!(
        e["changes"],
        serde_json::json!(["unmasked tenet-demo.service", "disabled tenet-demo.service"])
    );
    assert_eq!(link_target(&sb.at(MASK)), None, "the mask is still there");
    assert_eq!(
        link_target(&sb.at(WANTS)),
        None,
        "the wants link is still there"
    );
    assert!(
        sb.at("/usr/lib/systemd/system/tenet-demo.service")
            .is_file(),
        "the unit file itself must stay"
    );
    assert_eq!(
        sb.apply_outside_state(&["--json"]).report().event(id)["status"],
        "kept"
    );
}

#[test]
fn service_without_a_unit_file_is_blocked_when_enabled_and_kept_when_disabled() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "services.toml",
        "[[service]]\nunit = \"tenet-missing.service\"\nenablement = \"enabled\"\n\n\
         [[service]]\nunit = \"tenet-other.service\"\nenablement = \"disabled\"\n",
    )]);
    let r = sb.apply_outside_state(&["--json"]);
    r.expect_code(1);
    let report = r.report();
    let e = report.event("service:tenet-missing.service");
    assert_eq!(e["status"], "blocked", "{e}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("has no unit file"),
        "{e}"
    );
    assert_eq!(
        report.event("service:tenet-other.service")["status"],
        "kept"
    );
}

#[test]
fn service_running_state_is_blocked_beneath_a_sandbox_root_and_nothing_applies() {
    let sb = sandbox_with_unit();
    service_policy(&sb, "enablement = \"enabled\"\nstate = \"running\"");
    let r = sb.apply_outside_state(&["--json"]);
    r.expect_code(1);
    let e = r.report().event("service:tenet-demo.service").clone();
    assert_eq!(e["status"], "blocked", "{e}");
    let why = e["reason"].as_str().unwrap_or_default();
    assert!(why.contains("only when the agent's root is /"), "{why}");
    assert_eq!(
        link_target(&sb.at(WANTS)),
        None,
        "a blocked promise must apply none of its parts"
    );
}

/// On the host's own root the running state needs a running systemd. This
/// promise changes nothing either way: the unit does not exist, so where systemd
/// runs it is simply not running (kept), and where it does not the promise is
/// blocked with that reason.
#[test]
fn service_running_state_without_systemd_is_blocked_with_its_reason() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "services.toml",
        "[[service]]\nunit = \"tenet-never-installed-3f9c.service\"\nstate = \"stopped\"\n",
    )]);
    let state = sb.state.to_str().expect("UTF-8 temp path");
    let policy = sb.policy.to_str().expect("UTF-8 temp path");
    let r = run([
        "apply",
        policy,
        "--root",
        "/",
        "--state-dir",
        state,
        "--json",
    ]);
    let report = r.report();
    let e = report.event("service:tenet-never-installed-3f9c.service");
    if Path::new("/run/systemd/system").is_dir() {
        r.expect_code(0);
        assert_eq!(e["status"], "kept", "{e}");
    } else {
        r.expect_code(1);
        assert_eq!(e["status"], "blocked", "{e}");
        let why = e["reason"].as_str().unwrap_or_default();
        assert!(
            why.contains("systemd is not running") && why.contains("/run/systemd/system"),
            "{why}"
        );
    }
}
