//! Atomic file writes: a temp file in the same directory, fsync, rename (or link), fsync
//! the directory. A crash leaves the old file or the new one, never a torn one.
//!
//! This is the only module of the crate that renames files. The agent and policyd use
//! [`write_atomic`] for their own state files too, and [`open_read_no_follow`] to read
//! a file that must be judged by what was opened.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Opens `path` for reading without following a symlink at it (`ELOOP`) or waiting
/// for a writer if it is a FIFO: the caller judges what it opened by its `fstat`, so
/// nothing can be swapped in between a check and the open.
pub fn open_read_no_follow(path: &Path) -> io::Result<File> {
    use nix::fcntl::OFlag;
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
}

/// Whether the error of [`open_read_no_follow`] says a symlink was found at the path.
pub fn is_symlink_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32)
}

/// Whether an existing destination may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace the destination atomically.
    Replace,
    /// Fail with `AlreadyExists` if the destination exists (private keys are never
    /// replaced silently).
    Refuse,
}

/// Writes `bytes` to `path` with `mode`, atomically, and makes it durable.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, overwrite: Overwrite) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = temp_name(path)?;
    let result = write_and_place(&tmp, path, bytes, mode, overwrite);
    if result.is_err() || overwrite == Overwrite::Refuse {
        // After a hard link the temp name is an extra link; after a failure it is litter.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)?.sync_all()
}

/// Creates `path` (and missing parents) as a directory with `mode` for the last one.
pub(crate) fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}

fn write_and_place(
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    mode: u32,
    overwrite: Overwrite,
) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    // The umask may have narrowed the mode given at creation; set it exactly.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    match overwrite {
        Overwrite::Replace => rename(tmp, path),
        // link(2) fails if the destination exists, so nothing is ever clobbered.
        Overwrite::Refuse => fs::hard_link(tmp, path),
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "the one rename of the crate: write_atomic fsyncs the file before and the directory after"
)]
fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)
}

fn temp_name(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    Ok(path.with_file_name(tmp))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_replaces_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.key");
        write_atomic(&p, b"one", 0o600, Overwrite::Refuse).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let e = write_atomic(&p, b"two", 0o600, Overwrite::Refuse).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"one");

        write_atomic(&p, b"three", 0o644, Overwrite::Replace).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );

        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
