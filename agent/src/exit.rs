//! The agent's exit codes: a leaf value, since codes are persisted
//! (`STATE/last-run.json`'s `exit_code`, a journal's `event_end`) as well as returned.
//!
//! Each command's error maps itself to a code once, beside its definition
//! (`exit_code()`); `main.rs` only prints the error and exits with that code.

/// Exit codes, the same for every tenet binary that uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The run finished; every promise kept or repaired (or, in a dry run, would be).
    Success = 0,
    /// The run finished; at least one promise failed, was blocked, or did not converge.
    PromisesFailed = 1,
    /// Usage error.
    Usage = 2,
    /// The configuration or policy is invalid (diagnostics printed), or names a member
    /// the policy does not have; nothing was changed.
    InvalidPolicy = 3,
    /// Trust refused: bad signature, unknown signer, rollback, expired manifest.
    TrustRefused = 4,
    /// No master answered and no cached bundle exists.
    NoMaster = 5,
    /// Another run is already in progress.
    Locked = 6,
    /// The run could not start: the root or state directory is unusable.
    Environment = 7,
    /// An earlier run of this event id was interrupted; nothing was re-run (`--resume`).
    Interrupted = 8,
    /// `push`: some member was unreachable, refused the request, or was busy; its run
    /// did not happen.
    PushIncomplete = 9,
    /// `run`: no master answered (or not within `--deadline`); converged from the
    /// cached bundle.
    MasterUnreachable = 10,
    /// `run`: enforcing a cached bundle that has expired (manifest or root), verified
    /// by every other check.
    BundleExpired = 11,
    /// `run`: no fresh timestamp from the master for longer than the trusted one
    /// lives (a frozen or absent master); converged from the cached bundle.
    TimestampStale = 12,
}

/// The exit codes as `--help` lists them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  run finished; every promise kept or repaired (a dry run: or would be)
  1  run finished; at least one promise failed, was blocked, or did not converge
     (event, watch: a step failed)
  2  usage error
  3  policy or configuration invalid (or the member named by agent.toml or
     --fact member= is not in the policy): diagnostics printed, nothing changed
  4  trust refused: bad signature, unknown signer, rollback, expired manifest
  5  no master answered and no cached bundle exists
  6  another run is already in progress (still, after --lock-timeout: run waits 30s,
     event and watch 60s, apply not at all by default)
  7  the run could not start: root or state directory unusable
  8  event: an earlier run of this id was interrupted; nothing re-run; use --resume
  9  push: some member unreachable, refused, or busy (its run did not happen)
 10  run: master unreachable (or not within --deadline); converged from the cached bundle
 11  run: enforcing an expired bundle (manifest or root expired; still verified)
 12  run: no fresh timestamp for longer than its lifetime (frozen or absent master)
     (run: the first that holds wins: 4, 11, 12, 10, 1, 0; --degraded-ok turns 10-12
     into 0, or 1 if a promise failed; last-run.json's \"degraded\" says why either way)";

impl From<ExitCode> for i32 {
    fn from(code: ExitCode) -> i32 {
        code as i32
    }
}
