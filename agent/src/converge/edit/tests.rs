//! Table and property tests of `line` and `setting` plans.

use proptest::prelude::*;
use regex::Regex;
use tenet_policies::Origin;
use tenet_policies::model::{
    AbsPath, LinePromise, LineState, Promise, PromiseKind, SettingPromise, SettingStyle,
};

use std::path::PathBuf;

use super::*;

fn origin() -> Origin {
    Origin {
        file: "t.toml".into(),
        line: 1,
        col: 1,
    }
}

fn line(text: &str, matches: Option<&str>, state: LineState) -> Promise<String> {
    Promise {
        id: format!("line:{text}"),
        origin: origin(),
        when: None,
        kind: PromiseKind::Line(LinePromise {
            file: AbsPath::parse("/etc/services").unwrap(),
            line: text.into(),
            matches: matches.map(|m| Regex::new(m).unwrap()),
            state,
            create: true,
        }),
        notify: Vec::new(),
    }
}

fn setting(key: &str, value: &str, style: SettingStyle) -> Promise<String> {
    Promise {
        id: format!("setting:{key}"),
        origin: origin(),
        when: None,
        kind: PromiseKind::Setting(SettingPromise {
            file: AbsPath::parse("/etc/services").unwrap(),
            key: key.into(),
            value: value.into(),
            style,
            create: true,
        }),
        notify: Vec::new(),
    }
}

/// Applies the plans to `before` in memory: (new text, every change line).
fn run(edits: &[Promise<String>], before: Option<&str>) -> (String, Vec<String>) {
    let refs: Vec<&Promise<String>> = edits.iter().collect();
    let found = match before {
        Some(t) => Observed::Text {
            text: t.into(),
            attrs: Attrs::default(),
        },
        None => Observed::Missing,
    };
    let mut text = before.unwrap_or_default().to_string();
    let mut changes = Vec::new();
    for p in plan(&refs, &PathBuf::from("/r/etc/services"), found, Diffs::Keep) {
        match p {
            Plan::Kept => {}
            Plan::Blocked(w) => changes.push(format!("blocked: {w}")),
            Plan::Repair { changes: c, ops } => {
                changes.extend(c.into_iter().map(|c| c.summary));
                for op in ops {
                    if let Op::Write { content, .. } = op {
                        text = String::from_utf8(content).unwrap();
                    }
                }
            }
        }
    }
    (text, changes)
}

fn check(edits: &[Promise<String>], before: &str, after: &str, changes: &[&str]) {
    let (text, got) = run(edits, Some(before));
    assert_eq!(text, after, "text");
    assert_eq!(got, changes, "changes");
}

const KRB: &str = "kerberos5\t88/udp\t\tkdc";
const KRB_MATCH: &str = r"^kerberos5[ \t]+88/udp([ \t]|$)";

#[test]
fn kerberos5_line_is_appended_only_when_no_equivalent_exists() {
    let p = [line(KRB, Some(KRB_MATCH), LineState::Present)];
    check(
        &p,
        "ftp 21/tcp\n",
        "ftp 21/tcp\nkerberos5\t88/udp\t\tkdc\n",
        &["appended `kerberos5\\t88/udp\\t\\tkdc` to /etc/services"],
    );
    check(
        &p,
        "kerberos5 88/udp kerberos-sec # spaces\n",
        "kerberos5 88/udp kerberos-sec # spaces\n",
        &[],
    );
    check(&p, "kerberos5\t88/udp\n", "kerberos5\t88/udp\n", &[]);
    // A tcp entry is not the udp entry.
    check(
        &p,
        "kerberos5 88/tcp\n",
        "kerberos5 88/tcp\nkerberos5\t88/udp\t\tkdc\n",
        &["appended `kerberos5\\t88/udp\\t\\tkdc` to /etc/services"],
    );
    // No final newline: one is added before appending, nothing else moves.
    check(
        &p,
        "a\nb",
        "a\nb\nkerberos5\t88/udp\t\tkdc\n",
        &["appended `kerberos5\\t88/udp\\t\\tkdc` to /etc/services"],
    );
}

#[test]
fn absent_lines_are_removed() {
    let p = [line("junk", Some("^junk"), LineState::Absent)];
    check(
        &p,
        "a\njunk\nb\njunk2\n",
        "a\nb\n",
        &["removed 2 lines like `junk` from /etc/services"],
    );
    check(&p, "a\nb\n", "a\nb\n", &[]);
}

#[test]
fn settings_replace_the_key_line_and_keep_the_rest() {
    let p = [setting(
        "RPC_UNSUPPORTED_NETADDRS",
        "9.3.240.1:9.3.240.66",
        SettingStyle::Env,
    )];
    check(
        &p,
        "PATH=/bin\n# RPC_UNSUPPORTED_NETADDRS=comment\nRPC_UNSUPPORTED_NETADDRS=1.2.3.4\nLANG=C\n",
        "PATH=/bin\n# RPC_UNSUPPORTED_NETADDRS=comment\nRPC_UNSUPPORTED_NETADDRS=9.3.240.1:9.3.240.66\nLANG=C\n",
        &[
            "set RPC_UNSUPPORTED_NETADDRS=9.3.240.1:9.3.240.66 in /etc/services (was `RPC_UNSUPPORTED_NETADDRS=1.2.3.4`)",
        ],
    );
    check(
        &p,
        "PATH=/bin\n",
        "PATH=/bin\nRPC_UNSUPPORTED_NETADDRS=9.3.240.1:9.3.240.66\n",
        &["set RPC_UNSUPPORTED_NETADDRS=9.3.240.1:9.3.240.66 in /etc/services (added)"],
    );
    check(
        &p,
        "RPC_UNSUPPORTED_NETADDRS=9.3.240.1:9.3.240.66\nX=1\nRPC_UNSUPPORTED_NETADDRS=other\n",
        "RPC_UNSUPPORTED_NETADDRS=9.3.240.1:9.3.240.66\nX=1\n",
        &["removed 1 later assignment of RPC_UNSUPPORTED_NETADDRS from /etc/services"],
    );
}

#[test]
fn shell_settings_are_quoted_and_keep_export() {
    let p = [setting("CSYNC_CONFIGURED", "1", SettingStyle::Shell)];
    check(
        &p,
        "export CSYNC_CONFIGURED=0\n",
        "export CSYNC_CONFIGURED=\"1\"\n",
        &["set export CSYNC_CONFIGURED=\"1\" in /etc/services (was `export CSYNC_CONFIGURED=0`)"],
    );
    check(
        &p,
        "CSYNC_CONFIGURED=\"1\"\n",
        "CSYNC_CONFIGURED=\"1\"\n",
        &[],
    );
    let q = [setting("MSG", "a \"b\" $c", SettingStyle::Shell)];
    check(
        &q,
        "",
        "MSG=\"a \\\"b\\\" \\$c\"\n",
        &["set MSG=\"a \\\"b\\\" \\$c\" in /etc/services (added)"],
    );
}

#[test]
fn several_edits_to_one_file_are_written_once() {
    let p = [
        line("a 1/tcp", None, LineState::Present),
        line("b 2/tcp", None, LineState::Present),
        setting("K", "v", SettingStyle::Env),
    ];
    let refs: Vec<&Promise<String>> = p.iter().collect();
    let plans = plan(
        &refs,
        &PathBuf::from("/r/f"),
        Observed::Text {
            text: "x\n".into(),
            attrs: Attrs::default(),
        },
        Diffs::Keep,
    );
    let writes = plans
        .iter()
        .map(|p| match p {
            Plan::Repair { ops, .. } => ops.len(),
            _ => 0,
        })
        .sum::<usize>();
    assert_eq!(writes, 1);
    let (text, _) = run(&p, Some("x\n"));
    assert_eq!(text, "x\na 1/tcp\nb 2/tcp\nK=v\n");
}

#[test]
fn a_missing_file_is_created_unless_told_not_to() {
    let (text, _) = run(&[line("a", None, LineState::Present)], None);
    assert_eq!(text, "a\n");
    let mut p = line("a", None, LineState::Present);
    if let PromiseKind::Line(l) = &mut p.kind {
        l.create = false;
    }
    let (_, changes) = run(&[p], None);
    assert_eq!(
        changes,
        ["blocked: /etc/services does not exist and create = false"]
    );
}

#[test]
fn a_directory_blocks_every_edit() {
    let p = [
        line("a", None, LineState::Present),
        setting("K", "v", SettingStyle::Env),
    ];
    let refs: Vec<&Promise<String>> = p.iter().collect();
    let plans = plan(
        &refs,
        &PathBuf::from("/r/f"),
        Observed::NotFile("a directory"),
        Diffs::Keep,
    );
    assert!(
        plans
            .iter()
            .all(|p| matches!(p, Plan::Blocked(w) if w.contains("is a directory")))
    );
}

fn arb_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}( [0-9]{1,3}/(tcp|udp))?",
        "(export )?[A-Z]{1,3}=[a-z0-9]{0,4}",
        "# [a-zA-Z=]{0,8}",
        Just(String::new()),
    ]
}

proptest! {
    #[test]
    fn edits_are_idempotent_and_leave_other_lines_alone(
        before in proptest::collection::vec(arb_line(), 0..12),
        final_newline in any::<bool>(),
        keys in proptest::collection::vec("[A-Z]{1,3}", 0..3),
        values in proptest::collection::vec("[a-z0-9]{0,4}", 3),
        present in proptest::collection::vec("[a-z]{1,6}( [0-9]{1,3}/(tcp|udp))?", 0..3),
        absent in proptest::option::of("[a-z]{1,6}"),
    ) {
        let mut edits = Vec::new();
        let mut keys = keys;
        keys.sort();
        keys.dedup();
        for (k, v) in keys.iter().zip(values.iter()) {
            edits.push(setting(k, v, SettingStyle::Env));
        }
        let mut present = present;
        present.sort();
        present.dedup();
        present.retain(|l| Some(l) != absent.as_ref());
        for l in &present {
            edits.push(line(l, None, LineState::Present));
        }
        if let Some(a) = &absent {
            edits.push(line(a, None, LineState::Absent));
        }
        let mut text = before.join("\n");
        if final_newline && !text.is_empty() {
            text.push('\n');
        }
        let (once, _) = run(&edits, Some(&text));
        let (twice, changes) = run(&edits, Some(&once));
        prop_assert_eq!(&once, &twice);
        prop_assert!(changes.is_empty(), "second run changed: {:?}", changes);
        // Lines that no promise names keep their relative order and are all still there.
        let named = |l: &str| {
            keys.iter().any(|k| assigned_key(l).is_some_and(|(key, _)| key == k))
                || present.iter().any(|p| p == l)
                || absent.as_deref() == Some(l)
        };
        let kept_before: Vec<&str> = text.lines().filter(|l| !named(l)).collect();
        let kept_after: Vec<&str> = once.lines().filter(|l| !named(l)).collect();
        prop_assert_eq!(kept_before, kept_after);
        // Each promised key is assigned exactly once; each present line appears.
        for k in &keys {
            prop_assert_eq!(once.lines().filter(|l| assigned_key(l).is_some_and(|(key, _)| key == k)).count(), 1);
        }
        for l in &present {
            prop_assert!(once.lines().any(|x| x == l));
        }
    }
}
