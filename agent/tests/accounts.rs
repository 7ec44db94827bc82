//! `[[user]]` and `[[group]]` against the real shadow tools on a sandbox root:
//! `ROOT/etc/passwd`, `group`, `shadow` and `gshadow` written by the test (never
//! copied from this machine), changed by `useradd`/`usermod`/`userdel`/`groupadd`/
//! `groupmod`/`groupdel --prefix ROOT`, and read back by the test itself.
//!
//! The property test draws starting databases and promises over a few users and
//! groups: after one apply a dry run finds every kept or repaired promise kept,
//! and a second apply repairs nothing and leaves the databases byte for byte.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::util::{Report, Sandbox, write, write_mode};

/// The databases' starting lines, beyond root and `users` (gid 100).
#[derive(Debug, Clone, Default)]
struct Db {
    /// `name:x:uid:gid::home:shell`
    passwd: Vec<String>,
    /// `name:x:gid:members`
    group: Vec<String>,
    /// `name:password:...`
    shadow: Vec<String>,
}

fn seed(sb: &Sandbox, db: &Db) {
    let mut passwd = "root:x:0:0:root:/root:/bin/sh\n".to_string();
    let mut group = "root:x:0:\nusers:x:100:\n".to_string();
    let mut shadow = "root:*:19000:0:99999:7:::\n".to_string();
    let mut gshadow = "root:*::\nusers:*::\n".to_string();
    for l in &db.passwd {
        let _ = writeln!(passwd, "{l}");
    }
    for l in &db.group {
        let _ = writeln!(group, "{l}");
        let f: Vec<&str> = l.split(':').collect();
        let _ = writeln!(gshadow, "{}:!::{}", f[0], f[3]);
    }
    for l in &db.shadow {
        let _ = writeln!(shadow, "{l}");
    }
    write(&sb.at("/etc/passwd"), passwd.as_bytes());
    write(&sb.at("/etc/group"), group.as_bytes());
    write_mode(&sb.at("/etc/shadow"), shadow.as_bytes(), 0o640);
    write_mode(&sb.at("/etc/gshadow"), gshadow.as_bytes(), 0o640);
}

/// The three databases as they are now.
fn databases(sb: &Sandbox) -> [String; 3] {
    ["/etc/passwd", "/etc/group", "/etc/shadow"]
        .map(|p| fs::read_to_string(sb.at(p)).unwrap_or_else(|e| panic!("{p}: {e}")))
}

/// The line of `db` for `name`, if any.
fn line<'a>(db: &'a str, name: &str) -> Option<&'a str> {
    db.lines().find(|l| l.split(':').next() == Some(name))
}

fn statuses(r: &Report) -> BTreeMap<String, String> {
    r.statuses().into_iter().collect()
}

#[test]
fn users_and_groups_converge_through_the_shadow_tools() {
    let sb = Sandbox::new();
    seed(
        &sb,
        &Db {
            passwd: vec![
                "olduser:x:1500:100::/home/olduser:/bin/sh".into(),
                "carol:x:1600:100::/home/carol:/bin/sh".into(),
            ],
            group: vec!["oldgroup:x:1501:".into(), "wheel:x:10:carol".into()],
            shadow: vec![
                "olduser:!:19000::::::".into(),
                "carol:$6$salt$hash:19000::::::".into(),
            ],
        },
    );
    sb.policy(&[(
        "accounts.toml",
        r#"
[[group]]
group = "ops"
gid = 3000

[[group]]
group = "oldgroup"
state = "absent"

[[user]]
user = "alice"
uid = 2001
group = "ops"
groups = ["wheel"]
home = "/srv/alice"
shell = "/bin/sh"
locked = true

[[user]]
user = "olduser"
state = "absent"

[[user]]
user = "carol"
groups = []
shell = "/bin/bash"
locked = true
"#,
    )]);
    let check = sb.check();
    check.expect_code(0);
    let before = databases(&sb);

    let dry = sb.apply_outside_state(&["--json", "--dry-run"]);
    dry.expect_code(0);
    let report = dry.report();
    for (id, s) in statuses(&report) {
        assert_eq!(s, "would_repair", "{id}");
    }
    assert_eq!(report.event("user:alice")["changes"][0], "added user alice");
    assert_eq!(databases(&sb), before, "a dry run changed the databases");

    let applied = sb.apply_outside_state(&["--json"]);
    applied.expect_code(0);
    for (id, s) in statuses(&applied.report()) {
        assert_eq!(s, "repaired", "{id}: {}", applied.stdout);
    }
    let [passwd, group, shadow] = databases(&sb);
    assert_eq!(
        line(&passwd, "alice"),
        Some("alice:x:2001:3000::/srv/alice:/bin/sh")
    );
    assert_eq!(line(&group, "ops"), Some("ops:x:3000:"));
    assert_eq!(
        line(&group, "wheel"),
        Some("wheel:x:10:alice"),
        "carol left wheel, alice joined"
    );
    assert!(line(&shadow, "alice").is_some_and(|l| l.starts_with("alice:!")));
    assert!(line(&shadow, "carol").is_some_and(|l| l.starts_with("carol:!$6$salt$hash")));
    assert_eq!(
        line(&passwd, "carol"),
        Some("carol:x:1600:100::/home/carol:/bin/bash")
    );
    assert_eq!(line(&passwd, "olduser"), None);
    assert_eq!(line(&group, "oldgroup"), None);

    let after = databases(&sb);
    let again = sb.apply_outside_state(&["--json"]);
    again.expect_code(0);
    for (id, s) in statuses(&again.report()) {
        assert_eq!(s, "kept", "{id}");
    }
    assert_eq!(databases(&sb), after, "a kept run changed the databases");
}

#[test]
fn check_locates_user_and_group_mistakes() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "accounts.toml",
        "[[user]]\nuser = \"Alice\"\nshel = \"/bin/sh\"\n\n[[group]]\ngroup = \"ops\"\nstate = \"absent\"\ngid = 5\n",
    )]);
    let r = sb.check();
    r.expect_code(3);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(
        out.contains("accounts.toml:2:8: user[0].user: `Alice` is not a user or group name"),
        "{out}"
    );
    assert!(
        out.contains(
            "accounts.toml:3:1: user[0].shel: unknown field `shel`; did you mean `shell`?"
        ),
        "{out}"
    );
    assert!(
        out.contains("group[0].gid: an absent group has no `gid`"),
        "{out}"
    );
}

/// How many users and groups the property test draws from.
const N: usize = 3;

#[derive(Debug, Clone)]
struct StartUser {
    shell: &'static str,
    /// Which groups list the user (of those that exist at first).
    member_of: [bool; N],
    /// `!` (locked, no password) or a hash.
    locked_no_password: bool,
}

#[derive(Debug, Clone)]
enum GroupSpec {
    Present { new_gid: Option<bool> },
    Absent,
}

#[derive(Debug, Clone)]
enum UserSpec {
    Present {
        new_uid: Option<bool>,
        primary_users: bool,
        groups: Option<[bool; N]>,
        shell: Option<&'static str>,
        locked: Option<bool>,
    },
    Absent,
}

#[derive(Debug, Clone)]
struct Case {
    groups: Vec<(Option<bool>, Option<GroupSpec>)>,
    users: Vec<(Option<StartUser>, Option<UserSpec>)>,
}

fn shell() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("/bin/sh"), Just("/bin/bash")]
}

fn case() -> impl Strategy<Value = Case> {
    let group = (
        proptest::option::of(any::<bool>()),
        proptest::option::of(prop_oneof![
            proptest::option::of(any::<bool>()).prop_map(|new_gid| GroupSpec::Present { new_gid }),
            Just(GroupSpec::Absent),
        ]),
    );
    let start_user = (shell(), any::<[bool; N]>(), any::<bool>()).prop_map(
        |(shell, member_of, locked_no_password)| StartUser {
            shell,
            member_of,
            locked_no_password,
        },
    );
    let user_spec = prop_oneof![
        (
            proptest::option::of(any::<bool>()),
            any::<bool>(),
            proptest::option::of(any::<[bool; N]>()),
            proptest::option::of(shell()),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(new_uid, primary_users, groups, shell, locked)| {
                UserSpec::Present {
                    new_uid,
                    primary_users,
                    groups,
                    shell,
                    locked,
                }
            }),
        Just(UserSpec::Absent),
    ];
    (
        proptest::collection::vec(group, N),
        proptest::collection::vec(
            (
                proptest::option::of(start_user),
                proptest::option::of(user_spec),
            ),
            N,
        ),
    )
        .prop_map(|(groups, users)| Case { groups, users })
}

/// Seeds the databases and writes the policy; drops what the policy language
/// would refuse or the tools cannot do (naming a group that will not exist,
/// unlocking a user with no password).
fn build(sb: &Sandbox, case: &Case) {
    let mut db = Db::default();
    // Group k starts with gid 3000+k (or 3100+k); a new gid is 3200+k.
    let exists_at_first: Vec<bool> = case.groups.iter().map(|(s, _)| s.is_some()).collect();
    let exists_after: Vec<bool> = case
        .groups
        .iter()
        .map(|(start, spec)| match spec {
            Some(GroupSpec::Present { .. }) => true,
            Some(GroupSpec::Absent) => false,
            None => start.is_some(),
        })
        .collect();
    let mut members: Vec<Vec<String>> = vec![Vec::new(); N];
    for (k, (start, _)) in case.users.iter().enumerate() {
        if let Some(u) = start {
            db.passwd
                .push(format!("u{k}:x:{}:100::/home/u{k}:{}", 2000 + k, u.shell));
            let pw = if u.locked_no_password { "!" } else { "$6$s$h" };
            db.shadow.push(format!("u{k}:{pw}:19000::::::"));
            for (g, m) in u.member_of.iter().enumerate() {
                if *m && exists_at_first[g] {
                    members[g].push(format!("u{k}"));
                }
            }
        }
    }
    for (k, (start, _)) in case.groups.iter().enumerate() {
        if let Some(other_gid) = start {
            let gid = if *other_gid { 3100 + k } else { 3000 + k };
            db.group
                .push(format!("g{k}:x:{gid}:{}", members[k].join(",")));
        }
    }
    seed(sb, &db);

    let mut policy = String::new();
    for (k, (_, spec)) in case.groups.iter().enumerate() {
        match spec {
            None => {}
            Some(GroupSpec::Absent) => {
                let _ = writeln!(policy, "[[group]]\ngroup = \"g{k}\"\nstate = \"absent\"\n");
            }
            Some(GroupSpec::Present { new_gid }) => {
                let _ = writeln!(policy, "[[group]]\ngroup = \"g{k}\"");
                match new_gid {
                    Some(true) => {
                        let _ = writeln!(policy, "gid = {}", 3200 + k);
                    }
                    Some(false) => {
                        let _ = writeln!(policy, "gid = {}", 3000 + k);
                    }
                    None => {}
                }
                policy.push('\n');
            }
        }
    }
    for (k, (start, spec)) in case.users.iter().enumerate() {
        match spec {
            None => {}
            Some(UserSpec::Absent) => {
                let _ = writeln!(policy, "[[user]]\nuser = \"u{k}\"\nstate = \"absent\"\n");
            }
            Some(UserSpec::Present {
                new_uid,
                primary_users,
                groups,
                shell,
                locked,
            }) => {
                let _ = writeln!(policy, "[[user]]\nuser = \"u{k}\"");
                match new_uid {
                    Some(true) => {
                        let _ = writeln!(policy, "uid = {}", 2100 + k);
                    }
                    Some(false) => {
                        let _ = writeln!(policy, "uid = {}", 2000 + k);
                    }
                    None => {}
                }
                if *primary_users {
                    let _ = writeln!(policy, "group = \"users\"");
                }
                if let Some(gs) = groups {
                    let names: Vec<String> = gs
                        .iter()
                        .enumerate()
                        .filter(|(g, m)| **m && exists_after[*g])
                        .map(|(g, _)| format!("\"g{g}\""))
                        .collect();
                    let _ = writeln!(policy, "groups = [{}]", names.join(", "));
                }
                if let Some(s) = shell {
                    let _ = writeln!(policy, "shell = \"{s}\"");
                }
                // `usermod -U` cannot unlock a user without a password (a new
                // user has none): only ask for it where a hash is there.
                let has_hash = start.as_ref().is_some_and(|s| !s.locked_no_password);
                match locked {
                    Some(true) => {
                        let _ = writeln!(policy, "locked = true");
                    }
                    Some(false) if has_hash => {
                        let _ = writeln!(policy, "locked = false");
                    }
                    _ => {}
                }
                policy.push('\n');
            }
        }
    }
    write(&sb.policy.join("p.toml"), policy.as_bytes());
}

fn check_case(case: &Case) -> Result<(), TestCaseError> {
    let sb = Sandbox::new();
    build(&sb, case);
    let policy = fs::read_to_string(sb.policy.join("p.toml")).expect("the policy just written");
    let valid = sb.check();
    prop_assert_eq!(valid.code, 0, "invalid policy:\n{}{}", policy, valid.stdout);

    let first = sb.apply_outside_state(&["--json"]);
    prop_assert_eq!(
        first.code,
        0,
        "{}\n{}{}",
        policy,
        first.stdout,
        first.stderr
    );
    let once = statuses(&first.report());
    let after_once = databases(&sb);

    let dry = sb.apply_outside_state(&["--json", "--dry-run"]);
    for (id, s) in statuses(&dry.report()) {
        prop_assert_eq!(
            s.as_str(),
            "kept",
            "{} was {:?} on the first apply:\n{}\n{}",
            &id,
            once.get(&id),
            policy,
            dry.stdout
        );
    }
    prop_assert_eq!(
        databases(&sb),
        after_once.clone(),
        "the dry run changed the databases"
    );

    let second = sb.apply_outside_state(&["--json"]);
    prop_assert_eq!(second.report().count("repaired"), 0, "{}", second.stdout);
    prop_assert_eq!(
        databases(&sb),
        after_once,
        "applying twice left other databases than applying once"
    );
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn users_and_groups_apply_then_replan_is_empty(case in case()) {
        check_case(&case)?;
    }
}
