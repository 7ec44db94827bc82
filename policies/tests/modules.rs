//! Modules: `modules/NAME/` instantiated by `[[use]]` with its own arguments, each
//! instance with its own ids, conditions and conflicts, and every mistake a located
//! diagnostic.

use std::fs;
use std::path::Path;

use tenet_policies::facts::Facts;
use tenet_policies::model::{Content, Program, PromiseKind};

const CLUSTER: &str = r#"
[cluster]
name = "c"

[[member]]
name = "m1"
classes = ["web"]

[[member]]
name = "m2"
"#;

const MODULE: &str = r#"
[[param]]
name = "port"
default = "80"

[[param]]
name = "docroot"
comment = "no default: every use must give it"

[[dir]]
path = "${param.docroot}"
"#;

const SITE: &str = r#"
[[file]]
name = "conf"
path = "/etc/web/${param.port}.conf"
content = "listen ${param.port}\nroot ${param.docroot}\nserver ${hostname}\nliteral $${param.port}\n"
template = true

[[line]]
file = "/etc/web/ports"
line = "${param.port}"
when = "class(web)"
"#;

/// A tree of `files` (relative path, text), written beneath a temporary directory.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = dir.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

/// The diagnostics of loading `files`, one per line.
fn errors(files: &[(&str, &str)]) -> String {
    let dir = tree(files);
    match tenet_policies::load(dir.path()) {
        Ok(p) => panic!("expected errors, loaded {} promises", p.promises.len()),
        Err(d) => d.to_string(),
    }
}

fn web(extra: &str) -> Vec<(&'static str, String)> {
    vec![
        ("cluster.toml", CLUSTER.to_string()),
        ("modules/web/module.toml", MODULE.to_string()),
        ("modules/web/site.toml", SITE.to_string()),
        ("site.toml", extra.to_string()),
    ]
}

fn refs<'a>(files: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    files.iter().map(|(p, t)| (*p, t.as_str())).collect()
}

const TWO_USES: &str = r#"
[[dir]]
path = "/srv"

[[use]]
name = "site_a"
module = "web"
with = { port = 8080, docroot = "/srv/a" }

[[use]]
name = "site_b"
module = "web"
with = { docroot = "/srv/b" }
when = "member(m1)"

[[file]]
path = "/etc/motd"
content = "hi\n"
"#;

#[test]
fn two_uses_make_distinct_promises_with_their_own_arguments() {
    let files = web(TWO_USES);
    let dir = tree(&refs(&files));
    let policy = tenet_policies::load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    let ids: Vec<&str> = policy.promises.iter().map(|p| p.id.as_str()).collect();
    // Declaration order: each use's promises at the place of the use, the module's
    // files in path order (module.toml before site.toml).
    assert_eq!(
        ids,
        [
            "dir:/srv",
            "site_a/dir:/srv/a",
            "site_a/conf",
            "site_a/line:/etc/web/ports:8080",
            "site_b/dir:/srv/b",
            "site_b/conf",
            "site_b/line:/etc/web/ports:80",
            "file:/etc/motd",
        ]
    );
    let conf_a = policy
        .promises
        .iter()
        .find(|p| p.id == "site_a/conf")
        .unwrap();
    assert_eq!(
        conf_a.origin.to_string(),
        "modules/web/site.toml:2:1",
        "an instance points at the module's file"
    );

    let mut facts = Facts::default();
    facts.set("member=m2").unwrap();
    facts.set("hostname=host2").unwrap();
    let r = policy.resolve(&facts);
    let resolved: Vec<_> = r.promises.into_iter().map(|p| p.unwrap()).collect();
    let ids: Vec<&str> = resolved.iter().map(|p| p.id.as_str()).collect();
    // m2 is not m1 (site_b's `when`) and has no class `web` (the line's `when`).
    assert_eq!(
        ids,
        [
            "dir:/srv",
            "site_a/dir:/srv/a",
            "site_a/conf",
            "file:/etc/motd"
        ]
    );
    let PromiseKind::File(f) = &resolved[2].kind else {
        panic!("not a file: {:?}", resolved[2])
    };
    assert_eq!(f.path.to_string(), "/etc/web/8080.conf");
    let Content::Text(text) = &f.content else {
        panic!("not a template: {:?}", f.content)
    };
    assert_eq!(
        text,
        "listen 8080\nroot /srv/a\nserver host2\nliteral ${param.port}\n"
    );

    let mut facts = Facts::default();
    facts.set("member=m1").unwrap();
    facts.set("hostname=host1").unwrap();
    let r = tenet_policies::load(dir.path()).unwrap().resolve(&facts);
    let resolved: Vec<_> = r.promises.into_iter().map(|p| p.unwrap()).collect();
    let b = resolved.iter().find(|p| p.id == "site_b/conf").unwrap();
    let PromiseKind::File(f) = &b.kind else {
        panic!("not a file")
    };
    assert_eq!(f.path.to_string(), "/etc/web/80.conf", "the default port");
    assert!(
        resolved
            .iter()
            .any(|p| p.id == "site_b/line:/etc/web/ports:80")
    );
}

#[test]
fn two_uses_writing_one_path_conflict_naming_both() {
    let files = web(r#"
[[use]]
name = "site_a"
module = "web"
with = { docroot = "/srv/a" }

[[use]]
name = "site_b"
module = "web"
with = { docroot = "/srv/b" }
"#);
    let got = errors(&refs(&files));
    // Both use the default port: both write /etc/web/80.conf.
    assert!(
        got.contains(
            "modules/web/site.toml:2:1: file: `site_b/conf` fights with `site_a/conf` at modules/web/site.toml:2:1 over /etc/web/80.conf"
        ),
        "{got}"
    );
}

#[test]
fn uses_kept_apart_by_conditions_do_not_conflict() {
    let files = web(r#"
[[use]]
name = "site_a"
module = "web"
with = { docroot = "/srv/a" }
when = "member(m1)"

[[use]]
name = "site_b"
module = "web"
with = { docroot = "/srv/b" }
when = "member(m2)"
"#);
    let dir = tree(&refs(&files));
    tenet_policies::load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
}

#[test]
fn a_missing_parameter_is_located_at_the_use() {
    let files = web("\n[[use]]\nname = \"a\"\nmodule = \"web\"\n");
    assert_eq!(
        errors(&refs(&files)),
        "site.toml:2:1: use[0].with: missing parameter `docroot` of module `web` (declared at modules/web/module.toml:6:1 without a default)\n"
    );
}

#[test]
fn an_unknown_parameter_is_located_at_its_argument() {
    let files = web(
        "\n[[use]]\nname = \"a\"\nmodule = \"web\"\nwith = { docroot = \"/a\", prot = \"1\" }\n",
    );
    assert_eq!(
        errors(&refs(&files)),
        "site.toml:5:26: use[0].with.prot: module `web` has no parameter `prot`; did you mean `port`?\n"
    );
}

#[test]
fn an_unknown_module_is_located_at_its_name() {
    let files = web("\n[[use]]\nname = \"a\"\nmodule = \"wbe\"\n");
    assert_eq!(
        errors(&refs(&files)),
        "site.toml:4:10: use[0].module: unknown module `wbe`; did you mean `web`?\n"
    );
}

#[test]
fn a_module_using_itself_is_reported() {
    let got = errors(&[
        ("site.toml", "[[use]]\nname = \"x\"\nmodule = \"a\"\n"),
        (
            "modules/a/module.toml",
            "[[use]]\nname = \"inner\"\nmodule = \"b\"\n",
        ),
        (
            "modules/b/module.toml",
            "[[use]]\nname = \"again\"\nmodule = \"a\"\n",
        ),
    ]);
    assert_eq!(
        got,
        "modules/b/module.toml:3:10: use[0].module: module `a` uses itself: a → b → a\n"
    );
}

#[test]
fn nested_uses_prefix_ids_and_pass_parameters_on() {
    let dir = tree(&[
        (
            "site.toml",
            "[[use]]\nname = \"x\"\nmodule = \"outer\"\nwith = { dir = \"/o\" }\n",
        ),
        (
            "modules/outer/module.toml",
            "[[param]]\nname = \"dir\"\n\n[[use]]\nname = \"in\"\nmodule = \"inner\"\nwith = { path = \"${param.dir}/f\" }\n",
        ),
        (
            "modules/inner/module.toml",
            "[[param]]\nname = \"path\"\n\n[[file]]\npath = \"${param.path}\"\ncontent = \"\"\n",
        ),
    ]);
    let policy = tenet_policies::load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    let ids: Vec<&str> = policy.promises.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["x/in/file:/o/f"]);
}

#[test]
fn a_parameter_outside_a_module_is_reported() {
    let got = errors(&[(
        "site.toml",
        "[[file]]\npath = \"/etc/${param.port}\"\ncontent = \"\"\n",
    )]);
    assert_eq!(
        got,
        "site.toml:2:8: file[0].path: `${param.port}` is a module parameter; it can be used only in a module's files (modules/NAME/)\n"
    );
}

#[test]
fn an_undeclared_parameter_in_a_module_is_reported_once() {
    let files = web(
        "\n[[use]]\nname = \"a\"\nmodule = \"web\"\nwith = { docroot = \"/a\" }\n\n[[use]]\nname = \"b\"\nmodule = \"web\"\nwith = { docroot = \"/b\" }\n",
    );
    let mut files = refs(&files);
    files.push((
        "modules/web/extra.toml",
        "[[file]]\npath = \"/x\"\ncontent = \"${param.docrot}\"\n",
    ));
    assert_eq!(
        errors(&files),
        "modules/web/extra.toml:3:11: file[0].content: unknown parameter `docrot`; did you mean `docroot`?\n"
    );
}

#[test]
fn a_module_holds_only_promises_and_uses() {
    let got = errors(&[
        ("site.toml", "[[use]]\nname = \"x\"\nmodule = \"m\"\n"),
        ("modules/m/module.toml", "[[member]]\nname = \"n\"\n"),
        ("modules/stray.toml", "[[dir]]\npath = \"/d\"\n"),
        ("modules/nodecl/a.toml", "[[dir]]\npath = \"/d\"\n"),
    ]);
    assert_eq!(
        got,
        "modules/m/module.toml:1:3: member: a module holds promises and `[[use]]`, `[[param]]` only; `member` belongs in the tree's top level\n\
         modules/nodecl/a.toml: module `nodecl` has no modules/nodecl/module.toml declaring it\n\
         modules/stray.toml: a module's files belong in `modules/NAME/`, beside its module.toml\n"
    );
}

#[test]
fn an_error_inside_an_instance_names_the_use() {
    let got = errors(&[
        (
            "site.toml",
            "[[use]]\nname = \"x\"\nmodule = \"m\"\nwith = { p = \"relative\" }\n",
        ),
        (
            "modules/m/module.toml",
            "[[param]]\nname = \"p\"\n\n[[dir]]\npath = \"${param.p}\"\n",
        ),
    ]);
    assert!(
        got.starts_with("modules/m/module.toml:5:8: dir[0].path: ") // the field path is the module's
            && got.trim_end().ends_with("(in use `x` at site.toml:1:1)"),
        "{got}"
    );
}

#[test]
fn the_same_use_name_twice_is_reported() {
    let files = web(
        "\n[[use]]\nname = \"a\"\nmodule = \"web\"\nwith = { docroot = \"/a\" }\n\n[[use]]\nname = \"a\"\nmodule = \"web\"\nwith = { docroot = \"/b\", port = \"1\" }\n",
    );
    assert_eq!(
        errors(&refs(&files)),
        "site.toml:7:1: use[1].name: use `a` is already defined at site.toml:2:1\n"
    );
}

#[test]
fn module_files_are_policy_files_for_the_bundle() {
    assert!(tenet_policies::is_policy_file(Path::new(
        "modules/web/site.toml"
    )));
}

#[test]
fn an_unused_parameter_is_a_warning_and_a_default_cannot_refer_to_parameters() {
    let dir = tree(&[
        ("site.toml", "[[use]]\nname = \"x\"\nmodule = \"m\"\n"),
        (
            "modules/m/module.toml",
            "[[param]]\nname = \"spare\"\ndefault = \"1\"\n\n[[dir]]\npath = \"/d\"\n",
        ),
    ]);
    let policy = tenet_policies::load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        policy.warnings.to_string(),
        "modules/m/module.toml:1:1: warning: param: parameter `spare` is declared but no `${param.spare}` uses it\n"
    );

    let got = errors(&[
        ("site.toml", "[[use]]\nname = \"x\"\nmodule = \"m\"\n"),
        (
            "modules/m/module.toml",
            "[[param]]\nname = \"a\"\ndefault = \"${param.a}\"\n\n[[dir]]\npath = \"/${param.a}\"\n",
        ),
    ]);
    assert_eq!(
        got,
        "modules/m/module.toml:3:11: param[0].default: a parameter's default cannot refer to parameters\n"
    );
}

#[test]
fn uses_that_multiply_past_the_limit_are_refused_quickly() {
    // Ten modules, each using the next ten times: 10^9 instances if unbounded.
    let mut files: Vec<(String, String)> = vec![(
        "site.toml".to_string(),
        "[[use]]\nname = \"top\"\nmodule = \"m0\"\n".to_string(),
    )];
    for level in 0..10 {
        let mut text = String::new();
        if level < 9 {
            for i in 0..10 {
                text.push_str(&format!(
                    "[[use]]\nname = \"u{i}\"\nmodule = \"m{}\"\n\n",
                    level + 1
                ));
            }
        } else {
            text.push_str("[[command]]\nargv = [\"/bin/true\"]\ncreates = \"/x\"\n");
        }
        files.push((format!("modules/m{level}/module.toml"), text));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let started = std::time::Instant::now();
    let got = errors(&refs);
    assert!(
        got.contains("more than 10000 module instances in the tree"),
        "{}",
        got.lines().next().unwrap_or_default()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// Instances are bounded, but each brings all of its module's promises: a 30 KB tree
/// (20 uses of a module that uses another 100 times, which holds 100 promises)
/// asked for 200,000 promises, and with 99 uses for 990,000 (1.5 GB, 35 s on every
/// member's every run). The promises an expansion makes are bounded too.
#[test]
fn uses_whose_promises_multiply_past_the_limit_are_refused() {
    let top: String = (0..20)
        .map(|i| format!("[[use]]\nname = \"u{i}\"\nmodule = \"a\"\n\n"))
        .collect();
    let a: String = (0..100)
        .map(|i| format!("[[use]]\nname = \"v{i}\"\nmodule = \"b\"\n\n"))
        .collect();
    let b: String = (0..100)
        .map(|i| {
            format!("[[command]]\nname = \"c{i}\"\nargv = [\"/bin/true\"]\ncreates = \"/x\"\n\n")
        })
        .collect();
    let got = errors(&[
        ("site.toml", top.as_str()),
        ("modules/a/module.toml", a.as_str()),
        ("modules/b/module.toml", b.as_str()),
    ]);
    assert!(
        got.contains("more than 100000 promises"),
        "{}",
        got.lines().next().unwrap_or_default()
    );
}

#[test]
fn for_each_inside_a_module_is_refused_where_it_is_written() {
    let got = errors(&[
        ("site.toml", "[[use]]\nname = \"x\"\nmodule = \"m\"\n"),
        (
            "modules/m/module.toml",
            "[[dir]]\nfor_each = [\"a\", \"b\"]\npath = \"/d/${item}\"\n",
        ),
    ]);
    assert!(
        got.starts_with("modules/m/module.toml:1:1: dir[0].for_each: `for_each` is not available inside a module"),
        "{got}"
    );
}

/// A module that runs a script with its argument, and a use of it with `name`.
fn shell_module(script: &str, name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("cluster.toml", CLUSTER.to_string()),
        (
            "modules/account/module.toml",
            format!(
                "[[param]]\nname = \"name\"\n\n[[command]]\nname = \"add\"\nshell = '{script}'\ncreates = \"/done\"\n"
            ),
        ),
        (
            "site.toml",
            format!("[[use]]\nname = \"u\"\nmodule = \"account\"\nwith = {{ name = {name:?} }}\n"),
        ),
    ]
}

/// The script of command `id` on member `m1`.
fn resolved_script(files: &[(&'static str, String)], id: &str) -> String {
    let dir = tree(&refs(files));
    let policy = tenet_policies::load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    let mut facts = Facts::default();
    facts.set("member=m1").unwrap();
    let r = policy.resolve(&facts);
    let p = r
        .promises
        .into_iter()
        .map(|p| p.unwrap())
        .find(|p| p.id == id)
        .unwrap();
    let PromiseKind::Command(c) = p.kind else {
        panic!("not a command: {p:?}")
    };
    let Program::Shell(script) = c.program else {
        panic!("not a shell script")
    };
    script
}

/// An argument is data: in a `shell` script it is one word, however much shell
/// syntax it holds, as every other reference is.
#[test]
fn a_shell_argument_is_one_shell_word() {
    let nasty = "x; touch /PWNED 'q' \"d\" $(id) `id`\nb";
    let script = resolved_script(&shell_module("useradd ${param.name} -m", nasty), "u/add");
    assert_eq!(
        script,
        "useradd 'x; touch /PWNED '\\''q'\\'' \"d\" $(id) `id`\nb' -m"
    );
    // An argument's own reference expands, within the one word; `$${` is a literal.
    let script = resolved_script(
        &shell_module("useradd ${param.name}", "u ${member} $${member}"),
        "u/add",
    );
    assert_eq!(script, "useradd 'u m1 ${member}'");
}

/// Where the shell would not read a word unquoted, `${param.NAME}` is refused at load
/// like any reference, located in the module's file and naming the use.
#[test]
fn a_shell_argument_inside_quotes_is_refused() {
    for (script, col, place) in [
        ("echo \"${param.name}\" > /x", 16, "inside \"...\""),
        ("echo ok # ${param.name}", 20, "in a comment"),
    ] {
        let got = errors(&refs(&shell_module(script, "alice")));
        assert_eq!(
            got,
            format!(
                "modules/account/module.toml:6:{col}: command[0].shell: `${{param.name}}` {place} in a shell script: a reference expands to one shell word, already quoted, and only where the shell reads a word unquoted; write it outside quotes, or pass it through `env` and write \"$NAME\" (in use `u` at site.toml:1:1)\n"
            ),
            "{script}"
        );
    }
}

/// Passed on through a nested use, an argument is still one shell word.
#[test]
fn a_shell_argument_passed_through_a_nested_use_is_one_shell_word() {
    let mut files = shell_module("useradd ${param.name}", "a b; c");
    files[2].1 = "[[use]]\nname = \"o\"\nmodule = \"outer\"\nwith = { who = \"a b; c\" }\n".into();
    files.push((
        "modules/outer/module.toml",
        "[[param]]\nname = \"who\"\n\n[[use]]\nname = \"u\"\nmodule = \"account\"\nwith = { name = \"${param.who}\" }\n".into(),
    ));
    assert_eq!(resolved_script(&files, "o/u/add"), "useradd 'a b; c'");
}
