//! `tenet-agent push`: ask members to converge now, concurrently, and report how each
//! run went.
//!
//! The member list comes from this machine's **verified cached bundle** (the one
//! `tenet-agent run` last accepted): the manifest's inventory gives each member's node
//! key id (pinned for the TLS connection, so only that member can answer), the policy
//! tree's cluster config its boot address. `agent.toml`'s `[push]` table may override
//! the port (default 8740) and give per-member addresses. A member missing from the
//! inventory (never enrolled, or revoked) is not contacted and is reported as refused.
//!
//! For each member, within `--parallel` at a time: a run request for that member is
//! made and signed with the administrator's key ([`tenet_keys::runreq`]), posted to
//! `POST /v1/run` on its listener over mutual TLS with the same key as the client
//! certificate, and the JSON lines the member streams back (see `tenet_policyd::runreq`)
//! are passed to a [`PushReporter`] as they arrive. Each member ends as one
//! [`MemberOutcome`]; [`PushReport::exit`] folds them into the exit code.
//!
//! The library never prints: [`PushHuman`] and [`PushJson`] write to the writer they are
//! given. Every string a member or the master supplied goes through
//! [`printable`] before [`PushHuman`] (or [`table`]) writes it, so a member cannot put
//! escape sequences on the administrator's terminal. JSON output is for programs: it
//! escapes C0 controls (and so every ESC), but DEL, C1 controls and bidi marks pass as
//! they came.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tenet_keys::runreq::{self, RunMode, RunRequest, SIGNATURE_HEADER};
use tenet_keys::tls::{self, Identity, Refusal, Subject};
use tenet_keys::{DeploymentId, KeyId, SecretKey, Time};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsConnector;

use crate::config::{Config, ConfigError};
use crate::escape::{printable, printable_lines};
use crate::exit::ExitCode;
use crate::report::Collect;
use crate::sync::trusted::{BundleError, cached_bundle};

/// How long a request stays valid after it is made (members refuse more than 15
/// minutes).
pub const REQUEST_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// Longest line read from a member.
const MAX_LINE: usize = 1024 * 1024;
/// Largest refusal body read.
const MAX_REFUSAL: usize = 64 * 1024;

/// Which members to push to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every member of the cached bundle's inventory.
    All,
    /// These members.
    Members(Vec<String>),
}

/// What `push` needs.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// This machine's agent configuration (state directory, `[push]`).
    pub config: PathBuf,
    /// The members.
    pub targets: Targets,
    /// Apply or dry run.
    pub mode: RunMode,
    /// Classes set for the runs.
    pub classes: Vec<String>,
    /// Members contacted at once.
    pub parallel: usize,
    /// The limit on each member's whole run, connection included.
    pub timeout: Duration,
    /// The administrator's key; else `[push] key`.
    pub key: Option<PathBuf>,
}

/// Why `push` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Neither `--key` nor `[push] key`.
    #[error("no administrator key: give --key or set [push] key in {}", config.display())]
    NoKey {
        /// The configuration file.
        config: PathBuf,
    },
    /// The key could not be read.
    #[error("cannot read the administrator key {}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: tenet_keys::KeyError,
    },
    /// No verified cached bundle to read members from.
    #[error("cannot read the member list from the cached bundle")]
    Bundle(#[source] BundleError),
    /// The cached tree does not load.
    #[error("the cached policy tree {} does not load ({count} errors)", tree.display())]
    Policy {
        /// The tree.
        tree: PathBuf,
        /// Errors.
        count: usize,
    },
    /// Members named on the command line that no run could be asked of: none given.
    #[error("no members: name some or give --all")]
    NoTargets,
    /// The I/O runtime or TLS identity could not be made.
    #[error("cannot start: {0}")]
    Setup(String),
}

impl PushError {
    /// The exit code this error ends `push` with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) | Self::Policy { .. } => ExitCode::InvalidPolicy,
            Self::NoKey { .. } | Self::NoTargets => ExitCode::Usage,
            Self::Bundle(e) => e.exit_code(),
            _ => ExitCode::Environment,
        }
    }
}

/// How one member's push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOutcome {
    /// The run finished and every promise was kept or repaired (or would be).
    Ok,
    /// The run finished with failed or blocked promises, or the agent failed.
    Failed {
        /// Why.
        reason: String,
    },
    /// No answer: connection refused or timed out, or the stream broke.
    Unreachable {
        /// Why.
        reason: String,
    },
    /// The member refused the request (or was not asked: not in the inventory).
    Refused {
        /// The member's reason code (`expired`, `member_out_of_scope`, ...).
        code: String,
        /// Its message.
        message: String,
    },
    /// Another run was in progress; this request did not start one.
    Busy {
        /// What the member said.
        message: String,
    },
}

impl MemberOutcome {
    /// The word printed for it.
    pub fn word(&self) -> &'static str {
        match self {
            MemberOutcome::Ok => "ok",
            MemberOutcome::Failed { .. } => "failed",
            MemberOutcome::Unreachable { .. } => "unreachable",
            MemberOutcome::Refused { .. } => "refused",
            MemberOutcome::Busy { .. } => "busy",
        }
    }

    /// The reason, if any.
    pub fn detail(&self) -> String {
        match self {
            MemberOutcome::Ok => String::new(),
            MemberOutcome::Failed { reason } | MemberOutcome::Unreachable { reason } => {
                reason.clone()
            }
            MemberOutcome::Refused { code, message } => format!("{code}: {message}"),
            MemberOutcome::Busy { message } => message.clone(),
        }
    }
}

/// One member's result.
#[derive(Debug, Clone)]
pub struct MemberReport {
    /// The member.
    pub member: String,
    /// Where it was contacted.
    pub address: Option<String>,
    /// How it ended.
    pub outcome: MemberOutcome,
    /// Promises repaired (or, in a dry run, that would be), if the run reported.
    pub changed: Option<u64>,
    /// Promises failed or blocked, if the run reported.
    pub failed: Option<u64>,
    /// From the start of the request to the end of the stream.
    pub duration: Duration,
    /// Whether this request reported another pushed run already in progress.
    pub attached: bool,
    /// Set when this request reported a run another process held (a timer run, an
    /// operator's `tenet-agent run`) by that run's summary: its pid.
    pub reported_existing: Option<u64>,
}

/// Every member's result, sorted by member.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The results.
    pub members: Vec<MemberReport>,
    /// The cached bundle's serial the member list came from.
    pub serial: u64,
    /// The whole push.
    pub duration: Duration,
}

/// What a push's results mean for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushExit {
    /// Every member ran and every run was ok.
    AllOk,
    /// Every member ran; some run failed.
    SomeFailed,
    /// Some member was unreachable, refused, or busy (its run did not happen).
    SomeNotRun,
}

impl PushReport {
    /// Some member not run wins over some run failed.
    pub fn exit(&self) -> PushExit {
        let not_run = self.members.iter().any(|m| {
            matches!(
                m.outcome,
                MemberOutcome::Unreachable { .. }
                    | MemberOutcome::Refused { .. }
                    | MemberOutcome::Busy { .. }
            )
        });
        if not_run {
            PushExit::SomeNotRun
        } else if self
            .members
            .iter()
            .any(|m| matches!(m.outcome, MemberOutcome::Failed { .. }))
        {
            PushExit::SomeFailed
        } else {
            PushExit::AllOk
        }
    }

    /// The exit code: 9 when some member's run did not happen, else 1 when some run
    /// failed, else 0.
    pub fn exit_code(&self) -> ExitCode {
        match self.exit() {
            PushExit::AllOk => ExitCode::Success,
            PushExit::SomeFailed => ExitCode::PromisesFailed,
            PushExit::SomeNotRun => ExitCode::PushIncomplete,
        }
    }

    /// How many members ended with this outcome word.
    pub fn count(&self, word: &str) -> usize {
        self.members
            .iter()
            .filter(|m| m.outcome.word() == word)
            .count()
    }
}

/// Receives a push's progress as it happens.
pub trait PushReporter {
    /// The members about to be contacted.
    fn start(&mut self, members: &[String], serial: u64);
    /// Something to read; the push goes on.
    fn warning(&mut self, message: &str);
    /// A line a member streamed.
    fn event(&mut self, member: &str, event: &Value);
    /// One member is done.
    fn finished(&mut self, report: &MemberReport);
    /// Every member is done.
    fn done(&mut self, report: &PushReport);
}

struct Target {
    member: String,
    keyid: Option<KeyId>,
    address: Result<String, String>,
}

struct Ctx {
    deployment: DeploymentId,
    key: SecretKey,
    identity: Identity,
    mode: RunMode,
    classes: Vec<String>,
    timeout: Duration,
    connect_timeout: Duration,
}

enum Msg {
    Event(String, Value),
    Done(MemberReport),
}

/// Pushes a run to the targets, reporting to `reporter`.
pub fn push(opts: &PushOptions, reporter: &mut dyn PushReporter) -> Result<PushReport, PushError> {
    let start = Instant::now();
    let config = Config::load(&opts.config)?;
    let key_path = opts
        .key
        .clone()
        .or_else(|| config.push.key.clone())
        .ok_or_else(|| PushError::NoKey {
            config: opts.config.clone(),
        })?;
    let key = SecretKey::read(&key_path).map_err(|source| PushError::Key {
        path: key_path.clone(),
        source,
    })?;
    let mut warnings = Collect::default();
    let (state, manifest, files) =
        cached_bundle(&config, &mut warnings).map_err(PushError::Bundle)?;
    let tree = files.tree();
    for w in &warnings.warnings {
        reporter.warning(w);
    }
    let root = state.root().root();
    if !root.has_role_key(tenet_keys::key::Role::Admin, &key.key_id()) {
        reporter.warning(&format!(
            "key {} is not an admin key of root version {} (members with a newer root may know it)",
            key.key_id(),
            root.version
        ));
    }
    if root.roles.admin.threshold > 1 {
        reporter.warning(&format!(
            "the admin role of root version {} needs {} signatures on a run request; push signs with one key, so members will refuse it (threshold)",
            root.version, root.roles.admin.threshold
        ));
    }
    let policy = tenet_policies::load_from(&tree, &files).map_err(|d| PushError::Policy {
        tree: tree.clone(),
        count: d.error_count(),
    })?;
    let inventory: BTreeMap<&str, KeyId> = manifest
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.keyid))
        .collect();
    let names: Vec<String> = match &opts.targets {
        Targets::All => inventory.keys().map(|s| s.to_string()).collect(),
        Targets::Members(m) => {
            let set: BTreeSet<&String> = m.iter().collect();
            set.into_iter().cloned().collect()
        }
    };
    if names.is_empty() {
        return Err(PushError::NoTargets);
    }
    let targets: Vec<Target> = names
        .iter()
        .map(|name| {
            let address = match config.push.addresses.get(name) {
                Some(a) => Ok(a.clone()),
                None => policy
                    .cluster
                    .members
                    .iter()
                    .find(|m| &m.name == name)
                    .and_then(|m| {
                        m.addresses
                            .iter()
                            .find(|a| a.role == tenet_policies::model::AddressRole::Boot)
                    })
                    .map(|a| SocketAddr::new(a.ip, config.push.port).to_string())
                    .ok_or_else(|| {
                        format!("member {name} has no boot address in the cluster config")
                    }),
            };
            Target {
                member: name.clone(),
                keyid: inventory.get(name.as_str()).copied(),
                address,
            }
        })
        .collect();

    let identity = Identity::new(&key, Subject::Admin(key.key_id().to_string()))
        .map_err(|e| PushError::Setup(tenet_keys::error_chain(&e)))?;
    let ctx = Arc::new(Ctx {
        deployment: root.deployment,
        key,
        identity,
        mode: opts.mode,
        classes: opts.classes.clone(),
        timeout: opts.timeout,
        connect_timeout: config.connect_timeout,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| PushError::Setup(format!("the I/O runtime: {e}")))?;
    reporter.start(&names, manifest.serial);
    let parallel = opts.parallel.max(1);
    let serial = manifest.serial;
    let events: &mut dyn PushReporter = &mut *reporter;
    let mut members = runtime.block_on(async move {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let permits = Arc::new(Semaphore::new(parallel));
        for target in targets {
            let tx = tx.clone();
            let ctx = ctx.clone();
            let permits = permits.clone();
            tokio::spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                let report = push_one(&ctx, &target, &tx).await;
                let _ = tx.send(Msg::Done(report));
            });
        }
        drop(tx);
        let mut done = Vec::new();
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Event(member, value) => events.event(&member, &value),
                Msg::Done(report) => {
                    events.finished(&report);
                    done.push(report);
                }
            }
        }
        done
    });
    members.sort_by(|a, b| a.member.cmp(&b.member));
    let report = PushReport {
        members,
        serial,
        duration: start.elapsed(),
    };
    reporter.done(&report);
    Ok(report)
}

/// What a member's stream said.
#[derive(Default)]
struct Seen {
    accepted: bool,
    changed: Option<u64>,
    failed: Option<u64>,
    busy: Option<(String, bool)>,
    busy_end: bool,
    /// The foreign run's summary (`attached_summary`).
    attached_summary: Option<Value>,
    end: Option<Value>,
}

impl Seen {
    fn take(&mut self, v: &Value) {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        match v["type"].as_str() {
            Some("accepted") => self.accepted = true,
            Some("summary") => {
                self.changed = Some(n("repaired") + n("would_repair"));
                self.failed = Some(n("failed") + n("blocked"));
            }
            Some("busy") => {
                let message = v["message"].as_str().unwrap_or("a run is in progress");
                self.busy = Some((message.to_string(), v["attached"] == true));
            }
            Some("busy_end") => self.busy_end = true,
            Some("attached_summary") => {
                self.changed = Some(n("repaired") + n("would_repair"));
                self.failed = Some(n("failed") + n("blocked"));
                self.attached_summary = Some(v.clone());
            }
            Some("end") => self.end = Some(v.clone()),
            _ => {}
        }
    }

    fn outcome(&self) -> MemberOutcome {
        if let Some(end) = &self.end {
            return match end["exit_code"].as_i64() {
                Some(0) => MemberOutcome::Ok,
                Some(1) => MemberOutcome::Failed {
                    reason: "promises failed or were blocked".to_string(),
                },
                Some(6) => MemberOutcome::Busy {
                    message: "another run took the run lock first; this run did not start"
                        .to_string(),
                },
                Some(code @ 10..=12) => MemberOutcome::Failed {
                    reason: degraded(code),
                },
                Some(code) => MemberOutcome::Failed {
                    reason: format!(
                        "the agent exited with status {code}: {}",
                        last_line(end["stderr"].as_str().unwrap_or(""))
                    ),
                },
                None if end["timed_out"] == true => MemberOutcome::Failed {
                    reason: "the run outlived the member's run timeout and was killed".to_string(),
                },
                None => MemberOutcome::Failed {
                    reason: format!(
                        "the agent was killed by signal {}",
                        end["signal"].as_i64().unwrap_or(0)
                    ),
                },
            };
        }
        if let Some((message, _)) = &self.busy
            && self.busy_end
        {
            if let Some(s) = &self.attached_summary {
                return match s["exit_code"].as_i64() {
                    Some(0) => MemberOutcome::Ok,
                    Some(1) => MemberOutcome::Failed {
                        reason: "promises failed or were blocked".to_string(),
                    },
                    Some(code @ 10..=12) => MemberOutcome::Failed {
                        reason: degraded(code),
                    },
                    code => MemberOutcome::Failed {
                        reason: format!(
                            "the run exited with status {}: {}",
                            code.map_or_else(|| "unknown".to_string(), |c| c.to_string()),
                            s["error"].as_str().unwrap_or("")
                        ),
                    },
                };
            }
            return MemberOutcome::Busy {
                message: message.clone(),
            };
        }
        MemberOutcome::Unreachable {
            reason: "the connection closed before the run ended".to_string(),
        }
    }
}

/// What a member's run exit code of 10-12 means: it converged, but from a bundle that
/// may not be the master's latest. Not "ok": push says so and exits 1.
fn degraded(code: i64) -> String {
    let why = match code {
        10 => "its master was unreachable; it enforced its cached bundle",
        11 => "it enforces an expired bundle",
        _ => "it has had no fresh timestamp from the master for longer than one lives",
    };
    format!("the run converged, degraded (status {code}): {why}")
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or("")
}

async fn push_one(ctx: &Ctx, target: &Target, tx: &mpsc::UnboundedSender<Msg>) -> MemberReport {
    let start = Instant::now();
    let mut seen = Seen::default();
    let address = target.address.clone().ok();
    let outcome = match (&target.keyid, &target.address) {
        (None, _) => MemberOutcome::Refused {
            code: "not_in_inventory".to_string(),
            message: format!(
                "member {} is not in the inventory of the cached bundle (never enrolled, or revoked); not contacted",
                target.member
            ),
        },
        (Some(_), Err(reason)) => MemberOutcome::Unreachable {
            reason: reason.clone(),
        },
        (Some(keyid), Ok(address)) => {
            let talk = talk(ctx, &target.member, *keyid, address, &mut seen, tx);
            match tokio::time::timeout(ctx.timeout, talk).await {
                Ok(Ok(())) => seen.outcome(),
                Ok(Err(o)) => o,
                Err(_) => MemberOutcome::Unreachable {
                    reason: format!(
                        "no end of the run within {}s (--timeout)",
                        ctx.timeout.as_secs()
                    ),
                },
            }
        }
    };
    MemberReport {
        member: target.member.clone(),
        address,
        changed: seen.changed,
        failed: seen.failed,
        attached: seen.busy.as_ref().is_some_and(|(_, a)| *a),
        reported_existing: seen
            .attached_summary
            .as_ref()
            .filter(|_| seen.end.is_none() && seen.busy_end)
            .map(|s| s["pid"].as_u64().unwrap_or(0)),
        outcome,
        duration: start.elapsed(),
    }
}

/// One member: request, connection, stream. `Err` is an outcome decided early.
async fn talk(
    ctx: &Ctx,
    member: &str,
    keyid: KeyId,
    address: &str,
    seen: &mut Seen,
    tx: &mpsc::UnboundedSender<Msg>,
) -> Result<(), MemberOutcome> {
    let unreachable = |reason: String| MemberOutcome::Unreachable { reason };
    let setup = |reason: String| MemberOutcome::Failed { reason };
    let request = RunRequest::new(
        ctx.deployment,
        member,
        Time::from_system(SystemTime::now()),
        REQUEST_LIFETIME,
        ctx.mode,
        ctx.classes.clone(),
    )
    .map_err(|e| setup(tenet_keys::error_chain(&e)))?;
    let signed =
        runreq::sign(&request, &ctx.key).map_err(|e| setup(tenet_keys::error_chain(&e)))?;
    let mut config = tls::client_config(&ctx.identity, vec![keyid])
        .map_err(|e| setup(tenet_keys::error_chain(&e)))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    let connect = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| unreachable(format!("connect {address}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(Arc::new(config))
            .connect(tls::server_name(), tcp)
            .await
            .map_err(|e| transport(address, "TLS handshake", &e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| transport(address, "HTTP handshake", &e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok::<_, MemberOutcome>(sender)
    };
    let mut sender = tokio::time::timeout(ctx.connect_timeout, connect)
        .await
        .map_err(|_| {
            unreachable(format!(
                "{address}: no connection within {}s",
                ctx.connect_timeout.as_secs()
            ))
        })??;
    let req = Request::post("/v1/run")
        .header("host", tls::SERVER_NAME)
        .header(CONTENT_TYPE, "application/toml")
        .header(
            SIGNATURE_HEADER,
            runreq::signature_header(&signed.signatures),
        )
        .body(Full::new(Bytes::from(signed.bytes)))
        .map_err(|e| setup(format!("the request: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| transport(address, "POST /v1/run", &e))?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| transport(address, "reading the run", &e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(at) = buf.iter().position(|b| *b == b'\n') {
            let l: Vec<u8> = buf.drain(..=at).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&l) else {
                continue;
            };
            if status != StatusCode::OK {
                return Err(refusal(status, &v));
            }
            seen.take(&v);
            let _ = tx.send(Msg::Event(member.to_string(), v));
        }
        let cap = if status == StatusCode::OK {
            MAX_LINE
        } else {
            MAX_REFUSAL
        };
        if buf.len() > cap {
            return Err(unreachable(format!("{address}: a line over {cap} bytes")));
        }
    }
    if status != StatusCode::OK {
        return Err(MemberOutcome::Refused {
            code: format!("http_{}", status.as_u16()),
            message: String::from_utf8_lossy(&buf).trim().to_string(),
        });
    }
    Ok(())
}

fn refusal(status: StatusCode, v: &Value) -> MemberOutcome {
    MemberOutcome::Refused {
        code: v["reason"]
            .as_str()
            .map_or_else(|| format!("http_{}", status.as_u16()), str::to_string),
        message: v["message"].as_str().unwrap_or("").to_string(),
    }
}

/// A transport failure: a member key that is not the inventory's is a refusal (the
/// wrong machine answered), anything else means unreachable.
fn transport(address: &str, what: &str, e: &(dyn std::error::Error + 'static)) -> MemberOutcome {
    match tls::refusal(e) {
        Some(Refusal::ServerNotPinned) => MemberOutcome::Refused {
            code: "member_key_not_pinned".to_string(),
            message: format!(
                "{address} answered with a key that is not this member's key in the inventory"
            ),
        },
        Some(r) => MemberOutcome::Unreachable {
            reason: format!("{address}: {what}: {r}"),
        },
        None => MemberOutcome::Unreachable {
            reason: format!("{address}: {what}: {}", tenet_keys::error_chain(e)),
        },
    }
}

/// Prints for a person: on a terminal a live status line redrawn in place, otherwise
/// one line per member as it starts and ends; then a table.
#[derive(Debug)]
pub struct PushHuman<W> {
    out: W,
    live: bool,
    total: usize,
    done: usize,
    running: BTreeSet<String>,
    started: Instant,
}

impl<W: Write> PushHuman<W> {
    /// A printer writing to `out`; `live` redraws a status line (for a terminal).
    pub fn new(out: W, live: bool) -> Self {
        PushHuman {
            out,
            live,
            total: 0,
            done: 0,
            running: BTreeSet::new(),
            started: Instant::now(),
        }
    }

    fn status_line(&mut self) {
        if !self.live {
            return;
        }
        let names: Vec<Cow<'_, str>> = self.running.iter().map(|n| printable(n)).take(6).collect();
        let more = self.running.len().saturating_sub(names.len());
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let _ = write!(
            self.out,
            "\r\x1b[K[{}/{}] {:.1}s running: {}{tail}",
            self.done,
            self.total,
            self.started.elapsed().as_secs_f64(),
            names.join(", ")
        );
        let _ = self.out.flush();
    }

    fn clear(&mut self) {
        if self.live {
            let _ = write!(self.out, "\r\x1b[K");
        }
    }
}

impl<W: Write> PushReporter for PushHuman<W> {
    fn start(&mut self, members: &[String], serial: u64) {
        self.total = members.len();
        self.started = Instant::now();
        let _ = writeln!(
            self.out,
            "pushing a run to {} members (member list from cached bundle serial {serial})",
            members.len()
        );
        self.status_line();
    }

    fn warning(&mut self, message: &str) {
        self.clear();
        let _ = writeln!(self.out, "warning: {}", printable_lines(message));
        self.status_line();
    }

    fn event(&mut self, member: &str, event: &Value) {
        let member = printable(member);
        match event["type"].as_str() {
            Some("accepted") => {
                self.running.insert(member.to_string());
                if !self.live {
                    let _ = writeln!(
                        self.out,
                        "{member}: run started (pid {})",
                        event["pid"].as_u64().unwrap_or(0)
                    );
                }
            }
            Some("busy") => {
                self.clear();
                let _ = writeln!(
                    self.out,
                    "{member}: {}",
                    printable(event["message"].as_str().unwrap_or("a run is in progress"))
                );
            }
            Some("promise") => {
                let status = event["status"].as_str().unwrap_or("");
                if matches!(status, "failed" | "blocked" | "did_not_converge") {
                    self.clear();
                    let _ = writeln!(
                        self.out,
                        "{member}: {status} {} {}",
                        printable(event["id"].as_str().unwrap_or("")),
                        printable(event["reason"].as_str().unwrap_or(""))
                    );
                }
            }
            _ => {}
        }
        self.status_line();
    }

    fn finished(&mut self, r: &MemberReport) {
        self.done += 1;
        self.running.remove(&r.member);
        self.clear();
        let mut detail = r.outcome.detail();
        if let Some(pid) = r.reported_existing {
            detail = format!("reported an existing run (pid {pid}); {detail}")
                .trim_end_matches("; ")
                .to_string();
        }
        let _ = writeln!(
            self.out,
            "{}: {}{} in {:.2}s{}",
            printable(&r.member),
            r.outcome.word(),
            r.changed
                .map_or(String::new(), |c| format!(", {c} changed")),
            r.duration.as_secs_f64(),
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", printable(&detail))
            }
        );
        self.status_line();
    }

    fn done(&mut self, report: &PushReport) {
        self.clear();
        let _ = write!(self.out, "\n{}", table(report));
        let _ = self.out.flush();
    }
}

/// The summary table, member-supplied text shown escaped ([`printable`]).
pub fn table(report: &PushReport) -> String {
    let width = report
        .members
        .iter()
        .map(|m| printable(&m.member).chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut s = format!(
        "{:<width$}  {:<11}  {:>7}  {:>6}  {:>8}  DETAIL\n",
        "MEMBER", "RESULT", "CHANGED", "FAILED", "DURATION"
    );
    let num = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    for m in &report.members {
        let mut detail = m.outcome.detail();
        if m.attached {
            detail = format!("reported the pushed run already in progress; {detail}");
        }
        if let Some(pid) = m.reported_existing {
            detail = format!("reported an existing run (pid {pid}); {detail}");
        }
        s.push_str(&format!(
            "{:<width$}  {:<11}  {:>7}  {:>6}  {:>7.2}s  {}\n",
            printable(&m.member),
            m.outcome.word(),
            num(m.changed),
            num(m.failed),
            m.duration.as_secs_f64(),
            printable(detail.trim_end_matches("; "))
        ));
    }
    s.push_str(&format!(
        "{} members in {:.2}s: {} ok, {} failed, {} unreachable, {} refused, {} busy\n",
        report.members.len(),
        report.duration.as_secs_f64(),
        report.count("ok"),
        report.count("failed"),
        report.count("unreachable"),
        report.count("refused"),
        report.count("busy")
    ));
    s
}

/// Prints JSON Lines: `{"type":"push_event","member":M,"event":{...}}` for each line a
/// member streams, `{"type":"push_member",...}` when a member is done and
/// `{"type":"push_summary",...}` last.
#[derive(Debug)]
pub struct PushJson<W> {
    out: W,
}

impl<W: Write> PushJson<W> {
    /// A printer writing to `out`.
    pub fn new(out: W) -> Self {
        PushJson { out }
    }

    fn line(&mut self, v: &Value) {
        let _ = tenet_keys::jsonl::write_line(&mut self.out, "push", v);
    }
}

impl<W: Write> PushReporter for PushJson<W> {
    fn start(&mut self, members: &[String], serial: u64) {
        self.line(&json!({"type": "push_start", "members": members, "serial": serial}));
    }

    fn warning(&mut self, message: &str) {
        self.line(&json!({"type": "warning", "message": message}));
    }

    fn event(&mut self, member: &str, event: &Value) {
        self.line(&json!({"type": "push_event", "member": member, "event": event}));
    }

    fn finished(&mut self, r: &MemberReport) {
        self.line(&member_json(r));
    }

    fn done(&mut self, report: &PushReport) {
        self.line(&json!({
            "type": "push_summary",
            "time": tenet_keys::jsonl::now(),
            "serial": report.serial,
            "members": report.members.len(),
            "ok": report.count("ok"),
            "failed": report.count("failed"),
            "unreachable": report.count("unreachable"),
            "refused": report.count("refused"),
            "busy": report.count("busy"),
            "duration_ms": u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        }));
        let _ = self.out.flush();
    }
}

fn member_json(r: &MemberReport) -> Value {
    let (code, message) = match &r.outcome {
        MemberOutcome::Refused { code, message } => (Some(code.clone()), message.clone()),
        other => (None, other.detail()),
    };
    json!({
        "type": "push_member",
        "member": r.member,
        "address": r.address,
        "result": r.outcome.word(),
        "reason": code,
        "message": message,
        "changed": r.changed,
        "failed": r.failed,
        "attached": r.attached,
        "reported_existing": r.reported_existing.is_some(),
        "existing_pid": r.reported_existing,
        "duration_ms": u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
    })
}

impl fmt::Display for MemberOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.detail();
        if detail.is_empty() {
            f.write_str(self.word())
        } else {
            write!(f, "{}: {detail}", self.word())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(lines: &[Value]) -> MemberOutcome {
        let mut s = Seen::default();
        for l in lines {
            s.take(l);
        }
        s.outcome()
    }

    #[test]
    fn outcomes_from_streams() {
        let end = |code: Value| json!({"type": "end", "exit_code": code, "stderr": "error: x"});
        assert_eq!(
            outcome(&[json!({"type": "accepted"}), end(json!(0))]),
            MemberOutcome::Ok
        );
        assert!(matches!(
            outcome(&[end(json!(1))]),
            MemberOutcome::Failed { .. }
        ));
        assert!(matches!(
            outcome(&[end(json!(6))]),
            MemberOutcome::Busy { .. }
        ));
        match outcome(&[end(json!(10))]) {
            MemberOutcome::Failed { reason } => {
                assert!(reason.contains("degraded (status 10)"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match outcome(&[end(json!(4))]) {
            MemberOutcome::Failed { reason } => {
                assert!(reason.contains("status 4: error: x"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            outcome(&[json!({"type": "end", "exit_code": null, "timed_out": true})]),
            MemberOutcome::Failed { .. }
        ));
        assert!(matches!(
            outcome(&[
                json!({"type": "busy", "attached": false, "message": "m"}),
                json!({"type": "busy_end"})
            ]),
            MemberOutcome::Busy { .. }
        ));
        assert!(matches!(
            outcome(&[json!({"type": "accepted"})]),
            MemberOutcome::Unreachable { .. }
        ));
        // A foreign run reported by its summary: classified by it.
        let busy = json!({"type": "busy", "attached": false, "message": "m", "pid": 7});
        let summary = |code: i64| json!({"type": "attached_summary", "pid": 7, "exit_code": code, "repaired": 2, "error": "e"});
        let busy_end = json!({"type": "busy_end", "ended": true, "reported": true});
        assert_eq!(
            outcome(&[busy.clone(), summary(0), busy_end.clone()]),
            MemberOutcome::Ok
        );
        assert!(matches!(
            outcome(&[busy.clone(), summary(1), busy_end.clone()]),
            MemberOutcome::Failed { .. }
        ));
        match outcome(&[busy.clone(), summary(5), busy_end.clone()]) {
            MemberOutcome::Failed { reason } => assert!(reason.contains("status 5: e"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Without its busy_end the stream broke.
        assert!(matches!(
            outcome(&[busy, summary(0)]),
            MemberOutcome::Unreachable { .. }
        ));
    }

    #[test]
    fn exit_prefers_not_run_over_failed() {
        let m = |outcome| MemberReport {
            member: "a".to_string(),
            address: None,
            outcome,
            changed: None,
            failed: None,
            duration: Duration::ZERO,
            attached: false,
            reported_existing: None,
        };
        let report = |outcomes: Vec<MemberOutcome>| PushReport {
            members: outcomes.into_iter().map(m).collect(),
            serial: 1,
            duration: Duration::ZERO,
        };
        let failed = || MemberOutcome::Failed {
            reason: String::new(),
        };
        let unreachable = || MemberOutcome::Unreachable {
            reason: String::new(),
        };
        assert_eq!(report(vec![MemberOutcome::Ok]).exit(), PushExit::AllOk);
        assert_eq!(
            report(vec![MemberOutcome::Ok, failed()]).exit(),
            PushExit::SomeFailed
        );
        assert_eq!(
            report(vec![failed(), unreachable()]).exit(),
            PushExit::SomeNotRun
        );
    }
}
