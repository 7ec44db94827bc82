//! `tenet-agent apply`: converge this member to a local policy tree.
//!
//! Load and validate the tree (nothing is touched if it is invalid), gather facts,
//! take the run lock, resolve the policy for this member, converge, report.

use std::path::PathBuf;
use std::time::Instant;

use tenet_policies::Diagnostics;
use tenet_policies::facts::FactError;

use crate::converge::{self, Diffs, Mode};
use crate::exit::ExitCode;
use crate::fsops::{self, Root};
use crate::lock::{LockError, RunLock};
use crate::report::{Reporter, Summary};
use crate::statcache::StatCache;

/// What `apply` needs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The policy tree.
    pub tree: PathBuf,
    /// Where its files are read from instead of the directory `tree` (a verified
    /// cached bundle, each file checked against the signed manifest as it is read).
    pub files: Option<crate::sync::cache::BundleFiles>,
    /// The root every policy path resolves beneath.
    pub root: PathBuf,
    /// The state directory (run lock); defaults to `ROOT/var/lib/tenet`.
    pub state_dir: Option<PathBuf>,
    /// Apply or dry run.
    pub mode: Mode,
    /// Whether reports carry unified diffs of text changes.
    pub diffs: Diffs,
    /// `KEY=VALUE` fact overrides.
    pub facts: Vec<String>,
    /// How long to wait for another run to release the run lock (zero: not at all).
    pub lock_timeout: std::time::Duration,
    /// Read every managed file instead of trusting the stat cache for unchanged ones.
    pub rehash: bool,
    /// The serial of the signed bundle `files` comes from, reported in the summary.
    pub serial: Option<u64>,
}

/// Why a run did not happen. A failed promise is not an error: it is in the summary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The policy tree is invalid; nothing was changed.
    #[error("policy tree {} is invalid ({} errors); nothing was changed", tree.display(), diagnostics.error_count())]
    InvalidPolicy {
        /// The tree.
        tree: PathBuf,
        /// Every problem found.
        diagnostics: Diagnostics,
    },
    /// The facts name a member the policy does not have; nothing was changed.
    #[error(transparent)]
    UnknownMember(#[from] tenet_policies::UnknownMember),
    /// A `--fact` override is malformed.
    #[error("bad --fact")]
    Fact(#[from] FactError),
    /// The root is unusable.
    #[error("cannot use root {}", path.display())]
    Root {
        /// The root given.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The run lock is held or unusable.
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl ApplyError {
    /// The exit code this error ends `apply` with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::InvalidPolicy { .. } | Self::UnknownMember(_) => ExitCode::InvalidPolicy,
            Self::Fact(_) => ExitCode::Usage,
            Self::Lock(LockError::Held { .. }) => ExitCode::Locked,
            _ => ExitCode::Environment,
        }
    }

    /// Every problem of an invalid policy tree, printed before the error.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            Self::InvalidPolicy { diagnostics, .. } => Some(diagnostics),
            _ => None,
        }
    }
}

/// Runs one local convergence, reporting each promise and the summary to `reporter`.
pub fn apply(opts: &ApplyOptions, reporter: &mut dyn Reporter) -> Result<Summary, ApplyError> {
    converge_tree(opts, reporter, Lock::Take)
}

/// Whether [`converge_tree`] takes the run lock of the state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Take it (waiting up to the lock timeout), and release it at the end.
    Take,
    /// The caller holds it already (`run`).
    Held,
}

/// The pipeline `apply`, `run` and `demo` share: load, facts, lock (unless held),
/// resolve, converge, summary.
pub(crate) fn converge_tree(
    opts: &ApplyOptions,
    reporter: &mut dyn Reporter,
    lock: Lock,
) -> Result<Summary, ApplyError> {
    let start = Instant::now();
    let loaded = match &opts.files {
        Some(files) => tenet_policies::load_from(&opts.tree, files),
        None => tenet_policies::load(&opts.tree),
    };
    let policy = loaded.map_err(|diagnostics| ApplyError::InvalidPolicy {
        tree: opts.tree.clone(),
        diagnostics,
    })?;
    tracing::debug!(elapsed_us = start.elapsed().as_micros(), "policy loaded");
    let root = Root::new(&opts.root).map_err(|source| ApplyError::Root {
        path: opts.root.clone(),
        source,
    })?;
    let mut facts = crate::facts::gather(&root);
    crate::facts::apply_overrides(&mut facts, &opts.facts)?;
    policy.check_member(&facts)?;
    let state_dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| crate::config::default_state_dir(root.base()));
    // A dry run changes nothing, so it creates no state directory either; it takes
    // the lock only where one exists, so it never reports a half-applied run.
    let _lock = match opts.mode {
        _ if lock == Lock::Held => None,
        Mode::Apply => Some(RunLock::acquire_within(
            &state_dir,
            "apply",
            opts.lock_timeout,
        )?),
        Mode::DryRun if state_dir.is_dir() => Some(RunLock::acquire_within(
            &state_dir,
            "dry run",
            opts.lock_timeout,
        )?),
        Mode::DryRun => None,
    };
    if opts.mode == Mode::Apply {
        match fsops::recover(&state_dir, &root) {
            Ok(0) => {}
            Ok(n) => reporter.warning(&format!(
                "removed {n} temp files left by an interrupted run"
            )),
            Err(e) => reporter.warning(&format!("cannot clean up after an interrupted run: {e}")),
        }
    }
    let _span =
        tracing::info_span!("run", tree = %opts.tree.display(), root = %root.base().display())
            .entered();
    for w in policy.warnings.iter() {
        reporter.warning(&w.to_string());
    }
    let resolution = policy.resolve(&facts);
    tracing::debug!(elapsed_us = start.elapsed().as_micros(), "policy resolved");
    for w in &resolution.warnings {
        reporter.warning(w);
    }
    // A dry run creates no state directory, so it reads a cache but never writes one.
    // --rehash starts from an empty cache: every file is read, and what the reads
    // found replaces every entry.
    let stat_cache = state_dir.is_dir().then(|| {
        if opts.rehash {
            StatCache::replacing()
        } else {
            StatCache::load(&state_dir)
        }
    });
    let mut summary = converge::converge(
        &resolution.promises,
        &root,
        converge::Options {
            mode: opts.mode,
            diffs: opts.diffs,
            state_dir: Some(&state_dir),
            source: opts.files.as_ref().map(|files| converge::Source {
                tree: &opts.tree,
                files,
            }),
            stat_cache: stat_cache.as_ref(),
        },
        reporter,
    );
    if let Some(cache) = &stat_cache
        && opts.mode == Mode::Apply
        && let Err(e) = cache.save(&state_dir)
    {
        reporter.warning(&format!(
            "cannot save the stat cache in {}: {e}",
            state_dir.display()
        ));
    }
    summary.skipped = resolution.skipped;
    summary.member = resolution.member;
    summary.serial = opts.serial;
    summary.duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    reporter.summary(&summary);
    Ok(summary)
}
