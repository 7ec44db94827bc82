//! One run at a time per state directory.
//!
//! The lock is an advisory `flock` on `STATE/run.lock`, released by the kernel when
//! the holder exits however it exits, so a crashed run never leaves a stale lock.
//! The file's text says who holds it, for the message a second run prints. `run`
//! also takes `STATE/sync.lock` (the same kind of lock on another file) while it talks
//! to the master, without holding `run.lock` then.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why the run lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another run holds it.
    #[error("another run is in progress ({holder}); lock {path}")]
    Held {
        /// What the holder wrote: its pid, command and start time.
        holder: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The state directory or lock file is unusable.
    #[error("cannot use the run lock {path}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Held while a run goes on; dropping it clears the note and releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    since: u64,
}

impl RunLock {
    /// Takes the lock in `state_dir` (created if missing) without waiting.
    pub fn acquire(state_dir: &Path, what: &str) -> Result<Self, LockError> {
        Self::acquire_within(state_dir, what, Duration::ZERO)
    }

    /// Takes the lock in `state_dir`, waiting up to `timeout` for a run in progress
    /// to finish (a failover must not fail because a periodic run holds the lock).
    /// [`LockError::Held`] names the holder when the wait runs out.
    pub fn acquire_within(
        state_dir: &Path,
        what: &str,
        timeout: Duration,
    ) -> Result<Self, LockError> {
        Self::acquire_file_within(state_dir, "run.lock", what, timeout)
    }

    /// [`RunLock::acquire_within`] on another lock file of `state_dir` (`sync.lock`).
    pub fn acquire_file_within(
        state_dir: &Path,
        file_name: &str,
        what: &str,
        timeout: Duration,
    ) -> Result<Self, LockError> {
        let path = state_dir.join(file_name);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(io_err)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        // flock has no timed wait; polling every 50 ms costs nothing next to a failover.
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(
                        POLL.min(deadline.saturating_duration_since(Instant::now())),
                    );
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.split_whitespace().collect::<Vec<_>>().join(" ");
                    let holder = if holder.is_empty() {
                        "holder unknown".to_string()
                    } else {
                        holder
                    };
                    return Err(LockError::Held { holder, path });
                }
                Err(TryLockError::Error(e)) => return Err(io_err(e)),
            }
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let note = format!(
            "pid {} {what} started at unix time {since}\n",
            std::process::id()
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(note.as_bytes()))
            .map_err(io_err)?;
        Ok(Self { file, since })
    }

    /// When the lock was taken (unix seconds), as its note says: with this process's
    /// pid, what names this run to a reader of the note (policyd's `busy`).
    pub fn started_unix(&self) -> u64 {
        self.since
    }
}

impl Drop for RunLock {
    /// Clears the note while the lock is still held, so a later holder that writes no
    /// note (another tool's `flock`) is never taken for this run.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// How often a waiting run tries the lock again.
const POLL: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_dropped_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "apply").unwrap();
        match RunLock::acquire(dir.path(), "apply") {
            Err(LockError::Held { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                );
                assert!(holder.contains("apply"), "{holder}");
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        RunLock::acquire(dir.path(), "apply").unwrap();
    }

    #[test]
    fn a_waiting_lock_is_taken_when_the_holder_lets_go_and_refused_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "run").unwrap();
        let short = RunLock::acquire_within(dir.path(), "event", Duration::from_millis(120));
        assert!(matches!(short, Err(LockError::Held { .. })), "{short:?}");
        let waiter = std::thread::scope(|s| {
            let h =
                s.spawn(|| RunLock::acquire_within(dir.path(), "event", Duration::from_secs(60)));
            drop(first);
            h.join().unwrap()
        });
        waiter.unwrap();
    }
}
