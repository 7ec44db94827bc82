//! `line` and `setting`: edits to a text file, all the edits to one file at once.
//!
//! The file is read once; each promise is planned in declaration order against the
//! text the promises before it left; the result is written once, keeping the file's
//! mode and owner, and every line no promise names stays as it was.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tenet_policies::model::{
    LinePromise, LineState, Promise, PromiseKind, SettingPromise, SettingStyle,
};

use super::{Change, Cx, Diffs, Op, Plan, PromiseError};
use crate::fsops::{Attrs, Follow, Root};

#[derive(Debug)]
pub(crate) enum Observed {
    Missing,
    Text { text: String, attrs: Attrs },
    NotFile(&'static str),
}

/// Plans every edit in `edits` (all to the same file); the last repairing promise carries the write.
pub(crate) fn evaluate(
    cx: &Cx<'_>,
    edits: &[&Promise<String>],
) -> Vec<(usize, Result<Plan, PromiseError>)> {
    let Some(file) = edits.first().and_then(|p| edited_file(p)) else {
        return Vec::new();
    };
    let found = cx
        .root
        .resolve(file, Follow::All)
        .map_err(PromiseError::from)
        .and_then(|path| observe(cx.root, &path, file).map(|o| (path, o)));
    match found {
        Ok((path, observed)) => plan(edits, &path, observed, cx.diffs)
            .into_iter()
            .enumerate()
            .map(|(k, p)| (k, Ok(super::name_real(p, cx.root, file, &path))))
            .collect(),
        Err(PromiseError::Path(e)) if e.is_blocked() => {
            // A file a local user could redirect: every edit to it is blocked.
            let reason = e.to_string();
            (0..edits.len())
                .map(|k| (k, Ok(Plan::Blocked(reason.clone()))))
                .collect()
        }
        Err(e) => {
            // One unreadable file fails every edit to it, each with the same reason.
            let reason = e.to_string();
            (0..edits.len())
                .map(|k| (k, Err(PromiseError::Shared(reason.clone()))))
                .collect()
        }
    }
}

fn edited_file(p: &Promise<String>) -> Option<&tenet_policies::model::AbsPath> {
    match &p.kind {
        PromiseKind::Line(l) => Some(&l.file),
        PromiseKind::Setting(s) => Some(&s.file),
        _ => None,
    }
}

fn observe(
    root: &Root,
    path: &Path,
    shown: &tenet_policies::model::AbsPath,
) -> Result<Observed, PromiseError> {
    let meta = match root.lstat(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Observed::Missing),
        Err(e) => return Err(PromiseError::io(shown, e)),
    };
    if meta.is_dir() {
        return Ok(Observed::NotFile("a directory"));
    }
    if !meta.is_file() {
        return Ok(Observed::NotFile("not a regular file"));
    }
    let bytes = root
        .read_seen(path, &meta)
        .map_err(|e| PromiseError::io(shown, e))?;
    let text = String::from_utf8(bytes).map_err(|_| PromiseError::NotText(shown.to_string()))?;
    Ok(Observed::Text {
        text,
        attrs: Attrs {
            mode: Some(meta.mode() & 0o7777),
            uid: Some(meta.uid()),
            gid: Some(meta.gid()),
        },
    })
}

/// Pure: one plan per edit, in order.
pub(crate) fn plan(
    edits: &[&Promise<String>],
    path: &Path,
    found: Observed,
    diffs: Diffs,
) -> Vec<Plan> {
    let Some(file) = edits.first().and_then(|p| edited_file(p)) else {
        return Vec::new();
    };
    let (old, attrs, exists) = match found {
        Observed::Text { text, attrs } => (text, attrs, true),
        Observed::Missing => (
            String::new(),
            Attrs {
                mode: Some(0o644),
                ..Attrs::default()
            },
            false,
        ),
        Observed::NotFile(what) => {
            return edits
                .iter()
                .map(|_| {
                    Plan::Blocked(format!(
                        "{file} is {what}; line and setting promises edit files"
                    ))
                })
                .collect();
        }
    };
    let mut lines = Lines::parse(&old);
    let mut plans: Vec<Plan> = Vec::with_capacity(edits.len());
    let mut last_repair = None;
    for (k, p) in edits.iter().enumerate() {
        let create = match &p.kind {
            PromiseKind::Line(l) => l.create,
            PromiseKind::Setting(s) => s.create,
            _ => true,
        };
        if !exists && !create {
            plans.push(Plan::Blocked(format!(
                "{file} does not exist and create = false"
            )));
            continue;
        }
        let changes = match &p.kind {
            PromiseKind::Line(l) => edit_line(&mut lines, l),
            PromiseKind::Setting(s) => edit_setting(&mut lines, s),
            _ => Vec::new(),
        };
        if changes.is_empty() {
            plans.push(Plan::Kept);
        } else {
            last_repair = Some(k);
            plans.push(Plan::Repair {
                changes: changes.into_iter().map(Change::new).collect(),
                ops: Vec::new(),
            });
        }
    }
    if let Some(k) = last_repair
        && let Plan::Repair { changes, ops } = &mut plans[k]
    {
        let new = lines.render();
        if let Some(last) = changes.last_mut() {
            *last = Change::with_diff(
                last.summary.clone(),
                file,
                old.as_bytes(),
                new.as_bytes(),
                diffs,
            );
        }
        ops.push(Op::Write {
            path: path.to_path_buf(),
            content: new.into_bytes(),
            attrs,
        });
    }
    plans
}

/// A text file as lines, remembering whether it ended with a newline.
#[derive(Debug)]
struct Lines {
    lines: Vec<String>,
    final_newline: bool,
}

impl Lines {
    fn parse(text: &str) -> Self {
        let final_newline = text.ends_with('\n') || text.is_empty();
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines = if text.is_empty() {
            Vec::new()
        } else {
            body.split('\n').map(String::from).collect()
        };
        Self {
            lines,
            final_newline,
        }
    }

    fn push(&mut self, line: String) {
        self.lines.push(line);
        self.final_newline = true;
    }

    fn render(&self) -> String {
        let mut s = self.lines.join("\n");
        if self.final_newline && !self.lines.is_empty() {
            s.push('\n');
        }
        s
    }
}

fn edit_line(lines: &mut Lines, p: &LinePromise<String>) -> Vec<String> {
    let same = |l: &str| l == p.line || p.matches.as_ref().is_some_and(|r| r.is_match(l));
    match p.state {
        LineState::Present => {
            if lines.lines.iter().any(|l| same(l)) {
                Vec::new()
            } else {
                lines.push(p.line.clone());
                vec![format!(
                    "appended `{}` to {}",
                    p.line.escape_debug(),
                    p.file
                )]
            }
        }
        LineState::Absent => {
            let before = lines.lines.len();
            lines.lines.retain(|l| !same(l));
            match before - lines.lines.len() {
                0 => Vec::new(),
                n => vec![format!(
                    "removed {n} line{} like `{}` from {}",
                    if n == 1 { "" } else { "s" },
                    p.line.escape_debug(),
                    p.file
                )],
            }
        }
    }
}

/// The key a line assigns, and whether it is exported: `KEY=...` or `export KEY=...`.
fn assigned_key(line: &str) -> Option<(&str, bool)> {
    let l = line.trim_start();
    let (l, export) = match l.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => (rest.trim_start(), true),
        _ => (l, false),
    };
    let (key, _) = l.split_once('=')?;
    let key = key.trim_end();
    let valid = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some((key, export))
}

fn setting_line(p: &SettingPromise<String>, export: bool) -> String {
    let prefix = if export { "export " } else { "" };
    match p.style {
        SettingStyle::Env => format!("{prefix}{}={}", p.key, p.value),
        SettingStyle::Shell => {
            let mut quoted = String::with_capacity(p.value.len() + 2);
            for c in p.value.chars() {
                if matches!(c, '\\' | '"' | '$' | '`') {
                    quoted.push('\\');
                }
                quoted.push(c);
            }
            format!("{prefix}{}=\"{quoted}\"", p.key)
        }
    }
}

fn edit_setting(lines: &mut Lines, p: &SettingPromise<String>) -> Vec<String> {
    let mut changes = Vec::new();
    let mut first = None;
    let mut duplicates = 0;
    let mut keep = Vec::with_capacity(lines.lines.len());
    for (i, l) in lines.lines.iter().enumerate() {
        match assigned_key(l) {
            Some((k, export)) if k == p.key => {
                if first.is_none() {
                    first = Some((i, export));
                    keep.push(true);
                } else {
                    duplicates += 1;
                    keep.push(false);
                }
            }
            _ => keep.push(true),
        }
    }
    match first {
        None => {
            let line = setting_line(p, false);
            changes.push(format!("set {line} in {} (added)", p.file));
            lines.push(line);
        }
        Some((i, export)) => {
            let line = setting_line(p, export);
            if lines.lines[i] != line {
                changes.push(format!(
                    "set {line} in {} (was `{}`)",
                    p.file,
                    lines.lines[i].escape_debug()
                ));
                lines.lines[i] = line;
            }
        }
    }
    if duplicates > 0 {
        let mut it = keep.iter();
        lines.lines.retain(|_| *it.next().unwrap_or(&true));
        changes.push(format!(
            "removed {duplicates} later assignment{} of {} from {}",
            if duplicates == 1 { "" } else { "s" },
            p.key,
            p.file
        ));
    }
    changes
}

#[cfg(test)]
mod tests;
