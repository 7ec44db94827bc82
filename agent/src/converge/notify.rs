//! Notifications: after every phase, each action that a repaired promise's
//! `notify` names runs once, in the order first named, however many promises
//! named it. A dry run reports the actions its would-be repairs name, as would
//! repair, and runs none (a handler's guards still run: they are checks).
//!
//! `command:NAME` runs the `[[handler]]` NAME as a command (guards, timeout, env);
//! `service:UNIT:VERB` runs `systemctl VERB UNIT`, which needs the running manager
//! ([`service::reach`]), else it is blocked with the reason; when the unit's files
//! changed since the manager loaded them, `systemctl daemon-reload` runs first, so a
//! restart after a rewritten unit file runs the new definition. A handler that nothing
//! notified is reported kept; one notified but not in force on this member (its
//! `when` excludes it) is blocked.

use std::collections::HashSet;

use tenet_policies::Unresolved;
use tenet_policies::model::{Notify, Promise, PromiseKind};

use super::service::{self, Reach, Scope};
use super::{Cx, Mode, Options, converge_step};
use crate::exec;
use crate::report::{PromiseEvent, Reporter, Status, Summary};

/// Runs what the `repaired` promises notify, then reports the handlers nothing notified.
pub(crate) fn run(
    cx: &Cx<'_>,
    options: Options<'_>,
    promises: &[Result<Promise<String>, Unresolved>],
    repaired: &[usize],
    handlers: &[usize],
    reporter: &mut dyn Reporter,
    summary: &mut Summary,
) {
    // Each action with the first promise that named it (whose origin it reports).
    let mut wanted: Vec<(&Notify, &Promise<String>)> = Vec::new();
    for p in repaired.iter().filter_map(|i| promises[*i].as_ref().ok()) {
        for n in &p.notify {
            if !wanted.iter().any(|(w, _)| *w == n) {
                wanted.push((n, p));
            }
        }
    }
    let handler = |name: &str| {
        handlers
            .iter()
            .copied()
            .find(|h| promises[*h].as_ref().is_ok_and(|p| p.id == name))
    };
    let mut ran: HashSet<usize> = HashSet::new();
    for (n, by) in wanted {
        let origin = by.origin.to_string();
        let event = match n {
            Notify::Service { unit, verb } => react(cx, &n.to_string(), origin, unit, verb.name()),
            Notify::Handler(name) => match handler(name) {
                Some(h) => {
                    ran.insert(h);
                    run_handler(promises, h, cx, options)
                }
                None => PromiseEvent {
                    id: name.clone(),
                    promise: "handler",
                    origin,
                    status: Status::Blocked,
                    changes: Vec::new(),
                    diffs: Vec::new(),
                    reason: Some(format!(
                        "notified, but the handler {name} is not in force on this member"
                    )),
                },
            },
        };
        summary.count(event.status);
        reporter.promise(&event);
    }
    for &h in handlers.iter().filter(|h| !ran.contains(h)) {
        let Ok(p) = &promises[h] else { continue };
        let event = PromiseEvent {
            id: p.id.clone(),
            promise: "handler",
            origin: p.origin.to_string(),
            status: Status::Kept,
            changes: Vec::new(),
            diffs: Vec::new(),
            reason: None,
        };
        summary.count(event.status);
        reporter.promise(&event);
    }
}

/// The handler at `h` run as the command it is, reported as a handler.
fn run_handler(
    promises: &[Result<Promise<String>, Unresolved>],
    h: usize,
    cx: &Cx<'_>,
    options: Options<'_>,
) -> PromiseEvent {
    let Ok(p) = &promises[h] else {
        return unreachable_event();
    };
    let PromiseKind::Handler(c) = &p.kind else {
        return unreachable_event();
    };
    let as_command = Promise {
        id: p.id.clone(),
        origin: p.origin.clone(),
        when: None,
        kind: PromiseKind::Command(c.clone()),
        notify: Vec::new(),
    };
    let (mut event, _) = converge_step(&as_command, cx.root, options);
    event.promise = "handler";
    event
}

fn unreachable_event() -> PromiseEvent {
    PromiseEvent {
        id: String::new(),
        promise: "handler",
        origin: String::new(),
        status: Status::Failed,
        changes: Vec::new(),
        diffs: Vec::new(),
        reason: Some("the engine lost track of a handler".to_string()),
    }
}

/// `systemctl VERB UNIT` on the running manager, or why it cannot run here.
fn react(cx: &Cx<'_>, id: &str, origin: String, unit: &str, verb: &str) -> PromiseEvent {
    let mut event = PromiseEvent {
        id: id.to_string(),
        promise: "notify",
        origin,
        status: Status::Blocked,
        changes: vec![format!("ran systemctl {verb} {unit}")],
        diffs: Vec::new(),
        reason: None,
    };
    if let Reach::Unreachable(why) = service::reach(cx) {
        event.changes.clear();
        event.reason = Some(why);
        return event;
    }
    let stale = match service::stale(cx, unit) {
        Ok(stale) => stale,
        Err(e) => {
            event.changes.clear();
            event.status = Status::Failed;
            event.reason = Some(e.to_string());
            return event;
        }
    };
    if stale {
        event.changes.insert(0, service::daemon_reload_change(unit));
    }
    if cx.mode == Mode::DryRun {
        event.status = Status::WouldRepair;
        return event;
    }
    if stale {
        match exec::run(&service::systemctl(cx, Scope::Manager, &["daemon-reload"])) {
            Ok(f) if f.success() => {}
            Ok(f) => {
                event.changes.truncate(1);
                event.status = Status::Failed;
                event.reason = Some(format!("systemctl daemon-reload {}", f.describe()));
                return event;
            }
            Err(e) => {
                event.changes.truncate(1);
                event.status = Status::Failed;
                event.reason = Some(e.to_string());
                return event;
            }
        }
    }
    match exec::run(&service::systemctl(cx, Scope::Manager, &[verb, unit])) {
        Ok(f) if f.success() => event.status = Status::Repaired,
        Ok(f) => {
            event.status = Status::Failed;
            event.reason = Some(format!("systemctl {}", f.describe()));
        }
        Err(e) => {
            event.status = Status::Failed;
            event.reason = Some(e.to_string());
        }
    }
    event
}
