//! Which failover plans this member runs for a cluster event: [`Policy::plans_for`].
//!
//! The cluster configuration decides what an event means here (takeover, the two
//! sides of reintegration, none for rotating packages); the plans' and steps'
//! `configurations` and `when` then filter, and every template is expanded with
//! the same lookups as promises.

use super::{Scope, Unresolved};
use crate::Policy;
use crate::facts::Facts;
use crate::model::{Configuration, Package};
use crate::plan::{Action, Event, PlanRun, Selection, Step, Trigger};
use crate::template::Template;

impl Policy {
    /// The failover plans the member described by `facts` runs for `event`, in
    /// order, each with the steps that apply here expanded; `notes` say what the
    /// cluster configuration decided and why plans or steps were left out.
    ///
    /// - `PackageStart(P)`, `PackageStop(P)`, `PackageRunning(P)`: the plans bound
    ///   to that trigger and package.
    /// - `NodeUp(N)`, for each package N owns: nothing for a rotating package (N
    ///   takes the standby role); otherwise on N its `reintegrate` then
    ///   `package-start` plans, and on a member that holds the package now its
    ///   `package-stop` plans.
    /// - `NodeDown(N)`, for each package of both N and this member that this member
    ///   holds now: its `package-start` plans (takeover), unless N ranks below this
    ///   member in a cascading, one-sided or mutual package (the package did not move).
    /// - `MasterMove(X)`: the `master-move` plans, on every member.
    ///
    /// A package in `facts.started` (this member started it since it booted) runs no
    /// start side again: `PackageStart(P)`, the takeover of `NodeDown(N)` and the
    /// owner's side of `NodeUp(N)` select nothing for it and say so in a note.
    ///
    /// While a plan's conditions are evaluated, `holds(P)` is true for its package.
    /// Never fails: a step that needs a missing fact is `Err(Unresolved)`, an
    /// unknown package or member is a note.
    pub fn plans_for(&self, event: &Event, facts: &Facts) -> Selection {
        let mut notes = Vec::new();
        let scope = Scope::new(self, facts, &mut notes);
        let mut s = Selector {
            policy: self,
            me: scope.member.map_or("this host", |m| m.name.as_str()),
            scope,
            runs: Vec::new(),
            notes,
        };
        match event {
            Event::PackageStart(p) => s.direct(Trigger::PackageStart, p, "is starting on"),
            Event::PackageStop(p) => s.direct(Trigger::PackageStop, p, "is stopping on"),
            Event::PackageRunning(p) => s.direct(Trigger::PackageRunning, p, "runs on"),
            Event::NodeUp(n) => s.node_up(n),
            Event::NodeDown(n) => s.node_down(n),
            Event::MasterMove(x) => s.master_move(x),
        }
        Selection {
            member: s.scope.member.map(|m| m.name.clone()),
            runs: s.runs,
            notes: s.notes,
        }
    }
}

/// Collects the runs and notes of one [`Policy::plans_for`].
struct Selector<'a> {
    policy: &'a Policy,
    scope: Scope<'a>,
    /// This member's name, or "this host" when the facts name no member.
    me: &'a str,
    runs: Vec<PlanRun>,
    notes: Vec<String>,
}

impl<'a> Selector<'a> {
    fn package(&mut self, name: &str) -> Option<&'a Package> {
        let p = self.policy.cluster.package(name);
        if p.is_none() {
            self.notes.push(format!(
                "package `{name}` is not in the cluster config; no plans"
            ));
        }
        p
    }

    /// An event about a package on this member, as the HA engine reports it.
    fn direct(&mut self, trigger: Trigger, package: &str, verb: &str) {
        let Some(p) = self.package(package) else {
            return;
        };
        if trigger == Trigger::PackageStart && self.already_started(&p.name) {
            return;
        }
        let why = format!(
            "package `{}` {verb} {} ({} configuration)",
            p.name, self.me, p.configuration
        );
        self.add(trigger, p, &why);
    }

    /// This member's name, or a note that the event needs one.
    fn member(&mut self, event: &str) -> Option<&'a str> {
        let me = self.scope.member.map(|m| m.name.as_str());
        if me.is_none() {
            self.notes.push(format!(
                "this host is not a member of the cluster, so {event} means nothing here; no plans"
            ));
        }
        me
    }

    fn known_member(&mut self, name: &str) {
        if self.policy.cluster.member(name).is_none() {
            self.notes
                .push(format!("member `{name}` is not in the cluster config"));
        }
    }

    fn node_up(&mut self, n: &str) {
        self.known_member(n);
        let Some(me) = self.member("a member's return") else {
            return;
        };
        let owned: Vec<&'a Package> = self
            .policy
            .cluster
            .packages
            .iter()
            .filter(|p| p.members.first().is_some_and(|o| o == n))
            .collect();
        if owned.is_empty() {
            self.notes
                .push(format!("`{n}` owns no package: nothing to reintegrate"));
        }
        for p in owned {
            let name = &p.name;
            if p.configuration == Configuration::Rotating {
                self.notes.push(format!(
                    "`{name}` is rotating: the returning member {n} takes the standby role; no reintegration"
                ));
            } else if me == n {
                if self.already_started(name) {
                    continue;
                }
                let c = p.configuration;
                self.add(
                    Trigger::Reintegrate,
                    p,
                    &format!(
                        "{n} owns `{name}` ({c}) and has returned: it reintegrates the package"
                    ),
                );
                self.add(
                    Trigger::PackageStart,
                    p,
                    &format!(
                        "{n} owns `{name}` ({c}) and has returned: the start side of reintegration, on the owner"
                    ),
                );
            } else if self.scope.holds(name) {
                self.add(
                    Trigger::PackageStop,
                    p,
                    &format!(
                        "{me} holds `{name}` ({}) and its owner {n} has returned: the stop side of reintegration, on the standby, before the owner starts it",
                        p.configuration
                    ),
                );
            } else if p.members.iter().any(|m| m == me) {
                self.notes.push(format!(
                    "{me} does not hold `{name}`: nothing to stop for {n}'s return"
                ));
            }
        }
    }

    fn node_down(&mut self, n: &str) {
        self.known_member(n);
        let Some(me) = self.member("a member leaving") else {
            return;
        };
        if me == n {
            self.notes
                .push(format!("{me} is the member that left; no plans"));
            return;
        }
        let shared: Vec<&'a Package> = self
            .policy
            .cluster
            .packages
            .iter()
            .filter(|p| p.members.iter().any(|m| m == n) && p.members.iter().any(|m| m == me))
            .collect();
        if shared.is_empty() {
            self.notes
                .push(format!("{me} shares no package with `{n}`: no takeover"));
        }
        for p in shared {
            let name = &p.name;
            let rank = |m: &str| p.members.iter().position(|x| x == m);
            if !self.scope.holds(name) {
                self.notes.push(format!(
                    "{me} does not hold `{name}` after {n} left: no takeover here"
                ));
            } else if p.configuration != Configuration::Rotating && rank(n) > rank(me) {
                // By priority the package was here already: it did not move.
                self.notes.push(format!(
                    "{n} ranks below {me} for `{name}` ({}), so the package did not move: no takeover",
                    p.configuration
                ));
            } else if !self.already_started(name) {
                self.add(
                    Trigger::PackageStart,
                    p,
                    &format!(
                        "{n} left the cluster and {me} holds `{name}` ({}): takeover",
                        p.configuration
                    ),
                );
            }
        }
    }

    /// Whether this member started `package` already (since it booted), with a note
    /// saying so: its start plans are not run again.
    fn already_started(&mut self, package: &str) -> bool {
        let Some(s) = self.scope.facts.started.get(package) else {
            return false;
        };
        self.notes.push(format!(
            "`{package}` was already started here by event {} at {}; its start plans are not run again",
            s.event_id, s.time
        ));
        true
    }

    fn master_move(&mut self, x: &str) {
        self.known_member(x);
        let Some(ps) = self.policy.cluster.policy_server.as_deref() else {
            self.notes.push(
                "the cluster names no policy_server package; no master-move plans".to_string(),
            );
            return;
        };
        let Some(p) = self.package(ps) else {
            return;
        };
        let why = format!(
            "the policy server package `{ps}` moved to {x}; master-move plans run on every member"
        );
        self.add(Trigger::MasterMove, p, &why);
    }

    /// The plans bound to `trigger` and `package` that apply here, in order.
    fn add(&mut self, trigger: Trigger, package: &'a Package, why: &str) {
        let conf = package.configuration;
        let mut any = false;
        self.scope.arriving = Some(&package.name);
        for plan in &self.policy.plans {
            if plan.trigger != trigger || plan.package != package.name {
                continue;
            }
            any = true;
            if !plan.configurations.contains(&conf) {
                let listed: Vec<&str> = plan.configurations.iter().map(|c| c.name()).collect();
                self.notes.push(format!(
                    "plan `{}` skipped: package `{}` is {conf}, and the plan runs only under {}",
                    plan.name,
                    package.name,
                    listed.join(", ")
                ));
                continue;
            }
            if !self.scope.eval(plan.when.as_ref()) {
                self.notes.push(format!(
                    "plan `{}` skipped: its condition does not hold on {}",
                    plan.name, self.me
                ));
                continue;
            }
            let mut steps = Vec::with_capacity(plan.steps.len());
            for step in &plan.steps {
                if let Some(only) = &step.configurations
                    && !only.contains(&conf)
                {
                    let listed: Vec<&str> = only.iter().map(|c| c.name()).collect();
                    self.notes.push(format!(
                        "plan `{}`: step `{}` skipped: only under {}, and `{}` is {conf}",
                        plan.name,
                        step.name,
                        listed.join(", "),
                        package.name
                    ));
                    continue;
                }
                if !self.scope.eval(step.when.as_ref()) {
                    self.notes.push(format!(
                        "plan `{}`: step `{}` skipped: its condition does not hold on {}",
                        plan.name, step.name, self.me
                    ));
                    continue;
                }
                steps.push(expand(&self.scope, step));
            }
            self.runs.push(PlanRun {
                plan: plan.name.clone(),
                origin: plan.origin.clone(),
                trigger,
                package: package.name.clone(),
                why: why.to_string(),
                steps,
            });
        }
        self.scope.arriving = None;
        if !any {
            self.notes
                .push(format!("no {trigger} plan for `{}`", package.name));
        }
    }
}

/// A step with its name and every text field expanded for this member.
fn expand(scope: &Scope<'_>, step: &Step) -> Result<Step<String>, Unresolved> {
    let unresolved = |reason: String| Unresolved {
        id: step.name.clone(),
        type_name: step.action.type_name(),
        origin: step.origin.clone(),
        reason,
    };
    let render = |t: &Template| t.render(&mut |r| scope.lookup(r));
    let action = match &step.action {
        Action::Promise(kind) => {
            Action::Promise(kind.clone().try_map(|t| render(&t)).map_err(unresolved)?)
        }
        Action::HostnameSave => Action::HostnameSave,
        Action::HostnameRestore => Action::HostnameRestore,
    };
    // Names are checked as templates at load; a default name repeats its target's
    // references, so it expands the same way.
    let name = match Template::parse(&step.name) {
        Ok(t) => render(&t).map_err(unresolved)?,
        Err(_) => step.name.clone(),
    };
    Ok(Step {
        name,
        origin: step.origin.clone(),
        always: step.always,
        configurations: step.configurations.clone(),
        when: step.when.clone(),
        action,
    })
}

#[cfg(test)]
mod tests;
