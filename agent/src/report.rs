//! What a run reports: one event per promise and a summary. The engine emits events
//! to a [`Reporter`]; the human printer, the JSON-lines printer (also what a pushed
//! run streams back) and the tests implement it. These are the engine's only
//! serialisable types.
//!
//! Failover plans report through [`StepReporter`]: one [`StepEvent`] per step and an
//! [`EventSummary`]; the same printers implement it.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::escape::{printable, printable_lines};

/// What became of one promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Already as promised.
    Kept,
    /// Changed, and verified afterwards.
    Repaired,
    /// Would be changed (dry run).
    WouldRepair,
    /// Cannot converge safely; the reason says why.
    Blocked,
    /// An error stopped it.
    Failed,
    /// Changed, but still not as promised afterwards: a bug in its promise type.
    DidNotConverge,
}

impl Status {
    /// The word printed for it.
    pub fn word(self) -> &'static str {
        match self {
            Self::Kept => "kept",
            Self::Repaired => "repaired",
            Self::WouldRepair => "would repair",
            Self::Blocked => "blocked",
            Self::Failed => "failed",
            Self::DidNotConverge => "did not converge",
        }
    }
}

/// A unified diff of a file's text, rendered on demand.
#[derive(Debug, Clone)]
pub struct TextDiff {
    /// The file, as the policy names it.
    pub path: String,
    /// Before.
    pub old: String,
    /// After.
    pub new: String,
}

impl TextDiff {
    /// The unified diff with 3 lines of context.
    pub fn unified(&self) -> String {
        similar::TextDiff::from_lines(&self.old, &self.new)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a{}", self.path), &format!("b{}", self.path))
            .to_string()
    }
}

/// One promise's outcome.
#[derive(Debug, Clone)]
pub struct PromiseEvent {
    /// The promise's id.
    pub id: String,
    /// Its type.
    pub promise: &'static str,
    /// `file:line:col` where it was written.
    pub origin: String,
    /// What became of it.
    pub status: Status,
    /// One line per change made (or that would be made).
    pub changes: Vec<String>,
    /// Diffs of changed text files.
    pub diffs: Vec<TextDiff>,
    /// Why it was blocked or failed.
    pub reason: Option<String>,
}

/// Counts for a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Always `"summary"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Promises already as promised.
    pub kept: usize,
    /// Promises changed.
    pub repaired: usize,
    /// Promises a dry run would change.
    pub would_repair: usize,
    /// Promises that failed (did-not-converge included).
    pub failed: usize,
    /// Promises blocked.
    pub blocked: usize,
    /// Promises whose condition does not hold on this member.
    pub skipped: usize,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// The member the run was for, if identified.
    pub member: Option<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The signed bundle's serial the run converged to (a `run`; an `apply` of a
    /// local tree has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
}

impl Summary {
    /// Counts one event.
    pub fn count(&mut self, s: Status) {
        match s {
            Status::Kept => self.kept += 1,
            Status::Repaired => self.repaired += 1,
            Status::WouldRepair => self.would_repair += 1,
            Status::Blocked => self.blocked += 1,
            Status::Failed | Status::DidNotConverge => self.failed += 1,
        }
    }

    /// Whether every promise was kept or repaired (or would be).
    pub fn all_ok(&self) -> bool {
        self.failed == 0 && self.blocked == 0
    }
}

/// Receives a run's events as they happen.
pub trait Reporter {
    /// Something the administrator should read; the run goes on.
    fn warning(&mut self, message: &str);
    /// One promise's outcome.
    fn promise(&mut self, event: &PromiseEvent);
    /// The end of the run.
    fn summary(&mut self, summary: &Summary);
}

/// One promise's outcome as the master's report carries it (no changes or diffs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The promise's id.
    pub id: String,
    /// Its type.
    pub promise: &'static str,
    /// What became of it.
    pub status: Status,
    /// Why it was blocked or failed.
    pub reason: Option<String>,
}

/// Passes everything on to another reporter and keeps each promise's [`Outcome`], for
/// the report sent to the master.
pub struct Recording<'a> {
    inner: &'a mut dyn Reporter,
    /// The outcomes so far, in order.
    pub outcomes: Vec<Outcome>,
}

impl<'a> Recording<'a> {
    /// Records what `inner` is told.
    pub fn new(inner: &'a mut dyn Reporter) -> Recording<'a> {
        Recording {
            inner,
            outcomes: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Recording<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("outcomes", &self.outcomes.len())
            .finish()
    }
}

impl Reporter for Recording<'_> {
    fn warning(&mut self, message: &str) {
        self.inner.warning(message);
    }
    fn promise(&mut self, event: &PromiseEvent) {
        self.outcomes.push(Outcome {
            id: event.id.clone(),
            promise: event.promise,
            status: event.status,
            reason: event.reason.clone(),
        });
        self.inner.promise(event);
    }
    fn summary(&mut self, summary: &Summary) {
        self.inner.summary(summary);
    }
}

/// Collects events in memory (tests, and callers that print later).
#[derive(Debug, Default)]
pub struct Collect {
    /// Warnings.
    pub warnings: Vec<String>,
    /// Events in order.
    pub events: Vec<PromiseEvent>,
    /// The summary, once the run ended.
    pub summary: Option<Summary>,
}

impl Reporter for Collect {
    fn warning(&mut self, message: &str) {
        self.warnings.push(message.to_string());
    }
    fn promise(&mut self, event: &PromiseEvent) {
        self.events.push(event.clone());
    }
    fn summary(&mut self, summary: &Summary) {
        self.summary = Some(summary.clone());
    }
}

/// Prints for a person: one line per change, problems with their reason, a summary.
/// Text from the managed system (a link's old target, a command's output, a file in a
/// diff) is shown with its control characters escaped ([`printable`]).
#[derive(Debug)]
pub struct Human<W> {
    out: W,
    diff: bool,
    errors: Option<io::Error>,
}

impl<W: Write> Human<W> {
    /// A printer writing to `out`; with `diff`, unified diffs follow text changes.
    pub fn new(out: W, diff: bool) -> Self {
        Self {
            out,
            diff,
            errors: None,
        }
    }

    fn write(&mut self, f: impl FnOnce(&mut W) -> io::Result<()>) {
        if self.errors.is_none()
            && let Err(e) = f(&mut self.out)
        {
            self.errors = Some(e);
        }
    }
}

impl<W: Write> Reporter for Human<W> {
    fn warning(&mut self, message: &str) {
        // A warning may quote the master's text (a document that does not parse).
        let message = printable_lines(message);
        self.write(|o| writeln!(o, "warning: {message}"));
    }

    fn promise(&mut self, e: &PromiseEvent) {
        let diff = self.diff;
        self.write(|o| {
            match e.status {
                Status::Kept => {}
                Status::Repaired | Status::WouldRepair => {
                    for c in &e.changes {
                        writeln!(o, "{:>12}  {}", e.status.word(), printable(c))?;
                    }
                }
                Status::Blocked | Status::Failed | Status::DidNotConverge => {
                    let reason = e.reason.as_deref().unwrap_or("no reason given");
                    writeln!(
                        o,
                        "{:>12}  {}: {} ({})",
                        e.status.word(),
                        printable(&e.id),
                        printable(reason),
                        printable(&e.origin)
                    )?;
                }
            }
            if diff {
                for d in &e.diffs {
                    write!(o, "{}", printable_lines(&d.unified()))?;
                }
            }
            Ok(())
        });
    }

    fn summary(&mut self, s: &Summary) {
        self.write(|o| {
            let who = s
                .member
                .as_deref()
                .map(|m| format!("{m}: "))
                .unwrap_or_default();
            let total = s.kept + s.repaired + s.would_repair + s.failed + s.blocked;
            let changed = if s.dry_run {
                format!("{} would be repaired", s.would_repair)
            } else {
                format!("{} repaired", s.repaired)
            };
            if s.repaired + s.would_repair + s.failed + s.blocked == 0 {
                writeln!(
                    o,
                    "{who}nothing to do: {total} promises kept ({} ms)",
                    s.duration_ms
                )
            } else {
                writeln!(
                    o,
                    "{who}{total} promises: {changed}, {} kept, {} failed, {} blocked ({} ms){}",
                    s.kept,
                    s.failed,
                    s.blocked,
                    s.duration_ms,
                    if s.dry_run {
                        "; dry run, nothing changed"
                    } else {
                        ""
                    }
                )
            }
        });
        self.write(|o| o.flush());
    }
}

/// Prints JSON Lines: `{"type":"promise",...}` per promise, `{"type":"warning",...}`,
/// and a last `{"type":"summary",...}`.
#[derive(Debug)]
pub struct JsonLines<W> {
    out: W,
    diff: bool,
}

impl<W: Write> JsonLines<W> {
    /// A printer writing to `out`; with `diff`, each promise event carries its unified diffs.
    pub fn new(out: W, diff: bool) -> Self {
        Self { out, diff }
    }

    /// Writes `v` as a line of `family` (`converge` for apply/run, `event` for failover
    /// events), its `schema` set.
    fn line(&mut self, family: &str, v: &impl Serialize) {
        // A closed stdout cannot be reported anywhere better; the exit code still tells.
        let _ = tenet_keys::jsonl::write_line(&mut self.out, family, v);
    }
}

/// The `schema` family of `apply`, `run` and `daemon` lines.
const CONVERGE: &str = "converge";
/// The `schema` family of `event` lines.
const EVENT: &str = "event";

#[derive(Serialize)]
struct JsonPromise<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    promise: &'static str,
    origin: &'a str,
    status: Status,
    changes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
}

#[derive(Serialize)]
struct JsonWarning<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

impl<W: Write> Reporter for JsonLines<W> {
    fn warning(&mut self, message: &str) {
        self.line(
            CONVERGE,
            &JsonWarning {
                kind: "warning",
                message,
            },
        );
    }

    fn promise(&mut self, e: &PromiseEvent) {
        let diff = (self.diff && !e.diffs.is_empty())
            .then(|| e.diffs.iter().map(TextDiff::unified).collect());
        self.line(
            CONVERGE,
            &JsonPromise {
                kind: "promise",
                id: &e.id,
                promise: e.promise,
                origin: &e.origin,
                status: e.status,
                changes: &e.changes,
                reason: e.reason.as_deref(),
                diff,
            },
        );
    }

    fn summary(&mut self, s: &Summary) {
        if let Ok(s) = tenet_keys::jsonl::with_time(s) {
            self.line(CONVERGE, &s);
        }
        let _ = self.out.flush();
    }
}

/// What became of one step of a failover plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Its promise was kept or repaired, its command exited 0, its hostname was saved.
    Ok,
    /// It failed; the reason says why. The plan stops here (`always` steps still run).
    Failed,
    /// Not run: an earlier step failed.
    Skipped,
}

impl StepStatus {
    /// The word printed for it.
    pub fn word(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// One step's outcome: `{"type":"step",...}` in JSON Lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepEvent {
    /// Always `"step"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The plan it belongs to.
    pub plan: String,
    /// The step's name.
    pub step: String,
    /// Its position in the plan, from 1.
    pub index: usize,
    /// What became of it.
    pub status: StepStatus,
    /// Why it failed or was skipped, or what it did.
    pub reason: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// The command's exit code, when a command ran and exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last bytes of the command's output (stdout, then stderr), for a failed step.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// It ran in an earlier, interrupted run of the event (resumed or replayed): not run now.
    #[serde(skip_serializing_if = "is_false")]
    pub earlier: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How an event ended: `{"type":"event",...}`, the last line in JSON Lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    /// Always `"event"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The event id (its journal's name).
    pub id: String,
    /// The event, as `package-start:dce`.
    pub event: String,
    /// The member the plans ran for.
    pub member: Option<String>,
    /// `ok` or `failed`.
    pub status: StepStatus,
    /// The result of an earlier run of this id, printed again; nothing ran now.
    pub replay: bool,
    /// This run continued an interrupted one.
    pub resumed: bool,
    /// The exit code this run ends with.
    pub exit_code: u8,
    /// The first failed step: `step N `name` of plan P: reason`.
    pub failed_step: Option<String>,
    /// Plans selected.
    pub plans: usize,
    /// Steps that ended ok.
    pub ok: usize,
    /// Steps that failed.
    pub failed: usize,
    /// Steps skipped.
    pub skipped: usize,
    /// Wall time.
    pub duration_ms: u64,
}

/// Receives a failover event's report as it happens.
pub trait StepReporter {
    /// Something worth reading: the selection's notes, the event id, a replay.
    fn note(&mut self, message: &str);
    /// A plan starts.
    fn plan(&mut self, plan: &str, trigger: &str, package: &str);
    /// One step's outcome.
    fn step(&mut self, event: &StepEvent);
    /// The end of the event.
    fn event(&mut self, summary: &EventSummary);
}

/// Passes a failover event's report on to another reporter and keeps its steps, for
/// the report sent to the master.
pub struct RecordingSteps<'a> {
    inner: &'a mut dyn StepReporter,
    /// The steps so far, in order.
    pub steps: Vec<StepEvent>,
}

impl<'a> RecordingSteps<'a> {
    /// Records what `inner` is told.
    pub fn new(inner: &'a mut dyn StepReporter) -> RecordingSteps<'a> {
        RecordingSteps {
            inner,
            steps: Vec::new(),
        }
    }
}

impl std::fmt::Debug for RecordingSteps<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingSteps")
            .field("steps", &self.steps.len())
            .finish()
    }
}

impl StepReporter for RecordingSteps<'_> {
    fn note(&mut self, message: &str) {
        self.inner.note(message);
    }
    fn plan(&mut self, plan: &str, trigger: &str, package: &str) {
        self.inner.plan(plan, trigger, package);
    }
    fn step(&mut self, event: &StepEvent) {
        self.steps.push(event.clone());
        self.inner.step(event);
    }
    fn event(&mut self, summary: &EventSummary) {
        self.inner.event(summary);
    }
}

/// Collects a failover event's report in memory (tests, and callers that print later).
#[derive(Debug, Default)]
pub struct CollectSteps {
    /// Notes in order.
    pub notes: Vec<String>,
    /// Plans started, in order.
    pub plans: Vec<String>,
    /// Steps in order.
    pub steps: Vec<StepEvent>,
    /// The summary.
    pub summary: Option<EventSummary>,
}

impl StepReporter for CollectSteps {
    fn note(&mut self, message: &str) {
        self.notes.push(message.to_string());
    }
    fn plan(&mut self, plan: &str, _trigger: &str, _package: &str) {
        self.plans.push(plan.to_string());
    }
    fn step(&mut self, event: &StepEvent) {
        self.steps.push(event.clone());
    }
    fn event(&mut self, summary: &EventSummary) {
        self.summary = Some(summary.clone());
    }
}

impl<W: Write> StepReporter for Human<W> {
    fn note(&mut self, message: &str) {
        let message = printable_lines(message);
        self.write(|o| writeln!(o, "{message}"));
    }

    fn plan(&mut self, plan: &str, trigger: &str, package: &str) {
        self.write(|o| writeln!(o, "plan {plan} ({trigger} {package})"));
    }

    fn step(&mut self, e: &StepEvent) {
        self.write(|o| {
            let earlier = if e.earlier { ", earlier run" } else { "" };
            write!(
                o,
                "{:>9}  {}. {} ({} ms{earlier})",
                e.status.word(),
                e.index,
                printable(&e.step),
                e.duration_ms
            )?;
            match &e.reason {
                Some(r) => writeln!(o, ": {}", printable(r))?,
                None => writeln!(o)?,
            }
            if e.status == StepStatus::Failed {
                for l in e
                    .output
                    .lines()
                    .rev()
                    .take(OUTPUT_LINES)
                    .collect::<Vec<_>>()
                    .iter()
                    .rev()
                {
                    writeln!(o, "           | {}", printable(l))?;
                }
            }
            Ok(())
        });
        self.write(|o| o.flush());
    }

    fn event(&mut self, s: &EventSummary) {
        self.write(|o| {
            let replay = if s.replay {
                "replay of an earlier run, nothing was run now: "
            } else {
                ""
            };
            let who = s.member.as_deref().map(|m| format!(" on {m}")).unwrap_or_default();
            match &s.failed_step {
                Some(f) => writeln!(
                    o,
                    "{replay}event {} (id {}){who} failed at {f}; {} ok, {} failed, {} skipped ({} ms)",
                    s.event, s.id, s.ok, s.failed, s.skipped, s.duration_ms
                ),
                None => writeln!(
                    o,
                    "{replay}event {} (id {}){who} ok: {}, {} ok ({} ms)",
                    s.event,
                    s.id,
                    counted(s.plans, "plan"),
                    counted(s.ok, "step"),
                    s.duration_ms
                ),
            }
        });
        self.write(|o| o.flush());
    }
}

/// `1 plan`, `3 plans`.
pub fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Lines of a failed command's output a person sees (the journal and JSON keep ~2 KiB).
const OUTPUT_LINES: usize = 10;

#[derive(Serialize)]
struct JsonNote<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    plan: &'a str,
    trigger: &'a str,
    package: &'a str,
}

impl<W: Write> StepReporter for JsonLines<W> {
    fn note(&mut self, message: &str) {
        self.line(
            EVENT,
            &JsonNote {
                kind: "note",
                message,
            },
        );
    }

    fn plan(&mut self, plan: &str, trigger: &str, package: &str) {
        self.line(
            EVENT,
            &JsonPlan {
                kind: "plan",
                plan,
                trigger,
                package,
            },
        );
    }

    fn step(&mut self, e: &StepEvent) {
        self.line(EVENT, e);
        let _ = self.out.flush();
    }

    fn event(&mut self, s: &EventSummary) {
        if let Ok(s) = tenet_keys::jsonl::with_time(s) {
            self.line(EVENT, &s);
        }
        let _ = self.out.flush();
    }
}
