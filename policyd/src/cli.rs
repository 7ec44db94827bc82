//! The command line: clap types (in the library so `--help` can be tested; each
//! command's own arguments live with it, in [`crate::ha`] and [`crate::control::client`]),
//! and the dispatch of the one-shot commands that talk to the daemon (they write to the writers they
//! are given; the library never prints).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG, FIELDS_HELP};
use crate::control::{self, Command as ControlCommand, Request};
use crate::exit::EXIT_CODES;

pub use crate::control::client::PromoteArgs;
pub use crate::exit::ExitCode;
pub use crate::ha::{StartArgs, WatchArgs};
pub use crate::history::ReportArgs;

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
    Status {
        /// Print one JSON line, {"type":"status",...}, instead of `key: value` lines.
        #[arg(long)]
        json: bool,
    },
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
    /// Read the report database: each member's serial, last report and failing
    /// promises; --member NAME one member's history; --drift the reports that found
    /// drift. Reads `[reports] database` (or --database) directly; exit 1 if unreadable.
    #[command(after_help = EXIT_CODES)]
    Report(ReportArgs),
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
        Command::Report(args) => return crate::history::report(args, config, out, err),
        Command::Status { .. } => (
            Request::new(ControlCommand::Status),
            Duration::from_secs(10),
        ),
        Command::Demote => (
            Request::new(ControlCommand::Demote),
            Duration::from_secs(60),
        ),
        Command::Promote(args) => (args.request(), args.timeout),
    };
    let reply = match control::request(&config.control_socket(), &request, timeout) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: {}", tenet_keys::error_chain(&e));
            return ExitCode::Failure;
        }
    };
    let json = matches!(command, Command::Status { json: true });
    control::client::report_as(request.command, &reply, json, out, err)
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
