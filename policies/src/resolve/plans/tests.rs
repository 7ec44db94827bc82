//! Tests of [`Policy::plans_for`]: every rule of the event table, on one cluster.

use std::path::Path;

use crate::Policy;
use crate::facts::Facts;
use crate::plan::{Action, Event, Selection, Trigger};

const CLUSTER: &str = r#"
[cluster]
name = "c"
policy_server = "tenet"

[[member]]
name = "alpha"

[[member]]
name = "beta"

[[member]]
name = "gamma"

[[package]]
name = "casc"
hostname = "casc.example.com"
ip = "10.0.0.10"
members = ["alpha", "beta"]
configuration = "cascading"

[[package]]
name = "rot"
hostname = "rot.example.com"
ip = "10.0.0.11"
members = ["alpha", "gamma"]
configuration = "rotating"

[[package]]
name = "tenet"
hostname = "tenet.example.com"
ip = "10.0.0.12"
members = ["gamma", "beta"]
configuration = "one-sided"

[[plan]]
name = "casc-start"
on = "package-start"
package = "casc"
server = true

[[plan.step]]
type = "command"
argv = ["/usr/bin/start.dce"]

[[plan]]
name = "casc-stop"
on = "package-stop"
package = "casc"

[[plan.step]]
type = "command"
argv = ["/usr/bin/stop.dce"]

[[plan]]
name = "casc-reintegrate"
on = "reintegrate"
package = "casc"

[[plan.step]]
type = "command"
argv = ["/usr/bin/mountpoint", "-q", "/var/dce"]

[[plan]]
name = "casc-arriving"
on = "package-start"
package = "casc"
when = "holds(casc)"

[[plan.step]]
type = "line"
file = "/etc/dce-here"
line = "${member} holds ${package.casc.hostname}"

[[plan]]
name = "casc-not-arriving"
on = "package-start"
package = "casc"
when = "!holds(casc)"

[[plan.step]]
type = "command"
argv = ["/bin/false"]

[[plan]]
name = "casc-running"
on = "package-running"
package = "casc"
every = "5s"

[[plan.step]]
type = "copy"
from = "/var/statmon/sm"
to = "/export/.sm"

[[plan]]
name = "rot-start"
on = "package-start"
package = "rot"

[[plan.step]]
type = "hostname-save"

[[plan.step]]
type = "hostname"
hostname = "${package.rot.hostname}"
persist = false
configurations = ["rotating"]

[[plan.step]]
type = "command"
argv = ["/usr/bin/only-cascading"]
configurations = ["cascading"]

[[plan.step]]
type = "command"
argv = ["/usr/bin/only-beta"]
when = "member(beta)"

[[plan.step]]
type = "hostname-restore"
always = true

[[plan]]
name = "rot-stop"
on = "package-stop"
package = "rot"

[[plan.step]]
type = "command"
argv = ["/usr/bin/stop", "${fact.rack}"]

[[plan]]
name = "rot-cascading-only"
on = "package-start"
package = "rot"
configurations = ["cascading"]

[[plan.step]]
type = "command"
argv = ["/bin/true"]

[[plan]]
name = "kick"
on = "master-move"

[[plan.step]]
type = "command"
argv = ["/usr/bin/logger", "master moved"]
"#;

fn policy() -> Policy {
    let tree = tempfile::tempdir().unwrap();
    #[expect(clippy::disallowed_methods, reason = "the test writes a policy tree")]
    std::fs::write(tree.path().join("p.toml"), CLUSTER).unwrap();
    crate::load(tree.path()).unwrap_or_else(|d| panic!("{d}"))
}

/// The selection for `member`, which holds exactly `holds` (comma-separated).
fn select(event: Event, member: &str, holds: &str) -> Selection {
    let mut facts = Facts::default();
    facts.set(&format!("member={member}")).unwrap();
    facts.set(&format!("holds={holds}")).unwrap();
    policy().plans_for(&event, &facts)
}

/// `trigger plan` per run, in order.
fn runs(s: &Selection) -> Vec<String> {
    s.runs
        .iter()
        .map(|r| format!("{} {}", r.trigger, r.plan))
        .collect()
}

fn has_note(s: &Selection, part: &str) {
    assert!(
        s.notes.iter().any(|n| n.contains(part)),
        "no note contains {part:?}: {:#?}",
        s.notes
    );
}

#[test]
fn package_start_runs_its_plans_in_order_with_the_package_held() {
    // beta does not hold casc yet: the package is arriving, so holds(casc) is true.
    let s = select(Event::PackageStart("casc".into()), "beta", "");
    assert_eq!(s.member.as_deref(), Some("beta"));
    assert_eq!(
        runs(&s),
        ["package-start casc-start", "package-start casc-arriving"]
    );
    has_note(
        &s,
        "plan `casc-not-arriving` skipped: its condition does not hold on beta",
    );
    assert!(s.runs.iter().all(|r| r.package == "casc"));
    assert!(
        s.runs[0].why.contains("is starting on beta"),
        "{}",
        s.runs[0].why
    );
    let Ok(step) = &s.runs[1].steps[0] else {
        panic!("{:?}", s.runs[1].steps)
    };
    assert_eq!(step.name, "line:/etc/dce-here:beta holds casc.example.com");
    let Action::Promise(crate::model::PromiseKind::Line(l)) = &step.action else {
        panic!("{:?}", step.action)
    };
    assert_eq!(l.line, "beta holds casc.example.com");
}

#[test]
fn package_stop_and_running_select_their_triggers() {
    let s = select(Event::PackageStop("casc".into()), "alpha", "casc");
    assert_eq!(runs(&s), ["package-stop casc-stop"]);
    let s = select(Event::PackageRunning("casc".into()), "alpha", "casc");
    assert_eq!(runs(&s), ["package-running casc-running"]);
    assert_eq!(
        s.runs[0].trigger,
        Trigger::PackageRunning,
        "the trigger is the plan's"
    );
}

#[test]
fn cascading_owner_returning_reintegrates_then_starts() {
    let s = select(Event::NodeUp("alpha".into()), "alpha", "");
    assert_eq!(
        runs(&s),
        [
            "reintegrate casc-reintegrate",
            "package-start casc-start",
            "package-start casc-arriving",
        ]
    );
    assert!(s.runs[0].why.contains("reintegrates"), "{}", s.runs[0].why);
    // alpha also owns the rotating package: no reintegration for it.
    has_note(
        &s,
        "`rot` is rotating: the returning member alpha takes the standby role; no reintegration",
    );
}

#[test]
fn cascading_standby_holding_the_package_stops_it_when_the_owner_returns() {
    let s = select(Event::NodeUp("alpha".into()), "beta", "casc");
    assert_eq!(runs(&s), ["package-stop casc-stop"]);
    assert!(s.runs[0].why.contains("stop side"), "{}", s.runs[0].why);
}

#[test]
fn a_standby_that_does_not_hold_the_package_does_nothing_on_return() {
    let s = select(Event::NodeUp("alpha".into()), "beta", "");
    assert!(s.runs.is_empty(), "{:?}", runs(&s));
    has_note(&s, "beta does not hold `casc`");
}

#[test]
fn rotating_has_no_reintegration_on_either_side() {
    // gamma holds the rotating package when its owner alpha returns.
    let s = select(Event::NodeUp("alpha".into()), "gamma", "rot");
    assert!(s.runs.is_empty(), "{:?}", runs(&s));
    has_note(&s, "`rot` is rotating");
    let s = select(Event::NodeUp("alpha".into()), "alpha", "");
    assert!(s.runs.iter().all(|r| r.package != "rot"), "{:?}", runs(&s));
}

#[test]
fn node_down_takes_over_where_the_package_is_now() {
    let s = select(Event::NodeDown("alpha".into()), "beta", "casc");
    assert_eq!(
        runs(&s),
        ["package-start casc-start", "package-start casc-arriving"]
    );
    assert!(s.runs[0].why.contains("takeover"), "{}", s.runs[0].why);
    let s = select(Event::NodeDown("alpha".into()), "beta", "");
    assert!(s.runs.is_empty(), "{:?}", runs(&s));
    has_note(&s, "beta does not hold `casc` after alpha left");
}

#[test]
fn node_down_of_a_lower_ranked_member_moves_nothing() {
    let s = select(Event::NodeDown("beta".into()), "alpha", "casc");
    assert!(s.runs.is_empty(), "{:?}", runs(&s));
    has_note(&s, "beta ranks below alpha for `casc`");
    // The member that left runs nothing for its own departure.
    let s = select(Event::NodeDown("beta".into()), "beta", "casc");
    assert!(s.runs.is_empty());
}

#[test]
fn steps_are_filtered_by_configuration_and_condition() {
    let s = select(Event::PackageStart("rot".into()), "gamma", "");
    assert_eq!(runs(&s), ["package-start rot-start"]);
    let names: Vec<&str> = s.runs[0]
        .steps
        .iter()
        .map(|st| st.as_ref().map_or("unresolved", |st| st.name.as_str()))
        .collect();
    assert_eq!(names, ["hostname-save", "hostname", "hostname-restore"]);
    let Ok(st) = &s.runs[0].steps[1] else {
        panic!()
    };
    let Action::Promise(crate::model::PromiseKind::Hostname(h)) = &st.action else {
        panic!("{:?}", st.action)
    };
    assert_eq!(h.name, "rot.example.com");
    assert!(s.runs[0].steps[2].as_ref().is_ok_and(|st| st.always));
    has_note(
        &s,
        "step `command:/usr/bin/only-cascading` skipped: only under cascading",
    );
    has_note(
        &s,
        "step `command:/usr/bin/only-beta` skipped: its condition",
    );
    has_note(
        &s,
        "plan `rot-cascading-only` skipped: package `rot` is rotating",
    );
}

#[test]
fn a_missing_fact_leaves_the_step_unresolved() {
    let s = select(Event::PackageStop("rot".into()), "gamma", "rot");
    let Err(u) = &s.runs[0].steps[0] else {
        panic!("{:?}", s.runs[0].steps)
    };
    assert_eq!(u.type_name, "command");
    assert!(u.reason.contains("fact `rack`"), "{}", u.reason);
    let mut facts = Facts::default();
    facts.set("member=gamma").unwrap();
    facts.set("rack=r12").unwrap();
    let s = policy().plans_for(&Event::PackageStop("rot".into()), &facts);
    assert!(s.runs[0].steps[0].is_ok());
}

#[test]
fn master_move_runs_on_every_member_for_the_policy_server_package() {
    for m in ["alpha", "beta", "gamma"] {
        let s = select(Event::MasterMove("beta".into()), m, "");
        assert_eq!(runs(&s), ["master-move kick"], "on {m}");
        assert_eq!(s.runs[0].package, "tenet");
    }
}

#[test]
fn unknown_packages_and_members_are_notes() {
    let s = select(Event::PackageStart("nfs".into()), "alpha", "");
    assert!(s.runs.is_empty());
    has_note(&s, "package `nfs` is not in the cluster config");
    let s = select(Event::NodeUp("alpha".into()), "delta", "");
    assert!(s.runs.is_empty());
    assert_eq!(s.member, None);
    has_note(&s, "member `delta` is not in the cluster config");
    has_note(&s, "this host is not a member of the cluster");
}

#[test]
fn plans_are_in_declaration_order_across_files() {
    let tree = tempfile::tempdir().unwrap();
    let (head, tail) = CLUSTER.split_at(CLUSTER.find("[[plan]]").unwrap());
    let extra = "[[plan]]\nname = \"a-first\"\non = \"package-stop\"\npackage = \"casc\"\n\n[[plan.step]]\ntype = \"command\"\nargv = [\"/bin/a\"]\n";
    #[expect(clippy::disallowed_methods, reason = "the test writes a policy tree")]
    {
        std::fs::write(tree.path().join("a.toml"), head).unwrap();
        std::fs::write(tree.path().join("b.toml"), tail).unwrap();
        std::fs::write(tree.path().join("c.toml"), extra).unwrap();
    }
    let p = crate::load(Path::new(tree.path())).unwrap_or_else(|d| panic!("{d}"));
    let mut facts = Facts::default();
    facts.set("member=alpha").unwrap();
    let s = p.plans_for(&Event::PackageStop("casc".into()), &facts);
    assert_eq!(runs(&s), ["package-stop casc-stop", "package-stop a-first"]);
}

/// `select`, with `started` (comma-separated) already started here by event `e0`.
fn select_started(event: Event, member: &str, holds: &str, started: &str) -> Selection {
    let mut facts = Facts::default();
    facts.set(&format!("member={member}")).unwrap();
    facts.set(&format!("holds={holds}")).unwrap();
    for p in started.split(',').filter(|p| !p.is_empty()) {
        facts.started.insert(
            p.to_string(),
            crate::facts::Started {
                event_id: "e0".to_string(),
                time: "2026-11-22T01:00:00Z".to_string(),
            },
        );
    }
    policy().plans_for(&event, &facts)
}

#[test]
fn node_down_does_not_start_again_a_package_already_started_here() {
    // The rotating package is on gamma already (started there by e0) when alpha leaves.
    let s = select_started(Event::NodeDown("alpha".into()), "gamma", "rot", "rot");
    assert!(s.runs.is_empty(), "{:?}", runs(&s));
    has_note(
        &s,
        "`rot` was already started here by event e0 at 2026-11-22T01:00:00Z; its start plans are not run again",
    );
    // Cascading: beta took casc over earlier; alpha leaving again moves nothing.
    let s = select_started(Event::NodeDown("alpha".into()), "beta", "casc", "casc");
    assert!(s.runs.is_empty(), "{:?}", runs(&s));
    has_note(&s, "`casc` was already started here by event e0");
    // Not started here: the takeover runs as before.
    let s = select_started(Event::NodeDown("alpha".into()), "gamma", "rot", "casc");
    assert_eq!(runs(&s), ["package-start rot-start"]);
}

#[test]
fn package_start_and_the_owners_return_run_nothing_for_a_package_started_here() {
    let s = select_started(Event::PackageStart("casc".into()), "beta", "casc", "casc");
    assert!(s.runs.is_empty(), "{:?}", runs(&s));
    has_note(&s, "`casc` was already started here by event e0");
    let s = select_started(Event::NodeUp("alpha".into()), "alpha", "casc", "casc");
    assert!(s.runs.is_empty(), "{:?}", runs(&s));
    has_note(&s, "`casc` was already started here");
    // Stopping is not affected.
    let s = select_started(Event::PackageStop("casc".into()), "beta", "casc", "casc");
    assert_eq!(runs(&s), ["package-stop casc-stop"]);
}
