//! The command line: clap types (in the library so `--help` can be tested).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::exit::ExitCode;
use tenet_keys::runreq::RunMode;
use tenet_policies::plan::{Event, EventParseError};

use crate::converge::{Diffs, Mode};
use crate::exit::EXIT_CODES;
use crate::ops::apply::ApplyOptions;
use crate::ops::daemon::Schedule;
use crate::ops::event::{EventOptions, Resume};
use crate::ops::push::{PushOptions, Targets};
use crate::ops::run::RunOptions;
use crate::ops::simulate::{ShowError, ShowOptions, SimulateOptions, show, simulate};
use crate::ops::source::{PolicySource, Scope};
use crate::ops::watch::WatchOptions;

/// `--help`'s description: the package's, and where the grammar of DURATION values is.
const LONG_ABOUT: &str = "\
The tenet agent: converges a cluster member to its policy, idempotently and atomically

A DURATION (in options, agent.toml and policies alike) is whole numbers with units, largest
first: 500ms, 90s, 5m, 1h30m, 1d (docs/policy.md, Durations).";

/// tenet-agent keeps this cluster member configured as its policy says.
#[derive(Debug, Parser)]
#[command(
    name = "tenet-agent",
    version,
    about,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES,
    max_term_width = 100
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// Log what the agent does on stderr (repeat for more detail; RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// The agent's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a policy tree and print every problem as file:line:col: field: message.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// The policy tree (a directory of TOML files).
        tree: PathBuf,
        /// Print JSON Lines: {"type":"diagnostic",...} per problem, then {"type":"check",...}.
        #[arg(long)]
        json: bool,
    },
    /// Converge this member to a local policy tree.
    ///
    /// Each promise is observed, planned, applied atomically and verified; a second
    /// apply over a converged member changes nothing. Use --root to converge a
    /// sandbox instead of this machine, and --dry-run to see what would change.
    #[command(after_help = EXIT_CODES)]
    Apply(ApplyArgs),
    /// Fetch the signed policy from the master, verify it, cache it and converge to it.
    ///
    /// The bundle is fetched over mutual TLS (the master's key pinned by the trusted
    /// root), checked (roots, timestamp, manifest, every blob) and cached; this member
    /// then converges to it. If no master answers, the cached bundle is enforced.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Run periodically: `run` every --interval plus a random --splay, one run at a time.
    ///
    /// SIGHUP starts a run now (agent.toml is re-read by every run); SIGTERM or
    /// SIGINT lets a run in progress finish, then exits 0. A failed run is reported
    /// on stderr and the daemon goes on.
    #[command(after_help = EXIT_CODES)]
    Daemon(DaemonArgs),
    /// Run this member's failover plans for an event the HA engine reports.
    ///
    /// The plans bound to the event are selected for this member and run strictly in
    /// order, each step finishing before the next; the first failed step stops them
    /// (steps marked `always`, such as restoring the hostname, still run). Each step
    /// is journalled in STATE/events/ID.jsonl before it runs, so an event id runs at
    /// most once: running the same --id again prints the earlier result and exits
    /// with its code; if that run was interrupted (a crash), it is reported with exit
    /// 8 and continued only with --resume. Plans come from the cached verified bundle
    /// (no master is asked), or from --policy TREE. A periodic run holding the run lock
    /// is waited for, up to --lock-timeout.
    #[command(after_help = EXIT_CODES)]
    Event(EventArgs),
    /// Show the failover plans, or simulate what a member would do on an event.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Run a package's package-running plans every `every` until SIGTERM or SIGINT.
    ///
    /// For a Serviceguard service_cmd or an OCF agent: one line per round; a round
    /// with a failed step says which and why, and the next round runs all the same.
    /// SIGTERM or SIGINT lets the round in progress finish, then exits 0. Rounds are
    /// not journalled.
    #[command(after_help = EXIT_CODES)]
    Watch(WatchArgs),
    /// Ask members to converge now: a signed run request to each member's listener.
    ///
    /// Members and their addresses come from this machine's verified cached bundle
    /// (run `tenet-agent run` first): the inventory pins each member's key, the cluster
    /// config gives its boot address, on port 8740 (push.port and push.addresses
    /// in agent.toml override). A member not in the inventory (revoked, never enrolled)
    /// is not contacted. Each request is signed with the administrator's key (--key or
    /// push.key), which must be an admin key of the root with a scope covering the
    /// member and the classes; it says only "converge now" (as a dry run with
    /// --dry-run), never a command or policy. The member streams its run back; a
    /// summary table ends the output (--json: JSON Lines instead).
    ///
    /// Exit status: 0 every run ok; 1 some run failed (and every member ran); 9 some
    /// member unreachable, refused, or busy with another run (wins over 1).
    #[command(after_help = EXIT_CODES)]
    Push(PushArgs),
    /// Ask the master to enrol this member, with an administrator's one-time token.
    ///
    /// Checks that the trusted root file's fingerprint is the one given (as `tenet-keys
    /// init` or `tenet-keys fingerprint` printed it), makes the node key if there is none,
    /// connects to the master over TLS pinned to the policy server key that root names,
    /// and presents the token (from `tenet-keys join-token`); the node key proves itself
    /// in the handshake. The master must have `[serve] join_dir` set. It stores the
    /// request; once an administrator runs `tenet-keys approve` and signs the next serial,
    /// `tenet-agent run` (with this root as agent.toml's trusted_root) fetches it.
    ///
    /// Exit status: 0 the request is stored; 2 bad token or fingerprint syntax; 4 trust
    /// refused (fingerprint mismatch, server key not pinned, token refused by the master);
    /// 5 the master did not answer; 7 the node key cannot be read or written.
    #[command(after_help = EXIT_CODES)]
    Join(JoinArgs),
    /// Apply the shipped dce-cluster example to a throwaway sandbox, twice.
    ///
    /// The first run shows every change (with diffs); the second shows that nothing
    /// is left to do. Nothing outside the sandbox is touched.
    Demo {
        /// Keep the sandbox and print where it is.
        #[arg(long)]
        keep: bool,
    },
}

/// What the HA engine reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventKind {
    /// The package is starting on this member (takeover, or its normal start).
    PackageStart,
    /// The package is stopping on this member.
    PackageStop,
    /// The package runs here: one round of its package-running plans.
    PackageRunning,
    /// A member joined or rejoined the cluster (reintegration).
    NodeUp,
    /// A member left the cluster.
    NodeDown,
    /// The policy server's package moved to the named member.
    MasterMove,
}

impl EventKind {
    /// The kind as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::PackageStart => "package-start",
            Self::PackageStop => "package-stop",
            Self::PackageRunning => "package-running",
            Self::NodeUp => "node-up",
            Self::NodeDown => "node-down",
            Self::MasterMove => "master-move",
        }
    }
}

/// Where plans come from and where they act, shared by `event`, `plan` and `watch`.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// The agent's configuration: plans come from its cached verified bundle
    /// [default: /etc/tenet/agent.toml].
    #[arg(long, value_name = "FILE", conflicts_with = "policy")]
    pub config: Option<PathBuf>,
    /// Use this unsigned local policy tree instead (tests, simulation).
    #[arg(long, value_name = "TREE")]
    pub policy: Option<PathBuf>,
    /// Resolve every absolute path beneath this directory [default: the configuration's
    /// root, or /].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// State directory (run lock, journals) [default: the configuration's, or
    /// ROOT/var/lib/tenet].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Override a fact: hostname, member, addresses (a,b), classes (a,b), holds (pkg,...), os, or any KEY for ${fact.KEY}.
    #[arg(long = "fact", value_name = "KEY=VALUE")]
    pub facts: Vec<String>,
}

/// Options of `event`.
#[derive(Debug, Args)]
pub struct EventArgs {
    /// What happened.
    #[arg(value_enum)]
    pub kind: EventKind,
    /// The package (or, for node-up, node-down and master-move, the member) it names.
    pub name: String,
    /// The event's id: it runs at most once [default: generated from the time and pid,
    /// and printed].
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Continue an interrupted run of this --id from the step it was in.
    #[arg(long, requires = "id")]
    pub resume: bool,
    /// Print JSON Lines: {"type":"step",...} per step, then {"type":"event",...}.
    #[arg(long)]
    pub json: bool,
    /// Wait this long for a run in progress to release the run lock (30s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub lock_timeout: std::time::Duration,
    /// Source, root, state directory and facts.
    #[command(flatten)]
    pub source: SourceArgs,
}

/// `plan` subcommands.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Print every plan with its trigger, package, configurations and steps, resolved
    /// for a member.
    Show {
        /// Resolve for this member [default: this member].
        #[arg(long, value_name = "MEMBER")]
        member: Option<String>,
        /// Print JSON Lines: {"type":"note",...}, then {"type":"plan",...} per plan.
        #[arg(long)]
        json: bool,
        /// Source, root, state directory and facts.
        #[command(flatten)]
        source: SourceArgs,
    },
    /// What would MEMBER do if EVENT happened now? Changes nothing, runs no command.
    ///
    /// Prints the selection's notes, the plans and their steps in order, and for each
    /// promise step whether it would change something beneath --root right now.
    Simulate {
        /// The member whose view is simulated.
        #[arg(long, value_name = "MEMBER")]
        member: String,
        /// KIND:NAME, such as package-start:dce or node-up:alpha.
        #[arg(long, value_name = "KIND:NAME", value_parser = event)]
        event: tenet_policies::plan::Event,
        /// The packages MEMBER holds at that moment [default: as this machine's addresses
        /// say, when MEMBER is this machine's member; nothing for another member].
        #[arg(long, value_name = "PKG,...", value_delimiter = ',')]
        holds: Option<Vec<String>>,
        /// Print JSON Lines: {"type":"simulation",...}, notes, then {"type":"plan",...}
        /// per plan that would run.
        #[arg(long)]
        json: bool,
        /// Source, root, state directory and facts.
        #[command(flatten)]
        source: SourceArgs,
    },
}

/// Options of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The package whose package-running plans repeat.
    pub package: String,
    /// Print JSON Lines: {"type":"round",...} per round, {"type":"warning",...}.
    #[arg(long)]
    pub json: bool,
    /// Wait this long for a run in progress to release the run lock, each round.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub lock_timeout: std::time::Duration,
    /// Source, root, state directory and facts.
    #[command(flatten)]
    pub source: SourceArgs,
}

fn event(s: &str) -> Result<tenet_policies::plan::Event, String> {
    s.parse()
        .map_err(|e: tenet_policies::plan::EventParseError| e.to_string())
}

/// Options of `daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The agent's configuration.
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Time between the end of one run and the start of the next (90s, 5m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub interval: std::time::Duration,
    /// Up to this much more, at random, before each run, so members do not all
    /// fetch at once.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub splay: std::time::Duration,
    /// The first run, and a run once this long has passed since the last such run,
    /// read every managed file (as `run --rehash`) instead of trusting the stat cache
    /// (0s: never).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration)]
    pub rehash_every: std::time::Duration,
    /// Print JSON Lines for every run.
    #[arg(long)]
    pub json: bool,
    /// The most time each run spends on the master (as `run --deadline`).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub deadline: std::time::Duration,
}

/// Options of `join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The master's serving address, HOST or HOST:PORT (port 8741 by default).
    pub master: String,
    /// The join token (from `tenet-keys join-token`).
    #[arg(long)]
    pub token: String,
    /// The root file this member will trust (with its .sig beside it).
    #[arg(long = "trusted-root", value_name = "FILE")]
    pub trusted_root: PathBuf,
    /// The root's fingerprint, as the administrator gave it (SHA-256, 64 hex).
    #[arg(long = "expect-fingerprint", value_name = "FP")]
    pub expect_fingerprint: String,
    /// The node key; made (mode 0600) if missing.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/lib/tenet/localhost.key"
    )]
    pub key: PathBuf,
    /// The member name to ask for [default: the token's].
    #[arg(long)]
    pub member: Option<String>,
    /// How long to wait for the master.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub timeout: std::time::Duration,
}

impl JoinArgs {
    /// What `join` is asked to do.
    pub fn options(&self) -> crate::ops::join::JoinOptions {
        let master = if self
            .master
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !self.master.ends_with(']')
        {
            self.master.clone()
        } else {
            format!("{}:{}", self.master, crate::config::DEFAULT_PORT)
        };
        crate::ops::join::JoinOptions {
            master,
            token: self.token.clone(),
            trusted_root: self.trusted_root.clone(),
            expect_fingerprint: self.expect_fingerprint.clone(),
            key: self.key.clone(),
            member: self.member.clone(),
            timeout: self.timeout,
        }
    }
}

/// Options of `push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Members to push to (names from the cluster config).
    #[arg(
        value_name = "MEMBER",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub members: Vec<String>,
    /// Push to every member of the cached bundle's inventory.
    #[arg(long)]
    pub all: bool,
    /// The agent's configuration (state directory, the push table).
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Ask for dry runs: report what would change, change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Set a class for the runs (repeatable; the admin key's scope must allow it).
    #[arg(long = "class", value_name = "CLASS", value_parser = class_name)]
    pub classes: Vec<String>,
    /// Members contacted at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
    /// Limit on each member's whole run, connection included (30s, 10m).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub timeout: std::time::Duration,
    /// Print JSON Lines: every member's events, a line per member, a summary.
    #[arg(long)]
    pub json: bool,
    /// The administrator's key [default: push.key in agent.toml].
    #[arg(long, value_name = "ADMIN_KEY")]
    pub key: Option<PathBuf>,
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    tenet_keys::time::parse_duration(s).map_err(|e| e.to_string())
}

/// Options of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The policy tree (a directory of TOML files).
    pub tree: PathBuf,
    /// Resolve every absolute path of the policy beneath this directory.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// State directory (holds the run lock) [default: ROOT/var/lib/tenet].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Report the changes a real run would make, and make none.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Show a unified diff of every text file change.
    #[arg(long)]
    pub diff: bool,
    /// Print JSON Lines: one object per promise, then {"type":"summary",...}.
    #[arg(long)]
    pub json: bool,
    /// Override a fact: hostname, member, addresses (a,b), classes (a,b), holds (pkg,...), os, or any KEY for ${fact.KEY}.
    #[arg(long = "fact", value_name = "KEY=VALUE")]
    pub facts: Vec<String>,
    /// Wait this long for another run (watch, event, run) to release the run lock
    /// before giving up with exit 6; by default apply does not wait (30s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration)]
    pub lock_timeout: std::time::Duration,
    /// Read every managed file to compare it, instead of trusting the stat cache
    /// (STATE/stat-cache) for files whose inode, size, times, mode and owner have not
    /// changed since a run read them.
    #[arg(long)]
    pub rehash: bool,
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The agent's configuration.
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Fetch and verify, and report the changes a real run would make; cache nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Show a unified diff of every text file change.
    #[arg(long)]
    pub diff: bool,
    /// Print JSON Lines: one object per promise, then {"type":"summary",...}.
    #[arg(long)]
    pub json: bool,
    /// Set a class for this run, beside this member's inventory classes (repeatable;
    /// what a pushed run's classes become).
    #[arg(long = "class", value_name = "CLASS", value_parser = class_name)]
    pub classes: Vec<String>,
    /// Wait this long for another run (watch, event, apply) to release the run lock
    /// before giving up with exit 6 (0s: do not wait).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub lock_timeout: std::time::Duration,
    /// Read every managed file to compare it, instead of trusting the stat cache
    /// (STATE/stat-cache) for files whose inode, size, times, mode and owner have not
    /// changed since a run read them.
    #[arg(long)]
    pub rehash: bool,
    /// The most time spent on the master (connecting, roots, timestamp, manifest,
    /// blobs); past it the master counts as unreachable and the cached bundle is
    /// enforced (exit 10). The run lock is not held meanwhile.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub deadline: std::time::Duration,
    /// Exit 0 (or 1) instead of 10, 11 or 12 when the run converged from a cached
    /// bundle with the master unreachable, the bundle expired or no fresh timestamp;
    /// the warnings and last-run.json's "degraded" still say so.
    #[arg(long)]
    pub degraded_ok: bool,
}

fn class_name(s: &str) -> Result<String, String> {
    if tenet_keys::root::is_class_name(s) {
        Ok(s.to_string())
    } else {
        Err(
            "a class is 1 to 64 letters, digits, '_', '-' or '.', not starting with '-'"
                .to_string(),
        )
    }
}

fn mode(dry_run: bool) -> Mode {
    if dry_run { Mode::DryRun } else { Mode::Apply }
}

fn diffs(diff: bool) -> Diffs {
    if diff { Diffs::Keep } else { Diffs::Skip }
}

impl ApplyArgs {
    /// What `apply` is asked to do.
    pub fn options(&self) -> ApplyOptions {
        ApplyOptions {
            tree: self.tree.clone(),
            files: None,
            root: self.root.clone(),
            state_dir: self.state_dir.clone(),
            mode: mode(self.dry_run),
            diffs: diffs(self.diff),
            facts: self.facts.clone(),
            lock_timeout: self.lock_timeout,
            rehash: self.rehash,
            serial: None,
        }
    }
}

impl RunArgs {
    /// What `run` is asked to do.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            config: self.config.clone(),
            mode: mode(self.dry_run),
            diffs: diffs(self.diff),
            classes: self.classes.clone(),
            lock_timeout: self.lock_timeout,
            rehash: self.rehash,
            deadline: self.deadline,
            degraded_ok: self.degraded_ok,
        }
    }
}

impl DaemonArgs {
    /// What each of the daemon's runs is asked to do: apply, with the defaults of `run`.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            config: self.config.clone(),
            mode: Mode::Apply,
            diffs: Diffs::Skip,
            classes: Vec::new(),
            lock_timeout: crate::ops::run::DEFAULT_LOCK_TIMEOUT,
            rehash: false,
            deadline: self.deadline,
            degraded_ok: false,
        }
    }

    /// When the daemon runs.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.interval,
            splay: self.splay,
            rehash_every: self.rehash_every,
        }
    }
}

impl SourceArgs {
    /// Where plans come from: `--policy`, else `--config`, else the default configuration.
    pub fn scope(self) -> Scope {
        let source = match (self.policy, self.config) {
            (Some(tree), _) => PolicySource::Policy(tree),
            (None, Some(config)) => PolicySource::Config(config),
            (None, None) => PolicySource::Config(crate::config::DEFAULT_CONFIG.into()),
        };
        Scope {
            source,
            root: self.root,
            state_dir: self.state_dir,
            facts: self.facts,
        }
    }
}

impl EventArgs {
    /// What `event` is asked to do; `Err` names an empty package or member name.
    pub fn options(self) -> Result<EventOptions, EventParseError> {
        Ok(EventOptions {
            event: Event::from_parts(self.kind.name(), &self.name)?,
            id: self.id,
            resume: if self.resume {
                Resume::Continue
            } else {
                Resume::Refuse
            },
            scope: self.source.scope(),
            lock_timeout: self.lock_timeout,
        })
    }
}

impl WatchArgs {
    /// What `watch` is asked to do.
    pub fn options(self) -> WatchOptions {
        WatchOptions {
            package: self.package,
            scope: self.source.scope(),
            lock_timeout: self.lock_timeout,
        }
    }
}

impl PushArgs {
    /// What `push` is asked to do.
    pub fn options(self) -> PushOptions {
        PushOptions {
            config: self.config,
            targets: if self.all {
                Targets::All
            } else {
                Targets::Members(self.members)
            },
            mode: if self.dry_run {
                RunMode::DryRun
            } else {
                RunMode::Apply
            },
            classes: self.classes,
            parallel: usize::from(self.parallel),
            timeout: self.timeout,
            key: self.key,
        }
    }
}

impl PlanCommand {
    /// Runs `plan show` or `plan simulate`, writing what it finds to `out`.
    pub fn run(self, out: &mut dyn std::io::Write) -> Result<(), ShowError> {
        match self {
            Self::Show {
                member,
                json,
                source,
            } => show(
                &ShowOptions {
                    scope: source.scope(),
                    member,
                    json,
                },
                out,
            ),
            Self::Simulate {
                member,
                event,
                holds,
                json,
                source,
            } => simulate(
                &SimulateOptions {
                    scope: source.scope(),
                    member,
                    event,
                    holds,
                    json,
                },
                out,
            ),
        }
    }
}
