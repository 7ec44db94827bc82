//! Tests of lists, maps, `for_each` and Jinja content: what loads, with which ids,
//! and every mistake as a located diagnostic.

use crate::facts::Facts;
use crate::model::{Content, Program, PromiseKind};
use crate::{Diagnostics, Policy};

const CLUSTER: &str = "[cluster]\nname = \"c\"\n[[member]]\nname = \"m1\"\n";

/// Loads a tree of `(file, text)`, `files/...` included.
fn load(files: &[(&str, &str)]) -> Result<Policy, Diagnostics> {
    let tree = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = tree.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        #[expect(clippy::disallowed_methods, reason = "the test writes a policy tree")]
        std::fs::write(&path, text).unwrap();
    }
    crate::load(tree.path())
}

/// The diagnostics of a one-file tree `p.toml`, as printed.
fn errors(text: &str) -> String {
    match load(&[("p.toml", text)]) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(d) => d.to_string(),
    }
}

fn ids(p: &Policy) -> Vec<String> {
    p.promises.iter().map(|p| p.id.clone()).collect()
}

/// The promises resolved for m1 (with `facts` set), each as its id and expanded text.
fn resolved(p: Policy, facts: &[&str]) -> Vec<(String, Result<String, String>)> {
    let mut f = Facts::default();
    f.set("member=m1").unwrap();
    f.hostname = "m1.example".into();
    for a in facts {
        f.set(a).unwrap();
    }
    p.resolve(&f)
        .promises
        .into_iter()
        .map(|r| match r {
            Ok(p) => {
                let text = match p.kind {
                    PromiseKind::File(f) => match f.content {
                        Content::Text(t) => t,
                        Content::Bytes(b) => String::from_utf8(b).unwrap(),
                        Content::Stored(_) => "<stored>".into(),
                    },
                    PromiseKind::Command(c) => match c.program {
                        Program::Shell(s) => s,
                        Program::Argv(a) => a.join(" "),
                    },
                    PromiseKind::Setting(s) => s.value,
                    other => other.type_name().to_string(),
                };
                (p.id, Ok(text))
            }
            Err(u) => (u.id, Err(u.reason)),
        })
        .collect()
}

#[test]
fn lists_and_maps_are_values() {
    let p = load(&[(
        "p.toml",
        &format!(
            "{CLUSTER}[[value]]\nname = \"admins\"\nlist = [\"alice\", \"bob\"]\n\
             [[value]]\nname = \"ports\"\nmap = {{ ssh = \"22\", http = \"80\" }}\n\
             [[setting]]\nfile = \"/etc/environment\"\nkey = \"SSH_PORT\"\nvalue = \"${{ports.ssh}}\"\n"
        ),
    )])
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.values.len(), 2);
    let r = resolved(p, &[]);
    assert_eq!(r[0].1, Ok("22".to_string()));
}

#[test]
fn a_list_or_map_where_text_is_needed_is_a_located_error() {
    let out = errors(&format!(
        "{CLUSTER}[[value]]\nname = \"admins\"\nlist = [\"alice\"]\n\
         [[file]]\npath = \"/etc/a\"\ncontent = \"x ${{admins}}\"\ntemplate = true\n"
    ));
    assert!(
        out.contains("p.toml:10:14: file[0].content: value `admins` is a list, not text"),
        "{out}"
    );
}

#[test]
fn map_entries_are_checked_at_load() {
    let out = errors(&format!(
        "{CLUSTER}[[value]]\nname = \"ports\"\nmap = {{ ssh = \"22\" }}\n\
         [[value]]\nname = \"t\"\ntext = \"${{ports.http}} ${{t2.x}}\"\n\
         [[value]]\nname = \"t2\"\ntext = \"a\"\n"
    ));
    assert!(
        out.contains("p.toml:10:9: value[1].text: map `ports` has no entry `http`"),
        "{out}"
    );
    assert!(out.contains("value `t2` is text, not a map"), "{out}");
}

#[test]
fn list_items_are_literal_and_unique() {
    let out = errors(&format!(
        "{CLUSTER}[[value]]\nname = \"l\"\nlist = [\"a\", \"a\", \"${{member}}\"]\n\
         [[value]]\nname = \"item\"\ntext = \"x\"\n[[value]]\nname = \"both\"\nlist = []\ntext = \"x\"\n"
    ));
    assert!(
        out.contains("p.toml:7:14: value[0].list[1]: `a` is listed twice"),
        "{out}"
    );
    assert!(
        out.contains("value[0].list[2]: `${member}`: items of lists and maps are literal text"),
        "{out}"
    );
    assert!(out.contains("`item` is a built-in reference"), "{out}");
    assert!(
        out.contains("value[2]: a value needs exactly one of `addresses`, `text`, `list` or `map`"),
        "{out}"
    );
}

#[test]
fn for_each_makes_one_promise_per_item_with_distinct_ids() {
    let p = load(&[(
        "p.toml",
        &format!(
            "{CLUSTER}[[file]]\nfor_each = \"${{admins}}\"\npath = \"/home/${{item}}/.hushlogin\"\ncontent = \"\"\n\
             [[command]]\nname = \"greet\"\nfor_each = \"${{admins}}\"\nshell = \"echo ${{item}} >> /tmp/x\"\ncreates = \"/tmp/x\"\n\
             [[value]]\nname = \"admins\"\nlist = [\"alice\", \"bob o'hara\"]\n"
        ),
    )])
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        ids(&p),
        [
            "file:/home/alice/.hushlogin",
            "file:/home/bob o'hara/.hushlogin",
            "greet[alice]",
            "greet[bob o'hara]"
        ]
    );
    let r = resolved(p, &[]);
    // In a shell script the item is one word, quoted as any reference is.
    assert_eq!(r[3].1, Ok(r"echo 'bob o'\''hara' >> /tmp/x".to_string()));
}

/// Items multiply with the promises that name them: one list of 1,000 items named
/// by 101 promises is 101,000 promises from a few kilobytes. The promises an
/// expansion makes are bounded.
#[test]
fn for_each_past_the_promise_limit_is_refused() {
    let items: Vec<String> = (0..1000).map(|i| format!("\"i{i}\"")).collect();
    let mut text = format!(
        "{CLUSTER}[[value]]\nname = \"l\"\nlist = [{}]\n",
        items.join(", ")
    );
    for n in 0..101 {
        text.push_str(&format!(
            "[[dir]]\nfor_each = \"${{l}}\"\npath = \"/d/{n}/${{item}}\"\n"
        ));
    }
    let got = errors(&text);
    assert!(
        got.contains("more than 100000 promises"),
        "{}",
        got.lines().next().unwrap_or_default()
    );
    assert_eq!(got.matches("more than 100000 promises").count(), 1, "{got}");
}

#[test]
fn for_each_reads_a_list_declared_in_a_later_file() {
    let p = load(&[
        (
            "a.toml",
            "[[pkg]]\nfor_each = \"${base}\"\npkg = \"${item}\"\n",
        ),
        (
            "z.toml",
            "[[value]]\nname = \"base\"\nlist = [\"vim\", \"curl\"]\n",
        ),
    ])
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(ids(&p), ["pkg:vim", "pkg:curl"]);
}

#[test]
fn for_each_over_a_map_and_literals() {
    let p = load(&[(
        "p.toml",
        &format!(
            "{CLUSTER}[[value]]\nname = \"env\"\nmap = {{ LANG = \"C\", TZ = \"UTC\" }}\n\
             [[setting]]\nfor_each = \"${{env}}\"\nfile = \"/etc/environment\"\nkey = \"${{item.key}}\"\nvalue = \"${{item.value}}-${{member}}\"\n\
             [[dir]]\nfor_each = [\"/srv/a\", \"/srv/b\"]\npath = \"${{item}}\"\n\
             [[command]]\nfor_each = {{ x = \"1\", y = \"2\" }}\nargv = [\"/bin/echo\", \"${{item.value}}\"]\ncreates = \"/tmp/${{item.key}}\"\n"
        ),
    )])
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        ids(&p),
        [
            "setting:/etc/environment:LANG",
            "setting:/etc/environment:TZ",
            "dir:/srv/a",
            "dir:/srv/b",
            // The target does not name the item, so the ids get its key.
            "command:/bin/echo[x]",
            "command:/bin/echo[y]"
        ]
    );
    let r = resolved(p, &[]);
    assert_eq!(r[0].1, Ok("C-m1".to_string()));
    assert_eq!(r[5].1, Ok("/bin/echo 2".to_string()));
}

#[test]
fn for_each_mistakes_are_located() {
    let out = errors(&format!(
        "{CLUSTER}[[value]]\nname = \"t\"\ntext = \"x\"\n\
         [[dir]]\nfor_each = \"${{nope}}\"\npath = \"/a/${{item}}\"\n\
         [[dir]]\nfor_each = \"${{t}}\"\npath = \"/b/${{item}}\"\n\
         [[dir]]\npath = \"/c/${{item}}\"\n\
         [[dir]]\nfor_each = [\"x\"]\npath = \"/d/${{item.key}}\"\n\
         [[pkg]]\nfor_each = [\"b@d\"]\npkg = \"${{item}}\"\n\
         [[dir]]\nfor_each = 3\npath = \"/e\"\n\
         [[value]]\nname = \"v\"\ntext = \"${{item}}\"\n"
    ));
    for want in [
        "p.toml:9:12: dir[0].for_each: unknown value `nope`",
        "p.toml:12:12: dir[1].for_each: value `t` is text; `for_each` needs a list or a map",
        "p.toml:15:12: dir[2].path: `${item}` is only defined in a promise with `for_each`",
        "p.toml:18:12: dir[3].path: a list's item is `${item}`",
        "pkg[0][b@d].pkg: `b@d` is not a package name",
        "dir[4].for_each: expected \"${NAME}\", a list or a map, found integer",
        "value[1].text: `${item}` is only defined in a promise with `for_each`",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn conflicts_are_found_between_expanded_instances() {
    let out = errors(&format!(
        "{CLUSTER}[[file]]\nfor_each = [\"motd\", \"issue\"]\npath = \"/etc/${{item}}\"\ncontent = \"x\"\n\
         [[link]]\npath = \"/etc/issue\"\ntarget = \"/etc/motd\"\n"
    ));
    assert!(
        out.contains(
            "`link:/etc/issue` fights with `file:/etc/issue` at p.toml:5:1 over /etc/issue"
        ),
        "{out}"
    );
    let out = errors(&format!(
        "{CLUSTER}[[file]]\nfor_each = [\"a\", \"b\"]\npath = \"/etc/same\"\ncontent = \"${{item}}\"\n"
    ));
    assert!(out.contains("fights with"), "{out}");
}

#[test]
fn named_instances_keep_their_names_apart() {
    let out = errors(&format!(
        "{CLUSTER}[[dir]]\nname = \"d\"\nfor_each = [\"a\"]\npath = \"/x/${{item}}\"\n\
         [[dir]]\nname = \"d[a]\"\npath = \"/y\"\n"
    ));
    assert!(out.contains("promise `d[a]` is already defined"), "{out}");
}

const SSHD: &str = "Port {{ ports.ssh }}\n{% for u in admins %}\nAllowUsers {{ u }}\n{% endfor %}\n{% if member == \"m1\" %}\n# first member of {{ cluster }}\n{% endif %}\n";

#[test]
fn jinja_templates_render_lists_maps_and_conditions() {
    let p = load(&[
        (
            "p.toml",
            &format!(
                "{CLUSTER}[[value]]\nname = \"admins\"\nlist = [\"alice\", \"bob\"]\n\
                 [[value]]\nname = \"ports\"\nmap = {{ ssh = \"2222\" }}\n\
                 [[file]]\npath = \"/etc/ssh/sshd_config\"\nsource = \"sshd_config.j2\"\nengine = \"jinja\"\n\
                 [[file]]\nfor_each = \"${{admins}}\"\npath = \"/home/${{item}}/.motd\"\ncontent = \"hello {{{{ item }}}} on {{{{ fact.rack }}}}\\n\"\nengine = \"jinja\"\n"
            ),
        ),
        ("files/sshd_config.j2", SSHD),
    ])
    .unwrap_or_else(|d| panic!("{d}"));
    let r = resolved(p, &["rack=r1"]);
    assert_eq!(
        r[0].1,
        Ok("Port 2222\nAllowUsers alice\nAllowUsers bob\n# first member of c\n".to_string())
    );
    assert_eq!(r[2].1, Ok("hello bob on r1\n".to_string()));
}

#[test]
fn jinja_undefined_names_block_the_promise_at_run_time() {
    let p = load(&[(
        "p.toml",
        &format!(
            "{CLUSTER}[[file]]\npath = \"/etc/rack\"\ncontent = \"{{{{ fact.rack }}}}\"\nengine = \"jinja\"\n"
        ),
    )])
    .unwrap_or_else(|d| panic!("{d}"));
    let r = resolved(p, &[]);
    let Err(reason) = &r[0].1 else {
        panic!("{r:?}")
    };
    assert!(
        reason.contains("p.toml:7 line 1: undefined value"),
        "{reason}"
    );
}

#[test]
fn jinja_mistakes_are_located_at_load() {
    let out = match load(&[
        (
            "p.toml",
            &format!(
                "{CLUSTER}[[file]]\npath = \"/a\"\nsource = \"bad.j2\"\nengine = \"jinja\"\n\
                 [[file]]\npath = \"/b\"\ncontent = \"{{{{ nope }}}} {{{{ item }}}}\"\nengine = \"jinja\"\n\
                 [[file]]\npath = \"/c\"\ncontent = \"x\"\nengine = \"erb\"\n\
                 [[file]]\npath = \"/d\"\ncontent = \"x\"\nengine = \"jinja\"\ntemplate = true\n\
                 [[value]]\nname = \"ports\"\nmap = {{ ssh = \"22\" }}\n\
                 [[file]]\npath = \"/e\"\ncontent = \"{{{{ ports.http }}}} {{{{ package.nope.ip }}}} {{% for k, v in ports.items() %}}{{{{ k }}}}{{% endfor %}}\"\nengine = \"jinja\"\n"
            ),
        ),
        ("files/bad.j2", "a\n{% for x in y %}\nb\n"),
    ]) {
        Ok(_) => panic!("loaded"),
        Err(d) => d.to_string(),
    };
    assert!(!out.contains("unknown field"), "{out}");
    for want in [
        "p.toml:7:10: file[0].source: files/bad.j2 line 3: syntax error",
        "p.toml:11:11: file[1].content: the template uses `nope`, which is no value",
        "p.toml:11:11: file[1].content: the template uses `item`, which is only defined in a promise with `for_each`",
        "file[2].engine: `erb` is not one of jinja",
        "file[3].template: `template` is for `${...}` text",
        "p.toml:27:11: file[4].content: map `ports` has no entry `http`",
        "p.toml:27:11: file[4].content: unknown package `nope`",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn for_each_trees_load_the_same_whole_and_in_parts() {
    let text = format!(
        "{CLUSTER}[[dir]]\nfor_each = \"${{l}}\"\npath = \"/x/${{item}}\"\n[[value]]\nname = \"l\"\nlist = [\"a\", \"b\"]\n"
    );
    let tree = tempfile::tempdir().unwrap();
    #[expect(clippy::disallowed_methods, reason = "the test writes a policy tree")]
    std::fs::write(tree.path().join("p.toml"), &text).unwrap();
    let whole =
        super::super::load_with(tree.path(), &super::super::Dir, super::super::Parse::Whole)
            .unwrap_or_else(|d| panic!("{d}"));
    let parts = super::super::load_with(
        tree.path(),
        &super::super::Dir,
        super::super::Parse::InParts,
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(ids(&whole), ids(&parts));
    assert_eq!(ids(&whole), ["dir:/x/a", "dir:/x/b"]);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// However many items, in whatever order: one promise per item, in the order
        /// of the items, each with its own id and its item in its target.
        #[test]
        fn each_item_makes_one_promise_in_order(
            items in proptest::collection::btree_set("[a-z][a-z0-9_-]{0,6}", 0..8)
                .prop_shuffle_items()
        ) {
            let list: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
            let text = format!(
                "{CLUSTER}[[dir]]\nname = \"d\"\nfor_each = \"${{l}}\"\npath = \"/srv/${{item}}\"\n\
                 [[value]]\nname = \"l\"\nlist = [{}]\n",
                list.join(", ")
            );
            let p = load(&[("p.toml", &text)]).unwrap_or_else(|d| panic!("{d}\n{text}"));
            let want: Vec<String> = items.iter().map(|i| format!("d[{i}]")).collect();
            prop_assert_eq!(ids(&p), want);
            for (promise, item) in p.promises.iter().zip(&items) {
                let PromiseKind::Dir(d) = &promise.kind else { panic!("not a dir") };
                prop_assert_eq!(d.path.to_string(), format!("/srv/{item}"));
            }
        }
    }

    trait ShuffleItems {
        fn prop_shuffle_items(self) -> BoxedStrategy<Vec<String>>;
    }

    impl<S: Strategy<Value = std::collections::BTreeSet<String>> + 'static> ShuffleItems for S {
        fn prop_shuffle_items(self) -> BoxedStrategy<Vec<String>> {
            self.prop_map(|s| s.into_iter().collect::<Vec<_>>())
                .prop_shuffle()
                .boxed()
        }
    }
}

#[test]
fn a_mistake_that_does_not_depend_on_the_item_is_told_once() {
    let out = errors(&format!(
        "{CLUSTER}[[dir]]\nfor_each = [\"a\", \"b\", \"c\"]\npath = \"/x/${{item}}\"\ncolour = \"red\"\n\
         [[pkg]]\nfor_each = [\"b@d\", \"w@rse\"]\npkg = \"${{item}}\"\n"
    ));
    assert_eq!(out.matches("unknown field `colour`").count(), 1, "{out}");
    assert!(
        out.contains("p.toml:8:1: dir[0][a].colour: unknown field `colour`"),
        "{out}"
    );
    // One per item where the item is the mistake.
    assert_eq!(out.matches("is not a package name").count(), 2, "{out}");
}

#[test]
fn an_unguarded_for_each_command_is_warned_about_once() {
    let p = load(&[(
        "p.toml",
        &format!("{CLUSTER}[[command]]\nfor_each = [\"a\", \"b\"]\nargv = [\"/bin/echo\", \"${{item}}\"]\n"),
    )])
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.promises.len(), 2);
    assert_eq!(p.warnings.len(), 1, "{}", p.warnings);
}
