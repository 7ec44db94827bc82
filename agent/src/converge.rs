//! The convergence engine: every promise goes observe → plan → apply → verify.
//!
//! Promise modules (`converge/*.rs`) observe (read only) and plan (pure); they never
//! write. A plan is a list of changes to report and ops to carry out; this
//! module carries out the ops through [`crate::fsops`] and [`crate::exec`]
//! only, then observes and plans again: a repaired promise must now be kept.
//!
//! Promises converge in phases (group, user, pkg, dir, file, copy and tree, edits, link,
//! absent, hostname, service, process, command). The pkg phase's changes are one package
//! transaction. Within a phase, file changes are staged into one [`Batch`] and committed
//! together, so thousands of files cost one flush. Edits (`line`, `setting`) to one
//! file form one unit: planned together, written once. The group, user, hostname,
//! service, process and command phases run unit by unit, each finishing before the next is
//! planned, since a command's guard may depend on the command before it (and a
//! user on the group before it). One failed promise never stops the others.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tenet_policies::Unresolved;
use tenet_policies::model::{AbsPath, Owner, Perms, Promise, PromiseKind, StoredFile};

use crate::exec;
use crate::fsops::{Attrs, Batch, Journal, PathError, Replace, Root};
use crate::report::{Collect, PromiseEvent, Reporter, Status, Summary, TextDiff};
use crate::statcache::StatCache;

mod absent;
mod accounts;
mod command;
mod copy;
mod dir;
mod edit;
mod file;
mod group;
mod hostname;
mod link;
mod notify;
mod pkg;
mod process;
mod service;
mod tree;
mod user;

/// Whether plans keep the before and after text of changed files (for `--diff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diffs {
    /// Keep them: the report shows unified diffs.
    Keep,
    /// Drop them: a large run does not hold every file's text twice.
    Skip,
}

/// How a run converges.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// Apply or dry run.
    pub mode: Mode,
    /// Keep diffs for the report.
    pub diffs: Diffs,
    /// Where batches journal their temp files, so an interrupted run is cleaned up
    /// by the next one ([`crate::fsops::recover`]); `None` keeps no journal.
    pub state_dir: Option<&'a Path>,
    /// Where `file` promises whose content is known by its hash
    /// ([`Content::Stored`](tenet_policies::model::Content::Stored)) read it from: the
    /// tree the policy was loaded from.
    pub source: Option<Source<'a>>,
    /// Files known unchanged since they were last read (by their `lstat`) are not
    /// read again ([`crate::statcache`]); `None` reads every file.
    pub stat_cache: Option<&'a StatCache>,
}

/// The tree a policy was loaded from, for content read on demand.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// The tree's path (as given to [`tenet_policies::load_from`]).
    pub tree: &'a Path,
    /// Its files.
    pub files: &'a dyn tenet_policies::TreeFiles,
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("tree", &self.tree)
            .finish_non_exhaustive()
    }
}

/// Whether changes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Make the changes.
    Apply,
    /// Plan and report the very changes a real run would make; change nothing.
    DryRun,
}

/// Why a promise could not be observed or applied. Its text is the reason reported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromiseError {
    /// A path is unusable.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The policy path involved.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A user name that the member does not know.
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    /// A group name that the member does not know.
    #[error("unknown group `{0}`")]
    UnknownGroup(String),
    /// A file that line and setting promises cannot edit.
    #[error("{0}: not UTF-8 text; line and setting promises edit text files only")]
    NotText(String),
    /// A command or guard that could not run or failed.
    #[error("{0}")]
    Command(String),
    /// The same problem shared by several promises (every edit to an unreadable file).
    #[error("{0}")]
    Shared(String),
    /// A hostname that is not one.
    #[error("`{0}` is not a valid hostname")]
    BadHostname(String),
}

impl PromiseError {
    pub(crate) fn io(path: &impl ToString, source: io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// One line to report, with a diff when it changes a text file.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) summary: String,
    pub(crate) diff: Option<TextDiff>,
}

impl Change {
    pub(crate) fn new(summary: String) -> Self {
        Self {
            summary,
            diff: None,
        }
    }

    /// A change to a text file; its diff is kept only when the run shows diffs.
    pub(crate) fn with_diff(
        summary: String,
        path: &AbsPath,
        old: &[u8],
        new: &[u8],
        diffs: Diffs,
    ) -> Self {
        if diffs == Diffs::Skip {
            return Self::new(summary);
        }
        let diff = TextDiff {
            path: path.to_string(),
            old: String::from_utf8_lossy(old).into_owned(),
            new: String::from_utf8_lossy(new).into_owned(),
        };
        Self {
            summary,
            diff: Some(diff),
        }
    }
}

/// What the engine carries out for a plan; host paths, already resolved beneath the root.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Replace or create a file atomically.
    Write {
        path: PathBuf,
        content: Vec<u8>,
        attrs: Attrs,
    },
    /// Set mode or ids of an existing file or directory.
    Attrs { path: PathBuf, attrs: Attrs },
    /// Create a directory (and missing parents).
    MakeDir { path: PathBuf, attrs: Attrs },
    /// Make `path` a symlink to `target`, atomically, replacing what `replace` says.
    Link {
        path: PathBuf,
        target: PathBuf,
        replace: Replace,
    },
    /// Remove a path.
    Remove { path: PathBuf, recursive: bool },
    /// Run a command; failure fails the promise.
    Run(exec::Invocation),
    /// Set the kernel's hostname (only when the root is the host's `/`).
    KernelHostname(String),
    /// A package's part of the run's one package transaction, which the engine
    /// runs once for the whole `pkg` phase ([`pkg::carry_out`]).
    Package(pkg::PkgChange),
    /// Run a `process` promise's start command (it may start a daemon; its output
    /// goes to `/dev/null`) and wait for a matching process ([`process::start`]).
    Start {
        invocation: exec::Invocation,
        promise: Box<tenet_policies::model::ProcessPromise<String>>,
    },
    /// Signal each process (if it is still the one observed) and wait, up to
    /// `timeout`, for all of them to end.
    Signal {
        processes: Vec<process::Found>,
        signal: i32,
        timeout: std::time::Duration,
    },
}

/// A promise's plan.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Already as promised.
    Kept,
    /// Needs these changes.
    Repair { changes: Vec<Change>, ops: Vec<Op> },
    /// Cannot converge safely.
    Blocked(String),
}

impl Plan {
    pub(crate) fn repair(change: Change, op: Op) -> Self {
        Self::Repair {
            changes: vec![change],
            ops: vec![op],
        }
    }
}

/// What the promise modules need to observe and plan.
pub(crate) struct Cx<'a> {
    pub(crate) root: &'a Root,
    pub(crate) mode: Mode,
    pub(crate) diffs: Diffs,
    pub(crate) state_dir: Option<&'a Path>,
    pub(crate) source: Option<Source<'a>>,
    pub(crate) stat_cache: Option<&'a StatCache>,
}

impl Cx<'_> {
    /// The bytes of a file known by its hash, read from the policy's source (which
    /// checks them against it).
    pub(crate) fn read_stored(&self, f: &StoredFile) -> io::Result<Vec<u8>> {
        let Some(source) = self.source else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no policy source to read {} from", f.rel.display()),
            ));
        };
        source.files.read(source.tree, &f.rel)
    }

    /// Looks up the ids a promise asks for.
    pub(crate) fn attrs(&self, perms: &Perms) -> Result<Attrs, PromiseError> {
        Ok(Attrs {
            mode: perms.mode.map(|m| m.0),
            uid: perms.owner.as_ref().map(uid).transpose()?,
            gid: perms.group.as_ref().map(gid).transpose()?,
        })
    }
}

fn uid(o: &Owner) -> Result<u32, PromiseError> {
    match o {
        Owner::Id(i) => Ok(*i),
        Owner::Name(n) => match nix::unistd::User::from_name(n) {
            Ok(Some(u)) => Ok(u.uid.as_raw()),
            _ => Err(PromiseError::UnknownUser(n.clone())),
        },
    }
}

fn gid(o: &Owner) -> Result<u32, PromiseError> {
    match o {
        Owner::Id(i) => Ok(*i),
        Owner::Name(n) => match nix::unistd::Group::from_name(n) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            _ => Err(PromiseError::UnknownGroup(n.clone())),
        },
    }
}

/// A unit of convergence: one promise, or every edit to one file.
enum Unit {
    One(usize),
    Edits(Vec<usize>),
}

/// Each promise's verdict from one evaluation of a unit.
type Verdicts = Vec<(usize, Result<Plan, PromiseError>)>;

/// Converges `promises` (as [`Policy::resolve`](tenet_policies::Policy::resolve)
/// made them) beneath `root`, reporting each outcome as it is known, and returns the counts.
pub fn converge(
    promises: &[Result<Promise<String>, Unresolved>],
    root: &Root,
    options: Options<'_>,
    reporter: &mut dyn Reporter,
) -> Summary {
    let Options {
        mode,
        diffs,
        state_dir,
        source,
        stat_cache,
    } = options;
    let start = Instant::now();
    let mut summary = Summary {
        kind: "summary",
        dry_run: mode == Mode::DryRun,
        ..Summary::default()
    };
    let cx = Cx {
        root,
        mode,
        diffs,
        state_dir,
        source,
        stat_cache,
    };
    let mut phases: [Vec<Unit>; PHASES] = Default::default();
    let mut edits: HashMap<&AbsPath, usize> = HashMap::new();
    // Handlers run only when notified, after every phase.
    let mut handlers: Vec<usize> = Vec::new();
    // Promises repaired (or that a dry run would repair), for their `notify`.
    let mut repaired: Vec<usize> = Vec::new();
    for (i, p) in promises.iter().enumerate() {
        let p = match p {
            Ok(p) => p,
            Err(u) => {
                let event = PromiseEvent {
                    id: u.id.clone(),
                    promise: u.type_name,
                    origin: u.origin.to_string(),
                    status: Status::Blocked,
                    changes: Vec::new(),
                    diffs: Vec::new(),
                    reason: Some(u.reason.clone()),
                };
                summary.count(event.status);
                reporter.promise(&event);
                continue;
            }
        };
        let (phase, file) = match &p.kind {
            PromiseKind::Group(_) => (Phase::Group, None),
            PromiseKind::User(_) => (Phase::User, None),
            PromiseKind::Pkg(_) => (Phase::Pkg, None),
            PromiseKind::Dir(_) => (Phase::Dir, None),
            PromiseKind::File(_) => (Phase::File, None),
            PromiseKind::Copy(_) | PromiseKind::Tree(_) => (Phase::Copy, None),
            PromiseKind::Line(l) => (Phase::Edits, Some(&l.file)),
            PromiseKind::Setting(s) => (Phase::Edits, Some(&s.file)),
            PromiseKind::Link(_) => (Phase::Link, None),
            PromiseKind::Absent(_) => (Phase::Absent, None),
            PromiseKind::Hostname(_) => (Phase::Hostname, None),
            PromiseKind::Service(_) => (Phase::Service, None),
            PromiseKind::Process(_) => (Phase::Process, None),
            PromiseKind::Command(_) => (Phase::Command, None),
            PromiseKind::Handler(_) => {
                handlers.push(i);
                continue;
            }
        };
        match file {
            Some(f) => match edits.get(f) {
                Some(&u) => {
                    if let Unit::Edits(list) = &mut phases[Phase::Edits as usize][u] {
                        list.push(i);
                    }
                }
                None => {
                    edits.insert(f, phases[Phase::Edits as usize].len());
                    phases[Phase::Edits as usize].push(Unit::Edits(vec![i]));
                }
            },
            None => phases[phase as usize].push(Unit::One(i)),
        }
    }
    let ok = |i: usize| promises[i].as_ref().ok();
    for (n, units) in phases.iter().enumerate() {
        if Phase::SERIAL.iter().any(|p| *p as usize == n) {
            for u in units {
                run_units(
                    &cx,
                    std::slice::from_ref(u),
                    &ok,
                    reporter,
                    &mut summary,
                    &mut repaired,
                );
            }
        } else {
            // In chunks: a phase of thousands of promises never holds every plan
            // and every new file's content at once; each chunk is one batch.
            for chunk in units.chunks(PHASE_CHUNK) {
                run_units(&cx, chunk, &ok, reporter, &mut summary, &mut repaired);
            }
        }
    }
    notify::run(
        &cx,
        options,
        promises,
        &repaired,
        &handlers,
        reporter,
        &mut summary,
    );
    summary.duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    summary
}

/// Converges one promise of a failover step alone, and returns its outcome with the
/// end of its command when one ran (exit code, timeout, output tail), which the
/// step's report and journal record.
///
/// Everything but a command in apply mode goes through [`converge`] itself; a
/// command is evaluated (guards), run and verified the same way, keeping what
/// [`exec::run`] said about it.
pub(crate) fn converge_step(
    promise: &Promise<String>,
    root: &Root,
    options: Options<'_>,
) -> (PromiseEvent, Option<exec::Finished>) {
    let mut event = PromiseEvent {
        id: promise.id.clone(),
        promise: promise.kind.type_name(),
        origin: promise.origin.to_string(),
        status: Status::Failed,
        changes: Vec::new(),
        diffs: Vec::new(),
        reason: Some("the engine reported nothing".to_string()),
    };
    if !(matches!(
        promise.kind,
        PromiseKind::Command(_) | PromiseKind::Handler(_)
    ) && options.mode == Mode::Apply)
    {
        let mut collect = Collect::default();
        converge(
            std::slice::from_ref(&Ok(promise.clone())),
            root,
            options,
            &mut collect,
        );
        root.forget();
        return (collect.events.pop().unwrap_or(event), None);
    }
    let cx = Cx {
        root,
        mode: options.mode,
        diffs: Diffs::Skip,
        state_dir: options.state_dir,
        source: options.source,
        stat_cache: options.stat_cache,
    };
    let one = |_: usize| Some(promise);
    event.reason = None;
    let verdict = evaluate(&cx, &Unit::One(0), &one).pop().map(|(_, v)| v);
    let (changes, ops) = match verdict {
        None | Some(Ok(Plan::Kept)) => {
            event.status = Status::Kept;
            return (event, None);
        }
        Some(Ok(Plan::Blocked(why))) => {
            event.status = Status::Blocked;
            event.reason = Some(why);
            return (event, None);
        }
        Some(Err(e)) => {
            event.reason = Some(e.to_string());
            return (event, None);
        }
        Some(Ok(Plan::Repair { changes, ops })) => (changes, ops),
    };
    event.changes = changes.into_iter().map(|c| c.summary).collect();
    let mut finished = None;
    for op in &ops {
        if let Op::Run(inv) = op {
            let program = inv.argv.first().map_or("", String::as_str);
            match exec::run(inv) {
                Ok(f) => {
                    if !f.success() {
                        event.reason = Some(format!("{program} {}", f.describe()));
                    }
                    finished = Some(f);
                }
                Err(e) => event.reason = Some(e.to_string()),
            }
        }
    }
    root.forget();
    if event.reason.is_some() {
        return (event, finished);
    }
    event.status = Status::Repaired;
    if verifiable(promise) {
        match evaluate(&cx, &Unit::One(0), &one).pop().map(|(_, v)| v) {
            None | Some(Ok(Plan::Kept)) => {}
            Some(Ok(_)) => {
                event.status = Status::DidNotConverge;
                event.reason = Some("after it ran, its guard still says it is needed".to_string());
            }
            Some(Err(e)) => {
                event.status = Status::DidNotConverge;
                event.reason = Some(format!("after it ran: {e}"));
            }
        }
    }
    (event, finished)
}

/// Evaluates, applies and verifies a set of units that may be committed together.
fn run_units<'p>(
    cx: &Cx<'_>,
    units: &[Unit],
    promise: &(impl Fn(usize) -> Option<&'p Promise<String>> + Sync),
    reporter: &mut dyn Reporter,
    summary: &mut Summary,
    repaired: &mut Vec<usize>,
) {
    if units.is_empty() {
        return;
    }
    let t0 = Instant::now();
    let mut evaluated: Vec<Verdicts> = par_map(units, |u| evaluate(cx, u, promise));
    let t_eval = t0.elapsed();
    // What each unit needs done, moved out of its plans; a unit with no ops is final already.
    let mut pending: Vec<(usize, Vec<Op>)> = Vec::new();
    for (ui, verdicts) in evaluated.iter_mut().enumerate() {
        let mut ops = Vec::new();
        for (_, v) in verdicts.iter_mut() {
            if let Ok(Plan::Repair { ops: o, .. }) = v {
                ops.append(o);
            }
        }
        if !ops.is_empty() {
            pending.push((ui, ops));
        }
    }
    let t1 = Instant::now();
    let mut apply_errors: HashMap<usize, String> = if cx.mode == Mode::Apply && !pending.is_empty()
    {
        let errors = par_chunks(&pending, |chunk| carry_out_batch(cx, chunk));
        cx.root.forget();
        errors.into_iter().flatten().collect()
    } else {
        HashMap::new()
    };
    // Package changes are one transaction for all the units here; if it fails,
    // every unit with a part in it fails with its reason.
    let packages: Vec<(usize, &pkg::PkgChange)> = pending
        .iter()
        .flat_map(|(ui, ops)| {
            ops.iter().filter_map(move |o| match o {
                Op::Package(c) => Some((*ui, c)),
                _ => None,
            })
        })
        .collect();
    if cx.mode == Mode::Apply && !packages.is_empty() {
        let changes: Vec<&pkg::PkgChange> = packages.iter().map(|(_, c)| *c).collect();
        if let Err(e) = pkg::carry_out(cx, &changes) {
            for (ui, _) in &packages {
                apply_errors.entry(*ui).or_insert_with(|| e.clone());
            }
        }
        cx.root.forget();
    }
    let t_apply = t1.elapsed();
    let t2 = Instant::now();
    // Verify: every applied unit is observed and planned again.
    let applied: Vec<usize> = pending
        .iter()
        .map(|(ui, _)| *ui)
        .filter(|ui| cx.mode == Mode::Apply && !apply_errors.contains_key(ui))
        .collect();
    let mut reverified: HashMap<usize, Verdicts> = applied
        .iter()
        .copied()
        .zip(par_map(&applied, |ui| evaluate(cx, &units[*ui], promise)))
        .collect();
    for (ui, verdicts) in evaluated.into_iter().enumerate() {
        let reverified = reverified.remove(&ui);
        for (k, (pi, verdict)) in verdicts.into_iter().enumerate() {
            let Some(p) = promise(pi) else { continue };
            let mut event = PromiseEvent {
                id: p.id.clone(),
                promise: p.kind.type_name(),
                origin: p.origin.to_string(),
                status: Status::Kept,
                changes: Vec::new(),
                diffs: Vec::new(),
                reason: None,
            };
            match verdict {
                Ok(Plan::Kept) => {}
                Ok(Plan::Blocked(why)) => {
                    event.status = Status::Blocked;
                    event.reason = Some(why);
                }
                Err(e) => {
                    event.status = Status::Failed;
                    event.reason = Some(e.to_string());
                }
                Ok(Plan::Repair { changes, .. }) => {
                    event.changes = changes.iter().map(|c| c.summary.clone()).collect();
                    event.diffs = changes.into_iter().filter_map(|c| c.diff).collect();
                    event.status = match cx.mode {
                        Mode::DryRun => Status::WouldRepair,
                        Mode::Apply => {
                            match (&apply_errors.get(&ui), reverified.as_ref().map(|r| &r[k].1)) {
                                (Some(e), _) => {
                                    event.reason = Some(e.to_string());
                                    Status::Failed
                                }
                                (None, Some(Ok(Plan::Kept))) => Status::Repaired,
                                (None, Some(Ok(_))) if !verifiable(p) => Status::Repaired,
                                (None, Some(Ok(Plan::Blocked(why)))) => {
                                    event.reason = Some(format!("after repair: {why}"));
                                    Status::DidNotConverge
                                }
                                (None, Some(Ok(Plan::Repair { changes, .. }))) => {
                                    let still: Vec<_> =
                                        changes.iter().map(|c| c.summary.as_str()).collect();
                                    event.reason = Some(format!(
                                        "after repair it still needs: {}",
                                        still.join("; ")
                                    ));
                                    Status::DidNotConverge
                                }
                                (None, Some(Err(e))) => {
                                    event.reason = Some(format!("after repair: {e}"));
                                    Status::DidNotConverge
                                }
                                (None, None) => Status::Repaired,
                            }
                        }
                    };
                }
            }
            if matches!(event.status, Status::Repaired | Status::WouldRepair) {
                repaired.push(pi);
            }
            summary.count(event.status);
            reporter.promise(&event);
        }
    }
    tracing::debug!(
        units = units.len(),
        changed = applied.len(),
        evaluate_us = t_eval.as_micros(),
        apply_us = t_apply.as_micros(),
        verify_us = t2.elapsed().as_micros(),
        "phase done"
    );
}

/// Carries out the ops of some units into one batch and commits it; returns the
/// units that failed, with the reason.
fn carry_out_batch(cx: &Cx<'_>, pending: &[(usize, Vec<Op>)]) -> Vec<(usize, String)> {
    let writes = pending
        .iter()
        .flat_map(|(_, ops)| ops)
        .filter(|o| matches!(o, Op::Write { .. }))
        .count();
    let mut errors = Vec::new();
    let journal = match cx.state_dir {
        Some(state)
            if writes > 0
                || pending
                    .iter()
                    .any(|(_, ops)| ops.iter().any(|o| matches!(o, Op::Link { .. }))) =>
        {
            let dirs: BTreeSet<PathBuf> = pending
                .iter()
                .flat_map(|(_, ops)| ops)
                .filter_map(|o| match o {
                    Op::Write { path, .. } | Op::Link { path, .. } => {
                        path.parent().map(Path::to_path_buf)
                    }
                    _ => None,
                })
                .collect();
            let name = pending.first().map_or(0, |(ui, _)| *ui);
            match Journal::begin(state, &name.to_string(), &dirs) {
                Ok(j) => Some(j),
                Err(e) => {
                    let reason = format!("cannot journal the batch in {}: {e}", state.display());
                    return pending
                        .iter()
                        .map(|(ui, _)| (*ui, reason.clone()))
                        .collect();
                }
            }
        }
        _ => None,
    };
    let mut batch = Batch::new(cx.root, writes);
    for (ui, ops) in pending {
        for op in ops {
            if let Err(e) = carry_out(cx, &mut batch, *ui, op) {
                errors.push((*ui, e));
                break;
            }
        }
    }
    for (ui, e) in batch.commit() {
        if !errors.iter().any(|(u, _)| *u == ui) {
            errors.push((ui, e.to_string()));
        }
    }
    if let Some(j) = journal
        && let Err(e) = j.end()
    {
        tracing::warn!(error = %e, "cannot remove the staging journal");
    }
    errors
}

/// Signals each process that is still the one observed (same command line), then
/// polls until none is alive, up to `timeout`.
fn stop(
    processes: &[process::Found],
    signal: i32,
    timeout: std::time::Duration,
) -> Result<(), String> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let sig = Signal::try_from(signal).map_err(|e| format!("signal {signal}: {e}"))?;
    let alive = |f: &process::Found| process::cmdline(f.pid).is_some_and(|c| c == f.cmdline);
    for f in processes.iter().filter(|f| alive(f)) {
        match kill(Pid::from_raw(f.pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(format!("cannot signal {} ({}): {e}", f.pid, f.cmdline)),
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<String> = processes
            .iter()
            .filter(|f| alive(f))
            .map(|f| f.pid.to_string())
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "still running {timeout:?} after {sig}: {}",
                left.join(", ")
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The phases of a run, in the order they converge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Group,
    User,
    Pkg,
    Dir,
    File,
    Copy,
    Edits,
    Link,
    Absent,
    Hostname,
    Service,
    Process,
    Command,
}

impl Phase {
    /// Phases whose units run one at a time: each changes state through a tool
    /// that a unit after it may depend on (or, for the account tools, that locks
    /// the whole database).
    const SERIAL: [Phase; 6] = [
        Phase::Group,
        Phase::User,
        Phase::Hostname,
        Phase::Service,
        Phase::Process,
        Phase::Command,
    ];
}

/// How many phases a run has.
const PHASES: usize = Phase::Command as usize + 1;

/// Units evaluated, applied and verified together in a batched phase.
const PHASE_CHUNK: usize = 1024;

/// Below this many items a phase stays on one thread: spawning costs more than it saves.
const PARALLEL_MIN: usize = 256;

/// How many threads a phase may use.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// `f` over `items`, in order, on several threads when there are many.
///
/// Units of one batched phase never share a target (the policy's conflict check
/// guarantees it; edits to one file are one unit), so they may be observed and
/// applied concurrently.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    par_chunks(items, |chunk| chunk.iter().map(&f).collect::<Vec<R>>())
        .into_iter()
        .flatten()
        .collect()
}

/// `f` over consecutive chunks of `items`, one chunk per thread, results in order.
fn par_chunks<T: Sync, R: Send>(items: &[T], f: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    let threads = workers();
    if threads < 2 || items.len() < PARALLEL_MIN {
        return vec![f(items)];
    }
    let size = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items.chunks(size).map(|c| s.spawn(|| f(c))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Whether observing again must find the promise kept (commands without a
/// `creates` or `unless` guard cannot be checked that way).
fn verifiable(p: &Promise<String>) -> bool {
    match &p.kind {
        PromiseKind::Command(c) | PromiseKind::Handler(c) => {
            c.creates.is_some() || c.unless.is_some()
        }
        _ => true,
    }
}

fn evaluate<'p>(
    cx: &Cx<'_>,
    unit: &Unit,
    promise: &(impl Fn(usize) -> Option<&'p Promise<String>> + Sync),
) -> Verdicts {
    match unit {
        Unit::One(i) => {
            let Some(p) = promise(*i) else {
                return Vec::new();
            };
            let plan = match &p.kind {
                PromiseKind::File(f) => file::evaluate(cx, f),
                PromiseKind::Dir(d) => dir::evaluate(cx, d),
                PromiseKind::Link(l) => link::evaluate(cx, l),
                PromiseKind::Absent(a) => absent::evaluate(cx, a),
                PromiseKind::Copy(c) => copy::evaluate(cx, c),
                PromiseKind::Tree(t) => tree::evaluate(cx, t),
                PromiseKind::Command(c) | PromiseKind::Handler(c) => command::evaluate(cx, c),
                PromiseKind::Hostname(h) => hostname::evaluate(cx, h),
                PromiseKind::Service(u) => service::evaluate(cx, u),
                PromiseKind::Group(g) => group::evaluate(cx, g),
                PromiseKind::User(u) => user::evaluate(cx, u),
                PromiseKind::Pkg(p) => pkg::evaluate(cx, p),
                PromiseKind::Process(p) => process::evaluate(cx, p),
                PromiseKind::Line(_) | PromiseKind::Setting(_) => edit::evaluate(cx, &[p])
                    .pop()
                    .map_or(Ok(Plan::Kept), |(_, v)| v),
            };
            vec![(*i, blocked_if_redirectable(plan))]
        }
        Unit::Edits(list) => {
            let ps: Vec<&Promise<String>> = list.iter().filter_map(|i| promise(*i)).collect();
            edit::evaluate(cx, &ps)
                .into_iter()
                .map(|(k, v)| (list[k], v))
                .collect()
        }
    }
}

/// A path a local user could redirect blocks its promise (rather than failing it):
/// the promise is not wrong, the place is unsafe to touch.
fn blocked_if_redirectable(plan: Result<Plan, PromiseError>) -> Result<Plan, PromiseError> {
    match plan {
        Err(PromiseError::Path(e)) if e.is_blocked() => Ok(Plan::Blocked(e.to_string())),
        other => other,
    }
}

/// Where resolution followed a link, each change also names what it actually
/// changes (` (at /real/path)`), so a redirected write never reads as a normal one.
pub(crate) fn name_real(plan: Plan, root: &Root, policy: &AbsPath, real: &Path) -> Plan {
    let at = root.policy_path(real);
    if at.as_path() == policy.as_path() {
        return plan;
    }
    match plan {
        Plan::Repair { changes, ops } => Plan::Repair {
            changes: changes
                .into_iter()
                .map(|mut c| {
                    c.summary = format!("{} (at {})", c.summary, at.display());
                    c
                })
                .collect(),
            ops,
        },
        other => other,
    }
}

fn carry_out(cx: &Cx<'_>, batch: &mut Batch<'_>, unit: usize, op: &Op) -> Result<(), String> {
    let shown = |p: &PathBuf| {
        p.strip_prefix(cx.root.base())
            .map_or_else(|_| p.display().to_string(), |r| format!("/{}", r.display()))
    };
    let io = |p: &PathBuf, e: io::Error| format!("{}: {e}", shown(p));
    match op {
        Op::Write {
            path,
            content,
            attrs,
        } => batch
            .write_file(unit, path, content, *attrs)
            .map_err(|e| io(path, e)),
        Op::Attrs { path, attrs } => batch.set_attrs(path, *attrs).map_err(|e| io(path, e)),
        Op::MakeDir { path, attrs } => batch.make_dir(path, *attrs).map_err(|e| io(path, e)),
        Op::Link {
            path,
            target,
            replace,
        } => batch
            .symlink(unit, path, target, *replace)
            .map_err(|e| io(path, e)),
        Op::Remove { path, recursive } => batch.remove(path, *recursive).map_err(|e| io(path, e)),
        Op::Run(inv) => match exec::run(inv) {
            Ok(f) if f.success() => Ok(()),
            Ok(f) => Err(format!(
                "{} {}",
                inv.argv.first().map_or("", String::as_str),
                f.describe()
            )),
            Err(e) => Err(e.to_string()),
        },
        Op::KernelHostname(name) => {
            nix::unistd::sethostname(name).map_err(|e| format!("cannot set the hostname: {e}"))
        }
        // Carried out once for the whole phase, before the batch (`run_units`).
        Op::Package(_) => Ok(()),
        Op::Start {
            invocation,
            promise,
        } => process::start(invocation, promise),
        Op::Signal {
            processes,
            signal,
            timeout,
        } => stop(processes, *signal, *timeout),
    }
}
