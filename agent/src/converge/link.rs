//! `link`: a symlink with its target, repaired when wrong.
//!
//! An absolute target is written re-rooted (`/x` beneath root R reads `R/x`), so a
//! link made in a sandbox points inside it. A file or an empty directory in the way
//! is replaced only with `force`; a non-empty directory never is.

use std::io;
use std::path::{Component, Path, PathBuf};

use tenet_policies::model::LinkPromise;

use super::{Change, Cx, Op, Plan, PromiseError};
use crate::fsops::{Follow, Replace, Root};

#[derive(Debug)]
pub(crate) enum Observed {
    Missing,
    Link(PathBuf),
    File,
    Dir { empty: bool },
    Other,
}

pub(crate) fn evaluate(cx: &Cx<'_>, p: &LinkPromise<String>) -> Result<Plan, PromiseError> {
    let path = cx.root.resolve(&p.path, Follow::Parent)?;
    let target = Path::new(&p.target);
    let written = match p.target.strip_prefix('/') {
        Some(rel) => cx.root.base().join(rel),
        None => {
            if !cx.root.is_host_root() && escapes(p.path.as_path(), target) {
                return Ok(Plan::Blocked(format!(
                    "{}: target {} leads out of the root",
                    p.path, p.target
                )));
            }
            target.to_path_buf()
        }
    };
    let found = observe(cx.root, &path).map_err(|e| PromiseError::io(&p.path, e))?;
    Ok(super::name_real(
        plan(p, &path, &written, found),
        cx.root,
        &p.path,
        &path,
    ))
}

fn observe(root: &Root, path: &Path) -> io::Result<Observed> {
    let meta = match root.lstat(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Observed::Missing),
        Err(e) => return Err(e),
    };
    let ft = meta.file_type();
    Ok(if ft.is_symlink() {
        Observed::Link(root.read_link(path)?)
    } else if ft.is_dir() {
        Observed::Dir {
            empty: root.is_empty_dir(path)?,
        }
    } else if ft.is_file() {
        Observed::File
    } else {
        Observed::Other
    })
}

/// Pure: `written` is the target as it will be stored on disk.
pub(crate) fn plan(p: &LinkPromise<String>, path: &Path, written: &Path, found: Observed) -> Plan {
    let op = |replace| Op::Link {
        path: path.to_path_buf(),
        target: written.to_path_buf(),
        replace,
    };
    let to = &p.target;
    match found {
        Observed::Link(t) if t == written => Plan::Kept,
        Observed::Link(t) => Plan::repair(
            Change::new(format!(
                "relinked {} -> {to} (was -> {})",
                p.path,
                t.display()
            )),
            op(Replace::Entry),
        ),
        Observed::Missing => Plan::repair(
            Change::new(format!("linked {} -> {to}", p.path)),
            op(Replace::Nothing),
        ),
        Observed::File if p.force => Plan::repair(
            Change::new(format!("replaced file {} with a link -> {to}", p.path)),
            op(Replace::Entry),
        ),
        Observed::Dir { empty: true } if p.force => Plan::repair(
            Change::new(format!(
                "replaced empty directory {} with a link -> {to}",
                p.path
            )),
            op(Replace::EmptyDir),
        ),
        Observed::File => Plan::Blocked(format!(
            "{} is a file; set force = true to replace it with the link",
            p.path
        )),
        Observed::Dir { empty: true } => Plan::Blocked(format!(
            "{} is an empty directory; set force = true to replace it with the link",
            p.path
        )),
        Observed::Dir { empty: false } => Plan::Blocked(format!(
            "{} is a directory that is not empty; a link never replaces it",
            p.path
        )),
        Observed::Other => Plan::Blocked(format!(
            "{} is neither a file, a directory nor a link",
            p.path
        )),
    }
}

/// Whether a relative `target` of a link at policy path `at` climbs above `/`.
fn escapes(at: &Path, target: &Path) -> bool {
    let mut depth = at.parent().map_or(0, |p| {
        p.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    });
    for c in target.components() {
        match c {
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use tenet_policies::model::AbsPath;

    use super::*;

    fn check(force: bool, found: Observed, expected: &str) {
        let p = LinkPromise {
            path: AbsPath::parse("/:").unwrap(),
            target: "/.../cell/fs".into(),
            force,
        };
        let got = match plan(
            &p,
            &PathBuf::from("/r/:"),
            Path::new("/r/.../cell/fs"),
            found,
        ) {
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
        check(false, Observed::Link("/r/.../cell/fs".into()), "kept");
        check(
            false,
            Observed::Link("/elsewhere".into()),
            "relinked /: -> /.../cell/fs (was -> /elsewhere)",
        );
        check(false, Observed::Missing, "linked /: -> /.../cell/fs");
        check(
            false,
            Observed::File,
            "blocked: /: is a file; set force = true to replace it with the link",
        );
        check(
            true,
            Observed::File,
            "replaced file /: with a link -> /.../cell/fs",
        );
        check(
            false,
            Observed::Dir { empty: true },
            "blocked: /: is an empty directory; set force = true to replace it with the link",
        );
        check(
            true,
            Observed::Dir { empty: true },
            "replaced empty directory /: with a link -> /.../cell/fs",
        );
        check(
            true,
            Observed::Dir { empty: false },
            "blocked: /: is a directory that is not empty; a link never replaces it",
        );
    }

    #[test]
    fn relative_targets_that_climb_out_are_caught() {
        assert!(!escapes(Path::new("/a/b/link"), Path::new("../c")));
        assert!(!escapes(Path::new("/a/b/link"), Path::new("../../c")));
        assert!(escapes(Path::new("/a/b/link"), Path::new("../../../c")));
        assert!(escapes(Path::new("/link"), Path::new("../etc")));
        assert!(!escapes(Path::new("/link"), Path::new("etc/../x")));
    }
}
