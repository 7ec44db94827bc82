//! `tenet-agent`: parse the command line, run the library, map the outcome to an exit code.
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the binary's entry point is its output module"
)]

use std::io::{self, IsTerminal};
use std::process;

use clap::Parser;
use tenet_agent::apply::{ApplyError, ApplyOptions, apply};
use tenet_agent::cli::{
    ApplyArgs, Cli, Command, DaemonArgs, EventArgs, ExitCode, PlanCommand, RunArgs, SourceArgs,
    WatchArgs,
};
use tenet_agent::converge::{Diffs, Mode};
use tenet_agent::event::{EventError, Scope, Source};
use tenet_agent::report::{Human, JsonLines, Reporter};

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let code = match cli.command {
        Command::Check { tree } => check(&tree),
        Command::Apply(args) => run_apply(args),
        Command::Run(args) => run(args),
        Command::Daemon(args) => daemon(args),
        Command::Event(args) => process::exit(run_event(args)),
        Command::Plan(cmd) => plan(cmd),
        Command::Watch(args) => watch(args),
        Command::Demo { keep } => demo(keep),
        Command::Push(args) => push(args),
    };
    process::exit(code as i32);
}

fn check(tree: &std::path::Path) -> ExitCode {
    match tenet_policies::load(tree) {
        Ok(policy) => {
            print!("{}", policy.warnings);
            println!(
                "{}: valid: {} promises, {} plans, {} members, {} packages",
                tree.display(),
                policy.promises.len(),
                policy.plans.len(),
                policy.cluster.members.len(),
                policy.cluster.packages.len()
            );
            ExitCode::Success
        }
        Err(diags) => {
            print!("{diags}");
            println!(
                "{}: invalid: {} errors",
                tree.display(),
                diags.error_count()
            );
            ExitCode::InvalidPolicy
        }
    }
}

fn run_apply(args: ApplyArgs) -> ExitCode {
    let opts = ApplyOptions {
        tree: args.tree,
        files: None,
        root: args.root,
        state_dir: args.state_dir,
        mode: if args.dry_run {
            Mode::DryRun
        } else {
            Mode::Apply
        },
        diffs: if args.diff { Diffs::Keep } else { Diffs::Skip },
        facts: args.facts,
        lock_timeout: args.lock_timeout,
        rehash: args.rehash,
    };
    // Buffered: a run of 10,000 promises is one write, not 10,000; the summary flushes.
    let stdout = io::BufWriter::new(io::stdout().lock());
    let mut reporter: Box<dyn Reporter> = if args.json {
        Box::new(JsonLines::new(stdout, args.diff))
    } else {
        Box::new(Human::new(stdout, args.diff))
    };
    match apply(&opts, reporter.as_mut()) {
        Ok(summary) if summary.all_ok() => ExitCode::Success,
        Ok(_) => ExitCode::PromisesFailed,
        Err(ApplyError::InvalidPolicy { tree, diagnostics }) => {
            eprint!("{diagnostics}");
            eprintln!(
                "error: policy tree {} is invalid ({} errors); nothing was changed",
                tree.display(),
                diagnostics.error_count()
            );
            ExitCode::InvalidPolicy
        }
        Err(e @ ApplyError::Fact(_)) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::Usage
        }
        Err(e @ ApplyError::Lock(tenet_agent::lock::LockError::Held { .. })) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::Locked
        }
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::Environment
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    use tenet_agent::run::RunOptions;
    let opts = RunOptions {
        config: args.config,
        mode: if args.dry_run {
            Mode::DryRun
        } else {
            Mode::Apply
        },
        diffs: if args.diff { Diffs::Keep } else { Diffs::Skip },
        classes: args.classes,
        lock_timeout: args.lock_timeout,
        rehash: args.rehash,
        deadline: args.deadline,
        degraded_ok: args.degraded_ok,
    };
    let stdout = io::BufWriter::new(io::stdout().lock());
    let mut reporter: Box<dyn Reporter> = if args.json {
        Box::new(JsonLines::new(stdout, args.diff))
    } else {
        Box::new(Human::new(stdout, args.diff))
    };
    let result = tenet_agent::run::run(&opts, reporter.as_mut());
    drop(reporter);
    run_outcome(&result, opts.degraded_ok)
}

/// Prints how a run ended (errors on stderr) and its exit code.
fn run_outcome(
    result: &Result<tenet_agent::run::RunReport, tenet_agent::run::RunError>,
    degraded_ok: bool,
) -> ExitCode {
    use tenet_agent::run::RunError;
    let code = tenet_agent::run::exit_code(result, degraded_ok);
    match result {
        Ok(report) => {
            if let Some(why) = &report.trust_refused {
                eprintln!(
                    "error: trust refused: {}; enforced the last good bundle (serial {})",
                    tenet_agent::escape::printable_lines(why),
                    report.serial
                );
            }
        }
        Err(RunError::Apply(ApplyError::InvalidPolicy { tree, diagnostics })) => {
            eprint!("{diagnostics}");
            eprintln!(
                "error: policy tree {} is invalid ({} errors); nothing was changed",
                tree.display(),
                diagnostics.error_count()
            );
        }
        Err(e) => eprintln!("error: {}", chain(e)),
    }
    code
}

fn daemon(args: DaemonArgs) -> ExitCode {
    use tenet_agent::daemon::{Schedule, daemon};
    use tenet_agent::run::RunOptions;
    let opts = RunOptions {
        config: args.config,
        mode: Mode::Apply,
        diffs: Diffs::Skip,
        classes: Vec::new(),
        lock_timeout: tenet_agent::run::DEFAULT_LOCK_TIMEOUT,
        rehash: false,
        deadline: args.deadline,
        degraded_ok: false,
    };
    let schedule = Schedule {
        interval: args.interval,
        splay: args.splay,
        rehash_every: args.rehash_every,
    };
    let json = args.json;
    let make = move || -> Box<dyn Reporter> {
        // Line-buffered stdout: each event shows as it happens.
        if json {
            Box::new(JsonLines::new(io::stdout(), false))
        } else {
            Box::new(Human::new(io::stdout(), false))
        }
    };
    match daemon(&opts, &schedule, &make, &|r| {
        run_outcome(r, false);
    }) {
        Ok(_) => ExitCode::Success,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::Environment
        }
    }
}

fn scope(s: SourceArgs) -> Scope {
    let source = match (s.policy, s.config) {
        (Some(tree), _) => Source::Policy(tree),
        (None, Some(config)) => Source::Config(config),
        (None, None) => Source::Config(tenet_agent::config::DEFAULT_CONFIG.into()),
    };
    Scope {
        source,
        root: s.root,
        state_dir: s.state_dir,
        facts: s.facts,
    }
}

/// Prints why an event, plan or watch command could not run, and its exit code.
fn event_error(e: &EventError) -> ExitCode {
    match e {
        EventError::InvalidPolicy { tree, diagnostics } => {
            eprint!("{diagnostics}");
            eprintln!(
                "error: policy tree {} is invalid ({} errors); nothing was run",
                tree.display(),
                diagnostics.error_count()
            );
        }
        EventError::Interrupted { .. } => eprintln!("{}", chain(e)),
        _ => eprintln!("error: {}", chain(e)),
    }
    e.exit_code()
}

/// The exit code of `event`: a replay exits with the earlier run's code.
fn run_event(args: EventArgs) -> i32 {
    use tenet_agent::event::{EventOptions, Resume, event, event_from};
    let ev = match event_from(args.kind.name(), &args.name) {
        Ok(e) => e,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::Usage as i32;
        }
    };
    let opts = EventOptions {
        event: ev,
        id: args.id,
        resume: if args.resume {
            Resume::Continue
        } else {
            Resume::Refuse
        },
        scope: scope(args.source),
        lock_timeout: args.lock_timeout,
    };
    // Line-buffered stdout: each step shows as it ends, which an operator watching a
    // failover wants.
    let mut reporter: Box<dyn tenet_agent::report::StepReporter> = if args.json {
        Box::new(JsonLines::new(io::stdout(), false))
    } else {
        Box::new(Human::new(io::stdout(), false))
    };
    match event(&opts, reporter.as_mut()) {
        Ok(report) => i32::from(report.exit),
        Err(e) => event_error(&e) as i32,
    }
}

fn plan(cmd: PlanCommand) -> ExitCode {
    use tenet_agent::simulate::{ShowError, ShowOptions, SimulateOptions, show, simulate};
    let mut out = io::stdout().lock();
    let result = match cmd {
        PlanCommand::Show { member, source } => show(
            &ShowOptions {
                scope: scope(source),
                member,
            },
            &mut out,
        ),
        PlanCommand::Simulate {
            member,
            event,
            holds,
            source,
        } => simulate(
            &SimulateOptions {
                scope: scope(source),
                member,
                event,
                holds,
            },
            &mut out,
        ),
    };
    match result {
        Ok(()) => ExitCode::Success,
        Err(ShowError::Load(e)) => event_error(&e),
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::Environment
        }
    }
}

fn push(args: tenet_agent::cli::PushArgs) -> ExitCode {
    use tenet_agent::push::{
        PushError, PushExit, PushHuman, PushJson, PushOptions, PushReporter, Targets,
    };
    let opts = PushOptions {
        config: args.config,
        targets: if args.all {
            Targets::All
        } else {
            Targets::Members(args.members)
        },
        mode: if args.dry_run {
            tenet_keys::runreq::RunMode::DryRun
        } else {
            tenet_keys::runreq::RunMode::Apply
        },
        classes: args.classes,
        parallel: usize::from(args.parallel),
        timeout: args.timeout,
        key: args.key,
    };
    let mut reporter: Box<dyn PushReporter> = if args.json {
        Box::new(PushJson::new(io::stdout()))
    } else {
        Box::new(PushHuman::new(io::stdout(), io::stdout().is_terminal()))
    };
    match tenet_agent::push::push(&opts, reporter.as_mut()) {
        Ok(report) => match report.exit() {
            PushExit::AllOk => ExitCode::Success,
            PushExit::SomeFailed => ExitCode::PromisesFailed,
            PushExit::SomeNotRun => ExitCode::PushIncomplete,
        },
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            match e {
                PushError::Config(_) | PushError::Policy { .. } => ExitCode::InvalidPolicy,
                PushError::NoKey { .. } | PushError::NoTargets => ExitCode::Usage,
                PushError::Bundle(
                    tenet_agent::run::RunError::NoMaster(_)
                    | tenet_agent::run::RunError::NoCache { .. },
                ) => ExitCode::NoMaster,
                PushError::Bundle(tenet_agent::run::RunError::Trust(_)) => ExitCode::TrustRefused,
                _ => ExitCode::Environment,
            }
        }
    }
}

fn watch(args: WatchArgs) -> ExitCode {
    use tenet_agent::event::{WatchOptions, watch};
    let opts = WatchOptions {
        package: args.package.clone(),
        scope: scope(args.source),
        lock_timeout: args.lock_timeout,
    };
    let package = args.package;
    let mut on_round = |r: &tenet_agent::event::Round| match &r.outcome {
        Ok(o) if o.all_ok() => println!(
            "{package} round {}: ok: {}, {} ok ({} ms)",
            r.number,
            tenet_agent::report::counted(o.plans, "plan"),
            tenet_agent::report::counted(o.ok, "step"),
            r.duration_ms
        ),
        Ok(o) => println!(
            "{package} round {}: failed at {} ({} ms)",
            r.number,
            tenet_agent::escape::printable(o.first_failure.as_deref().unwrap_or("a step")),
            r.duration_ms
        ),
        Err(why) => println!(
            "{package} round {}: did not run: {}",
            r.number,
            tenet_agent::escape::printable_lines(&why.to_string())
        ),
    };
    let mut on_warning = |w: &str| println!("{}", tenet_agent::escape::printable_lines(w));
    match watch(&opts, &mut on_warning, &mut on_round) {
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
    println!("Sandbox: {}", dir.path().display());
    println!(
        "Policy:  the shipped dce-cluster example, applied as member alpha (which holds the dce package)"
    );
    println!();
    println!("== first run: converge the sandbox ==");
    let mut human = Human::new(io::stdout(), true);
    let result = tenet_agent::demo::run(dir.path(), &mut human, &mut || {
        println!();
        println!("== second run: nothing should be left to do ==");
    });
    let code = match result {
        Ok(run) if run.first.all_ok() && run.second.all_ok() && run.second.repaired == 0 => {
            println!();
            println!("The member converged, and the second run changed nothing.");
            ExitCode::Success
        }
        Ok(_) => ExitCode::PromisesFailed,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::Environment
        }
    };
    if keep {
        let kept = dir.keep();
        println!("Kept the sandbox at {}", kept.display());
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}
