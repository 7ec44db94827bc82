//! Golden files: each `diagnostics/<case>.toml` loaded as a one-file tree must print
//! exactly `diagnostics/<case>.out`. `UPDATE_GOLDEN=1 cargo test` rewrites them.

use std::fs;
use std::path::Path;

fn check(case: &str) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let tree = tempfile::tempdir().unwrap();
    let dir = here.join(case);
    if dir.is_dir() {
        // A multi-file case: every file of the directory.
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), tree.path().join(e.file_name())).unwrap();
        }
    } else {
        fs::copy(
            here.join(format!("{case}.toml")),
            tree.path().join(format!("{case}.toml")),
        )
        .unwrap();
    }
    let got = match tenet_policies::load(tree.path()) {
        Ok(p) => format!("valid\n{}", p.warnings),
        Err(d) => d.to_string(),
    };
    let golden = here.join(format!("{case}.out"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&golden, &got).unwrap();
        return;
    }
    let want = fs::read_to_string(&golden).unwrap_or_default();
    if got != want {
        let diff = similar::TextDiff::from_lines(&want, &got)
            .unified_diff()
            .header("expected", "actual")
            .to_string();
        panic!(
            "diagnostics for {case} differ from {}:\n{diff}",
            golden.display()
        );
    }
}

#[test]
fn syntax() {
    check("syntax");
}

#[test]
fn types() {
    check("types");
}

#[test]
fn unknown() {
    check("unknown");
}

#[test]
fn refs() {
    check("refs");
}

#[test]
fn conflicts() {
    check("conflicts");
}

#[test]
fn paths() {
    check("paths");
}

#[test]
fn cluster() {
    check("cluster");
}

#[test]
fn two_clusters() {
    check("two-clusters");
}

#[test]
fn warnings() {
    check("warnings");
}

#[test]
fn plans() {
    check("plans");
}

#[test]
fn mutual_peers() {
    check("mutual-peers");
}

#[test]
fn plan_warnings() {
    check("plan-warnings");
}

#[test]
fn services() {
    check("services");
}

#[test]
fn accounts() {
    check("accounts");
}

#[test]
fn pkgs() {
    check("pkgs");
}

#[test]
fn processes() {
    check("processes");
}

/// Every file of `examples/NAME`, relative, sorted.
fn example_files(name: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_shipped_examples_are_valid_without_warnings_and_embedded_whole() {
    use tenet_policies::examples::{DCE_CLUSTER, NFS_CLUSTER};
    for (name, embedded) in [("dce-cluster", DCE_CLUSTER), ("nfs-cluster", NFS_CLUSTER)] {
        let tree = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name);
        let p = tenet_policies::load(&tree).unwrap_or_else(|d| panic!("{name}: {d}"));
        assert!(p.warnings.is_empty(), "{name}: {}", p.warnings);
        assert!(!p.plans.is_empty(), "{name} shows failover plans");
        let mut listed: Vec<String> = embedded.iter().map(|(rel, _)| rel.to_string()).collect();
        listed.sort();
        assert_eq!(
            listed,
            example_files(name),
            "examples.rs embeds every file of {name}"
        );
        for (rel, text) in embedded {
            assert_eq!(
                *text,
                fs::read_to_string(tree.join(rel)).unwrap(),
                "{name}/{rel}"
            );
        }
    }
}

#[test]
fn the_dce_example_runs_the_seed_plans() {
    use tenet_policies::plan::{Event, Trigger};
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dce-cluster");
    let p = tenet_policies::load(&tree).unwrap();
    let facts = |member: &str, holds: &str| {
        let mut f = tenet_policies::Facts::default();
        f.set(&format!("member={member}")).unwrap();
        f.set(&format!("holds={holds}")).unwrap();
        f
    };
    // Takeover on beta: cascading, so no hostname steps.
    let s = p.plans_for(&Event::NodeDown("alpha".into()), &facts("beta", "dce"));
    let names: Vec<String> = s.runs[0]
        .steps
        .iter()
        .map(|st| st.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "stale endpoint map and credentials",
            "command:/usr/bin/start.dce",
            "command:/usr/bin/start.dfs",
        ]
    );
    // alpha returns: beta stops, alpha reintegrates then starts.
    let s = p.plans_for(&Event::NodeUp("alpha".into()), &facts("beta", "dce"));
    let runs: Vec<(Trigger, &str)> = s
        .runs
        .iter()
        .map(|r| (r.trigger, r.plan.as_str()))
        .collect();
    assert_eq!(runs, [(Trigger::PackageStop, "dce-stop")]);
    let s = p.plans_for(&Event::NodeUp("alpha".into()), &facts("alpha", ""));
    let runs: Vec<(Trigger, &str)> = s
        .runs
        .iter()
        .map(|r| (r.trigger, r.plan.as_str()))
        .collect();
    assert_eq!(
        runs,
        [
            (Trigger::Reintegrate, "dce-reintegrate"),
            (Trigger::PackageStart, "dce-start")
        ]
    );
}

#[test]
fn the_shipped_example_is_valid() {
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dce-cluster");
    let p = tenet_policies::load(&tree).unwrap();
    assert!(p.warnings.is_empty(), "{}", p.warnings);
    assert_eq!(p.cluster.members.len(), 3);
}

#[test]
fn values() {
    check("values");
}

#[test]
fn tree() {
    check("tree");
}

#[test]
fn lang() {
    check("lang");
}
