//! `copy`: a file or a directory tree copied from one local path to another.
//!
//! Only files whose content or mode differ are written (each atomically); symlinks
//! in the source are copied as links; with `purge`, what the source lacks is removed.
//! The seeds' NFS lock migration copies status-monitor entries this way.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tenet_policies::model::CopyPromise;

use super::{Change, Cx, Op, Plan, PromiseError};
use crate::fsops::{Attrs, Follow, Replace};

pub(crate) fn evaluate(cx: &Cx<'_>, p: &CopyPromise) -> Result<Plan, PromiseError> {
    let from = cx.root.resolve(&p.from, Follow::All)?;
    let to = cx.root.resolve(&p.to, Follow::Parent)?;
    let io = |e: io::Error| PromiseError::io(&p.from, e);
    let meta = match fs::metadata(&from) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Plan::Blocked(format!(
                "the source {} does not exist",
                p.from
            )));
        }
        Err(e) => return Err(io(e)),
    };
    let mut changes = Vec::new();
    let mut ops = Vec::new();
    if meta.is_file() {
        sync_file(&from, &to, &p.to.to_string(), &mut changes, &mut ops).map_err(io)?;
    } else if meta.is_dir() {
        match fs::symlink_metadata(&to) {
            Ok(m) if !m.is_dir() => {
                return Ok(Plan::Blocked(format!(
                    "{} exists and is not a directory",
                    p.to
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                changes.push(Change::new(format!("created directory {}", p.to)));
                ops.push(Op::MakeDir {
                    path: to.clone(),
                    attrs: Attrs {
                        mode: Some(meta.mode() & 0o7777),
                        ..Attrs::default()
                    },
                });
            }
            Err(e) => return Err(PromiseError::io(&p.to, e)),
        }
        let mut seen = BTreeSet::new();
        for entry in walkdir::WalkDir::new(&from)
            .min_depth(1)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| io(e.into()))?;
            let rel = entry
                .path()
                .strip_prefix(&from)
                .unwrap_or(entry.path())
                .to_path_buf();
            let dest = to.join(&rel);
            let shown = format!("{}/{}", p.to, rel.display());
            seen.insert(rel);
            let ft = entry.file_type();
            if ft.is_dir() {
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Ok(Plan::Blocked(format!(
                            "{shown} is in the way of a directory"
                        )));
                    }
                    Err(_) => {
                        let mode = entry.metadata().map_err(|e| io(e.into()))?.mode() & 0o7777;
                        changes.push(Change::new(format!("created directory {shown}")));
                        ops.push(Op::MakeDir {
                            path: dest,
                            attrs: Attrs {
                                mode: Some(mode),
                                ..Attrs::default()
                            },
                        });
                    }
                }
            } else if ft.is_symlink() {
                let target = fs::read_link(entry.path()).map_err(io)?;
                if fs::read_link(&dest).ok().as_ref() != Some(&target) {
                    changes.push(Change::new(format!(
                        "linked {shown} -> {}",
                        target.display()
                    )));
                    ops.push(Op::Link {
                        path: dest,
                        target,
                        replace: Replace::Entry,
                    });
                }
            } else if ft.is_file() {
                sync_file(entry.path(), &dest, &shown, &mut changes, &mut ops).map_err(io)?;
            }
        }
        if p.purge && to.is_dir() {
            purge(&to, &seen, &p.to.to_string(), &mut changes, &mut ops)
                .map_err(|e| PromiseError::io(&p.to, e))?;
        }
    } else {
        return Ok(Plan::Blocked(format!(
            "the source {} is neither a file nor a directory",
            p.from
        )));
    }
    Ok(if ops.is_empty() {
        Plan::Kept
    } else {
        Plan::Repair { changes, ops }
    })
}

fn sync_file(
    src: &Path,
    dest: &Path,
    shown: &str,
    changes: &mut Vec<Change>,
    ops: &mut Vec<Op>,
) -> io::Result<()> {
    let meta = fs::metadata(src)?;
    let mode = meta.mode() & 0o7777;
    let same = match fs::symlink_metadata(dest) {
        Ok(d) if d.is_file() => {
            d.len() == meta.len()
                && d.mode() & 0o7777 == mode
                && crate::fsops::read_seen(dest, &d)? == fs::read(src)?
        }
        Ok(d) if d.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{shown} is a directory"),
            ));
        }
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    if !same {
        changes.push(Change::new(format!(
            "copied {shown} ({} bytes)",
            meta.len()
        )));
        ops.push(Op::Write {
            path: dest.to_path_buf(),
            content: fs::read(src)?,
            attrs: Attrs {
                mode: Some(mode),
                ..Attrs::default()
            },
        });
    }
    Ok(())
}

fn purge(
    to: &Path,
    keep: &BTreeSet<PathBuf>,
    shown: &str,
    changes: &mut Vec<Change>,
    ops: &mut Vec<Op>,
) -> io::Result<()> {
    let mut it = walkdir::WalkDir::new(to)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = it.next() {
        let entry = entry?;
        let rel = entry.path().strip_prefix(to).unwrap_or(entry.path());
        if keep.contains(rel) {
            continue;
        }
        let dir = entry.file_type().is_dir();
        changes.push(Change::new(format!(
            "removed {shown}/{} (not in the source)",
            rel.display()
        )));
        ops.push(Op::Remove {
            path: entry.path().to_path_buf(),
            recursive: dir,
        });
        if dir {
            it.skip_current_dir();
        }
    }
    Ok(())
}
