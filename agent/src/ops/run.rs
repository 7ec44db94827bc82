//! `tenet-agent run`: fetch the signed policy from the master, verify it, cache it and
//! converge this member to it.
//!
//! In order: configuration, sync lock, trust state (bootstrapped from the enrolment
//! root on the first run), pinned mTLS connection, root updates, timestamp, manifest
//! into staging, the missing blobs into the shared store (loose, or one pack for 64 or
//! more), whole-bundle verification; then the run lock, the ratchet read again (a
//! bundle committed meanwhile by another process wins), atomic switch of the cached
//! bundle, persisting the ratchet, and convergence from the cached bundle's tree.
//!
//! The run lock is not held while the master is asked: a slow or stalled master must
//! not keep `event` (an HA takeover), `watch` or `apply` waiting. Talk with the master
//! happens under `STATE/sync.lock` instead (one sync per state directory: staging and
//! the store's temporaries belong to its holder), and ends by the run's deadline
//! ([`RunOptions::deadline`]); past it, the master counts as unreachable.
//!
//! When no master answers, the last good bundle is enforced with a warning; with none,
//! the run fails ([`RunError::NoMaster`]). A trust refusal keeps the last good bundle,
//! enforces it and is returned in [`RunReport::trust_refused`] so the exit code shows it.
//! A run that converged from a bundle that may not be the master's latest says why in
//! [`RunReport::degraded`] ([`Degraded`]: master unreachable, bundle expired, no fresh
//! timestamp for longer than its lifetime), and the exit code says so too unless the
//! caller asked for `--degraded-ok`.
//!
//! A run whose trusted root or manifest in force expires within the configured
//! threshold (`agent.toml` `[expiry_warning]`, 7 days for the root and 2 days for the
//! manifest by default) warns, and lists it in [`RunReport::expiring`] (`expiring` in
//! `last-run.json`); the exit code is not changed by it.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tenet_keys::{Clock, Manifest, Time, TrustState};

use crate::config::{Config, ConfigError};
use crate::converge::{Diffs, Mode};
use crate::exit::ExitCode;
use crate::lock::{LockError, RunLock};
use crate::ops::apply::{ApplyError, ApplyOptions, Lock, converge_tree};
use crate::report::{Outcome, Recording, Reporter, Status, Summary};
use crate::sync::cache::{BundleFiles, Cache};
use crate::sync::pull::{InForce, SyncError, Synced, pull};
use crate::sync::trusted::{self, BundleError, load_state, member_facts};
use crate::sync::upload;

/// How long `run` (and each run of `daemon`) waits for another run to release the
/// run lock: `watch` takes it for a moment every round, and a periodic run must not
/// fail because of it.
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a run may spend on the master (connecting, roots, timestamp, manifest,
/// blobs) before it gives up on it and converges from the cached bundle: a master that
/// accepts and then stalls cannot keep a run alive for longer.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The lock a run holds while it talks to the master and until it ends: one sync per
/// state directory (staging, the store's temporaries and packs belong to its holder).
/// `event`, `watch` and `apply` never take it.
pub const SYNC_LOCK: &str = "sync.lock";

/// What `run` needs besides the configuration.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The configuration file.
    pub config: PathBuf,
    /// Apply or dry run (a dry run fetches and verifies but switches no cached bundle and
    /// persists no trust state; blobs it fetched stay in the blob store, by hash).
    pub mode: Mode,
    /// Whether reports carry diffs.
    pub diffs: Diffs,
    /// Classes set for this run only, beside the member's inventory classes (a pushed
    /// run's classes).
    pub classes: Vec<String>,
    /// How long to wait for another run (`watch`, `event`, `apply`) to release the
    /// run lock.
    pub lock_timeout: std::time::Duration,
    /// Read every managed file instead of trusting the stat cache for unchanged ones.
    pub rehash: bool,
    /// The most time spent on the master ([`DEFAULT_DEADLINE`]).
    pub deadline: std::time::Duration,
    /// Report a degraded run (master unreachable, bundle expired, timestamp stale) in
    /// `last-run.json` and warnings only, not in the exit code.
    pub degraded_ok: bool,
}

/// A run that converged.
#[derive(Debug)]
pub struct RunReport {
    /// The convergence summary.
    pub summary: Summary,
    /// The serial converged to.
    pub serial: u64,
    /// Set when the master's offer was refused on trust (the last good bundle was
    /// enforced instead): the exit code says so.
    pub trust_refused: Option<String>,
    /// Why the bundle converged to may not be the master's latest (empty when it is).
    pub degraded: Vec<Degraded>,
    /// The root or manifest in force, when it expires within its `[expiry_warning]`
    /// threshold (not yet expired: that is [`Degraded::Expired`]).
    pub expiring: Vec<Expiring>,
}

/// A document in force that expires soon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    /// Which one.
    pub document: ExpiringDocument,
    /// The root's version or the manifest's serial.
    pub version: u64,
    /// When it expires.
    pub expires: Time,
    /// Seconds left until then.
    pub left: u64,
}

/// Which document of an [`Expiring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiringDocument {
    /// The trusted root.
    Root,
    /// The bundle's manifest.
    Manifest,
}

impl Expiring {
    /// `root` or `manifest`, as in `last-run.json`.
    pub fn what(&self) -> &'static str {
        match self.document {
            ExpiringDocument::Root => "root",
            ExpiringDocument::Manifest => "manifest",
        }
    }

    /// `document` in force if it expires after `now` but within `within` (0: never).
    fn check(
        document: ExpiringDocument,
        version: u64,
        expires: Time,
        now: Time,
        within: std::time::Duration,
    ) -> Option<Expiring> {
        let left = expires.unix().checked_sub(now.unix())?;
        (left > 0 && left <= within.as_secs()).then_some(Expiring {
            document,
            version,
            expires,
            left,
        })
    }
}

impl std::fmt::Display for Expiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (days, hours, minutes) = (
            self.left / 86_400,
            self.left % 86_400 / 3600,
            self.left % 3600 / 60,
        );
        let left = if days > 0 {
            format!("{days}d {hours}h")
        } else {
            format!("{hours}h {minutes}m")
        };
        match self.document {
            ExpiringDocument::Root => write!(
                f,
                "the trusted root (version {}) expires at {}, in {left}; sign and publish a new root before then",
                self.version, self.expires
            ),
            ExpiringDocument::Manifest => write!(
                f,
                "the bundle in force (manifest serial {}) expires at {}, in {left}; publish a new bundle before then",
                self.version, self.expires
            ),
        }
    }
}

/// Why a run that converged did so from a bundle that may not be the master's latest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Degraded {
    /// No master answered (or not within the run's deadline): the cached bundle was
    /// enforced. Exit 10.
    Unreachable(String),
    /// The bundle enforced has expired (its manifest, or the trusted root): it still
    /// verified by every other check. Exit 11.
    Expired(String),
    /// No fresh timestamp was accepted in this run, and the newest one trusted expired
    /// at `since`: longer than a timestamp lives without fresh word from the master (a
    /// frozen or absent master). Exit 12.
    Stale {
        /// When the newest trusted timestamp expired.
        since: Time,
    },
}

impl Degraded {
    /// The machine-readable reason, as in `last-run.json`.
    pub fn reason(&self) -> &'static str {
        match self {
            Degraded::Unreachable(_) => "master_unreachable",
            Degraded::Expired(_) => "bundle_expired",
            Degraded::Stale { .. } => "timestamp_stale",
        }
    }

    /// Its exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Degraded::Unreachable(_) => ExitCode::MasterUnreachable,
            Degraded::Expired(_) => ExitCode::BundleExpired,
            Degraded::Stale { .. } => ExitCode::TimestampStale,
        }
    }

    /// Precedence when several hold: expired over stale over unreachable (the longest
    /// lasting condition first).
    fn rank(&self) -> u8 {
        match self {
            Degraded::Expired(_) => 3,
            Degraded::Stale { .. } => 2,
            Degraded::Unreachable(_) => 1,
        }
    }
}

impl std::fmt::Display for Degraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Degraded::Unreachable(why) => write!(f, "master unreachable ({why})"),
            Degraded::Expired(why) => write!(f, "enforcing an expired bundle ({why})"),
            Degraded::Stale { since } => write!(
                f,
                "no fresh timestamp from the master since the trusted one expired at {since}"
            ),
        }
    }
}

/// Why a run did not converge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The run lock is held or unusable.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// No master answered and nothing is cached.
    #[error("master unreachable ({0}) and no cached bundle")]
    NoMaster(String),
    /// Nothing is cached, and nothing is to be fetched (`event`, `plan`).
    #[error("no cached bundle in {}: `tenet-agent run` has not fetched one yet", state_dir.display())]
    NoCache {
        /// The state directory.
        state_dir: PathBuf,
    },
    /// Trust refused and nothing (valid) is cached.
    #[error("trust refused: {0}")]
    Trust(String),
    /// The state directory, node key or root is unusable.
    #[error("{0}")]
    Environment(String),
    /// The converge step failed to start.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl From<BundleError> for RunError {
    fn from(e: BundleError) -> RunError {
        match e {
            BundleError::NoCache { state_dir } => RunError::NoCache { state_dir },
            BundleError::Refused(why) => RunError::Trust(why),
            BundleError::Unusable(why) => RunError::Environment(why),
        }
    }
}

/// One run, reporting to `reporter`.
pub fn run(opts: &RunOptions, reporter: &mut dyn Reporter) -> Result<RunReport, RunError> {
    let config = Config::load(&opts.config)?;
    let env = |what: &str, e: &dyn std::fmt::Display| RunError::Environment(format!("{what}: {e}"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .map_err(|e| {
            env(
                &format!("state directory {}", config.state_dir.display()),
                &e,
            )
        })?;
    // Held to the end of the run: a second run's sync must not clean this one's
    // staging, nor collect blobs it is about to use. Its note names the run (policyd's
    // `busy`), and `last-run.json` gives the same start.
    let sync =
        RunLock::acquire_file_within(&config.state_dir, SYNC_LOCK, "run", opts.lock_timeout)?;
    let mut recording = Recording::new(reporter);
    let prepared = prepare(&config, opts, &mut recording);
    // Only now, with the master's offer verified in staging: commit and converge.
    let lock = RunLock::acquire_within(&config.state_dir, "run", opts.lock_timeout)?;
    let result = prepared.and_then(|p| run_locked(opts, &config, p, &mut recording));
    let outcomes = std::mem::take(&mut recording.outcomes);
    // Written while the lock is held: whoever waits for the lock (policyd's `busy`)
    // finds this run's summary once it is free.
    let last = match record_last_run(&config.state_dir, sync.started_unix(), &result, opts) {
        Ok(last) => Some(last),
        Err(e) => {
            reporter.warning(&format!(
                "cannot write {}: {e}",
                config.state_dir.join(LAST_RUN).display()
            ));
            None
        }
    };
    drop(lock);
    // Still under the sync lock (one sender per queue), never under the run lock.
    if let Some(last) = last {
        report_to_master(&config, opts, &last, outcomes);
    }
    drop(sync);
    result
}

/// Largest report sent (policyd's `[reports] max_body` is 1 MiB by default).
const MAX_REPORT_BYTES: usize = 512 * 1024;

/// Most time spent delivering reports to the master after a run.
const REPORT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends this run's report (built from `last`, `last-run.json`'s object, and the
/// promises' `outcomes`) and whatever earlier reports are queued; a failure is only
/// logged: the report stays queued for the next run.
fn report_to_master(
    config: &Config,
    opts: &RunOptions,
    last: &serde_json::Value,
    outcomes: Vec<Outcome>,
) {
    let n = |k: &str| last.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let mut errors: Vec<String> = Vec::new();
    if let Some(e) = last.get("error").and_then(serde_json::Value::as_str) {
        errors.push(e.to_string());
    }
    if let Some(d) = last.get("degraded").and_then(serde_json::Value::as_array) {
        errors.extend(
            d.iter()
                .filter_map(|d| d.get("message").and_then(serde_json::Value::as_str))
                .map(str::to_string),
        );
    }
    let total = outcomes.len();
    let mut outcomes = outcomes;
    let build = |outcomes: &[Outcome], errors: &[String]| {
        serde_json::json!({
            "schema": upload::REPORT_SCHEMA,
            "member": config.member,
            "kind": "run",
            "started": n("started"),
            "ended": n("ended"),
            "serial": last.get("serial").and_then(serde_json::Value::as_u64),
            "exit_code": last.get("exit_code").and_then(serde_json::Value::as_i64).unwrap_or(0),
            "duration_ms": n("duration_ms"),
            "kept": n("kept"),
            "repaired": n("repaired"),
            "would_repair": n("would_repair"),
            "failed": n("failed"),
            "blocked": n("blocked"),
            "skipped": n("skipped"),
            "dry_run": opts.mode == Mode::DryRun,
            "errors": errors,
            "promises": outcomes,
        })
        .to_string()
    };
    let mut body = build(&outcomes, &errors);
    // Within what the master accepts: kept promises are in the counts already; past
    // that, the first outcomes that fit, and an error saying so.
    if body.len() > MAX_REPORT_BYTES {
        outcomes.retain(|o| o.status != Status::Kept);
        body = build(&outcomes, &errors);
    }
    while body.len() > MAX_REPORT_BYTES && !outcomes.is_empty() {
        outcomes.truncate(outcomes.len() / 2);
        let mut cut = errors.clone();
        cut.push(format!(
            "the report lists {} of {total} promise outcomes (size limit)",
            outcomes.len()
        ));
        body = build(&outcomes, &cut);
    }
    let deadline = opts.deadline.min(REPORT_DEADLINE);
    match upload::deliver(config, body.as_bytes(), deadline) {
        Ok(d) => {
            for r in &d.refused {
                tracing::warn!(report = %r, "the master refused a report; dropped");
            }
            if d.dropped > 0 {
                tracing::warn!(
                    dropped = d.dropped,
                    "report queue full; the oldest reports were dropped"
                );
            }
            match &d.stopped {
                Some(why) => {
                    tracing::warn!(queued = d.queued, error = %why, "reports not delivered; kept for the next run")
                }
                None => tracing::debug!(sent = d.sent, "reports delivered"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %tenet_keys::error_chain(&e), "cannot queue the run report")
        }
    }
}

/// The file in the state directory holding the last `run`'s summary.
pub const LAST_RUN: &str = "last-run.json";

/// The exit code of a run's outcome (`run`, and what `STATE/last-run.json` says).
///
/// Precedence, first that holds: 4 trust refused; unless `degraded_ok`, 11 enforcing
/// an expired bundle, 12 no fresh timestamp for longer than its lifetime, 10 master
/// unreachable; then 1 some promise failed or was blocked; else 0. With `degraded_ok`
/// the conditions of 10-12 are only reported (`last-run.json`'s `degraded`, warnings).
pub fn exit_code(result: &Result<RunReport, RunError>, degraded_ok: bool) -> ExitCode {
    match result {
        Ok(report) => report.exit_code(degraded_ok),
        Err(e) => e.exit_code(),
    }
}

impl RunReport {
    /// The exit code of a run that converged: see [`exit_code`] for the precedence.
    pub fn exit_code(&self, degraded_ok: bool) -> ExitCode {
        if self.trust_refused.is_some() {
            ExitCode::TrustRefused
        } else if !degraded_ok && !self.degraded.is_empty() {
            self.degraded
                .iter()
                .max_by_key(|d| d.rank())
                .map_or(ExitCode::Success, Degraded::exit_code)
        } else if self.summary.all_ok() {
            ExitCode::Success
        } else {
            ExitCode::PromisesFailed
        }
    }
}

impl RunError {
    /// The exit code of a run that did not converge.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_)
            | Self::Apply(ApplyError::InvalidPolicy { .. } | ApplyError::UnknownMember(_)) => {
                ExitCode::InvalidPolicy
            }
            Self::Lock(LockError::Held { .. }) => ExitCode::Locked,
            Self::NoMaster(_) | Self::NoCache { .. } => ExitCode::NoMaster,
            Self::Trust(_) => ExitCode::TrustRefused,
            _ => ExitCode::Environment,
        }
    }

    /// Every problem of an invalid policy tree, printed before the error.
    pub fn diagnostics(&self) -> Option<&tenet_policies::Diagnostics> {
        match self {
            Self::Apply(e) => e.diagnostics(),
            _ => None,
        }
    }
}

/// Writes `STATE/last-run.json` atomically (temp file, fsync, rename): the object of
/// the run's `{"type":"summary",...}` line (its counts absent when the run failed
/// before converging) with `pid`, `started` (unix seconds, as in the sync lock's note),
/// `ended`, `exit_code`, `serial`, `error` (a trust refusal, or why the run failed) and
/// `degraded` (`[{"reason": "master_unreachable" | "bundle_expired" |
/// "timestamp_stale", "exit_code": 10 | 11 | 12, "message": ...}]`, empty when the
/// bundle enforced is the master's latest, current and fresh) and `expiring`
/// (`[{"document": "root" | "manifest", "version": N, "expires": unix seconds,
/// "message": ...}]`, what in force expires within its `[expiry_warning]` threshold).
fn record_last_run(
    state_dir: &Path,
    started: u64,
    result: &Result<RunReport, RunError>,
    opts: &RunOptions,
) -> std::io::Result<serde_json::Value> {
    let mut v = match result {
        Ok(r) => serde_json::to_value(&r.summary).map_err(std::io::Error::other)?,
        Err(_) => serde_json::json!({"dry_run": opts.mode == Mode::DryRun}),
    };
    let ended = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (serial, error) = match result {
        Ok(r) => (Some(r.serial), r.trust_refused.clone()),
        Err(e) => (None, Some(tenet_keys::error_chain(e))),
    };
    let degraded: Vec<serde_json::Value> = match result {
        Ok(r) => r
            .degraded
            .iter()
            .map(|d| {
                serde_json::json!({
                    "reason": d.reason(),
                    "exit_code": d.exit_code() as i32,
                    "message": d.to_string(),
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let expiring: Vec<serde_json::Value> = match result {
        Ok(r) => r
            .expiring
            .iter()
            .map(|e| {
                serde_json::json!({
                    "document": e.what(),
                    "version": e.version,
                    "expires": e.expires.unix(),
                    "message": e.to_string(),
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), "summary".into());
        o.insert("pid".into(), std::process::id().into());
        o.insert("started".into(), started.into());
        o.insert("ended".into(), ended.into());
        o.insert(
            "exit_code".into(),
            (exit_code(result, opts.degraded_ok) as i32).into(),
        );
        o.insert("serial".into(), serial.into());
        o.insert("error".into(), error.into());
        o.insert("degraded".into(), degraded.into());
        o.insert("expiring".into(), expiring.into());
    }
    let mut text = v.to_string();
    text.push('\n');
    tenet_keys::fsio::write_atomic(
        &state_dir.join(LAST_RUN),
        text.as_bytes(),
        0o644,
        tenet_keys::fsio::Overwrite::Replace,
    )?;
    Ok(v)
}

/// What a run learnt from the master before it takes the run lock.
struct Prepared {
    cache: Cache,
    state: TrustState,
    clock: Clock,
    cached: Option<(u64, PathBuf)>,
    synced: Result<Synced, SyncError>,
    t0: std::time::Instant,
}

/// The part of a run that needs no run lock (the sync lock is held): warnings about
/// unfinished events, staging cleaned, trust state, and the sync with the master into
/// staging, within the run's deadline.
fn prepare(
    config: &Config,
    opts: &RunOptions,
    reporter: &mut dyn Reporter,
) -> Result<Prepared, RunError> {
    let env = |what: &str, e: &dyn std::fmt::Display| RunError::Environment(format!("{what}: {e}"));
    for w in crate::failover::journal::unfinished_warnings(&config.state_dir, None) {
        reporter.warning(w.strip_prefix("warning: ").unwrap_or(&w));
    }
    let cache = Cache::open(&config.state_dir).map_err(|e| env("cache", &e))?;
    cache
        .clean_staging()
        .map_err(|e| env("cannot clean the staging directory", &e))?;

    let state = load_state(config, &cache)?;
    let clock = Clock::new(Time::from_system(SystemTime::now()));
    let cached = cache.current();
    // A pack whose index is damaged is removed as the store opens, and the store
    // marked: opened before the sync, so that this run fetches what it held.
    if cached.is_some() {
        cache
            .store()
            .map_err(|e| env("cannot open the blob store", &e))?;
    }

    let t0 = std::time::Instant::now();
    let in_force = if cached.is_some() {
        InForce::Cached
    } else {
        InForce::Nothing
    };
    let mut warnings = Vec::new();
    let synced = pull(
        config,
        &state,
        &clock,
        &cache,
        in_force,
        opts.deadline,
        &mut warnings,
    );
    for w in &warnings {
        reporter.warning(w);
    }
    tracing::debug!(
        elapsed_us = t0.elapsed().as_micros(),
        ok = synced.is_ok(),
        "synced with the master"
    );
    if synced.is_err() {
        // Unverified bytes do not outlive the run that fetched them.
        if let Err(e) = cache.clean_staging() {
            reporter.warning(&format!("cannot clean the staging directory: {e}"));
        }
    }
    Ok(Prepared {
        cache,
        state,
        clock,
        cached,
        synced,
        t0,
    })
}

/// Whether the member has gone without a fresh timestamp for longer than one lives:
/// the newest trusted timestamp has expired (a state persisted before expiries were
/// recorded: its version plus the default lifetime).
fn stale_since(state: &TrustState, clock: &Clock) -> Option<Time> {
    let expires = state.timestamp_expires().or_else(|| {
        (state.timestamp_version() > 0)
            .then(|| {
                Time::from_unix(
                    state
                        .timestamp_version()
                        .saturating_add(tenet_keys::timestamp::DEFAULT_TIMESTAMP_TTL_SECS),
                )
            })
            .flatten()
    })?;
    (expires <= clock.now()).then_some(expires)
}

/// The cached bundle at `dir`, re-verified; an expired one is added to `degraded`.
fn from_cache(
    state: &TrustState,
    serial: u64,
    dir: &Path,
    clock: &Clock,
    reporter: &mut dyn Reporter,
    degraded: &mut Vec<Degraded>,
) -> Result<(BundleFiles, Manifest, u64), RunError> {
    let (files, manifest, serial, expired) =
        trusted::from_cache(state, serial, dir, clock, reporter)?;
    if let Some(why) = expired {
        degraded.push(Degraded::Expired(why));
    }
    Ok((files, manifest, serial))
}

/// Commit and converge, under the run lock.
fn run_locked(
    opts: &RunOptions,
    config: &Config,
    prepared: Prepared,
    reporter: &mut dyn Reporter,
) -> Result<RunReport, RunError> {
    let env = |what: &str, e: &dyn std::fmt::Display| RunError::Environment(format!("{what}: {e}"));
    let Prepared {
        cache,
        mut state,
        clock,
        mut cached,
        mut synced,
        t0,
    } = prepared;
    // The ratchet again, under the run lock: a process that synced under the run lock
    // alone (an agent of an earlier version, still running as the daemon) may have
    // committed a bundle since `prepare` read it. This run's offer was checked against
    // the state it read; it is neither committed nor persisted over a newer one.
    let latest = load_state(config, &cache)?;
    let in_force = cache.current();
    if latest != state || in_force != cached {
        reporter.warning(
            "the trust state or the bundle in force changed while this run talked to the master (another process committed meanwhile); converging from the bundle now in force",
        );
        state = latest;
        cached = in_force;
        if synced.is_ok() {
            if let Err(e) = cache.clean_staging() {
                reporter.warning(&format!("cannot clean the staging directory: {e}"));
            }
            synced = Ok(Synced::Current {
                state: Box::new(state.clone()),
                fresh: false,
            });
        }
    }
    let mut degraded = Vec::new();
    let fresh = matches!(
        synced,
        Ok(Synced::Fetched(_) | Synced::Current { fresh: true, .. })
    );
    if !fresh && let Some(since) = stale_since(&state, &clock) {
        let stale = Degraded::Stale { since };
        reporter.warning(&format!(
            "STALE: {stale}; the member may be frozen on an old serial"
        ));
        degraded.push(stale);
    }
    let mut trust_refused = None;
    // The root in force once the offer is taken (or not).
    let root_of = |s: &TrustState| (s.root().root().version, s.root().root().expires);
    let mut root = root_of(&state);
    let (files, manifest, serial) = match synced {
        Ok(Synced::Fetched(bundle)) => {
            root = root_of(bundle.state());
            let serial = bundle.manifest().serial;
            let manifest = bundle.manifest().clone();
            if opts.mode == Mode::DryRun {
                reporter.warning(&format!(
                    "dry run: serial {serial} verified; not cached, trust state not updated"
                ));
                let files = BundleFiles::new(bundle.dir(), &manifest)
                    .map_err(|e| env("cannot open the blob store", &e))?;
                (files, manifest, serial)
            } else {
                let dir = cache
                    .commit(&bundle)
                    .map_err(|e| env("cannot cache the verified bundle", &e))?;
                cache
                    .persist(bundle.state())
                    .map_err(|e| env("cannot persist the trust state", &e))?;
                if let Err(e) = cache.clear_damaged() {
                    reporter.warning(&format!("cannot clear the damaged-blob mark: {e}"));
                }
                let files = BundleFiles::new(&dir, &manifest)
                    .map_err(|e| env("cannot open the blob store", &e))?;
                (files, manifest, serial)
            }
        }
        Ok(Synced::Current { state: s, .. }) => {
            root = root_of(&s);
            if opts.mode == Mode::Apply && *s != state {
                cache
                    .persist(&s)
                    .map_err(|e| env("cannot persist the trust state", &e))?;
            }
            let Some((serial, dir)) = cached else {
                return Err(RunError::NoMaster(
                    "the master has nothing newer and no bundle is cached".to_string(),
                ));
            };
            from_cache(&s, serial, &dir, &clock, reporter, &mut degraded)?
        }
        Err(SyncError::Local(m)) => return Err(RunError::Environment(m)),
        Err(SyncError::Unreachable(why)) => {
            let Some((serial, dir)) = cached else {
                return Err(RunError::NoMaster(why));
            };
            reporter.warning(&format!(
                "master unreachable ({why}); converging from cached bundle serial {serial}"
            ));
            degraded.push(Degraded::Unreachable(why));
            from_cache(&state, serial, &dir, &clock, reporter, &mut degraded)?
        }
        Err(SyncError::Trust(why)) => {
            let Some((serial, dir)) = cached else {
                return Err(RunError::Trust(why));
            };
            reporter.warning(&format!(
                "trust refused ({why}); keeping the last good bundle, converging from cached bundle serial {serial}"
            ));
            trust_refused = Some(why);
            from_cache(&state, serial, &dir, &clock, reporter, &mut degraded)?
        }
    };

    tracing::debug!(
        elapsed_us = t0.elapsed().as_micros(),
        serial,
        "bundle in force"
    );
    let within = config.expiry_warning;
    let expiring: Vec<Expiring> = [
        Expiring::check(
            ExpiringDocument::Root,
            root.0,
            root.1,
            clock.now(),
            within.root,
        ),
        Expiring::check(
            ExpiringDocument::Manifest,
            manifest.serial,
            manifest.expires,
            clock.now(),
            within.manifest,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    for e in &expiring {
        reporter.warning(&format!("EXPIRING SOON: {e}"));
    }
    let facts = member_facts(&config.member, &manifest, serial, &opts.classes, reporter);
    let apply_opts = ApplyOptions {
        tree: files.tree(),
        files: Some(files),
        root: config.root.clone(),
        state_dir: Some(config.state_dir.clone()),
        mode: opts.mode,
        diffs: opts.diffs,
        facts,
        lock_timeout: opts.lock_timeout,
        rehash: opts.rehash,
        serial: Some(serial),
    };
    let summary = converge_tree(&apply_opts, reporter, Lock::Held)?;
    Ok(RunReport {
        summary,
        serial,
        trust_refused,
        degraded,
        expiring,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tenet_keys::TrustedRoot;
    use tenet_keys::deployment::{self, Deployment, InitOptions};
    use tenet_keys::publish::{self, SignOptions, Signing};

    use super::*;
    use crate::report::Collect;
    use crate::sync::trusted::check_cached;

    #[test]
    fn exit_codes_follow_the_documented_precedence() {
        let report = |failed: usize, trust: bool, degraded: Vec<Degraded>| {
            Ok(RunReport {
                summary: Summary {
                    failed,
                    ..Summary::default()
                },
                serial: 1,
                trust_refused: trust.then(|| "refused".to_string()),
                degraded,
                expiring: Vec::new(),
            })
        };
        let unreachable = || Degraded::Unreachable("gone".to_string());
        let expired = || Degraded::Expired("manifest expired".to_string());
        let stale = || Degraded::Stale {
            since: Time::from_unix(1).expect("time"),
        };
        let code = |r: &Result<RunReport, RunError>, ok: bool| exit_code(r, ok) as i32;
        assert_eq!(code(&report(0, false, vec![]), false), 0);
        assert_eq!(code(&report(1, false, vec![]), false), 1);
        assert_eq!(code(&report(1, false, vec![unreachable()]), false), 10);
        assert_eq!(
            code(&report(0, false, vec![unreachable(), stale()]), false),
            12
        );
        assert_eq!(
            code(
                &report(0, false, vec![stale(), expired(), unreachable()]),
                false
            ),
            11
        );
        assert_eq!(code(&report(0, true, vec![expired()]), false), 4);
        // --degraded-ok: only what the promises say.
        assert_eq!(code(&report(0, false, vec![expired(), stale()]), true), 0);
        assert_eq!(code(&report(2, false, vec![unreachable()]), true), 1);
        assert_eq!(code(&report(0, true, vec![]), true), 4);
    }

    /// A deployment with member alpha, a tree, and a member cache to commit into.
    struct World {
        _dir: tempfile::TempDir,
        deploy: PathBuf,
        tree: PathBuf,
        cache: Cache,
        state: TrustState,
        now: Time,
    }

    impl World {
        fn new() -> World {
            let dir = tempfile::tempdir().expect("temp dir");
            let now = Time::from_system(SystemTime::now());
            let deploy = dir.path().join("deploy");
            deployment::init(
                &deploy,
                &InitOptions {
                    root_keys: 1,
                    root_threshold: 1,
                    expires_in: Duration::from_secs(30 * 86_400),
                    now,
                },
            )
            .expect("init");
            let tree = dir.path().join("tree");
            crate::test_util::write(
                &tree.join("cluster.toml"),
                "[cluster]\nname = \"t\"\n\n[[member]]\nname = \"alpha\"\nhostname = \"a\"\naddresses = [{ ip = \"10.0.0.1\", role = \"boot\" }]\n",
            );
            let d = Deployment::open(&deploy).expect("open");
            let (_, keyid) = deployment::node_key(&dir.path().join("node")).expect("node key");
            d.enroll("alpha", keyid).expect("enroll");
            let root = std::fs::read(deploy.join("root/1.root.toml")).expect("root");
            let sig = std::fs::read(deploy.join("root/1.root.toml.sig")).expect("root sig");
            let state = TrustState::new(TrustedRoot::bootstrap(&root, &sig, None).expect("root"));
            let cache = Cache::open(&dir.path().join("state")).expect("cache");
            World {
                deploy,
                tree,
                cache,
                state,
                now,
                _dir: dir,
            }
        }

        /// Signs the tree as `serial` into staging, verifies and commits it.
        fn commit(&mut self, serial: u64) -> PathBuf {
            let mut d = Deployment::open(&self.deploy).expect("open");
            let staging = self.cache.fresh_staging().expect("staging");
            // `sign` wants an empty directory: the bundle comes with blobs of its own,
            // which commit moves into the store.
            std::fs::remove_file(staging.join(crate::sync::cache::BLOBS)).expect("unlink");
            let key = d.policy_key_path();
            publish::sign(
                &mut d,
                &SignOptions {
                    tree: self.tree.clone(),
                    out: staging.clone(),
                    serial: Some(serial),
                    expires_in: Duration::from_secs(86_400),
                    now: self.now,
                    signing: Signing::WithKey(key),
                },
            )
            .expect("sign");
            let clock = Clock::new(self.now);
            let verified =
                tenet_keys::verify_bundle_stored(&self.state, &staging, &clock).expect("verifies");
            let dir = self.cache.commit(&verified).expect("commit");
            self.state = verified.into_state();
            dir
        }

        /// The content motd's promise converges to, read from the bundle at `dir` the
        /// way a run reads it: a `source` known by its hash is read (and checked) only
        /// when it is needed.
        fn motd(&self, dir: &Path) -> Result<Vec<u8>, String> {
            use tenet_policies::TreeFiles;
            use tenet_policies::model::{Content, PromiseKind};
            let clock = Clock::new(self.now);
            let mut reporter = Collect::default();
            let (m, _) = check_cached(&self.state, dir, &clock, &mut reporter).expect("verifies");
            let files = BundleFiles::new(dir, &m).expect("store");
            let policy =
                tenet_policies::load_from(&files.tree(), &files).map_err(|d| d.to_string())?;
            match &policy.promises[0].kind {
                PromiseKind::File(f) => match &f.content {
                    Content::Stored(s) => {
                        files.read(&files.tree(), &s.rel).map_err(|e| e.to_string())
                    }
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }
    }

    fn motd(world: &World, text: &str) {
        crate::test_util::write(
            &world.tree.join("motd.toml"),
            "[[file]]\npath = \"/etc/motd\"\nsource = \"motd\"\n",
        );
        crate::test_util::write(&world.tree.join("files/motd"), text);
    }

    #[test]
    fn bundles_share_one_blob_store_and_a_changed_stored_blob_is_never_used() {
        let mut w = World::new();
        motd(&w, "first\n");
        let one = w.commit(1);
        let stored_one = w.cache.stored_blobs().expect("store");
        assert_eq!(stored_one.len(), 3, "{stored_one:?}");
        assert!(
            std::fs::symlink_metadata(one.join(crate::sync::cache::BLOBS))
                .expect("link")
                .is_symlink()
        );
        assert_eq!(w.motd(&one).expect("reads"), b"first\n");

        // A new serial that changes one file adds one blob; both bundles read theirs.
        motd(&w, "other\n");
        let two = w.commit(2);
        let stored_two = w.cache.stored_blobs().expect("store");
        assert_eq!(stored_two.difference(&stored_one).count(), 1);
        assert_eq!(w.cache.current().map(|(s, _)| s), Some(2));
        assert_eq!(w.motd(&two).expect("reads"), b"other\n");

        // The stored blob of motd changed in place (same size, same name): the bundle's
        // documents verify, but reading it refuses it, so no byte of it is converged.
        let sha = tenet_keys::Sha256Sum::of(b"other\n").to_string();
        let blob = w.cache.blob_store().join(&sha);
        crate::test_util::write(&blob, "OTHER\n");
        let refused = w.motd(&two).expect_err("refused");
        assert!(refused.contains("sha256"), "{refused}");
        crate::test_util::write(&blob, "other\n");
        assert_eq!(w.motd(&two).expect("reads"), b"other\n");

        // Unreferenced blobs are collected once they outnumber the bundle in force's;
        // the previous bundle's stay.
        for i in 0..100 {
            crate::test_util::write(&w.cache.blob_store().join(format!("{i:064x}")), "junk");
        }
        motd(&w, "third\n");
        let three = w.commit(3);
        let stored = w.cache.stored_blobs().expect("store");
        assert_eq!(stored.len(), 4, "{stored:?}");
        assert!(stored.contains(&sha), "the previous bundle's blob is kept");
        assert_eq!(w.motd(&three).expect("reads"), b"third\n");
        assert!(!one.exists(), "bundle 1 removed");
        assert!(two.exists(), "the previous bundle is kept");
    }
}
