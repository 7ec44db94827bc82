//! `file`: exact content, mode, owner, group.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use std::time::SystemTime;

use tenet_keys::Sha256Sum;
use tenet_policies::model::{Content, FilePromise};

use super::{Change, Cx, Diffs, Op, Plan, PromiseError};
use crate::fsops::{Attrs, Follow};
use crate::statcache::Stat;

/// What is at the path.
#[derive(Debug)]
pub(crate) enum Observed {
    Missing,
    File {
        content: Seen,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Dir,
    Symlink,
    Other,
}

/// A file's content as observed.
#[derive(Debug)]
pub(crate) enum Seen {
    /// Its bytes.
    Bytes(Vec<u8>),
    /// Equal to the wanted content: its SHA-256 matched (read now, or known from the
    /// stat cache for an unchanged file), so the bytes were not kept.
    Same,
}

pub(crate) fn evaluate(cx: &Cx<'_>, p: &FilePromise<String>) -> Result<Plan, PromiseError> {
    let path = cx.root.resolve(&p.path, Follow::Parent)?;
    let found = observe(cx, &path, &p.content).map_err(|e| PromiseError::io(&p.path, e))?;
    let stored;
    let content: &[u8] = match (&p.content, &found) {
        (Content::Bytes(b), _) => b,
        (Content::Text(t), _) => t.as_bytes(),
        (
            Content::Stored(_),
            Observed::File {
                content: Seen::Same,
                ..
            },
        ) => &[],
        (Content::Stored(f), _) => {
            stored = cx
                .read_stored(f)
                .map_err(|e| PromiseError::io(&p.path, e))?;
            &stored
        }
    };
    let planned = plan(p, content, &path, cx.attrs(&p.perms)?, found, cx.diffs);
    Ok(super::name_real(planned, cx.root, &p.path, &path))
}

/// What is at `path`. A regular file's content is compared by SHA-256 when the wanted
/// content is known by its hash (a signed `source`), or when the stat cache knows the
/// file; its bytes are read only when they may differ.
pub(crate) fn observe<S: AsRef<str>>(
    cx: &Cx<'_>,
    path: &Path,
    want: &Content<S>,
) -> io::Result<Observed> {
    let meta = match cx.root.lstat(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Observed::Missing),
        Err(e) => return Err(e),
    };
    let ft = meta.file_type();
    Ok(if ft.is_file() {
        Observed::File {
            content: read_content(cx, path, &meta, want)?,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        }
    } else if ft.is_dir() {
        Observed::Dir
    } else if ft.is_symlink() {
        Observed::Symlink
    } else {
        Observed::Other
    })
}

fn read_content<S: AsRef<str>>(
    cx: &Cx<'_>,
    path: &Path,
    meta: &fs::Metadata,
    want: &Content<S>,
) -> io::Result<Seen> {
    let wanted: Option<[u8; 32]> = match want {
        Content::Stored(f) if f.size != meta.len() => None,
        Content::Stored(f) => Some(f.sha256),
        Content::Bytes(b) if cx.stat_cache.is_some() => Some(*Sha256Sum::of(b).as_bytes()),
        Content::Text(t) if cx.stat_cache.is_some() => {
            Some(*Sha256Sum::of(t.as_ref().as_bytes()).as_bytes())
        }
        Content::Bytes(_) | Content::Text(_) => None,
    };
    let stat = Stat::of(meta);
    if let (Some(cache), Some(w)) = (cx.stat_cache, wanted)
        && cache.lookup(path, &stat) == Some(w)
    {
        return Ok(Seen::Same);
    }
    let read_start = SystemTime::now();
    let bytes = cx.root.read_seen(path, meta)?;
    if wanted.is_none() && cx.stat_cache.is_none() {
        return Ok(Seen::Bytes(bytes));
    }
    let found = *Sha256Sum::of(&bytes).as_bytes();
    if let Some(cache) = cx.stat_cache {
        cache.record(path, &stat, read_start, found);
    }
    Ok(if wanted == Some(found) {
        Seen::Same
    } else {
        Seen::Bytes(bytes)
    })
}

/// Pure: what to do about `found`.
///
/// `content` is what the file must hold; it is not consulted when `found` is a file
/// already seen to hold it ([`Seen::Same`]).
pub(crate) fn plan(
    p: &FilePromise<String>,
    content: &[u8],
    path: &Path,
    want: Attrs,
    found: Observed,
    diffs: Diffs,
) -> Plan {
    match found {
        Observed::Missing => {
            let mode = want.mode.unwrap_or(0o644);
            Plan::repair(
                Change::with_diff(
                    format!(
                        "created {} ({} bytes, mode {mode:04o})",
                        p.path,
                        content.len()
                    ),
                    &p.path,
                    b"",
                    content,
                    diffs,
                ),
                Op::Write {
                    path: path.to_path_buf(),
                    content: content.to_vec(),
                    attrs: Attrs {
                        mode: Some(mode),
                        ..want
                    },
                },
            )
        }
        Observed::File {
            content: old,
            mode,
            uid,
            gid,
        } => {
            let mut changes = Vec::new();
            if let Seen::Bytes(old) = old
                && old != content
            {
                changes.push(Change::with_diff(
                    format!("rewrote {} (content differed)", p.path),
                    &p.path,
                    &old,
                    content,
                    diffs,
                ));
            }
            let attr_changes = attr_changes(&p.path.to_string(), want, mode, uid, gid);
            if changes.is_empty() && attr_changes.is_empty() {
                return Plan::Kept;
            }
            let op = if changes.is_empty() {
                Op::Attrs {
                    path: path.to_path_buf(),
                    attrs: want,
                }
            } else {
                let attrs = Attrs {
                    mode: Some(want.mode.unwrap_or(mode)),
                    uid: Some(want.uid.unwrap_or(uid)),
                    gid: Some(want.gid.unwrap_or(gid)),
                };
                Op::Write {
                    path: path.to_path_buf(),
                    content: content.to_vec(),
                    attrs,
                }
            };
            changes.extend(attr_changes.into_iter().map(Change::new));
            Plan::Repair {
                changes,
                ops: vec![op],
            }
        }
        Observed::Dir => Plan::Blocked(format!(
            "{} is a directory; a file promise never replaces one",
            p.path
        )),
        Observed::Symlink => Plan::Blocked(format!(
            "{} is a symlink; a file promise does not write through links",
            p.path
        )),
        Observed::Other => Plan::Blocked(format!("{} is not a regular file", p.path)),
    }
}

/// One line per attribute that differs from what is wanted.
pub(crate) fn attr_changes(path: &str, want: Attrs, mode: u32, uid: u32, gid: u32) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = want.mode.filter(|m| *m != mode) {
        out.push(format!("mode of {path} {mode:04o} -> {m:04o}"));
    }
    if let Some(u) = want.uid.filter(|u| *u != uid) {
        out.push(format!("owner of {path} {uid} -> {u}"));
    }
    if let Some(g) = want.gid.filter(|g| *g != gid) {
        out.push(format!("group of {path} {gid} -> {g}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use tenet_policies::model::{AbsPath, Perms};

    use std::path::PathBuf;

    use super::*;

    fn promise(content: &str) -> FilePromise<String> {
        FilePromise {
            path: AbsPath::parse("/etc/motd").unwrap(),
            content: Content::Text(content.into()),
            perms: Perms::default(),
        }
    }

    fn file(content: &str, mode: u32) -> Observed {
        Observed::File {
            content: Seen::Bytes(content.as_bytes().to_vec()),
            mode,
            uid: 0,
            gid: 0,
        }
    }

    fn text(p: &FilePromise<String>) -> &[u8] {
        match &p.content {
            Content::Text(t) => t.as_bytes(),
            _ => unreachable!("the table promises are text"),
        }
    }

    /// The change lines a plan reports, or `kept` / `blocked: ...`.
    fn check(p: &FilePromise<String>, want: Attrs, found: Observed, expected: &[&str]) {
        let got: Vec<String> = match plan(
            p,
            text(p),
            &PathBuf::from("/r/etc/motd"),
            want,
            found,
            Diffs::Keep,
        ) {
            Plan::Kept => vec!["kept".into()],
            Plan::Blocked(why) => vec![format!("blocked: {why}")],
            Plan::Repair { changes, .. } => changes.into_iter().map(|c| c.summary).collect(),
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn plans() {
        let none = Attrs::default();
        let m644 = Attrs {
            mode: Some(0o644),
            ..none
        };
        check(
            &promise("hi\n"),
            none,
            Observed::Missing,
            &["created /etc/motd (3 bytes, mode 0644)"],
        );
        check(&promise("hi\n"), none, file("hi\n", 0o600), &["kept"]);
        check(&promise("hi\n"), m644, file("hi\n", 0o644), &["kept"]);
        check(
            &promise("hi\n"),
            m644,
            file("hi\n", 0o600),
            &["mode of /etc/motd 0600 -> 0644"],
        );
        check(
            &promise("hi\n"),
            m644,
            file("ho\n", 0o600),
            &[
                "rewrote /etc/motd (content differed)",
                "mode of /etc/motd 0600 -> 0644",
            ],
        );
        check(
            &promise("hi\n"),
            Attrs {
                uid: Some(7),
                ..none
            },
            file("hi\n", 0o644),
            &["owner of /etc/motd 0 -> 7"],
        );
        check(
            &promise("x"),
            none,
            Observed::Dir,
            &["blocked: /etc/motd is a directory; a file promise never replaces one"],
        );
        check(
            &promise("x"),
            none,
            Observed::Symlink,
            &["blocked: /etc/motd is a symlink; a file promise does not write through links"],
        );
        check(
            &promise("x"),
            none,
            Observed::Other,
            &["blocked: /etc/motd is not a regular file"],
        );
    }

    #[test]
    fn a_rewrite_keeps_the_existing_mode_and_owner() {
        let p = promise("new");
        let Plan::Repair { ops, .. } = plan(
            &p,
            text(&p),
            &PathBuf::from("/r/f"),
            Attrs::default(),
            Observed::File {
                content: Seen::Bytes(b"old".to_vec()),
                mode: 0o600,
                uid: 5,
                gid: 6,
            },
            Diffs::Keep,
        ) else {
            panic!("expected a repair")
        };
        match &ops[..] {
            [Op::Write { attrs, .. }] => assert_eq!(
                *attrs,
                Attrs {
                    mode: Some(0o600),
                    uid: Some(5),
                    gid: Some(6)
                }
            ),
            other => panic!("{other:?}"),
        }
    }
}
