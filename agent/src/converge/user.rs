//! `user`: a user present with the uid, primary group, supplementary groups,
//! home, shell and password lock the promise names, or absent; observed in
//! `ROOT/etc/passwd`, `group` and `shadow`, changed with `useradd`, `usermod` and
//! `userdel` ([`super::accounts`]). Groups converge in an earlier phase, so a
//! group the policy makes exists before a user names it.
//!
//! A new user's home directory is not created (`useradd -M`): promise it with a
//! `dir`, which converges after users and may name the user as its owner.

use tenet_policies::model::{Owner, Presence, UserPromise};

use super::accounts::{Accounts, tool};
use super::{Change, Cx, Op, Plan, PromiseError};

/// One tool run the plan needs, with the changes it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) program: &'static str,
    pub(crate) args: Vec<String>,
    pub(crate) changes: Vec<String>,
}

pub(crate) fn evaluate(cx: &Cx<'_>, p: &UserPromise) -> Result<Plan, PromiseError> {
    let db = Accounts::read(cx.root, p.locked.is_some())?;
    let runs = plan(p, &db);
    if runs.is_empty() {
        return Ok(Plan::Kept);
    }
    let mut changes = Vec::new();
    let mut ops = Vec::new();
    for r in runs {
        changes.extend(r.changes.into_iter().map(Change::new));
        ops.push(Op::Run(tool(cx, r.program, r.args)));
    }
    Ok(Plan::Repair { changes, ops })
}

/// The tool runs that bring `db` to what `p` promises (pure).
pub(crate) fn plan(p: &UserPromise, db: &Accounts) -> Vec<Run> {
    let name = &p.user;
    let found = db.users.get(name);
    let locked_now = db.passwords.get(name).is_some_and(|pw| pw.starts_with('!'));
    match (p.state, found) {
        (Presence::Absent, None) => Vec::new(),
        (Presence::Absent, Some(_)) => vec![Run {
            program: "userdel",
            args: vec![name.clone()],
            changes: vec![format!("removed user {name}")],
        }],
        (Presence::Present, None) => {
            let mut args = vec!["-M".to_string()];
            if let Some(uid) = p.uid {
                args.extend(["-u".to_string(), uid.to_string()]);
            }
            if let Some(g) = &p.group {
                args.extend(["-g".to_string(), g.to_string()]);
            }
            if let Some(gs) = p.groups.as_ref().filter(|g| !g.is_empty()) {
                args.extend(["-G".to_string(), gs.join(",")]);
            }
            if let Some(h) = &p.home {
                args.extend(["-d".to_string(), h.to_string()]);
            }
            if let Some(s) = &p.shell {
                args.extend(["-s".to_string(), s.to_string()]);
            }
            args.push(name.clone());
            let mut runs = vec![Run {
                program: "useradd",
                args,
                changes: vec![format!("added user {name}")],
            }];
            // useradd's new password field is `!` on most systems but not all;
            // the lock is set either way, and verify reads it back.
            if let Some(locked) = p.locked {
                runs.push(lock_run(name, locked));
            }
            runs
        }
        (Presence::Present, Some(u)) => {
            let mut args = Vec::new();
            let mut changes = Vec::new();
            if let Some(uid) = p.uid.filter(|uid| *uid != u.uid) {
                args.extend(["-u".to_string(), uid.to_string()]);
                changes.push(format!("set the uid of {name} to {uid} (was {})", u.uid));
            }
            let gid_wanted = match &p.group {
                Some(Owner::Id(g)) => Some(Some(*g)),
                Some(Owner::Name(n)) => Some(db.gid_of(n)),
                None => None,
            };
            if let (Some(want), Some(g)) = (gid_wanted, &p.group)
                && want != Some(u.gid)
            {
                args.extend(["-g".to_string(), g.to_string()]);
                changes.push(format!(
                    "set the primary group of {name} to {g} (gid was {})",
                    u.gid
                ));
            }
            if let Some(want) = &p.groups {
                let have = db.groups_of(name);
                if &have != want {
                    args.extend(["-G".to_string(), want.join(",")]);
                    changes.push(format!(
                        "set the groups of {name} to [{}] (were [{}])",
                        want.join(", "),
                        have.join(", ")
                    ));
                }
            }
            if let Some(h) = p.home.as_ref().filter(|h| h.to_string() != u.home) {
                args.extend(["-d".to_string(), h.to_string()]);
                changes.push(format!("set the home of {name} to {h} (was {})", u.home));
            }
            if let Some(s) = p.shell.as_ref().filter(|s| s.to_string() != u.shell) {
                args.extend(["-s".to_string(), s.to_string()]);
                changes.push(format!("set the shell of {name} to {s} (was {})", u.shell));
            }
            let mut runs = Vec::new();
            if !args.is_empty() {
                args.push(name.clone());
                runs.push(Run {
                    program: "usermod",
                    args,
                    changes,
                });
            }
            if let Some(locked) = p.locked.filter(|l| *l != locked_now) {
                runs.push(lock_run(name, locked));
            }
            runs
        }
    }
}

fn lock_run(name: &str, locked: bool) -> Run {
    let (flag, what) = if locked {
        ("-L", "locked")
    } else {
        ("-U", "unlocked")
    };
    Run {
        program: "usermod",
        args: vec![flag.to_string(), name.to_string()],
        changes: vec![format!("{what} the password of {name}")],
    }
}

#[cfg(test)]
mod tests {
    use tenet_policies::model::AbsPath;

    use super::super::accounts::{GroupEntry, PasswdEntry};
    use super::*;

    fn db() -> Accounts {
        let mut db = Accounts::default();
        db.users.insert(
            "alice".into(),
            PasswdEntry {
                uid: 2001,
                gid: 100,
                home: "/home/alice".into(),
                shell: "/bin/sh".into(),
            },
        );
        db.groups.insert(
            "users".into(),
            GroupEntry {
                gid: 100,
                members: vec![],
            },
        );
        db.groups.insert(
            "ops".into(),
            GroupEntry {
                gid: 3000,
                members: vec!["alice".into()],
            },
        );
        db.passwords.insert("alice".into(), "!$6$x".into());
        db
    }

    fn alice() -> UserPromise {
        UserPromise {
            user: "alice".into(),
            state: Presence::Present,
            uid: None,
            group: None,
            groups: None,
            home: None,
            shell: None,
            locked: None,
        }
    }

    /// Each run as `program args...`.
    fn check(p: &UserPromise, want: &[&str]) {
        let got: Vec<String> = plan(p, &db())
            .into_iter()
            .map(|r| format!("{} {}", r.program, r.args.join(" ")))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn as_found_is_kept() {
        check(&alice(), &[]);
        check(
            &UserPromise {
                uid: Some(2001),
                group: Some(Owner::Name("users".into())),
                groups: Some(vec!["ops".into()]),
                home: Some(AbsPath::parse("/home/alice").unwrap()),
                shell: Some(AbsPath::parse("/bin/sh").unwrap()),
                locked: Some(true),
                ..alice()
            },
            &[],
        );
        check(
            &UserPromise {
                group: Some(Owner::Id(100)),
                ..alice()
            },
            &[],
        );
    }

    #[test]
    fn differences_become_one_usermod() {
        check(
            &UserPromise {
                uid: Some(2002),
                group: Some(Owner::Name("ops".into())),
                groups: Some(vec![]),
                shell: Some(AbsPath::parse("/bin/bash").unwrap()),
                ..alice()
            },
            &["usermod -u 2002 -g ops -G  -s /bin/bash alice"],
        );
        check(
            &UserPromise {
                locked: Some(false),
                ..alice()
            },
            &["usermod -U alice"],
        );
    }

    #[test]
    fn missing_and_absent() {
        let bob = UserPromise {
            user: "bob".into(),
            uid: Some(2005),
            groups: Some(vec!["ops".into(), "users".into()]),
            locked: Some(true),
            ..alice()
        };
        check(
            &bob,
            &["useradd -M -u 2005 -G ops,users bob", "usermod -L bob"],
        );
        check(
            &UserPromise {
                state: Presence::Absent,
                ..alice()
            },
            &["userdel alice"],
        );
        check(
            &UserPromise {
                state: Presence::Absent,
                ..bob
            },
            &[],
        );
    }
}
