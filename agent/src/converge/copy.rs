//! `copy`: a file or a directory tree copied from one local path to another.
//!
//! Only files whose content, mode or owner differ are written (each atomically, with
//! the source's mode, owner and group, as `cp -p` keeps them); symlinks
//! in the source are copied as links; with `purge`, what the source lacks is removed.
//! The seeds' NFS lock migration copies status-monitor entries this way: rpc.statd
//! runs as the owner of its directory and must read the entries it gets back.
//! A source file anyone but root may write loses its setuid and setgid bits.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tenet_policies::model::CopyPromise;

use super::{Change, Cx, Op, Plan, PromiseError};
use crate::fsops::{Attrs, Follow, Replace, Root};

pub(crate) fn evaluate(cx: &Cx<'_>, p: &CopyPromise) -> Result<Plan, PromiseError> {
    let from = cx.root.resolve(&p.from, Follow::All)?;
    let to = cx.root.resolve(&p.to, Follow::Parent)?;
    let root = cx.root;
    let io = |e: io::Error| PromiseError::io(&p.from, e);
    let meta = match root.lstat(&from) {
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
        sync_file(
            root,
            &from,
            &meta,
            &to,
            &p.to.to_string(),
            &mut changes,
            &mut ops,
        )
        .map_err(io)?;
    } else if meta.is_dir() {
        let to_meta = match root.lstat(&to) {
            Ok(m) if !m.is_dir() => {
                return Ok(Plan::Blocked(format!(
                    "{} exists and is not a directory",
                    p.to
                )));
            }
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                changes.push(Change::new(format!("created directory {}", p.to)));
                ops.push(Op::MakeDir {
                    path: to.clone(),
                    attrs: kept(&meta),
                });
                None
            }
            Err(e) => return Err(PromiseError::io(&p.to, e)),
        };
        let mut seen = BTreeSet::new();
        for (rel, entry) in root.walk_tree(&from).map_err(io)? {
            let src = from.join(&rel);
            let dest = to.join(&rel);
            let shown = format!("{}/{}", p.to, rel.display());
            seen.insert(rel);
            let ft = entry.file_type();
            if ft.is_dir() {
                match root.lstat(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Ok(Plan::Blocked(format!(
                            "{shown} is in the way of a directory"
                        )));
                    }
                    Err(_) => {
                        changes.push(Change::new(format!("created directory {shown}")));
                        ops.push(Op::MakeDir {
                            path: dest,
                            attrs: kept(&entry),
                        });
                    }
                }
            } else if ft.is_symlink() {
                let target = root.read_link(&src).map_err(io)?;
                if root.read_link(&dest).ok().as_ref() != Some(&target) {
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
                sync_file(root, &src, &entry, &dest, &shown, &mut changes, &mut ops).map_err(io)?;
            }
        }
        if p.purge && to_meta.is_some() {
            purge(root, &to, &seen, &p.to.to_string(), &mut changes, &mut ops)
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
        super::name_real(Plan::Repair { changes, ops }, root, &p.to, &to)
    })
}

fn sync_file(
    root: &Root,
    src: &Path,
    meta: &fs::Metadata,
    dest: &Path,
    shown: &str,
    changes: &mut Vec<Change>,
    ops: &mut Vec<Op>,
) -> io::Result<()> {
    let mode = copied_mode(meta);
    let content = root.read_file(src)?;
    let same = match root.lstat(dest) {
        Ok(d) if d.is_file() => {
            d.len() == content.len() as u64
                && d.mode() & 0o7777 == mode
                && (d.uid(), d.gid()) == (meta.uid(), meta.gid())
                && root.read_seen(dest, &d)? == content
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
            content.len()
        )));
        ops.push(Op::Write {
            path: dest.to_path_buf(),
            content,
            attrs: kept(meta),
        });
    }
    Ok(())
}

/// The mode a copy of the file `meta` describes gets: the source's, less setuid and
/// setgid unless only root can write the source. The copy is root's, so those bits
/// on a file a user controls would make a root-owned setuid program of its content.
fn copied_mode(meta: &fs::Metadata) -> u32 {
    let mode = meta.mode() & 0o7777;
    let others_write =
        meta.uid() != 0 || mode & 0o002 != 0 || (mode & 0o020 != 0 && meta.gid() != 0);
    if others_write { mode & !0o6000 } else { mode }
}

/// The source's mode (less setuid and setgid, as [`copied_mode`] says), owner and
/// group, for what the copy writes.
fn kept(meta: &fs::Metadata) -> Attrs {
    Attrs {
        mode: Some(copied_mode(meta)),
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
    }
}

fn purge(
    root: &Root,
    to: &Path,
    keep: &BTreeSet<PathBuf>,
    shown: &str,
    changes: &mut Vec<Change>,
    ops: &mut Vec<Op>,
) -> io::Result<()> {
    let mut removed_dirs: Vec<PathBuf> = Vec::new();
    for (rel, meta) in root.walk_tree(to)? {
        if keep.contains(&rel) || removed_dirs.iter().any(|d| rel.starts_with(d)) {
            continue;
        }
        let dir = meta.is_dir();
        changes.push(Change::new(format!(
            "removed {shown}/{} (not in the source)",
            rel.display()
        )));
        ops.push(Op::Remove {
            path: to.join(&rel),
            recursive: dir,
        });
        if dir {
            removed_dirs.push(rel);
        }
    }
    Ok(())
}
