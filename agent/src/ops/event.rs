//! `tenet-agent event`: what the HA engine calls when a package moves.
//!
//! `event` loads the plans (the verified cached bundle, or a local tree), takes the
//! run lock (waiting for a periodic run to finish), selects the plans for this member
//! ([`Policy::plans_for`]) and runs them with [`failover::execute`], journalled in
//! `STATE/events/<id>.jsonl`. An event id runs at most once: a complete journal is
//! replayed (printed again, same exit code, nothing run); an interrupted one is
//! reported ([`EventError::Interrupted`]) and continued only with `--resume`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use tenet_policies::Policy;
use tenet_policies::plan::{Event, Selection, Trigger};

use crate::exit::ExitCode;
use crate::failover::journal::{Begin, EventJournal, History, Record};
use crate::failover::{self, Context, Earlier, Outcome, started};
use crate::fsops::{self};
use crate::lock::RunLock;
pub use crate::ops::source::EventError;
use crate::ops::source::PolicySource;
use crate::ops::source::{Place, Scope, load};
use crate::report::{EventSummary, RecordingSteps, StepEvent, StepReporter, StepStatus};
use crate::sync::upload;

/// What `event` needs.
#[derive(Debug, Clone)]
pub struct EventOptions {
    /// What happened.
    pub event: Event,
    /// The event id (its journal's name); generated when `None`.
    pub id: Option<String>,
    /// Continue an interrupted run of this id.
    pub resume: Resume,
    /// Source, root, state and facts.
    pub scope: Scope,
    /// How long to wait for a run in progress to release the run lock.
    pub lock_timeout: Duration,
}

/// Whether an interrupted event is continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Report it and run nothing.
    Refuse,
    /// Continue from the interrupted step.
    Continue,
}

/// How an event ended.
#[derive(Debug, Clone)]
pub struct EventReport {
    /// The summary printed last.
    pub summary: EventSummary,
    /// The exit code (a replay's is the earlier run's).
    pub exit: u8,
}

/// Runs the plans of one event, exactly once per id; then, with a configuration,
/// reports it to the master (a replay is not reported again).
pub fn event(
    opts: &EventOptions,
    reporter: &mut dyn StepReporter,
) -> Result<EventReport, EventError> {
    let started = unix_now();
    let mut recording = RecordingSteps::new(reporter);
    let result = run_event(opts, &mut recording);
    if let Ok(report) = &result
        && !report.summary.replay
        && matches!(opts.scope.source, PolicySource::Config(_))
    {
        report_to_master(opts, started, report, &recording.steps);
    }
    result
}

/// Most time an event spends on delivering reports: a takeover must not wait on a
/// master that is itself moving.
const REPORT_DEADLINE: Duration = Duration::from_secs(5);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Queues the event's report and, unless a `run` holds `sync.lock` (it sends the queue
/// itself), sends the queue; failures are only logged.
fn report_to_master(opts: &EventOptions, started: u64, report: &EventReport, steps: &[StepEvent]) {
    let Ok(place) = Place::of(&opts.scope) else {
        return;
    };
    let Some(config) = &place.config else {
        return;
    };
    let s = &report.summary;
    let promises: Vec<serde_json::Value> = steps
        .iter()
        .filter(|st| st.status != StepStatus::Skipped && !st.earlier)
        .map(|st| {
            serde_json::json!({
                "id": format!("{}/{}", st.plan, st.step),
                "promise": "step",
                "status": if st.status == StepStatus::Ok { "kept" } else { "failed" },
                "reason": st.reason,
            })
        })
        .collect();
    let serial = crate::sync::cache::Cache::open(&place.state_dir)
        .ok()
        .and_then(|c| c.current())
        .map(|(serial, _)| serial);
    let body = serde_json::json!({
        "schema": upload::REPORT_SCHEMA,
        "member": config.member,
        "kind": "event",
        "started": started,
        "ended": unix_now(),
        "serial": serial,
        "exit_code": s.exit_code,
        "duration_ms": s.duration_ms,
        "kept": s.ok,
        "repaired": 0,
        "would_repair": 0,
        "failed": s.failed,
        "blocked": 0,
        "skipped": s.skipped,
        "dry_run": false,
        "errors": s.failed_step.iter().map(|f| format!("{}: {f}", s.event)).collect::<Vec<_>>(),
        "promises": promises,
    });
    if let Err(e) = upload::queue(&place.state_dir, body.to_string().as_bytes()) {
        tracing::warn!(error = %tenet_keys::error_chain(&e), "cannot queue the event report");
        return;
    }
    // A run holding the sync lock sends the queue (this report included) itself.
    let Ok(_sync) = RunLock::acquire_file_within(
        &place.state_dir,
        crate::ops::run::SYNC_LOCK,
        "event report",
        Duration::ZERO,
    ) else {
        return;
    };
    match upload::send_queue(config, &place.state_dir, REPORT_DEADLINE) {
        Ok(d) => {
            if let Some(why) = d.stopped {
                tracing::warn!(queued = d.queued, error = %why, "reports not delivered; kept for the next run");
            }
        }
        Err(e) => {
            tracing::warn!(error = %tenet_keys::error_chain(&e), "cannot send the report queue")
        }
    }
}

fn run_event(
    opts: &EventOptions,
    reporter: &mut dyn StepReporter,
) -> Result<EventReport, EventError> {
    let start = Instant::now();
    let name = opts.event.to_string();
    if let Some(id) = &opts.id {
        failover::journal::check_id(id)?;
    }
    let place = Place::of(&opts.scope)?;
    place.create_state_dir()?;
    let _lock = RunLock::acquire_within(&place.state_dir, "event", opts.lock_timeout)?;
    let id = opts.id.clone().unwrap_or_else(generated_id);
    reporter.note(&format!("event {name}, id {id}"));

    let others = failover::journal::unfinished_warnings(&place.state_dir, Some(&id));
    for w in &others {
        reporter.note(w);
    }
    if !others.is_empty() {
        reporter.note(&format!(
            "event {name} (id {id}) runs all the same: an interrupted event is continued only with its own id and --resume"
        ));
    }

    let mut history = History::read(&place.state_dir, &id)?;
    if history.as_ref().is_some_and(|h| h.begin().is_none()) {
        // An older agent crashed between creating the journal and writing its begin
        // record: nothing of the event ran.
        reporter.note(&format!(
            "warning: the journal of id {id} has no begin record (a crash before the event began); it counts as never run"
        ));
        failover::journal::discard(&place.state_dir, &id)?;
        history = None;
    }
    if let Some(h) = &history {
        let begin = h.begin();
        if let Some(b) = begin
            && b.event != name
        {
            return Err(EventError::IdReused {
                id,
                was: b.event.clone(),
                now: name,
            });
        }
        if h.end().is_some() {
            return Ok(replay(&id, &name, h, start, reporter));
        }
        if opts.resume == Resume::Refuse {
            return Err(EventError::Interrupted {
                id,
                event: name,
                interruption: Box::new(h.interruption()),
            });
        }
    }

    match fsops::recover(&place.state_dir, &place.root) {
        Ok(0) => {}
        Ok(n) => reporter.note(&format!(
            "warning: removed {n} temp files left by an interrupted run"
        )),
        Err(e) => reporter.note(&format!(
            "warning: cannot clean up after an interrupted run: {e}"
        )),
    }
    let mut notes = Vec::new();
    let mut loaded = load(&opts.scope, &place, None, &mut notes)?;
    let boot = started::boot_id(&place.root);
    loaded.facts.started = started::read_all(&place.state_dir, boot.as_deref(), &mut notes);
    // A resumed run of the event that started a package selects what it selected then.
    loaded.facts.started.retain(|_, s| s.event_id != id);
    let selection = loaded.policy.plans_for(&opts.event, &loaded.facts);
    notes.extend(selection.notes.iter().cloned());
    for n in &notes {
        reporter.note(n);
    }
    let outline = failover::outline(&selection);
    let (mut journal, earlier, resumed) = match &history {
        Some(h) => {
            let was = h.begin().map(|b| b.plans.clone()).unwrap_or_default();
            if was != outline {
                let show = |o: &[failover::journal::Outline]| {
                    o.iter()
                        .map(|p| format!("{} ({} steps)", p.plan, p.steps.len()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(EventError::PlansChanged {
                    id,
                    was: show(&was),
                    now: show(&outline),
                });
            }
            reporter.note(&format!("resuming: {}", h.interruption()));
            let mut j = EventJournal::reopen(h)?;
            j.append(&Record::Resume {
                time: failover::now(),
            })?;
            (j, Earlier::from_history(h), true)
        }
        None => {
            if opts.resume == Resume::Continue {
                reporter.note("nothing to resume: this id never ran here; running it now");
            }
            let j = EventJournal::create(
                &place.state_dir,
                Begin {
                    id: id.clone(),
                    event: name.clone(),
                    member: selection.member.clone(),
                    source: loaded.source.clone(),
                    time: failover::now(),
                    pid: std::process::id(),
                    plans: outline,
                },
            )?;
            (j, Earlier::default(), false)
        }
    };
    let _span = tracing::info_span!("event", event = %name, id = %id).entered();
    let cx = Context {
        root: &place.root,
        state_dir: &place.state_dir,
        source: loaded.content_source(),
    };
    let outcome = failover::execute(&selection, cx, Some(&mut journal), &earlier, reporter)?;
    let exit = if outcome.all_ok() {
        ExitCode::Success
    } else {
        ExitCode::PromisesFailed
    } as u8;
    let marker = started::Marker {
        event_id: id.clone(),
        event: name.clone(),
        time: failover::now(),
        boot_id: boot,
    };
    for warning in record_packages(
        &place,
        &opts.event,
        &loaded.policy,
        &selection,
        &outcome,
        &marker,
    ) {
        reporter.note(&warning);
    }
    journal.append(&Record::EventEnd {
        result: status(&outcome),
        exit_code: exit,
        time: failover::now(),
    })?;
    let summary = summary(&id, &name, &selection, &outcome, exit, start, resumed);
    reporter.event(&summary);
    Ok(EventReport { summary, exit })
}

/// Records the packages whose `package-start` plans all ended ok as started here,
/// and forgets those whose `package-stop` plans did (a `package-stop` event with no
/// plans stops its package too). Returns warnings: a record that cannot be written
/// does not fail the event, whose steps have run.
fn record_packages(
    place: &Place,
    event: &Event,
    policy: &Policy,
    selection: &Selection,
    outcome: &Outcome,
    marker: &started::Marker,
) -> Vec<String> {
    // Per package and trigger: whether every plan of it ended ok.
    let mut ok: BTreeMap<(&str, Trigger), bool> = BTreeMap::new();
    for (run, plan_ok) in selection.runs.iter().zip(&outcome.plans_ok) {
        *ok.entry((run.package.as_str(), run.trigger))
            .or_insert(true) &= *plan_ok;
    }
    if let Event::PackageStop(p) = event
        && policy.cluster.package(p).is_some()
    {
        ok.entry((p.as_str(), Trigger::PackageStop)).or_insert(true);
    }
    let mut warnings = Vec::new();
    for ((package, trigger), all_ok) in ok {
        let done = match (trigger, all_ok) {
            (Trigger::PackageStart, true) => started::record(&place.state_dir, package, marker),
            (Trigger::PackageStop, true) => started::remove(&place.state_dir, package),
            _ => continue,
        };
        if let Err(e) = done {
            warnings.push(format!(
                "warning: cannot record that `{package}` {} here: {}",
                if trigger == Trigger::PackageStart {
                    "started"
                } else {
                    "stopped"
                },
                tenet_keys::error_chain(&e)
            ));
        }
    }
    warnings
}

fn status(o: &Outcome) -> StepStatus {
    if o.all_ok() {
        StepStatus::Ok
    } else {
        StepStatus::Failed
    }
}

fn summary(
    id: &str,
    name: &str,
    selection: &Selection,
    outcome: &Outcome,
    exit: u8,
    start: Instant,
    resumed: bool,
) -> EventSummary {
    EventSummary {
        kind: "event",
        id: id.to_string(),
        event: name.to_string(),
        member: selection.member.clone(),
        status: status(outcome),
        replay: false,
        resumed,
        exit_code: exit,
        failed_step: outcome.first_failure.clone(),
        plans: outcome.plans,
        ok: outcome.ok,
        failed: outcome.failed,
        skipped: outcome.skipped,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Prints a complete journal again: nothing runs.
fn replay(
    id: &str,
    name: &str,
    h: &History,
    start: Instant,
    reporter: &mut dyn StepReporter,
) -> EventReport {
    let (result, exit, ended) = h.end().unwrap_or((StepStatus::Failed, 1, "?"));
    let begun = h.begin().map_or("?", |b| b.time.as_str());
    reporter.note(&format!(
        "replay: event id {id} already ran (began {begun}, ended {ended}); nothing is run again"
    ));
    let mut outcome = Outcome::default();
    let mut plans = Vec::<String>::new();
    for end in h.ordered_ends() {
        if plans.last() != Some(&end.plan) {
            plans.push(end.plan.clone());
        }
        let e = failover::from_end(&end, true);
        match e.status {
            StepStatus::Ok => outcome.ok += 1,
            StepStatus::Failed => {
                if outcome.first_failure.is_none() {
                    outcome.first_failure = Some(failover::describe(&e));
                }
                outcome.failed += 1;
            }
            StepStatus::Skipped => outcome.skipped += 1,
        }
        reporter.step(&e);
    }
    let summary = EventSummary {
        kind: "event",
        id: id.to_string(),
        event: name.to_string(),
        member: h.begin().and_then(|b| b.member.clone()),
        status: result,
        replay: true,
        resumed: false,
        exit_code: exit,
        failed_step: outcome.first_failure,
        plans: h.begin().map_or(plans.len(), |b| b.plans.len()),
        ok: outcome.ok,
        failed: outcome.failed,
        skipped: outcome.skipped,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    reporter.event(&summary);
    EventReport { summary, exit }
}

/// `20261122T013500Z-4242`: the time and this process's id.
fn generated_id() -> String {
    let t = tenet_keys::Time::from_system(SystemTime::now()).to_string();
    let compact: String = t.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{compact}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn generated_ids_are_valid_journal_names() {
        let id = generated_id();
        failover::journal::check_id(&id).unwrap();
        let p = failover::journal::path(Path::new("/s"), &id).unwrap();
        assert!(p.starts_with("/s/events"));
    }
}
