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
fn plan_warnings() {
    check("plan-warnings");
}

#[test]
fn the_shipped_example_is_valid() {
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dce-cluster");
    let p = tenet_policies::load(&tree).unwrap();
    assert!(p.warnings.is_empty(), "{}", p.warnings);
    assert_eq!(p.cluster.members.len(), 3);
}
