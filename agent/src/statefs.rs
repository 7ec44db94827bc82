//! File operations in the agent's own state directory (`STATE/`: the trust state, the
//! blob store and bundles, journals, started records, the stat cache), never in the
//! managed root, which only `fsops` writes.
//!
//! The one place that carries the `disallowed_methods` allowance for the state
//! directory: callers keep the atomic-write rule (temp beside, fsync, rename, fsync the
//! directory) themselves, and make what they wrote durable with [`sync_dir`],
//! [`flush_written`] or [`flush`].
#![expect(
    clippy::disallowed_methods,
    reason = "the state directory is the agent's own, outside the managed root; callers write atomically"
)]

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Above this many files written, [`flush_written`] flushes with one `syncfs`.
pub const FSYNC_MAX: usize = 16;

/// Fsyncs the directory `dir`, so that names created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Flushes the filesystem holding `dir` (one `syncfs` instead of one fsync per file).
pub fn flush(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    nix::unistd::syncfs(&d).map_err(io::Error::from)
}

/// Makes `files` and the directories `dirs` durable: each fsynced when they are few,
/// one `syncfs` otherwise (0.5 ms per fsync on a busy disk; a `syncfs` also flushes
/// whatever else is dirty on the filesystem). Files or directories gone meanwhile are
/// skipped.
pub fn flush_written(files: &[PathBuf], dirs: &[&Path]) -> io::Result<()> {
    if files.len() > FSYNC_MAX
        && let Some(first) = dirs.first()
    {
        return flush(first);
    }
    for f in files
        .iter()
        .map(PathBuf::as_path)
        .chain(dirs.iter().copied())
    {
        match File::open(f) {
            Ok(f) => f.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` (a staged file, made durable by the caller before use).
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    std::fs::write(path, bytes)
}

/// Creates (or truncates) `path` for writing.
pub fn create_file(path: &Path) -> io::Result<File> {
    File::create(path)
}

/// Renames `from` over `to` (the caller fsyncs the file before and the directory after).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}

/// Makes a symbolic link `link` pointing at `target`.
pub fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}
