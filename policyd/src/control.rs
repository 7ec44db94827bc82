//! The control socket: how the one-shot commands (`promote`, `demote`, `status`, run by
//! the HA engine) talk to the running daemon.
//!
//! A Unix stream socket, `STATE_DIR/control.sock`, mode 0600 in a 0700 directory; the
//! daemon also refuses a peer whose uid is neither its own nor root's. One exchange per
//! connection: the client writes a TOML [`Request`] and shuts down its writing half; the
//! daemon answers with a TOML [`Reply`] and closes. Both are capped at 64 KiB.
//!
//! ```toml
//! # request                              # reply
//! command = "promote"                    outcome = "ok"      # ok | refused | invalid | failed
//! bundle = "/srv/tenet/bundle/current"   message = "serving serial 12 from ..."
//! timestamp_key = "/srv/tenet/keys/timestamp.key"
//!                                        [status]
//!                                        state = "serving"   # listening | serving
//!                                        serial = 12
//!                                        pid = 4711
//!                                        listener = "0.0.0.0:8740"
//!                                        serving = "0.0.0.0:8741"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tenet_keys::Time;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

use crate::promotion::{self, PromoteRequest, State};
use crate::shared::Shared;
use crate::shutdown::Stop;

pub mod client;

pub use client::request;

/// Largest request or reply.
const MAX_MESSAGE: u64 = 64 * 1024;
/// How long the daemon waits for a request to arrive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A command for the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// For `promote`: the bundle directory (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    /// For `promote`: the timestamp key (absolute), else the configuration's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_key: Option<PathBuf>,
    /// For `promote`: the policy server TLS key (absolute), else the configuration's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_key: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Report the state.
    Status,
    /// Serve a bundle (or a newer one).
    Promote,
    /// Stop serving; keep the listener.
    Demote,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// How the command went.
    pub outcome: Outcome,
    /// One line for a person: what happened, or why not.
    pub message: String,
    /// The state after the command.
    pub status: Status,
}

/// How a command went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Trust refused (the bundle or a key did not verify); nothing changed.
    Refused,
    /// The request or the configuration is incomplete; nothing changed.
    Invalid,
    /// Something else failed (a file, a socket); nothing changed.
    Failed,
}

/// The daemon's state, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// `listening` or `serving`.
    pub state: StateName,
    /// The served manifest's serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// The served bundle directory (symlinks resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    /// The daemon's process id (so an HA adapter or a test can signal it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The listener's bound address.
    pub listener: SocketAddr,
    /// The serving socket's bound address, while promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<SocketAddr>,
    /// The metrics endpoint's bound address, if on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// The status page's bound address, if on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<SocketAddr>,
    /// Enrolled members of the served manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<usize>,
    /// The served timestamp's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_version: Option<u64>,
    /// The served timestamp's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_expires: Option<Time>,
    /// The served manifest's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_expires: Option<Time>,
}

/// [`State`] without its data, for the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateName {
    /// Not promoted.
    Listening,
    /// Promoted.
    Serving,
}

impl Status {
    /// The state as the explicit enum.
    pub fn state(&self) -> State {
        match (self.state, self.serial) {
            (StateName::Serving, Some(serial)) => State::Serving { serial },
            _ => State::Listening,
        }
    }

    /// The status as `tenet-policyd status --json` prints it: every field, absent ones
    /// null, times in RFC 3339.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "status",
            "state": self.state,
            "serial": self.serial,
            "bundle": self.bundle.as_ref().map(|b| b.display().to_string()),
            "pid": self.pid,
            "listener": self.listener.to_string(),
            "serving": self.serving.map(|a| a.to_string()),
            "metrics": self.metrics.map(|a| a.to_string()),
            "page": self.page.map(|a| a.to_string()),
            "members": self.members,
            "timestamp_version": self.timestamp_version,
            "timestamp_expires": self.timestamp_expires.map(|t| t.to_string()),
            "manifest_expires": self.manifest_expires.map(|t| t.to_string()),
        })
    }

    /// The status as `key: value` lines (what `tenet-policyd status` prints).
    pub fn to_lines(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(&v);
            out.push('\n');
        };
        line(
            "state",
            match self.state {
                StateName::Listening => "listening",
                StateName::Serving => "serving",
            }
            .to_string(),
        );
        if let Some(s) = self.serial {
            line("serial", s.to_string());
        }
        if let Some(b) = &self.bundle {
            line("bundle", b.display().to_string());
        }
        if let Some(p) = self.pid {
            line("pid", p.to_string());
        }
        line("listener", self.listener.to_string());
        if let Some(a) = self.serving {
            line("serving", a.to_string());
        }
        if let Some(a) = self.metrics {
            line("metrics", a.to_string());
        }
        if let Some(a) = self.page {
            line("page", a.to_string());
        }
        if let Some(n) = self.members {
            line("members", n.to_string());
        }
        if let Some(v) = self.timestamp_version {
            line("timestamp_version", v.to_string());
        }
        if let Some(t) = self.timestamp_expires {
            line("timestamp_expires", t.to_string());
        }
        if let Some(t) = self.manifest_expires {
            line("manifest_expires", t.to_string());
        }
        out
    }
}

/// Accepts control connections until `stop`.
pub(crate) async fn serve(shared: Arc<Shared>, socket: UnixListener, mut stop: Stop) {
    loop {
        let stream = tokio::select! {
            () = stop.wait() => break,
            accepted = socket.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = exchange(&shared, stream).await {
                debug!(error = %e, "control exchange failed");
            }
        });
    }
}

async fn exchange(shared: &Arc<Shared>, mut stream: UnixStream) -> std::io::Result<()> {
    let peer = stream.peer_cred()?.uid();
    let own = nix::unistd::geteuid().as_raw();
    if peer != own && peer != 0 {
        warn!(uid = peer, "refused a control connection from another user");
        return Ok(());
    }
    let mut text = Vec::new();
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        (&mut stream).take(MAX_MESSAGE + 1).read_to_end(&mut text),
    )
    .await;
    let reply = match read {
        Err(_) => invalid(shared, "no request arrived in time".to_string()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) if text.len() as u64 > MAX_MESSAGE => invalid(
            shared,
            format!("the request is larger than {MAX_MESSAGE} bytes"),
        ),
        Ok(Ok(_)) => match toml::from_str::<Request>(&String::from_utf8_lossy(&text)) {
            Err(e) => invalid(shared, format!("malformed request: {}", e.message())),
            Ok(request) => answer(shared, request).await,
        },
    };
    let text = toml::to_string(&reply).map_err(std::io::Error::other)?;
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await
}

async fn answer(shared: &Arc<Shared>, request: Request) -> Reply {
    match request.command {
        Command::Status => {
            let message = match shared.promotion.state() {
                State::Listening => "listening; not serving a bundle".to_string(),
                State::Serving { serial } => format!("serving serial {serial}"),
            };
            reply(shared, Outcome::Ok, message)
        }
        Command::Demote => {
            let message = match promotion::demote(shared).await {
                State::Listening => "was not serving; nothing to do".to_string(),
                State::Serving { serial } => format!(
                    "stopped serving serial {serial}; the listener keeps running on {}",
                    shared.addresses.listener
                ),
            };
            reply(shared, Outcome::Ok, message)
        }
        Command::Promote => {
            let Some(bundle) = request.bundle else {
                return invalid(shared, "promote needs a bundle directory".to_string());
            };
            let req = PromoteRequest {
                bundle,
                timestamp_key: request.timestamp_key,
                server_key: request.server_key,
            };
            match promotion::promote(shared, req).await {
                Ok(s) => reply(
                    shared,
                    Outcome::Ok,
                    format!(
                        "serving serial {} from {} on {} (timestamp version {}, expires {})",
                        s.bundle.serial(),
                        s.bundle.dir().display(),
                        s.address,
                        s.timestamp.version,
                        s.timestamp.expires
                    ),
                ),
                Err(e) => {
                    let outcome = if e.is_trust_refusal() {
                        Outcome::Refused
                    } else if e.is_configuration() {
                        Outcome::Invalid
                    } else {
                        Outcome::Failed
                    };
                    let still = match shared.promotion.state() {
                        State::Listening => "still listening, not serving".to_string(),
                        State::Serving { serial } => format!("still serving serial {serial}"),
                    };
                    reply(
                        shared,
                        outcome,
                        format!("{}; {still}", tenet_keys::error_chain(&e)),
                    )
                }
            }
        }
    }
}

fn invalid(shared: &Shared, message: String) -> Reply {
    reply(shared, Outcome::Invalid, message)
}

fn reply(shared: &Shared, outcome: Outcome, message: String) -> Reply {
    Reply {
        outcome,
        message,
        status: status(shared),
    }
}

/// The daemon's status now.
pub(crate) fn status(shared: &Shared) -> Status {
    let snapshot = shared.promotion.snapshot();
    Status {
        state: if snapshot.is_some() {
            StateName::Serving
        } else {
            StateName::Listening
        },
        serial: snapshot.as_ref().map(|s| s.bundle.serial()),
        bundle: snapshot.as_ref().map(|s| s.bundle.dir().to_path_buf()),
        pid: Some(std::process::id()),
        listener: shared.addresses.listener,
        serving: snapshot.as_ref().map(|s| s.address),
        metrics: shared.addresses.metrics,
        page: shared.addresses.page,
        members: snapshot.as_ref().map(|s| s.bundle.members().len()),
        timestamp_version: snapshot.as_ref().map(|s| s.timestamp.version),
        timestamp_expires: snapshot.as_ref().map(|s| s.timestamp.expires),
        manifest_expires: snapshot.as_ref().map(|s| s.bundle.manifest().expires),
    }
}
