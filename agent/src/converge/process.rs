//! `process`: processes whose command line matches a pattern, running (the
//! `start` command runs when none is) or stopped (each is signalled and waited
//! for). Observed from `/proc`: each process's `cmdline`, its arguments joined by
//! spaces; kernel threads (no command line), zombies (already dead, waiting to be
//! reaped) and the agent itself never match.
//!
//! Processes are the machine's whatever the root: `/proc` is the host's. The
//! `start` program resolves beneath the root like a command's, and runs with its
//! output on `/dev/null` ([`crate::exec::run_detached`]): a start command that
//! daemonizes would otherwise hold the run's pipes open for as long as it lives.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use tenet_policies::model::{ProcessPromise, RunState};

use super::{Change, Cx, Op, Plan, PromiseError};
use crate::exec::{self, Invocation};

/// A process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) pid: i32,
    /// The arguments joined by spaces.
    pub(crate) cmdline: String,
}

pub(crate) fn evaluate(cx: &Cx<'_>, p: &ProcessPromise<String>) -> Result<Plan, PromiseError> {
    let found = matching(|c| p.matches.is_match(c)).map_err(|e| PromiseError::io(&"/proc", e))?;
    Ok(plan(cx, p, found))
}

/// What the promise needs, given the matching processes (pure but for building the
/// start command's invocation from the root).
pub(crate) fn plan(cx: &Cx<'_>, p: &ProcessPromise<String>, found: Vec<Found>) -> Plan {
    match (p.state, found.is_empty()) {
        (RunState::Running, false) | (RunState::Stopped, true) => Plan::Kept,
        (RunState::Running, true) => {
            let Some(argv) = p.start.clone() else {
                return Plan::Blocked("no `start` command to run".to_string());
            };
            let shown = argv.join(" ");
            let base = cx.root.base().to_path_buf();
            let mut argv = argv;
            // As for a command: an absolute program resolves beneath the root, except
            // the shell, which is the host's.
            if let Some(first) = argv.first_mut()
                && first != "/bin/sh"
            {
                *first = exec::program_path(&base, first);
            }
            Plan::repair(
                Change::new(format!("started {shown}")),
                Op::Start {
                    invocation: Invocation {
                        argv,
                        env: BTreeMap::new(),
                        cwd: base.clone(),
                        timeout: p.timeout,
                        root: base,
                    },
                    promise: Box::new(p.clone()),
                },
            )
        }
        (RunState::Stopped, false) => {
            let changes = found
                .iter()
                .map(|f| {
                    Change::new(format!(
                        "signalled {} ({}) with {}",
                        f.pid,
                        f.cmdline,
                        signal_name(p.signal)
                    ))
                })
                .collect();
            Plan::Repair {
                changes,
                ops: vec![Op::Signal {
                    processes: found,
                    signal: p.signal,
                    timeout: p.timeout,
                }],
            }
        }
    }
}

/// Runs the start command (output on `/dev/null`), then waits up to the promise's
/// timeout for a matching process: a daemon forked in the background may not have
/// started its program yet when the command returns.
pub(crate) fn start(inv: &Invocation, p: &ProcessPromise<String>) -> Result<(), String> {
    let program = inv.argv.first().map_or("", String::as_str);
    match exec::run_detached(inv) {
        Ok(f) if f.success() => {}
        Ok(f) => return Err(format!("{program} {}", f.describe())),
        Err(e) => return Err(e.to_string()),
    }
    let deadline = std::time::Instant::now() + p.timeout;
    loop {
        let found = matching(|c| p.matches.is_match(c)).map_err(|e| format!("/proc: {e}"))?;
        if !found.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "{program} succeeded, but no process matching `{}` appeared within {:?}",
                p.matches.as_str(),
                p.timeout
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every live process but this one whose command line `matches`.
pub(crate) fn matching(matches: impl Fn(&str) -> bool) -> std::io::Result<Vec<Found>> {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        // A process may end while it is read: then it simply is not there.
        let Some(cmdline) = cmdline(pid) else {
            continue;
        };
        if matches(&cmdline) {
            out.push(Found { pid, cmdline });
        }
    }
    out.sort_by_key(|f| f.pid);
    Ok(out)
}

/// The command line of a live process: `None` for a kernel thread, a zombie, or a
/// process gone.
pub(crate) fn cmdline(pid: i32) -> Option<String> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    // The state follows the last `)`: the name inside the parentheses may hold any byte.
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    if state == 'Z' || state == 'X' {
        return None;
    }
    let raw = fs::read(dir.join("cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

fn signal_name(n: i32) -> String {
    nix::sys::signal::Signal::try_from(n).map_or_else(|_| format!("signal {n}"), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_never_matches_itself() {
        let me = cmdline(i32::try_from(std::process::id()).unwrap()).unwrap();
        assert!(
            matching(|c| c == me)
                .unwrap()
                .iter()
                .all(|f| f.pid != i32::try_from(std::process::id()).unwrap())
        );
    }

    #[test]
    fn kernel_threads_have_no_command_line() {
        // PID 2 is kthreadd where the kernel runs threads; in a PID namespace it may
        // be an ordinary process or none, so only a kernel thread is checked.
        if let Ok(stat) = fs::read_to_string("/proc/2/stat")
            && stat.contains("(kthreadd)")
        {
            assert_eq!(cmdline(2), None);
        }
        assert_eq!(cmdline(i32::MAX), None, "no such process");
    }

    #[test]
    fn signals_are_named() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(9), "SIGKILL");
    }
}
