//! `service`: a systemd unit's enablement (`enabled`, `disabled`, `masked`) and
//! running state (`running`, `stopped`), through `systemctl`.
//!
//! Enablement is read with `systemctl is-enabled` and changed with `enable`,
//! `disable`, `mask` and `unmask`; beneath a root other than `/` each gets
//! `--root=ROOT`, which edits the unit links in that tree without a running
//! manager. The running state is read with `is-active` and changed with `start`
//! and `stop`; it needs a running systemd (`/run/systemd/system`) and the host's
//! own root, so anywhere else a promise that names it is blocked, saying why, and
//! nothing of it is applied. Where it is reached, a unit whose file changed on disk
//! since the manager loaded it (`NeedDaemonReload`, as a `[[file]]` promise leaves
//! it) gets `systemctl daemon-reload` first: else `start` and a notified `restart`
//! would run the old definition. Observing runs `systemctl` in a dry run too: its
//! query verbs change nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use tenet_policies::model::{Enablement, RunState, ServicePromise};

use super::{Change, Cx, Op, Plan, PromiseError};
use crate::exec::{self, Finished, Invocation};

/// How long a query (`is-enabled`, `is-active`) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a change may take: `start` waits for the unit to come up.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(300);
/// Where a running systemd announces itself (`sd_booted(3)`).
const BOOTED: &str = "/run/systemd/system";

/// A unit's enablement, as `systemctl is-enabled` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnitFile {
    /// `enabled`, `enabled-runtime`, `alias`.
    Enabled,
    /// `disabled`, `linked`, `linked-runtime`.
    Disabled,
    /// `masked`, `masked-runtime`.
    Masked,
    /// A state that `enable` and `disable` cannot change (`static`, `indirect`,
    /// `generated`, `transient`, `bad`), as printed.
    Fixed(String),
    /// No unit file of that name.
    NotFound,
}

/// Whether the running state can be read here, and if not why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// A running systemd on the host's own root.
    Manager,
    /// Out of reach, for this reason.
    Unreachable(String),
}

/// What `systemctl` said about the unit; `active` is `None` when not asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) unit_file: Option<UnitFile>,
    pub(crate) active: Option<Result<RunState, String>>,
    /// The manager holds an older definition than the unit's files on disk (read
    /// with the running state only, where the manager is reached).
    pub(crate) stale: bool,
}

pub(crate) fn evaluate(cx: &Cx<'_>, p: &ServicePromise) -> Result<Plan, PromiseError> {
    let found = observe(cx, p)?;
    Ok(match plan(p, &found) {
        Planned::Kept => Plan::Kept,
        Planned::Blocked(why) => Plan::Blocked(why),
        Planned::Verbs(verbs) => {
            let changes = verbs
                .iter()
                .map(|v| Change::new(v.describe(&p.unit)))
                .collect();
            let ops = verbs
                .iter()
                .map(|v| Op::Run(systemctl(cx, v.scope(), &v.args(&p.unit))))
                .collect();
            Plan::Repair { changes, ops }
        }
    })
}

/// Reads what the promise names: enablement through `is-enabled`, the running
/// state through `is-active` when it can be reached.
pub(crate) fn observe(cx: &Cx<'_>, p: &ServicePromise) -> Result<Observed, PromiseError> {
    let unit_file = match p.enablement {
        Some(_) => {
            let f = query(cx, Scope::UnitFiles, "is-enabled", &p.unit)?;
            Some(parse_is_enabled(&f).map_err(|e| failed("is-enabled", &p.unit, &e))?)
        }
        None => None,
    };
    let (active, stale) = match p.state {
        Some(_) => match reach(cx) {
            Reach::Manager => {
                let f = query(cx, Scope::Manager, "is-active", &p.unit)?;
                let active = parse_is_active(&f).map_err(|e| failed("is-active", &p.unit, &e))?;
                (Some(Ok(active)), stale(cx, &p.unit)?)
            }
            Reach::Unreachable(why) => (Some(Err(why)), false),
        },
        None => (None, false),
    };
    Ok(Observed {
        unit_file,
        active,
        stale,
    })
}

/// Whether the manager's definition of `unit` is older than its files on disk
/// (`systemctl show --property=NeedDaemonReload`); needs the running manager.
pub(crate) fn stale(cx: &Cx<'_>, unit: &str) -> Result<bool, PromiseError> {
    let f = exec::run(&systemctl(
        cx,
        Scope::Manager,
        &["show", "--property=NeedDaemonReload", "--value", unit],
    ))
    .map_err(|e| PromiseError::Command(format!("systemctl show {unit}: {e}")))?;
    parse_need_daemon_reload(&f).map_err(|e| failed("show", unit, &e))
}

/// What `daemon-reload` is reported as, for `unit`.
pub(crate) fn daemon_reload_change(unit: &str) -> String {
    format!("reloaded systemd's unit files ({unit} changed on disk)")
}

/// What the promise needs, from what was observed (pure).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Planned {
    Kept,
    Blocked(String),
    Verbs(Vec<Verb>),
}

/// A `systemctl` verb that changes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// `daemon-reload`, for a unit whose files changed since the manager loaded it.
    DaemonReload,
    Unmask,
    Enable,
    Disable,
    Mask,
    Start,
    Stop,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Self::DaemonReload => "daemon-reload",
            Self::Unmask => "unmask",
            Self::Enable => "enable",
            Self::Disable => "disable",
            Self::Mask => "mask",
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Self::DaemonReload => "reloaded",
            Self::Unmask => "unmasked",
            Self::Enable => "enabled",
            Self::Disable => "disabled",
            Self::Mask => "masked",
            Self::Start => "started",
            Self::Stop => "stopped",
        }
    }

    fn scope(self) -> Scope {
        match self {
            Self::DaemonReload | Self::Start | Self::Stop => Scope::Manager,
            _ => Scope::UnitFiles,
        }
    }

    /// How the change is reported.
    fn describe(self, unit: &str) -> String {
        match self {
            Self::DaemonReload => daemon_reload_change(unit),
            _ => format!("{} {unit}", self.past()),
        }
    }

    /// The arguments after `systemctl`: `daemon-reload` names no unit.
    fn args(self, unit: &str) -> Vec<&str> {
        match self {
            Self::DaemonReload => vec![self.name()],
            _ => vec![self.name(), unit],
        }
    }
}

/// Plans the verbs that bring `found` to what `p` promises: `daemon-reload` first
/// when the manager's definition is stale, then enablement (a masked unit cannot
/// be started), then the running state.
pub(crate) fn plan(p: &ServicePromise, found: &Observed) -> Planned {
    let mut verbs = Vec::new();
    if let (Some(want), Some(have)) = (p.enablement, &found.unit_file) {
        let fixed = |state: &str| {
            format!(
                "{} is {state}: it has no [Install] section to enable or disable; only masking changes it",
                p.unit
            )
        };
        match (want, have) {
            (Enablement::Enabled, UnitFile::Enabled)
            | (Enablement::Disabled, UnitFile::Disabled | UnitFile::NotFound)
            | (Enablement::Masked, UnitFile::Masked) => {}
            (Enablement::Enabled, UnitFile::NotFound) => {
                return Planned::Blocked(format!("{} has no unit file here", p.unit));
            }
            (Enablement::Enabled | Enablement::Disabled, UnitFile::Fixed(s)) => {
                return Planned::Blocked(fixed(s));
            }
            (Enablement::Enabled, UnitFile::Disabled) => verbs.push(Verb::Enable),
            (Enablement::Enabled, UnitFile::Masked) => verbs.extend([Verb::Unmask, Verb::Enable]),
            (Enablement::Disabled, UnitFile::Enabled) => verbs.push(Verb::Disable),
            (Enablement::Disabled, UnitFile::Masked) => {
                verbs.extend([Verb::Unmask, Verb::Disable]);
            }
            (Enablement::Masked, _) => verbs.push(Verb::Mask),
        }
    }
    if let (Some(want), Some(have)) = (p.state, &found.active) {
        match (want, have) {
            (_, Err(why)) => return Planned::Blocked(why.clone()),
            (RunState::Running, Ok(RunState::Stopped)) => verbs.push(Verb::Start),
            (RunState::Stopped, Ok(RunState::Running)) => verbs.push(Verb::Stop),
            (_, Ok(_)) => {}
        }
        if found.stale {
            verbs.insert(0, Verb::DaemonReload);
        }
    }
    if verbs.is_empty() {
        Planned::Kept
    } else {
        Planned::Verbs(verbs)
    }
}

/// Reads `systemctl is-enabled`: its first line of output names the state; exit
/// status 0 is expected exactly for the states that count as enabled or static.
pub(crate) fn parse_is_enabled(f: &Finished) -> Result<UnitFile, String> {
    let out = f.stdout.lines().next().unwrap_or("").trim();
    let zero_states = [
        "enabled",
        "enabled-runtime",
        "alias",
        "static",
        "indirect",
        "generated",
        "transient",
    ];
    if f.timed_out || f.code.is_none() {
        return Err(f.describe());
    }
    let state = match out {
        "enabled" | "enabled-runtime" | "alias" => UnitFile::Enabled,
        "disabled" | "linked" | "linked-runtime" => UnitFile::Disabled,
        "masked" | "masked-runtime" => UnitFile::Masked,
        "static" | "indirect" | "generated" | "transient" | "bad" => {
            UnitFile::Fixed(out.to_string())
        }
        "not-found" => UnitFile::NotFound,
        // Older systemctl prints nothing on stdout for a unit with no file, and
        // says so on stderr ("Failed to get unit file state ...: No such file").
        "" if f.code == Some(1) && f.stderr.contains("No such file") => UnitFile::NotFound,
        "" => return Err(f.describe()),
        other => return Err(format!("unknown state `{other}` ({})", f.describe())),
    };
    if (f.code == Some(0)) != zero_states.contains(&out) {
        return Err(format!(
            "state `{out}` with an unexpected exit status ({})",
            f.describe()
        ));
    }
    Ok(state)
}

/// Reads `systemctl show --property=NeedDaemonReload --value`: `yes` or `no`, exit 0.
pub(crate) fn parse_need_daemon_reload(f: &Finished) -> Result<bool, String> {
    match (f.code, f.stdout.trim()) {
        (Some(0), "yes") => Ok(true),
        (Some(0), "no") => Ok(false),
        (_, out) => Err(format!("unexpected answer `{out}` ({})", f.describe())),
    }
}

/// Reads `systemctl is-active`: 0 with `active` (or `reloading`, `refreshing`) is
/// running, and so is `activating` (a start job under way), which systemctl exits 3
/// for (252 counts only active and reloading as exit 0); 3 with `inactive`,
/// `failed`, `deactivating` or `maintenance` is stopped (as is 4, no such unit,
/// which prints `inactive` too).
pub(crate) fn parse_is_active(f: &Finished) -> Result<RunState, String> {
    let out = f.stdout.lines().next().unwrap_or("").trim();
    match (f.code, out) {
        (Some(0), "active" | "reloading" | "refreshing") | (Some(0 | 3), "activating") => {
            Ok(RunState::Running)
        }
        (Some(3 | 4), "inactive" | "failed" | "deactivating" | "maintenance") => {
            Ok(RunState::Stopped)
        }
        _ => Err(format!(
            "unexpected answer `{out}` ({})",
            if f.stderr.trim().is_empty() && f.code.is_some() {
                format!("exit status {}", f.code.unwrap_or_default())
            } else {
                f.describe()
            }
        )),
    }
}

/// Whether the running state of units can be read and changed here.
pub(crate) fn reach(cx: &Cx<'_>) -> Reach {
    if !cx.root.is_host_root() {
        return Reach::Unreachable(format!(
            "the running state of a unit is reachable only when the agent's root is /; beneath {} only its enablement is",
            cx.root.base().display()
        ));
    }
    if !std::path::Path::new(BOOTED).is_dir() {
        return Reach::Unreachable(format!(
            "systemd is not running on this member (no {BOOTED}), so no unit can be started or stopped"
        ));
    }
    Reach::Manager
}

/// Which part of systemd a verb touches: unit files (beneath the root) or the
/// running manager (only on the host's root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    UnitFiles,
    Manager,
}

/// A `systemctl` invocation; unit-file verbs get `--root=ROOT` beneath a sandbox.
pub(crate) fn systemctl(cx: &Cx<'_>, scope: Scope, args: &[&str]) -> Invocation {
    let base = cx.root.base().to_path_buf();
    let mut argv = vec!["systemctl".to_string()];
    if scope == Scope::UnitFiles && !cx.root.is_host_root() {
        argv.push(format!("--root={}", base.display()));
    }
    argv.extend(args.iter().map(|a| (*a).to_string()));
    let timeout = match args.first() {
        Some(&("is-enabled" | "is-active" | "show")) => QUERY_TIMEOUT,
        _ => CHANGE_TIMEOUT,
    };
    Invocation {
        argv,
        env: BTreeMap::new(),
        cwd: base.clone(),
        timeout,
        root: base,
    }
}

fn query(cx: &Cx<'_>, scope: Scope, verb: &str, unit: &str) -> Result<Finished, PromiseError> {
    exec::run(&systemctl(cx, scope, &[verb, unit]))
        .map_err(|e| PromiseError::Command(format!("systemctl {verb} {unit}: {e}")))
}

fn failed(verb: &str, unit: &str, why: &str) -> PromiseError {
    PromiseError::Command(format!("systemctl {verb} {unit}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(code: i32, stdout: &str, stderr: &str) -> Finished {
        Finished {
            code: Some(code),
            signal: None,
            timed_out: false,
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            elapsed: Duration::ZERO,
        }
    }

    fn promise(enablement: Option<Enablement>, state: Option<RunState>) -> ServicePromise {
        ServicePromise {
            unit: "demo.service".to_string(),
            enablement,
            state,
        }
    }

    fn check(
        enablement: Option<Enablement>,
        state: Option<RunState>,
        unit_file: Option<UnitFile>,
        active: Option<Result<RunState, String>>,
        want: &[Verb],
    ) {
        let got = plan(
            &promise(enablement, state),
            &Observed {
                unit_file,
                active,
                stale: false,
            },
        );
        let expected = if want.is_empty() {
            Planned::Kept
        } else {
            Planned::Verbs(want.to_vec())
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn enablement_plans() {
        use Enablement::*;
        use UnitFile as U;
        check(Some(Enabled), None, Some(U::Enabled), None, &[]);
        check(
            Some(Enabled),
            None,
            Some(U::Disabled),
            None,
            &[Verb::Enable],
        );
        check(
            Some(Enabled),
            None,
            Some(U::Masked),
            None,
            &[Verb::Unmask, Verb::Enable],
        );
        check(Some(Disabled), None, Some(U::Disabled), None, &[]);
        check(Some(Disabled), None, Some(U::NotFound), None, &[]);
        check(
            Some(Disabled),
            None,
            Some(U::Enabled),
            None,
            &[Verb::Disable],
        );
        check(
            Some(Disabled),
            None,
            Some(U::Masked),
            None,
            &[Verb::Unmask, Verb::Disable],
        );
        check(Some(Masked), None, Some(U::Masked), None, &[]);
        check(Some(Masked), None, Some(U::Enabled), None, &[Verb::Mask]);
        check(Some(Masked), None, Some(U::NotFound), None, &[Verb::Mask]);
        check(
            Some(Masked),
            None,
            Some(U::Fixed("static".into())),
            None,
            &[Verb::Mask],
        );
    }

    #[test]
    fn enablement_blocked() {
        let p = promise(Some(Enablement::Enabled), None);
        let blocked = |unit_file| {
            matches!(
                plan(
                    &p,
                    &Observed {
                        unit_file: Some(unit_file),
                        active: None,
                        stale: false,
                    }
                ),
                Planned::Blocked(_)
            )
        };
        assert!(blocked(UnitFile::NotFound));
        assert!(blocked(UnitFile::Fixed("static".into())));
    }

    #[test]
    fn running_plans() {
        use RunState::*;
        check(None, Some(Running), None, Some(Ok(Running)), &[]);
        check(None, Some(Running), None, Some(Ok(Stopped)), &[Verb::Start]);
        check(None, Some(Stopped), None, Some(Ok(Running)), &[Verb::Stop]);
        check(None, Some(Stopped), None, Some(Ok(Stopped)), &[]);
        check(
            Some(Enablement::Enabled),
            Some(Running),
            Some(UnitFile::Masked),
            Some(Ok(Stopped)),
            &[Verb::Unmask, Verb::Enable, Verb::Start],
        );
    }

    #[test]
    fn a_stale_definition_is_reloaded_before_anything_else() {
        let stale = |enablement, state, unit_file, active| {
            plan(
                &promise(enablement, Some(state)),
                &Observed {
                    unit_file,
                    active: Some(Ok(active)),
                    stale: true,
                },
            )
        };
        use RunState::*;
        assert_eq!(
            stale(None, Running, None, Running),
            Planned::Verbs(vec![Verb::DaemonReload])
        );
        assert_eq!(
            stale(
                Some(Enablement::Enabled),
                Running,
                Some(UnitFile::Disabled),
                Stopped
            ),
            Planned::Verbs(vec![Verb::DaemonReload, Verb::Enable, Verb::Start])
        );
        assert_eq!(
            Verb::DaemonReload.args("demo.service"),
            vec!["daemon-reload"]
        );
    }

    #[test]
    fn need_daemon_reload_answers() {
        let p = |code, out: &str| parse_need_daemon_reload(&finished(code, out, ""));
        assert_eq!(p(0, "yes\n"), Ok(true));
        assert_eq!(p(0, "no\n"), Ok(false));
        assert!(p(0, "").is_err());
        assert!(p(1, "no\n").is_err());
    }

    #[test]
    fn unreachable_running_state_blocks_the_whole_promise() {
        let p = promise(Some(Enablement::Enabled), Some(RunState::Running));
        let got = plan(
            &p,
            &Observed {
                unit_file: Some(UnitFile::Disabled),
                active: Some(Err("no systemd".into())),
                stale: false,
            },
        );
        assert_eq!(got, Planned::Blocked("no systemd".into()));
    }

    #[test]
    fn is_enabled_answers() {
        let p = |code, out: &str, err: &str| parse_is_enabled(&finished(code, out, err));
        assert_eq!(p(0, "enabled\n", ""), Ok(UnitFile::Enabled));
        assert_eq!(p(1, "disabled\n", ""), Ok(UnitFile::Disabled));
        assert_eq!(p(1, "masked\n", ""), Ok(UnitFile::Masked));
        assert_eq!(p(0, "static\n", ""), Ok(UnitFile::Fixed("static".into())));
        assert_eq!(p(1, "not-found\n", ""), Ok(UnitFile::NotFound));
        assert_eq!(
            p(
                1,
                "",
                "Failed to get unit file state for x.service: No such file or directory\n"
            ),
            Ok(UnitFile::NotFound)
        );
        assert!(p(1, "", "Access denied\n").is_err());
        assert!(p(0, "disabled\n", "").is_err(), "disabled must not exit 0");
        assert!(p(1, "enabled\n", "").is_err(), "enabled must exit 0");
        assert!(p(0, "sideways\n", "").is_err());
    }

    #[test]
    fn is_active_answers() {
        let p = |code, out: &str| parse_is_active(&finished(code, out, ""));
        assert_eq!(p(0, "active\n"), Ok(RunState::Running));
        assert_eq!(p(0, "reloading\n"), Ok(RunState::Running));
        // What systemctl 252 answers for a unit whose start job is under way.
        assert_eq!(p(3, "activating\n"), Ok(RunState::Running));
        assert_eq!(p(3, "deactivating\n"), Ok(RunState::Stopped));
        assert_eq!(p(3, "inactive\n"), Ok(RunState::Stopped));
        assert_eq!(p(3, "failed\n"), Ok(RunState::Stopped));
        assert_eq!(p(4, "inactive\n"), Ok(RunState::Stopped));
        assert!(p(1, "").is_err());
        assert!(p(0, "inactive\n").is_err());
    }
}
