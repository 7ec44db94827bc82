//! The exit codes of `tenet-policyd`, in one place: the enum every command returns and
//! the help text that lists them.

/// Exit codes. 0 to 4 mean what they mean for every tenet binary; 7 is the OCF
/// resource agent's "not running", for `status` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Done; for `status`: promoted and serving.
    Success = 0,
    /// The command failed: the daemon could not be reached, or could not start, or a
    /// file or socket failed.
    Failure = 1,
    /// Usage error.
    Usage = 2,
    /// The configuration (or a key path it needs) is invalid; nothing changed.
    InvalidConfig = 3,
    /// Trust refused: the bundle or a key did not verify; nothing changed.
    TrustRefused = 4,
    /// `status` only: the daemon runs and is not promoted (OCF_NOT_RUNNING).
    NotPromoted = 7,
}

/// The exit codes as `--help` lists them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  done; for status: promoted, serving the bundle; for stop: nothing is served here
  1  failed: the daemon is not running or cannot be reached (promote, demote, status,
     watch), does not answer (stop), could not start (serve, start), or a file or
     socket failed
  2  usage error
  3  invalid configuration, or promote without a key path; nothing changed
  4  trust refused: the bundle, the root or a key did not verify; nothing changed
  7  status and watch only: the daemon runs but is not promoted (OCF_NOT_RUNNING)";
