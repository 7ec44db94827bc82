//! `absent`: paths or globs that must not exist.
//!
//! Every match is checked again through the root's resolution, so a glob that
//! wanders through a symlink out of the root, or through a link resolution refuses
//! to follow, removes nothing there (the other matches are still removed).

use std::io;
use std::path::{Path, PathBuf};

use tenet_policies::model::{AbsPath, AbsentPromise};

use super::{Change, Cx, Op, Plan, PromiseError};
use crate::fsops::{Follow, PathError, Root};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Link,
    EmptyDir,
    Dir,
}

/// Each existing match: its policy path, host path and kind.
pub(crate) type Observed = Vec<(String, PathBuf, Kind)>;

pub(crate) fn evaluate(cx: &Cx<'_>, p: &AbsentPromise) -> Result<Plan, PromiseError> {
    let mut found = Vec::new();
    for pattern in &p.paths {
        let shown = pattern.to_string();
        if shown.contains(['*', '?', '[']) {
            for host in expand(cx.root, pattern)? {
                let rel = host.strip_prefix(cx.root.base()).unwrap_or(&host);
                let policy = format!("/{}", rel.display());
                let Ok(abs) = AbsPath::parse(&policy) else {
                    continue;
                };
                // The match must be where the root's own resolution puts it. One
                // reached through a link resolution refuses is left alone, like a
                // match elsewhere, so one user's link cannot block the other matches.
                match cx.root.resolve(&abs, Follow::Parent) {
                    Ok(h) if h == host => {}
                    Ok(_) => continue,
                    Err(e) if e.is_blocked() || matches!(e, PathError::HardLink { .. }) => {
                        tracing::warn!(path = %policy, reason = %e, "absent: match left alone");
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
                if let Some(kind) =
                    kind_of(cx.root, &host).map_err(|e| PromiseError::io(&policy, e))?
                {
                    found.push((policy, host, kind));
                }
            }
        } else {
            let host = cx.root.resolve(pattern, Follow::Parent)?;
            if let Some(kind) = kind_of(cx.root, &host).map_err(|e| PromiseError::io(pattern, e))? {
                found.push((shown, host, kind));
            }
        }
    }
    Ok(plan(p, found))
}

fn expand(root: &Root, pattern: &AbsPath) -> Result<Vec<PathBuf>, PromiseError> {
    let base = glob::Pattern::escape(&root.base().to_string_lossy());
    let full = if root.is_host_root() {
        pattern.to_string()
    } else {
        format!("{base}{pattern}")
    };
    let options = glob::MatchOptions {
        require_literal_leading_dot: true,
        ..glob::MatchOptions::new()
    };
    let paths = glob::glob_with(&full, options)
        .map_err(|e| PromiseError::Shared(format!("{pattern}: invalid glob: {}", e.msg)))?;
    let mut out = Vec::new();
    for p in paths {
        match p {
            Ok(p) => out.push(p),
            Err(e) => {
                return Err(PromiseError::io(
                    &e.path().display(),
                    io::Error::new(e.error().kind(), e.error().to_string()),
                ));
            }
        }
    }
    Ok(out)
}

fn kind_of(root: &Root, p: &Path) -> io::Result<Option<Kind>> {
    match root.lstat(p) {
        Ok(m) if m.file_type().is_symlink() => Ok(Some(Kind::Link)),
        Ok(m) if m.is_dir() => Ok(Some(if root.is_empty_dir(p)? {
            Kind::EmptyDir
        } else {
            Kind::Dir
        })),
        Ok(_) => Ok(Some(Kind::File)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn plan(p: &AbsentPromise, found: Observed) -> Plan {
    if found.is_empty() {
        return Plan::Kept;
    }
    if !p.recursive
        && let Some((shown, _, _)) = found.iter().find(|(_, _, k)| *k == Kind::Dir)
    {
        return Plan::Blocked(format!(
            "{shown} is a directory that is not empty; set recursive = true to remove it"
        ));
    }
    let mut changes = Vec::new();
    let mut ops = Vec::new();
    for (shown, host, kind) in found {
        let what = match kind {
            Kind::File => "file",
            Kind::Link => "link",
            Kind::EmptyDir => "empty directory",
            Kind::Dir => "directory tree",
        };
        changes.push(Change::new(format!("removed {what} {shown}")));
        ops.push(Op::Remove {
            path: host,
            recursive: kind == Kind::Dir,
        });
    }
    Plan::Repair { changes, ops }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(recursive: bool, found: &[(&str, Kind)], expected: &str) {
        let p = AbsentPromise {
            paths: vec![],
            recursive,
        };
        let found = found
            .iter()
            .map(|(s, k)| (s.to_string(), PathBuf::from(format!("/r{s}")), *k))
            .collect();
        let got = match plan(&p, found) {
            Plan::Kept => "kept".to_string(),
            Plan::Blocked(w) => format!("blocked: {w}"),
            Plan::Repair { changes, .. } => changes
                .into_iter()
                .map(|c| c.summary)
                .collect::<Vec<_>>()
                .join("; "),
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn plans() {
        check(false, &[], "kept");
        check(
            false,
            &[
                ("/a", Kind::File),
                ("/b", Kind::Link),
                ("/c", Kind::EmptyDir),
            ],
            "removed file /a; removed link /b; removed empty directory /c",
        );
        check(
            false,
            &[("/a", Kind::File), ("/d", Kind::Dir)],
            "blocked: /d is a directory that is not empty; set recursive = true to remove it",
        );
        check(true, &[("/d", Kind::Dir)], "removed directory tree /d");
    }
}
