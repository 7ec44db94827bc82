//! The command line: clap types (in the library so `--help` can be tested), exit codes,
//! and the one-shot commands that talk to the daemon (they write to the writers they
//! are given; the library never prints).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG, FIELDS_HELP};
use crate::control::{self, Command as ControlCommand, Outcome, Reply, Request};
use crate::promotion::State;

/// Exit codes. 0 to 4 mean what they mean for every tenet binary; 7 is the OCF
/// resource agent's "not running", for `status` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Done; for `status`: promoted and serving.
    Success = 0,
    /// The command failed: the daemon could not be reached, or could not start, or a
    /// file or socket failed.
    Failure = 1,
    /// Usage error.
    Usage = 2,
    /// The configuration (or a key path it needs) is invalid; nothing changed.
    InvalidConfig = 3,
    /// Trust refused: the bundle or a key did not verify; nothing changed.
    TrustRefused = 4,
    /// `status` only: the daemon runs and is not promoted (OCF_NOT_RUNNING).
    NotPromoted = 7,
}

const EXIT_CODES: &str = "\
Exit codes:
  0  done; for status: promoted, serving the bundle; for stop: nothing is served here
  1  failed: the daemon is not running or cannot be reached (promote, demote, status,
     watch), does not answer (stop), could not start (serve, start), or a file or
     socket failed
  2  usage error
  3  invalid configuration, or promote without a key path; nothing changed
  4  trust refused: the bundle, the root or a key did not verify; nothing changed
  7  status and watch only: the daemon runs but is not promoted (OCF_NOT_RUNNING)";

const ABOUT: &str = "\
The tenet policy server.

Every member runs `tenet-policyd serve`. Its listener (default port 8740) answers
GET /v1/health over mutual TLS with the member's node key, to administrators and
enrolled members only. When the HA engine
starts the policyd package on a member, it runs `tenet-policyd promote`: the daemon
verifies the signed bundle against its trusted root and serves it on a second port
(default 8741) with the policy server key, which the root pins. Only enrolled members
of the served manifest get past that socket's TLS handshake. `tenet-policyd demote`
stops serving; the listener keeps running. `tenet-policyd status` is the monitor.";

/// tenet-policyd: the listener on every member, and the bundle server when promoted.
#[derive(Debug, Parser)]
#[command(
    name = "tenet-policyd",
    version,
    about = "The tenet policy server",
    long_about = ABOUT,
    after_help = EXIT_CODES,
    max_term_width = 100
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// The configuration file (see `tenet-policyd serve --help` for every field).
    #[arg(long, global = true, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Log more on stderr (repeat for more detail; RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the listener, the control socket and the metrics endpoint.
    ///
    /// Start-up: the configuration is checked (exit 3 if invalid), the node key and
    /// trusted root are read, the sockets are bound and their addresses logged. The
    /// daemon then runs until SIGTERM or SIGINT, when it stops accepting, stops
    /// serving, and gives open connections limits.drain_timeout to finish.
    #[command(after_long_help = serve_help())]
    Serve,
    /// Serve a bundle: verify it against the trusted root, then serve it (the HA
    /// engine's start action).
    ///
    /// The daemon reads the keys and verifies the whole bundle (root history, manifest
    /// signature and serial, every blob) before anything changes; a bundle that does not
    /// verify is refused with the reason (exit 4) and the daemon keeps what it served.
    /// Promoting again while serving takes a newer bundle or other keys; a lower serial
    /// is always refused. While promoted, the daemon also checks the bundle path every
    /// serve.watch_interval and takes a newer manifest found there.
    #[command(after_help = EXIT_CODES)]
    Promote(PromoteArgs),
    /// Stop serving the bundle (the HA engine's stop action); the listener keeps
    /// running. Demoting a daemon that does not serve does nothing and succeeds.
    #[command(after_help = EXIT_CODES)]
    Demote,
    /// Print the daemon's state; exit 0 when serving, 7 when running but not promoted,
    /// 1 when the daemon cannot be reached (the HA engine's monitor action).
    #[command(after_help = EXIT_CODES)]
    Status,
    /// Make this member serve a bundle, whatever state it is in (the HA adapters'
    /// start): start the listener in the background if it does not answer, then
    /// promote. Exit 0 only once the daemon serves the bundle; idempotent.
    ///
    /// A listener started here runs `serve` with the same configuration in its own
    /// process group, stdin and stdout on /dev/null and stderr appended to --log; it
    /// keeps running after `stop`. --timeout bounds the whole command.
    #[command(after_help = EXIT_CODES)]
    Start(StartArgs),
    /// Make sure this member serves nothing (the HA adapters' stop): demote. The
    /// listener keeps running; a daemon that is not running serves nothing, so that is
    /// success too. Exit 1 only when the daemon runs but does not answer.
    #[command(after_help = EXIT_CODES)]
    Stop,
    /// Stay in the foreground while the daemon serves; exit 7 as soon as it stops
    /// serving, 1 when it cannot be reached (a monitored service command, such as
    /// Serviceguard's service_cmd).
    #[command(after_help = EXIT_CODES)]
    Watch(WatchArgs),
    /// Check the configuration, the node key and the trusted root without starting
    /// anything (the HA adapters' validate). Exit 0 valid, 3 invalid.
    #[command(after_help = EXIT_CODES)]
    Validate,
}

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
    #[arg(long, default_value = "1s", value_parser = parse_timeout)]
    pub interval: Duration,
}

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
    #[arg(long, default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// The help text after `serve --help`: every configuration field, then the exit codes.
pub fn serve_help() -> String {
    format!("{FIELDS_HELP}\n\n{EXIT_CODES}")
}

/// Runs `promote`, `demote` or `status` against the daemon of `config`, writing what a
/// person reads to `out` and errors to `err`. `serve` is not a one-shot command and
/// returns [`ExitCode::Usage`].
pub fn run_control(
    command: &Command,
    config: &Config,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let (request, timeout) = match command {
        Command::Serve => return ExitCode::Usage,
        Command::Start(args) => return crate::ha::start(args, config, out, err),
        Command::Stop => return crate::ha::stop(config, out, err),
        Command::Watch(args) => return crate::ha::watch(args, config, out, err),
        Command::Validate => return crate::ha::validate(config, out, err),
        Command::Status => (request(ControlCommand::Status), Duration::from_secs(10)),
        Command::Demote => (request(ControlCommand::Demote), Duration::from_secs(60)),
        Command::Promote(args) => (promote_request(args), args.timeout),
    };
    let reply = match control::request(&config.control_socket(), &request, timeout) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: {}", tenet_keys::error_chain(&e));
            return ExitCode::Failure;
        }
    };
    report(command, &reply, out, err)
}

/// The control request of `promote` (paths made absolute).
pub(crate) fn promote_request(args: &PromoteArgs) -> Request {
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let mut r = request(ControlCommand::Promote);
    r.bundle = Some(absolute(&args.bundle));
    r.timestamp_key = args.timestamp_key.as_ref().map(absolute);
    r.server_key = args.server_key.as_ref().map(absolute);
    r
}

pub(crate) fn report(
    command: &Command,
    reply: &Reply,
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
            let _ = write!(out, "{}", reply.status.to_lines());
            match reply.status.state() {
                State::Serving { .. } => ExitCode::Success,
                State::Listening => ExitCode::NotPromoted,
            }
        }
        _ => {
            let _ = writeln!(out, "{}", reply.message);
            ExitCode::Success
        }
    }
}

pub(crate) fn request(command: ControlCommand) -> Request {
    Request {
        command,
        bundle: None,
        timestamp_key: None,
        server_key: None,
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_help_lists_every_field() {
        let help = serve_help();
        for field in [
            "member",
            "state_dir",
            "node_key",
            "trusted_root",
            "[listener]",
            "[serve]",
            "timestamp_key",
            "server_key",
            "timestamp_ttl",
            "watch_interval",
            "[metrics]",
            "[limits]",
            "max_connections",
            "handshake_timeout",
            "header_read_timeout",
            "idle_timeout",
            "max_header_bytes",
            "h2_max_concurrent_streams",
            "drain_timeout",
            "Exit codes",
        ] {
            assert!(help.contains(field), "{field} missing from serve --help");
        }
    }
}
