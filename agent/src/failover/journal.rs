//! The event journal: `STATE/events/<id>.jsonl`, append-only JSON Lines.
//!
//! Each record is written and fsynced before what it announces proceeds: the
//! event's begin before its first step, a step's start before the step runs, its
//! end before the next starts. A SIGKILL at any point leaves a journal that says
//! exactly how far the event got; a torn last line (the kill came mid-write) is
//! ignored, and cut off before anything is appended again.
//!
//! The journal makes an event id run at most once: a complete journal is replayed,
//! an incomplete one is reported and continued only on request (`--resume`).
//! It lives in the agent's state directory, outside the managed root, so it is
//! written here rather than through `fsops`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::report::StepStatus;
use crate::statefs::sync_dir;

/// The journals' directory in the state directory.
pub const EVENTS_DIR: &str = "events";

/// Longest event id accepted.
pub const MAX_ID_BYTES: usize = 128;

/// Why a journal cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The id cannot name a journal file.
    #[error(
        "event id {id:?} {why}; use letters, digits and . _ - : @ + (at most 128 bytes, not starting with .)"
    )]
    BadId {
        /// The id given.
        id: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Reading, creating or appending failed.
    #[error("cannot use the event journal {}", path.display())]
    Io {
        /// The journal.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A line before the last is not a journal record.
    #[error("event journal {}: line {line} is not a journal record: {message}", path.display())]
    Corrupt {
        /// The journal.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the parser said.
        message: String,
    },
}

/// One line of a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The event began: written before its first step.
    EventBegin(Begin),
    /// An interrupted event is continued (`--resume`).
    Resume {
        /// When.
        time: String,
    },
    /// A step starts: written before it runs.
    StepStart {
        /// The plan.
        plan: String,
        /// The step's position in the plan, from 1.
        index: usize,
        /// The step's name.
        name: String,
        /// When.
        time: String,
    },
    /// A step ended (or was skipped).
    StepEnd(StepEnd),
    /// The event ended: nothing more will be run for this id.
    EventEnd {
        /// `ok` or `failed`.
        result: StepStatus,
        /// The exit code the run ended with; a replay exits with it again.
        exit_code: u8,
        /// When.
        time: String,
    },
}

/// `event_begin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Begin {
    /// The event id.
    pub id: String,
    /// The event, as `package-start:dce`.
    pub event: String,
    /// The member.
    pub member: Option<String>,
    /// Where the plans came from: `bundle serial N` or `policy tree DIR`.
    pub source: String,
    /// When.
    pub time: String,
    /// The agent's pid.
    pub pid: u32,
    /// Each selected plan with its steps' names, so a resume can check the plans did
    /// not change meanwhile.
    pub plans: Vec<Outline>,
}

/// A plan's name and its steps' names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outline {
    /// The plan.
    pub plan: String,
    /// Its steps' names, in order.
    pub steps: Vec<String>,
}

/// `step_end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepEnd {
    /// The plan.
    pub plan: String,
    /// The step's position in the plan, from 1.
    pub index: usize,
    /// The step's name.
    pub name: String,
    /// `ok`, `failed` or `skipped`.
    pub result: StepStatus,
    /// Why it failed or was skipped, or what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The command's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How long it took.
    pub duration_ms: u64,
    /// The last ~2 KiB of the command's output.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// The hostname a `hostname-save` step saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_hostname: Option<String>,
}

/// Checks that `id` can name a journal file: no `/`, NUL, `..` or other surprises.
pub fn check_id(id: &str) -> Result<(), JournalError> {
    let bad = |why| {
        Err(JournalError::BadId {
            id: id.to_string(),
            why,
        })
    };
    if id.is_empty() {
        return bad("is empty");
    }
    if id.len() > MAX_ID_BYTES {
        return bad("is too long");
    }
    if id.starts_with('.') {
        return bad("starts with `.`");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-:@+".contains(&b))
    {
        return bad("has a character that is not allowed (such as `/`, a space or NUL)");
    }
    Ok(())
}

/// The journal file of `id` in `state_dir`.
pub fn path(state_dir: &Path, id: &str) -> Result<PathBuf, JournalError> {
    check_id(id)?;
    Ok(state_dir.join(EVENTS_DIR).join(format!("{id}.jsonl")))
}

/// What a journal on disk says.
#[derive(Debug, Clone)]
pub struct History {
    /// The journal file.
    pub path: PathBuf,
    /// Its complete records, in order.
    pub records: Vec<Record>,
    /// Bytes up to the end of the last complete record.
    valid_len: u64,
}

/// Where an incomplete journal stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interruption {
    /// Before its first step started.
    BeforeFirstStep,
    /// During this step (started, never ended).
    During {
        /// The plan.
        plan: String,
        /// The step's position.
        index: usize,
        /// Its name.
        name: String,
        /// When it started.
        started: String,
    },
    /// Between two steps: this one was the last to end.
    After {
        /// The plan.
        plan: String,
        /// The step's position.
        index: usize,
        /// Its name.
        name: String,
    },
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BeforeFirstStep => f.write_str("interrupted before its first step"),
            Self::During {
                plan,
                index,
                name,
                started,
            } => write!(
                f,
                "interrupted at step {index} `{name}` of plan {plan}, started at {started}"
            ),
            Self::After { plan, index, name } => write!(
                f,
                "interrupted after step {index} `{name}` of plan {plan} ended"
            ),
        }
    }
}

impl History {
    /// Reads the journal of `id`; `None` when the event never ran here.
    pub fn read(state_dir: &Path, id: &str) -> Result<Option<History>, JournalError> {
        let path = path(state_dir, id)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(JournalError::Io { path, source }),
        };
        let mut records = Vec::new();
        let mut valid_len = 0u64;
        let mut offset = 0usize;
        let mut line_no = 0usize;
        while offset < bytes.len() {
            line_no += 1;
            let rest = &bytes[offset..];
            let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
                // A torn last line: the writer died mid-write; that record never was.
                break;
            };
            let line = &rest[..nl];
            match serde_json::from_slice::<Record>(line) {
                Ok(r) => records.push(r),
                // The last line may be torn even with a newline in it (a kill between
                // blocks); anything before it is corruption.
                Err(_) if offset + nl + 1 == bytes.len() => break,
                Err(e) => {
                    return Err(JournalError::Corrupt {
                        path,
                        line: line_no,
                        message: e.to_string(),
                    });
                }
            }
            offset += nl + 1;
            valid_len = offset as u64;
        }
        Ok(Some(History {
            path,
            records,
            valid_len,
        }))
    }

    /// The `event_begin` record.
    pub fn begin(&self) -> Option<&Begin> {
        self.records.iter().find_map(|r| match r {
            Record::EventBegin(b) => Some(b),
            _ => None,
        })
    }

    /// The result and exit code, when the event ended.
    pub fn end(&self) -> Option<(StepStatus, u8, &str)> {
        self.records.iter().rev().find_map(|r| match r {
            Record::EventEnd {
                result,
                exit_code,
                time,
            } => Some((*result, *exit_code, time.as_str())),
            _ => None,
        })
    }

    /// Every step's last end, by plan and position.
    pub fn step_ends(&self) -> BTreeMap<(String, usize), StepEnd> {
        let mut ends = BTreeMap::new();
        for r in &self.records {
            if let Record::StepEnd(e) = r {
                ends.insert((e.plan.clone(), e.index), e.clone());
            }
        }
        ends
    }

    /// Step ends in the order they were written (the last end of each step).
    pub fn ordered_ends(&self) -> Vec<StepEnd> {
        let last = self.step_ends();
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for r in &self.records {
            if let Record::StepEnd(e) = r
                && seen.insert((e.plan.clone(), e.index))
                && let Some(l) = last.get(&(e.plan.clone(), e.index))
            {
                out.push(l.clone());
            }
        }
        out
    }

    /// The hostname the last `hostname-save` step saved.
    pub fn saved_hostname(&self) -> Option<String> {
        self.records.iter().rev().find_map(|r| match r {
            Record::StepEnd(e) => e.saved_hostname.clone(),
            _ => None,
        })
    }

    /// Where an incomplete journal stops.
    pub fn interruption(&self) -> Interruption {
        interruption(&self.records)
    }
}

/// Where a journal whose records end with `records` stops.
fn interruption(records: &[Record]) -> Interruption {
    let mut open: Option<Interruption> = None;
    let mut last_end: Option<Interruption> = None;
    for r in records {
        match r {
            Record::StepStart {
                plan,
                index,
                name,
                time,
            } => {
                open = Some(Interruption::During {
                    plan: plan.clone(),
                    index: *index,
                    name: name.clone(),
                    started: time.clone(),
                });
            }
            Record::StepEnd(e) => {
                open = None;
                last_end = Some(Interruption::After {
                    plan: e.plan.clone(),
                    index: e.index,
                    name: e.name.clone(),
                });
            }
            _ => {}
        }
    }
    open.or(last_end).unwrap_or(Interruption::BeforeFirstStep)
}

/// An open journal, appending.
#[derive(Debug)]
pub struct EventJournal {
    path: PathBuf,
    file: File,
}

impl EventJournal {
    /// Creates the journal of a new event with its begin record. Fails if a journal
    /// of that id exists (the caller has read it first, under the run lock).
    ///
    /// The begin record is written and fsynced in a temp file (`.ID.jsonl.tenet-new`)
    /// that is then linked into place (no clobbering) and the directory fsynced: a
    /// crash leaves no journal or one with its begin record, never an empty one.
    pub fn create(state_dir: &Path, begin: Begin) -> Result<EventJournal, JournalError> {
        let path = path(state_dir, &begin.id)?;
        let io_err = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let dir = state_dir.join(EVENTS_DIR);
        let made = !dir.is_dir();
        fs::create_dir_all(&dir).map_err(io_err)?;
        if made {
            sync_dir(state_dir).map_err(io_err)?;
        }
        let temp = dir.join(format!(".{}.jsonl{TEMP_SUFFIX}", begin.id));
        let mut line = serde_json::to_vec(&Record::EventBegin(begin))
            .map_err(|e| io_err(io::Error::other(e)))?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(io_err)?;
        file.write_all(&line).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        drop(file);
        let linked = fs::hard_link(&temp, &path);
        // The temp name is per id, so a leftover one is reused next time.
        let _ = fs::remove_file(&temp);
        linked.map_err(io_err)?;
        // The file's name must survive a crash along with its first record.
        sync_dir(&dir).map_err(io_err)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        Ok(EventJournal { path, file })
    }

    /// Reopens an interrupted event's journal for appending, cutting off a torn last line.
    pub fn reopen(history: &History) -> Result<EventJournal, JournalError> {
        let io_err = |source| JournalError::Io {
            path: history.path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .open(&history.path)
            .map_err(io_err)?;
        if file.metadata().map_err(io_err)?.len() != history.valid_len {
            file.set_len(history.valid_len).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        drop(file);
        let file = OpenOptions::new()
            .append(true)
            .open(&history.path)
            .map_err(io_err)?;
        Ok(EventJournal {
            path: history.path.clone(),
            file,
        })
    }

    /// Appends one record and waits until it is on disk.
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let io_err = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(record).map_err(|e| io_err(io::Error::other(e)))?;
        line.push(b'\n');
        // One write per record, so a record is torn only by a crash, never interleaved.
        self.file.write_all(&line).map_err(io_err)?;
        self.file.sync_data().map_err(io_err)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Suffix of the temp file a journal's begin record is written to.
const TEMP_SUFFIX: &str = ".tenet-new";

/// Removes the journal of `id`: one without a begin record (left by an agent from
/// before journals were created whole) counts as never run.
pub fn discard(state_dir: &Path, id: &str) -> Result<(), JournalError> {
    let path = path(state_dir, id)?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(JournalError::Io { path, source }),
    }
}

/// A journal without an `event_end`: an event that was interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The event id.
    pub id: String,
    /// The event, as `package-start:dce`.
    pub event: String,
    /// Where it stopped.
    pub interruption: Interruption,
    /// When the journal was last written.
    pub modified: Option<std::time::SystemTime>,
}

/// How much of a journal's end [`unfinished`] reads (a record is a few KiB at most).
const TAIL_BYTES: u64 = 16 * 1024;

/// How much of a journal's start [`unfinished`] reads for its begin record.
const HEAD_BYTES: u64 = 256 * 1024;

/// The journals in `state_dir` without an `event_end`, newest first, and how many
/// there are in all: at most `max` are returned. Reads only the tail of each journal
/// (and the head of an unfinished one); journals that cannot be read are left out.
pub fn unfinished(state_dir: &Path, max: usize) -> (Vec<Unfinished>, usize) {
    let Ok(entries) = fs::read_dir(state_dir.join(EVENTS_DIR)) else {
        return (Vec::new(), 0);
    };
    let mut found: Vec<Unfinished> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let id = name.to_str()?.strip_suffix(".jsonl")?;
            check_id(id).ok()?;
            unfinished_one(&e.path(), id)
        })
        .collect();
    found.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| a.id.cmp(&b.id)));
    let total = found.len();
    found.truncate(max);
    (found, total)
}

fn unfinished_one(path: &Path, id: &str) -> Option<Unfinished> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let len = meta.len();
    let from = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut tail = Vec::new();
    (&mut file).take(TAIL_BYTES).read_to_end(&mut tail).ok()?;
    let mut lines: Vec<&[u8]> = tail.split(|b| *b == b'\n').collect();
    // The last piece follows the last newline: empty, or a torn record.
    lines.pop();
    if from > 0 && !lines.is_empty() {
        // The first piece may start mid-record.
        lines.remove(0);
    }
    let records: Vec<Record> = lines
        .iter()
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    if records.iter().any(|r| matches!(r, Record::EventEnd { .. })) {
        return None;
    }
    file.seek(SeekFrom::Start(0)).ok()?;
    let mut head = Vec::new();
    file.take(HEAD_BYTES).read_to_end(&mut head).ok()?;
    let first = head.split(|b| *b == b'\n').next()?;
    let Ok(Record::EventBegin(begin)) = serde_json::from_slice(first) else {
        // No begin record: the event never began.
        return None;
    };
    Some(Unfinished {
        id: id.to_string(),
        event: begin.event,
        interruption: interruption(&records),
        modified: meta.modified().ok(),
    })
}

/// Most interrupted events [`unfinished_warnings`] names.
pub const MAX_UNFINISHED_REPORTED: usize = 10;

/// One warning per event journal in `state_dir` without an `event_end` (an event
/// that was interrupted and never resumed), except `except`'s, newest first and at
/// most [`MAX_UNFINISHED_REPORTED`] (then how many more). Reads only the tails.
pub fn unfinished_warnings(state_dir: &Path, except: Option<&str>) -> Vec<String> {
    let (found, _) = unfinished(state_dir, usize::MAX);
    let found: Vec<_> = found
        .into_iter()
        .filter(|u| Some(u.id.as_str()) != except)
        .collect();
    let mut out: Vec<String> = found
        .iter()
        .take(MAX_UNFINISHED_REPORTED)
        .map(|u| {
            let written = u
                .modified
                .map(|t| format!(", last written {}", tenet_keys::Time::from_system(t)))
                .unwrap_or_default();
            format!(
                "warning: event {} (id {}) did not finish: {}{written}; `tenet-agent event ... --id {} --resume` continues it",
                u.event, u.id, u.interruption, u.id
            )
        })
        .collect();
    if found.len() > MAX_UNFINISHED_REPORTED {
        out.push(format!(
            "warning: and {} more interrupted events in {}",
            found.len() - MAX_UNFINISHED_REPORTED,
            state_dir.join(EVENTS_DIR).display()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin(id: &str) -> Begin {
        Begin {
            id: id.to_string(),
            event: "package-start:dce".to_string(),
            member: Some("beta".to_string()),
            source: "policy tree /p".to_string(),
            time: "2026-01-01T00:00:00Z".to_string(),
            pid: 1,
            plans: vec![Outline {
                plan: "p".to_string(),
                steps: vec!["a".to_string(), "b".to_string()],
            }],
        }
    }

    fn end(index: usize, result: StepStatus) -> Record {
        Record::StepEnd(StepEnd {
            plan: "p".to_string(),
            index,
            name: format!("s{index}"),
            result,
            reason: None,
            exit_code: Some(0),
            duration_ms: 1,
            output: String::new(),
            saved_hostname: (index == 1).then(|| "alpha".to_string()),
        })
    }

    fn start(index: usize) -> Record {
        Record::StepStart {
            plan: "p".to_string(),
            index,
            name: format!("s{index}"),
            time: "T".to_string(),
        }
    }

    #[test]
    fn ids_that_are_not_safe_file_names_are_refused() {
        for ok in ["20261122-1234", "dce.takeover:1", "a@b+c_d-e"] {
            check_id(ok).unwrap();
        }
        for bad in [
            "",
            "a/b",
            "..",
            ".hidden",
            "a\0b",
            "a b",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(
                matches!(check_id(bad), Err(JournalError::BadId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn records_round_trip_and_an_interruption_is_located() {
        let dir = tempfile::tempdir().unwrap();
        assert!(History::read(dir.path(), "e1").unwrap().is_none());
        let mut j = EventJournal::create(dir.path(), begin("e1")).unwrap();
        assert!(
            EventJournal::create(dir.path(), begin("e1")).is_err(),
            "created twice"
        );
        j.append(&start(1)).unwrap();
        j.append(&end(1, StepStatus::Ok)).unwrap();
        let h = History::read(dir.path(), "e1").unwrap().unwrap();
        assert_eq!(
            h.interruption(),
            Interruption::After {
                plan: "p".into(),
                index: 1,
                name: "s1".into()
            }
        );
        j.append(&start(2)).unwrap();
        let h = History::read(dir.path(), "e1").unwrap().unwrap();
        assert_eq!(h.begin(), Some(&begin("e1")));
        assert!(h.end().is_none());
        assert_eq!(h.saved_hostname().as_deref(), Some("alpha"));
        assert_eq!(
            h.interruption().to_string(),
            "interrupted at step 2 `s2` of plan p, started at T"
        );
        j.append(&end(2, StepStatus::Failed)).unwrap();
        j.append(&Record::EventEnd {
            result: StepStatus::Failed,
            exit_code: 1,
            time: "T".into(),
        })
        .unwrap();
        let h = History::read(dir.path(), "e1").unwrap().unwrap();
        assert_eq!(
            h.end().map(|(r, c, _)| (r, c)),
            Some((StepStatus::Failed, 1))
        );
        assert_eq!(h.ordered_ends().len(), 2);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_off_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = EventJournal::create(dir.path(), begin("e2")).unwrap();
        j.append(&start(1)).unwrap();
        drop(j);
        let p = path(dir.path(), "e2").unwrap();
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"type":"step_end","plan":"p","ind"#)
            .unwrap();
        drop(f);
        let h = History::read(dir.path(), "e2").unwrap().unwrap();
        assert_eq!(h.records.len(), 2);
        let mut j = EventJournal::reopen(&h).unwrap();
        j.append(&end(1, StepStatus::Ok)).unwrap();
        let h = History::read(dir.path(), "e2").unwrap().unwrap();
        assert_eq!(h.records.len(), 3);
        assert_eq!(h.step_ends().len(), 1);
    }

    #[test]
    fn a_crash_while_creating_leaves_no_journal_and_the_id_can_run() {
        let dir = tempfile::tempdir().unwrap();
        // What a crash between creating the file and writing its begin record left:
        // only the temp file, which is not a journal and is reused.
        let events = dir.path().join(EVENTS_DIR);
        fs::create_dir_all(&events).unwrap();
        File::create(events.join(".e4.jsonl.tenet-new")).unwrap();
        assert!(History::read(dir.path(), "e4").unwrap().is_none());
        assert_eq!(unfinished(dir.path(), 10).1, 0);
        let j = EventJournal::create(dir.path(), begin("e4")).unwrap();
        drop(j);
        let h = History::read(dir.path(), "e4").unwrap().unwrap();
        assert_eq!(h.begin(), Some(&begin("e4")));
        assert!(!events.join(".e4.jsonl.tenet-new").exists());
        // An empty journal (an older agent's crash there) is discarded, and the id runs.
        File::create(events.join("e5.jsonl")).unwrap();
        assert!(EventJournal::create(dir.path(), begin("e5")).is_err());
        discard(dir.path(), "e5").unwrap();
        EventJournal::create(dir.path(), begin("e5")).unwrap();
    }

    #[test]
    fn unfinished_journals_are_found_from_their_tails_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unfinished(dir.path(), 10), (Vec::new(), 0));
        let mut done = EventJournal::create(dir.path(), begin("done")).unwrap();
        done.append(&start(1)).unwrap();
        done.append(&end(1, StepStatus::Ok)).unwrap();
        done.append(&Record::EventEnd {
            result: StepStatus::Ok,
            exit_code: 0,
            time: "T".into(),
        })
        .unwrap();
        let mut cut = EventJournal::create(dir.path(), begin("cut")).unwrap();
        cut.append(&start(1)).unwrap();
        // Long outputs, so the begin record is beyond the tail that is read.
        for _ in 0..20 {
            let Record::StepEnd(mut e) = end(1, StepStatus::Ok) else {
                panic!("a step end")
            };
            e.output = "x".repeat(2000);
            cut.append(&Record::StepEnd(e)).unwrap();
        }
        cut.append(&start(2)).unwrap();
        EventJournal::create(dir.path(), begin("fresh")).unwrap();
        let (found, total) = unfinished(dir.path(), 10);
        assert_eq!(total, 2);
        let mut ids: Vec<&str> = found.iter().map(|u| u.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["cut", "fresh"]);
        let cut = found.iter().find(|u| u.id == "cut").unwrap();
        assert_eq!(cut.event, "package-start:dce");
        assert_eq!(
            cut.interruption.to_string(),
            "interrupted at step 2 `s2` of plan p, started at T"
        );
        let fresh = found.iter().find(|u| u.id == "fresh").unwrap();
        assert_eq!(fresh.interruption, Interruption::BeforeFirstStep);
        let (capped, total) = unfinished(dir.path(), 1);
        assert_eq!((capped.len(), total), (1, 2));
    }

    #[test]
    fn a_bad_line_before_the_last_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let j = EventJournal::create(dir.path(), begin("e3")).unwrap();
        drop(j);
        let p = path(dir.path(), "e3").unwrap();
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"garbage\n{\"type\":\"resume\",\"time\":\"T\"}\n")
            .unwrap();
        drop(f);
        assert!(matches!(
            History::read(dir.path(), "e3"),
            Err(JournalError::Corrupt { line: 2, .. })
        ));
    }
}
