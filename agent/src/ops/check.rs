//! `tenet-agent check`: validate a policy tree and print every problem, as text or as
//! JSON Lines (a `diagnostic` line per problem, then a `check` line).

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;
use tenet_policies::{Diagnostic, Severity};

use crate::exit::ExitCode;

/// The `schema` family of `check` lines.
const FAMILY: &str = "check";

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    severity: &'static str,
    file: String,
    line: u32,
    col: u32,
    field: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonCheck {
    #[serde(rename = "type")]
    kind: &'static str,
    tree: String,
    valid: bool,
    errors: usize,
    warnings: usize,
    promises: Option<usize>,
    plans: Option<usize>,
    members: Option<usize>,
    packages: Option<usize>,
}

fn diagnostic(out: &mut dyn Write, d: &Diagnostic) -> io::Result<()> {
    tenet_keys::jsonl::write_line(
        out,
        FAMILY,
        &JsonDiagnostic {
            kind: "diagnostic",
            severity: match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            file: d.origin.file.display().to_string(),
            line: d.origin.line,
            col: d.origin.col,
            field: &d.field,
            message: &d.message,
        },
    )
}

/// Validates `tree`, writes what it finds to `out` (JSON Lines with `json`), and returns
/// the exit code: 0 valid, 3 invalid. A write error (a closed pipe) ends the output
/// early and changes nothing else.
pub fn check(tree: &Path, json: bool, out: &mut dyn Write) -> ExitCode {
    let result = tenet_policies::load(tree);
    let (diags, code) = match &result {
        Ok(policy) => (&policy.warnings, ExitCode::Success),
        Err(diags) => (diags, ExitCode::InvalidPolicy),
    };
    let _ = if json {
        write_json(tree, &result, diags, out)
    } else {
        write_human(tree, &result, diags, out)
    };
    code
}

fn write_human(
    tree: &Path,
    result: &Result<tenet_policies::Policy, tenet_policies::Diagnostics>,
    diags: &tenet_policies::Diagnostics,
    out: &mut dyn Write,
) -> io::Result<()> {
    write!(out, "{diags}")?;
    match result {
        Ok(policy) => writeln!(
            out,
            "{}: valid: {} promises, {} plans, {} members, {} packages",
            tree.display(),
            policy.promises.len(),
            policy.plans.len(),
            policy.cluster.members.len(),
            policy.cluster.packages.len()
        ),
        Err(_) => writeln!(
            out,
            "{}: invalid: {} errors",
            tree.display(),
            diags.error_count()
        ),
    }
}

fn write_json(
    tree: &Path,
    result: &Result<tenet_policies::Policy, tenet_policies::Diagnostics>,
    diags: &tenet_policies::Diagnostics,
    out: &mut dyn Write,
) -> io::Result<()> {
    for d in diags.iter() {
        diagnostic(out, d)?;
    }
    let policy = result.as_ref().ok();
    tenet_keys::jsonl::write_line(
        out,
        FAMILY,
        &JsonCheck {
            kind: "check",
            tree: tree.display().to_string(),
            valid: policy.is_some(),
            errors: diags.error_count(),
            warnings: diags.len() - diags.error_count(),
            promises: policy.map(|p| p.promises.len()),
            plans: policy.map(|p| p.plans.len()),
            members: policy.map(|p| p.cluster.members.len()),
            packages: policy.map(|p| p.cluster.packages.len()),
        },
    )?;
    out.flush()
}
