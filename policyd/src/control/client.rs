//! The client side of the control socket: what a one-shot command sends (the
//! arguments of `promote` and the [`Request`] they make), the exchange itself, and how
//! a [`Reply`] becomes the command's output and exit code.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::{Command, MAX_MESSAGE, Outcome, Reply, Request};
use crate::config::parse_duration;
use crate::error::ControlError;
use crate::exit::ExitCode;
use crate::promotion::State;

/// Options of `promote`.
#[derive(Debug, Clone, Args)]
pub struct PromoteArgs {
    /// The bundle directory (on the package filesystem). It may be a symlink that a
    /// publisher flips to a new bundle directory.
    #[arg(long)]
    pub bundle: PathBuf,
    /// The online timestamp key; default serve.timestamp_key of the configuration.
    #[arg(long)]
    pub timestamp_key: Option<PathBuf>,
    /// The policy server TLS key (pinned in the root); default serve.server_key.
    #[arg(long)]
    pub server_key: Option<PathBuf>,
    /// How long to wait for the daemon to verify the bundle and answer.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl PromoteArgs {
    /// The control request of `promote` (paths made absolute).
    pub(crate) fn request(&self) -> Request {
        let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        let mut r = Request::new(Command::Promote);
        r.bundle = Some(absolute(&self.bundle));
        r.timestamp_key = self.timestamp_key.as_ref().map(absolute);
        r.server_key = self.server_key.as_ref().map(absolute);
        r
    }
}

impl Request {
    /// A request for `command` without paths.
    pub(crate) fn new(command: Command) -> Request {
        Request {
            command,
            bundle: None,
            timestamp_key: None,
            server_key: None,
        }
    }
}

/// Sends `request` to the daemon whose control socket is `socket` and waits up to
/// `timeout` for each of sending and answering.
pub fn request(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, ControlError> {
    let io_err = |source| ControlError::Io {
        socket: socket.to_path_buf(),
        source,
    };
    let text = toml::to_string(request).map_err(|source| ControlError::Encode { source })?;
    let mut stream = StdUnixStream::connect(socket).map_err(|source| ControlError::Connect {
        socket: socket.to_path_buf(),
        source,
    })?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.write_all(text.as_bytes()).map_err(io_err)?;
    stream.shutdown(std::net::Shutdown::Write).map_err(io_err)?;
    let mut reply = Vec::new();
    (&mut stream)
        .take(MAX_MESSAGE + 1)
        .read_to_end(&mut reply)
        .map_err(io_err)?;
    if reply.len() as u64 > MAX_MESSAGE {
        return Err(ControlError::TooLarge {
            socket: socket.to_path_buf(),
            max: MAX_MESSAGE,
        });
    }
    let text = String::from_utf8_lossy(&reply);
    toml::from_str(&text).map_err(|source| ControlError::Reply {
        socket: socket.to_path_buf(),
        source,
    })
}

/// Writes what `reply` to a `command` request says (the status lines for `status`, the
/// message otherwise; errors to `err`) and returns the command's exit code.
pub(crate) fn report(
    command: Command,
    reply: &Reply,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    report_as(command, reply, false, out, err)
}

/// As [`report`]; with `json`, the status is one JSON line (`tenet.policyd.status/1`).
pub(crate) fn report_as(
    command: Command,
    reply: &Reply,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    match reply.outcome {
        Outcome::Ok => {}
        Outcome::Refused => {
            let _ = writeln!(err, "error: {}", reply.message);
            return ExitCode::TrustRefused;
        }
        Outcome::Invalid => {
            let _ = writeln!(err, "error: {}", reply.message);
            return ExitCode::InvalidConfig;
        }
        Outcome::Failed => {
            let _ = writeln!(err, "error: {}", reply.message);
            return ExitCode::Failure;
        }
    }
    match command {
        Command::Status => {
            if json {
                let _ = tenet_keys::jsonl::write_line(out, "policyd", &reply.status.to_json());
            } else {
                let _ = write!(out, "{}", reply.status.to_lines());
            }
            match reply.status.state() {
                State::Serving { .. } => ExitCode::Success,
                State::Listening => ExitCode::NotPromoted,
            }
        }
        Command::Promote | Command::Demote => {
            let _ = writeln!(out, "{}", reply.message);
            ExitCode::Success
        }
    }
}
