//! `tenet-agent watch`: a package's `package-running` plans round after round,
//! without a journal, until SIGTERM or SIGINT (which let the round in progress
//! finish).

use std::io::Write;
use std::time::{Duration, Instant};

use tenet_keys::jsonl::now;
use tenet_policies::plan::{Event, Trigger};

use crate::failover::{self, Context, Earlier, Outcome};
use crate::lock::RunLock;
use crate::ops::source::{EventError, Place, Scope, load};

/// How often `watch` runs a round when no plan says (`every`).
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);

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

impl Round {
    /// The round as `watch` prints it: `PACKAGE round N: ok: ...`, `failed at ...`, or
    /// `did not run: ...`.
    pub fn line(&self, package: &str) -> String {
        match &self.outcome {
            Ok(o) if o.all_ok() => format!(
                "{package} round {}: ok: {}, {} ok ({} ms)",
                self.number,
                crate::report::counted(o.plans, "plan"),
                crate::report::counted(o.ok, "step"),
                self.duration_ms
            ),
            Ok(o) => format!(
                "{package} round {}: failed at {} ({} ms)",
                self.number,
                crate::escape::printable(o.first_failure.as_deref().unwrap_or("a step")),
                self.duration_ms
            ),
            Err(why) => format!(
                "{package} round {}: did not run: {}",
                self.number,
                crate::escape::printable_lines(&why.to_string())
            ),
        }
    }
}

impl Round {
    /// Writes the round as one JSON line (`tenet.watch.round/1`) to `out`, flushed: how
    /// the plans went (`ok`, `failed`, `not_run`), with the time it was written (RFC 3339).
    /// A closed output is ignored (the round ran all the same).
    pub fn write_json(&self, out: &mut dyn Write, package: &str) {
        let (status, o, reason) = match &self.outcome {
            Ok(o) if o.all_ok() => ("ok", Some(o), None),
            Ok(o) => ("failed", Some(o), o.first_failure.clone()),
            Err(why) => ("not_run", None, Some(why.clone())),
        };
        let line = serde_json::json!({
            "type": "round",
            "time": now(),
            "package": package,
            "round": self.number,
            "status": status,
            "plans": o.map(|o| o.plans),
            "ok": o.map(|o| o.ok),
            "failed": o.map(|o| o.failed),
            "skipped": o.map(|o| o.skipped),
            "reason": reason,
            "duration_ms": self.duration_ms,
        });
        let _ = tenet_keys::jsonl::write_line(out, FAMILY, &line);
        let _ = out.flush();
    }
}

/// Writes a warning of `watch` as one JSON line (`tenet.watch.warning/1`) to `out`.
pub fn write_warning(out: &mut dyn Write, message: &str) {
    let line = serde_json::json!({"type": "warning", "time": now(), "message": message});
    let _ = tenet_keys::jsonl::write_line(out, FAMILY, &line);
    let _ = out.flush();
}

/// The `schema` family of `watch` lines.
const FAMILY: &str = "watch";

/// What ended `watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStopped {
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
) -> Result<WatchStopped, EventError> {
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
                _ = term.recv() => return Ok(WatchStopped::Signal),
                _ = int.recv() => return Ok(WatchStopped::Signal),
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
