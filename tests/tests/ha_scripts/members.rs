//! Membership hooks: the Pacemaker alert agent with the real `cibadmin` on a CIB file,
//! the PowerHA post-event command and the Serviceguard package start with fixture
//! `cllsnode` and `cmviewcl` that print their documented formats; and the Serviceguard
//! start's master-move.

use super::*;

/// A three-member cluster (alpha, beta, gamma on node1..3) that runs the policy server
/// package on all three.
const CLUSTER: &str = r#"# The cluster.
[cluster]
name = "t"
policy_server = "tenet"

[[member]]
name = "alpha"
hostname = "node1"

[[member]]
name = "beta"
hostname = "node2"

[[member]]
name = "gamma"
hostname = "node3"

[[package]]
name = "tenet"
hostname = "tenet-master"
ip = "10.0.0.9"
members = ["alpha", "beta", "gamma"]
configuration = "rotating"
"#;

/// A deployment with alpha, beta and gamma enrolled, its tree and bundle (serial 1).
struct Members {
    dir: tempfile::TempDir,
    dep: Deployment,
}

impl Members {
    fn new() -> Members {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dep = Deployment::new(dir.path(), &["alpha", "beta", "gamma"]);
        let m = Members { dir, dep };
        std::fs::create_dir_all(m.path("tree")).unwrap();
        std::fs::write(m.path("tree/cluster.toml"), CLUSTER).unwrap();
        m.sign(1);
        m
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Signs the tree as `serial` into `bundle` (replacing the last one).
    fn sign(&self, serial: u64) {
        let out = self.path("bundle");
        if out.exists() {
            std::fs::remove_dir_all(&out).unwrap();
        }
        self.dep.sign(&self.path("tree"), serial, &out);
    }

    /// Enrols `member` with a new node key, as `tenet-keys approve` would.
    fn enroll(&self, member: &str) {
        let keys = binary("tenet-keys");
        let nodes = self.dep.node_dir(member);
        let out = run(&keys, &["node-key", "--out", nodes.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let id = stdout
            .split(|c: char| !c.is_ascii_hexdigit())
            .find(|w| w.len() == 64)
            .unwrap()
            .to_string();
        let dep = self.dep.deployment();
        let out = run(
            &keys,
            &[
                "enroll",
                dep.to_str().unwrap(),
                "--member",
                member,
                "--key-id",
                &id,
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }

    /// The proposal directory's file `name`, if there.
    fn proposal(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path("proposal").join(name)).ok()
    }
}

/// Runs `cibadmin ARGS` on the CIB file `cib`.
fn cibadmin(cib: &Path, args: &[&str]) -> Output {
    let cibadmin = tenet_tests::ha::which("cibadmin").expect("cibadmin");
    Command::new(cibadmin)
        .args(args)
        .env("CIB_file", cib)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_pacemaker_alert_agent_proposes_added_and_removed_nodes_from_the_real_cib() {
    if !tenet_tests::ha::have_tools(
        "the_pacemaker_alert_agent_proposes_added_and_removed_nodes_from_the_real_cib",
        &["cibadmin"],
    ) {
        return;
    }
    let m = Members::new();
    let cib = m.path("cib.xml");
    let empty = cibadmin(&cib, &["--empty"]);
    assert!(empty.status.success(), "{}", text(&empty));
    std::fs::write(&cib, &empty.stdout).unwrap();
    for n in 1..=4 {
        let out = cibadmin(
            &cib,
            &[
                "-C",
                "-o",
                "nodes",
                "-X",
                &format!(r#"<node id="{n}" uname="node{n}"/>"#),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    // The shipped alert is valid for the CIB's schema.
    let alert_xml = packaging().join("pacemaker/tenet-members-alert.xml");
    let add = [
        "--modify",
        "--allow-create",
        "--scope",
        "alerts",
        "-x",
        alert_xml.to_str().unwrap(),
    ];
    let out = cibadmin(&cib, &add);
    assert!(
        out.status.success(),
        "the alert does not validate: {}",
        text(&out)
    );
    // Again (an update): still one alert.
    let out = cibadmin(&cib, &add);
    assert!(
        out.status.success(),
        "the alert does not validate: {}",
        text(&out)
    );
    let q = cibadmin(&cib, &["--query", "--scope", "alerts"]);
    assert_eq!(
        String::from_utf8_lossy(&q.stdout)
            .matches("<alert id=\"tenet-members\"")
            .count(),
        1,
        "{}",
        text(&q)
    );

    let agent = packaging().join("pacemaker/tenet-members-alert");
    let alert = |kind: &str, node: &str, desc: &str| {
        let env = vec![
            ("CRM_alert_kind", kind.to_string()),
            ("CRM_alert_node", node.to_string()),
            (
                "CRM_alert_nodeid",
                node.trim_start_matches("node").to_string(),
            ),
            ("CRM_alert_desc", desc.to_string()),
            ("CRM_alert_version", "2.1.5".to_string()),
            ("CRM_alert_timestamp", "12:00:00.000000".to_string()),
            (
                "CRM_alert_recipient",
                m.path("proposal").display().to_string(),
            ),
            ("tenet_keys", binary("tenet-keys").display().to_string()),
            ("tenet_bundle", m.path("bundle").display().to_string()),
            ("tenet_root", m.dep.root().display().to_string()),
            ("tenet_admin_tree", m.path("tree").display().to_string()),
            (
                "tenet_admin_deployment",
                m.dep.deployment().display().to_string(),
            ),
            ("CIB_file", cib.display().to_string()),
        ];
        let out = run_env(&agent, &[], &env);
        assert_eq!(code(&out), Some(0), "{}", text(&out));
        out
    };

    // node4 joined: a new member in the proposal (and in the policy server's package),
    // and the commands to sign it, with this deployment's paths.
    let out = alert("node", "node4", "member");
    let proposed = m
        .proposal("cluster.toml")
        .unwrap_or_else(|| panic!("no proposal: {}", text(&out)));
    assert!(
        proposed.contains("name = \"node4\"\nhostname = \"node4\""),
        "{proposed}"
    );
    assert!(
        proposed.contains("members = [\"alpha\", \"beta\", \"gamma\", \"node4\"]"),
        "{proposed}"
    );
    assert!(proposed.starts_with("# The cluster.\n"), "{proposed}");
    assert!(
        m.proposal("cluster.toml.diff")
            .unwrap()
            .contains("+name = \"node4\"")
    );
    let commands = m.proposal("commands.txt").unwrap();
    let dep = m.dep.deployment();
    let tree = m.path("tree");
    for want in [
        "joined the cluster, not a member: node4".to_string(),
        format!(
            "cp {} {}/cluster.toml",
            m.path("proposal/cluster.toml").display(),
            tree.display()
        ),
        format!("tenet-keys join-token {} --member node4", dep.display()),
        format!(
            "tenet-keys approve {} node4 --join-dir JOIN_DIR",
            dep.display()
        ),
        format!(
            "tenet-keys sign {} --deployment {} --out BUNDLE",
            tree.display(),
            dep.display()
        ),
        "Nothing was signed".to_string(),
    ] {
        assert!(commands.contains(&want), "{want:?} not in:\n{commands}");
    }
    // Nothing was signed: the bundle is still serial 1.
    let manifest = std::fs::read_to_string(m.path("bundle/manifest.toml")).unwrap();
    assert!(manifest.contains("serial = 1\n"), "{manifest}");

    // Other alert kinds do nothing.
    std::fs::remove_dir_all(m.path("proposal")).unwrap();
    alert("resource", "node1", "ok");
    assert!(!m.path("proposal").exists());

    // The administrator takes the proposal and signs: node4 is a member without a key.
    let out = alert("node", "node4", "member");
    std::fs::copy(m.path("proposal/cluster.toml"), tree.join("cluster.toml")).unwrap();
    m.sign(2);
    alert("node", "node4", "member");
    assert!(m.proposal("cluster.toml").is_none(), "{}", text(&out));
    let commands = m.proposal("commands.txt").unwrap();
    assert!(
        commands.contains("a member with no enrolled key: node4"),
        "{commands}"
    );
    assert!(!commands.contains("left the cluster"), "{commands}");
    // node4 joins (approved) and the next serial carries it: in sync, files removed.
    m.enroll("node4");
    m.sign(3);
    alert("node", "node4", "member");
    assert!(m.proposal("commands.txt").is_none());
    assert!(m.proposal("cluster.toml").is_none());

    // node3 removed from the cluster (`crm_node -R`): gamma out of the proposal, its key
    // to revoke. A lost node still in the CIB changes nothing.
    alert("node", "node3", "lost");
    assert!(m.proposal("commands.txt").is_none());
    let out = cibadmin(&cib, &["-D", "-o", "nodes", "-X", r#"<node id="3"/>"#]);
    assert!(out.status.success(), "{}", text(&out));
    alert("node", "node3", "lost");
    let proposed = m.proposal("cluster.toml").unwrap();
    assert!(!proposed.contains("\"gamma\""), "{proposed}");
    assert!(
        proposed.contains("members = [\"alpha\", \"beta\", \"node4\"]"),
        "{proposed}"
    );
    let commands = m.proposal("commands.txt").unwrap();
    assert!(
        commands.contains(&format!(
            "tenet-keys revoke {} --member gamma",
            dep.display()
        )),
        "{commands}"
    );

    // A node that cannot read the bundle (the package filesystem is elsewhere) does
    // nothing.
    std::fs::remove_dir_all(m.path("proposal")).unwrap();
    std::fs::remove_dir_all(m.path("bundle")).unwrap();
    alert("node", "node3", "lost");
    assert!(!m.path("proposal").exists());
}

/// A fixture program `name` in `dir` that prints `output` (or fails with `fail`).
fn fixture(dir: &Path, name: &str, output: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\ncat <<'EOF'\n{output}EOF\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `cllsnode` as PowerHA prints it: a `Node NAME` line per node, its interfaces beneath.
fn cllsnode(nodes: &[&str]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "Node {n}\n    Interfaces to network net_ether_01\n        Communication Interface: Name {n}, Attribute public, IP address 10.0.0.1\n"
            )
        })
        .collect()
}

#[test]
fn the_powerha_reconfig_post_event_proposes_the_cluster_nodes() {
    let m = Members::new();
    let dir = m.path("powerha");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("tenet-members-post");
    std::fs::copy(packaging().join("powerha/tenet-members-post"), &script).unwrap();
    let utils = m.path("utilities");
    fixture(
        &utils,
        "cllsnode",
        &cllsnode(&["node1", "node2", "node3", "node4"]),
    );
    std::fs::write(
        dir.join("tenet-ha.conf"),
        format!(
            "TENET_KEYS={}\nTENET_BUNDLE={}\nTENET_ROOT={}\nTENET_MEMBERS_DIR={}\nTENET_CLUSTER_UTILITIES={}\nTENET_ADMIN_DEPLOYMENT=/srv/deploy\n",
            binary("tenet-keys").display(),
            m.path("bundle").display(),
            m.dep.root().display(),
            m.path("proposal").display(),
            utils.display()
        ),
    )
    .unwrap();

    // PowerHA's call: EVENT STATUS, no environment.
    let out = run_env(&script, &["reconfig_topology_complete", "0"], &[]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let proposed = m
        .proposal("cluster.toml")
        .unwrap_or_else(|| panic!("{}", text(&out)));
    assert!(
        proposed.contains("# joined the powerha cluster"),
        "{proposed}"
    );
    assert!(proposed.contains("name = \"node4\""), "{proposed}");
    let commands = m.proposal("commands.txt").unwrap();
    assert!(
        commands.contains("tenet-keys join-token /srv/deploy --member node4"),
        "{commands}"
    );
    assert!(text(&out).contains("to sign:"), "{}", text(&out));

    // The command itself with --json: one line that matches docs/json.schema.json.
    let out = Command::new(binary("tenet-keys"))
        .args(["members", "--from", "powerha", "--json", "--bundle"])
        .arg(m.path("bundle"))
        .arg("--root")
        .arg(m.dep.root())
        .env("PATH", format!("{}:/usr/bin:/bin", utils.display()))
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    let seen = tenet_tests::schema::validate("tenet-keys members --json", &out.stdout);
    assert!(seen.contains("tenet.keys.members/1"), "{seen:?}");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["added"], serde_json::json!(["node4"]), "{line}");
    assert_eq!(line["proposal"], serde_json::Value::Null, "{line}");

    // On the administrator's host: the tree and the deployment's inventory; the
    // proposal goes to --out, commands name the given paths; a node name that cannot be
    // a member name is only reported.
    fixture(
        &utils,
        "cllsnode",
        &cllsnode(&["node1", "node2", "node4", "-x"]),
    );
    let admin = |args: &[&str]| {
        Command::new(binary("tenet-keys"))
            .args(["members", "--from", "powerha"])
            .args(args)
            .env("PATH", format!("{}:/usr/bin:/bin", utils.display()))
            .output()
            .unwrap()
    };
    let tree = m.path("tree");
    let dep = m.dep.deployment();
    let out = admin(&[
        "--policy",
        tree.to_str().unwrap(),
        "--deployment",
        dep.to_str().unwrap(),
        "--out",
        m.path("admin").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    let report = text(&out);
    for want in [
        "joined the cluster, not a member: node4".to_string(),
        "left the cluster, still a member: gamma".to_string(),
        "not usable as member names (add by hand): \"-x\"".to_string(),
        format!("tenet-keys revoke {} --member gamma", dep.display()),
        format!("tenet-keys join-token {} --member node4", dep.display()),
        format!(
            "cp {} {}/cluster.toml",
            m.path("admin/cluster.toml").display(),
            tree.display()
        ),
    ] {
        assert!(report.contains(&want), "{want:?} not in:\n{report}");
    }
    let proposed = std::fs::read_to_string(m.path("admin/cluster.toml")).unwrap();
    assert!(
        !proposed.contains("\"gamma\"") && !proposed.contains("-x"),
        "{proposed}"
    );
    // No [cluster] in the tree: 3.
    let empty = m.path("empty-tree");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(
        empty.join("files.toml"),
        "[[file]]\npath = \"/etc/x\"\ncontent = \"x\"\n",
    )
    .unwrap();
    let out = admin(&["--policy", empty.to_str().unwrap()]);
    assert_eq!(code(&out), Some(3), "{}", text(&out));

    // A failed event compares nothing.
    std::fs::remove_dir_all(m.path("proposal")).unwrap();
    let out = run_env(&script, &["reconfig_topology_complete", "1"], &[]);
    assert_eq!(code(&out), Some(0));
    assert!(!m.path("proposal").exists());

    // In sync: nothing to sign, nothing written.
    fixture(&utils, "cllsnode", &cllsnode(&["node1", "node2", "node3"]));
    let out = run_env(&script, &["reconfig_topology_complete", "0"], &[]);
    assert_eq!(code(&out), Some(0));
    assert!(text(&out).contains("nothing to sign"), "{}", text(&out));
    assert!(m.proposal("commands.txt").is_none());

    // cllsnode fails: reported (tenet-keys exit 5), the event is not failed.
    std::fs::write(
        utils.join("cllsnode"),
        "#!/bin/sh\necho 'cllsnode: cannot reach clstrmgrES' >&2\nexit 1\n",
    )
    .unwrap();
    let out = run_env(&script, &["reconfig_topology_complete", "0"], &[]);
    assert_eq!(code(&out), Some(0));
    assert!(
        text(&out).contains("membership not compared (5)"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("cannot reach clstrmgrES"),
        "{}",
        text(&out)
    );
    assert_eq!(code(&run_env(&script, &[], &[])), Some(2));
}

/// `cmviewcl -f line -l node` as Serviceguard prints it.
fn cmviewcl(nodes: &[&str]) -> String {
    nodes
        .iter()
        .map(|n| format!("node:{n}|name={n}\nnode:{n}|status=up\nnode:{n}|state=running\n"))
        .collect()
}

#[test]
fn the_serviceguard_policyd_start_sends_master_move_and_proposes_the_cluster_nodes() {
    let mut s = Setup::new();
    let script = packaging().join("serviceguard/tenet-policyd.sh");
    // The bundle Setup serves is the dce-cluster example (alpha, beta, gamma; only
    // alpha enrolled). The cluster: its three nodes and delta.
    let sgsbin = s.path("sgsbin");
    fixture(
        &sgsbin,
        "cmviewcl",
        &format!(
            "name=dcecell\nstatus=up\n{}",
            cmviewcl(&["alpha", "beta", "gamma", "delta"])
        ),
    );
    let tree = s.path("mm-tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("cluster.toml"), MASTER_MOVE_POLICY).unwrap();
    let root = s.path("mm-root");
    std::fs::create_dir_all(&root).unwrap();
    let mut env = sg_env(&s, &binary("tenet-policyd"), &s.config);
    env.extend([
        ("SGSBIN", sgsbin.display().to_string()),
        (
            "PEV_TENET_AGENT",
            binary("tenet-agent").display().to_string(),
        ),
        ("PEV_TENET_AGENT_CONFIG", String::new()),
        (
            "PEV_TENET_AGENT_ARGS",
            format!(
                "--policy {} --root {} --state-dir {}",
                tree.display(),
                root.display(),
                s.path("mm-state").display()
            ),
        ),
        ("PEV_TENET_KEYS", binary("tenet-keys").display().to_string()),
        (
            "PEV_TENET_ROOT",
            s.path("deploy/root/1.root.toml").display().to_string(),
        ),
        (
            "PEV_TENET_MEMBERS_DIR",
            s.path("proposal").display().to_string(),
        ),
    ]);

    let out = run_env(&script, &["start"], &env);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(s.status(), Some(0), "serving when start returns");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/master-moved")).unwrap(),
        "the policy server moved here\n",
        "{}",
        text(&out)
    );
    let proposed = std::fs::read_to_string(s.path("proposal/cluster.toml"))
        .unwrap_or_else(|_| panic!("no proposal: {}", text(&out)));
    assert!(proposed.contains("name = \"delta\""), "{proposed}");
    assert!(
        proposed.contains("# joined the serviceguard cluster"),
        "{proposed}"
    );
    let commands = std::fs::read_to_string(s.path("proposal/commands.txt")).unwrap();
    assert!(
        commands.contains("a member with no enrolled key: beta gamma delta"),
        "{commands}"
    );
    assert!(text(&out).contains("to sign:"), "{}", text(&out));
    assert_eq!(code(&run_env(&script, &["stop"], &env)), Some(0));

    // A master-move that fails and a cmviewcl that fails never fail the start.
    std::fs::write(sgsbin.join("cmviewcl"), "#!/bin/sh\nexit 1\n").unwrap();
    let mut broken = env.clone();
    broken.retain(|(k, _)| *k != "PEV_TENET_AGENT_ARGS");
    broken.push((
        "PEV_TENET_AGENT_ARGS",
        "--policy /nonexistent/tree".to_string(),
    ));
    let out = run_env(&script, &["start"], &broken);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(s.status(), Some(0));
    assert!(
        text(&out).contains("master-move plans of alpha did not all run"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("membership not compared"),
        "{}",
        text(&out)
    );
    assert_eq!(code(&run_env(&script, &["stop"], &env)), Some(0));

    // pev_tenet_master_move no: nothing sent.
    std::fs::remove_file(root.join("etc/master-moved")).unwrap();
    let mut off = env.clone();
    off.push(("PEV_TENET_MASTER_MOVE", "no".to_string()));
    assert_eq!(code(&run_env(&script, &["start"], &off)), Some(0));
    assert_eq!(s.status(), Some(0));
    assert!(!root.join("etc/master-moved").exists());
    assert_eq!(code(&run_env(&script, &["stop"], &env)), Some(0));
}
