//! `tenet-agent`: parse the command line, run the library, map the outcome to an exit code.
#![expect(
    clippy::print_stderr,
    reason = "the binary's entry point is its output module"
)]

use std::io::{self, IsTerminal, Write};
use std::process;

use clap::Parser;
use tenet_agent::cli::{
    Cli, Command, DaemonArgs, EventArgs, JoinArgs, PlanCommand, PushArgs, WatchArgs,
};
use tenet_agent::exit::ExitCode;
use tenet_agent::ops::event::EventError;
use tenet_agent::ops::push::{PushHuman, PushJson, PushReporter};
use tenet_agent::ops::run::{RunError, RunReport};
use tenet_agent::ops::simulate::ShowError;
use tenet_agent::report::{Human, JsonLines, Reporter, StepReporter};
use tenet_policies::Diagnostics;

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let code = match cli.command {
        Command::Check { tree, json } => tenet_agent::ops::check::check(&tree, json, &mut Stdout),
        Command::Apply(args) => {
            let mut reporter = reporter(args.json, args.diff);
            match tenet_agent::ops::apply::apply(&args.options(), reporter.as_mut()) {
                Ok(summary) if summary.all_ok() => ExitCode::Success,
                Ok(_) => ExitCode::PromisesFailed,
                Err(e) => fail(&e, e.diagnostics(), e.exit_code()),
            }
        }
        Command::Run(args) => {
            let opts = args.options();
            let mut reporter = reporter(args.json, args.diff);
            let result = tenet_agent::ops::run::run(&opts, reporter.as_mut());
            drop(reporter);
            run_outcome(&result, opts.degraded_ok)
        }
        Command::Daemon(args) => daemon(&args),
        Command::Event(args) => process::exit(event(args)),
        Command::Plan(cmd) => plan(cmd),
        Command::Watch(args) => watch(args),
        Command::Demo { keep } => demo(keep),
        Command::Push(args) => push(args),
        Command::Join(args) => join(&args),
    };
    process::exit(code.into());
}

/// A reporter on stdout, line-buffered: each promise shows as it is judged, not all at
/// once when the summary is written (a long command step would hide what came before).
fn reporter(json: bool, diff: bool) -> Box<dyn Reporter> {
    let stdout = io::stdout();
    if json {
        Box::new(JsonLines::new(stdout, diff))
    } else {
        Box::new(Human::new(stdout, diff))
    }
}

/// Prints an error (after the diagnostics of an invalid policy tree) and returns `code`.
fn fail(e: &dyn std::error::Error, diagnostics: Option<&Diagnostics>, code: ExitCode) -> ExitCode {
    if let Some(diagnostics) = diagnostics {
        eprint!("{diagnostics}");
    }
    eprintln!("error: {}", chain(e));
    code
}

/// Writes to stdout; a reader that has gone (`check | head -1`) ends the program quietly,
/// with the status a shell gives a command killed by `SIGPIPE` (128 + 13).
macro_rules! say {
    ($($arg:tt)*) => {
        emit(format_args!($($arg)*))
    };
}

fn emit(text: std::fmt::Arguments<'_>) {
    let _ = Stdout.write_fmt(text).and_then(|()| Stdout.flush());
}

/// The exit status when stdout's reader has gone: 128 + `SIGPIPE`.
const STDOUT_CLOSED: i32 = 141;

/// stdout for writers that take `&mut dyn Write`: a closed pipe ends the program quietly
/// (141), any other write error ends it with a message, so callers never see an error.
struct Stdout;

impl Stdout {
    fn ended(e: &io::Error) -> ! {
        if e.kind() == io::ErrorKind::BrokenPipe {
            process::exit(STDOUT_CLOSED);
        }
        eprintln!("error: cannot write the output: {e}");
        process::exit(ExitCode::Environment.into());
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().write(buf).map_err(|e| Self::ended(&e))
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush().map_err(|e| Self::ended(&e))
    }
}

/// Prints how a run ended (errors on stderr) and its exit code.
fn run_outcome(result: &Result<RunReport, RunError>, degraded_ok: bool) -> ExitCode {
    match result {
        Ok(report) => {
            if let Some(why) = &report.trust_refused {
                eprintln!(
                    "error: trust refused: {}; enforced the last good bundle (serial {})",
                    tenet_agent::escape::printable_lines(why),
                    report.serial
                );
            }
            report.exit_code(degraded_ok)
        }
        Err(e) => fail(e, e.diagnostics(), e.exit_code()),
    }
}

fn daemon(args: &DaemonArgs) -> ExitCode {
    let json = args.json;
    let make = move || -> Box<dyn Reporter> {
        // Line-buffered stdout: each event shows as it happens.
        if json {
            Box::new(JsonLines::new(io::stdout(), false))
        } else {
            Box::new(Human::new(io::stdout(), false))
        }
    };
    let outcome = |r: &Result<RunReport, RunError>| {
        run_outcome(r, false);
    };
    match tenet_agent::ops::daemon::daemon(&args.options(), &args.schedule(), &make, &outcome) {
        Ok(_) => ExitCode::Success,
        Err(e) => fail(&e, None, e.exit_code()),
    }
}

/// Prints why an event, plan or watch command could not run, and its exit code.
fn event_error(e: &EventError) -> ExitCode {
    if let EventError::Interrupted { .. } = e {
        eprintln!("{}", chain(e));
        return e.exit_code();
    }
    fail(e, e.diagnostics(), e.exit_code())
}

/// The exit code of `event`: a replay exits with the earlier run's code.
fn event(args: EventArgs) -> i32 {
    let json = args.json;
    let opts = match args.options() {
        Ok(o) => o,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::Usage.into();
        }
    };
    // Line-buffered stdout: each step shows as it ends, which an operator watching a
    // failover wants.
    let mut reporter: Box<dyn StepReporter> = if json {
        Box::new(JsonLines::new(io::stdout(), false))
    } else {
        Box::new(Human::new(io::stdout(), false))
    };
    match tenet_agent::ops::event::event(&opts, reporter.as_mut()) {
        Ok(report) => i32::from(report.exit),
        Err(e) => event_error(&e).into(),
    }
}

fn plan(cmd: PlanCommand) -> ExitCode {
    match cmd.run(&mut io::stdout().lock()) {
        Ok(()) => ExitCode::Success,
        Err(ShowError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            process::exit(STDOUT_CLOSED)
        }
        Err(ShowError::Load(e)) => event_error(&e),
        Err(e) => fail(&e, None, e.exit_code()),
    }
}

fn push(args: PushArgs) -> ExitCode {
    let mut reporter: Box<dyn PushReporter> = if args.json {
        Box::new(PushJson::new(io::stdout()))
    } else {
        Box::new(PushHuman::new(io::stdout(), io::stdout().is_terminal()))
    };
    match tenet_agent::ops::push::push(&args.options(), reporter.as_mut()) {
        Ok(report) => report.exit_code(),
        Err(e) => fail(&e, None, e.exit_code()),
    }
}

fn join(args: &JoinArgs) -> ExitCode {
    let opts = args.options();
    match tenet_agent::ops::join::join(&opts) {
        Ok(j) => {
            if j.key_made {
                say!("made node key {} ({})\n", j.keyid, opts.key.display());
            }
            say!(
                "join request for member {} (key {}) stored on {}; approval {}\n",
                j.member,
                j.keyid,
                opts.master,
                tenet_agent::escape::printable(&j.approval)
            );
            say!(
                "next: the administrator runs `tenet-keys approve {}` (or `approve --auto`) and signs a new serial; then `tenet-agent run`\n",
                j.member
            );
            ExitCode::Success
        }
        Err(e) => fail(&e, None, e.exit_code()),
    }
}

fn watch(args: WatchArgs) -> ExitCode {
    let json = args.json;
    let opts = args.options();
    let package = opts.package.clone();
    let mut on_round = |r: &tenet_agent::ops::watch::Round| {
        if json {
            r.write_json(&mut Stdout, &package);
        } else {
            say!("{}\n", r.line(&package));
        }
    };
    let mut on_warning = |w: &str| {
        if json {
            tenet_agent::ops::watch::write_warning(&mut Stdout, w);
        } else {
            say!("{}\n", tenet_agent::escape::printable_lines(w));
        }
    };
    match tenet_agent::ops::watch::watch(&opts, &mut on_warning, &mut on_round) {
        Ok(_) => ExitCode::Success,
        Err(e) => event_error(&e),
    }
}

fn demo(keep: bool) -> ExitCode {
    let dir = match tempfile::Builder::new().prefix("tenet-demo.").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot create a sandbox: {e}");
            return ExitCode::Environment;
        }
    };
    say!("Sandbox: {}\n", dir.path().display());
    say!(
        "Policy:  the shipped dce-cluster example, applied as member alpha (which holds the dce package)\n"
    );
    say!("\n");
    say!("== first run: converge the sandbox ==\n");
    let mut human = Human::new(io::stdout(), true);
    let result = tenet_agent::ops::demo::run(dir.path(), &mut human, &mut || {
        say!("\n");
        say!("== second run: nothing should be left to do ==\n");
    });
    let code = match result {
        Ok(run) if run.first.all_ok() && run.second.all_ok() && run.second.repaired == 0 => {
            say!("\n");
            say!("The member converged, and the second run changed nothing.\n");
            ExitCode::Success
        }
        Ok(_) => ExitCode::PromisesFailed,
        Err(e) => fail(&e, None, ExitCode::Environment),
    };
    if keep {
        let kept = dir.keep();
        say!("Kept the sandbox at {}\n", kept.display());
    }
    code
}

/// The error and its sources, joined by `: `, control characters shown escaped: an
/// error may quote a master's or a member's text (a parse error shows the offending
/// line).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    tenet_agent::escape::printable_lines(&s).into_owned()
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
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
