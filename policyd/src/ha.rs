//! The core every HA adapter calls (`packaging/`: OCF, Serviceguard, PowerHA,
//! keepalived): four idempotent commands with fixed exit codes, so that each adapter is
//! only a mapping of codes to its engine's convention.
//!
//! | command | does | exit |
//! |---|---|---|
//! | `start --bundle B` | starts the listener in the background if it does not answer, promotes, confirms serving | 0 serving; 1 failed; 3 invalid configuration; 4 bundle refused |
//! | `stop` | demotes; the listener keeps running; a daemon that is not running serves nothing | 0; 1 the daemon runs but does not answer |
//! | `watch` | foreground while serving | 7 stopped serving; 1 unreachable |
//! | `validate` | configuration, node key, trusted root; starts nothing | 0; 3 invalid |
//!
//! "Not running" is told apart from "not answering" by the control socket: no socket
//! file, or a refused connection, means no daemon (a crashed one leaves its socket file
//! behind, and nobody accepts on it); a connection that times out means a daemon that
//! may still serve, which `stop` must not call stopped (the HA engine fences instead).

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use tenet_keys::SecretKey;

use crate::config::Config;
use crate::control::client::{PromoteArgs, report};
use crate::control::{self, Command as ControlCommand, Reply, Request};
use crate::error::ControlError;
use crate::exit::ExitCode;
use crate::promotion::State;

/// Options of `start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// The bundle and keys, as for promote.
    #[command(flatten)]
    pub promote: PromoteArgs,
    /// The log of a listener this command starts; default STATE_DIR/serve.log.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

/// Options of `watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// How often to ask the daemon.
    #[arg(long, default_value = "1s", value_parser = crate::config::parse_duration)]
    pub interval: Duration,
}

/// How long one status exchange may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a starting listener is asked whether it answers.
const POLL: Duration = Duration::from_millis(25);

/// Whether `e` says that no daemon is running (as opposed to one not answering).
fn not_running(e: &ControlError) -> bool {
    matches!(e, ControlError::Connect { source, .. }
        if matches!(source.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused))
}

fn status(config: &Config, timeout: Duration) -> Result<Reply, ControlError> {
    control::request(
        &config.control_socket(),
        &Request::new(ControlCommand::Status),
        timeout,
    )
}

/// `tenet-policyd start`.
pub fn start(
    args: &StartArgs,
    config: &Config,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let deadline = Instant::now() + args.promote.timeout;
    match status(config, STATUS_TIMEOUT) {
        Ok(_) => {}
        Err(e) if not_running(&e) => {
            if let Err(code) = start_listener(args, config, deadline, out, err) {
                return code;
            }
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "error: {}; the daemon runs but does not answer",
                tenet_keys::error_chain(&e)
            );
            return ExitCode::Failure;
        }
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    match control::request(&config.control_socket(), &args.promote.request(), left) {
        Ok(reply) if matches!(reply.status.state(), State::Serving { .. }) => {
            report(ControlCommand::Promote, &reply, out, err)
        }
        Ok(reply) => match report(ControlCommand::Promote, &reply, out, err) {
            ExitCode::Success => {
                let _ = writeln!(err, "error: promoted, but the daemon does not serve");
                ExitCode::Failure
            }
            code => code,
        },
        Err(e) => {
            let _ = writeln!(err, "error: {}", tenet_keys::error_chain(&e));
            ExitCode::Failure
        }
    }
}

/// Starts `serve` in the background and waits until its control socket answers.
fn start_listener(
    args: &StartArgs,
    config: &Config,
    deadline: Instant,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), ExitCode> {
    let fail = |err: &mut dyn Write, what: String| {
        let _ = writeln!(err, "error: {what}");
        ExitCode::Failure
    };
    let exe = std::env::current_exe()
        .map_err(|e| fail(err, format!("cannot find this program's path: {e}")))?;
    let log = args
        .log
        .clone()
        .unwrap_or_else(|| config.state_dir.join("serve.log"));
    if let Some(dir) = log.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(err, format!("cannot create {}: {e}", dir.display())))?;
    }
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .map_err(|e| fail(err, format!("cannot open the log {}: {e}", log.display())))?;
    let config_path = std::path::absolute(&config.path).unwrap_or_else(|_| config.path.clone());
    #[expect(
        clippy::disallowed_methods,
        reason = "the one process policyd starts: its own listener, detached"
    )]
    let mut command = std::process::Command::new(&exe);
    command
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        // Its own process group: an HA engine that kills its agent's group on a
        // timeout must not take the listener with it.
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| fail(err, format!("cannot start {}: {e}", exe.display())))?;
    let _ = writeln!(
        out,
        "started the listener (pid {}, log {})",
        child.id(),
        log.display()
    );
    wait_answering(&mut child, config, deadline, &log, err)
}

fn wait_answering(
    child: &mut Child,
    config: &Config,
    deadline: Instant,
    log: &std::path::Path,
    err: &mut dyn Write,
) -> Result<(), ExitCode> {
    loop {
        let last = match status(config, STATUS_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if let Ok(Some(exit)) = child.try_wait() {
            // Another start may have won the race: its daemon answers.
            if status(config, STATUS_TIMEOUT).is_ok() {
                return Ok(());
            }
            let _ = writeln!(
                err,
                "error: the listener exited ({exit}) before answering; see {}",
                log.display()
            );
            return Err(match exit.code() {
                Some(3) => ExitCode::InvalidConfig,
                Some(4) => ExitCode::TrustRefused,
                _ => ExitCode::Failure,
            });
        }
        if Instant::now() >= deadline {
            let _ = writeln!(
                err,
                "error: the listener (pid {}) did not answer in time: {}; see {}",
                child.id(),
                tenet_keys::error_chain(&last),
                log.display()
            );
            return Err(ExitCode::Failure);
        }
        std::thread::sleep(POLL);
    }
}

/// `tenet-policyd stop`.
pub fn stop(config: &Config, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match control::request(
        &config.control_socket(),
        &Request::new(ControlCommand::Demote),
        Duration::from_secs(60),
    ) {
        Ok(reply) => report(ControlCommand::Demote, &reply, out, err),
        Err(e) if not_running(&e) => {
            let _ = writeln!(out, "tenet-policyd is not running; nothing is served here");
            ExitCode::Success
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "error: {}; the daemon may still be serving",
                tenet_keys::error_chain(&e)
            );
            ExitCode::Failure
        }
    }
}

/// `tenet-policyd watch`.
pub fn watch(
    args: &WatchArgs,
    config: &Config,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let mut serving = None;
    loop {
        match status(config, STATUS_TIMEOUT) {
            Ok(reply) => match reply.status.state() {
                State::Serving { serial } => {
                    if serving != Some(serial) {
                        let _ = writeln!(out, "serving serial {serial}");
                        let _ = out.flush();
                        serving = Some(serial);
                    }
                }
                State::Listening => {
                    let _ = writeln!(err, "tenet-policyd is not serving");
                    return ExitCode::NotPromoted;
                }
            },
            Err(e) => {
                let _ = writeln!(err, "error: {}", tenet_keys::error_chain(&e));
                return ExitCode::Failure;
            }
        }
        std::thread::sleep(args.interval);
    }
}

/// `tenet-policyd validate` (the configuration itself was loaded by the caller).
pub fn validate(config: &Config, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let problems: Vec<String> = [
        SecretKey::read(&config.node_key)
            .err()
            .map(|e| format!("node_key: {}", tenet_keys::error_chain(&e))),
        crate::trusted::read_trusted_root(&config.trusted_root)
            .err()
            .map(|e| format!("trusted_root: {}", tenet_keys::error_chain(&e))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if problems.is_empty() {
        let _ = writeln!(out, "{}: valid", config.path.display());
        return ExitCode::Success;
    }
    for p in problems {
        let _ = writeln!(err, "error: {}: {p}", config.path.display());
    }
    ExitCode::InvalidConfig
}
