//! `tree`: a directory of the policy tree's `files/` distributed as a whole.
//!
//! The loader turned the source directory into one file promise per file (content
//! known by its hash in a signed bundle). A tree is kept when every directory
//! holding a file exists with the tree's directory attributes, every file is as a
//! `file` promise with the tree's file attributes would keep it, and, with `purge`,
//! nothing else lies beneath the path. Files are observed and planned by
//! [`super::file`], directories by [`super::dir`]; writes are atomic through the
//! batch like theirs. Nothing is followed: a symlink where the tree needs a
//! directory blocks the promise, and `purge` removes a link itself, never what it
//! points to. Paths are resolved beneath the root.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use tenet_policies::model::{AbsPath, Content, DirPromise, TreePromise};

use super::{Change, Cx, Diffs, Op, Plan, PromiseError, dir, file};
use crate::fsops::{Attrs, Follow, Root};

/// What is beneath the tree's path.
#[derive(Debug)]
pub(crate) struct Observed<'a> {
    /// Each directory of [`TreePromise::dir_paths`], in its order.
    pub(crate) dirs: Vec<dir::Observed>,
    /// Each file of the promise, in its order, with the bytes it must hold (empty
    /// when it was seen to hold them already).
    pub(crate) files: Vec<(file::Observed, Cow<'a, [u8]>)>,
    /// With `purge`: entries beneath the path the source lacks, relative to it,
    /// outermost first (whether each is a directory, removed with what it holds).
    pub(crate) extra: Vec<(PathBuf, bool)>,
}

pub(crate) fn evaluate(cx: &Cx<'_>, p: &TreePromise) -> Result<Plan, PromiseError> {
    let top = cx.root.resolve(&p.path, Follow::Parent)?;
    let dirs = cx.attrs(&p.dirs)?;
    let files = match p.files.first() {
        Some(f) => cx.attrs(&f.perms)?,
        None => Attrs::default(),
    };
    let found = observe(cx, p, &top).map_err(|e| PromiseError::io(&p.path, e))?;
    let planned = plan(p, &top, dirs, files, found, cx.diffs);
    Ok(super::name_real(planned, cx.root, &p.path, &top))
}

/// Reads what is there: directories first (a file beneath a missing or foreign
/// directory is not looked at), then files, then, with `purge`, the rest.
fn observe<'a>(cx: &Cx<'_>, p: &'a TreePromise, top: &Path) -> io::Result<Observed<'a>> {
    let root = cx.root;
    let dir_paths = p.dir_paths();
    let mut dirs = Vec::with_capacity(dir_paths.len());
    // Directories that exist as directories, relative to the top.
    let mut present: BTreeSet<&Path> = BTreeSet::new();
    for rel in &dir_paths {
        let parent_ok = rel
            .parent()
            .is_none_or(|up| up.as_os_str().is_empty() || present.contains(up));
        let seen = if rel.as_os_str().is_empty() || parent_ok {
            dir::observe(root, &join(top, rel))?
        } else {
            dir::Observed::Missing
        };
        if matches!(seen, dir::Observed::Dir { .. }) {
            present.insert(rel.as_path());
        }
        dirs.push(seen);
    }
    let mut files = Vec::with_capacity(p.files.len());
    for f in &p.files {
        let rel = inner(p, &f.path);
        let holder = rel.parent().unwrap_or(Path::new(""));
        let seen = if present.contains(holder) {
            file::observe(cx, &join(top, rel), &f.content)?
        } else {
            file::Observed::Missing
        };
        let content: Cow<'a, [u8]> = match (&f.content, &seen) {
            (
                _,
                file::Observed::File {
                    content: file::Seen::Same,
                    ..
                },
            ) => Cow::Borrowed(&[]),
            (Content::Bytes(b), _) => Cow::Borrowed(b),
            (Content::Text(t), _) => Cow::Borrowed(t.as_bytes()),
            (Content::Stored(s), _) => Cow::Owned(cx.read_stored(s)?),
        };
        files.push((seen, content));
    }
    let mut extra = Vec::new();
    if p.purge && present.contains(Path::new("")) {
        let wanted: BTreeSet<&Path> = p
            .files
            .iter()
            .map(|f| inner(p, &f.path))
            .chain(dir_paths.iter().map(PathBuf::as_path))
            .collect();
        extra = unwanted(root, top, &wanted)?;
    }
    Ok(Observed { dirs, files, extra })
}

/// Entries beneath `top` that are not `wanted`, outermost first; nothing beneath an
/// unwanted directory is listed (it goes with it). Links are entries, never followed.
fn unwanted(root: &Root, top: &Path, wanted: &BTreeSet<&Path>) -> io::Result<Vec<(PathBuf, bool)>> {
    let mut out: Vec<(PathBuf, bool)> = Vec::new();
    for (rel, meta) in root.walk_tree(top)? {
        if wanted.contains(rel.as_path())
            || out.iter().any(|(d, is_dir)| *is_dir && rel.starts_with(d))
        {
            continue;
        }
        out.push((rel, meta.is_dir()));
    }
    Ok(out)
}

/// Pure: what to do about `found`. Directories come first (parents before
/// children), then files, then removals.
pub(crate) fn plan(
    p: &TreePromise,
    top: &Path,
    dirs: Attrs,
    files: Attrs,
    found: Observed<'_>,
    diffs: Diffs,
) -> Plan {
    let mut changes: Vec<Change> = Vec::new();
    let mut ops: Vec<Op> = Vec::new();
    let mut merge = |plan: Plan| -> Option<String> {
        match plan {
            Plan::Kept => None,
            Plan::Repair { changes: c, ops: o } => {
                changes.extend(c);
                ops.extend(o);
                None
            }
            Plan::Blocked(why) => Some(why),
        }
    };
    for (rel, seen) in p.dir_paths().iter().zip(found.dirs) {
        let d = DirPromise {
            path: beneath(&p.path, rel),
            perms: p.dirs.clone(),
        };
        if let dir::Observed::NotDir(what) = seen {
            return Plan::Blocked(format!(
                "{} is {what}, where the tree needs a directory; a tree never replaces it or follows it",
                d.path
            ));
        }
        if let Some(why) = merge(dir::plan(&d, &join(top, rel), dirs, seen)) {
            return Plan::Blocked(why);
        }
    }
    for (f, (seen, content)) in p.files.iter().zip(found.files) {
        let path = join(top, inner(p, &f.path));
        if let Some(why) = merge(file::plan(f, &content, &path, files, seen, diffs)) {
            return Plan::Blocked(why);
        }
    }
    for (rel, is_dir) in found.extra {
        changes.push(Change::new(format!(
            "removed {} (not in {})",
            beneath(&p.path, &rel),
            p.source.display()
        )));
        ops.push(Op::Remove {
            path: join(top, &rel),
            recursive: is_dir,
        });
    }
    if ops.is_empty() {
        Plan::Kept
    } else {
        Plan::Repair { changes, ops }
    }
}

/// A file's path relative to the tree's path.
fn inner<'f>(p: &TreePromise, file: &'f AbsPath) -> &'f Path {
    file.as_path()
        .strip_prefix(p.path.as_path())
        .unwrap_or(file.as_path())
}

/// `top` joined with `rel` (`top` itself for the empty path).
fn join(top: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        top.to_path_buf()
    } else {
        top.join(rel)
    }
}

/// The policy path of `rel` beneath the tree's path, for reports.
fn beneath(path: &AbsPath, rel: &Path) -> AbsPath {
    if rel.as_os_str().is_empty() {
        return path.clone();
    }
    AbsPath::parse(&format!("{path}/{}", rel.display())).unwrap_or_else(|_| path.clone())
}

#[cfg(test)]
mod tests {
    use tenet_policies::model::{FilePromise, Perms};

    use super::*;

    fn tree(files: &[(&str, &str)], purge: bool) -> TreePromise {
        TreePromise {
            path: AbsPath::parse("/etc/t").unwrap(),
            source: PathBuf::from("files/t"),
            files: files
                .iter()
                .map(|(rel, text)| FilePromise {
                    path: AbsPath::parse(&format!("/etc/t/{rel}")).unwrap(),
                    content: Content::Bytes(text.as_bytes().to_vec()),
                    perms: Perms::default(),
                })
                .collect(),
            dirs: Perms::default(),
            purge,
        }
    }

    fn dir_at(mode: u32) -> dir::Observed {
        dir::Observed::Dir {
            mode,
            uid: 0,
            gid: 0,
        }
    }

    fn same(mode: u32) -> (file::Observed, Cow<'static, [u8]>) {
        (
            file::Observed::File {
                content: file::Seen::Same,
                mode,
                uid: 0,
                gid: 0,
            },
            Cow::Borrowed(&[]),
        )
    }

    fn lines(plan: Plan) -> Vec<String> {
        match plan {
            Plan::Kept => vec!["kept".into()],
            Plan::Blocked(why) => vec![format!("blocked: {why}")],
            Plan::Repair { changes, .. } => changes.into_iter().map(|c| c.summary).collect(),
        }
    }

    fn check(p: &TreePromise, dirs: Attrs, found: Observed<'_>, expected: &[&str]) {
        let got = lines(plan(
            p,
            Path::new("/r/etc/t"),
            dirs,
            Attrs::default(),
            found,
            Diffs::Skip,
        ));
        assert_eq!(got, expected);
    }

    #[test]
    fn directories_come_before_their_files() {
        let p = tree(&[("a", "A\n"), ("sub/b", "BB\n")], false);
        assert_eq!(p.dir_paths(), [PathBuf::new(), PathBuf::from("sub")]);
        check(
            &p,
            Attrs::default(),
            Observed {
                dirs: vec![dir::Observed::Missing, dir::Observed::Missing],
                files: vec![
                    (file::Observed::Missing, Cow::Borrowed(b"A\n")),
                    (file::Observed::Missing, Cow::Borrowed(b"BB\n")),
                ],
                extra: Vec::new(),
            },
            &[
                "created directory /etc/t (mode 0755)",
                "created directory /etc/t/sub (mode 0755)",
                "created /etc/t/a (2 bytes, mode 0644)",
                "created /etc/t/sub/b (3 bytes, mode 0644)",
            ],
        );
    }

    #[test]
    fn kept_when_all_is_there_and_purge_finds_nothing() {
        let p = tree(&[("a", "A\n")], true);
        check(
            &p,
            Attrs::default(),
            Observed {
                dirs: vec![dir_at(0o755)],
                files: vec![same(0o644)],
                extra: Vec::new(),
            },
            &["kept"],
        );
    }

    #[test]
    fn purge_removes_what_the_source_lacks() {
        let p = tree(&[("a", "A\n")], true);
        check(
            &p,
            Attrs {
                mode: Some(0o750),
                ..Attrs::default()
            },
            Observed {
                dirs: vec![dir_at(0o755)],
                files: vec![same(0o644)],
                extra: vec![(PathBuf::from("old"), false), (PathBuf::from("d"), true)],
            },
            &[
                "mode of /etc/t 0755 -> 0750",
                "removed /etc/t/old (not in files/t)",
                "removed /etc/t/d (not in files/t)",
            ],
        );
    }

    #[test]
    fn a_link_where_a_directory_belongs_blocks() {
        let p = tree(&[("sub/b", "B")], true);
        check(
            &p,
            Attrs::default(),
            Observed {
                dirs: vec![dir_at(0o755), dir::Observed::NotDir("a symlink")],
                files: vec![(file::Observed::Missing, Cow::Borrowed(b"B"))],
                extra: Vec::new(),
            },
            &[
                "blocked: /etc/t/sub is a symlink, where the tree needs a directory; a tree never replaces it or follows it",
            ],
        );
        check(
            &p,
            Attrs::default(),
            Observed {
                dirs: vec![dir_at(0o755), dir_at(0o755)],
                files: vec![(file::Observed::Symlink, Cow::Borrowed(b"B"))],
                extra: Vec::new(),
            },
            &["blocked: /etc/t/sub/b is a symlink; a file promise does not write through links"],
        );
    }
}
