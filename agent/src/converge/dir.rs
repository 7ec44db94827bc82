//! `dir`: a directory exists, with mode and owner.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tenet_policies::model::DirPromise;

use super::file::attr_changes;
use super::{Change, Cx, Op, Plan, PromiseError};
use crate::fsops::{Attrs, Follow, Root};

#[derive(Debug)]
pub(crate) enum Observed {
    Missing,
    Dir { mode: u32, uid: u32, gid: u32 },
    NotDir(&'static str),
}

pub(crate) fn evaluate(cx: &Cx<'_>, p: &DirPromise) -> Result<Plan, PromiseError> {
    let path = cx.root.resolve(&p.path, Follow::Parent)?;
    let found = observe(cx.root, &path).map_err(|e| PromiseError::io(&p.path, e))?;
    let planned = plan(p, &path, cx.attrs(&p.perms)?, found);
    Ok(super::name_real(planned, cx.root, &p.path, &path))
}

pub(crate) fn observe(root: &Root, path: &Path) -> io::Result<Observed> {
    match root.lstat(path) {
        Ok(m) if m.is_dir() => Ok(Observed::Dir {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        }),
        Ok(m) if m.file_type().is_symlink() => Ok(Observed::NotDir("a symlink")),
        Ok(_) => Ok(Observed::NotDir("a file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Observed::Missing),
        Err(e) => Err(e),
    }
}

pub(crate) fn plan(p: &DirPromise, path: &Path, want: Attrs, found: Observed) -> Plan {
    match found {
        Observed::Missing => {
            let mode = want.mode.unwrap_or(0o755);
            Plan::repair(
                Change::new(format!("created directory {} (mode {mode:04o})", p.path)),
                Op::MakeDir {
                    path: path.to_path_buf(),
                    attrs: Attrs {
                        mode: Some(mode),
                        ..want
                    },
                },
            )
        }
        Observed::Dir { mode, uid, gid } => {
            let changes = attr_changes(&p.path.to_string(), want, mode, uid, gid);
            if changes.is_empty() {
                Plan::Kept
            } else {
                Plan::Repair {
                    changes: changes.into_iter().map(Change::new).collect(),
                    ops: vec![Op::Attrs {
                        path: path.to_path_buf(),
                        attrs: want,
                    }],
                }
            }
        }
        Observed::NotDir(what) => Plan::Blocked(format!(
            "{} is {what}, not a directory; a dir promise never replaces it",
            p.path
        )),
    }
}

#[cfg(test)]
mod tests {
    use tenet_policies::model::{AbsPath, Perms};

    use std::path::PathBuf;

    use super::*;

    fn check(want: Attrs, found: Observed, expected: &str) {
        let p = DirPromise {
            path: AbsPath::parse("/...").unwrap(),
            perms: Perms::default(),
        };
        let got = match plan(&p, &PathBuf::from("/r/..."), want, found) {
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
        let none = Attrs::default();
        check(
            none,
            Observed::Missing,
            "created directory /... (mode 0755)",
        );
        check(
            Attrs {
                mode: Some(0o700),
                ..none
            },
            Observed::Missing,
            "created directory /... (mode 0700)",
        );
        check(
            none,
            Observed::Dir {
                mode: 0o700,
                uid: 0,
                gid: 0,
            },
            "kept",
        );
        check(
            Attrs {
                mode: Some(0o755),
                ..none
            },
            Observed::Dir {
                mode: 0o700,
                uid: 0,
                gid: 0,
            },
            "mode of /... 0700 -> 0755",
        );
        check(
            none,
            Observed::NotDir("a file"),
            "blocked: /... is a file, not a directory; a dir promise never replaces it",
        );
    }
}
