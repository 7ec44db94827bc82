//! The stat cache: which content a managed file had when it was last read, keyed by
//! what `lstat` says about it, so a run that changes nothing need not read every file
//! again (git's index does the same for the work tree).
//!
//! An entry maps a host path to its device, inode, size, mtime, ctime, mode, owner
//! and group, plus the SHA-256 of the bytes read. A later run that finds all of them
//! unchanged takes the hash from the entry instead of reading the file.
//!
//! Why that is safe:
//! - Any write through the file system changes mtime and ctime; replacing the file
//!   (an editor's rename, our own atomic writes) changes the inode as well. ctime
//!   cannot be set from user space: only a change of the system clock can fake it.
//! - A write in the same clock tick as our read could leave every field unchanged
//!   (the "racy git" problem). So an entry is recorded only for a file whose mtime
//!   and ctime were at least [`SETTLED`] older than the moment its read began; a file
//!   changed more recently is read again by the next run, and recorded then.
//! - The file is a cache, not state: it is checksummed, and a missing, torn or
//!   foreign one is ignored (every file is read). It is written without fsync.
//!
//! `--rehash` (or no state directory) reads every file, as before the cache.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tenet_keys::Sha256Sum;

/// The cache's file name in the state directory.
pub const FILE: &str = "stat-cache";

/// How much older than the start of a read a file's mtime and ctime must be for the
/// read to be recorded: well above any file system's timestamp granularity (ext4
/// stamps with the kernel's coarse clock, some file systems with whole seconds).
pub const SETTLED: Duration = Duration::from_secs(2);

const MAGIC: &str = "tenet-stat-cache 1";

/// What `lstat` says about a file, as far as its content is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Stat {
    pub(crate) fn of(m: &Metadata) -> Stat {
        Stat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
        }
    }

    /// Whether both timestamps are at least [`SETTLED`] before `read_start`.
    fn settled(&self, read_start: SystemTime) -> bool {
        let Ok(start) = read_start.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let limit = start.saturating_sub(SETTLED);
        let before = |(s, ns): (i64, i64)| {
            u64::try_from(s)
                .is_ok_and(|s| Duration::new(s, u32::try_from(ns).unwrap_or(u32::MAX)) < limit)
        };
        before(self.mtime) && before(self.ctime)
    }
}

/// Loaded entries by host path, each marked once this run confirms it.
type Loaded = HashMap<Box<[u8]>, (Entry, AtomicBool)>;

#[derive(Debug, Clone, Copy)]
struct Entry {
    stat: Stat,
    sha256: [u8; 32],
}

/// The cache of one run: the entries loaded (each marked when this run confirmed
/// it), and the reads this run recorded.
#[derive(Debug, Default)]
pub struct StatCache {
    loaded: Loaded,
    learnt: Mutex<Vec<(Box<[u8]>, Entry)>>,
    /// Written in full by [`StatCache::save`] even if this run learnt nothing.
    replace: bool,
}

impl StatCache {
    /// The cache in `state_dir`; empty when there is none or it cannot be used.
    pub fn load(state_dir: &Path) -> StatCache {
        let loaded = match fs::read(state_dir.join(FILE)) {
            Ok(bytes) => parse(&bytes).unwrap_or_else(|| {
                tracing::warn!(
                    "the stat cache in {} is damaged; ignoring it",
                    state_dir.display()
                );
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        StatCache {
            loaded,
            ..StatCache::default()
        }
    }

    /// An empty cache whose [`save`](StatCache::save) replaces the stored one with
    /// what this run's reads found (`--rehash`: every entry comes from a real read).
    pub fn replacing() -> StatCache {
        StatCache {
            replace: true,
            ..StatCache::default()
        }
    }

    /// The SHA-256 of the content of the file at `path`, if the cache knows it for
    /// exactly this `stat`.
    pub(crate) fn lookup(&self, path: &Path, stat: &Stat) -> Option<[u8; 32]> {
        let (e, hit) = self
            .loaded
            .get(path.as_os_str().as_bytes())
            .filter(|(e, _)| e.stat == *stat)?;
        hit.store(true, Ordering::Relaxed);
        Some(e.sha256)
    }

    /// Records that the file at `path`, with `stat` before a read that began at
    /// `read_start`, held bytes hashing to `sha256`; ignored unless it had settled.
    pub(crate) fn record(
        &self,
        path: &Path,
        stat: &Stat,
        read_start: SystemTime,
        sha256: [u8; 32],
    ) {
        let bytes = path.as_os_str().as_bytes();
        if !stat.settled(read_start) || bytes.contains(&b'\n') {
            return;
        }
        self.learnt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((
                bytes.into(),
                Entry {
                    stat: *stat,
                    sha256,
                },
            ));
    }

    /// Writes what this run confirmed and learnt to `state_dir`, when it learnt
    /// something or many loaded entries went unused (files no longer managed or
    /// replaced); a stale entry is harmless, since its inode and ctime never match
    /// again. Not fsynced: losing the cache only costs reading the files again.
    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        let learnt = self
            .learnt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let confirmed = self
            .loaded
            .values()
            .filter(|(_, hit)| hit.load(Ordering::Relaxed))
            .count();
        let unused = self.loaded.len() - confirmed;
        if !self.replace && learnt.is_empty() && unused <= self.loaded.len() / 8 {
            return Ok(());
        }
        let mut entries: Vec<(&[u8], &Entry)> = self
            .loaded
            .iter()
            .filter(|(_, (_, hit))| hit.load(Ordering::Relaxed))
            .map(|(p, (e, _))| (&p[..], e))
            .chain(learnt.iter().map(|(p, e)| (&p[..], e)))
            .collect();
        // A path both confirmed and learnt (read again) keeps the later, learnt entry.
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        let mut body = Vec::with_capacity(entries.len() * 160);
        for (path, e) in entries {
            let s = &e.stat;
            body.extend_from_slice(Sha256Sum::from_bytes(e.sha256).to_string().as_bytes());
            let _ = write!(
                body,
                " {} {} {} {} {} {} {} {} {} {} ",
                s.dev,
                s.ino,
                s.size,
                s.mtime.0,
                s.mtime.1,
                s.ctime.0,
                s.ctime.1,
                s.mode,
                s.uid,
                s.gid
            );
            body.extend_from_slice(path);
            body.push(b'\n');
        }
        let mut out = format!("{MAGIC} {}\n", Sha256Sum::of(&body)).into_bytes();
        out.extend_from_slice(&body);
        write_replace(&state_dir.join(FILE), &out)
    }
}

fn parse(bytes: &[u8]) -> Option<Loaded> {
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..nl]).ok()?;
    let body = &bytes[nl + 1..];
    let sum = header.strip_prefix(MAGIC)?.strip_prefix(' ')?;
    if Sha256Sum::of(body).to_string() != sum {
        return None;
    }
    // Sized once from the line count: a map grown by doubling holds its old and new
    // tables at once on each growth (1.5 MB at 10,000 files).
    let lines = body.iter().filter(|b| **b == b'\n').count();
    let mut out = HashMap::with_capacity(lines);
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut f = line.splitn(12, |b| *b == b' ');
        let mut next = || f.next().and_then(|x| std::str::from_utf8(x).ok());
        let sha256 = *next()?.parse::<Sha256Sum>().ok()?.as_bytes();
        let mut n = || next().and_then(|x| x.parse::<i64>().ok());
        let (dev, ino, size) = (n()?, n()?, n()?);
        let (ms, mns, cs, cns) = (n()?, n()?, n()?, n()?);
        let (mode, uid, gid) = (n()?, n()?, n()?);
        let stat = Stat {
            dev: u64::try_from(dev).ok()?,
            ino: u64::try_from(ino).ok()?,
            size: u64::try_from(size).ok()?,
            mtime: (ms, mns),
            ctime: (cs, cns),
            mode: u32::try_from(mode).ok()?,
            uid: u32::try_from(uid).ok()?,
            gid: u32::try_from(gid).ok()?,
        };
        let path = line.splitn(12, |b| *b == b' ').nth(11)?;
        out.insert(
            path.into(),
            (Entry { stat, sha256 }, AtomicBool::new(false)),
        );
    }
    Some(out)
}

/// Written through `statefs`: the stat cache lives in the agent's state directory,
/// outside the managed root; a cache, so not fsynced.
fn write_replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    // Owner-only: the hashes of managed files would let others confirm guesses of
    // secret contents.
    let result = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| crate::statefs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_of(path: &Path) -> Stat {
        Stat::of(&fs::symlink_metadata(path).unwrap())
    }

    #[test]
    fn a_settled_read_is_remembered_and_only_for_the_same_stat() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::File::create(&f).unwrap().write_all(b"one").unwrap();
        let st = stat_of(&f);
        let later = SystemTime::now() + Duration::from_secs(10);
        let c = StatCache::load(d.path());
        c.record(&f, &st, later, [7; 32]);
        c.save(d.path()).unwrap();

        let c = StatCache::load(d.path());
        assert_eq!(c.lookup(&f, &st), Some([7; 32]));
        let mut other = st;
        other.ctime.1 += 1;
        assert_eq!(c.lookup(&f, &other), None, "a changed ctime misses");
        other = st;
        other.ino += 1;
        assert_eq!(c.lookup(&f, &other), None, "another inode misses");
        assert_eq!(c.lookup(&d.path().join("g"), &st), None);
    }

    #[test]
    fn a_read_of_a_recently_changed_file_is_not_recorded() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::File::create(&f).unwrap().write_all(b"one").unwrap();
        let st = stat_of(&f);
        let c = StatCache::load(d.path());
        c.record(&f, &st, SystemTime::now(), [7; 32]);
        c.save(d.path()).unwrap();
        assert_eq!(StatCache::load(d.path()).lookup(&f, &st), None);
    }

    #[test]
    fn a_damaged_cache_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::File::create(&f).unwrap().write_all(b"one").unwrap();
        let st = stat_of(&f);
        let c = StatCache::load(d.path());
        c.record(
            &f,
            &st,
            SystemTime::now() + Duration::from_secs(10),
            [7; 32],
        );
        c.save(d.path()).unwrap();
        let path = d.path().join(FILE);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        fs::File::create(&path).unwrap().write_all(&bytes).unwrap();
        assert_eq!(StatCache::load(d.path()).lookup(&f, &st), None);
    }
}
