//! `POST /v1/run` on the listener: a pushed run.
//!
//! An administrator's `tenet-agent push` connects with its **admin key** as the TLS
//! client key and posts a run request signed by that same key (the bytes as the body,
//! the signatures in the `tenet-signature` header). The listener:
//!
//! 1. takes the member's newest verified root: the agent's `trust.toml` in
//!    `[run] agent_state` if it belongs to this deployment and is not older than
//!    `trusted_root`, else `trusted_root` itself (held in memory, read and checked again
//!    only when the file changes, module `trusted`; the handshake already refused
//!    keys that are neither admins nor enrolled members);
//! 2. refuses a TLS peer that is not an admin key of that root before reading any body
//!    (403, `not_admin_peer`);
//! 3. reads at most [`MAX_RUNREQ_BYTES`] (413 beyond) within `header_read_timeout`;
//! 4. verifies the request with [`tenet_keys::runreq::verify`] (signatures over the raw
//!    bytes, scope, lifetime, clock skew, deployment, target, peer = signer) and records
//!    its nonce in `STATE/runreq-nonces.log` **before** anything runs, so a restart
//!    does not reopen the window (a corrupted cache refuses every request). The cache
//!    is read once, kept in memory, and each nonce appended as one line
//!    ([`ReplayCache`]: monotonic expiry, a quota per admin key, compaction);
//! 5. starts `AGENT run --json --config AGENT_CONFIG [--dry-run] [--class=C]...` (in its
//!    own process group, or as a transient systemd unit: module `launch`) and streams
//!    its JSON lines back as they come (HTTP/1.1 chunked), framed by an `accepted` line
//!    first and an `end` line last.
//!
//! One pushed run at a time: a request accepted while a pushed run is going is
//! **attached** to it (`busy` line naming its pid and start, then the rest of that run's
//! lines and its `end`); a request accepted while another run holds the agent's sync
//! lock (a `run` of the timer or an operator, from its start to its end) or run lock
//! (`event`, `watch`, `apply`) gets a `busy` line naming the holder, then `busy_end` when
//! the lock is free; neither starts a second run. Once that lock is free, the agent's
//! `STATE/last-run.json` (written by every `tenet-agent run` before it lets go of the
//! lock) is streamed as an `attached_summary` line before `busy_end`, only if its `pid`
//! and `started` are the ones the `busy` line named. A pushed run that outlives
//! `[run] timeout` is killed with its process group. `heartbeat` lines keep a quiet run's
//! connection from the listener's idle timeout.
//!
//! Wire lines (JSON, one per line): `{"type":"refused","reason":CODE,"message":...}` (with
//! a 4xx status); `{"type":"accepted",...}`; the agent's own lines (`promise`, `warning`,
//! `summary`); `{"type":"heartbeat"}`; `{"type":"busy",...}`, `{"type":"busy_end",...}`;
//! `{"type":"attached_summary",...}` (the foreign run's summary object: counts, `pid`,
//! `started`, `ended`, `exit_code`, `error`);
//! `{"type":"end","exit_code":N,...}`.

use std::convert::Infallible;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tenet_keys::document::MAX_RUNREQ_BYTES;
use tenet_keys::key::Role;
use tenet_keys::runreq::{
    self, Accepted, ReplayCache, RunRequestError, SIGNATURE_HEADER, Verifier,
};
use tenet_keys::{KeyId, Root, Time};
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

use crate::body::Body;
use crate::metrics::{Metrics, RunEnd};
use crate::shared::Shared;
use crate::shared::runs::Current;

/// The replay cache's file name in the state directory.
pub const NONCE_FILE: &str = "runreq-nonces.log";
/// The whole-file replay cache of earlier versions, taken over once into [`NONCE_FILE`].
const LEGACY_NONCE_FILE: &str = "runreq-nonces.toml";
/// The agent's run lock in its state directory.
const LOCK_FILE: &str = "run.lock";

/// The lock an agent `run` holds from its start to its end, talking to the master
/// included (it takes the run lock only to commit and converge).
const SYNC_LOCK_FILE: &str = "sync.lock";
/// Lines buffered for one receiver before the agent's output waits (origin) or a slow
/// attached receiver skips some (attached).
const LINES_BUFFERED: usize = 1024;
/// The agent's summary of its last run in its state directory.
const LAST_RUN_FILE: &str = "last-run.json";
/// Largest `last-run.json` reported (a summary is a few hundred bytes).
const MAX_LAST_RUN: u64 = 16 * 1024;
/// The stderr kept for the `end` line.
const STDERR_TAIL: usize = 2048;

/// Answers `POST /v1/run` from `peer`.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    peer: KeyId,
    req: Request<Incoming>,
) -> Response<Body> {
    let root = match current_root(shared).await {
        Ok(r) => r,
        Err(message) => {
            warn!(%message, "cannot read the trusted root for a run request");
            return refused(
                &shared.metrics,
                StatusCode::SERVICE_UNAVAILABLE,
                "no_root",
                &message,
            );
        }
    };
    if !root.has_role_key(Role::Admin, &peer) {
        info!(%peer, root_version = root.version, "run request from a key that is not an admin key");
        return refused(
            &shared.metrics,
            StatusCode::FORBIDDEN,
            "not_admin_peer",
            &format!(
                "client key {peer} is not an admin key of root version {}",
                root.version
            ),
        );
    }
    let signatures = req
        .headers()
        .get(SIGNATURE_HEADER)
        .map(|v| v.to_str().unwrap_or("\u{0}").to_string())
        .unwrap_or_default();
    let bytes = match read_body(shared, req.into_body()).await {
        Ok(b) => b,
        Err(BodyProblem::TooLarge(size)) => {
            return refusal(
                &shared.metrics,
                &RunRequestError::TooLarge {
                    size,
                    max: MAX_RUNREQ_BYTES,
                },
            );
        }
        Err(BodyProblem::Failed(message)) => {
            return refused(&shared.metrics, StatusCode::BAD_REQUEST, "body", &message);
        }
    };
    let shared2 = shared.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let signatures = runreq::parse_signature_header(&signatures).map_err(Refusal::Request)?;
        check_and_record(&shared2, &root, peer, &bytes, &signatures)
    })
    .await;
    let accepted = match checked {
        Ok(Ok(a)) => a,
        Ok(Err(Refusal::Request(e))) => {
            info!(%peer, reason = e.code(), error = %e, "run request refused");
            return refusal(&shared.metrics, &e);
        }
        Ok(Err(Refusal::Cache(message))) => {
            warn!(%message, "run request refused: the replay cache is unusable");
            return refused(
                &shared.metrics,
                StatusCode::SERVICE_UNAVAILABLE,
                "replay_cache",
                &message,
            );
        }
        Err(e) => {
            return refused(
                &shared.metrics,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &format!("checking the request failed: {e}"),
            );
        }
    };
    info!(
        signer = %peer,
        nonce = %accepted.request.nonce,
        dry_run = accepted.request.dry_run,
        classes = ?accepted.request.classes,
        "run request accepted"
    );
    shared.metrics.run_accepted();
    start_or_attach(shared, peer, accepted)
}

enum Refusal {
    Request(RunRequestError),
    Cache(String),
}

fn check_and_record(
    shared: &Shared,
    root: &Root,
    peer: KeyId,
    bytes: &[u8],
    signatures: &[tenet_keys::sig::SignatureEntry],
) -> Result<Accepted, Refusal> {
    let mut guard = shared
        .runs
        .nonces
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let seen = match &mut *guard {
        Some(seen) => seen,
        None => {
            let state = &shared.config.state_dir;
            let opened = ReplayCache::open(
                &state.join(NONCE_FILE),
                Some(&state.join(LEGACY_NONCE_FILE)),
            )
            .map_err(|e| Refusal::Cache(tenet_keys::error_chain(&e)))?;
            guard.insert(opened)
        }
    };
    let v = Verifier {
        root,
        member: &shared.config.member,
        peer: Some(peer),
        now: Time::from_system(SystemTime::now()),
        max_skew: shared.config.run.max_skew,
    };
    let accepted = runreq::verify(&v, bytes, signatures, seen).map_err(Refusal::Request)?;
    // Persisted before the run starts: a crash after this never accepts the nonce again.
    if let Err(e) = seen.persist() {
        // Read the file again next time rather than trust what memory holds.
        *guard = None;
        return Err(Refusal::Cache(tenet_keys::error_chain(&e)));
    }
    Ok(accepted)
}

/// The newest root this member verified (see [`crate::trusted`]): the agent's trust
/// state if it is this deployment's and not older than the daemon's anchor, else the
/// anchor. Read again only if the file changed since it was last read and checked.
async fn current_root(shared: &Arc<Shared>) -> Result<Root, String> {
    let keys = shared.keys.clone();
    tokio::task::spawn_blocking(move || {
        keys.refresh();
        (*keys.root()).clone()
    })
    .await
    .map_err(|e| format!("reading the trusted root failed: {e}"))
}

enum BodyProblem {
    TooLarge(u64),
    Failed(String),
}

async fn read_body(shared: &Shared, mut body: Incoming) -> Result<Vec<u8>, BodyProblem> {
    let read = async {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyProblem::Failed(format!("reading the body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                let size = (out.len() + data.len()) as u64;
                if size > MAX_RUNREQ_BYTES {
                    return Err(BodyProblem::TooLarge(size));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    };
    tokio::time::timeout(shared.config.limits.header_read_timeout, read)
        .await
        .map_err(|_| BodyProblem::Failed("the body did not arrive in time".to_string()))?
}

/// Starts the agent, or reports the run already going.
fn start_or_attach(shared: &Arc<Shared>, signer: KeyId, accepted: Accepted) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(LINES_BUFFERED);
    let mut current = shared
        .runs
        .current
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(run) = current.as_ref() {
        let lines = run.lines.subscribe();
        let busy = line(&json!({
            "type": "busy",
            "attached": true,
            "pid": run.pid,
            "started": run.started.to_string(),
            "signer": run.signer.to_string(),
            "message": format!(
                "a pushed run is in progress (pid {}, started {}); this request is reporting it instead of starting another",
                run.pid, run.started
            ),
        }));
        tokio::spawn(forward_attached(shared.clone(), busy, lines, tx));
        return streaming(rx);
    }
    // A run holds the sync lock throughout (its note names it as its summary will);
    // `event`, `watch` and `apply` hold only the run lock.
    let state = &shared.config.run.agent_state;
    if let Some((holder, file)) = held_by_another(&state.join(SYNC_LOCK_FILE))
        .or_else(|| held_by_another(&state.join(LOCK_FILE)))
    {
        drop(current);
        tokio::spawn(wait_for_foreign_run(shared.clone(), holder, file, tx));
        return streaming(rx);
    }
    let started = Time::from_system(SystemTime::now());
    let mut child = match spawn_agent(shared, &accepted) {
        Ok(c) => c,
        Err(e) => {
            drop(current);
            let message = format!("cannot start {}: {e}", shared.config.run.agent.display());
            warn!(%message, "pushed run not started");
            return refused(
                &shared.metrics,
                StatusCode::INTERNAL_SERVER_ERROR,
                "spawn",
                &message,
            );
        }
    };
    let pid = child.id();
    let (lines, _) = broadcast::channel(LINES_BUFFERED);
    *current = Some(Current {
        pid,
        started,
        signer,
        lines: lines.clone(),
    });
    drop(current);
    info!(pid, "pushed run started");
    let first = line(&json!({
        "type": "accepted",
        "member": shared.config.member,
        "nonce": accepted.request.nonce.to_string(),
        "dry_run": accepted.request.dry_run,
        "classes": accepted.request.classes,
        "pid": pid,
        "started": started.to_string(),
    }));
    let _ = tx.try_send(first);
    let (from_agent, agent_lines) = mpsc::channel::<Bytes>(LINES_BUFFERED);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let timeout = shared.config.run.timeout;
    let shared_for_thread = shared.clone();
    let broadcast_for_thread = lines;
    std::thread::spawn(move || {
        let end = supervise(
            &shared_for_thread.metrics,
            child,
            stdout,
            stderr,
            &from_agent,
            &broadcast_for_thread,
            timeout,
        );
        // The end line goes to the origin and every attached request.
        let _ = from_agent.blocking_send(end.clone());
        let _ = broadcast_for_thread.send(end);
        *shared_for_thread
            .runs
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        info!(pid, "pushed run ended");
    });
    tokio::spawn(forward_origin(shared.clone(), agent_lines, tx));
    streaming(rx)
}

/// Whether another process holds the agent's run lock: its note and the open file.
fn held_by_another(path: &Path) -> Option<(String, File)> {
    let mut file = OpenOptions::new().read(true).open(path).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => {
            let mut note = String::new();
            let _ = file.read_to_string(&mut note);
            let note = note.split_whitespace().collect::<Vec<_>>().join(" ");
            Some((note, file))
        }
        Err(TryLockError::Error(_)) => None,
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "policyd starts the agent for a pushed run here and nowhere else: fixed argv, no shell, own process group"
)]
fn spawn_agent(shared: &Shared, accepted: &Accepted) -> std::io::Result<Child> {
    let (program, args) = crate::launch::agent_argv(
        &shared.config.run,
        shared.run_start,
        &accepted.request.nonce.to_string(),
        accepted.request.dry_run,
        &accepted.request.classes,
    );
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd.spawn()
}

/// Reads the agent's lines until it exits or the timeout kills it; returns the `end` line.
fn supervise(
    metrics: &Metrics,
    mut child: Child,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    origin: &mpsc::Sender<Bytes>,
    lines: &broadcast::Sender<Bytes>,
    timeout: Duration,
) -> Bytes {
    let start = Instant::now();
    let pid = child.id();
    let err_tail = std::thread::spawn(move || {
        let mut tail = Vec::new();
        if let Some(mut e) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = e.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL * 2 {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
        tail
    });
    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let killer = {
        let timed_out = timed_out.clone();
        std::thread::spawn(move || {
            if done_rx.recv_timeout(timeout) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(raw),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        })
    };
    let mut origin_open = true;
    if let Some(out) = stdout {
        for l in BufReader::new(out).split(b'\n') {
            let Ok(mut l) = l else { break };
            if l.is_empty() {
                continue;
            }
            l.push(b'\n');
            let bytes = Bytes::from(l);
            if origin_open && origin.blocking_send(bytes.clone()).is_err() {
                // The caller went away; the run goes on and attached callers still see it.
                origin_open = false;
            }
            let _ = lines.send(bytes);
        }
    }
    let status = child.wait();
    let _ = done_tx.send(());
    let _ = killer.join();
    let tail = err_tail.join().unwrap_or_default();
    let tail = String::from_utf8_lossy(&tail);
    let tail: String = tail
        .chars()
        .rev()
        .take(STDERR_TAIL)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    use std::os::unix::process::ExitStatusExt as _;
    let (code, signal) = match &status {
        Ok(s) => (s.code(), s.signal()),
        Err(_) => (None, None),
    };
    metrics.run_finished(RunEnd::from_code(code));
    line(&json!({
        "type": "end",
        "pid": pid,
        "exit_code": code,
        "signal": signal,
        "timed_out": timed_out.load(std::sync::atomic::Ordering::SeqCst),
        "duration_ms": u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        "stderr": tail.trim(),
    }))
}

/// The origin's stream: the agent's lines, heartbeats while it is quiet.
async fn forward_origin(
    shared: Arc<Shared>,
    mut from: mpsc::Receiver<Bytes>,
    to: mpsc::Sender<Bytes>,
) {
    let mut beat = heartbeat(&shared);
    loop {
        tokio::select! {
            next = from.recv() => match next {
                Some(l) => if to.send(l).await.is_err() { drain(from).await; return; },
                None => return,
            },
            _ = beat.tick() => {
                if to.send(line(&json!({"type": "heartbeat"}))).await.is_err() {
                    drain(from).await;
                    return;
                }
            }
        }
    }
}

/// Keeps reading so the agent's output never waits on a caller that left.
async fn drain(mut from: mpsc::Receiver<Bytes>) {
    while from.recv().await.is_some() {}
}

/// An attached request's stream: `busy`, then the run's lines from now on, its `end`.
async fn forward_attached(
    shared: Arc<Shared>,
    busy: Bytes,
    mut from: broadcast::Receiver<Bytes>,
    to: mpsc::Sender<Bytes>,
) {
    if to.send(busy).await.is_err() {
        return;
    }
    let mut beat = heartbeat(&shared);
    loop {
        tokio::select! {
            next = from.recv() => {
                let l = match next {
                    Ok(l) => l,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        line(&json!({"type": "lagged", "skipped": n}))
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        // Subscribed just as the run ended: its end line went before.
                        let _ = to.send(line(&json!({
                            "type": "busy_end",
                            "ended": true,
                            "message": "the run in progress ended; no second run was started",
                        }))).await;
                        return;
                    }
                };
                let last = is_end(&l);
                if to.send(l).await.is_err() || last {
                    return;
                }
            }
            _ = beat.tick() => {
                if to.send(line(&json!({"type": "heartbeat"}))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Another process holds the run lock: say who, wait until it is free, report the
/// run it held if it left its summary (`attached_summary`), say so (`busy_end`).
async fn wait_for_foreign_run(
    shared: Arc<Shared>,
    holder: String,
    file: File,
    to: mpsc::Sender<Bytes>,
) {
    let named = parse_holder(&holder);
    let busy = line(&json!({
        "type": "busy",
        "attached": false,
        "holder": holder,
        "pid": named.map(|(pid, _)| pid),
        "started": named.map(|(_, started)| started),
        "message": format!("a run is in progress ({holder}); this request waits for its end instead of starting another"),
    }));
    if to.send(busy).await.is_err() {
        return;
    }
    let start = Instant::now();
    let wait = tokio::task::spawn_blocking(move || {
        // Blocks until the holder exits; released at once.
        let locked = file.lock();
        drop(file);
        locked
    });
    tokio::pin!(wait);
    let mut beat = heartbeat(&shared);
    let deadline = tokio::time::sleep(shared.config.run.timeout);
    tokio::pin!(deadline);
    let ended = loop {
        tokio::select! {
            _ = &mut wait => break true,
            _ = beat.tick() => {
                if to.send(line(&json!({"type": "heartbeat"}))).await.is_err() {
                    return;
                }
            }
            () = &mut deadline => break false,
        }
    };
    let waited = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut reported = false;
    if ended && let Some((pid, started)) = named {
        let path = shared.config.run.agent_state.join(LAST_RUN_FILE);
        let found = tokio::task::spawn_blocking(move || last_run_of(&path, pid, started))
            .await
            .ok()
            .flatten();
        if let Some(mut summary) = found {
            summary.insert("type".into(), "attached_summary".into());
            summary.insert(
                "message".into(),
                format!("the run in progress (pid {pid}) ended; this is its summary").into(),
            );
            reported = to
                .send(line(&serde_json::Value::Object(summary)))
                .await
                .is_ok();
        }
    }
    let _ = to
        .send(line(&json!({
            "type": "busy_end",
            "ended": ended,
            "reported": reported,
            "waited_ms": waited,
            "message": if ended { "the run in progress ended; no second run was started" } else { "the run in progress is still going after the run timeout" },
        })))
        .await;
}

/// The pid and start (unix seconds) in a run lock's note (`pid N WHAT started at unix
/// time T`), if it has them.
fn parse_holder(note: &str) -> Option<(u32, u64)> {
    let words: Vec<&str> = note.split_whitespace().collect();
    match words.as_slice() {
        ["pid", pid, .., "unix", "time", started] => {
            Some((pid.parse().ok()?, started.parse().ok()?))
        }
        _ => None,
    }
}

/// The agent's `last-run.json` as an object, if it is at most [`MAX_LAST_RUN`] bytes
/// and names the run `pid` started at `started` (an older run's summary never passes
/// for this one's).
fn last_run_of(
    path: &Path,
    pid: u32,
    started: u64,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut bytes = Vec::new();
    File::open(path)
        .ok()?
        .take(MAX_LAST_RUN + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_LAST_RUN {
        warn!(path = %path.display(), "the agent's last-run summary is too large; not reported");
        return None;
    }
    let serde_json::Value::Object(v) = serde_json::from_slice(&bytes).ok()? else {
        return None;
    };
    let matches = v.get("pid").and_then(serde_json::Value::as_u64) == Some(u64::from(pid))
        && v.get("started").and_then(serde_json::Value::as_u64) == Some(started);
    matches.then_some(v)
}

fn is_end(l: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(l).is_ok_and(|v| v["type"] == "end")
}

fn heartbeat(shared: &Shared) -> tokio::time::Interval {
    let period = (shared.config.limits.idle_timeout / 3).max(Duration::from_millis(100));
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

fn line(value: &serde_json::Value) -> Bytes {
    let mut s = value.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn streaming(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::new(ChannelBody(rx)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/jsonl"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn refusal(metrics: &Metrics, e: &RunRequestError) -> Response<Body> {
    let status = match e {
        RunRequestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        RunRequestError::Malformed { .. }
        | RunRequestError::Field { .. }
        | RunRequestError::SignatureHeader { .. } => StatusCode::BAD_REQUEST,
        RunRequestError::ReplayCacheFull { .. } | RunRequestError::ReplayQuota { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::FORBIDDEN,
    };
    refused(metrics, status, e.code(), &tenet_keys::error_chain(e))
}

/// A `refused` line, counted in `tenet_policyd_runs_refused_total` under `reason`.
fn refused(
    metrics: &Metrics,
    status: StatusCode,
    reason: &'static str,
    message: &str,
) -> Response<Body> {
    metrics.run_refused(reason);
    let body = line(&json!({"type": "refused", "reason": reason, "message": message}));
    let mut r = Response::new(Body::new(http_body_util::Full::new(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/jsonl"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A response body fed line by line from a channel; it ends when the sender is dropped.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|l| l.map(|b| Ok(Frame::data(b))))
    }
}

/// The path of the replay cache of a daemon whose state directory is `state_dir`.
pub fn nonce_file(state_dir: &Path) -> PathBuf {
    state_dir.join(NONCE_FILE)
}
