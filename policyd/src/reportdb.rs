//! The report database: one SQLite file (WAL, `synchronous = FULL`) at
//! `[reports] database`, on the package filesystem so the history follows the package.
//!
//! Writes go through one thread (`Store`), which commits whatever reports are waiting
//! in one transaction and answers each caller only after that commit returned: a report
//! answered 200 is on disk, whatever happens to the process next. Readers (`report`,
//! the status page, `/metrics`) open their own connection (`open_read`); WAL lets them
//! read while the writer writes.
//!
//! The schema is versioned by `PRAGMA user_version`: `MIGRATIONS` are applied in order
//! from the file's version, each in its own transaction; a file newer than this build
//! is refused, never written to. Retention (age, then size) runs in the writer every
//! `RETENTION_EVERY` commits and when the store opens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

/// The schema, one step per version: the file's `user_version` is the number of steps
/// applied.
const MIGRATIONS: &[&str] = &[
    // 1: reports and the outcomes of the promises that were not simply kept.
    "CREATE TABLE report (
        id INTEGER PRIMARY KEY,
        member TEXT NOT NULL,
        keyid TEXT NOT NULL,
        kind TEXT NOT NULL,
        received INTEGER NOT NULL,
        started INTEGER NOT NULL,
        ended INTEGER NOT NULL,
        serial INTEGER,
        exit_code INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        kept INTEGER NOT NULL,
        repaired INTEGER NOT NULL,
        would_repair INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        blocked INTEGER NOT NULL,
        skipped INTEGER NOT NULL,
        dry_run INTEGER NOT NULL,
        errors TEXT NOT NULL
    );
    CREATE INDEX report_member ON report(member, id);
    CREATE INDEX report_received ON report(received);
    CREATE TABLE outcome (
        report INTEGER NOT NULL REFERENCES report(id) ON DELETE CASCADE,
        promise TEXT NOT NULL,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX outcome_report ON outcome(report);",
    // 2: each member's last report, kept as reports arrive, so the overview reads one
    // row per member however long the history.
    "CREATE TABLE member_last (
        member TEXT PRIMARY KEY,
        report INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO member_last (member, report) SELECT member, MAX(id) FROM report GROUP BY member;",
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Retention runs after this many commits (and at open).
const RETENTION_EVERY: u64 = 512;
/// Most reports one transaction commits.
const MAX_BATCH: usize = 256;

/// Why the report database cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused an operation on the file.
    #[error("report database {}: {what}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer policyd.
    #[error(
        "report database {}: schema version {found} is newer than this policyd's {SCHEMA_VERSION}",
        path.display()
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
    },
    /// The writer thread is gone (it failed, or the store is closing).
    #[error("the report database writer stopped")]
    Stopped,
}

/// How long reports are kept, and how much room they may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Reports older than this are deleted.
    pub max_age: Duration,
    /// Past this many bytes of used pages, the oldest reports are deleted.
    pub max_bytes: u64,
}

/// One report as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The member it came from (its inventory name).
    pub member: String,
    /// The key id that sent it.
    pub keyid: String,
    /// `run` or `event`.
    pub kind: String,
    /// When policyd received it (unix seconds).
    pub received: u64,
    /// When the run started (unix seconds, the member's clock).
    pub started: u64,
    /// When it ended.
    pub ended: u64,
    /// The bundle serial it converged, if any.
    pub serial: Option<u64>,
    /// The agent's exit code.
    pub exit_code: i64,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// Counts of the run's summary.
    pub kept: u64,
    /// Promises changed.
    pub repaired: u64,
    /// Promises a dry run would change.
    pub would_repair: u64,
    /// Promises failed.
    pub failed: u64,
    /// Promises blocked.
    pub blocked: u64,
    /// Promises whose condition does not hold.
    pub skipped: u64,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Errors of the run (why it failed to start, a trust refusal, degraded modes).
    pub errors: Vec<String>,
    /// Outcomes of the promises not simply kept.
    pub outcomes: Vec<Outcome>,
}

/// One promise's outcome, as stored (only those not `kept`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The promise's id.
    pub promise: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `repaired`, `would_repair`, `failed`, `blocked`, `did_not_converge`.
    pub status: String,
    /// Why it failed or was blocked.
    pub reason: Option<String>,
}

type Job = (Report, oneshot::Sender<Result<i64, StoreError>>);

/// The writer: a thread owning the one write connection.
#[derive(Debug)]
pub(crate) struct Store {
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Opens (creating if need be) and migrates the database at `path`, runs retention,
    /// and starts the writer thread.
    pub(crate) fn open(path: &Path, retention: Retention) -> Result<Store, StoreError> {
        let mut conn = open_write(path)?;
        migrate(&mut conn, path)?;
        retain(&conn, path, retention, now())?;
        let (jobs, mut rx) = mpsc::channel::<Job>(1024);
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("tenet-reports".into())
            .spawn(move || writer(conn, &owned, retention, &mut rx))
            .map_err(|_| StoreError::Stopped)?;
        Ok(Store { jobs })
    }

    /// Stores `report`; returns its id once it is committed to disk.
    pub(crate) async fn insert(&self, report: Report) -> Result<i64, StoreError> {
        let (tx, rx) = oneshot::channel();
        // The channel is bounded: a full one makes this report wait, no thread.
        if self.jobs.send((report, tx)).await.is_err() {
            return Err(StoreError::Stopped);
        }
        rx.await.map_err(|_| StoreError::Stopped)?
    }
}

fn writer(mut conn: Connection, path: &Path, retention: Retention, rx: &mut mpsc::Receiver<Job>) {
    let mut commits: u64 = 0;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match insert_batch(&mut conn, path, &batch) {
            Ok(ids) => {
                for ((_, reply), id) in batch.into_iter().zip(ids) {
                    let _ = reply.send(Ok(id));
                }
            }
            Err(e) => {
                error!(error = %tenet_keys::error_chain(&e), "storing reports failed");
                for (_, reply) in batch {
                    let _ = reply.send(Err(StoreError::Stopped));
                }
            }
        }
        commits += 1;
        if commits.is_multiple_of(RETENTION_EVERY)
            && let Err(e) = retain(&conn, path, retention, now())
        {
            warn!(error = %tenet_keys::error_chain(&e), "report retention failed");
        }
    }
}

fn insert_batch(conn: &mut Connection, path: &Path, batch: &[Job]) -> Result<Vec<i64>, StoreError> {
    let sql = |what| {
        move |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let tx = conn.transaction().map_err(sql("begin"))?;
    let mut ids = Vec::with_capacity(batch.len());
    {
        let mut report = tx
            .prepare_cached(
                "INSERT INTO report (member, keyid, kind, received, started, ended, serial,
                 exit_code, duration_ms, kept, repaired, would_repair, failed, blocked,
                 skipped, dry_run, errors)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )
            .map_err(sql("prepare insert"))?;
        let mut outcome = tx
            .prepare_cached(
                "INSERT INTO outcome (report, promise, type, status, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(sql("prepare insert"))?;
        let mut last = tx
            .prepare_cached(
                "INSERT INTO member_last (member, report) VALUES (?1, ?2)
                 ON CONFLICT (member) DO UPDATE SET report = excluded.report",
            )
            .map_err(sql("prepare insert"))?;
        for (r, _) in batch {
            let errors = serde_json::to_string(&r.errors).unwrap_or_else(|_| "[]".into());
            report
                .execute(params![
                    r.member,
                    r.keyid,
                    r.kind,
                    r.received as i64,
                    r.started as i64,
                    r.ended as i64,
                    r.serial.map(|s| s as i64),
                    r.exit_code,
                    r.duration_ms as i64,
                    r.kept as i64,
                    r.repaired as i64,
                    r.would_repair as i64,
                    r.failed as i64,
                    r.blocked as i64,
                    r.skipped as i64,
                    r.dry_run,
                    errors,
                ])
                .map_err(sql("insert report"))?;
            let id = tx.last_insert_rowid();
            last.execute(params![r.member, id])
                .map_err(sql("record the last report"))?;
            for o in &r.outcomes {
                outcome
                    .execute(params![id, o.promise, o.kind, o.status, o.reason])
                    .map_err(sql("insert outcome"))?;
            }
            ids.push(id);
        }
    }
    tx.commit().map_err(sql("commit"))?;
    Ok(ids)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn open_write(path: &Path) -> Result<Connection, StoreError> {
    let sql = |what| {
        move |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let conn = Connection::open(path).map_err(sql("open"))?;
    // Before any table exists, so it takes effect on a new file.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(sql("set auto_vacuum"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql("set WAL mode"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql("set synchronous"))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(sql("enable foreign keys"))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql("set busy timeout"))?;
    Ok(conn)
}

/// A read-only connection to the database at `path` (the CLI, the page, `/metrics`).
/// Refuses a file of a newer schema.
pub(crate) fn open_read(path: &Path) -> Result<Connection, StoreError> {
    let sql = |what| {
        move |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("open"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql("set busy timeout"))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql("read the schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Newer {
            path: path.to_path_buf(),
            found: version,
        });
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |what| {
        move |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql("read the schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Newer {
            path: path.to_path_buf(),
            found: version,
        });
    }
    for (at, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.transaction().map_err(sql("begin a migration"))?;
        tx.execute_batch(step).map_err(sql("migrate"))?;
        tx.pragma_update(None, "user_version", at as i64 + 1)
            .map_err(sql("set the schema version"))?;
        tx.commit().map_err(sql("commit a migration"))?;
    }
    Ok(())
}

/// Deletes reports older than `max_age`, then the oldest until the used pages fit
/// `max_bytes`, and gives the freed pages back to the filesystem.
pub(crate) fn retain(
    conn: &Connection,
    path: &Path,
    retention: Retention,
    now: u64,
) -> Result<(), StoreError> {
    let sql = |what| {
        move |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let cutoff = now.saturating_sub(retention.max_age.as_secs());
    conn.execute("DELETE FROM report WHERE received < ?1", [cutoff as i64])
        .map_err(sql("delete old reports"))?;
    let forget = || {
        conn.execute(
            "DELETE FROM member_last WHERE report NOT IN (SELECT id FROM report)",
            [],
        )
        .map_err(sql("forget members without reports"))
    };
    forget()?;
    for _ in 0..64 {
        let used: i64 = conn
            .query_row(
                "SELECT (p.page_count - f.freelist_count) * s.page_size
                 FROM pragma_page_count p, pragma_freelist_count f, pragma_page_size s",
                [],
                |r| r.get(0),
            )
            .map_err(sql("measure"))?;
        if used as u64 <= retention.max_bytes {
            break;
        }
        // The oldest tenth (at least one) at a time.
        let deleted = conn
            .execute(
                "DELETE FROM report WHERE id IN (SELECT id FROM report ORDER BY id
                 LIMIT MAX(1, (SELECT COUNT(*) FROM report) / 10))",
                [],
            )
            .map_err(sql("delete the oldest reports"))?;
        if deleted == 0 {
            break;
        }
        forget()?;
    }
    conn.execute_batch("PRAGMA incremental_vacuum")
        .map_err(sql("vacuum"))?;
    Ok(())
}

/// The serving policyd's database: opened at the first report after promotion (the
/// package filesystem is mounted then), closed at demotion, so the filesystem can be
/// unmounted and the next master opens the same file.
#[derive(Debug)]
pub(crate) struct ReportDb {
    path: PathBuf,
    retention: Retention,
    store: std::sync::Mutex<Option<std::sync::Arc<Store>>>,
}

impl ReportDb {
    /// A closed database at `path`.
    pub(crate) fn new(path: PathBuf, retention: Retention) -> ReportDb {
        ReportDb {
            path,
            retention,
            store: std::sync::Mutex::new(None),
        }
    }

    /// The store if it is open (no I/O).
    pub(crate) fn open_store(&self) -> Option<std::sync::Arc<Store>> {
        self.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .cloned()
    }

    /// The open store, opening it first if need be (blocking: SQLite I/O).
    pub(crate) fn store(&self) -> Result<std::sync::Arc<Store>, StoreError> {
        let mut held = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = held.as_ref() {
            return Ok(store.clone());
        }
        let store = std::sync::Arc::new(Store::open(&self.path, self.retention)?);
        *held = Some(store.clone());
        Ok(store)
    }

    /// Closes the store: the writer ends once the reports in flight are committed.
    pub(crate) fn close(&self) {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The last report of each member, by member name.
pub(crate) fn latest(conn: &Connection) -> rusqlite::Result<Vec<Stored>> {
    query(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM member_last l JOIN report r ON r.id = l.report
             ORDER BY l.member"
        ),
        [],
    )
}

/// The newest `limit` reports of `member`, newest first.
pub(crate) fn history(
    conn: &Connection,
    member: &str,
    limit: u32,
) -> rusqlite::Result<Vec<Stored>> {
    query(
        conn,
        &format!("SELECT {COLUMNS} FROM report r WHERE member = ?1 ORDER BY id DESC LIMIT ?2"),
        params![member, limit],
    )
}

/// Reports that found drift (a promise repaired, or that a dry run would repair), newest
/// first, of one member or all.
pub(crate) fn drift(
    conn: &Connection,
    member: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<Stored>> {
    query(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM report r WHERE (r.repaired > 0 OR r.would_repair > 0)
             AND (?1 IS NULL OR r.member = ?1) ORDER BY id DESC LIMIT ?2"
        ),
        params![member, limit],
    )
}

/// The failed, blocked and did-not-converge outcomes of each member's last report, by
/// member: (member, outcome).
pub(crate) fn latest_failures(conn: &Connection) -> rusqlite::Result<Vec<(String, Outcome)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.member, o.promise, o.type, o.status, o.reason FROM outcome o
         JOIN report r ON r.id = o.report
         JOIN member_last l ON l.report = r.id
         WHERE o.status IN ('failed', 'blocked', 'did_not_converge')
         ORDER BY r.member, o.rowid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            Outcome {
                promise: r.get(1)?,
                kind: r.get(2)?,
                status: r.get(3)?,
                reason: r.get(4)?,
            },
        ))
    })?;
    rows.collect()
}

/// The stored outcomes of report `id`.
pub(crate) fn outcomes(conn: &Connection, id: i64) -> rusqlite::Result<Vec<Outcome>> {
    let mut stmt = conn.prepare_cached(
        "SELECT promise, type, status, reason FROM outcome WHERE report = ?1 ORDER BY rowid",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(Outcome {
            promise: r.get(0)?,
            kind: r.get(1)?,
            status: r.get(2)?,
            reason: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// A stored report and its id (outcomes not loaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Its row id (increasing with arrival).
    pub(crate) id: i64,
    /// The report, with `outcomes` empty.
    pub(crate) report: Report,
}

const COLUMNS: &str = "r.id, r.member, r.keyid, r.kind, r.received, r.started, r.ended,
    r.serial, r.exit_code, r.duration_ms, r.kept, r.repaired, r.would_repair, r.failed,
    r.blocked, r.skipped, r.dry_run, r.errors";

fn query(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Stored>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| {
        let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
        let errors: String = r.get(17)?;
        Ok(Stored {
            id: r.get(0)?,
            report: Report {
                member: r.get(1)?,
                keyid: r.get(2)?,
                kind: r.get(3)?,
                received: n(4)?,
                started: n(5)?,
                ended: n(6)?,
                serial: r.get::<_, Option<i64>>(7)?.map(|s| s.max(0) as u64),
                exit_code: r.get(8)?,
                duration_ms: n(9)?,
                kept: n(10)?,
                repaired: n(11)?,
                would_repair: n(12)?,
                failed: n(13)?,
                blocked: n(14)?,
                skipped: n(15)?,
                dry_run: r.get(16)?,
                errors: serde_json::from_str(&errors).unwrap_or_default(),
                outcomes: Vec::new(),
            },
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(member: &str, received: u64, failed: u64) -> Report {
        Report {
            member: member.into(),
            keyid: "00".repeat(32),
            kind: "run".into(),
            received,
            started: received,
            ended: received,
            serial: Some(3),
            exit_code: i64::from(failed > 0),
            duration_ms: 5,
            kept: 2,
            repaired: 1,
            would_repair: 0,
            failed,
            blocked: 0,
            skipped: 0,
            dry_run: false,
            errors: vec![],
            outcomes: vec![Outcome {
                promise: "motd".into(),
                kind: "file".into(),
                status: "failed".into(),
                reason: Some("no such directory".into()),
            }],
        }
    }

    #[tokio::test]
    async fn stores_migrates_reads_back_and_retains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reports.db");
        let retention = Retention {
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 30,
        };
        let store = Store::open(&path, retention).expect("open");
        let t = now();
        store.insert(sample("alpha", t, 1)).await.expect("insert");
        store.insert(sample("beta", t, 0)).await.expect("insert");
        let id = store.insert(sample("alpha", t, 0)).await.expect("insert");
        drop(store);
        // Opening again keeps the data and the schema version.
        let store = Store::open(&path, retention).expect("reopen");
        drop(store);
        let conn = open_read(&path).expect("read");
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        let latest = latest(&conn).expect("latest");
        assert_eq!(latest.len(), 2);
        assert_eq!(latest[0].id, id);
        assert_eq!(latest[0].report.failed, 0);
        assert_eq!(history(&conn, "alpha", 10).expect("history").len(), 2);
        assert_eq!(outcomes(&conn, id).expect("outcomes")[0].promise, "motd");
        drop(conn);
        // Age: everything is older than an hour an hour and a second from now.
        let conn = open_write(&path).expect("write");
        retain(&conn, &path, retention, t + 3601).expect("retain");
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM report", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 0);
        let o: i64 = conn
            .query_row("SELECT COUNT(*) FROM outcome", [], |r| r.get(0))
            .expect("count");
        assert_eq!(o, 0, "outcomes go with their report");
    }

    #[tokio::test]
    async fn size_retention_drops_the_oldest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reports.db");
        let big = Retention {
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 30,
        };
        let store = Store::open(&path, big).expect("open");
        let t = now();
        for i in 0..2000 {
            store
                .insert(sample(&format!("m{i}"), t, 1))
                .await
                .expect("insert");
        }
        drop(store);
        let conn = open_write(&path).expect("write");
        let small = Retention {
            max_bytes: 64 * 1024,
            ..big
        };
        retain(&conn, &path, small, t).expect("retain");
        let (n, min): (i64, i64) = conn
            .query_row("SELECT COUNT(*), MIN(id) FROM report", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("count");
        assert!(n > 0 && n < 2000, "{n} reports left");
        assert!(min > 1, "the oldest went first");
    }

    #[test]
    fn a_version_1_file_is_migrated_with_its_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reports.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(MIGRATIONS[0]).expect("schema 1");
        conn.pragma_update(None, "user_version", 1).expect("set");
        for (id, member) in [(1, "alpha"), (2, "beta"), (3, "alpha")] {
            conn.execute(
                "INSERT INTO report VALUES (?1, ?2, 'k', 'run', 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, '[]')",
                params![id, member],
            )
            .expect("insert");
        }
        drop(conn);
        let retention = Retention {
            max_age: Duration::from_secs(u64::from(u32::MAX)),
            max_bytes: 1 << 30,
        };
        drop(Store::open(&path, retention).expect("migrates"));
        let conn = open_read(&path).expect("read");
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        let ids: Vec<i64> = latest(&conn)
            .expect("latest")
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, vec![3, 2], "each member's last report, by name");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reports.db");
        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("set");
        drop(conn);
        let retention = Retention {
            max_age: Duration::from_secs(1),
            max_bytes: 1,
        };
        assert!(matches!(
            Store::open(&path, retention),
            Err(StoreError::Newer { .. })
        ));
        assert!(matches!(open_read(&path), Err(StoreError::Newer { .. })));
    }
}
