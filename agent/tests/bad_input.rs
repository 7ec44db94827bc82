//! Bad input gets a clear error and changes nothing: invalid policies (exit 3, with
//! `file:line:col`), paths that would leave the root, symlink loops, and things in
//! the way of a promise (exit 1, the promise blocked or failed with its reason).

use std::fs;

use crate::util::{self, Report, Sandbox, listing, mkdir, symlink, write};

/// A lived-in starting tree, so "nothing changed" compares something.
fn lived_in(sb: &Sandbox) {
    write(&sb.at("/etc/motd"), b"welcome\n");
    write(&sb.at("/etc/environment"), b"LANG=C\n");
    mkdir(&sb.at("/var/log"));
}

/// A policy the loader must refuse. `check` and `apply` both exit 3 and print each
/// of `expected`; apply says nothing was changed and writes nothing into the root
/// (not even its state directory, since the tree is checked before the lock).
#[track_caller]
fn refused(files: &[(&str, &str)], expected: &[&str]) {
    let sb = Sandbox::new();
    sb.policy(files);
    lived_in(&sb);
    let before = listing(&sb.root);

    let check = sb.check();
    check.expect_code(3);
    for e in expected {
        assert!(
            check.stdout.contains(e),
            "check does not say {e:?}:\n{}",
            check.stdout
        );
    }
    assert!(check.stdout.contains(": invalid: "), "{}", check.stdout);

    for extra in [&[][..], &["--dry-run"], &["--json"]] {
        let apply = sb.apply(extra);
        apply.expect_code(3);
        for e in expected {
            assert!(
                apply.stderr.contains(e),
                "apply {extra:?} does not say {e:?}:\n{}",
                apply.stderr
            );
        }
        assert!(
            apply.stderr.contains("is invalid") && apply.stderr.contains("nothing was changed"),
            "{}",
            apply.stderr
        );
        assert!(
            apply.stdout.is_empty(),
            "apply {extra:?} reported promises of an invalid policy:\n{}",
            apply.stdout
        );
        assert_eq!(
            listing(&sb.root),
            before,
            "apply {extra:?} of an invalid policy changed the root"
        );
    }
}

/// Applies a valid policy one of whose promises cannot be kept safely: exit 1,
/// promise `id` reported with one of `statuses` and a reason containing `reason`,
/// and the root exactly as it was. The state directory lies outside the root so
/// the comparison sees only what the policy could have touched.
#[track_caller]
fn not_kept(sb: &Sandbox, id: &str, statuses: &[&str], reason: &str) -> Report {
    sb.check().expect_code(0);
    let before = listing(&sb.root);
    let outside = listing(&sb.outside);
    let run = |args: &[&str]| {
        let r = sb.apply_outside_state(args);
        r.expect_code(1);
        let report = r.report();
        let e = report.event(id);
        let status = e["status"].as_str().unwrap_or_default();
        assert!(
            statuses.contains(&status),
            "{args:?}: {id} is {status}: {e}"
        );
        let why = e["reason"].as_str().unwrap_or_default();
        assert!(
            why.contains(reason),
            "{args:?}: {id}: reason {why:?} lacks {reason:?}"
        );
        assert_eq!(listing(&sb.root), before, "{args:?} changed the root");
        assert_eq!(
            listing(&sb.outside),
            outside,
            "{args:?} changed a directory outside the root"
        );
        report
    };
    run(&["--json", "--dry-run"]);
    run(&["--json"])
}

#[test]
fn malformed_toml_is_refused_with_its_location() {
    refused(
        &[(
            "p.toml",
            "[[file]]\npath = \"/etc/motd\"\ncontent = \"unterminated\n",
        )],
        &["p.toml:3:", "invalid basic string"],
    );
    refused(
        &[("p.toml", "[[file]\npath = \"/etc/motd\"\n")],
        &["p.toml:1:"],
    );
}

#[test]
fn an_integer_mode_is_refused_as_a_wrong_type() {
    refused(
        &[(
            "p.toml",
            "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\nmode = 644\n",
        )],
        &["p.toml:4:8: file[0].mode: ", "as a string"],
    );
}

#[test]
fn an_unknown_promise_type_is_refused() {
    refused(
        &[(
            "p.toml",
            "[[fiel]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
        )],
        &["p.toml:1:3: fiel: unknown promise type or table `fiel`"],
    );
}

#[test]
fn an_unknown_field_is_refused_with_a_suggestion() {
    refused(
        &[(
            "p.toml",
            "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\nmdoe = \"0644\"\n",
        )],
        &["p.toml:4:1: file[0].mdoe: unknown field `mdoe`; did you mean `mode`?"],
    );
}

/// Tests run as root, and root reads a file whatever its mode says, so a
/// `chmod 000` policy file would still be read. A `source` that is missing or is a
/// directory cannot be read by anyone.
#[test]
fn a_source_that_cannot_be_read_is_refused() {
    refused(
        &[(
            "p.toml",
            "[[file]]\npath = \"/etc/motd\"\nsource = \"motd-missing\"\n",
        )],
        &["p.toml:3:10: file[0].source: cannot read files/motd-missing"],
    );
    let sb = Sandbox::new();
    mkdir(&sb.policy.join("files/motd"));
    sb.policy(&[(
        "p.toml",
        "[[file]]\npath = \"/etc/motd\"\nsource = \"motd\"\n",
    )]);
    let r = sb.check();
    r.expect_code(3);
    assert!(
        r.stdout
            .contains("p.toml:3:10: file[0].source: cannot read files/motd"),
        "{}",
        r.stdout
    );
    sb.apply(&[]).expect_code(3);
    assert!(!sb.at("/etc/motd").exists());
}

/// A `*.toml` entry of the tree that cannot be read must be an error: skipping it
/// would converge the member to part of its policy. Here it is a dangling symlink:
/// `chmod 000` does not stop root (see above), and a directory named `x.toml` is not
/// unreadable, since the loader descends into subdirectories and reads the files there.
#[test]
fn a_policy_file_that_cannot_be_read_is_refused() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "a.toml",
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
    )]);
    symlink(sb.outside.join("gone.toml"), &sb.policy.join("x.toml"));
    let r = sb.check();
    assert!(
        r.code == 3 && r.stdout.contains("x.toml"),
        "a policy file that cannot be read was skipped without a word (exit {}):\n{}",
        r.code,
        r.stdout
    );
    sb.apply(&[]).expect_code(3);
    assert!(!sb.at("/etc/motd").exists());
}

/// A policy file reached through a symlink is either read or refused, never
/// silently left out.
#[test]
fn a_symlinked_policy_file_is_not_silently_skipped() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "a.toml",
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
    )]);
    write(
        &sb.outside.join("common.toml"),
        b"[[file]]\npath = \"/etc/issue\"\ncontent = \"tenet\\n\"\n",
    );
    symlink(
        sb.outside.join("common.toml"),
        &sb.policy.join("common.toml"),
    );
    let r = sb.check();
    let read = r.code == 0 && r.stdout.contains("valid: 2 promises");
    let refused = r.code == 3 && r.stdout.contains("common.toml");
    assert!(
        read || refused,
        "the symlinked common.toml was neither read nor refused (exit {}):\n{}",
        r.code,
        r.stdout
    );
}

#[test]
fn a_path_through_a_symlink_out_of_the_root_is_refused_and_nothing_outside_changes() {
    let sb = Sandbox::new();
    lived_in(&sb);
    // ROOT/etc/x leads to a directory outside the root (as a link to /tmp would,
    // but one this test alone owns, so it can check that nothing appeared there).
    symlink(&sb.outside, &sb.at("/etc/x"));
    write(&sb.outside.join("victim"), b"keep me\n");
    write(&sb.outside.join("passwd"), b"root:x:0:0::/root:/bin/sh\n");
    sb.policy(&[(
        "p.toml",
        r#"
[[file]]
path = "/etc/x/passwd"
content = "pwned\n"
"#,
    )]);
    let r = not_kept(
        &sb,
        "file:/etc/x/passwd",
        &["blocked", "failed"],
        "leads out of the root",
    );
    assert_eq!(r.count("repaired"), 0);

    // Every other promise type through the same link.
    let sb2 = Sandbox::new();
    lived_in(&sb2);
    symlink(&sb2.outside, &sb2.at("/etc/x"));
    symlink(&sb2.outside, &sb2.at("/etc/y"));
    write(&sb2.outside.join("victim"), b"keep me\n");
    write(&sb2.outside.join("passwd"), b"root:x:0:0::/root:/bin/sh\n");
    mkdir(&sb2.outside.join("tree/sub"));
    write(&sb2.at("/srv/src"), b"copied\n");
    // A link at the very path an edit names, out of the root.
    write(&sb2.outside.join("hosts"), b"127.0.0.1 localhost\n");
    symlink(sb2.outside.join("hosts"), &sb2.at("/etc/hosts"));
    sb2.policy(&[(
        "p.toml",
        r#"
[[line]]
file = "/etc/x/passwd"
line = "eve:x:0:0::/root:/bin/sh"

[[setting]]
file = "/etc/x/environment"
key = "PATH"
value = "/tmp"

[[dir]]
path = "/etc/x/newdir"

[[link]]
path = "/etc/x/newlink"
target = "/etc/motd"

[[absent]]
paths = ["/etc/x/victim"]

[[absent]]
paths = ["/etc/x/tree"]
recursive = true

[[copy]]
from = "/srv/src"
to = "/etc/x/copied"

[[copy]]
from = "/etc/x/passwd"
to = "/srv/stolen"

[[absent]]
paths = ["/etc/y/*"]
recursive = true

[[line]]
file = "/etc/hosts"
line = "10.0.0.66 evil"
"#,
    )]);
    sb2.check().expect_code(0);
    let before = listing(&sb2.root);
    let outside = listing(&sb2.outside);
    let r = sb2.apply_outside_state(&["--json"]);
    r.expect_code(1);
    let report = r.report();
    assert_eq!(report.events.len(), 10);
    for e in &report.events {
        let status = e["status"].as_str().unwrap_or_default();
        assert!(
            status == "blocked" || status == "failed",
            "a promise through a link out of the root was {status}: {e}"
        );
        let why = e["reason"].as_str().unwrap_or_default();
        assert!(why.contains("leads out of the root"), "{e}");
    }
    assert_eq!(
        listing(&sb2.outside),
        outside,
        "the agent wrote outside the root"
    );
    assert_eq!(listing(&sb2.root), before);

    // A relative link that climbs above the root is refused the same way.
    let sb3 = Sandbox::new();
    symlink("../../../outside", &sb3.at("/etc/up"));
    write(&sb3.outside.join("passwd"), b"root:x:0:0::/root:/bin/sh\n");
    sb3.policy(&[(
        "p.toml",
        "[[file]]\npath = \"/etc/up/passwd\"\ncontent = \"pwned\\n\"\n",
    )]);
    not_kept(
        &sb3,
        "file:/etc/up/passwd",
        &["blocked", "failed"],
        "leads out of the root",
    );
}

#[test]
fn a_symlink_loop_is_reported_not_followed_forever() {
    let sb = Sandbox::new();
    lived_in(&sb);
    symlink("loop2", &sb.at("/etc/loop1"));
    symlink("loop1", &sb.at("/etc/loop2"));
    symlink("self", &sb.at("/etc/self"));
    sb.policy(&[(
        "p.toml",
        r#"
[[file]]
path = "/etc/loop1/motd"
content = "hi\n"

[[line]]
file = "/etc/self"
line = "x"
"#,
    )]);
    let r = not_kept(
        &sb,
        "file:/etc/loop1/motd",
        &["blocked", "failed"],
        "too many levels of symbolic links",
    );
    let e = r.event("line:/etc/self:x");
    assert!(
        e["reason"]
            .as_str()
            .is_some_and(|w| w.contains("too many levels of symbolic links")),
        "{e}"
    );
}

#[test]
fn a_directory_where_a_file_is_promised_is_left_alone() {
    let sb = Sandbox::new();
    lived_in(&sb);
    write(&sb.at("/etc/motd.d/keep"), b"mine\n");
    mkdir(&sb.at("/etc/empty"));
    sb.policy(&[(
        "p.toml",
        r#"
[[file]]
path = "/etc/motd.d"
content = "hi\n"

[[file]]
path = "/etc/empty"
content = "hi\n"
"#,
    )]);
    not_kept(
        &sb,
        "file:/etc/motd.d",
        &["blocked"],
        "/etc/motd.d is a directory",
    );
    assert_eq!(
        fs::read_to_string(sb.at("/etc/motd.d/keep")).unwrap(),
        "mine\n"
    );
    assert!(sb.at("/etc/empty").is_dir());
}

#[test]
fn two_promises_over_one_target_are_refused() {
    refused(
        &[(
            "p.toml",
            r#"
[[file]]
path = "/etc/motd"
content = "hi\n"

[[link]]
path = "/etc/motd"
target = "/etc/issue"
"#,
        )],
        &[
            "p.toml:6:1: link: `link:/etc/motd` fights with `file:/etc/motd` at p.toml:2:1 over /etc/motd",
        ],
    );
    // Across files, and for one setting of one file.
    refused(
        &[
            (
                "a.toml",
                "[[setting]]\nfile = \"/etc/environment\"\nkey = \"LANG\"\nvalue = \"C\"\n",
            ),
            (
                "b.toml",
                "[[setting]]\nname = \"lang-utf8\"\nfile = \"/etc/environment\"\nkey = \"LANG\"\nvalue = \"C.UTF-8\"\n",
            ),
        ],
        &[
            "b.toml:1:1: setting: `lang-utf8` fights with `setting:/etc/environment:LANG` at a.toml:1:1 over setting LANG in /etc/environment",
        ],
    );
}

/// Promises over a path and a path beneath it fight too: a recursive `absent` of a
/// directory undoes a `file` inside it on every run. The loader must refuse the
/// pair, or the agent must converge it; repairing both forever and exiting 0 is
/// neither.
#[test]
fn promises_over_a_path_and_a_path_beneath_it_are_refused_or_converge() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "p.toml",
        r#"
[[absent]]
paths = ["/etc/app"]
recursive = true

[[file]]
path = "/etc/app/app.conf"
content = "on\n"
"#,
    )]);
    let check = sb.check();
    if check.code == 3 {
        assert!(check.stdout.contains("fights with"), "{}", check.stdout);
        return;
    }
    sb.apply(&[]);
    let second = sb.apply(&["--json"]);
    let report = second.report();
    assert_eq!(
        report.count("repaired"),
        0,
        "the loader accepted the pair (`check` exit {}) and a second apply repaired again:\n{}",
        check.code,
        second.stdout
    );
}

#[test]
fn unknown_members_and_packages_are_refused() {
    let cluster = r#"
[cluster]
name = "c"

[[member]]
name = "alpha"

[[package]]
name = "dce"
hostname = "dcecell"
ip = "10.0.0.2"
members = ["alpha", "zeta"]
configuration = "cascading"
"#;
    refused(
        &[
            ("cluster.toml", cluster),
            (
                "p.toml",
                r#"[[file]]
when = "member(omega) || owner(nopkg)"
path = "/etc/motd"
content = "${package.nopkg2.ip} ${nothing}\n"
template = true
"#,
            ),
        ],
        &[
            "cluster.toml:12:",
            "unknown member `zeta`",
            "p.toml:2:8: file[0].when: unknown member `omega`",
            "p.toml:2:8: file[0].when: unknown package `nopkg`",
            "p.toml:4:",
            "unknown package `nopkg2`",
            "nothing",
        ],
    );
}

#[test]
fn check_lists_every_problem_in_the_tree() {
    let sb = Sandbox::new();
    sb.policy(&[
        (
            "a-malformed.toml",
            "[[file]]\npath = \"/etc/a\"\ncontent = \"x\n",
        ),
        (
            "b-type.toml",
            "[[file]]\npath = \"/etc/b\"\ncontent = \"x\"\nmode = 644\n",
        ),
        ("c-promise-type.toml", "[[fiel]]\npath = \"/etc/c\"\n"),
        (
            "d-field.toml",
            "[[dir]]\npath = \"/etc/d\"\nmdoe = \"0755\"\n",
        ),
        (
            "e-fight.toml",
            "[[dir]]\npath = \"/etc/e\"\n\n[[absent]]\npaths = [\"/etc/e\"]\n",
        ),
        (
            "f-member.toml",
            "[[dir]]\nwhen = \"member(zeta)\"\npath = \"/etc/f\"\n",
        ),
        (
            "g-source.toml",
            "[[file]]\npath = \"/etc/g\"\nsource = \"missing\"\n",
        ),
        ("h-path.toml", "[[dir]]\npath = \"etc/h/../x\"\n"),
    ]);
    let r = sb.check();
    r.expect_code(3);
    let files = [
        "a-malformed.toml:3:",
        "b-type.toml:4:8: file[0].mode:",
        "c-promise-type.toml:1:3: fiel:",
        "d-field.toml:3:1: dir[0].mdoe:",
        "e-fight.toml:4:1:",
        "f-member.toml:2:8: dir[0].when: unknown member `zeta`",
        "g-source.toml:3:10: file[0].source:",
        "h-path.toml:2:8: dir[0].path:",
    ];
    let mut at = 0;
    for f in files {
        let Some(found) = r.stdout[at..].find(f) else {
            panic!("{f} missing or out of order in:\n{}", r.stdout);
        };
        at += found;
    }
    let errors = r.stdout.lines().filter(|l| l.contains(".toml:")).count();
    assert!(
        r.stdout.ends_with(&format!(": invalid: {errors} errors\n")),
        "the count does not match the {errors} lines:\n{}",
        r.stdout
    );
}

/// The agent stages new content for `/etc/NAME` in `/etc/.NAME.tenet-new`. A policy
/// that also manages that name must be refused, or each file must end up with its
/// own content; one file's content must never land in the other.
#[test]
fn a_managed_path_named_like_a_temp_file_is_refused_or_kept_apart() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "p.toml",
        r#"
[[file]]
path = "/etc/.motd.tenet-new"
content = "for the dotfile\n"

[[file]]
path = "/etc/motd"
content = "for motd\n"
"#,
    )]);
    let check = sb.check();
    if check.code == 3 {
        assert!(check.stdout.contains(".motd.tenet-new"), "{}", check.stdout);
        return;
    }
    let first = sb.apply_outside_state(&[]);
    let motd = fs::read_to_string(sb.at("/etc/motd")).unwrap_or_default();
    let dotfile = fs::read_to_string(sb.at("/etc/.motd.tenet-new")).unwrap_or_default();
    assert_eq!(
        (motd.as_str(), dotfile.as_str()),
        ("for motd\n", "for the dotfile\n"),
        "the loader accepted both paths and apply (exit {}) mixed them up:\n{}",
        first.code,
        first.stdout
    );
    first.expect_code(0);
    assert_eq!(
        sb.apply_outside_state(&["--json"])
            .report()
            .count("repaired"),
        0
    );
}

/// A value put into a `shell` script (a hostname, which DHCP may set; a fact; a
/// package's name) reaches the shell as one word: shell syntax in it is never run.
#[test]
fn finding_09_shell_syntax_in_a_hostname_or_fact_is_never_run() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "c.toml",
        "[[command]]\nshell = \"printf '[%s]' ${hostname} ${fact.note} > out\"\n\n\
         [[command]]\nshell = \"printf '[%s]' ${fact.quote} > out2\"\n",
    )]);
    let hostname = "h; touch PWNED";
    let note = "$(touch PWNED2) `touch PWNED3`";
    let quote = "it's";
    let r = sb.apply_outside_state(&[
        "--fact",
        &format!("hostname={hostname}"),
        "--fact",
        &format!("note={note}"),
        "--fact",
        &format!("quote={quote}"),
    ]);
    for pwned in ["PWNED", "PWNED2", "PWNED3"] {
        assert!(
            !sb.root.join(pwned).exists(),
            "{pwned} created:\n{}",
            r.stdout
        );
    }
    r.expect_code(0);
    let read = |name: &str| std::fs::read_to_string(sb.root.join(name)).unwrap();
    assert_eq!(read("out"), format!("[{hostname}][{note}]"));
    assert_eq!(read("out2"), format!("[{quote}]"));

    // Inside quotes a reference would carry its quotes into the text: refused at load.
    sb.policy(&[(
        "c.toml",
        "[[command]]\nshell = \"echo \\\"name: ${hostname}\\\" > out\"\n",
    )]);
    let r = sb.check();
    r.expect_code(3);
    assert!(
        r.stdout.contains("c.toml:2:") && r.stdout.contains("`${hostname}` inside \"...\""),
        "{}",
        r.stdout
    );
}

/// The quoting of a value in a `shell` script holds only where the shell reads a word
/// unquoted. After a `\`, in a comment, in a here-document, inside backquotes or
/// arithmetic, or in quotes nested in `"$(...)"`, a value's own text would be read as
/// shell syntax (run, as root, from a hostname DHCP set): such a script is refused at load.
#[test]
fn finding_09_shell_syntax_around_a_reference_cannot_unquote_its_value() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "c.toml",
        "[[command]]\nshell = '''echo \\${fact.a} > out1'''\n\n\
         [[command]]\nshell = '''true # ${fact.b}'''\n\n\
         [[command]]\nshell = '''cat > out3 <<EOF\n${fact.c}\nEOF'''\n\n\
         [[command]]\nshell = '''echo \"$(echo \"${fact.d}\")\" > out4'''\n\n\
         [[command]]\nshell = '''echo `echo ${fact.e}` > out5'''\n\n\
         [[command]]\nshell = '''echo $((${fact.f})) > out6'''\n",
    )]);
    let facts = [
        "a=;touch PWNED1;#",
        "b=x\ntouch PWNED2 #",
        "c=$(touch PWNED3)",
        "d=$(touch PWNED4)",
        "e=a`;touch PWNED5;echo `",
        "f=$(touch PWNED6)",
    ];
    let mut args = Vec::new();
    for f in facts {
        args.extend(["--fact", f]);
    }
    let r = sb.apply_outside_state(&args);
    for n in 1..=6 {
        let pwned = format!("PWNED{n}");
        assert!(
            !sb.root.join(&pwned).exists(),
            "{pwned} created (exit {}):\n{}",
            r.code,
            r.stdout
        );
    }
    r.expect_code(3);
    let check = sb.check();
    check.expect_code(3);
    for (line, place) in [
        (2, "after a `\\`"),
        (5, "in a comment"),
        (8, "in a here-document"),
        (13, "inside \"...\""),
        (16, "inside `...`"),
        (19, "inside $((...))"),
    ] {
        assert!(
            check.stdout.contains(&format!("c.toml:{line}:")) && check.stdout.contains(place),
            "line {line}, {place}:\n{}",
            check.stdout
        );
    }
}

/// Text from the managed system reaches the human printer: a link's old target (set by
/// whoever owns its directory) and a failing command's output. Escape sequences in it
/// are shown escaped, never written to the administrator's terminal.
#[test]
fn finding_08_escapes_from_the_managed_system_are_not_printed_raw() {
    let sb = Sandbox::new();
    mkdir(&sb.at("/srv"));
    let evil = "\x1b]2;pwned\x07\x1b[2K\x1b[1A\x1b[32m all ok";
    symlink(evil, &sb.at("/srv/l"));
    write(&sb.at("/srv/note"), format!("{evil}\n").as_bytes());
    sb.policy(&[(
        "c.toml",
        "[[link]]\npath = \"/srv/l\"\ntarget = \"/etc/x\"\n\n\
         [[command]]\nshell = \"cat srv/note >&2; exit 1\"\n",
    )]);
    let r = sb.apply_outside_state(&[]);
    r.expect_code(1);
    assert!(
        !r.stdout.contains('\x1b') && !r.stdout.contains('\x07'),
        "raw escapes printed:\n{}",
        r.stdout.escape_debug()
    );
    assert!(
        r.stdout.contains("relinked") && r.stdout.contains(r"\x1b]2;pwned\x07\x1b[2K"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(r"\x1b[32m all ok"),
        "the command's output is not shown:\n{}",
        r.stdout
    );
}

#[test]
fn apply_for_a_member_the_policy_lacks_exits_3_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.policy(&[
        (
            "cluster.toml",
            "[cluster]\nname = \"c\"\n\n[[member]]\nname = \"alpha\"\n\n[[member]]\nname = \"beta\"\n",
        ),
        // Unconditional: applied to any member, which is what made the mistake silent.
        ("p.toml", "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n"),
    ]);
    let r = sb.apply_outside_state(&["--fact", "member=zeta"]);
    r.expect_code(3);
    assert!(
        r.stderr
            .contains("member \"zeta\" is not in the policy's cluster (its members: alpha, beta)"),
        "{}",
        r.stderr
    );
    assert!(!sb.at("/etc/motd").exists());
    sb.apply_outside_state(&["--fact", "member=beta"])
        .expect_code(0);
    assert!(sb.at("/etc/motd").exists());
}

#[test]
fn agent_toml_errors_carry_line_and_column() {
    let sb = Sandbox::new();
    let config = sb.outside.join("agent.toml");
    let cases = [
        (
            "member = \"a\"\nmaster = \"a:b:c\"\ntrusted_root = \"r\"\n",
            ":2:10: master: \"a:b:c\" is not host or host:port",
        ),
        (
            "member = \"a\"\nmaster = \"m\"\ntrusted_root = \"r\"\nconnect_timeout = \"5x\"\n",
            ":4:19: connect_timeout: \"5x\" is not a duration",
        ),
        (
            "member = \"a\"\nmaster = \"m\"\ntrusted_root = \"r\"\n\n[push]\nport = 0\n",
            ":6:8: push.port: must not be 0",
        ),
        (
            "member = \"a\"\nmastr = \"m\"\ntrusted_root = \"r\"\n",
            ":2:1: unknown field `mastr`",
        ),
        ("member = \"a\nmaster = \"m\"\n", ":1:"),
    ];
    for (text, want) in cases {
        write(&config, text.as_bytes());
        let r = util::run([
            std::ffi::OsStr::new("run"),
            std::ffi::OsStr::new("--config"),
            config.as_os_str(),
        ]);
        r.expect_code(3);
        let want = format!("{}{want}", config.display());
        assert!(r.stderr.contains(&want), "want {want}\n{}", r.stderr);
    }
}
