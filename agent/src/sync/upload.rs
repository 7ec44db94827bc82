//! Run reports to the master: `POST /v1/report` over the same pinned mutual TLS as the
//! sync (the node key authenticates the member; the master checks the report names
//! it), and `STATE/reports/`, the queue of reports not yet delivered.
//!
//! A report is written to the queue first (one file each, atomically), then the queue
//! is sent oldest first, each file removed once the master answered 200. A report the
//! master refuses for good (400, 403, 413: it would be refused again) is dropped with a
//! warning; on any other failure (unreachable, 429, 503, an older master's 404) the
//! rest stays queued for the next run. The queue holds at most [`MAX_QUEUED`] files:
//! past that the oldest are dropped. Callers hold `sync.lock`, so two runs never send
//! the same file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::StatusCode;
use tenet_keys::SecretKey;
use tenet_keys::fsio::{Overwrite, write_atomic};

use crate::config::Config;
use crate::sync::cache::Cache;
use crate::sync::fetch::{self, FetchError, Master};
use crate::sync::trusted::load_state;

/// The queue directory in the state directory.
pub const QUEUE_DIR: &str = "reports";
/// Most reports kept queued; past it the oldest are dropped.
pub const MAX_QUEUED: usize = 64;
/// The `schema` of a report body.
pub const REPORT_SCHEMA: &str = "tenet.agent.report/1";
/// Largest answer read from the master.
const ANSWER_MAX: u64 = 4096;

/// What became of the queue.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Reports the master stored.
    pub sent: usize,
    /// Reports the master refused for good, dropped (with why).
    pub refused: Vec<String>,
    /// Reports dropped because the queue was full.
    pub dropped: usize,
    /// Reports left queued.
    pub queued: usize,
    /// Why the rest stayed queued, if sending stopped.
    pub stopped: Option<String>,
}

/// Why a report could not even be queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The queue directory or a file in it is unusable.
    #[error("report queue {}: {source}", path.display())]
    Queue {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// Queues `report` (a JSON object, `schema` [`REPORT_SCHEMA`]) and sends the queue to
/// the master, all talk with it within `deadline`.
pub fn deliver(
    config: &Config,
    report: &[u8],
    deadline: Duration,
) -> Result<Delivery, UploadError> {
    let dropped = queue(&config.state_dir, report)?;
    let mut delivery = send_queue(config, &config.state_dir, deadline)?;
    delivery.dropped = dropped;
    Ok(delivery)
}

/// Adds `report` to the queue in `state_dir`; returns how many of the oldest were
/// dropped to keep it within [`MAX_QUEUED`].
pub fn queue(state_dir: &Path, report: &[u8]) -> Result<usize, UploadError> {
    let dir = state_dir.join(QUEUE_DIR);
    enqueue(&dir, report)?;
    trim(&dir, MAX_QUEUED)
}

/// Sends the queue in `state_dir` to `config`'s master, oldest first, within
/// `deadline`. The caller holds `sync.lock`.
pub fn send_queue(
    config: &Config,
    state_dir: &Path,
    deadline: Duration,
) -> Result<Delivery, UploadError> {
    let dir = state_dir.join(QUEUE_DIR);
    let mut delivery = Delivery::default();
    if !dir.exists() {
        return Ok(delivery);
    }
    let queue = queued(&dir)?;
    if queue.is_empty() {
        return Ok(delivery);
    }
    let mut master = match connect(config, state_dir, deadline) {
        Ok(m) => m,
        Err(why) => {
            delivery.queued = queue.len();
            delivery.stopped = Some(why);
            return Ok(delivery);
        }
    };
    for (at, file) in queue.iter().enumerate() {
        let io = |source| UploadError::Queue {
            path: file.clone(),
            source,
        };
        let body = std::fs::read(file).map_err(io)?;
        match master.post("/v1/report", body, ANSWER_MAX) {
            Ok(mut answer) => {
                let _ = std::io::copy(&mut answer, &mut std::io::sink());
                delivery.sent += 1;
            }
            Err(FetchError::Status { status, .. })
                if matches!(
                    status,
                    StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN | StatusCode::PAYLOAD_TOO_LARGE
                ) =>
            {
                delivery
                    .refused
                    .push(format!("{}: status {status}", file.display()));
            }
            Err(e) => {
                delivery.queued = queue.len() - at;
                delivery.stopped = Some(tenet_keys::error_chain(&e));
                return Ok(delivery);
            }
        }
        std::fs::remove_file(file).map_err(io)?;
    }
    Ok(delivery)
}

fn connect(config: &Config, state_dir: &Path, deadline: Duration) -> Result<Master, String> {
    let cache = Cache::open(state_dir).map_err(|e| e.to_string())?;
    let state = load_state(config, &cache).map_err(|e| e.to_string())?;
    let key = SecretKey::read(&config.node_key).map_err(|e| {
        format!(
            "node key {}: {}",
            config.node_key.display(),
            tenet_keys::error_chain(&e)
        )
    })?;
    let pins = state.root().root().transport.server_spki.clone();
    let tls = fetch::client_config(&config.member, &key, pins)
        .map_err(|e| tenet_keys::error_chain(&e))?;
    Master::connect(&config.master(), tls, config.connect_timeout, deadline)
        .map_err(|e| tenet_keys::error_chain(&e))
}

/// Writes `report` as a new file of the queue, named so that names sort by age.
fn enqueue(dir: &Path, report: &[u8]) -> Result<(), UploadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UploadError::Queue { path, source }
    };
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .map_err(io(dir))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{nanos:024}-{seq:06}-{}.json", std::process::id()));
    write_atomic(&path, report, 0o600, Overwrite::Replace).map_err(io(&path))
}

/// The queued files, oldest first (temporaries and other names left alone).
fn queued(dir: &Path) -> Result<Vec<PathBuf>, UploadError> {
    let io = |source| UploadError::Queue {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".json")
            && name.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && entry.file_type().map_err(io)?.is_file()
        {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Removes the oldest files past `max`; returns how many.
fn trim(dir: &Path, max: usize) -> Result<usize, UploadError> {
    let files = queued(dir)?;
    let over = files.len().saturating_sub(max);
    for file in &files[..over] {
        std::fs::remove_file(file).map_err(|source| UploadError::Queue {
            path: file.clone(),
            source,
        })?;
    }
    Ok(over)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_keeps_the_newest_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = dir.path().join(QUEUE_DIR);
        for i in 0..70 {
            enqueue(&q, format!("{{\"n\":{i}}}").as_bytes()).expect("enqueue");
        }
        assert_eq!(trim(&q, MAX_QUEUED).expect("trim"), 6);
        let files = queued(&q).expect("list");
        assert_eq!(files.len(), MAX_QUEUED);
        let first = std::fs::read_to_string(&files[0]).expect("read");
        let last = std::fs::read_to_string(&files[MAX_QUEUED - 1]).expect("read");
        assert_eq!(first, "{\"n\":6}");
        assert_eq!(last, "{\"n\":69}");
    }
}
