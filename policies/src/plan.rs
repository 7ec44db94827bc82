//! Failover plans: ordered steps a member carries out when a package moves.
//!
//! A plan is bound to a trigger (a package starting, stopping or running here,
//! the owner reintegrating, the policy server moving), to one package and to the
//! cluster configurations it applies to. Its steps run strictly in order; the
//! first failed step stops the plan, and steps marked `always` still run.
//!
//! Plans are part of the signed bundle like every promise, so each member has
//! them before a failure and runs them with no master reachable.
//!
//! [`Event`] is what the HA engine reports; [`Policy::plans_for`](crate::Policy)
//! turns an event into the [`Selection`] of plans this member runs, with every
//! template expanded, and the reasons, so `plan simulate` and `event` share one
//! answer.

use std::fmt;
use std::time::Duration;

use crate::cond::Condition;
use crate::diag::Origin;
use crate::model::{Configuration, PromiseKind, Unresolved};
use crate::template::Template;

/// What a plan is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// The package is starting on this member (takeover, or its normal start).
    PackageStart,
    /// The package is stopping on this member.
    PackageStop,
    /// The package runs here: repeated every `every` while it does (lock migration).
    PackageRunning,
    /// The package's owner has returned and takes the package back (cascading,
    /// one-sided and mutual configurations only): runs on the owner before the start side.
    Reintegrate,
    /// The policy server's package moved; runs on every member.
    MasterMove,
}

impl Trigger {
    /// Every trigger with its name as written in `on = "..."`.
    pub const ALL: [(&'static str, Trigger); 5] = [
        ("package-start", Trigger::PackageStart),
        ("package-stop", Trigger::PackageStop),
        ("package-running", Trigger::PackageRunning),
        ("reintegrate", Trigger::Reintegrate),
        ("master-move", Trigger::MasterMove),
    ];

    /// The name as written in the policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::PackageStart => "package-start",
            Self::PackageStop => "package-stop",
            Self::PackageRunning => "package-running",
            Self::Reintegrate => "reintegrate",
            Self::MasterMove => "master-move",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[[plan]]`: a named, ordered list of steps bound to a trigger.
#[derive(Debug, Clone)]
pub struct Plan<S = Template> {
    /// Its name, unique in the policy.
    pub name: String,
    /// Where it was written.
    pub origin: Origin,
    /// When it runs.
    pub trigger: Trigger,
    /// The package it is about (for `master-move`, the policy server's package).
    pub package: String,
    /// The cluster configurations it applies to; the package's own must be among them.
    pub configurations: Vec<Configuration>,
    /// It starts or stops servers (DCE, DFS): refused on mutual-takeover packages.
    pub server: bool,
    /// Only on members where this holds (evaluated with the event's facts).
    pub when: Option<Condition>,
    /// For `package-running`: how often it repeats.
    pub every: Option<Duration>,
    /// The steps, in order.
    pub steps: Vec<Step<S>>,
}

/// One step of a plan.
#[derive(Debug, Clone)]
pub struct Step<S = Template> {
    /// Its name in reports and the journal: `name`, or `TYPE:TARGET`.
    pub name: String,
    /// Where it was written.
    pub origin: Origin,
    /// Runs even after an earlier step failed (restoring the hostname).
    pub always: bool,
    /// Only under these configurations of the plan's package; `None` is all.
    pub configurations: Option<Vec<Configuration>>,
    /// Only where this holds.
    pub when: Option<Condition>,
    /// What it does.
    pub action: Action<S>,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action<S = Template> {
    /// Keep a promise (a command with its timeout, a file, an absent path, a copy,
    /// a hostname, ...), converged exactly as a policy run would.
    Promise(PromiseKind<S>),
    /// Remember this member's hostname in the event's journal.
    HostnameSave,
    /// Set the hostname back to what `HostnameSave` remembered.
    HostnameRestore,
}

impl<S> Action<S> {
    /// The step type as written in `type = "..."`: `hostname-save`,
    /// `hostname-restore`, or the promise's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Promise(kind) => kind.type_name(),
            Self::HostnameSave => "hostname-save",
            Self::HostnameRestore => "hostname-restore",
        }
    }
}

/// What the HA engine reports to `tenet-agent event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The package is starting on this member.
    PackageStart(String),
    /// The package is stopping on this member.
    PackageStop(String),
    /// The package runs on this member (one round of its `package-running` plans).
    PackageRunning(String),
    /// A member joined (or rejoined) the cluster.
    NodeUp(String),
    /// A member left the cluster.
    NodeDown(String),
    /// The policy server's package moved to the named member.
    MasterMove(String),
}

/// Why a text is not an event (`KIND:NAME`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventParseError {
    /// No `:` between the kind and the name.
    #[error("`{text}` is not KIND:NAME, such as package-start:dce")]
    NotKindName {
        /// The text given.
        text: String,
    },
    /// The name after the kind is empty.
    #[error("{kind}: the package or member name is empty")]
    EmptyName {
        /// The kind given.
        kind: String,
    },
    /// The kind is none of [`Event::KINDS`].
    #[error("unknown event `{kind}`; expected one of {}", Event::KINDS.join(", "))]
    UnknownKind {
        /// The kind given.
        kind: String,
    },
}

impl Event {
    /// Every event kind as written on the command line and in journals.
    pub const KINDS: [&'static str; 6] = [
        "package-start",
        "package-stop",
        "package-running",
        "node-up",
        "node-down",
        "master-move",
    ];

    /// An event from its kind and the package or member it names.
    pub fn from_parts(kind: &str, name: &str) -> Result<Event, EventParseError> {
        if name.is_empty() {
            return Err(EventParseError::EmptyName { kind: kind.into() });
        }
        let n = name.to_string();
        Ok(match kind {
            "package-start" => Event::PackageStart(n),
            "package-stop" => Event::PackageStop(n),
            "package-running" => Event::PackageRunning(n),
            "node-up" => Event::NodeUp(n),
            "node-down" => Event::NodeDown(n),
            "master-move" => Event::MasterMove(n),
            other => return Err(EventParseError::UnknownKind { kind: other.into() }),
        })
    }
}

/// The event as written on the command line and in journals: `package-start:dce`.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name) = match self {
            Event::PackageStart(n) => ("package-start", n),
            Event::PackageStop(n) => ("package-stop", n),
            Event::PackageRunning(n) => ("package-running", n),
            Event::NodeUp(n) => ("node-up", n),
            Event::NodeDown(n) => ("node-down", n),
            Event::MasterMove(n) => ("master-move", n),
        };
        write!(f, "{kind}:{name}")
    }
}

/// `KIND:NAME` (`package-start:dce`, `node-up:alpha`) as an event.
impl std::str::FromStr for Event {
    type Err = EventParseError;

    fn from_str(text: &str) -> Result<Event, EventParseError> {
        let (kind, name) = text
            .split_once(':')
            .ok_or_else(|| EventParseError::NotKindName { text: text.into() })?;
        Event::from_parts(kind, name)
    }
}

/// The plans one member runs for one event, resolved for that member.
#[derive(Debug)]
pub struct Selection {
    /// The member the facts identify.
    pub member: Option<String>,
    /// Plans to run, in order.
    pub runs: Vec<PlanRun>,
    /// What the configuration decided and why, for the report (e.g. "rotating:
    /// the returning member takes the standby role; no reintegration").
    pub notes: Vec<String>,
}

/// One plan to run, with its steps resolved.
#[derive(Debug)]
pub struct PlanRun {
    /// The plan's name.
    pub plan: String,
    /// Where it was written.
    pub origin: Origin,
    /// The trigger it runs under.
    pub trigger: Trigger,
    /// The package.
    pub package: String,
    /// Why it runs here (for `plan simulate`).
    pub why: String,
    /// Its steps that apply here, in order: expanded, or why not (a missing fact).
    pub steps: Vec<Result<Step<String>, Unresolved>>,
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    #[test]
    fn events_parse_and_print_the_same() {
        for kind in Event::KINDS {
            let text = format!("{kind}:dce");
            assert_eq!(Event::from_str(&text).unwrap().to_string(), text);
        }
        assert!(Event::from_str("package-start").is_err());
        assert!(Event::from_str("package-start:").is_err());
        assert!(
            Event::from_str("reboot:dce")
                .unwrap_err()
                .to_string()
                .contains("expected one of")
        );
    }
}
