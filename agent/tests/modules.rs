//! Modules: a policy using one module twice with different arguments converges a
//! sandbox root (each instance its own promises and files), a second run is all
//! kept, `check` names both uses when they fight, and the signed bundle carries the
//! module's files to a member.
#![expect(
    clippy::disallowed_methods,
    reason = "fixtures write policy trees and read results directly"
)]

use std::fs;

use crate::run::{World, read};
use crate::util::Sandbox;

const MODULE: &str = r#"
[[param]]
name = "port"
default = "80"

[[param]]
name = "docroot"

[[dir]]
path = "${param.docroot}"
mode = "0755"

[[file]]
name = "index"
path = "${param.docroot}/index.html"
content = "served on ${param.port} by ${member}\n"
template = true
mode = "0644"

[[line]]
file = "/etc/web/ports"
line = "listen ${param.port}"
"#;

const SITE: &str = r#"
[[dir]]
path = "/srv"
mode = "0755"

[[use]]
name = "site_a"
module = "web"
with = { port = "8080", docroot = "/srv/a" }

[[use]]
name = "site_b"
module = "web"
with = { docroot = "/srv/b" }
"#;

const CLUSTER: &str = r#"
[cluster]
name = "c"

[[member]]
name = "m1"
"#;

#[test]
fn a_module_used_twice_converges_and_a_second_run_is_kept() {
    let sb = Sandbox::new();
    sb.policy(&[
        ("cluster.toml", CLUSTER),
        ("site.toml", SITE),
        ("modules/web/module.toml", MODULE),
    ]);
    sb.check().expect_code(0);

    let first = sb.apply_outside_state(&["--json", "--fact", "member=m1"]);
    first.expect_code(0);
    let report = first.report();
    for id in [
        "site_a/index",
        "site_b/index",
        "site_a/dir:/srv/a",
        "site_b/dir:/srv/b",
    ] {
        assert_eq!(report.event(id)["status"], "repaired", "{id}");
    }
    assert_eq!(
        fs::read_to_string(sb.at("/srv/a/index.html")).unwrap(),
        "served on 8080 by m1\n"
    );
    assert_eq!(
        fs::read_to_string(sb.at("/srv/b/index.html")).unwrap(),
        "served on 80 by m1\n"
    );
    assert_eq!(
        fs::read_to_string(sb.at("/etc/web/ports")).unwrap(),
        "listen 8080\nlisten 80\n",
        "site_a's line, then site_b's: each use's promises at its place"
    );

    let second = sb.apply_outside_state(&["--json", "--fact", "member=m1"]);
    second.expect_code(0);
    let report = second.report();
    let statuses = report.statuses();
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|(_, s)| s == "kept"),
        "second run: {statuses:?}"
    );
    assert_eq!(report.count("repaired"), 0);
}

#[test]
fn check_names_both_uses_when_they_write_one_file() {
    let sb = Sandbox::new();
    let clash = SITE.replace("docroot = \"/srv/b\"", "docroot = \"/srv/a\"");
    sb.policy(&[
        ("cluster.toml", CLUSTER),
        ("site.toml", &clash),
        ("modules/web/module.toml", MODULE),
    ]);
    let run = sb.check();
    assert_ne!(run.code, 0, "{}", run.stdout);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains(
            "modules/web/module.toml:13:1: file: `site_b/index` fights with `site_a/index` at modules/web/module.toml:13:1"
        ),
        "{out}"
    );
}

/// The signed bundle carries `modules/`: a member fetching it over mutual TLS
/// converges both instances.
#[test]
fn a_member_converges_a_module_from_the_signed_bundle() {
    let world = World::new();
    let tree = world.path("trees/1");
    fs::create_dir_all(tree.join("modules/web")).unwrap();
    fs::write(tree.join("modules/web/module.toml"), MODULE).unwrap();
    fs::write(tree.join("site.toml"), SITE).unwrap();
    let config = world.cached_member("alpha");
    assert_eq!(
        read(&config, "srv/a/index.html").as_deref(),
        Some("served on 8080 by alpha\n")
    );
    assert_eq!(
        read(&config, "srv/b/index.html").as_deref(),
        Some("served on 80 by alpha\n")
    );
}

const ACCOUNT: &str = r#"
[[param]]
name = "name"

[[command]]
name = "add"
shell = 'set -- ${param.name}; echo $# > argc; touch -- ${param.name}'
creates = "/argc"
"#;

/// A module's argument reaches its `shell` script as one word: shell syntax in it
/// (`;`, quotes, `$(...)`, backquotes, a newline) is never run, the script sees one
/// argument and makes one file of that literal name. An argument's own `${member}`
/// expands within the word.
#[test]
fn a_module_argument_runs_as_one_shell_word() {
    let sb = Sandbox::new();
    let name = "a b; touch PWNED1 'q' \"d\" $(touch PWNED2) `touch PWNED3`\nc ${member}";
    let site =
        format!("[[use]]\nname = \"acct\"\nmodule = \"account\"\nwith = {{ name = {name:?} }}\n");
    sb.policy(&[
        ("cluster.toml", CLUSTER),
        ("site.toml", &site),
        ("modules/account/module.toml", ACCOUNT),
    ]);
    let run = sb.apply_outside_state(&["--json", "--fact", "member=m1"]);
    run.expect_code(0);
    assert_eq!(run.report().event("acct/add")["status"], "repaired");
    let literal = name.replace("${member}", "m1");
    let mut made: Vec<String> = fs::read_dir(&sb.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(
        made,
        [literal.as_str(), "argc"],
        "the root holds only these"
    );
    assert_eq!(fs::read_to_string(sb.at("/argc")).unwrap(), "1\n");

    // Inside quotes the argument's quoting would become text: refused at load.
    let quoted = ACCOUNT.replace("touch -- ${param.name}", "touch -- \"${param.name}\"");
    sb.policy(&[
        ("cluster.toml", CLUSTER),
        ("site.toml", &site),
        ("modules/account/module.toml", &quoted),
    ]);
    let check = sb.check();
    check.expect_code(3);
    assert!(
        check.stdout.contains(
            "modules/account/module.toml:7:58: command[0].shell: `${param.name}` inside \"...\" in a shell script"
        ) && check.stdout.contains("(in use `acct` at site.toml:1:1)"),
        "{}",
        check.stdout
    );
}
