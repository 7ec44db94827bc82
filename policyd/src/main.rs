//! `tenet-policyd`: parse the command line, check the configuration, run the daemon or
//! a one-shot command, exit with its code.
#![expect(
    clippy::print_stderr,
    reason = "the binary's entry point is its output module"
)]

use std::io::{self, IsTerminal};
use std::process;

use clap::Parser;
use tenet_policyd::cli::{Cli, Command, ExitCode, run_control};
use tenet_policyd::{Config, daemon};

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.verbose, matches!(cli.command, Command::Serve));
    let code = match Config::load(&cli.config) {
        Err(e) => {
            eprintln!("error: {}", tenet_keys::error_chain(&e));
            ExitCode::InvalidConfig
        }
        Ok(config) => match cli.command {
            Command::Serve => serve(config),
            other => run_control(
                &other,
                &config,
                &mut io::stdout().lock(),
                &mut io::stderr().lock(),
            ),
        },
    };
    process::exit(i32::from(code as u8));
}

fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Failure;
        }
    };
    match runtime.block_on(daemon::serve(config)) {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            eprintln!("error: {}", tenet_keys::error_chain(&e));
            e.exit_code()
        }
    }
}

fn init_tracing(verbose: u8, daemon: bool) {
    let default = match (verbose, daemon) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour and a timestamp only on a terminal: journald stamps each line itself.
    let terminal = io::stderr().is_terminal();
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(terminal);
    let _ = if terminal {
        log.try_init()
    } else {
        log.without_time().try_init()
    };
}
