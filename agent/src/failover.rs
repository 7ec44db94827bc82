//! Failover plans: runs a [`Selection`]'s plans strictly in order, each step
//! finishing before the next starts.
//!
//! A promise step is converged by the engine exactly as a policy run would
//! ([`crate::converge`], apply mode, beneath the root); it is ok when its promise is
//! kept or repaired. A command step uses its promise's timeout (a timed-out command's
//! process group is killed and the step fails). `hostname-save` remembers the
//! current hostname in the event's journal; `hostname-restore` sets it back through
//! the hostname promise. The first failed step stops its plan and every later plan
//! of the event; steps of the failing plan marked `always` still run.
//!
//! With an [`EventJournal`], every step's start is on disk before it runs and its end before
//! the next starts (see [`journal`]); [`Earlier`] carries what an interrupted run
//! finished, so `--resume` re-runs the interrupted step and skips those that ended.
//! This module never prints: it reports to a [`StepReporter`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, SystemTime};

use tenet_policies::Unresolved;
use tenet_policies::model::{AbsPath, HostnamePromise, Promise, PromiseKind};
use tenet_policies::plan::{Action, PlanRun, Selection, Step};

use crate::converge::{self, Diffs, Mode};
use crate::fsops::{Follow, Root};
use crate::report::{Status, StepEvent, StepReporter, StepStatus};

pub mod journal;
pub mod started;

use journal::{EventJournal, History, JournalError, Outline, Record, StepEnd};

/// How much of a command's output a step keeps (journal, report).
pub const OUTPUT_TAIL_BYTES: usize = 2048;

/// Where steps run.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Every policy path resolves beneath it.
    pub root: &'a Root,
    /// The state directory (the engine's batch journals).
    pub state_dir: &'a Path,
    /// Where `file` steps read content known by its hash (a cached bundle).
    pub source: Option<converge::Source<'a>>,
}

/// What an interrupted run of the event finished, to continue from.
#[derive(Debug, Clone, Default)]
pub struct Earlier {
    /// Steps that ended, by plan and position: they are not run again.
    pub ends: BTreeMap<(String, usize), StepEnd>,
    /// The hostname an earlier `hostname-save` step saved.
    pub hostname: Option<String>,
}

impl Earlier {
    /// What the journal of an interrupted run says.
    pub fn from_history(h: &History) -> Earlier {
        Earlier {
            ends: h.step_ends(),
            hostname: h.saved_hostname(),
        }
    }
}

/// How the plans went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Plans selected.
    pub plans: usize,
    /// Steps that ended ok.
    pub ok: usize,
    /// Steps that failed.
    pub failed: usize,
    /// Steps not run because of an earlier failure.
    pub skipped: usize,
    /// The first failed step: `step N `name` of plan P: reason`.
    pub first_failure: Option<String>,
    /// Per selected plan, in order: whether every one of its steps ended ok.
    pub plans_ok: Vec<bool>,
}

impl Outcome {
    /// Whether no step failed.
    pub fn all_ok(&self) -> bool {
        self.failed == 0
    }

    fn count(&mut self, s: StepStatus) {
        match s {
            StepStatus::Ok => self.ok += 1,
            StepStatus::Failed => self.failed += 1,
            StepStatus::Skipped => self.skipped += 1,
        }
    }
}

/// A step's name: its own, or the id of the promise that could not be expanded.
pub fn step_name(step: &Result<Step<String>, Unresolved>) -> &str {
    match step {
        Ok(s) => &s.name,
        Err(u) => &u.id,
    }
}

/// The plans and their steps' names, as the journal's begin record keeps them.
pub fn outline(selection: &Selection) -> Vec<Outline> {
    selection
        .runs
        .iter()
        .map(|r| Outline {
            plan: r.plan.clone(),
            steps: r.steps.iter().map(|s| step_name(s).to_string()).collect(),
        })
        .collect()
}

/// Runs the selection's plans in order, journalling each step when `journal` is
/// given. Only a journal that cannot be written stops it early (an `Err`): a step
/// must never run unannounced.
pub fn execute(
    selection: &Selection,
    cx: Context<'_>,
    mut journal: Option<&mut EventJournal>,
    earlier: &Earlier,
    reporter: &mut dyn StepReporter,
) -> Result<Outcome, JournalError> {
    let mut outcome = Outcome {
        plans: selection.runs.len(),
        plans_ok: vec![true; selection.runs.len()],
        ..Outcome::default()
    };
    let mut saved = earlier.hostname.clone();
    // The plan that failed (by position) and the failed step, once one has.
    let mut failed: Option<(usize, String)> = None;
    for (pi, run) in selection.runs.iter().enumerate() {
        reporter.plan(&run.plan, run.trigger.name(), &run.package);
        for (i, step) in run.steps.iter().enumerate() {
            let index = i + 1;
            let name = step_name(step).to_string();
            if let Some(end) = earlier.ends.get(&(run.plan.clone(), index)) {
                tally(
                    &from_end(end, true),
                    pi,
                    &mut failed,
                    &mut outcome,
                    reporter,
                );
                continue;
            }
            let always = step.as_ref().is_ok_and(|s| s.always);
            if let Some((fp, why)) = &failed
                && (!always || *fp != pi)
            {
                let end = StepEnd {
                    plan: run.plan.clone(),
                    index,
                    name,
                    result: StepStatus::Skipped,
                    reason: Some(format!("not run: {why} failed")),
                    exit_code: None,
                    duration_ms: 0,
                    output: String::new(),
                    saved_hostname: None,
                };
                if let Some(j) = journal.as_deref_mut() {
                    j.append(&Record::StepEnd(end.clone()))?;
                }
                let e = from_end(&end, false);
                outcome.count(e.status);
                outcome.plans_ok[pi] = false;
                reporter.step(&e);
                continue;
            }
            if let Some(j) = journal.as_deref_mut() {
                j.append(&Record::StepStart {
                    plan: run.plan.clone(),
                    index,
                    name: name.clone(),
                    time: now(),
                })?;
            }
            let end = run_step(run, index, step, cx, &mut saved);
            if let Some(j) = journal.as_deref_mut() {
                j.append(&Record::StepEnd(end.clone()))?;
            }
            tally(
                &from_end(&end, false),
                pi,
                &mut failed,
                &mut outcome,
                reporter,
            );
        }
    }
    Ok(outcome)
}

/// The current time, RFC 3339 UTC.
pub fn now() -> String {
    tenet_keys::Time::from_system(SystemTime::now()).to_string()
}

/// `step N `name` of plan P: reason`.
pub fn describe(e: &StepEvent) -> String {
    format!(
        "{}: {}",
        which(e),
        e.reason.as_deref().unwrap_or("no reason given")
    )
}

/// `step N `name` of plan P`.
/// Counts a step's end (run now or in the journal's earlier run), remembers the
/// first failure, and reports it.
fn tally(
    e: &StepEvent,
    plan: usize,
    failed: &mut Option<(usize, String)>,
    outcome: &mut Outcome,
    reporter: &mut dyn StepReporter,
) {
    if e.status == StepStatus::Failed && failed.is_none() {
        *failed = Some((plan, which(e)));
        outcome.first_failure = Some(describe(e));
    }
    outcome.count(e.status);
    outcome.plans_ok[plan] &= e.status == StepStatus::Ok;
    reporter.step(e);
}

fn which(e: &StepEvent) -> String {
    format!("step {} `{}` of plan {}", e.index, e.step, e.plan)
}

/// The report of a step's end record.
pub fn from_end(end: &StepEnd, earlier: bool) -> StepEvent {
    StepEvent {
        kind: "step",
        plan: end.plan.clone(),
        step: end.name.clone(),
        index: end.index,
        status: end.result,
        reason: end.reason.clone(),
        duration_ms: end.duration_ms,
        exit_code: end.exit_code,
        output: if end.result == StepStatus::Failed {
            end.output.clone()
        } else {
            String::new()
        },
        earlier,
    }
}

/// Runs one step.
fn run_step(
    run: &PlanRun,
    index: usize,
    step: &Result<Step<String>, Unresolved>,
    cx: Context<'_>,
    saved: &mut Option<String>,
) -> StepEnd {
    let start = Instant::now();
    let mut end = StepEnd {
        plan: run.plan.clone(),
        index,
        name: step_name(step).to_string(),
        result: StepStatus::Failed,
        reason: None,
        exit_code: None,
        duration_ms: 0,
        output: String::new(),
        saved_hostname: None,
    };
    let _span = tracing::info_span!("step", plan = %run.plan, index, name = %end.name).entered();
    let step = match step {
        Ok(s) => s,
        Err(u) => {
            end.reason = Some(format!("cannot be expanded here: {}", u.reason));
            end.duration_ms = elapsed_ms(start);
            return end;
        }
    };
    let promise = |kind: PromiseKind<String>| Promise {
        id: step.name.clone(),
        origin: step.origin.clone(),
        when: None,
        kind,
        notify: Vec::new(),
    };
    match &step.action {
        Action::HostnameSave => match current_hostname(cx.root) {
            Ok(name) => {
                end.result = StepStatus::Ok;
                end.reason = Some(format!("saved hostname {name}"));
                end.saved_hostname = Some(name.clone());
                *saved = Some(name);
            }
            Err(why) => end.reason = Some(why),
        },
        Action::HostnameRestore => match saved.clone() {
            None => {
                end.reason = Some(
                    "no hostname was saved: no hostname-save step ran before it in this event"
                        .to_string(),
                );
            }
            Some(name) => {
                let p = promise(PromiseKind::Hostname(HostnamePromise {
                    name,
                    persist: false,
                }));
                converge_into(&p, cx, &mut end);
            }
        },
        Action::Promise(kind) => converge_into(&promise(kind.clone()), cx, &mut end),
    }
    end.duration_ms = elapsed_ms(start);
    end
}

/// Converges a step's promise and records the outcome in `end`.
fn converge_into(p: &Promise<String>, cx: Context<'_>, end: &mut StepEnd) {
    let (event, finished) = converge::converge_step(
        p,
        cx.root,
        converge::Options {
            mode: Mode::Apply,
            diffs: Diffs::Skip,
            state_dir: Some(cx.state_dir),
            source: cx.source,
            stat_cache: None,
        },
    );
    end.result = match event.status {
        Status::Kept | Status::Repaired => StepStatus::Ok,
        _ => StepStatus::Failed,
    };
    end.reason = match event.status {
        Status::Kept => Some("kept".to_string()),
        Status::Repaired if !event.changes.is_empty() => Some(event.changes.join("; ")),
        Status::Repaired => Some("repaired".to_string()),
        s => Some(format!(
            "{}: {}",
            s.word(),
            event.reason.as_deref().unwrap_or("no reason given")
        )),
    };
    if let Some(f) = finished {
        end.exit_code = f.code;
        let mut out = f.stdout;
        out.push_str(&f.stderr);
        end.output = tail(&out, OUTPUT_TAIL_BYTES).to_string();
    }
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> &str {
    let mut from = s.len().saturating_sub(max);
    while !s.is_char_boundary(from) {
        from += 1;
    }
    &s[from..]
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The member's hostname now: the kernel's with the host's root, else the file
/// `/proc/sys/kernel/hostname` beneath the root (as `converge/hostname.rs` models it).
fn current_hostname(root: &Root) -> Result<String, String> {
    let name = if root.is_host_root() {
        nix::unistd::gethostname()
            .map_err(|e| format!("cannot read the hostname: {e}"))?
            .into_string()
            .map_err(|_| "the hostname is not UTF-8".to_string())?
    } else {
        let kernel =
            AbsPath::parse(KERNEL_HOSTNAME).map_err(|e| format!("{KERNEL_HOSTNAME}: {e}"))?;
        let path = root
            .resolve(&kernel, Follow::All)
            .map_err(|e| e.to_string())?;
        std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the hostname from {KERNEL_HOSTNAME}: {e}"))?
            .trim()
            .to_string()
    };
    if name.is_empty() {
        return Err("the hostname is unset; there is nothing to save".to_string());
    }
    Ok(name)
}

/// Where the kernel's hostname is modelled beneath a root other than `/`.
const KERNEL_HOSTNAME: &str = "/proc/sys/kernel/hostname";

#[cfg(test)]
mod tests;
