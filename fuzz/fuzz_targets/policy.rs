//! Fuzz the policy loader the agent runs on a verified bundle: `load_from` over an
//! in-memory tree, then (for a tree that loads) resolution and failover plan selection
//! for each of its members.
//!
//! The input is a whole tree: the first part (up to the first NUL byte) is
//! `cluster.toml`; each later part is a file, its first line the path relative to the
//! tree (`dce.toml`, `files/motd`) and the rest its bytes. A single TOML document is
//! thus a one-file tree. Every file is known by its size and SHA-256, as a bundle's are.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use tenet_policies::plan::Event;
use tenet_policies::{Facts, TreeFiles, is_policy_file, load_from};

/// More files than any useful input needs; keeps one input's work bounded.
const MAX_FILES: usize = 32;
/// Members and packages resolved for one loaded tree.
const MAX_RESOLVED: usize = 4;

struct Tree(BTreeMap<PathBuf, Vec<u8>>);

impl Tree {
    fn new(data: &[u8]) -> Tree {
        let mut parts = data.split(|b| *b == 0);
        let mut files = BTreeMap::new();
        files.insert(
            PathBuf::from("cluster.toml"),
            parts.next().unwrap_or_default().to_vec(),
        );
        for part in parts.take(MAX_FILES) {
            let (name, bytes) = match part.iter().position(|b| *b == b'\n') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &[][..]),
            };
            files.insert(
                PathBuf::from(String::from_utf8_lossy(name).into_owned()),
                bytes.to_vec(),
            );
        }
        Tree(files)
    }
}

impl TreeFiles for Tree {
    fn policy_files(&self, _tree: &Path) -> Result<Vec<PathBuf>, String> {
        Ok(self
            .0
            .keys()
            .filter(|p| is_policy_file(p))
            .cloned()
            .collect())
    }

    fn read(&self, _tree: &Path, rel: &Path) -> std::io::Result<Vec<u8>> {
        self.0
            .get(rel)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    fn digest(&self, _tree: &Path, rel: &Path) -> Option<(u64, [u8; 32])> {
        let bytes = self.0.get(rel)?;
        Some((
            bytes.len() as u64,
            *tenet_keys::Sha256Sum::of(bytes).as_bytes(),
        ))
    }
}

fuzz_target!(|data: &[u8]| {
    let tree = Tree::new(data);
    let Ok(policy) = load_from(Path::new("fuzz"), &tree) else {
        return;
    };
    let members: Vec<String> = policy
        .cluster
        .members
        .iter()
        .take(MAX_RESOLVED)
        .map(|m| m.name.clone())
        .collect();
    let packages: Vec<String> = policy
        .cluster
        .packages
        .iter()
        .take(MAX_RESOLVED)
        .map(|p| p.name.clone())
        .collect();
    for member in &members {
        let facts = Facts {
            hostname: member.clone(),
            os: "linux".to_string(),
            member: Some(member.clone()),
            ..Facts::default()
        };
        for package in &packages {
            for event in [
                Event::PackageStart(package.clone()),
                Event::PackageStop(package.clone()),
                Event::PackageRunning(package.clone()),
            ] {
                let _ = policy.plans_for(&event, &facts);
            }
        }
        for other in &members {
            let _ = policy.plans_for(&Event::NodeUp(other.clone()), &facts);
            let _ = policy.plans_for(&Event::NodeDown(other.clone()), &facts);
        }
    }
    // Resolution consumes the policy: the first member's view, as its agent would.
    if let Some(member) = members.first() {
        let facts = Facts {
            hostname: member.clone(),
            os: "linux".to_string(),
            ..Facts::default()
        };
        let _ = policy.resolve(&facts);
    }
});
