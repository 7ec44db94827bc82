//! `tenet-agent event` and `tenet-agent watch`: what the HA engine calls when a
//! package moves.
//!
//! `event` loads the plans (the verified cached bundle, or a local tree), takes the
//! run lock (waiting for a periodic run to finish), selects the plans for this member
//! ([`Policy::plans_for`]) and runs them with [`failover::execute`], journalled in
//! `STATE/events/<id>.jsonl`. An event id runs at most once: a complete journal is
//! replayed (printed again, same exit code, nothing run); an interrupted one is
//! reported ([`EventError::Interrupted`]) and continued only with `--resume`.
//!
//! `watch` runs a package's `package-running` plans round after round, without a
//! journal, until SIGTERM or SIGINT (which let the round in progress finish).

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use tenet_policies::facts::FactError;
use tenet_policies::plan::{Event, Selection, Trigger};
use tenet_policies::{Diagnostics, Facts, Policy};

use crate::config::{Config, ConfigError};
use crate::exit::ExitCode;
use crate::failover::journal::{Begin, History, Journal, JournalError, Record};
use crate::failover::{self, Context, Earlier, Outcome, started};
use crate::fsops::{self, Root};
use crate::lock::{LockError, RunLock};
use crate::report::{Collect, EventSummary, StepReporter, StepStatus};
use crate::sync::trusted::{BundleError, cached_tree};

/// How often `watch` runs a round when no plan says (`every`).
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);

/// Where the plans come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The verified bundle cached by `run`, found through this agent configuration.
    Config(PathBuf),
    /// An unsigned local policy tree (tests, simulation), as `apply` takes it.
    Policy(PathBuf),
}

/// The root, state directory and facts a command works with.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Where the plans come from.
    pub source: Source,
    /// The root; default: the configuration's, or `/` with a local tree.
    pub root: Option<PathBuf>,
    /// The state directory; default: the configuration's, or `ROOT/var/lib/tenet`.
    pub state_dir: Option<PathBuf>,
    /// `KEY=VALUE` fact overrides, applied last.
    pub facts: Vec<String>,
}

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

/// Why an event did not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// A `--fact` override is malformed.
    #[error("bad --fact")]
    Fact(#[from] FactError),
    /// The id cannot name a journal, or the journal is unusable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The id was used for another event.
    #[error("event id {id} was used for event {was}, not {now}; choose another id")]
    IdReused {
        /// The id.
        id: String,
        /// The event its journal is about.
        was: String,
        /// The event asked for now.
        now: String,
    },
    /// An earlier run of this id was interrupted; nothing was run.
    #[error("event {event} (id {id}) {at}; not re-run; pass --resume to continue", at = interruption)]
    Interrupted {
        /// The id.
        id: String,
        /// The event.
        event: String,
        /// Where it stopped.
        interruption: Box<failover::journal::Interruption>,
    },
    /// The plans are not those the interrupted run started with.
    #[error(
        "the plans of event id {id} changed since its interrupted run (was {was}, now {now}); not resumed"
    )]
    PlansChanged {
        /// The id.
        id: String,
        /// The plans then.
        was: String,
        /// The plans now.
        now: String,
    },
    /// The agent configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cached bundle is missing, refused or unreadable.
    #[error(transparent)]
    Cache(#[from] BundleError),
    /// The policy tree is invalid.
    #[error("policy tree {} is invalid ({} errors); nothing was run", tree.display(), diagnostics.error_count())]
    InvalidPolicy {
        /// The tree.
        tree: PathBuf,
        /// Every problem found.
        diagnostics: Diagnostics,
    },
    /// The root is unusable.
    #[error("cannot use root {}", path.display())]
    Root {
        /// The root given.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The state directory cannot be created.
    #[error("cannot create the state directory {}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The run lock was not released in time, or is unusable.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// `watch` could not set up its signal handlers.
    #[error("cannot start watching")]
    Setup(#[source] std::io::Error),
}

impl EventError {
    /// Every problem of an invalid policy tree, printed before the error.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            Self::InvalidPolicy { diagnostics, .. } => Some(diagnostics),
            _ => None,
        }
    }

    /// The exit code this error ends the agent with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Fact(_) | Self::IdReused { .. } | Self::Journal(JournalError::BadId { .. }) => {
                ExitCode::Usage
            }
            Self::Interrupted { .. } => ExitCode::Interrupted,
            Self::PlansChanged { .. } | Self::Config(_) | Self::InvalidPolicy { .. } => {
                ExitCode::InvalidPolicy
            }
            Self::Cache(e) => e.exit_code(),
            Self::Lock(LockError::Held { .. }) => ExitCode::Locked,
            _ => ExitCode::Environment,
        }
    }
}

/// The configuration (if any), root and state directory of a scope.
#[derive(Debug)]
pub(crate) struct Place {
    pub(crate) config: Option<Config>,
    pub(crate) root: Root,
    pub(crate) state_dir: PathBuf,
}

impl Place {
    pub(crate) fn of(scope: &Scope) -> Result<Place, EventError> {
        let config = match &scope.source {
            Source::Config(path) => Some(Config::load(path)?),
            Source::Policy(_) => None,
        };
        let root_dir = scope
            .root
            .clone()
            .or_else(|| config.as_ref().map(|c| c.root.clone()))
            .unwrap_or_else(|| PathBuf::from("/"));
        let root = Root::new(&root_dir).map_err(|source| EventError::Root {
            path: root_dir.clone(),
            source,
        })?;
        let state_dir = scope
            .state_dir
            .clone()
            .or_else(|| config.as_ref().map(|c| c.state_dir.clone()))
            .unwrap_or_else(|| crate::config::default_state_dir(root.base()));
        Ok(Place {
            config,
            root,
            state_dir,
        })
    }

    fn create_state_dir(&self) -> Result<(), EventError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.state_dir)
            .map_err(|source| EventError::StateDir {
                path: self.state_dir.clone(),
                source,
            })
    }
}

/// A loaded policy and this member's facts.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) policy: Policy,
    pub(crate) facts: Facts,
    /// `bundle serial N` or `policy tree DIR`.
    pub(crate) source: String,
    /// The facts are another member's, not this machine's: its configured hostname,
    /// no addresses, and it holds only what the caller says.
    pub(crate) remote: bool,
    /// The tree the policy was loaded from, and its files when they are a cached
    /// bundle's: where steps read content known by its hash.
    pub(crate) tree: PathBuf,
    pub(crate) files: Option<crate::sync::cache::BundleFiles>,
}

impl Loaded {
    /// Where the steps' `file` promises read content known only by its hash.
    pub(crate) fn content_source(&self) -> Option<crate::converge::Source<'_>> {
        self.files.as_ref().map(|files| crate::converge::Source {
            tree: &self.tree,
            files,
        })
    }
}

/// Loads the plans of `scope` and the facts of `member` (default: this member),
/// `--fact` overrides last. Warnings go to `notes`.
///
/// When `member` is not this machine's member, nothing of this machine is used for
/// it: its hostname is the one the cluster config gives it, it has no addresses (so
/// it holds no package by address), and [`Loaded::remote`] says so.
pub(crate) fn load(
    scope: &Scope,
    place: &Place,
    member: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Loaded, EventError> {
    let mut facts = crate::facts::gather();
    let mut member_facts = Vec::new();
    let (tree, files, source) = match (&scope.source, &place.config) {
        (Source::Config(_), Some(config)) => {
            let mut warnings = Collect::default();
            let cached = cached_tree(config, member.unwrap_or(&config.member), &mut warnings)?;
            notes.extend(
                warnings
                    .warnings
                    .into_iter()
                    .map(|w| format!("warning: {w}")),
            );
            member_facts = cached.facts;
            (
                cached.files.tree(),
                Some(cached.files),
                format!("bundle serial {}", cached.serial),
            )
        }
        (Source::Policy(tree), _) | (Source::Config(tree), None) => (
            tree.clone(),
            None,
            format!("policy tree {}", tree.display()),
        ),
    };
    let loaded = match &files {
        Some(f) => tenet_policies::load_from(&tree, f),
        None => tenet_policies::load(&tree),
    };
    let policy = loaded.map_err(|diagnostics| EventError::InvalidPolicy {
        tree: tree.clone(),
        diagnostics,
    })?;
    // This machine's member: the configuration's, or as its facts say.
    let local = match &place.config {
        Some(config) => Some(config.member.clone()),
        None => {
            let mut mine = facts.clone();
            crate::facts::apply_overrides(&mut mine, &scope.facts)?;
            policy.member_of(&mine).map(|m| m.name.clone())
        }
    };
    let remote = member.is_some_and(|m| local.as_deref() != Some(m));
    if let (true, Some(m)) = (remote, member) {
        facts = Facts {
            hostname: policy
                .cluster
                .member(m)
                .map_or_else(|| m.to_string(), |x| x.hostname.clone()),
            os: facts.os,
            ..Facts::default()
        };
    }
    crate::facts::apply_overrides(&mut facts, &member_facts)?;
    crate::facts::apply_overrides(&mut facts, &scope.facts)?;
    if let Some(m) = member {
        facts.member = Some(m.to_string());
    }
    Ok(Loaded {
        policy,
        facts,
        source,
        remote,
        tree,
        files,
    })
}

/// Runs the plans of one event, exactly once per id.
pub fn event(
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
            let mut j = Journal::reopen(h)?;
            j.append(&Record::Resume {
                time: failover::now(),
            })?;
            (j, Earlier::from_history(h), true)
        }
        None => {
            if opts.resume == Resume::Continue {
                reporter.note("nothing to resume: this id never ran here; running it now");
            }
            let j = Journal::create(
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

/// What `watch` needs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The package whose `package-running` plans repeat.
    pub package: String,
    /// Source, root, state and facts.
    pub scope: Scope,
    /// How long each round waits for the run lock.
    pub lock_timeout: Duration,
}

/// One round of `watch`.
#[derive(Debug, Clone)]
pub struct Round {
    /// From 1.
    pub number: u64,
    /// How the plans went, or why the round could not run.
    pub outcome: Result<Outcome, String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// What ended `watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT.
    Signal,
}

/// Runs the package's `package-running` plans every `every` (the shortest of the
/// plans'; [`DEFAULT_EVERY`] when none says) until SIGTERM or SIGINT, which let the
/// round in progress finish. The policy is loaded again each round, so a new bundle
/// takes effect. A round that fails is reported and the next one runs all the same.
/// Interrupted events found at the start (see [`failover::journal::unfinished_warnings`]) go to `on_warning`.
pub fn watch(
    opts: &WatchOptions,
    on_warning: &mut dyn FnMut(&str),
    on_round: &mut dyn FnMut(&Round),
) -> Result<Stopped, EventError> {
    use tokio::signal::unix::{SignalKind, signal};
    let place = Place::of(&opts.scope)?;
    place.create_state_dir()?;
    for w in failover::journal::unfinished_warnings(&place.state_dir, None) {
        on_warning(&w);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(EventError::Setup)?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).map_err(EventError::Setup)?;
        let mut int = signal(SignalKind::interrupt()).map_err(EventError::Setup)?;
        let mut number = 0;
        loop {
            number += 1;
            // The round runs on its own thread; a signal meanwhile waits for it.
            let (round, every) = std::thread::scope(|s| {
                s.spawn(|| round(opts, &place, number))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
            on_round(&round);
            tokio::select! {
                _ = term.recv() => return Ok(Stopped::Signal),
                _ = int.recv() => return Ok(Stopped::Signal),
                () = tokio::time::sleep(every) => {}
            }
        }
    })
}

fn round(opts: &WatchOptions, place: &Place, number: u64) -> (Round, Duration) {
    let start = Instant::now();
    let (outcome, every) = match round_inner(opts, place) {
        Ok((o, every)) => (Ok(o), every),
        Err(e) => (Err(tenet_keys::error_chain(&e)), DEFAULT_EVERY),
    };
    let round = Round {
        number,
        outcome,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    (round, every)
}

fn round_inner(opts: &WatchOptions, place: &Place) -> Result<(Outcome, Duration), EventError> {
    let _lock = RunLock::acquire_within(&place.state_dir, "watch", opts.lock_timeout)?;
    let mut notes = Vec::new();
    let loaded = load(&opts.scope, place, None, &mut notes)?;
    let event = Event::PackageRunning(opts.package.clone());
    let selection = loaded.policy.plans_for(&event, &loaded.facts);
    let every = loaded
        .policy
        .plans
        .iter()
        .filter(|p| p.trigger == Trigger::PackageRunning && p.package == opts.package)
        .filter_map(|p| p.every)
        .min()
        .unwrap_or(DEFAULT_EVERY);
    let cx = Context {
        root: &place.root,
        state_dir: &place.state_dir,
        source: loaded.content_source(),
    };
    let mut quiet = crate::report::CollectSteps::default();
    let outcome = failover::execute(&selection, cx, None, &Earlier::default(), &mut quiet)?;
    Ok((outcome, every))
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
