//! `tree`: a directory of the policy tree's `files/` distributed as a whole. The
//! first run makes the directories and files with the tree's attributes, and with
//! `purge` removes what the source lacks: a stray file, a stray directory with its
//! content, and a link to a directory outside the root (the link goes, what it
//! points to stays). A dry run with `--diff` before it lists exactly the changes
//! the run then makes; the run after it keeps everything. A link where the tree
//! needs a directory blocks the promise without touching what it points to, and
//! `check` refuses a `file` inside a tree.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::{Sandbox, listing, mkdir, symlink, write};

const POLICY: &str = r#"
[[tree]]
name = "sshd.d"
path = "/etc/ssh/sshd_config.d"
source = "sshd.d"
purge = true
mode = "0600"
dir_mode = "0750"
"#;

fn mode(p: &std::path::Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn changes(event: &serde_json::Value) -> Vec<String> {
    event["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn source(sb: &Sandbox) {
    sb.policy(&[("sshd.toml", POLICY)]);
    write(&sb.policy.join("files/sshd.d/10-port.conf"), b"Port 2222\n");
    write(
        &sb.policy.join("files/sshd.d/auth/20-keys.conf"),
        b"PasswordAuthentication no\n",
    );
}

#[test]
fn a_tree_converges_purges_and_is_then_kept() {
    let sb = Sandbox::new();
    source(&sb);
    let top = sb.at("/etc/ssh/sshd_config.d");
    write(&top.join("10-port.conf"), b"Port 22\n");
    write(&top.join("stray.conf"), b"Port 23\n");
    write(&top.join("olddir/x.conf"), b"x\n");
    symlink(&sb.outside, &top.join("away"));
    write(&sb.outside.join("keep-me"), b"outside\n");
    sb.check().expect_code(0);

    let dry = sb.apply_outside_state(&["--json", "--dry-run", "--diff"]);
    dry.expect_code(0);
    let dry = dry.report();
    let would = dry.event("sshd.d");
    assert_eq!(would["status"], "would_repair", "{would}");
    let diff = would.to_string();
    assert!(
        diff.contains("Port 22") && diff.contains("Port 2222"),
        "the dry run shows the rewritten file's diff: {would}"
    );
    assert!(top.join("stray.conf").exists(), "a dry run removed a file");

    let first = sb.apply_outside_state(&["--json"]);
    first.expect_code(0);
    let report = first.report();
    let done = report.event("sshd.d");
    assert_eq!(done["status"], "repaired", "{done}");
    assert_eq!(
        changes(done),
        changes(would),
        "the dry run said exactly this"
    );
    assert_eq!(
        changes(done),
        [
            "mode of /etc/ssh/sshd_config.d 0755 -> 0750",
            "created directory /etc/ssh/sshd_config.d/auth (mode 0750)",
            "rewrote /etc/ssh/sshd_config.d/10-port.conf (content differed)",
            "mode of /etc/ssh/sshd_config.d/10-port.conf 0644 -> 0600",
            "created /etc/ssh/sshd_config.d/auth/20-keys.conf (26 bytes, mode 0600)",
            "removed /etc/ssh/sshd_config.d/away (not in files/sshd.d)",
            "removed /etc/ssh/sshd_config.d/olddir (not in files/sshd.d)",
            "removed /etc/ssh/sshd_config.d/stray.conf (not in files/sshd.d)",
        ]
    );
    assert_eq!(
        fs::read(top.join("10-port.conf")).expect("read"),
        b"Port 2222\n"
    );
    assert_eq!(mode(&top.join("10-port.conf")), 0o600);
    assert_eq!(mode(&top.join("auth")), 0o750);
    assert_eq!(mode(&top), 0o750);
    assert!(!top.join("stray.conf").exists());
    assert!(!top.join("olddir").exists());
    assert!(fs::symlink_metadata(top.join("away")).is_err());
    assert_eq!(
        fs::read(sb.outside.join("keep-me")).expect("what the link pointed to stays"),
        b"outside\n"
    );

    let after = listing(&sb.root);
    let second = sb.apply_outside_state(&["--json"]);
    second.expect_code(0);
    assert_eq!(second.report().event("sshd.d")["status"], "kept");
    assert_eq!(listing(&sb.root), after, "a kept run changed the root");
}

#[test]
fn a_link_where_the_tree_needs_a_directory_blocks() {
    let sb = Sandbox::new();
    source(&sb);
    let top = sb.at("/etc/ssh/sshd_config.d");
    mkdir(&top);
    write(&sb.outside.join("20-keys.conf"), b"theirs\n");
    symlink(&sb.outside, &top.join("auth"));
    let before = listing(&sb.outside);

    let run = sb.apply_outside_state(&["--json"]);
    let report = run.report();
    let ev = report.event("sshd.d");
    assert_eq!(ev["status"], "blocked", "{ev}");
    assert!(
        ev["reason"]
            .as_str()
            .is_some_and(|r| r.contains("/etc/ssh/sshd_config.d/auth is a symlink")),
        "{ev}"
    );
    assert_eq!(
        listing(&sb.outside),
        before,
        "the tree wrote through the link"
    );
    assert!(
        !top.join("10-port.conf").exists(),
        "a blocked tree wrote a file"
    );
}

#[test]
fn check_refuses_a_file_inside_a_tree_and_a_missing_source() {
    let sb = Sandbox::new();
    source(&sb);
    sb.policy(&[(
        "more.toml",
        "[[file]]\npath = \"/etc/ssh/sshd_config.d/99-mine.conf\"\ncontent = \"x\\n\"\n\n\
         [[tree]]\npath = \"/srv/none\"\nsource = \"nowhere\"\ndir_mode = 755\n",
    )]);
    let run = sb.check();
    run.expect_code(3);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains(
            "sshd.toml:2:1: tree: `sshd.d` fights with `file:/etc/ssh/sshd_config.d/99-mine.conf` \
             at more.toml:1:1 over /etc/ssh/sshd_config.d/99-mine.conf (inside the tree at /etc/ssh/sshd_config.d)"
        ),
        "{out}"
    );
    assert!(
        out.contains("more.toml:7:10: tree[0].source: files/nowhere must be a directory"),
        "{out}"
    );
    assert!(
        out.contains("more.toml:8:12: tree[0].dir_mode: write the mode as a string"),
        "{out}"
    );
}
