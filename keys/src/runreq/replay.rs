//! The replay cache: the nonces a member accepted, kept until their requests can never
//! be accepted again, persisted as an append-only log.
//!
//! - **Monotonic time.** The cache remembers the latest time at which it accepted a
//!   request (never later than that request's signed expiry, so a member clock set far
//!   ahead cannot push it). [`super::verify`] judges expiry against the later of that
//!   and the clock ([`ReplayCache::clock`]), so a clock stepped back does not make a
//!   request whose nonce was forgotten valid again; and a nonce is kept for the skew
//!   bound past its expiry before it is forgotten.
//! - **Quota.** One signing key holds at most [`MAX_REPLAY_ENTRIES_PER_KEY`] unexpired
//!   nonces, so a single administrator cannot fill the cache ([`MAX_REPLAY_ENTRIES`])
//!   and lock the others out.
//! - **Storage.** Each accepted nonce is one line appended to the log, written in one
//!   `write` and `fdatasync`ed before the run starts ([`ReplayCache::persist`]); the
//!   file is never read again while the member runs. When the log holds more than
//!   twice the live nonces plus [`COMPACT_SLACK`] lines, it is rewritten with only the
//!   live ones (atomically), so a request costs a constant number of bytes written,
//!   amortised. A line cut short by a crash is the request that was never
//!   acknowledged: it is ignored and cut off. Any other damage is an error, and the
//!   member refuses requests rather than forget nonces.
//!
//! ```text
//! tenet-replay-log 1
//! t 1795298400
//! n 0123456789abcdef0123456789abcdef 1795298690 <signer key id> 1795298400
//! ```
//!
//! `t` is the latest acceptance time at the last compaction; each `n` line is a nonce,
//! its request's expiry, the key it is counted against (`-` for none) and when it was
//! accepted (all times in unix seconds; 0 when not known, for nonces taken over from an
//! older cache).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::fsio::{self, Overwrite};
use crate::id::{KeyId, Nonce};
use crate::time::Time;

/// Most nonces a member remembers at once; beyond, requests are refused until some
/// expire (at most [`super::MAX_LIFETIME`] plus the skew bound later).
pub const MAX_REPLAY_ENTRIES: usize = 65_536;
/// Most unexpired nonces counted against one signing key: past it, that key's requests
/// are refused until some expire, and other keys are not affected.
pub const MAX_REPLAY_ENTRIES_PER_KEY: usize = 4_096;
/// Lines a log may hold beyond twice the live nonces before it is compacted.
pub const COMPACT_SLACK: usize = 1_024;

const HEADER: &str = "tenet-replay-log 1";

/// The nonces a member accepted. Open it with [`ReplayCache::open`] (or
/// [`ReplayCache::new`] for one held in memory only); [`super::verify`] records a
/// nonce, and [`ReplayCache::persist`] must succeed before the request is acted on.
#[derive(Debug, Default)]
pub struct ReplayCache {
    entries: BTreeMap<Nonce, Entry>,
    /// The same nonces by expiry, so pruning looks only at those it drops.
    by_expiry: BTreeSet<(Time, Nonce)>,
    per_key: HashMap<KeyId, usize>,
    /// The latest time at which a request was accepted.
    high_water: Option<Time>,
    /// Recorded, not yet on disk.
    pending: Vec<Nonce>,
    log: Option<Log>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    expires: Time,
    key: Option<KeyId>,
    accepted: Time,
}

#[derive(Debug)]
struct Log {
    path: PathBuf,
    file: File,
    /// `n` lines in the file.
    lines: usize,
    /// Bytes this cache wrote to the log (appends and compactions).
    written: u64,
}

/// Why the replay cache could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayCacheError {
    /// The file could not be read.
    #[error("cannot read the replay cache {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of the log is not a replay cache line.
    #[error("the replay cache {} is corrupted at line {line}: {reason}", path.display())]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An older cache file to take over is not a replay cache.
    #[error("the replay cache {} is corrupted", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// The file could not be written.
    #[error("cannot write the replay cache {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ReplayCache {
    /// An empty cache held in memory only ([`ReplayCache::persist`] writes nothing).
    pub fn new() -> ReplayCache {
        ReplayCache::default()
    }

    /// Opens the log at `path`, creating it if missing. If `legacy` names an older
    /// whole-file cache (`runreq-nonces.toml`), its nonces are taken over into the new
    /// log, which is made durable before the old file is removed.
    pub fn open(path: &Path, legacy: Option<&Path>) -> Result<ReplayCache, ReplayCacheError> {
        let mut cache = ReplayCache::new();
        let mut imported = false;
        match fsio::open_read_no_follow(path) {
            Ok(file) => cache.read_log(path, file)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(old) = legacy {
                    imported = cache.import(old)?;
                }
                cache.compact_to(path)?;
            }
            Err(source) => {
                return Err(ReplayCacheError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        if cache.log.is_none() {
            cache.log = Some(Log::append(path, cache.entries.len())?);
        }
        if imported && let Some(old) = legacy {
            std::fs::remove_file(old).map_err(|source| ReplayCacheError::Write {
                path: old.to_path_buf(),
                source,
            })?;
        }
        Ok(cache)
    }

    /// The time to judge a request's expiry by: `now`, or the latest time a request was
    /// accepted if that is later (the clock was stepped back).
    pub fn clock(&self, now: Time) -> Time {
        self.high_water.map_or(now, |h| h.max(now))
    }

    /// Forgets nonces whose requests expired more than `margin` before `now`.
    pub fn prune(&mut self, now: Time, margin: Duration) {
        while let Some(&(expires, nonce)) = self.by_expiry.first() {
            if expires.checked_add(margin).is_none_or(|until| until > now) {
                break;
            }
            self.by_expiry.pop_first();
            self.remove(&nonce);
        }
    }

    /// Adds or replaces an entry, keeping the indexes in step.
    fn insert(&mut self, nonce: Nonce, entry: Entry) {
        self.remove(&nonce);
        self.by_expiry.insert((entry.expires, nonce));
        if let Some(k) = entry.key {
            *self.per_key.entry(k).or_insert(0) += 1;
        }
        self.entries.insert(nonce, entry);
    }

    fn remove(&mut self, nonce: &Nonce) {
        let Some(old) = self.entries.remove(nonce) else {
            return;
        };
        self.by_expiry.remove(&(old.expires, *nonce));
        if let Some(k) = old.key
            && let Some(n) = self.per_key.get_mut(&k)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_key.remove(&k);
            }
        }
    }

    /// Whether `nonce` was accepted.
    pub fn contains(&self, nonce: &Nonce) -> bool {
        self.entries.contains_key(nonce)
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Unexpired nonces counted against `key`.
    pub fn count_for(&self, key: &KeyId) -> usize {
        self.per_key.get(key).copied().unwrap_or(0)
    }

    /// The latest time at which a request was accepted, if any.
    pub fn high_water(&self) -> Option<Time> {
        self.high_water
    }

    /// Bytes this cache has written to its log since it was opened (appends and
    /// compactions).
    pub fn bytes_written(&self) -> u64 {
        self.log.as_ref().map_or(0, |l| l.written)
    }

    /// Records `nonce` (not yet on disk: see [`ReplayCache::persist`]).
    pub(crate) fn record(&mut self, nonce: Nonce, expires: Time, key: KeyId, now: Time) {
        // `now` is before `expires` (the request passed its expiry check), so the
        // high-water mark never passes a signed expiry.
        let accepted = now.min(expires);
        self.high_water = Some(self.clock(accepted));
        self.insert(
            nonce,
            Entry {
                expires,
                key: Some(key),
                accepted,
            },
        );
        self.pending.push(nonce);
    }

    /// Appends the nonces recorded since the last call, in one write, and makes them
    /// durable; compacts the log once it holds more than twice the live nonces plus
    /// [`COMPACT_SLACK`] lines. A cache held in memory only just forgets what was
    /// pending.
    pub fn persist(&mut self) -> Result<(), ReplayCacheError> {
        let pending = std::mem::take(&mut self.pending);
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        let mut text = String::new();
        for nonce in &pending {
            if let Some(e) = self.entries.get(nonce) {
                text.push_str(&line(nonce, e));
            }
        }
        if !text.is_empty() {
            log.write(text.as_bytes())?;
            log.lines += pending.len();
        }
        if log.lines > 2 * self.entries.len() + COMPACT_SLACK {
            let path = log.path.clone();
            self.compact_to(&path)?;
        }
        Ok(())
    }

    /// Writes the live nonces as a new log at `path`, atomically, and appends to it
    /// from now on.
    fn compact_to(&mut self, path: &Path) -> Result<(), ReplayCacheError> {
        let mut text = format!("{HEADER}\n");
        if let Some(h) = self.high_water {
            text.push_str(&format!("t {}\n", h.unix()));
        }
        for (nonce, e) in &self.entries {
            text.push_str(&line(nonce, e));
        }
        fsio::write_atomic(path, text.as_bytes(), 0o600, Overwrite::Replace).map_err(|source| {
            ReplayCacheError::Write {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let written = self.log.as_ref().map_or(0, |l| l.written) + text.len() as u64;
        let mut log = Log::append(path, self.entries.len())?;
        log.written = written;
        self.log = Some(log);
        Ok(())
    }

    fn read_log(&mut self, path: &Path, file: File) -> Result<(), ReplayCacheError> {
        let corrupted = |line: usize, reason: &str| ReplayCacheError::Corrupted {
            path: path.to_path_buf(),
            line,
            reason: reason.to_string(),
        };
        let read_err = |source| ReplayCacheError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        let mut number = 0;
        // End of the last whole line.
        let mut good: u64 = 0;
        let mut lines = 0;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            number += 1;
            if buf.last() != Some(&b'\n') {
                // Cut short by a crash: a request that was never acknowledged.
                if number == 1 {
                    return Err(corrupted(number, "no header"));
                }
                break;
            }
            let text =
                std::str::from_utf8(&buf[..n - 1]).map_err(|_| corrupted(number, "not UTF-8"))?;
            if number == 1 {
                if text != HEADER {
                    return Err(corrupted(number, "not a replay cache log"));
                }
            } else {
                self.read_line(text)
                    .map_err(|reason| corrupted(number, reason))?;
                lines += usize::from(text.starts_with('n'));
            }
            good += n as u64;
        }
        let mut file = reader.into_inner();
        let len = file.seek(SeekFrom::End(0)).map_err(read_err)?;
        if number == 0 {
            return Err(corrupted(1, "empty"));
        }
        let log = Log::append(path, lines)?;
        if len > good {
            log.file
                .set_len(good)
                .map_err(|source| ReplayCacheError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
            log.file
                .sync_data()
                .map_err(|source| ReplayCacheError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        self.log = Some(log);
        Ok(())
    }

    fn read_line(&mut self, text: &str) -> Result<(), &'static str> {
        let fields: Vec<&str> = text.split(' ').collect();
        let time = |s: &str| {
            s.parse::<u64>()
                .ok()
                .and_then(Time::from_unix)
                .ok_or("bad time")
        };
        match fields.as_slice() {
            ["t", t] => {
                let t = time(t)?;
                self.high_water = Some(self.clock(t));
            }
            ["n", nonce, expires, key, accepted] => {
                let nonce: Nonce = nonce.parse().map_err(|_| "bad nonce")?;
                let key = match *key {
                    "-" => None,
                    k => Some(k.parse::<KeyId>().map_err(|_| "bad key id")?),
                };
                let entry = Entry {
                    expires: time(expires)?,
                    key,
                    accepted: time(accepted)?,
                };
                self.high_water = Some(self.clock(entry.accepted));
                self.insert(nonce, entry);
            }
            _ => return Err("unknown line"),
        }
        Ok(())
    }

    /// Takes over the nonces of an older whole-file cache; whether there was one.
    fn import(&mut self, old: &Path) -> Result<bool, ReplayCacheError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct OldFile {
            #[expect(dead_code, reason = "checked by the strict parse only")]
            schema: u32,
            #[expect(dead_code, reason = "checked by the strict parse only")]
            kind: String,
            #[serde(default)]
            seen: Vec<OldSeen>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct OldSeen {
            nonce: Nonce,
            expires: Time,
        }
        let mut text = String::new();
        match fsio::open_read_no_follow(old) {
            Ok(mut f) => f.read_to_string(&mut text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => Err(e),
        }
        .map_err(|source| ReplayCacheError::Read {
            path: old.to_path_buf(),
            source,
        })?;
        let file: OldFile = toml::from_str(&text).map_err(|source| ReplayCacheError::Parse {
            path: old.to_path_buf(),
            source,
        })?;
        // When they were accepted is not known: recorded as the epoch, which moves no
        // high-water mark.
        let unknown = Time::from_unix(0).ok_or_else(|| ReplayCacheError::Corrupted {
            path: old.to_path_buf(),
            line: 0,
            reason: "no time for an unknown acceptance".to_string(),
        })?;
        for s in file.seen {
            self.insert(
                s.nonce,
                Entry {
                    expires: s.expires,
                    key: None,
                    accepted: unknown,
                },
            );
        }
        Ok(true)
    }
}

impl Log {
    fn append(path: &Path, lines: usize) -> Result<Log, ReplayCacheError> {
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(path)
            .map_err(|source| ReplayCacheError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Log {
            path: path.to_path_buf(),
            file,
            lines,
            written: 0,
        })
    }

    /// One `write` of whole lines, then `fdatasync`.
    fn write(&mut self, bytes: &[u8]) -> Result<(), ReplayCacheError> {
        let err = |source| ReplayCacheError::Write {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(bytes).map_err(err)?;
        self.file.sync_data().map_err(err)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

fn line(nonce: &Nonce, e: &Entry) -> String {
    let key = e.key.map_or_else(|| "-".to_string(), |k| k.to_string());
    format!(
        "n {nonce} {} {key} {}\n",
        e.expires.unix(),
        e.accepted.unix()
    )
}
