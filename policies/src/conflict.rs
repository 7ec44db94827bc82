//! Finds promises that fight over the same target.
//!
//! Two promises conflict when they claim the same target in incompatible ways and
//! their conditions can hold on the same member at once ([`can_overlap`]); promises
//! for different members may name the same path.

use std::collections::HashMap;

use crate::cond::can_overlap;
use crate::diag::Diagnostics;
use crate::model::{
    AbsPath, Enablement, LineState, Owner, Presence, Promise, PromiseKind, RunState,
};
use crate::template::Template;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// The promise owns the whole path (file content, link, dir, copy destination, absent).
    Whole(Owns),
    /// The promise edits lines of the file; several edits may share a file.
    Edit,
}

/// What a whole-path claim makes of the path, which decides what may lie beneath it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owns {
    /// Nothing can be beneath a file or an absent path, and writing beneath a link
    /// would write through it.
    Leaf,
    /// A directory (or a copied tree) may hold other promises' targets.
    Dir,
}

/// One promise's claim on a path: the path, the promise's index, how it claims it.
type PathClaim<'p> = (&'p AbsPath, usize, Claim);

pub(crate) fn check(promises: &[Promise], diags: &mut Diagnostics) {
    // Every path claim in one flat list, grouped by path below: a map from each
    // path to a vector of its claims held two small allocations per path, about
    // 2 MB for 10,000 promises, at the peak of an agent's run.
    let mut paths: Vec<PathClaim<'_>> = Vec::with_capacity(promises.len());
    let mut settings: HashMap<(&AbsPath, &str), Vec<usize>> = HashMap::new();
    let mut lines: HashMap<(&AbsPath, &Template), Vec<(usize, LineState)>> = HashMap::new();
    let mut hostnames = Vec::new();
    let mut globs: Vec<(usize, &AbsPath)> = Vec::new();
    let mut copies: Vec<(usize, &AbsPath)> = Vec::new();
    let mut trees: Vec<(usize, &AbsPath)> = Vec::new();
    let mut units: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut users: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut pkgs: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut processes: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in promises.iter().enumerate() {
        match &p.kind {
            PromiseKind::File(f) => paths.push((&f.path, i, Claim::Whole(Owns::Leaf))),
            PromiseKind::Link(l) => paths.push((&l.path, i, Claim::Whole(Owns::Leaf))),
            PromiseKind::Dir(d) => paths.push((&d.path, i, Claim::Whole(Owns::Dir))),
            PromiseKind::Copy(c) => {
                paths.push((&c.to, i, Claim::Whole(Owns::Dir)));
                copies.push((i, &c.to));
            }
            PromiseKind::Tree(t) => {
                paths.push((&t.path, i, Claim::Whole(Owns::Dir)));
                trees.push((i, &t.path));
            }
            PromiseKind::Absent(a) => {
                for path in &a.paths {
                    if is_glob(path) {
                        globs.push((i, path));
                    } else {
                        paths.push((path, i, Claim::Whole(Owns::Leaf)));
                    }
                }
            }
            PromiseKind::Line(l) => {
                paths.push((&l.file, i, Claim::Edit));
                lines
                    .entry((&l.file, &l.line))
                    .or_default()
                    .push((i, l.state));
            }
            PromiseKind::Setting(s) => {
                paths.push((&s.file, i, Claim::Edit));
                settings
                    .entry((&s.file, s.key.as_str()))
                    .or_default()
                    .push(i);
            }
            PromiseKind::Hostname(_) => hostnames.push(i),
            PromiseKind::Command(_) | PromiseKind::Handler(_) => {}
            PromiseKind::Service(u) => units.entry(u.unit.as_str()).or_default().push(i),
            PromiseKind::User(u) => users.entry(u.user.as_str()).or_default().push(i),
            PromiseKind::Group(g) => groups.entry(g.group.as_str()).or_default().push(i),
            PromiseKind::Pkg(p) => pkgs.entry(p.pkg.as_str()).or_default().push(i),
            PromiseKind::Process(p) => processes.entry(p.matches.as_str()).or_default().push(i),
        }
    }
    let mut report = |a: usize, b: usize, what: &str| {
        let (first, second) = if promises[a].origin <= promises[b].origin {
            (a, b)
        } else {
            (b, a)
        };
        let (p, q) = (&promises[first], &promises[second]);
        if can_overlap(p.when.as_deref(), q.when.as_deref()) {
            diags.error(
                q.origin.clone(),
                q.kind.type_name(),
                format!(
                    "`{}` fights with `{}` at {} over {what}",
                    q.id, p.id, p.origin
                ),
            );
        }
    };
    // Diagnostics are sorted later; the order of this walk does not matter. Stable:
    // each path's claims stay in the order of the promises.
    paths.sort_by(|a, b| a.0.cmp(b.0));
    let by_path = || paths.chunk_by(|a, b| a.0 == b.0);
    // The claims on each path that has a leaf claim (file, link, absent), for the
    // walk up from each path.
    let leaves: HashMap<&std::path::Path, &[PathClaim<'_>]> = by_path()
        .filter(|g| g.iter().any(|c| c.2 == Claim::Whole(Owns::Leaf)))
        .map(|g| (g[0].0.as_path(), g))
        .collect();
    for group in by_path() {
        let path = group[0].0;
        for (k, &(_, i, ci)) in group.iter().enumerate() {
            for &(_, j, cj) in &group[k + 1..] {
                if i != j && (matches!(ci, Claim::Whole(_)) || matches!(cj, Claim::Whole(_))) {
                    report(i, j, &path.to_string());
                }
            }
        }
    }
    // A file, link or absent path with other promises' targets beneath it.
    for group in by_path() {
        let path = group[0].0;
        let mut ancestor = path.as_path().parent();
        while let Some(a) = ancestor {
            if let Some(above) = leaves.get(a) {
                for &(_, i, _) in above.iter().filter(|c| c.2 == Claim::Whole(Owns::Leaf)) {
                    for &(_, j, _) in group.iter().filter(|c| c.1 != i) {
                        report(i, j, &format!("{path} (beneath {a})", a = a.display()));
                    }
                }
            }
            ancestor = a.parent();
        }
    }
    for ((file, key), ids) in &settings {
        for (k, &i) in ids.iter().enumerate() {
            for &j in &ids[k + 1..] {
                report(i, j, &format!("setting {key} in {file}"));
            }
        }
    }
    for ((file, _), ids) in &lines {
        for (k, &(i, _)) in ids.iter().enumerate() {
            for &(j, _) in &ids[k + 1..] {
                report(i, j, &format!("the same line in {file}"));
            }
        }
    }
    for (k, &i) in hostnames.iter().enumerate() {
        for &j in &hostnames[k + 1..] {
            report(i, j, "the hostname");
        }
    }
    for (unit, ids) in &units {
        for (k, &i) in ids.iter().enumerate() {
            for &j in &ids[k + 1..] {
                if let (PromiseKind::Service(a), PromiseKind::Service(b)) =
                    (&promises[i].kind, &promises[j].kind)
                    && let Some(what) = service_disagreement(a, b)
                {
                    report(i, j, &format!("{what} of {unit}"));
                }
            }
        }
    }
    for (name, ids) in &users {
        for (k, &i) in ids.iter().enumerate() {
            for &j in &ids[k + 1..] {
                if let (PromiseKind::User(a), PromiseKind::User(b)) =
                    (&promises[i].kind, &promises[j].kind)
                    && let Some(what) = user_disagreement(a, b)
                {
                    report(i, j, &format!("{what} of user {name}"));
                }
            }
        }
    }
    for (name, ids) in &groups {
        for (k, &i) in ids.iter().enumerate() {
            for &j in &ids[k + 1..] {
                if let (PromiseKind::Group(a), PromiseKind::Group(b)) =
                    (&promises[i].kind, &promises[j].kind)
                {
                    if a.state != b.state {
                        report(i, j, &format!("whether group {name} exists"));
                    } else if differ(a.gid, b.gid) {
                        report(i, j, &format!("the gid of group {name}"));
                    }
                }
            }
        }
    }
    for (name, ids) in &pkgs {
        for (k, &i) in ids.iter().enumerate() {
            for &j in &ids[k + 1..] {
                if let (PromiseKind::Pkg(a), PromiseKind::Pkg(b)) =
                    (&promises[i].kind, &promises[j].kind)
                    && (a.state != b.state || a.source != b.source)
                {
                    report(i, j, &format!("package {name}"));
                }
            }
        }
    }
    for (pattern, ids) in &processes {
        for (k, &i) in ids.iter().enumerate() {
            for &j in &ids[k + 1..] {
                if let (PromiseKind::Process(a), PromiseKind::Process(b)) =
                    (&promises[i].kind, &promises[j].kind)
                    && a.state != b.state
                {
                    report(i, j, &format!("whether processes matching `{pattern}` run"));
                }
            }
        }
    }
    // A group promised absent that a present user needs.
    for (name, ids) in &groups {
        for &g in ids {
            let PromiseKind::Group(gp) = &promises[g].kind else {
                continue;
            };
            if gp.state != Presence::Absent {
                continue;
            }
            for ids in users.values() {
                for &u in ids {
                    let PromiseKind::User(up) = &promises[u].kind else {
                        continue;
                    };
                    let primary = matches!(&up.group, Some(Owner::Name(n)) if n == name);
                    let member = up
                        .groups
                        .as_ref()
                        .is_some_and(|l| l.iter().any(|n| n == name));
                    if up.state == Presence::Present && (primary || member) {
                        report(g, u, &format!("group {name}, which user {} needs", up.user));
                    }
                }
            }
        }
    }
    for &(g, pattern) in &globs {
        let Ok(pat) = glob::Pattern::new(&pattern.to_string()) else {
            continue;
        };
        for group in by_path() {
            let path = group[0].0;
            if pat.matches_path(path.as_path()) {
                for &(_, i, _) in group.iter().filter(|c| c.1 != g) {
                    report(g, i, &format!("{path} (matched by {pattern})"));
                }
            }
        }
    }
    for &(c, to) in &copies {
        for group in by_path() {
            let path = group[0].0;
            if path.as_path() != to.as_path() && path.starts_with(to) {
                for &(_, i, _) in group.iter().filter(|cl| cl.1 != c) {
                    report(c, i, &format!("{path} (inside the copy to {to})"));
                }
            }
        }
    }
    // A tree owns every path beneath it, whether its source has a file there or not
    // (its `purge` would remove what another promise made).
    for &(t, at) in &trees {
        for group in by_path() {
            let path = group[0].0;
            if path.as_path() != at.as_path() && path.starts_with(at) {
                for &(_, i, _) in group.iter().filter(|c| c.1 != t) {
                    report(t, i, &format!("{path} (inside the tree at {at})"));
                }
            }
        }
    }
}

/// What two promises on one unit disagree about: an attribute both set differently,
/// or a mask that one promise sets while the other wants the unit running.
fn service_disagreement(
    a: &crate::model::ServicePromise,
    b: &crate::model::ServicePromise,
) -> Option<&'static str> {
    if differ(a.enablement, b.enablement) {
        return Some("the enablement");
    }
    if differ(a.state, b.state) {
        return Some("the running state");
    }
    let masked_running = |p: &crate::model::ServicePromise, q: &crate::model::ServicePromise| {
        p.enablement == Some(Enablement::Masked) && q.state == Some(RunState::Running)
    };
    (masked_running(a, b) || masked_running(b, a))
        .then_some("the enablement (masked, yet wanted running)")
}

/// What two promises on one user disagree about.
fn user_disagreement(
    a: &crate::model::UserPromise,
    b: &crate::model::UserPromise,
) -> Option<&'static str> {
    if a.state != b.state {
        return Some("the existence");
    }
    [
        (differ(a.uid, b.uid), "the uid"),
        (
            differ(a.group.as_ref(), b.group.as_ref()),
            "the primary group",
        ),
        (differ(a.groups.as_ref(), b.groups.as_ref()), "the groups"),
        (differ(a.home.as_ref(), b.home.as_ref()), "the home"),
        (differ(a.shell.as_ref(), b.shell.as_ref()), "the shell"),
        (differ(a.locked, b.locked), "the password lock"),
    ]
    .into_iter()
    .find_map(|(d, what)| d.then_some(what))
}

/// Whether both set a value and the values differ.
fn differ<T: PartialEq>(x: Option<T>, y: Option<T>) -> bool {
    matches!((x, y), (Some(x), Some(y)) if x != y)
}

fn is_glob(p: &AbsPath) -> bool {
    p.to_string().contains(['*', '?', '['])
}
