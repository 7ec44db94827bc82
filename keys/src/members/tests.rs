//! Unit tests of the engines' parsers, the comparison and the proposal.

use super::*;

const CIB_NODES: &str = r#"<nodes>
  <node id="1" uname="node1"/>
  <node id="2" uname="node2">
    <instance_attributes id="nodes-2"><nvpair id="n2-standby" name="standby" value="off"/></instance_attributes>
  </node>
  <node id="3" type="member" uname='node3'/>
</nodes>
"#;

#[test]
fn each_engine_output_gives_its_node_names() {
    assert_eq!(
        Engine::Pacemaker.parse(CIB_NODES),
        ["node1", "node2", "node3"]
    );
    let sg = "name=cluster1\nstatus=up\nnode:ftsys9|name=ftsys9\nnode:ftsys9|status=up\nnode:ftsys10|name=ftsys10\nnode:ftsys10|status=down\n";
    assert_eq!(Engine::Serviceguard.parse(sg), ["ftsys9", "ftsys10"]);
    let ha = "Node alpha\n\tInterfaces to network net_ether_01\n\t\tCommunication Interface: Name alpha, Attribute public\nNODE beta:\n";
    assert_eq!(Engine::Powerha.parse(ha), ["alpha", "beta"]);
    assert!(Engine::Pacemaker.parse("<nodes/>").is_empty());
}

const CONFIG: &str = r#"# The test cluster.
[cluster]
name = "c"
policy_server = "tenet"

[[member]]
name = "alpha"
hostname = "node1"

[[member]]
name = "beta"
hostname = "node2.example.com"

[[member]]
name = "gamma"
hostname = "node3"

# a client, in no package
[[member]]
name = "client"

[[package]]
name = "tenet"
hostname = "m"
ip = "10.0.0.100"
members = [
  "alpha", # owner
  "beta",
  "gamma",
]

[[package]]
name = "dce"
hostname = "d"
ip = "10.0.0.101"
members = ["alpha", "gamma"]

[[file]]
path = "/etc/x"
content = "members = [\"x\"]\n"
"#;

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_engine_nodes_are_compared_by_name_hostname_and_short_name() {
    let cfg = ClusterConfig::parse("cluster.toml", CONFIG)
        .unwrap()
        .unwrap();
    let enrolled = names(&["alpha", "beta", "gamma", "client"]);
    let c = compare(&names(&["node1", "node2", "node3"]), &cfg, Some(&enrolled));
    assert!(c.in_sync(), "{c:?}");
    let c = compare(
        &names(&["node1", "node2", "node4", "-bad"]),
        &cfg,
        Some(&enrolled),
    );
    assert_eq!(c.added, ["node4"]);
    assert_eq!(c.removed, ["gamma"]);
    assert_eq!(c.revoke, ["gamma"]);
    assert_eq!(c.unenrolled, ["node4"]);
    assert_eq!(c.unusable, ["-bad"]);
    let enrolled = names(&["alpha", "gamma"]);
    let c = compare(&names(&["node1", "node2", "node3"]), &cfg, Some(&enrolled));
    assert_eq!(c.unenrolled, ["beta"]);
}

#[test]
fn the_proposal_keeps_the_text_and_moves_members_in_and_out() {
    let cfg = ClusterConfig::parse("cluster.toml", CONFIG)
        .unwrap()
        .unwrap();
    let c = compare(&names(&["node1", "node2", "node4"]), &cfg, None);
    let text = propose(&cfg, &c, Engine::Pacemaker);
    let new = ClusterConfig::parse("cluster.toml", &text)
        .unwrap()
        .unwrap();
    let members: Vec<&str> = new.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(members, ["alpha", "beta", "client", "node4"]);
    assert_eq!(new.packages[0].members, ["alpha", "beta", "node4"]);
    assert_eq!(new.packages[1].members, ["alpha"]);
    assert!(text.starts_with("# The test cluster.\n"), "{text}");
    assert!(text.contains("# a client, in no package\n"), "{text}");
    assert!(
        text.contains("content = \"members = [\\\"x\\\"]\\n\""),
        "{text}"
    );
    assert!(text.contains("# joined the pacemaker cluster"), "{text}");
    // The proposal is in sync with the engine.
    assert!(compare(&names(&["node1", "node2", "node4"]), &new, None).in_sync());
    // Nothing differs: the text is unchanged.
    let same = compare(&names(&["node1", "node2", "node3"]), &cfg, None);
    assert_eq!(propose(&cfg, &same, Engine::Pacemaker), CONFIG);
}

#[test]
fn new_members_follow_the_last_member_that_stays() {
    // Without the client, gamma is the last [[member]], and it leaves.
    let text = CONFIG.replace(
        "# a client, in no package\n[[member]]\nname = \"client\"\n\n",
        "",
    );
    let cfg2 = ClusterConfig::parse("cluster.toml", &text)
        .unwrap()
        .unwrap();
    assert_eq!(cfg2.members.len(), 3, "{text}");
    let c = compare(&names(&["node1", "node2", "node5"]), &cfg2, None);
    assert_eq!(c.removed, ["gamma"]);
    let proposed = propose(&cfg2, &c, Engine::Serviceguard);
    let new = ClusterConfig::parse("cluster.toml", &proposed)
        .unwrap()
        .unwrap();
    let members: Vec<&str> = new.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(members, ["alpha", "beta", "node5"], "{proposed}");
    assert!(compare(&names(&["node1", "node2", "node5"]), &new, None).in_sync());
    // Member lists are written with TOML's escaping.
    let odd = names(&["a", "b\"c", "d'e\\"]);
    let back: toml::Table = toml::from_str(&format!("x = {}", quoted(&odd))).unwrap();
    let back: Vec<&str> = back["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(back, odd);
}
