//! `tenet-policyd report`: the report database read back, as a table or JSON lines.
//!
//! Without options, one line per member: its last report's serial, when it arrived,
//! its exit code and counts, and its failing promises. `--member NAME` lists that
//! member's reports, newest first; `--drift` the reports that found drift (a promise
//! repaired, or that a dry run would repair), of every member or of `--member`. The
//! database is opened read-only; nothing here needs the daemon.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};
use tenet_keys::Time;

use crate::config::Config;
use crate::exit::ExitCode;
use crate::reportdb::{self, Outcome, Stored};

/// `tenet-policyd report`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// One member's reports, newest first.
    #[arg(long, value_name = "NAME")]
    pub member: Option<String>,
    /// Only the reports that found drift (promises repaired, or a dry run's
    /// would-repair), of every member or of --member.
    #[arg(long)]
    pub drift: bool,
    /// Most reports listed with --member or --drift.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: u32,
    /// The database to read instead of the configuration's `[reports] database`.
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,
    /// Print JSON lines ({"schema":"tenet.report.member/1",...} or
    /// "tenet.report.run/1") instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `report`: exit 0, or 1 when the database cannot be read.
pub(crate) fn report(
    args: &ReportArgs,
    config: &Config,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let path = args
        .database
        .clone()
        .unwrap_or_else(|| config.reports.database.clone());
    let read = || -> Result<Vec<Value>, String> {
        let conn = reportdb::open_read(&path).map_err(|e| tenet_keys::error_chain(&e))?;
        let sql = |e: rusqlite::Error| format!("report database {}: {e}", path.display());
        let lines = if args.drift || args.member.is_some() {
            let rows = if args.drift {
                reportdb::drift(&conn, args.member.as_deref(), args.limit)
            } else {
                reportdb::history(&conn, args.member.as_deref().unwrap_or(""), args.limit)
            }
            .map_err(sql)?;
            let mut lines = Vec::with_capacity(rows.len());
            for row in rows {
                let outcomes = reportdb::outcomes(&conn, row.id).map_err(sql)?;
                lines.push(run_line(&row, &outcomes));
            }
            lines
        } else {
            let rows = reportdb::latest(&conn).map_err(sql)?;
            let mut lines = Vec::with_capacity(rows.len());
            for row in rows {
                let failures: Vec<Outcome> = reportdb::outcomes(&conn, row.id)
                    .map_err(sql)?
                    .into_iter()
                    .filter(is_failure)
                    .collect();
                lines.push(member_line(&row, &failures));
            }
            lines
        };
        Ok(lines)
    };
    let lines = match read() {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::Failure;
        }
    };
    if args.json {
        for line in &lines {
            if let Ok(text) = tenet_keys::jsonl::to_line("report", line) {
                let _ = writeln!(out, "{text}");
            }
        }
    } else if args.drift || args.member.is_some() {
        print_runs(&lines, out);
    } else {
        print_members(&lines, out);
    }
    ExitCode::Success
}

/// Whether an outcome counts as a failure (failed, blocked, did not converge).
pub(crate) fn is_failure(o: &Outcome) -> bool {
    matches!(o.status.as_str(), "failed" | "blocked" | "did_not_converge")
}

/// RFC 3339 UTC of unix seconds.
pub(crate) fn rfc3339(unix: u64) -> String {
    Time::from_unix(unix).map_or_else(|| unix.to_string(), |t| t.to_string())
}

fn member_line(row: &Stored, failures: &[Outcome]) -> Value {
    let r = &row.report;
    json!({
        "type": "member",
        "member": r.member,
        "serial": r.serial,
        "last_report": rfc3339(r.received),
        "ended": rfc3339(r.ended),
        "kind": r.kind,
        "exit_code": r.exit_code,
        "kept": r.kept,
        "repaired": r.repaired,
        "failed": r.failed,
        "blocked": r.blocked,
        "errors": r.errors,
        "failures": failures,
    })
}

fn run_line(row: &Stored, outcomes: &[Outcome]) -> Value {
    let r = &row.report;
    json!({
        "type": "run",
        "member": r.member,
        "kind": r.kind,
        "received": rfc3339(r.received),
        "started": rfc3339(r.started),
        "ended": rfc3339(r.ended),
        "serial": r.serial,
        "exit_code": r.exit_code,
        "duration_ms": r.duration_ms,
        "kept": r.kept,
        "repaired": r.repaired,
        "would_repair": r.would_repair,
        "failed": r.failed,
        "blocked": r.blocked,
        "skipped": r.skipped,
        "dry_run": r.dry_run,
        "errors": r.errors,
        "outcomes": outcomes,
    })
}

fn field<'a>(v: &'a Value, k: &str) -> &'a Value {
    v.get(k).unwrap_or(&Value::Null)
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => printable(s),
        other => other.to_string(),
    }
}

/// `text` with control and bidi-control characters shown escaped: a member's report
/// is another machine's text.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn print_members(lines: &[Value], out: &mut dyn Write) {
    let _ = writeln!(
        out,
        "{:<20} {:>7} {:<21} {:>4} {:>6} {:>8} {:>6}",
        "MEMBER", "SERIAL", "LAST REPORT", "EXIT", "KEPT", "REPAIRED", "FAILED"
    );
    for l in lines {
        let failed =
            field(l, "failed").as_u64().unwrap_or(0) + field(l, "blocked").as_u64().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<20} {:>7} {:<21} {:>4} {:>6} {:>8} {:>6}",
            show(field(l, "member")),
            show(field(l, "serial")),
            show(field(l, "last_report")),
            show(field(l, "exit_code")),
            show(field(l, "kept")),
            show(field(l, "repaired")),
            failed,
        );
        print_outcomes(field(l, "failures"), out);
        for e in field(l, "errors").as_array().into_iter().flatten() {
            let _ = writeln!(out, "    error: {}", show(e));
        }
    }
}

fn print_runs(lines: &[Value], out: &mut dyn Write) {
    let _ = writeln!(
        out,
        "{:<20} {:<21} {:<6} {:>7} {:>4} {:>6} {:>8} {:>6}",
        "MEMBER", "RECEIVED", "KIND", "SERIAL", "EXIT", "KEPT", "REPAIRED", "FAILED"
    );
    for l in lines {
        let repaired = field(l, "repaired").as_u64().unwrap_or(0)
            + field(l, "would_repair").as_u64().unwrap_or(0);
        let failed =
            field(l, "failed").as_u64().unwrap_or(0) + field(l, "blocked").as_u64().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<20} {:<21} {:<6} {:>7} {:>4} {:>6} {:>8} {:>6}",
            show(field(l, "member")),
            show(field(l, "received")),
            show(field(l, "kind")),
            show(field(l, "serial")),
            show(field(l, "exit_code")),
            show(field(l, "kept")),
            repaired,
            failed,
        );
        print_outcomes(field(l, "outcomes"), out);
    }
}

fn print_outcomes(outcomes: &Value, out: &mut dyn Write) {
    for o in outcomes.as_array().into_iter().flatten() {
        let reason = match field(o, "reason") {
            Value::Null => String::new(),
            r => format!(": {}", show(r)),
        };
        let _ = writeln!(
            out,
            "    {} {} ({}){reason}",
            show(field(o, "status")),
            show(field(o, "promise")),
            show(field(o, "type")),
        );
    }
}
