//! Where `event`, `watch` and `plan` get a policy: the verified cached bundle (through
//! the agent configuration) or an unsigned local tree ([`PolicySource`]), with the
//! root, state directory and facts of a [`Scope`]; and [`EventError`], why any of
//! them could not run.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;

use tenet_policies::facts::FactError;
use tenet_policies::{Diagnostics, Facts, Policy};

use crate::config::{Config, ConfigError};
use crate::exit::ExitCode;
use crate::failover;
use crate::failover::journal::JournalError;
use crate::fsops::Root;
use crate::lock::LockError;
use crate::report::Collect;
use crate::sync::trusted::{BundleError, cached_tree};

/// Where the plans come from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// The verified bundle cached by `run`, found through this agent configuration.
    Config(PathBuf),
    /// An unsigned local policy tree (tests, simulation), as `apply` takes it.
    Policy(PathBuf),
}

/// The root, state directory and facts a command works with.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Where the plans come from.
    pub source: PolicySource,
    /// The root; default: the configuration's, or `/` with a local tree.
    pub root: Option<PathBuf>,
    /// The state directory; default: the configuration's, or `ROOT/var/lib/tenet`.
    pub state_dir: Option<PathBuf>,
    /// `KEY=VALUE` fact overrides, applied last.
    pub facts: Vec<String>,
}

/// Why an event did not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The facts name a member the policy does not have; nothing was run.
    #[error(transparent)]
    UnknownMember(#[from] tenet_policies::UnknownMember),
    /// A `--fact` override is malformed.
    #[error("bad --fact")]
    Fact(#[from] FactError),
    /// The id cannot name a journal, or the journal is unusable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The id was used for another event.
    #[error("event id {id} was used for event {was}, not {now}; choose another id")]
    IdReused {
        /// The id.
        id: String,
        /// The event its journal is about.
        was: String,
        /// The event asked for now.
        now: String,
    },
    /// An earlier run of this id was interrupted; nothing was run.
    #[error("event {event} (id {id}) {at}; not re-run; pass --resume to continue", at = interruption)]
    Interrupted {
        /// The id.
        id: String,
        /// The event.
        event: String,
        /// Where it stopped.
        interruption: Box<failover::journal::Interruption>,
    },
    /// The plans are not those the interrupted run started with.
    #[error(
        "the plans of event id {id} changed since its interrupted run (was {was}, now {now}); not resumed"
    )]
    PlansChanged {
        /// The id.
        id: String,
        /// The plans then.
        was: String,
        /// The plans now.
        now: String,
    },
    /// The agent configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cached bundle is missing, refused or unreadable.
    #[error(transparent)]
    Cache(#[from] BundleError),
    /// The policy tree is invalid.
    #[error("policy tree {} is invalid ({} errors); nothing was run", tree.display(), diagnostics.error_count())]
    InvalidPolicy {
        /// The tree.
        tree: PathBuf,
        /// Every problem found.
        diagnostics: Diagnostics,
    },
    /// The root is unusable.
    #[error("cannot use root {}", path.display())]
    Root {
        /// The root given.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The state directory cannot be created.
    #[error("cannot create the state directory {}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The run lock was not released in time, or is unusable.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// `watch` could not set up its signal handlers.
    #[error("cannot start watching")]
    Setup(#[source] std::io::Error),
}

impl EventError {
    /// Every problem of an invalid policy tree, printed before the error.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            Self::InvalidPolicy { diagnostics, .. } => Some(diagnostics),
            _ => None,
        }
    }

    /// The exit code this error ends the agent with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Fact(_) | Self::IdReused { .. } | Self::Journal(JournalError::BadId { .. }) => {
                ExitCode::Usage
            }
            Self::Interrupted { .. } => ExitCode::Interrupted,
            Self::PlansChanged { .. }
            | Self::Config(_)
            | Self::InvalidPolicy { .. }
            | Self::UnknownMember(_) => ExitCode::InvalidPolicy,
            Self::Cache(e) => e.exit_code(),
            Self::Lock(LockError::Held { .. }) => ExitCode::Locked,
            _ => ExitCode::Environment,
        }
    }
}

/// The configuration (if any), root and state directory of a scope.
#[derive(Debug)]
pub(crate) struct Place {
    pub(crate) config: Option<Config>,
    pub(crate) root: Root,
    pub(crate) state_dir: PathBuf,
}

impl Place {
    pub(crate) fn of(scope: &Scope) -> Result<Place, EventError> {
        let config = match &scope.source {
            PolicySource::Config(path) => Some(Config::load(path)?),
            PolicySource::Policy(_) => None,
        };
        let root_dir = scope
            .root
            .clone()
            .or_else(|| config.as_ref().map(|c| c.root.clone()))
            .unwrap_or_else(|| PathBuf::from("/"));
        let root = Root::new(&root_dir).map_err(|source| EventError::Root {
            path: root_dir.clone(),
            source,
        })?;
        let state_dir = scope
            .state_dir
            .clone()
            .or_else(|| config.as_ref().map(|c| c.state_dir.clone()))
            .unwrap_or_else(|| crate::config::default_state_dir(root.base()));
        Ok(Place {
            config,
            root,
            state_dir,
        })
    }

    pub(crate) fn create_state_dir(&self) -> Result<(), EventError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.state_dir)
            .map_err(|source| EventError::StateDir {
                path: self.state_dir.clone(),
                source,
            })
    }
}

/// A loaded policy and this member's facts.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) policy: Policy,
    pub(crate) facts: Facts,
    /// `bundle serial N` or `policy tree DIR`.
    pub(crate) source: String,
    /// The facts are another member's, not this machine's: its configured hostname,
    /// no addresses, and it holds only what the caller says.
    pub(crate) remote: bool,
    /// The tree the policy was loaded from, and its files when they are a cached
    /// bundle's: where steps read content known by its hash.
    pub(crate) tree: PathBuf,
    pub(crate) files: Option<crate::sync::cache::BundleFiles>,
}

impl Loaded {
    /// Where the steps' `file` promises read content known only by its hash.
    pub(crate) fn content_source(&self) -> Option<crate::converge::Source<'_>> {
        self.files.as_ref().map(|files| crate::converge::Source {
            tree: &self.tree,
            files,
        })
    }
}

/// Loads the plans of `scope` and the facts of `member` (default: this member),
/// `--fact` overrides last. Warnings go to `notes`.
///
/// When `member` is not this machine's member, nothing of this machine is used for
/// it: its hostname is the one the cluster config gives it, it has no addresses (so
/// it holds no package by address), and [`Loaded::remote`] says so.
pub(crate) fn load(
    scope: &Scope,
    place: &Place,
    member: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Loaded, EventError> {
    let mut facts = crate::facts::gather(&place.root);
    let mut member_facts = Vec::new();
    let (tree, files, source) = match (&scope.source, &place.config) {
        (PolicySource::Config(_), Some(config)) => {
            let mut warnings = Collect::default();
            let cached = cached_tree(config, member.unwrap_or(&config.member), &mut warnings)?;
            notes.extend(
                warnings
                    .warnings
                    .into_iter()
                    .map(|w| format!("warning: {w}")),
            );
            member_facts = cached.facts;
            (
                cached.files.tree(),
                Some(cached.files),
                format!("bundle serial {}", cached.serial),
            )
        }
        (PolicySource::Policy(tree), _) | (PolicySource::Config(tree), None) => (
            tree.clone(),
            None,
            format!("policy tree {}", tree.display()),
        ),
    };
    let loaded = match &files {
        Some(f) => tenet_policies::load_from(&tree, f),
        None => tenet_policies::load(&tree),
    };
    let policy = loaded.map_err(|diagnostics| EventError::InvalidPolicy {
        tree: tree.clone(),
        diagnostics,
    })?;
    // This machine's member: the configuration's, or as its facts say.
    let local = match &place.config {
        Some(config) => Some(config.member.clone()),
        None => {
            let mut mine = facts.clone();
            crate::facts::apply_overrides(&mut mine, &scope.facts)?;
            policy.member_of(&mine).map(|m| m.name.clone())
        }
    };
    let remote = member.is_some_and(|m| local.as_deref() != Some(m));
    if let (true, Some(m)) = (remote, member) {
        facts = Facts {
            hostname: policy
                .cluster
                .member(m)
                .map_or_else(|| m.to_string(), |x| x.hostname.clone()),
            os: facts.os,
            ..Facts::default()
        };
    }
    crate::facts::apply_overrides(&mut facts, &member_facts)?;
    crate::facts::apply_overrides(&mut facts, &scope.facts)?;
    if let Some(m) = member {
        facts.member = Some(m.to_string());
    }
    policy.check_member(&facts)?;
    Ok(Loaded {
        policy,
        facts,
        source,
        remote,
        tree,
        files,
    })
}
