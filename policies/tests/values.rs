//! Address values as a member sees them: the family, the cluster's networks, the
//! service addresses and `max_items`, resolved for facts a real host reports.

use tenet_policies::facts::Facts;
use tenet_policies::model::PromiseKind;

const CLUSTER: &str = r#"
[cluster]
name = "c"

[[member]]
name = "m1"
hostname = "m1"
addresses = [
  { ip = "10.1.0.1", role = "boot" },
  { ip = "10.2.0.1", role = "standby" },
  { ip = "fd00::1", role = "boot" },
]

[[package]]
name = "p"
hostname = "p"
ip = "10.1.0.100"
members = ["m1"]
configuration = "rotating"
"#;

/// The value `v` declared by `value`, for m1 with the machine addresses `found`:
/// the resolved text and the warnings.
fn resolve(value: &str, found: &str) -> (String, Vec<String>) {
    let tree = tempfile::tempdir().unwrap();
    let text = format!(
        "{CLUSTER}\n[[value]]\nname = \"v\"\n{value}\n\n[[setting]]\nfile = \"/e\"\nkey = \"K\"\nvalue = \"${{v}}\"\n"
    );
    std::fs::write(tree.path().join("p.toml"), text).unwrap();
    let policy = tenet_policies::load(tree.path()).unwrap_or_else(|d| panic!("{d}"));
    let mut facts = Facts::default();
    facts.set("member=m1").unwrap();
    facts.set(&format!("addresses={found}")).unwrap();
    let r = policy.resolve(&facts);
    let Some(Ok(promise)) = r.promises.into_iter().next() else {
        panic!("the setting did not resolve");
    };
    let PromiseKind::Setting(s) = promise.kind else {
        panic!("not the setting");
    };
    (s.value, r.warnings)
}

/// What a host with docker, libvirt and IPv6 reports, besides its cluster addresses.
const HOST: &str = "10.1.0.1,10.2.0.1,10.1.0.100,10.1.0.7,172.17.0.1,192.168.122.1,127.0.0.1,\
                    fd00::1,2001:db8::5,fe80::1";

#[test]
fn non_service_addresses_are_ipv4_from_the_member_and_the_cluster_networks() {
    let (v, _) = resolve(
        "addresses = \"non-service\"\nnetworks = [\"10.1.0.0/24\", \"10.2.0.0/24\"]",
        HOST,
    );
    assert_eq!(v, "10.1.0.1:10.2.0.1:10.1.0.7");
}

#[test]
fn without_networks_only_the_member_s_configured_addresses_count() {
    let (v, _) = resolve("addresses = \"non-service\"", HOST);
    assert_eq!(v, "10.1.0.1:10.2.0.1");
}

#[test]
fn a_network_the_policy_names_brings_its_addresses_in() {
    let (v, _) = resolve(
        "addresses = \"all\"\nnetworks = [\"172.16.0.0/12\", \"127.0.0.0/8\"]",
        HOST,
    );
    assert_eq!(v, "10.1.0.1:10.2.0.1:172.17.0.1:127.0.0.1");
}

#[test]
fn ipv6_is_listed_only_when_asked_for() {
    let (v, _) = resolve(
        "addresses = \"all\"\nfamily = \"ipv6\"\nseparator = \",\"\nnetworks = [\"2001:db8::/32\"]",
        HOST,
    );
    assert_eq!(v, "fd00::1,2001:db8::5");
    let (v, _) = resolve(
        "addresses = \"boot\"\nfamily = \"any\"\nseparator = \" \"",
        HOST,
    );
    assert_eq!(v, "10.1.0.1 fd00::1");
}

#[test]
fn max_items_keeps_the_first_and_warns_about_the_rest() {
    let (v, warnings) = resolve(
        "addresses = \"non-service\"\nnetworks = [\"10.0.0.0/8\"]\nmax_items = 2",
        "10.1.0.7,10.3.0.9",
    );
    assert_eq!(v, "10.1.0.1:10.2.0.1");
    assert_eq!(
        warnings,
        vec!["value `v` keeps at most 2 addresses; left out: 10.1.0.7, 10.3.0.9".to_string()]
    );
}
