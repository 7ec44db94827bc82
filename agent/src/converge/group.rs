//! `group`: a group present (with its gid, when named) or absent, observed in
//! `ROOT/etc/group` and changed with `groupadd`, `groupmod` and `groupdel`
//! ([`super::accounts`]).

use tenet_policies::model::{GroupPromise, Presence};

use super::accounts::{Accounts, GroupEntry, tool};
use super::{Change, Cx, Op, Plan, PromiseError};

pub(crate) fn evaluate(cx: &Cx<'_>, p: &GroupPromise) -> Result<Plan, PromiseError> {
    let db = Accounts::read(cx.root, false)?;
    let found = db.groups.get(&p.group);
    Ok(match plan(p, found) {
        None => Plan::Kept,
        Some((summary, program, args)) => {
            Plan::repair(Change::new(summary), Op::Run(tool(cx, program, args)))
        }
    })
}

/// The one change the promise needs (its summary, tool and arguments), if any (pure).
pub(crate) fn plan(
    p: &GroupPromise,
    found: Option<&GroupEntry>,
) -> Option<(String, &'static str, Vec<String>)> {
    let name = p.group.clone();
    match (p.state, found) {
        (Presence::Absent, None) => None,
        (Presence::Absent, Some(_)) => {
            Some((format!("removed group {name}"), "groupdel", vec![name]))
        }
        (Presence::Present, None) => {
            let mut args = Vec::new();
            let mut summary = format!("added group {name}");
            if let Some(gid) = p.gid {
                args.extend(["-g".to_string(), gid.to_string()]);
                summary.push_str(&format!(" (gid {gid})"));
            }
            args.push(name);
            Some((summary, "groupadd", args))
        }
        (Presence::Present, Some(g)) => match p.gid {
            Some(gid) if gid != g.gid => Some((
                format!("set the gid of group {name} to {gid} (was {})", g.gid),
                "groupmod",
                vec!["-g".to_string(), gid.to_string(), name],
            )),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(state: Presence, gid: Option<u32>, found: Option<u32>, want: Option<&[&str]>) {
        let p = GroupPromise {
            group: "ops".to_string(),
            state,
            gid,
        };
        let entry = found.map(|gid| GroupEntry {
            gid,
            members: Vec::new(),
        });
        let got = plan(&p, entry.as_ref()).map(|(_, prog, args)| {
            let mut v = vec![prog.to_string()];
            v.extend(args);
            v
        });
        let want = want.map(|w| w.iter().map(|s| (*s).to_string()).collect::<Vec<_>>());
        assert_eq!(got, want);
    }

    #[test]
    fn group_plans() {
        use Presence::*;
        check(Present, None, Some(5), None);
        check(Present, Some(5), Some(5), None);
        check(
            Present,
            Some(6),
            Some(5),
            Some(&["groupmod", "-g", "6", "ops"]),
        );
        check(Present, None, None, Some(&["groupadd", "ops"]));
        check(
            Present,
            Some(7),
            None,
            Some(&["groupadd", "-g", "7", "ops"]),
        );
        check(Absent, None, None, None);
        check(Absent, None, Some(5), Some(&["groupdel", "ops"]));
    }
}
