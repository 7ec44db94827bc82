//! Lists, maps, `for_each` and Jinja content converged on a sandbox root: a dry
//! run with `--diff` shows exactly what the first run then changes, the files
//! rendered from a template with a loop are byte for byte what it says, and a
//! second run keeps everything.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::Sandbox;

const POLICY: &str = r#"
[cluster]
name = "lab"

[[member]]
name = "m1"

[[value]]
name = "admins"
list = ["alice", "bob"]

[[value]]
name = "ports"
map = { ssh = "2222", http = "80" }

[[dir]]
for_each = "${admins}"
path = "/home/${item}"
mode = "0750"

[[file]]
name = "profile"
for_each = "${admins}"
path = "/home/${item}/.profile"
content = "export USER={{ item }}\n"
engine = "jinja"

[[setting]]
for_each = "${ports}"
file = "/etc/environment"
key = "PORT_${item.key}"
value = "${item.value}"

[[file]]
path = "/etc/ssh/sshd_config"
source = "sshd_config.j2"
engine = "jinja"
mode = "0600"
"#;

const TEMPLATE: &str = "\
# {{ cluster }}: managed by tenet on {{ member }}
Port {{ ports.ssh }}
{% for u in admins %}
AllowUsers {{ u }}
{% endfor %}
{% if ports.ssh != \"22\" %}
# not the default port
{% endif %}
";

const SSHD: &str = "\
# lab: managed by tenet on m1
Port 2222
AllowUsers alice
AllowUsers bob
# not the default port
";

#[test]
fn lists_for_each_and_jinja_converge_and_stay_kept() {
    let sb = Sandbox::new();
    sb.policy(&[("lab.toml", POLICY), ("files/sshd_config.j2", TEMPLATE)]);
    sb.check().expect_code(0);
    let member = ["--fact", "member=m1"];

    let dry = sb.apply_outside_state(&[&member[..], &["--dry-run", "--diff", "--json"]].concat());
    dry.expect_code(0);
    let dry = dry.report();
    assert!(
        fs::read_dir(&sb.root).unwrap().next().is_none(),
        "a dry run changed the root"
    );
    let sshd = dry.event("file:/etc/ssh/sshd_config");
    assert_eq!(sshd["status"], "would_repair", "{sshd}");
    let diff = sshd["diff"].as_str().unwrap_or_default();
    for line in ["+Port 2222", "+AllowUsers alice", "+AllowUsers bob"] {
        assert!(diff.contains(line), "{line} not in the diff: {diff}");
    }
    let human = sb.apply_outside_state(&[&member[..], &["--dry-run", "--diff"]].concat());
    human.expect_code(0);
    assert!(human.stdout.contains("+AllowUsers bob"), "{}", human.stdout);

    let first = sb.apply_outside_state(&[&member[..], &["--json"]].concat());
    first.expect_code(0);
    let first = first.report();
    let ids = |r: &crate::util::Report, status: &str| -> Vec<String> {
        r.statuses()
            .into_iter()
            .filter(|(_, s)| s == status)
            .map(|(id, _)| id)
            .collect()
    };
    assert_eq!(
        ids(&dry, "would_repair"),
        ids(&first, "repaired"),
        "the dry run did not tell exactly what the run changed"
    );
    assert_eq!(
        ids(&first, "repaired"),
        [
            "dir:/home/alice",
            "dir:/home/bob",
            "profile[alice]",
            "profile[bob]",
            "file:/etc/ssh/sshd_config",
            "setting:/etc/environment:PORT_ssh",
            "setting:/etc/environment:PORT_http",
        ]
    );
    assert_eq!(first.count("failed"), 0);
    assert_eq!(
        fs::read_to_string(sb.at("/etc/ssh/sshd_config")).unwrap(),
        SSHD
    );
    let mode = fs::metadata(sb.at("/etc/ssh/sshd_config"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
    assert_eq!(
        fs::read_to_string(sb.at("/home/bob/.profile")).unwrap(),
        "export USER=bob\n"
    );
    assert_eq!(
        fs::read_to_string(sb.at("/etc/environment")).unwrap(),
        "PORT_ssh=2222\nPORT_http=80\n"
    );

    let second = sb.apply_outside_state(&[&member[..], &["--json"]].concat());
    second.expect_code(0);
    let second = second.report();
    assert_eq!(second.count("repaired"), 0, "{:?}", second.statuses());
    assert_eq!(ids(&second, "kept").len(), 7, "{:?}", second.statuses());
}

#[test]
fn a_template_that_needs_a_fact_the_member_lacks_fails_alone() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "p.toml",
        r#"
[[file]]
path = "/etc/rack"
content = "{{ fact.rack }}\n"
engine = "jinja"

[[file]]
path = "/etc/ok"
content = "ok\n"
"#,
    )]);
    sb.check().expect_code(0);
    let r = sb.apply_outside_state(&["--json"]);
    r.expect_code(1);
    let report = r.report();
    let rack = report.event("file:/etc/rack");
    assert_eq!(rack["status"], "blocked", "{rack}");
    assert_ne!(rack["status"], "kept", "{rack}");
    assert_ne!(rack["status"], "repaired", "{rack}");
    assert!(
        rack["reason"]
            .as_str()
            .is_some_and(|s| s.contains("undefined value")),
        "{rack}"
    );
    assert_eq!(report.event("file:/etc/ok")["status"], "repaired");
    assert!(!sb.at("/etc/rack").exists());

    let r = sb.apply_outside_state(&["--json", "--fact", "rack=r12"]);
    r.expect_code(0);
    assert_eq!(fs::read_to_string(sb.at("/etc/rack")).unwrap(), "r12\n");
}

/// The template travels in the signed bundle like any `source`, and a member
/// renders it from its verified cache with its own name.
#[test]
fn a_jinja_template_from_the_signed_bundle_renders_per_member() {
    use crate::run::{Policyd, World, assert_code, read, run_agent};
    let world = World::new();
    let tree = world.path("trees/lang");
    crate::util::write(
        &tree.join("cluster.toml"),
        b"[cluster]\nname = \"test\"\n[[member]]\nname = \"alpha\"\n[[member]]\nname = \"beta\"\n[[member]]\nname = \"gamma\"\n",
    );
    crate::util::write(
        &tree.join("lang.toml"),
        br#"
[[value]]
name = "admins"
list = ["alice", "bob"]

[[file]]
for_each = "${admins}"
path = "/etc/greeting.d/${item}"
source = "greeting.j2"
engine = "jinja"
"#,
    );
    crate::util::write(
        &tree.join("files/greeting.j2"),
        b"hello {{ item }} on {{ member }}\n{% for a in admins if a != item %}\nwith {{ a }}\n{% endfor %}\n",
    );
    let bundle = world.sign_tree(&tree, 1, std::time::Duration::from_secs(86_400));
    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&bundle, 1);
    let config = world.member("beta", "beta", addr);
    assert_code(&run_agent(&config), 0);
    assert_eq!(
        read(&config, "etc/greeting.d/alice").as_deref(),
        Some("hello alice on beta\nwith bob\n")
    );
    assert_eq!(
        read(&config, "etc/greeting.d/bob").as_deref(),
        Some("hello bob on beta\nwith alice\n")
    );
    let again = run_agent(&config);
    assert_code(&again, 0);
    assert!(again.out.contains("nothing to do"), "{}", again.out);
}
