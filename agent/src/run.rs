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

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tenet_keys::document::{Document, MAX_SIGNATURE_BYTES};
use tenet_keys::{
    Clock, Manifest, SecretKey, Time, TimestampOutcome, TrustState, TrustedRoot, VerifiedBundle,
    VerifyError, bundle, check_blob_stream, check_manifest, check_root_fresh, check_timestamp,
    update_root, verify_cached,
};

use crate::apply::{ApplyError, ApplyOptions, apply_locked};
use crate::cache::{BundleFiles, Cache};
use crate::config::{Config, ConfigError};
use crate::converge::{Diffs, Mode};
use crate::exit::ExitCode;
use crate::fetch::{self, FetchError, Master};
use crate::lock::{LockError, RunLock};
use crate::report::{Reporter, Summary};
use crate::statefs::{self, create_file, flush_written, write_file};
use crate::store::{PACK_MIN, PackWriter};

/// How long `run` (and each run of `daemon`) waits for another run to release the
/// run lock: `watch` takes it for a moment every round, and a periodic run must not
/// fail because of it.
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Most root updates walked in one run.
pub const MAX_ROOT_UPDATES: u64 = 16;

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

/// What the master's offer came to.
enum Synced {
    /// A newer bundle, verified in staging.
    Fetched(Box<VerifiedBundle>),
    /// Nothing newer; this state (newer roots or timestamp version) is to be persisted.
    /// `fresh`: a timestamp was accepted (not ignored as older than the trusted one).
    Current { state: Box<TrustState>, fresh: bool },
}

enum SyncError {
    /// No master answered, or it answered nonsense: fall back on the cache.
    Unreachable(String),
    /// A trust check failed.
    Trust(String),
    /// A local failure.
    Local(String),
}

impl From<FetchError> for SyncError {
    fn from(e: FetchError) -> SyncError {
        match e {
            FetchError::NotPinned { .. } => SyncError::Trust(e.to_string()),
            FetchError::Setup(m) => SyncError::Local(m),
            other => SyncError::Unreachable(other.to_string()),
        }
    }
}

impl From<VerifyError> for SyncError {
    fn from(e: VerifyError) -> SyncError {
        SyncError::Trust(tenet_keys::error_chain(&e))
    }
}

fn local(what: &str) -> impl Fn(std::io::Error) -> SyncError + '_ {
    move |e| SyncError::Local(format!("{what}: {e}"))
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
    let prepared = prepare(&config, opts, reporter);
    // Only now, with the master's offer verified in staging: commit and converge.
    let lock = RunLock::acquire_within(&config.state_dir, "run", opts.lock_timeout)?;
    let result = prepared.and_then(|p| run_locked(opts, &config, p, reporter));
    // Written while the lock is held: whoever waits for the lock (policyd's `busy`)
    // finds this run's summary once it is free.
    if let Err(e) = record_last_run(&config.state_dir, sync.started_unix(), &result, opts) {
        reporter.warning(&format!(
            "cannot write {}: {e}",
            config.state_dir.join(LAST_RUN).display()
        ));
    }
    drop(lock);
    drop(sync);
    result
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
            Self::Config(_) | Self::Apply(ApplyError::InvalidPolicy { .. }) => {
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
/// bundle enforced is the master's latest, current and fresh).
fn record_last_run(
    state_dir: &Path,
    started: u64,
    result: &Result<RunReport, RunError>,
    opts: &RunOptions,
) -> std::io::Result<()> {
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
    }
    let mut text = v.to_string();
    text.push('\n');
    tenet_keys::fsio::write_atomic(
        &state_dir.join(LAST_RUN),
        text.as_bytes(),
        0o644,
        tenet_keys::fsio::Overwrite::Replace,
    )
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
    let synced = sync(
        config,
        &state,
        &clock,
        &cache,
        cached.is_some(),
        opts.deadline,
    );
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
    let (files, manifest, serial) = match synced {
        Ok(Synced::Fetched(bundle)) => {
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
    };
    let summary = apply_locked(&apply_opts, reporter)?;
    Ok(RunReport {
        summary,
        serial,
        trust_refused,
        degraded,
    })
}

/// The verified bundle in force, read from the cache without asking the master.
#[derive(Debug, Clone)]
pub struct CachedTree {
    /// Its policy tree (read from its blobs, each checked as it is read).
    pub files: BundleFiles,
    /// Its serial.
    pub serial: u64,
    /// `member=` and `classes=` fact overrides for the member, from the signed inventory.
    pub facts: Vec<String>,
}

/// The bundle in force in `config`'s state directory, verified again against the
/// persisted trust state (an expired one is used with a warning), and the facts
/// `member` has in its signed inventory. The caller holds the run lock, or only reads.
pub fn cached_tree(
    config: &Config,
    member: &str,
    reporter: &mut dyn Reporter,
) -> Result<CachedTree, RunError> {
    let (_, manifest, files) = cached_bundle(config, reporter)?;
    let serial = manifest.serial;
    let facts = member_facts(member, &manifest, serial, &[], reporter);
    Ok(CachedTree {
        files,
        serial,
        facts,
    })
}

/// `member=` and `classes=` for `member` from the signed inventory (a warning when it is not there).
fn member_facts(
    member: &str,
    manifest: &Manifest,
    serial: u64,
    extra_classes: &[String],
    reporter: &mut dyn Reporter,
) -> Vec<String> {
    let mut classes: Vec<String> = match manifest.members.iter().find(|m| m.name == member) {
        Some(m) => m.classes.clone(),
        None => {
            reporter.warning(&format!(
                "member {member} is not in the inventory of serial {serial}"
            ));
            Vec::new()
        }
    };
    for c in extra_classes {
        if !classes.contains(c) {
            classes.push(c.clone());
        }
    }
    let classes = classes.join(",");
    let mut facts = vec![format!("member={member}")];
    if !classes.is_empty() {
        facts.push(format!("classes={classes}"));
    }
    facts
}

/// The cached bundle's manifest and tree, re-verified against the persisted trust
/// state (an expired bundle is used with a warning), without fetching anything: what
/// `push` reads the member list from, and `event` its plans.
pub fn cached_bundle(
    config: &Config,
    reporter: &mut dyn Reporter,
) -> Result<(TrustState, Manifest, BundleFiles), RunError> {
    let cache = Cache::open(&config.state_dir).map_err(|e| {
        RunError::Environment(format!("cache in {}: {e}", config.state_dir.display()))
    })?;
    let Some((serial, dir)) = cache.current() else {
        return Err(RunError::NoCache {
            state_dir: config.state_dir.clone(),
        });
    };
    let state = load_state(config, &cache)?;
    let clock = Clock::new(Time::from_system(SystemTime::now()));
    let (files, manifest, _) = from_cache(&state, serial, &dir, &clock, reporter, &mut Vec::new())?;
    Ok((state, manifest, files))
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
    let (manifest, expired) = check_cached(state, dir, clock, reporter)?;
    if let Some(why) = expired {
        degraded.push(Degraded::Expired(why));
    }
    let files = BundleFiles::new(dir, &manifest)
        .map_err(|e| RunError::Environment(format!("cannot open the blob store: {e}")))?;
    Ok((files, manifest, serial))
}

/// The persisted trust state, or the enrolment root's on the first run.
fn load_state(config: &Config, cache: &Cache) -> Result<TrustState, RunError> {
    let text = cache.trust_state().map_err(|e| {
        RunError::Environment(format!(
            "cannot read the trust state in {}: {e}",
            config.state_dir.display()
        ))
    })?;
    if let Some(text) = text {
        return TrustState::from_toml(&text).map_err(|e| {
            RunError::Trust(format!(
                "trust state in {}: {}",
                config.state_dir.display(),
                tenet_keys::error_chain(&e)
            ))
        });
    }
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| {
            RunError::Environment(format!("cannot read trusted root {}: {e}", p.display()))
        })
    };
    let bytes = read(&config.trusted_root)?;
    let sig = read(&bundle::sig_path(&config.trusted_root))?;
    let root = TrustedRoot::bootstrap(&bytes, &sig, None).map_err(|e| {
        RunError::Trust(format!(
            "trusted root {}: {}",
            config.trusted_root.display(),
            tenet_keys::error_chain(&e)
        ))
    })?;
    Ok(TrustState::new(root))
}

/// Re-verifies the cached bundle against the trust state: roots and manifest, every
/// check but expiry ([`verify_cached`]: signatures over the exact bytes, deployment,
/// epoch, the serial ratchet and the trusted hash). Blobs are not opened here: they
/// were hashed when stored, and each is hashed again as it is read ([`BundleFiles`]).
/// An expired bundle is still enforced, with a warning, and what expired is returned;
/// any other failure refuses it. No byte of the manifest is used unless it verified.
fn check_cached(
    state: &TrustState,
    dir: &Path,
    clock: &Clock,
    reporter: &mut dyn Reporter,
) -> Result<(Manifest, Option<String>), RunError> {
    match verify_cached(state, dir, clock) {
        Ok(b) if b.expired().is_empty() => Ok((b.into_manifest(), None)),
        Ok(b) => {
            let why = b
                .expired()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            reporter.warning(&format!(
                "EXPIRED: the cached bundle in {} no longer verifies as current ({why}); enforcing it anyway until the master serves a newer one",
                dir.display()
            ));
            Ok((b.into_manifest(), Some(why)))
        }
        Err(e) => Err(RunError::Trust(format!(
            "the cached bundle in {} does not verify: {}",
            dir.display(),
            tenet_keys::error_chain(&e)
        ))),
    }
}

/// Talks to the master: root updates, timestamp, and when it names a newer manifest
/// (or nothing is cached), the manifest into staging and the missing blobs into the
/// shared store, then verifies the
/// staged bundle as a whole.
fn sync(
    config: &Config,
    state: &TrustState,
    clock: &Clock,
    cache: &Cache,
    have_cache: bool,
    deadline: std::time::Duration,
) -> Result<Synced, SyncError> {
    let key = SecretKey::read(&config.node_key).map_err(|e| {
        SyncError::Local(format!(
            "node key {}: {}",
            config.node_key.display(),
            tenet_keys::error_chain(&e)
        ))
    })?;
    let pins = state.root().root().transport.server_spki.clone();
    let tls = fetch::client_config(&config.member, &key, pins)?;
    let t0 = std::time::Instant::now();
    let mut master = Master::connect(&config.master(), tls, config.connect_timeout, deadline)?;
    tracing::debug!(elapsed_us = t0.elapsed().as_micros(), "connected");
    let staging = cache.fresh_staging().map_err(local("staging"))?;
    let write = |rel: &str, bytes: &[u8]| -> Result<(), SyncError> {
        let path = staging.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(local("staging"))?;
        }
        write_file(&path, bytes).map_err(local("staging"))
    };

    let mut st = state.clone();
    for _ in 0..MAX_ROOT_UPDATES {
        let next = st.root().root().version.saturating_add(1);
        let path = format!("/v1/root/{next}");
        let Some(bytes) = master.get_optional(&path, Document::Root.max_bytes())? else {
            break;
        };
        let sig = master.get(&format!("{path}/sig"), MAX_SIGNATURE_BYTES)?;
        st = update_root(&st, &bytes, &sig)?;
        let name = format!("{}/{}", bundle::ROOT_DIR, bundle::root_file_name(next));
        write(&name, &bytes)?;
        write(&format!("{name}{}", bundle::SIG_SUFFIX), &sig)?;
    }
    check_root_fresh(&st, clock)?;

    let ts = master.get("/v1/timestamp", Document::Timestamp.max_bytes())?;
    let ts_sig = master.get("/v1/timestamp/sig", MAX_SIGNATURE_BYTES)?;
    let expected = match check_timestamp(&st, &ts, &ts_sig, clock)? {
        TimestampOutcome::Ignored { offered, trusted } => {
            tracing::info!(offered, trusted, "older timestamp ignored");
            if have_cache {
                return Ok(Synced::Current {
                    state: Box::new(st),
                    fresh: false,
                });
            }
            return Err(SyncError::Unreachable(format!(
                "the master offers timestamp version {offered}, older than the trusted {trusted}"
            )));
        }
        TimestampOutcome::Current { state, expected } => {
            // A damaged stored blob was set aside: fetch the bundle in force again
            // (its manifest is accepted as the one trusted; only missing blobs move).
            if have_cache && !cache.damaged() {
                return Ok(Synced::Current { state, fresh: true });
            }
            expected
        }
        TimestampOutcome::Newer(e) => e,
        other => {
            return Err(SyncError::Trust(format!(
                "unexpected timestamp outcome {other:?}"
            )));
        }
    };
    write(bundle::TIMESTAMP, &ts)?;
    write(
        &format!("{}{}", bundle::TIMESTAMP, bundle::SIG_SUFFIX),
        &ts_sig,
    )?;

    let cap = expected.manifest().size.min(Document::Manifest.max_bytes());
    let manifest = master.get("/v1/manifest", cap)?;
    let manifest_sig = master.get("/v1/manifest/sig", MAX_SIGNATURE_BYTES)?;
    let (_, m) = check_manifest(&st, &manifest, &manifest_sig, Some(&expected), clock)?;
    tracing::debug!(
        elapsed_us = t0.elapsed().as_micros(),
        files = m.files.len(),
        "manifest fetched and checked"
    );
    write(bundle::MANIFEST, &manifest)?;
    write(
        &format!("{}{}", bundle::MANIFEST, bundle::SIG_SUFFIX),
        &manifest_sig,
    )?;

    // Blobs are stored once, by hash, in the shared store (`staging/blobs` links to
    // it): a new serial that changes one file fetches and writes one blob. A blob
    // enters the store only after it streamed in hashed against the signed manifest
    // (or was linked from an older cache layout, where it was hashed when stored); a
    // stored one is trusted by its name, and hashed again whenever its bytes are read
    // (`BundleFiles`). The missing ones are fetched a batch per request (`fetch_blobs`).
    let store = cache.blob_store();
    let stored = cache.stored_blobs().map_err(local("blob store"))?;
    let in_force = cache.current().map(|(_, dir)| dir);
    let mut seen = BTreeSet::new();
    let mut written = Vec::new();
    let roots = staging.join(bundle::ROOT_DIR);
    for dir in [&staging, &roots] {
        if let Ok(list) = std::fs::read_dir(dir) {
            for e in list.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    written.push(e.path());
                }
            }
        }
    }
    let mut missing = Vec::new();
    for entry in &m.files {
        if !seen.insert(entry.sha256) {
            continue;
        }
        let hex = entry.sha256.to_string();
        if stored.contains(&hex) {
            continue;
        }
        let path = store.join(&hex);
        if let Some(dir) = &in_force
            && link_blob(&bundle::blob_path(dir, &entry.sha256), &path).is_ok()
        {
            written.push(path);
            continue;
        }
        missing.push(entry);
    }
    // Many blobs go into one pack (a full sync: one sequential file instead of
    // thousands), a few loose. A pack keeps the blobs that were checked before a
    // failure, as loose files do, so a retry fetches only the rest.
    let mut sink = if missing.len() >= PACK_MIN {
        Sink::Pack(PackWriter::create(&config.state_dir).map_err(local("blob store"))?)
    } else {
        Sink::Loose {
            dir: store,
            written: Vec::new(),
        }
    };
    let fetched = fetch_blobs(&mut master, &mut sink, &missing, BATCH_LIMITS);
    tracing::debug!(
        elapsed_us = t0.elapsed().as_micros(),
        blobs = missing.len(),
        "blobs fetched"
    );
    let kept = sink.finish().map_err(local("blob store"));
    tracing::debug!(elapsed_us = t0.elapsed().as_micros(), "blobs stored");
    let loose = match (fetched, kept) {
        (Err(e), _) => return Err(e),
        (Ok(()), Err(e)) => return Err(e),
        (Ok(()), Ok(loose)) => loose,
    };
    written.extend(loose);
    drop(master);
    // Everything staged is durable before anything is verified or switched: one fsync
    // per file when few were written (a change of one file), else one syncfs.
    let state_blobs = config.state_dir.join(crate::cache::BLOBS);
    flush_written(
        &written,
        &[
            &staging,
            &roots,
            &cache.blob_store(),
            &state_blobs,
            &config.state_dir,
        ],
    )
    .map_err(local("staging"))?;
    // Everything is read back from staging and checked again; the manifest's bytes,
    // if unchanged, are not parsed a second time.
    let known = tenet_keys::Known {
        sha256: tenet_keys::Sha256Sum::of(&manifest),
        manifest: m,
    };
    let verified = tenet_keys::verify_bundle_staged(state, &staging, clock, known)?;
    Ok(Synced::Fetched(Box::new(verified)))
}

/// What one `POST /v1/blobs` asks for: the server's most hashes, and a share of the
/// server's per-request bytes (a blob larger than that goes alone).
const BATCH_LIMITS: fetch::BatchLimits = fetch::BatchLimits {
    blobs: 4096,
    bytes: 32 * 1024 * 1024,
};

/// Fetches the `missing` blobs into `sink` (loose files, or one pack):
/// in batches within `limits` from `POST /v1/blobs`, or one `GET` each from a master
/// that does not have that route (404 or 405: an older policyd). The fallback also
/// follows a 404 for a hash the master no longer serves; its first `GET` of such a
/// blob fails as before.
fn fetch_blobs(
    master: &mut Master,
    sink: &mut Sink,
    missing: &[&tenet_keys::FileEntry],
    limits: fetch::BatchLimits,
) -> Result<(), SyncError> {
    for range in fetch::plan_batches(missing.iter().map(|e| e.size), limits) {
        let start = range.start;
        match fetch_batch(master, sink, &missing[range]) {
            Ok(()) => continue,
            Err(Batch::Unsupported) => {
                tracing::debug!("the master has no batched blob route: one request per blob");
            }
            // An older master may answer 404 without reading the request body and close
            // the connection under the rest of it; the POST then fails before any answer
            // is read. Only a new connection tells that apart from a master that is gone.
            Err(Batch::Broken(e)) => {
                // A key the root does not pin on the new connection is refused on
                // trust, not taken for an absent master.
                if let Err(r) = master.reconnect() {
                    return Err(match r {
                        FetchError::Unreachable(_) => e,
                        other => other,
                    }
                    .into());
                }
                tracing::debug!(error = %e, "the batched blob request broke: one request per blob");
            }
            Err(Batch::Failed(e)) => return Err(e),
        }
        return missing[start..]
            .iter()
            .try_for_each(|entry| fetch_one(master, sink, entry));
    }
    Ok(())
}

/// Why a batch was not stored.
enum Batch {
    /// The master has no `POST /v1/blobs` (404 or 405).
    Unsupported,
    /// The request broke before any answer was read.
    Broken(FetchError),
    /// Anything else: the sync fails.
    Failed(SyncError),
}

impl<E: Into<SyncError>> From<E> for Batch {
    fn from(e: E) -> Batch {
        Batch::Failed(e.into())
    }
}

/// One `POST /v1/blobs` for `batch`: the answer is split by the manifest's declared
/// sizes, each blob streamed through the same checks as a single `GET` into the
/// `sink`. A body shorter than the sum of sizes
/// fails the blob it cuts short (`BlobTooSmall`); bytes after the last blob fail that
/// blob as too large (`BlobTooLarge`), as one `GET` of an over-long blob does. Only the
/// frame in hand is held in memory.
fn fetch_batch(
    master: &mut Master,
    sink: &mut Sink,
    batch: &[&tenet_keys::FileEntry],
) -> Result<(), Batch> {
    let mut request = String::with_capacity(batch.len() * 65);
    let mut total: u64 = 0;
    for entry in batch {
        request.push_str(&entry.sha256.to_string());
        request.push('\n');
        total = total.saturating_add(entry.size);
    }
    let mut body = match master.post("/v1/blobs", request.into_bytes(), total) {
        Ok(b) => b,
        Err(FetchError::Status { status, .. })
            if status == hyper::StatusCode::NOT_FOUND
                || status == hyper::StatusCode::METHOD_NOT_ALLOWED =>
        {
            return Err(Batch::Unsupported);
        }
        Err(e @ FetchError::Unreachable(_)) => return Err(Batch::Broken(e)),
        Err(e) => return Err(e.into()),
    };
    for entry in batch {
        if let Err(e) = sink.put(entry, std::io::Read::take(&mut body, entry.size)) {
            // A transport failure under the read is the master's, not the blob's.
            return Err(match body.take_error() {
                Some(fetch) => fetch.into(),
                None => e.into(),
            });
        }
    }
    match (body.at_end()?, batch.last()) {
        (false, Some(last)) => Err(VerifyError::BlobTooLarge {
            path: last.path.clone(),
            declared: last.size,
        }
        .into()),
        _ => Ok(()),
    }
}

/// One `GET /v1/blob/sha256/{hex}` into the store (a master without batches). A body
/// over the declared size is read one byte past it, so the check refuses it on trust
/// (`BlobTooLarge`) as a batch does.
fn fetch_one(
    master: &mut Master,
    sink: &mut Sink,
    entry: &tenet_keys::FileEntry,
) -> Result<(), SyncError> {
    let body = master.get(
        &format!("/v1/blob/sha256/{}", entry.sha256),
        entry.size.saturating_add(1),
    )?;
    sink.put(entry, body.as_slice())
}

/// Where fetched blobs are stored.
enum Sink {
    /// One file each in the store's `sha256/` (`written`, to be flushed).
    Loose { dir: PathBuf, written: Vec<PathBuf> },
    /// All in one pack.
    Pack(PackWriter),
}

impl Sink {
    /// Stores the blob of `entry` from `reader`, checked against its size and hash
    /// first; a blob that fails leaves nothing behind.
    fn put(&mut self, entry: &tenet_keys::FileEntry, reader: impl Read) -> Result<(), SyncError> {
        match self {
            Sink::Pack(pack) => Ok(pack.add(entry, reader)?),
            Sink::Loose { dir, written } => {
                let hex = entry.sha256.to_string();
                let part = dir.join(format!(".{hex}.part"));
                let mut file = create_file(&part).map_err(local("blob store"))?;
                if let Err(e) = check_blob_stream(entry, reader, &mut file) {
                    drop(file);
                    let _ = std::fs::remove_file(&part);
                    return Err(e.into());
                }
                drop(file);
                let path = dir.join(&hex);
                statefs::rename(&part, &path).map_err(local("blob store"))?;
                written.push(path);
                Ok(())
            }
        }
    }

    /// The loose files written (to be flushed with staging), or nothing once the
    /// pack is durable and in place.
    fn finish(self) -> std::io::Result<Vec<PathBuf>> {
        match self {
            Sink::Loose { written, .. } => Ok(written),
            Sink::Pack(pack) => pack.finish().map(|_| Vec::new()),
        }
    }
}

/// Hard-links a blob of the bundle in force (older cache layout) into the store.
fn link_blob(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::hard_link(from, to)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tenet_keys::deployment::{self, Deployment, InitOptions};
    use tenet_keys::publish::{self, SignOptions, Signing};

    use super::*;
    use crate::cache::TREE;
    use crate::report::Collect;

    #[test]
    fn an_expired_cached_bundle_is_enforced_with_a_warning() {
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
        std::fs::create_dir_all(&tree).expect("tree");
        crate::test_util::write(
            &tree.join("cluster.toml"),
            "[cluster]\nname = \"t\"\n\n[[member]]\nname = \"alpha\"\nhostname = \"a\"\nclasses = [\"web\"]\naddresses = [{ ip = \"10.0.0.1\", role = \"boot\" }]\n",
        );
        let mut d = Deployment::open(&deploy).expect("open");
        let (_, keyid) = deployment::node_key(&dir.path().join("node")).expect("node key");
        d.enroll("alpha", keyid).expect("enroll");
        let state_dir = dir.path().join("state");
        let cache = Cache::open(&state_dir).expect("cache");
        let staging = cache.fresh_staging().expect("staging");
        // Signed with blobs of its own: commit moves them into the store.
        std::fs::remove_file(staging.join(crate::cache::BLOBS)).expect("unlink");
        let key = d.policy_key_path();
        publish::sign(
            &mut d,
            &SignOptions {
                tree,
                out: staging.clone(),
                serial: Some(1),
                expires_in: Duration::from_secs(86_400),
                now,
                signing: Signing::WithKey(key),
            },
        )
        .expect("sign");
        let root = std::fs::read(deploy.join("root/1.root.toml")).expect("root");
        let sig = std::fs::read(deploy.join("root/1.root.toml.sig")).expect("root sig");
        let state = TrustState::new(TrustedRoot::bootstrap(&root, &sig, None).expect("root"));
        let clock = Clock::new(now);
        let verified = tenet_keys::verify_bundle(&state, &staging, &clock).expect("verifies");
        let cached = cache.commit(&verified).expect("commit");
        cache.persist(verified.state()).expect("persist");
        assert_eq!(cache.current(), Some((1, cached.clone())));
        assert!(cached.join(bundle::MANIFEST).is_file());
        assert!(!staging.exists());
        let state = TrustState::from_toml(&cache.trust_state().expect("read").expect("some"))
            .expect("parses");

        // Still current: no warning.
        let mut reporter = Collect::default();
        let (m, expired) = check_cached(&state, &cached, &clock, &mut reporter).expect("current");
        assert_eq!(expired, None);
        assert_eq!(m.serial, 1);
        assert!(reporter.warnings.is_empty(), "{:?}", reporter.warnings);

        // Two days later the manifest has expired: enforced, loudly.
        let later = Clock::new(
            now.checked_add(Duration::from_secs(2 * 86_400))
                .expect("time"),
        );
        let (m, expired) =
            check_cached(&state, &cached, &later, &mut reporter).expect("still enforced");
        assert!(expired.is_some_and(|e| e.contains("expired")));
        assert_eq!(m.members[0].classes, ["web"]);
        assert_eq!(reporter.warnings.len(), 1);
        assert!(
            reporter.warnings[0].starts_with("EXPIRED"),
            "{:?}",
            reporter.warnings
        );

        // The policy reads from the blobs, each checked as it is read.
        let files = BundleFiles::new(&cached, &m).expect("store");
        let policy = tenet_policies::load_from(&files.tree(), &files).expect("loads");
        assert_eq!(policy.cluster.members[0].name, "alpha");

        let blob = std::fs::read_dir(cached.join(bundle::BLOB_DIR))
            .expect("blobs")
            .next()
            .expect("one blob")
            .expect("entry")
            .path();
        let original = std::fs::read(&blob).expect("blob");
        // A cached blob changed in place, same size: the bundle's documents still
        // verify (blobs are not hashed again there), but not a byte of it is used:
        // loading the policy refuses it.
        let mut changed = original.clone();
        changed[0] ^= 0x20;
        crate::test_util::write(&blob, std::str::from_utf8(&changed).expect("text"));
        check_cached(&state, &cached, &clock, &mut reporter).expect("documents verify");
        let diags = tenet_policies::load_from(&files.tree(), &files).expect_err("refused");
        let text = diags.to_string();
        assert!(
            text.contains("does not match") || text.contains("sha256"),
            "{text}"
        );
        // A blob of another size, or none at all: refused as it is read.
        crate::test_util::write(&blob, "changed");
        check_cached(&state, &cached, &clock, &mut reporter).expect("documents verify");
        let diags = tenet_policies::load_from(&files.tree(), &files).expect_err("refused");
        assert!(diags.to_string().contains("blob for"), "{diags}");
        assert!(
            !blob.exists(),
            "a damaged blob is set aside for the next run to fetch"
        );
        let diags = tenet_policies::load_from(&files.tree(), &files).expect_err("refused");
        assert!(diags.to_string().contains("blob for"), "{diags}");
        // A file in the bundle directory that the manifest does not name is never read.
        crate::test_util::write(&blob, std::str::from_utf8(&original).expect("text"));
        crate::test_util::write(
            &cached.join(TREE).join("extra.toml"),
            "[[file]]\npath = \"/etc/x\"\ncontent = \"x\"\n",
        );
        let policy = tenet_policies::load_from(&files.tree(), &files).expect("loads");
        assert!(policy.promises.is_empty());
    }

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
            std::fs::remove_file(staging.join(crate::cache::BLOBS)).expect("unlink");
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
            std::fs::symlink_metadata(one.join(crate::cache::BLOBS))
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
