//! How a pushed run's agent is started (`[run] start`).
//!
//! policyd's own service is sandboxed (`ProtectSystem=strict`, `ProtectHome`,
//! `PrivateTmp`, `NoNewPrivileges`, ...): a child of it could not write `/etc` and would
//! see a private `/tmp`, so a pushed "converge now" would fail or, worse, converge into
//! the wrong `/tmp`. Under systemd the agent is therefore started as a transient unit
//! of its own:
//!
//! ```text
//! systemd-run --unit=tenet-agent-push-<16 hex digits of the nonce> --description=...
//!     --wait --collect --pipe --quiet --service-type=exec
//!     --property=RuntimeMaxSec=<run.timeout in seconds>
//!     -- AGENT run --json --config AGENT_CONFIG [--dry-run] [--class=C]...
//! ```
//!
//! `--pipe` connects the unit's stdout and stderr to systemd-run's, which policyd reads as
//! it reads a direct child's; `--wait` makes systemd-run exit with the unit's exit code;
//! `--collect` removes the unit even when it failed; `RuntimeMaxSec` has systemd kill the
//! run at the same timeout policyd applies to systemd-run itself. The unit runs outside
//! policyd's sandbox, with the service manager's defaults, as the agent's own
//! `tenet-agent.service` runs. Without systemd (`direct`, and in tests), the agent is a
//! child of policyd in its own process group.
//!
//! Either way the argv is fixed: no shell, each class one `--class=C` argument.

use std::ffi::OsString;

use crate::config::{RunConfig, RunStart};

/// The prefix of a pushed run's transient unit name.
pub(crate) const UNIT_PREFIX: &str = "tenet-agent-push-";

/// The program and arguments that start the agent for a pushed run. `nonce` is the
/// request's nonce (hex); its first 16 digits name the transient unit.
pub(crate) fn agent_argv(
    run: &RunConfig,
    start: RunStart,
    nonce: &str,
    dry_run: bool,
    classes: &[String],
) -> (OsString, Vec<OsString>) {
    let mut agent: Vec<OsString> = vec![
        "run".into(),
        "--json".into(),
        "--config".into(),
        run.agent_config.clone().into_os_string(),
    ];
    if dry_run {
        agent.push("--dry-run".into());
    }
    for class in classes {
        // One argument, `--class=VALUE`: a value can never be taken for an option.
        let mut arg = OsString::from("--class=");
        arg.push(class);
        agent.push(arg);
    }
    match start {
        RunStart::Direct | RunStart::Auto => (run.agent.clone().into_os_string(), agent),
        RunStart::SystemdRun => {
            let id: String = nonce
                .chars()
                .filter(char::is_ascii_hexdigit)
                .take(16)
                .collect();
            let mut argv: Vec<OsString> = vec![
                format!("--unit={UNIT_PREFIX}{id}").into(),
                "--description=tenet pushed run".into(),
                "--wait".into(),
                "--collect".into(),
                "--pipe".into(),
                "--quiet".into(),
                "--service-type=exec".into(),
                format!("--property=RuntimeMaxSec={}", run.timeout.as_secs().max(1)).into(),
                "--".into(),
                run.agent.clone().into_os_string(),
            ];
            argv.extend(agent);
            (run.systemd_run.clone().into_os_string(), argv)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn run() -> RunConfig {
        RunConfig {
            agent: PathBuf::from("/usr/bin/tenet-agent"),
            agent_config: PathBuf::from("/etc/tenet/agent.toml"),
            agent_state: PathBuf::from("/var/lib/tenet"),
            timeout: Duration::from_secs(600),
            max_skew: Duration::from_secs(120),
            start: RunStart::Auto,
            systemd_run: PathBuf::from("/usr/bin/systemd-run"),
        }
    }

    fn strings(argv: &[OsString]) -> Vec<&str> {
        argv.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn direct_and_systemd_run_argv() {
        let classes = vec!["maint_x".to_string(), "--dry-run".to_string()];
        let (program, argv) = agent_argv(&run(), RunStart::Direct, "0123", true, &classes);
        assert_eq!(program, "/usr/bin/tenet-agent");
        assert_eq!(
            strings(&argv),
            [
                "run",
                "--json",
                "--config",
                "/etc/tenet/agent.toml",
                "--dry-run",
                "--class=maint_x",
                "--class=--dry-run"
            ]
        );
        let nonce = "00112233445566778899aabbccddeeff";
        let (program, argv) = agent_argv(&run(), RunStart::SystemdRun, nonce, false, &[]);
        assert_eq!(program, "/usr/bin/systemd-run");
        assert_eq!(
            strings(&argv),
            [
                "--unit=tenet-agent-push-0011223344556677",
                "--description=tenet pushed run",
                "--wait",
                "--collect",
                "--pipe",
                "--quiet",
                "--service-type=exec",
                "--property=RuntimeMaxSec=600",
                "--",
                "/usr/bin/tenet-agent",
                "run",
                "--json",
                "--config",
                "/etc/tenet/agent.toml",
            ]
        );
    }
}
