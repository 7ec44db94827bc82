//! `command`: an argv (or a shell script, when asked) with a timeout, environment
//! and working directory, guarded by `creates`, `unless` and `onlyif`.
//!
//! Guards run in a dry run too: they are checks, and must not change anything.

use std::path::PathBuf;

use tenet_policies::model::{CommandPromise, Program};

use super::{Change, Cx, Op, Plan, PromiseError};
use crate::exec::{self, Invocation};
use crate::fsops::Follow;

pub(crate) fn evaluate(cx: &Cx<'_>, p: &CommandPromise<String>) -> Result<Plan, PromiseError> {
    if let Some(c) = &p.creates {
        let path = cx.root.resolve(c, Follow::Parent)?;
        if cx.root.lstat(&path).is_ok() {
            return Ok(Plan::Kept);
        }
    }
    if let Some(guard) = &p.unless
        && guard_passes(cx, p, guard)?
    {
        return Ok(Plan::Kept);
    }
    if let Some(guard) = &p.onlyif
        && !guard_passes(cx, p, guard)?
    {
        return Ok(Plan::Kept);
    }
    let argv = match &p.program {
        Program::Argv(a) => a.clone(),
        Program::Shell(s) => vec!["/bin/sh".to_string(), "-c".to_string(), s.clone()],
    };
    let shown = match &p.program {
        Program::Argv(a) => a.join(" "),
        Program::Shell(s) => format!("sh -c {s:?}"),
    };
    let inv = invocation(cx, p, argv)?;
    Ok(Plan::repair(
        Change::new(format!("ran {shown}")),
        Op::Run(inv),
    ))
}

fn guard_passes(
    cx: &Cx<'_>,
    p: &CommandPromise<String>,
    guard: &[String],
) -> Result<bool, PromiseError> {
    let inv = invocation(cx, p, guard.to_vec())?;
    let f = exec::run(&inv)
        .map_err(|e| PromiseError::Command(format!("guard {}: {e}", guard.join(" "))))?;
    if f.timed_out {
        return Err(PromiseError::Command(format!(
            "guard {} {}",
            guard.join(" "),
            f.describe()
        )));
    }
    Ok(f.success())
}

fn invocation(
    cx: &Cx<'_>,
    p: &CommandPromise<String>,
    mut argv: Vec<String>,
) -> Result<Invocation, PromiseError> {
    let base = cx.root.base().to_path_buf();
    if let Some(first) = argv.first_mut()
        && first != "/bin/sh"
    {
        *first = exec::program_path(&base, first);
    }
    let cwd: PathBuf = match &p.cwd {
        Some(c) => cx.root.resolve(c, Follow::All)?,
        None => base.clone(),
    };
    Ok(Invocation {
        argv,
        env: p.env.clone().into_iter().collect(),
        cwd,
        timeout: p.timeout,
        root: base,
    })
}
