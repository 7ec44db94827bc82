//! The command line end to end: `check` and `apply` of the shipped dce-cluster
//! example into a temp root, dry runs, diffs, conditions per member, the run lock,
//! exit codes and `--help`.

use std::ffi::OsStr;
use std::fs::{self, File};

use regex::Regex;

use crate::util::{self, Report, Sandbox, example, listing, write};

/// The facts that make this member alpha, the owner of package dce.
const ALPHA: [&str; 4] = [
    "--fact",
    "hostname=alpha",
    "--fact",
    "addresses=9.3.240.1,9.3.240.66",
];

/// `apply EXAMPLE --root ROOT` as `facts` says, with extra arguments.
fn apply_example(sb: &Sandbox, facts: &[&str], extra: &[&str]) -> util::Run {
    let example = example();
    let mut args = vec![
        "apply",
        example.to_str().expect("UTF-8 path"),
        "--root",
        sb.root.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(facts);
    args.extend_from_slice(extra);
    util::run(args)
}

/// A starting tree with the files the example edits already there.
fn lived_in(sb: &Sandbox) {
    write(
        &sb.at("/etc/environment"),
        b"PATH=/usr/bin:/bin\nRPC_UNSUPPORTED_NETADDRS=9.3.240.9\nLANG=C\n",
    );
    write(
        &sb.at("/etc/services"),
        b"# services\nssh\t22/tcp\nkerberos\t88/tcp\t\tkdc\n",
    );
}

#[test]
fn check_accepts_the_shipped_example() {
    let r = util::run([OsStr::new("check"), example().as_os_str()]);
    r.expect_code(0);
    assert!(r.stdout.contains(": valid: "), "{}", r.stdout);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn apply_converges_the_example_and_a_second_apply_keeps_everything() {
    let sb = Sandbox::new();
    let first = apply_example(&sb, &ALPHA, &["--json"]);
    first.expect_code(0);
    let first = first.report();
    assert!(first.count("repaired") > 0, "{}", first.summary);
    assert_eq!(first.count("failed"), 0, "{}", first.summary);
    assert_eq!(first.count("blocked"), 0, "{}", first.summary);
    assert_eq!(first.summary["member"], "alpha");
    for (id, status) in first.statuses() {
        assert_eq!(status, "repaired", "{id} on a fresh root");
    }

    assert_eq!(
        fs::read_to_string(sb.at("/etc/environment")).unwrap(),
        "RPC_UNSUPPORTED_NETADDRS=9.3.240.1:9.3.240.66\n"
    );
    assert_eq!(
        fs::read_to_string(sb.at("/etc/services")).unwrap(),
        "kerberos5\t88/udp\t\tkdc\n"
    );
    assert_eq!(
        fs::read_to_string(sb.at("/etc/motd.d/tenet-dce")).unwrap(),
        "alpha is a DCE server member of cell dcecell.\n\
         The DCE package runs on dcecell.example.com (9.3.240.2);\n\
         this member must not start DCE servers by hand.\n"
    );
    // Absolute link targets are re-rooted, so the links point inside the sandbox.
    assert_eq!(
        fs::read_link(sb.at("/:")).unwrap(),
        sb.at("/.../dcecell.example.com/fs")
    );
    assert_eq!(
        fs::read_link(sb.at("/.:")).unwrap(),
        sb.at("/.../dcecell.example.com")
    );

    let before = listing(&sb.root);
    let second = apply_example(&sb, &ALPHA, &["--json"]);
    second.expect_code(0);
    let second = second.report();
    assert_eq!(second.count("repaired"), 0, "{}", second.summary);
    assert_eq!(second.events.len(), first.events.len());
    for (id, status) in second.statuses() {
        assert_eq!(status, "kept", "{id} on the second apply");
    }
    let after: Vec<String> = listing(&sb.root)
        .into_iter()
        .filter(|l| !l.starts_with("/var/lib/tenet/run.lock "))
        // Written once the files have settled (seconds old); a cache, not a change.
        .filter(|l| !l.starts_with("/var/lib/tenet/stat-cache "))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|l| !l.starts_with("/var/lib/tenet/run.lock "))
        .filter(|l| !l.starts_with("/var/lib/tenet/stat-cache "))
        .collect();
    assert_eq!(before, after, "the second apply changed the tree");
}

#[test]
fn a_dry_run_reports_would_repair_and_changes_no_managed_file() {
    let sb = Sandbox::new();
    lived_in(&sb);
    let before = listing(&sb.root);
    let state = sb.state.to_str().expect("UTF-8 path");
    let r = apply_example(&sb, &ALPHA, &["--dry-run", "--json", "--state-dir", state]);
    r.expect_code(0);
    let report = r.report();
    assert_eq!(report.summary["dry_run"], true);
    assert_eq!(report.count("repaired"), 0);
    assert_eq!(report.count("would_repair"), report.events.len() as u64);
    for (id, status) in report.statuses() {
        assert_eq!(status, "would_repair", "{id}");
    }
    assert_eq!(listing(&sb.root), before, "a dry run changed the root");
}

/// The dry run with the default state directory, `ROOT/var/lib/tenet`: the run
/// lock must not be the one change a dry run makes to a fresh root.
#[test]
fn a_dry_run_leaves_a_fresh_root_exactly_as_it_was() {
    let sb = Sandbox::new();
    let before = listing(&sb.root);
    let r = apply_example(&sb, &ALPHA, &["--dry-run", "--json"]);
    r.expect_code(0);
    assert_eq!(r.report().count("would_repair"), 7);
    assert_eq!(
        listing(&sb.root),
        before,
        "a dry run created or changed these entries in a fresh root"
    );
}

#[test]
fn diff_shows_a_unified_diff_of_etc_environment() {
    let sb = Sandbox::new();
    lived_in(&sb);
    let r = apply_example(&sb, &ALPHA, &["--diff"]);
    r.expect_code(0);
    let want = "--- a/etc/environment\n\
                +++ b/etc/environment\n\
                @@ -1,3 +1,3 @@\n \
                PATH=/usr/bin:/bin\n\
                -RPC_UNSUPPORTED_NETADDRS=9.3.240.9\n\
                +RPC_UNSUPPORTED_NETADDRS=9.3.240.1:9.3.240.66\n \
                LANG=C\n";
    assert!(
        r.stdout.contains(want),
        "no diff of /etc/environment in:\n{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("--- a/etc/services\n+++ b/etc/services\n")
    );

    // The JSON report carries the same diff.
    let sb = Sandbox::new();
    lived_in(&sb);
    let r = apply_example(&sb, &ALPHA, &["--diff", "--json"]);
    r.expect_code(0);
    let report = r.report();
    let e = report.event("setting:/etc/environment:RPC_UNSUPPORTED_NETADDRS");
    assert_eq!(e["diff"], want, "{e}");
}

/// Durations are the only thing that varies between runs.
fn masked(out: &str) -> String {
    let human = Regex::new(r"\(\d+ ms\)").expect("regex");
    let json = Regex::new(r#""duration_ms":\d+"#).expect("regex");
    let time = Regex::new(r#""time":"[0-9T:-]+Z""#).expect("regex");
    let out = human.replace_all(out, "(N ms)");
    let out = json.replace_all(&out, r#""duration_ms":N"#);
    time.replace_all(&out, r#""time":"T""#).into_owned()
}

#[test]
fn dry_run_diffs_match_the_golden_files() {
    let sb = Sandbox::new();
    lived_in(&sb);
    let state = sb.state.to_str().expect("UTF-8 path");
    let human = apply_example(&sb, &ALPHA, &["--dry-run", "--diff", "--state-dir", state]);
    human.expect_code(0);
    util::golden("dce-alpha-dry-run.txt", &masked(&human.stdout));
    let json = apply_example(
        &sb,
        &ALPHA,
        &["--dry-run", "--diff", "--json", "--state-dir", state],
    );
    json.expect_code(0);
    util::golden("dce-alpha-dry-run.jsonl", &masked(&json.stdout));
}

#[test]
fn only_owner_and_standby_members_of_dce_get_its_motd() {
    let members = [
        ("alpha", "9.3.240.1,9.3.240.66", true),
        ("beta", "9.3.240.3,9.3.240.67", true),
        ("gamma", "9.3.240.4,9.3.240.68", false),
    ];
    for (member, addresses, gets_motd) in members {
        let sb = Sandbox::new();
        let host = format!("hostname={member}");
        let addrs = format!("addresses={addresses}");
        let r = apply_example(&sb, &["--fact", &host, "--fact", &addrs], &["--json"]);
        r.expect_code(0);
        let report = r.report();
        assert_eq!(report.summary["member"], member);
        let motd = sb.at("/etc/motd.d/tenet-dce");
        if gets_motd {
            let text = fs::read_to_string(&motd).unwrap();
            assert!(
                text.starts_with(&format!(
                    "{member} is a DCE server member of cell dcecell.\n"
                )),
                "{member}: {text}"
            );
            assert_eq!(report.count("skipped"), 0, "{member}");
        } else {
            assert!(
                fs::symlink_metadata(&motd).is_err(),
                "{member} is neither owner nor standby of dce but got {}",
                motd.display()
            );
            assert!(!sb.at("/etc/motd.d").exists(), "{member}: /etc/motd.d made");
            assert_eq!(report.count("skipped"), 1, "{member}: {}", report.summary);
            assert!(
                report
                    .statuses()
                    .iter()
                    .all(|(id, _)| id != "file:/etc/motd.d/tenet-dce"),
                "{member}: the motd promise was reported"
            );
        }
        // Every member excludes its own non-service addresses from DCE RPC.
        assert_eq!(
            fs::read_to_string(sb.at("/etc/environment")).unwrap(),
            format!("RPC_UNSUPPORTED_NETADDRS={}\n", addresses.replace(',', ":"))
        );
    }
}

#[test]
fn a_second_run_while_the_lock_is_held_exits_6_naming_the_holder() {
    let sb = Sandbox::new();
    lived_in(&sb);
    let lock_path = sb.at("/var/lib/tenet/run.lock");
    let pid = std::process::id();
    // What a holding run writes: its pid, command and start time.
    write(
        &lock_path,
        format!("pid {pid} apply started at unix time 1\n").as_bytes(),
    );
    let holder = File::options()
        .read(true)
        .write(true)
        .open(&lock_path)
        .unwrap();
    holder.try_lock().unwrap();
    let before = listing(&sb.root);

    let r = apply_example(&sb, &ALPHA, &[]);
    r.expect_code(6);
    assert!(
        r.stderr.contains("another run is in progress"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("pid {pid} ")),
        "the message does not name the holder, pid {pid}: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&lock_path.display().to_string()),
        "the message does not name the lock file: {}",
        r.stderr
    );
    assert_eq!(
        listing(&sb.root),
        before,
        "a locked-out run changed the root"
    );
    // A dry run is a run too.
    apply_example(&sb, &ALPHA, &["--dry-run"]).expect_code(6);

    drop(holder);
    apply_example(&sb, &ALPHA, &[]).expect_code(0);
}

#[test]
fn help_lists_every_exit_code() {
    let r = util::run(["--help"]);
    r.expect_code(0);
    util::golden("help.txt", &r.stdout);
    let apply_help = util::run(["apply", "--help"]);
    apply_help.expect_code(0);
    let run_help = util::run(["run", "--help"]);
    run_help.expect_code(0);
    let event_help = util::run(["event", "--help"]);
    event_help.expect_code(0);
    for help in [
        &r.stdout,
        &apply_help.stdout,
        &run_help.stdout,
        &event_help.stdout,
    ] {
        assert!(help.contains("\nExit codes:\n"), "{help}");
        for code in 0..=8 {
            assert!(
                help.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code}  "))),
                "exit code {code} is not listed:\n{help}"
            );
        }
    }
}

#[test]
fn usage_errors_exit_2_and_change_nothing() {
    let sb = Sandbox::new();
    lived_in(&sb);
    let before = listing(&sb.root);
    let r = apply_example(&sb, &["--fact", "no-equals-sign"], &[]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("`no-equals-sign` is not KEY=VALUE"),
        "{}",
        r.stderr
    );
    let r = apply_example(&sb, &["--fact", "addresses=9.3.240.1,not-an-ip"], &[]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("`not-an-ip` is not an IP address"),
        "{}",
        r.stderr
    );
    util::run(["apply"]).expect_code(2);
    util::run(["apply", "--no-such-option", "x"]).expect_code(2);
    assert_eq!(listing(&sb.root), before);
}

#[test]
fn an_unusable_root_exits_7() {
    let sb = Sandbox::new();
    let missing = sb.root.join("missing");
    let example = example();
    let r = util::run([
        OsStr::new("apply"),
        example.as_os_str(),
        OsStr::new("--root"),
        missing.as_os_str(),
    ]);
    r.expect_code(7);
    assert!(r.stderr.contains("cannot use root"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&missing.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(!missing.exists());

    let file = sb.root.join("a-file");
    write(&file, b"x");
    let r = util::run([
        OsStr::new("apply"),
        example.as_os_str(),
        OsStr::new("--root"),
        file.as_os_str(),
    ]);
    r.expect_code(7);
    assert!(r.stderr.contains("cannot use root"), "{}", r.stderr);
}

/// A report is what the JSON printer wrote, not just what the exit code says.
#[test]
fn the_json_summary_counts_the_events() {
    let sb = Sandbox::new();
    lived_in(&sb);
    let r = apply_example(&sb, &ALPHA, &["--json"]);
    r.expect_code(0);
    let report: Report = r.report();
    let n = report.events.len() as u64;
    assert_eq!(
        report.count("kept")
            + report.count("repaired")
            + report.count("would_repair")
            + report.count("failed")
            + report.count("blocked"),
        n,
        "{}",
        report.summary
    );
    let file_line_col = Regex::new(r"^[a-z]+\.toml:\d+:\d+$").unwrap();
    for e in &report.events {
        let origin = e["origin"].as_str().unwrap_or_default();
        assert!(
            file_line_col.is_match(origin),
            "origin {origin} is not file:line:col"
        );
    }
}

/// The distribution and architecture are classes, read from the managed root's
/// `os-release`: a promise for `debian12` applies to a Debian 12 root, one for
/// `rhel9` is skipped there, and the same policy turns around on a Rocky 9 root.
#[test]
fn distribution_and_architecture_classes_come_from_the_roots_os_release() {
    let policy = format!(
        "[[file]]\npath = \"/etc/deb\"\ncontent = \"${{fact.os_id}} ${{fact.os_version}}\\n\"\ntemplate = true\nwhen = \"class(debian12) && class({arch})\"\n\n\
         [[file]]\npath = \"/etc/el\"\ncontent = \"el\\n\"\nwhen = \"class(rhel9) && class(linux)\"\n",
        arch = std::env::consts::ARCH
    );
    for (release, deb, el) in [
        (
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
            true,
            false,
        ),
        (
            "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
            false,
            true,
        ),
    ] {
        let sb = Sandbox::new();
        sb.policy(&[("p.toml", &policy)]);
        write(&sb.at("/usr/lib/os-release"), release.as_bytes());
        util::symlink("../usr/lib/os-release", &sb.at("/etc/os-release"));
        let r = sb.apply_outside_state(&["--json"]);
        r.expect_code(0);
        assert_eq!(sb.at("/etc/deb").exists(), deb, "{release}: {}", r.stdout);
        assert_eq!(sb.at("/etc/el").exists(), el, "{release}: {}", r.stdout);
        assert_eq!(r.report().count("skipped"), 1, "{}", r.stdout);
        if deb {
            assert_eq!(
                fs::read_to_string(sb.at("/etc/deb")).unwrap(),
                "debian 12\n"
            );
        }
    }
}
