//! `tenet-agent plan show` and `plan simulate`: what the plans are, and what a member
//! would do if an event happened now. Both only read: nothing is changed, no command
//! runs (not even a guard), no lock is taken.

use std::convert::Infallible;
use std::io::{self, Write};

use tenet_policies::Unresolved;
use tenet_policies::model::{Configuration, Program, Promise, PromiseKind};
use tenet_policies::plan::{Action, Event, Plan, Step, Trigger};
use tenet_policies::template::Template;

use crate::converge::{self, Diffs, Mode};
use crate::failover::step_name;
use crate::ops::source::{EventError, Place, Scope, load};
use crate::report::Status;

/// What `plan show` needs.
#[derive(Debug, Clone)]
pub struct ShowOptions {
    /// Source, root and facts.
    pub scope: Scope,
    /// Resolve for this member (default: this one).
    pub member: Option<String>,
    /// Print JSON Lines (`tenet.plan.show.*`) instead of text.
    pub json: bool,
}

/// What `plan simulate` needs.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Source, root and facts.
    pub scope: Scope,
    /// The member whose view is simulated.
    pub member: String,
    /// What happens.
    pub event: Event,
    /// The packages the member holds at that moment (`None`: as its addresses say).
    pub holds: Option<Vec<String>>,
    /// Print JSON Lines (`tenet.plan.simulate.*`) instead of text.
    pub json: bool,
}

/// The `schema` family of `plan show` lines.
const SHOW: &str = "plan.show";
/// The `schema` family of `plan simulate` lines.
const SIMULATE: &str = "plan.simulate";

fn json_line(out: &mut dyn Write, family: &str, v: &serde_json::Value) -> io::Result<()> {
    tenet_keys::jsonl::write_line(out, family, v)
}

/// Writes every plan: trigger, package, configurations, and its steps resolved for
/// the member (a plan that does not apply to the member shows its steps as written).
pub fn show(opts: &ShowOptions, out: &mut dyn Write) -> Result<(), ShowError> {
    let place = Place::of(&opts.scope)?;
    let mut notes = Vec::new();
    let loaded = load(&opts.scope, &place, opts.member.as_deref(), &mut notes)?;
    if opts.json {
        return show_json(&loaded, &notes, out);
    }
    for n in &notes {
        writeln!(out, "{n}")?;
    }
    let member = loaded
        .facts
        .member
        .clone()
        .unwrap_or_else(|| "(this member)".to_string());
    let policy = &loaded.policy;
    writeln!(
        out,
        "{} plans in {}, resolved for member {member}",
        policy.plans.len(),
        loaded.source
    )?;
    for plan in &policy.plans {
        writeln!(out)?;
        writeln!(out, "plan {} ({})", plan.name, plan.origin)?;
        writeln!(out, "  on {} of package {}", plan.trigger, plan.package)?;
        if !plan.configurations.is_empty() {
            let c: Vec<&str> = plan
                .configurations
                .iter()
                .map(|c| configuration(*c))
                .collect();
            writeln!(out, "  configurations: {}", c.join(", "))?;
        }
        if plan.server {
            writeln!(out, "  starts or stops servers")?;
        }
        if let Some(every) = plan.every {
            writeln!(out, "  every {}", seconds(every))?;
        }
        let event = event_for(plan, &member, policy);
        let selection = policy.plans_for(&event, &loaded.facts);
        match selection.runs.iter().find(|r| r.plan == plan.name) {
            Some(run) => {
                writeln!(out, "  runs on {member} on {}: {}", event, run.why)?;
                for (i, step) in run.steps.iter().enumerate() {
                    writeln!(out, "  {}. {}", i + 1, describe_resolved(step))?;
                }
            }
            None => {
                writeln!(
                    out,
                    "  does not run on {member} on {}{}",
                    event,
                    if selection.notes.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", selection.notes.join("; "))
                    }
                )?;
                for (i, step) in plan.steps.iter().enumerate() {
                    writeln!(out, "  {}. {}", i + 1, describe_written(step))?;
                }
            }
        }
    }
    Ok(())
}

/// Writes what `member` would do if `event` happened now: the selection's notes,
/// the plans and their steps in order, and for each promise step whether it would
/// change something now (a dry run beneath the root; commands are not run).
pub fn simulate(opts: &SimulateOptions, out: &mut dyn Write) -> Result<(), ShowError> {
    let place = Place::of(&opts.scope)?;
    let mut notes = Vec::new();
    let mut loaded = load(&opts.scope, &place, Some(&opts.member), &mut notes)?;
    if let Some(holds) = &opts.holds {
        loaded.facts.holds = Some(holds.iter().cloned().collect());
    }
    if opts.json {
        return simulate_json(opts, &place, &mut loaded, &notes, out);
    }
    writeln!(
        out,
        "simulating {} on member {} ({}); nothing is changed and no command runs",
        opts.event, opts.member, loaded.source
    )?;
    if loaded.remote {
        // Another member: this machine's addresses say nothing about what it holds.
        let held = loaded.facts.holds.get_or_insert_with(Default::default);
        let held = if held.is_empty() {
            "nothing".to_string()
        } else {
            held.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        writeln!(
            out,
            "{} is not this machine's member: it holds {held} (only what --holds says), its hostname is {}, and this machine's addresses are not used",
            opts.member, loaded.facts.hostname
        )?;
    }
    for n in &notes {
        writeln!(out, "{n}")?;
    }
    let selection = loaded.policy.plans_for(&opts.event, &loaded.facts);
    for n in &selection.notes {
        writeln!(out, "note: {n}")?;
    }
    if selection.runs.is_empty() {
        writeln!(out, "no plan runs")?;
        return Ok(());
    }
    for run in &selection.runs {
        writeln!(out)?;
        writeln!(
            out,
            "plan {} ({} {}): {}",
            run.plan, run.trigger, run.package, run.why
        )?;
        for (i, step) in run.steps.iter().enumerate() {
            let now = match step {
                Ok(s) => would(s, &place, loaded.content_source()),
                Err(u) => format!("would fail: cannot be expanded here: {}", u.reason),
            };
            writeln!(out, "  {}. {}", i + 1, describe_resolved(step))?;
            writeln!(out, "       {now}")?;
        }
    }
    Ok(())
}

/// `plan show --json`: a `note` line per note, then a `plan` line per plan.
fn show_json(
    loaded: &crate::ops::source::Loaded,
    notes: &[String],
    out: &mut dyn Write,
) -> Result<(), ShowError> {
    for n in notes {
        json_line(
            out,
            SHOW,
            &serde_json::json!({"type": "note", "message": n}),
        )?;
    }
    let member = loaded.facts.member.clone();
    let policy = &loaded.policy;
    for plan in &policy.plans {
        let event = event_for(plan, member.as_deref().unwrap_or("(this member)"), policy);
        let selection = policy.plans_for(&event, &loaded.facts);
        let run = selection.runs.iter().find(|r| r.plan == plan.name);
        let steps: Vec<serde_json::Value> = match run {
            Some(run) => run
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| serde_json::json!({"index": i + 1, "step": describe_resolved(s), "always": s.as_ref().is_ok_and(|s| s.always)}))
                .collect(),
            None => plan
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| serde_json::json!({"index": i + 1, "step": describe_written(s), "always": s.always}))
                .collect(),
        };
        let why = match run {
            Some(run) => Some(run.why.clone()),
            None if selection.notes.is_empty() => None,
            None => Some(selection.notes.join("; ")),
        };
        json_line(
            out,
            SHOW,
            &serde_json::json!({
                "type": "plan",
                "plan": plan.name,
                "origin": plan.origin.to_string(),
                "trigger": plan.trigger.to_string(),
                "package": plan.package,
                "configurations": plan.configurations.iter().map(|c| configuration(*c)).collect::<Vec<_>>(),
                "server": plan.server,
                "every_ms": plan.every.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "member": member,
                "event": event.to_string(),
                "runs": run.is_some(),
                "why": why,
                "steps": steps,
            }),
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `plan simulate --json`: a `simulation` line, a `note` line per note, then a `plan`
/// line per plan that would run, each step with what it would do now.
fn simulate_json(
    opts: &SimulateOptions,
    place: &Place,
    loaded: &mut crate::ops::source::Loaded,
    notes: &[String],
    out: &mut dyn Write,
) -> Result<(), ShowError> {
    let holds = if loaded.remote {
        let held = loaded.facts.holds.get_or_insert_with(Default::default);
        Some(held.iter().cloned().collect::<Vec<_>>())
    } else {
        loaded
            .facts
            .holds
            .as_ref()
            .map(|h| h.iter().cloned().collect::<Vec<_>>())
    };
    json_line(
        out,
        SIMULATE,
        &serde_json::json!({
            "type": "simulation",
            "event": opts.event.to_string(),
            "member": opts.member,
            "source": loaded.source,
            "this_member": !loaded.remote,
            "holds": holds,
        }),
    )?;
    let selection = loaded.policy.plans_for(&opts.event, &loaded.facts);
    for n in notes.iter().chain(&selection.notes) {
        json_line(
            out,
            SIMULATE,
            &serde_json::json!({"type": "note", "message": n}),
        )?;
    }
    for run in &selection.runs {
        let steps: Vec<serde_json::Value> = run
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let now = match step {
                    Ok(s) => would(s, place, loaded.content_source()),
                    Err(u) => format!("would fail: cannot be expanded here: {}", u.reason),
                };
                serde_json::json!({"index": i + 1, "step": describe_resolved(step), "now": now})
            })
            .collect();
        json_line(
            out,
            SIMULATE,
            &serde_json::json!({
                "type": "plan",
                "plan": run.plan,
                "trigger": run.trigger.to_string(),
                "package": run.package,
                "why": run.why,
                "steps": steps,
            }),
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Why `plan show` or `plan simulate` did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShowError {
    /// Loading the plans failed.
    #[error(transparent)]
    Load(#[from] EventError),
    /// Writing the output failed.
    #[error("cannot write the output")]
    Write(#[from] io::Error),
}

impl ShowError {
    /// The exit code this error ends `plan` with.
    pub fn exit_code(&self) -> crate::exit::ExitCode {
        match self {
            Self::Load(e) => e.exit_code(),
            Self::Write(_) => crate::exit::ExitCode::Environment,
        }
    }
}

/// What a step would do now.
fn would(step: &Step<String>, place: &Place, source: Option<converge::Source<'_>>) -> String {
    match &step.action {
        Action::HostnameSave => "would save the hostname".to_string(),
        Action::HostnameRestore => "would set the hostname back to the saved one".to_string(),
        Action::Promise(PromiseKind::Command(c)) => match &c.creates {
            Some(p) => format!("would run, unless {p} exists then"),
            None => "would run".to_string(),
        },
        Action::Promise(kind) => {
            let p = Promise {
                id: step.name.clone(),
                origin: step.origin.clone(),
                when: None,
                kind: kind.clone(),
                notify: Vec::new(),
            };
            let (event, _) = converge::converge_step(
                &p,
                &place.root,
                converge::Options {
                    mode: Mode::DryRun,
                    diffs: Diffs::Skip,
                    state_dir: None,
                    source,
                    stat_cache: None,
                },
            );
            match event.status {
                Status::Kept => "already as promised: no change now".to_string(),
                Status::WouldRepair | Status::Repaired => {
                    format!("would change: {}", event.changes.join("; "))
                }
                s => format!(
                    "would fail ({}): {}",
                    s.word(),
                    event.reason.as_deref().unwrap_or("no reason given")
                ),
            }
        }
    }
}

/// The event that runs `plan` on `member`, for `plan show`.
fn event_for(plan: &Plan, member: &str, policy: &tenet_policies::Policy) -> Event {
    let p = plan.package.clone();
    match plan.trigger {
        Trigger::PackageStart => Event::PackageStart(p),
        Trigger::PackageStop => Event::PackageStop(p),
        Trigger::PackageRunning => Event::PackageRunning(p),
        // Reintegration happens when the package's owner comes back.
        Trigger::Reintegrate => Event::NodeUp(
            policy
                .cluster
                .package(&plan.package)
                .and_then(|k| k.members.first().cloned())
                .unwrap_or_else(|| member.to_string()),
        ),
        Trigger::MasterMove => Event::MasterMove(member.to_string()),
    }
}

fn configuration(c: Configuration) -> &'static str {
    match c {
        Configuration::Cascading => "cascading",
        Configuration::Rotating => "rotating",
        Configuration::OneSided => "one-sided",
        Configuration::Mutual => "mutual",
    }
}

fn seconds(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn describe_resolved(step: &Result<Step<String>, Unresolved>) -> String {
    match step {
        Ok(s) => describe(s, &|t: &String| t.clone()),
        Err(u) => format!("{}: cannot be expanded here: {}", step_name(step), u.reason),
    }
}

fn describe_written(step: &Step<Template>) -> String {
    describe(step, &|t: &Template| {
        t.render(&mut |r| Ok::<_, Infallible>(r.to_string()))
            .unwrap_or_default()
    })
}

/// `name: what it does [always]`.
fn describe<S>(step: &Step<S>, text: &dyn Fn(&S) -> String) -> String {
    let what = match &step.action {
        Action::HostnameSave => "hostname-save".to_string(),
        Action::HostnameRestore => "hostname-restore".to_string(),
        Action::Promise(kind) => describe_kind(kind, text),
    };
    let always = if step.always { " [always]" } else { "" };
    if step.name == what {
        format!("{what}{always}")
    } else {
        format!("{}: {what}{always}", step.name)
    }
}

fn describe_kind<S>(kind: &PromiseKind<S>, text: &dyn Fn(&S) -> String) -> String {
    let paths = |ps: &[tenet_policies::model::AbsPath]| {
        ps.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    match kind {
        PromiseKind::File(f) => format!("file {}", f.path),
        PromiseKind::Line(l) => format!("line in {}: {}", l.file, text(&l.line)),
        PromiseKind::Setting(s) => format!("setting {}={} in {}", s.key, text(&s.value), s.file),
        PromiseKind::Link(l) => format!("link {} -> {}", l.path, text(&l.target)),
        PromiseKind::Dir(d) => format!("dir {}", d.path),
        PromiseKind::Tree(t) => format!("tree {} from {}", t.path, t.source.display()),
        PromiseKind::Absent(a) => format!("absent {}", paths(&a.paths)),
        PromiseKind::Command(c) => {
            let program = match &c.program {
                Program::Argv(a) => a.iter().map(text).collect::<Vec<_>>().join(" "),
                Program::Shell(s) => format!("sh -c {:?}", text(s)),
            };
            let mut s = format!("command {program} (timeout {})", seconds(c.timeout));
            if let Some(p) = &c.creates {
                s.push_str(&format!(", unless {p} exists"));
            }
            if let Some(g) = &c.unless {
                s.push_str(&format!(
                    ", unless {} succeeds",
                    g.iter().map(text).collect::<Vec<_>>().join(" ")
                ));
            }
            if let Some(g) = &c.onlyif {
                s.push_str(&format!(
                    ", only if {} succeeds",
                    g.iter().map(text).collect::<Vec<_>>().join(" ")
                ));
            }
            s
        }
        PromiseKind::Hostname(h) => format!("hostname {}", text(&h.name)),
        PromiseKind::Copy(c) => format!("copy {} -> {}", c.from, c.to),
        PromiseKind::Handler(c) => {
            let program = match &c.program {
                Program::Argv(a) => a.iter().map(text).collect::<Vec<_>>().join(" "),
                Program::Shell(s) => format!("sh -c {:?}", text(s)),
            };
            format!("handler {program} (when notified)")
        }
        PromiseKind::Pkg(p) => format!("pkg {}", p.pkg),
        PromiseKind::Process(p) => {
            format!("process matching {} {}", p.matches.as_str(), p.state.name())
        }
        PromiseKind::Group(g) => format!("group {}", g.group),
        PromiseKind::User(u) => format!("user {}", u.user),
        PromiseKind::Service(u) => {
            let mut s = format!("service {}", u.unit);
            if let Some(e) = u.enablement {
                s.push_str(&format!(" {}", e.name()));
            }
            if let Some(r) = u.state {
                s.push_str(&format!(" {}", r.name()));
            }
            s
        }
    }
}
