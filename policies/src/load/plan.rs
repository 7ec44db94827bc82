//! Reads `[[plan]]` tables and their `[[plan.step]]`s, and checks plans against
//! the cluster once every file is read.
//!
//! A step of a promise type is read by the same code as a top-level promise
//! (`Loader::promise_kind`); it takes no part in the conflict check and is never
//! warned about as an unguarded command, since a plan runs once per event.

use std::ops::Range;

use super::{
    Cx, Loader, NameKind, NameRef, PROMISE_TYPES, Str, Table, check_name, check_not_empty,
    default_id, one_of, parse_duration, tables,
};
use crate::diag::{Diagnostics, Origin};
use crate::model::{Configuration, Package};
use crate::plan::{Action, Plan, Step, Trigger};
use crate::read::closest;

/// The step types that are not promise types.
const HOSTNAME_SAVE: &str = "hostname-save";
const HOSTNAME_RESTORE: &str = "hostname-restore";

/// What the cross-file check needs to know about a plan besides the plan itself;
/// one per entry of `Loader::plans`, in the same order.
pub(super) struct PlanCheck {
    /// Where `package` was written; `None` when it was left out (master-move).
    package: Option<(Origin, String)>,
    /// The plan's header and field path, for problems of the plan as a whole.
    header: (Origin, String),
    /// Where `configurations` was written, if it was.
    configurations: Option<(Origin, String)>,
    /// Where `server = true` was written, if it was.
    server: Option<(Origin, String)>,
}

impl Loader<'_> {
    /// Reads one `[[plan]]` with its steps.
    pub(super) fn read_plan(&mut self, cx: &mut Cx<'_>, mut t: Table<'_, '_>, _i: usize) {
        let origin = cx.origin(&t.span);
        let header = (origin.clone(), t.path.clone());
        let name = t.req_str(cx, "name");
        if let Some(n) = &name {
            check_name(cx, n, &t.field("name"));
            if let Some((_, first)) = self.plan_names.iter().find(|(p, _)| *p == n.value) {
                cx.error(
                    &n.span,
                    &t.field("name"),
                    format!("plan `{}` is already defined at {first}", n.value),
                );
            }
            self.plan_names.push((n.value.to_string(), origin.clone()));
        }
        let _comment = t.str(cx, "comment");
        let trigger = t
            .req_str(cx, "on")
            .and_then(|s| one_of(cx, &s, &t.field("on"), &Trigger::ALL));
        let package = if trigger == Some(Trigger::MasterMove) {
            t.str(cx, "package")
        } else {
            t.req_str(cx, "package")
        };
        if let Some(p) = &package {
            self.refs.push(NameRef {
                kind: NameKind::Package,
                name: p.value.to_string(),
                origin: cx.origin(&p.span),
                field: t.field("package"),
            });
        }
        let configurations = configurations(cx, &mut t, "configurations");
        let configurations_at = t
            .value("configurations")
            .map(|v| (cx.origin(&v.span), t.field("configurations")));
        let server_at = t.value("server").map(|v| v.span);
        let server = t.bool(cx, "server").unwrap_or(false);
        let when = t
            .str(cx, "when")
            .and_then(|w| self.condition(cx, &w, &t.field("when")));
        let every = self.every(cx, &mut t, trigger);
        // The configurations the plan runs under, for checking its steps'.
        let plan_confs: Option<Vec<Configuration>> = match &configurations {
            Some(Some(list)) => Some(list.iter().map(|(c, _)| *c).collect()),
            Some(None) => Some(Configuration::ALL.iter().map(|(_, c)| *c).collect()),
            None => None,
        };
        let plan_name = name.as_ref().map_or("", |n| n.value);
        let steps = self.read_steps(cx, &mut t, plan_name, plan_confs.as_deref());
        t.finish(cx);
        let (Some(name), Some(trigger), Some(configurations), Some(every), Some(steps)) =
            (name, trigger, configurations, every, steps)
        else {
            return;
        };
        let server_at = server_at
            .filter(|_| server)
            .map(|s| (cx.origin(&s), format!("{}.server", header.1)));
        self.plan_checks.push(PlanCheck {
            package: package
                .as_ref()
                .map(|p| (cx.origin(&p.span), format!("{}.package", header.1))),
            header,
            configurations: configurations_at,
            server: server_at,
        });
        self.plans.push(Plan {
            name: name.value.to_string(),
            origin,
            trigger,
            // A master-move plan without `package` gets the policy server's in `check_plans`.
            package: package.map(|p| p.value.to_string()).unwrap_or_default(),
            configurations: configurations
                .map(|list| list.into_iter().map(|(c, _)| c).collect())
                .unwrap_or_else(|| Configuration::ALL.iter().map(|(_, c)| *c).collect()),
            server,
            when,
            every,
            steps,
        });
    }

    /// `every`: required for package-running, refused elsewhere. `Some(None)` when
    /// rightly absent, `None` when wrong.
    fn every(
        &mut self,
        cx: &mut Cx<'_>,
        t: &mut Table<'_, '_>,
        trigger: Option<Trigger>,
    ) -> Option<Option<std::time::Duration>> {
        let field = t.field("every");
        match (trigger, t.str(cx, "every")) {
            (Some(Trigger::PackageRunning), None) => {
                if !t.has("every") {
                    cx.error(
                        &t.span,
                        &field,
                        "a `package-running` plan needs `every`, such as \"5s\"",
                    );
                }
                None
            }
            (Some(Trigger::PackageRunning), Some(s)) => match parse_duration(s.value) {
                Some(d) if !d.is_zero() => Some(Some(d)),
                _ => {
                    cx.error(
                        &s.span,
                        &field,
                        "expected a duration such as \"5s\", \"1m\" or \"500ms\"",
                    );
                    None
                }
            },
            (Some(other), Some(s)) => {
                cx.error(
                    &s.span,
                    &field,
                    format!("`every` is only for `package-running` plans, not `{other}`"),
                );
                None
            }
            (None, _) => None,
            (Some(_), None) => Some(None),
        }
    }

    /// The `[[plan.step]]` array: `None` when it is missing, empty or a step is invalid.
    fn read_steps(
        &mut self,
        cx: &mut Cx<'_>,
        t: &mut Table<'_, '_>,
        plan: &str,
        plan_confs: Option<&[Configuration]>,
    ) -> Option<Vec<Step>> {
        let field = t.field("step");
        let Some(v) = t.value("step") else {
            cx.error(
                &t.span,
                &field,
                "a plan needs at least one step: add `[[plan.step]]` tables after it",
            );
            return None;
        };
        let items = tables(cx, v.clone(), &field, 0);
        if items.is_empty() {
            if v.value.as_array().is_some_and(|a| a.is_empty()) {
                cx.error(&v.span, &field, "a plan needs at least one step");
            }
            return None;
        }
        let mut saved = None;
        let mut ok = true;
        let mut steps = Vec::with_capacity(items.len());
        for (_, st) in items {
            match self.read_step(cx, st, plan, plan_confs, &mut saved) {
                Some(s) => steps.push(s),
                None => ok = false,
            }
        }
        ok.then_some(steps)
    }

    /// One step; `saved` says where the last earlier step that saves the hostname runs.
    fn read_step(
        &mut self,
        cx: &mut Cx<'_>,
        mut t: Table<'_, '_>,
        plan: &str,
        plan_confs: Option<&[Configuration]>,
        saved: &mut Option<SaveScope>,
    ) -> Option<Step> {
        let origin = cx.origin(&t.span);
        let ty = t.req_str(cx, "type");
        let name = t.str(cx, "name");
        let _comment = t.str(cx, "comment");
        let always = t.bool(cx, "always").unwrap_or(false);
        let confs = configurations(cx, &mut t, "configurations");
        if let (Some(Some(list)), Some(plan_confs)) = (&confs, plan_confs) {
            for (c, span) in list {
                if !plan_confs.contains(c) {
                    cx.warning(
                        span,
                        &t.field("configurations"),
                        format!("plan `{plan}` never runs under `{c}`, so this step never does"),
                    );
                }
            }
        }
        let when_str = t.str(cx, "when");
        let when_text = when_str.as_ref().map(|w| w.value.trim().to_string());
        let when = when_str.and_then(|w| self.condition(cx, &w, &t.field("when")));
        // The configurations this step runs under: its own, else its plan's.
        let runs_under: Vec<Configuration> = match confs.as_ref().and_then(Option::as_ref) {
            Some(list) => list.iter().map(|(c, _)| *c).collect(),
            None => plan_confs.map_or_else(
                || Configuration::ALL.iter().map(|(_, c)| *c).collect(),
                <[Configuration]>::to_vec,
            ),
        };
        // Explicit names may use templates, expanded per member like targets.
        if let Some(n) = &name {
            check_not_empty(cx, n, &t.path, "a step's name must not be empty");
            self.template_str(cx, n, &t.field("name"));
        }
        // Without a known type the other fields cannot be judged: report the type only.
        let ty = ty?;
        let action = match ty.value {
            HOSTNAME_SAVE => {
                *saved = Some(SaveScope {
                    runs_under,
                    when: when_text,
                });
                Some(Action::HostnameSave)
            }
            HOSTNAME_RESTORE => {
                match saved {
                    None => cx.error(
                        &ty.span,
                        &t.field("type"),
                        "`hostname-restore` needs an earlier `hostname-save` step in the same plan",
                    ),
                    Some(save) => {
                        restore_outside_save(cx, &ty, &t, save, &runs_under, when_text.as_deref())
                    }
                }
                Some(Action::HostnameRestore)
            }
            p if PROMISE_TYPES.contains(&p) => {
                self.promise_kind(cx, p, &mut t).map(Action::Promise)
            }
            other => {
                unknown_step_type(cx, &ty, &t.field("type"), other);
                return None;
            }
        };
        t.finish(cx);
        let action = action?;
        let name = match (name, &action) {
            (Some(n), _) => n.value.to_string(),
            (None, Action::Promise(kind)) => default_id(kind),
            (None, Action::HostnameSave) => HOSTNAME_SAVE.to_string(),
            (None, Action::HostnameRestore) => HOSTNAME_RESTORE.to_string(),
        };
        Some(Step {
            name,
            origin,
            always,
            configurations: confs?.map(|list| list.into_iter().map(|(c, _)| c).collect()),
            when,
            action,
        })
    }

    /// Cross-file checks of plans: the package of master-move plans, the plan's
    /// configurations against its package's, and the mutual-takeover rule (a
    /// `server = true` plan's package is not `mutual`, and none of its members is a
    /// member of a `mutual` package).
    pub(super) fn check_plans(&mut self, diags: &mut Diagnostics) {
        for (plan, check) in self.plans.iter_mut().zip(&self.plan_checks) {
            if check.package.is_none() {
                match &self.cluster.policy_server {
                    Some(p) => plan.package = p.clone(),
                    None => {
                        diags.error(
                            check.header.0.clone(),
                            format!("{}.package", check.header.1),
                            "a `master-move` plan needs `package`, or `policy_server` in `[cluster]`",
                        );
                        continue;
                    }
                }
            }
            // An unknown package is reported with the other references.
            let Some(package) = self.cluster.package(&plan.package) else {
                continue;
            };
            let configuration = package.configuration;
            if !plan.configurations.contains(&configuration) {
                let (origin, field) = check
                    .configurations
                    .clone()
                    .unwrap_or_else(|| check.header.clone());
                diags.warning(
                    origin,
                    field,
                    format!(
                        "plan `{}` never runs: package `{}` is `{configuration}`, which `configurations` leaves out",
                        plan.name, package.name
                    ),
                );
            }
            if plan.server && configuration == Configuration::Mutual {
                let (origin, field) = check.server.clone().unwrap_or_else(|| check.header.clone());
                diags.error(
                    origin,
                    field,
                    format!(
                        "package `{}` is configured as mutual takeover, and DCE and DFS servers cannot reside on nodes configured as mutual takeover (HACMP for AIX, supported configurations); a `server = true` plan needs a cascading, rotating or one-sided package",
                        package.name
                    ),
                );
            } else if plan.server
                && let Some((mutual, member)) = mutual_peer(&self.cluster.packages, package)
            {
                // Not mutual itself, but a member of it is a mutual-takeover peer: the
                // plan would start servers on that node.
                let (origin, field) = check.server.clone().unwrap_or_else(|| check.header.clone());
                diags.error(
                    origin,
                    field,
                    format!(
                        "member `{member}` of package `{}` is also a member of package `{}`, which is configured as mutual takeover, and DCE and DFS servers cannot reside on nodes configured as mutual takeover (HACMP for AIX, supported configurations); a `server = true` plan needs a package none of whose members is a mutual-takeover peer",
                        package.name, mutual.name
                    ),
                );
            }
        }
    }
}

/// The first `mutual` package (in declaration order) that shares a member with
/// `package`, and that member (in `package`'s priority order).
fn mutual_peer<'a>(
    packages: &'a [Package],
    package: &'a Package,
) -> Option<(&'a Package, &'a str)> {
    packages
        .iter()
        .filter(|p| p.configuration == Configuration::Mutual && p.name != package.name)
        .find_map(|p| {
            package
                .members
                .iter()
                .find(|m| p.members.contains(m))
                .map(|m| (p, m.as_str()))
        })
}

/// A list of configuration names. `Some(None)` when absent, `None` when invalid.
#[expect(
    clippy::type_complexity,
    reason = "absent, invalid and valid are three different answers"
)]
fn configurations(
    cx: &mut Cx<'_>,
    t: &mut Table<'_, '_>,
    key: &'static str,
) -> Option<Option<Vec<(Configuration, Range<usize>)>>> {
    if !t.has(key) {
        t.value(key);
        return Some(None);
    }
    let list = t.str_list(cx, key)?;
    let field = t.field(key);
    if list.is_empty() {
        cx.error(
            &t.span,
            &field,
            "list at least one configuration, or leave the field out for every one",
        );
        return None;
    }
    let mut out = Vec::with_capacity(list.len());
    let mut ok = true;
    for s in &list {
        match one_of(cx, s, &field, &Configuration::ALL) {
            Some(c) => out.push((c, s.span.clone())),
            None => ok = false,
        }
    }
    ok.then_some(Some(out))
}

/// Where a plan's `hostname-save` step runs: what a later `hostname-restore` is held to.
#[derive(Debug)]
struct SaveScope {
    /// The configurations it runs under.
    runs_under: Vec<Configuration>,
    /// Its `when`, as written.
    when: Option<String>,
}

/// Warns when a `hostname-restore` can run where the `hostname-save` before it does
/// not: it would set a hostname that was never saved (and fail the plan).
fn restore_outside_save(
    cx: &mut Cx<'_>,
    ty: &Str<'_>,
    t: &Table<'_, '_>,
    save: &SaveScope,
    runs_under: &[Configuration],
    when: Option<&str>,
) {
    let extra: Vec<String> = runs_under
        .iter()
        .filter(|c| !save.runs_under.contains(c))
        .map(|c| format!("`{c}`"))
        .collect();
    if !extra.is_empty() {
        cx.warning(
            &ty.span,
            &t.field("configurations"),
            format!(
                "this `hostname-restore` runs under {}, where the `hostname-save` before it does not: list the same configurations",
                extra.join(", ")
            ),
        );
    }
    if let Some(w) = &save.when
        && when != Some(w.as_str())
    {
        cx.warning(
            &ty.span,
            &t.field("when"),
            format!(
                "the `hostname-save` before it runs only when `{w}`, and this `hostname-restore` {}: it can run where nothing was saved; give it the same `when`",
                match when {
                    Some(mine) => format!("has `when = \"{mine}\"`"),
                    None => "has no `when`".to_string(),
                }
            ),
        );
    }
}

fn unknown_step_type(cx: &mut Cx<'_>, ty: &Str<'_>, field: &str, other: &str) {
    let mut known: Vec<&str> = vec![HOSTNAME_SAVE, HOSTNAME_RESTORE];
    known.extend(PROMISE_TYPES);
    let message = match closest(other, &known) {
        Some(close) => format!("unknown step type `{other}`; did you mean `{close}`?"),
        None => format!(
            "unknown step type `{other}`; expected one of {}",
            known.join(", ")
        ),
    };
    cx.error(&ty.span, field, message);
}
