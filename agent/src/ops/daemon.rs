//! `tenet-agent daemon`: periodic runs with a random splay, one run at a time.
//!
//! Each run is a normal [`crate::ops::run::run`] (which re-reads `agent.toml`), on a
//! blocking thread so signals are handled while it goes on. Between runs the daemon
//! waits the interval plus a random splay, so the members of a cluster do not all
//! fetch from the master at the same second. SIGHUP starts a run now (with the
//! configuration re-read); SIGTERM and SIGINT let a run in progress finish (every
//! change is atomic anyway) and then exit. A failed run is reported and the daemon
//! goes on; the next run may well succeed (the master moved, say).

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::ops::run::{RunError, RunOptions, RunReport};
use crate::report::Reporter;

/// How the daemon schedules runs.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// Up to this much more, drawn at random before each wait.
    pub splay: Duration,
    /// The first run, and a run at least this long after the last full one, read
    /// every managed file (`run --rehash`) instead of trusting the stat cache; zero:
    /// never.
    pub rehash_every: Duration,
}

/// What ended the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonStopped {
    /// SIGTERM or SIGINT.
    Signal,
}

/// Why the daemon could not run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The runtime or the signal handlers could not be set up.
    #[error("cannot start the daemon")]
    Setup(#[source] std::io::Error),
}

impl DaemonError {
    /// The exit code this error ends `daemon` with.
    pub fn exit_code(&self) -> crate::exit::ExitCode {
        crate::exit::ExitCode::Environment
    }
}

/// Runs until SIGTERM or SIGINT. `make_reporter` gives each run its reporter;
/// `outcome` hears how each run ended.
pub fn daemon(
    opts: &RunOptions,
    schedule: &Schedule,
    make_reporter: &(dyn Fn() -> Box<dyn Reporter> + Sync),
    outcome: &(dyn Fn(&Result<RunReport, RunError>) + Sync),
) -> Result<DaemonStopped, DaemonError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Setup)?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Setup)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Setup)?;
        let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Setup)?;
        tracing::info!(interval = ?schedule.interval, splay = ?schedule.splay, "daemon started");
        // The first run reads everything: a daemon restarted more often than
        // `rehash_every` still reads every file at each start.
        let mut last_rehash: Option<tokio::time::Instant> = None;
        loop {
            let mut this_run = opts.clone();
            let since = last_rehash.map_or(Duration::MAX, |t| t.elapsed());
            if rehash_due(since, schedule.rehash_every) {
                this_run.rehash = true;
                last_rehash = Some(tokio::time::Instant::now());
                tracing::info!("reading every managed file this run (--rehash-every)");
            }
            // One run, on a blocking thread; signals that arrive meanwhile wait for it.
            let result = std::thread::scope(|s| {
                s.spawn(|| {
                    let mut reporter = make_reporter();
                    crate::ops::run::run(&this_run, reporter.as_mut())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
            outcome(&result);
            let wait = schedule.interval + random_below(schedule.splay);
            tracing::debug!(?wait, "next run");
            tokio::select! {
                _ = term.recv() => return Ok(DaemonStopped::Signal),
                _ = int.recv() => return Ok(DaemonStopped::Signal),
                _ = hup.recv() => tracing::info!("SIGHUP: running now with the configuration re-read"),
                () = tokio::time::sleep(wait) => {}
            }
        }
    })
}

/// Whether a run `since` the last full read of every file must read them all again.
fn rehash_due(since: Duration, every: Duration) -> bool {
    !every.is_zero() && since >= every
}

/// A random duration in `[0, max)`; zero when `max` is zero. The standard library's
/// hasher keys are random per process, which is all a splay needs.
fn random_below(max: Duration) -> Duration {
    let nanos = max.as_nanos();
    if nanos == 0 {
        return Duration::ZERO;
    }
    let r = u128::from(RandomState::new().hash_one(std::time::SystemTime::now()));
    Duration::from_nanos(u64::try_from(r % nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_read_is_due_once_its_interval_passed_and_never_at_zero() {
        let day = Duration::from_secs(86_400);
        assert!(!rehash_due(Duration::from_secs(5), day));
        assert!(rehash_due(day, day));
        assert!(!rehash_due(day * 30, Duration::ZERO));
    }

    #[test]
    fn splay_stays_below_its_bound() {
        assert_eq!(random_below(Duration::ZERO), Duration::ZERO);
        let max = Duration::from_secs(60);
        let draws: Vec<Duration> = (0..50).map(|_| random_below(max)).collect();
        assert!(draws.iter().all(|d| *d < max));
        assert!(
            draws.iter().any(|d| *d != draws[0]),
            "draws vary: {draws:?}"
        );
    }
}
