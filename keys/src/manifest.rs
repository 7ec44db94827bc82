//! `manifest.toml`: one signed list of every file of a policy tree (path, SHA-256,
//! size) and the member inventory (name, key id, classes).
//!
//! ```toml
//! # manifest.toml, signed in manifest.toml.sig (context "tenet-manifest-v1")
//! schema = 1
//! kind = "manifest"
//! deployment = "1f63766877b11c62791bb77c0ea94006"
//! epoch = 1                          # == the root's policy_epoch
//! serial = 1042                      # strictly increasing
//! created = 2026-11-21T22:00:00Z
//! expires = 2026-12-05T22:00:00Z     # default 14 days after created
//! root_version = 1                   # informational; <= the trusted root version
//!
//! [[file]]
//! path = "files/motd-dce"            # relative, no '..', '.', '//', NUL, '\\'
//! sha256 = "34e4…"                   # the blob is blobs/sha256/34e4…
//! size = 170
//!
//! [[member]]
//! name = "alpha"
//! keyid = "79ab…"                    # the member's node key (its TLS client pin)
//! classes = ["dce_server"]
//! ```
//!
//! Parsing checks the manifest's own rules (safe, unique paths; unique members and key
//! ids; plain names). Whether it is trusted is decided by [`crate::verify`].

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::document::{Document, ManifestKind, Schema, check_size, parse, render};
use crate::error::VerifyError;
use crate::id::{DeploymentId, KeyId, Sha256Sum};
use crate::path::check_path;
use crate::time::Time;

/// Default lifetime of a manifest: the hard bound on a freeze.
pub const DEFAULT_MANIFEST_TTL_SECS: u64 = 14 * 86_400;

/// Longest member or class name.
const MAX_NAME: usize = 128;

/// A parsed `manifest.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always 1.
    pub schema: Schema,
    /// Always `"manifest"`.
    pub kind: ManifestKind,
    /// The deployment it belongs to.
    pub deployment: DeploymentId,
    /// Must equal the trusted root's `policy_epoch`.
    pub epoch: u64,
    /// Strictly increasing.
    pub serial: u64,
    /// When it was signed.
    pub created: Time,
    /// After this it is no longer accepted as new.
    pub expires: Time,
    /// The root version it was signed under (informational; at most the trusted one).
    pub root_version: u64,
    /// Every file of the policy tree.
    #[serde(rename = "file", default)]
    pub files: Vec<FileEntry>,
    /// The member inventory: who may fetch, by key id.
    #[serde(rename = "member", default)]
    pub members: Vec<MemberEntry>,
}

impl crate::document::Headed for Manifest {}

/// One `[[file]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative path in the policy tree, `/`-separated.
    pub path: String,
    /// SHA-256 of the content; the blob's name.
    pub sha256: Sha256Sum,
    /// Size in bytes.
    pub size: u64,
}

/// One `[[member]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    /// The member's name in the cluster config.
    pub name: String,
    /// Its node key's id (its TLS client pin).
    pub keyid: KeyId,
    /// Its classes: the cluster config's, then those it was enrolled with.
    #[serde(default)]
    pub classes: Vec<String>,
}

impl Manifest {
    /// Parses and checks the manifest's own rules (not its signatures, deployment, epoch
    /// or times). Use [`crate::verify`] to trust one.
    ///
    /// The document is parsed in parts, one per `[[file]]` or `[[member]]` table
    /// ([`tenet_policies::split`]): the `toml` parser tokenises a whole document
    /// before building it, about 15 bytes of memory per byte, so a 10,000-file
    /// manifest parsed whole held 20 MB for a moment in every process that read it.
    /// The parts give the same `Manifest` as the whole document: the head (every key
    /// before the first table) is read with every field but `file` and `member`, and
    /// each part only as those two arrays, unknown fields refused, so nothing in one
    /// part can change the meaning of another. If any part fails, the whole document
    /// is parsed instead, and its error is the one returned.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, VerifyError> {
        let m = match parse_in_parts(bytes) {
            Some(m) => m,
            None => parse(Document::Manifest, bytes)?,
        };
        m.check()?;
        Ok(m)
    }

    /// The manifest as TOML, ready to sign.
    pub fn render(&self) -> Result<String, toml::ser::Error> {
        render(self)
    }

    /// The file entry for `path`.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The inventory entry for a key id.
    pub fn member_by_key(&self, keyid: &KeyId) -> Option<&MemberEntry> {
        self.members.iter().find(|m| m.keyid == *keyid)
    }

    fn check(&self) -> Result<(), VerifyError> {
        let mut paths = BTreeSet::new();
        let mut sizes: BTreeMap<Sha256Sum, (u64, &str)> = BTreeMap::new();
        for f in &self.files {
            check_path(&f.path).map_err(|problem| VerifyError::UnsafePath {
                path: f.path.clone(),
                problem,
            })?;
            if !paths.insert(f.path.as_str()) {
                return Err(VerifyError::DuplicatePath {
                    path: f.path.clone(),
                });
            }
            match sizes.entry(f.sha256) {
                Entry::Vacant(v) => {
                    v.insert((f.size, f.path.as_str()));
                }
                Entry::Occupied(o) if o.get().0 != f.size => {
                    return Err(VerifyError::ConflictingBlobSize {
                        path: f.path.clone(),
                        other: o.get().1.to_string(),
                        sha256: f.sha256,
                    });
                }
                Entry::Occupied(_) => {}
            }
        }
        let mut names = BTreeSet::new();
        let mut keys: BTreeMap<KeyId, &str> = BTreeMap::new();
        for m in &self.members {
            if !is_valid_name(&m.name) {
                return Err(VerifyError::Name {
                    what: "member",
                    name: m.name.clone(),
                });
            }
            if let Some(c) = m.classes.iter().find(|c| !is_valid_name(c)) {
                return Err(VerifyError::Name {
                    what: "class",
                    name: c.clone(),
                });
            }
            if !names.insert(m.name.as_str()) {
                return Err(VerifyError::DuplicateMember {
                    name: m.name.clone(),
                });
            }
            if let Some(first) = keys.insert(m.keyid, &m.name) {
                return Err(VerifyError::DuplicateMemberKey {
                    keyid: m.keyid,
                    first: first.to_string(),
                    second: m.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A manifest's keys before its first table: every field but the two arrays.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    schema: Schema,
    kind: ManifestKind,
    deployment: DeploymentId,
    epoch: u64,
    serial: u64,
    created: Time,
    expires: Time,
    root_version: u64,
}

/// One part from a `[[file]]` or `[[member]]` header to the next: only the arrays.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tables {
    #[serde(rename = "file", default)]
    files: Vec<FileEntry>,
    #[serde(rename = "member", default)]
    members: Vec<MemberEntry>,
}

/// The manifest read part by part ([`Manifest::parse`]); `None` when the document is
/// too large, not UTF-8, has no table, or any part fails to parse alone.
fn parse_in_parts(bytes: &[u8]) -> Option<Manifest> {
    check_size(Document::Manifest, bytes).ok()?;
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = tenet_policies::split::split(text).into_iter();
    let (_, head) = parts.next()?;
    if parts.len() == 0 {
        return None;
    }
    let head: Head = toml::from_str(head).ok()?;
    // One entry per part, nearly always: no buffer grown by doubling.
    let mut files = Vec::with_capacity(parts.len());
    let mut members = Vec::new();
    for (_, part) in parts {
        let tables: Tables = toml::from_str(part).ok()?;
        files.extend(tables.files);
        members.extend(tables.members);
    }
    Some(Manifest {
        schema: head.schema,
        kind: head.kind,
        deployment: head.deployment,
        epoch: head.epoch,
        serial: head.serial,
        created: head.created,
        expires: head.expires,
        root_version: head.root_version,
        files,
        members,
    })
}

/// The naming rule of members and classes (the policy language's): letters, digits,
/// `-`, `_` and `.`, starting with a letter or digit, at most 128 characters.
pub(crate) fn is_valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A sample manifest for other modules' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    /// A small valid manifest's text.
    pub(crate) fn sample_text() -> String {
        super::tests::sample().render().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PathProblem;

    pub(super) fn sample() -> Manifest {
        Manifest {
            schema: Schema,
            kind: ManifestKind,
            deployment: "00112233445566778899aabbccddeeff".parse().unwrap(),
            epoch: 1,
            serial: 7,
            created: Time::from_unix(1_795_298_400).unwrap(),
            expires: Time::from_unix(1_795_298_400 + DEFAULT_MANIFEST_TTL_SECS).unwrap(),
            root_version: 1,
            files: vec![FileEntry {
                path: "cluster.toml".to_string(),
                sha256: Sha256Sum::of(b"x"),
                size: 1,
            }],
            members: vec![MemberEntry {
                name: "alpha".to_string(),
                keyid: "11".repeat(32).parse().unwrap(),
                classes: vec!["dce_server".to_string()],
            }],
        }
    }

    fn check(edit: impl FnOnce(&mut Manifest)) -> Result<Manifest, VerifyError> {
        let mut m = sample();
        edit(&mut m);
        Manifest::parse(m.render().unwrap().as_bytes())
    }

    #[test]
    fn render_then_parse_is_identity() {
        assert_eq!(check(|_| {}).unwrap(), sample());
    }

    /// What the whole document parses to, as [`parse_in_parts`] would give it.
    fn whole(doc: &str) -> Option<Manifest> {
        parse::<Manifest>(Document::Manifest, doc.as_bytes()).ok()
    }

    #[test]
    fn parts_give_the_whole_documents_manifest_or_nothing() {
        let text = sample().render().unwrap();
        let (head, tables) = text.split_at(text.find("[[file]]").unwrap());
        let member = &tables[tables.find("[[member]]").unwrap()..];
        let file = &tables[..tables.find("[[member]]").unwrap()];
        let twin = file.replace("cluster.toml", "b.toml");
        let good = [
            text.clone(),
            format!("{head}{member}{file}"),
            format!("{head}{file}{member}{twin}"),
            format!(
                "{head}# [[file]]\n{file}  [[ member ]]  # comment\n{}",
                &member[10..]
            ),
            format!("{head}{file}[[\"file\"]]\n{}{member}", &twin[8..]),
            text.replace('\n', "\r\n"),
        ];
        for doc in &good {
            let parts = parse_in_parts(doc.as_bytes());
            assert!(parts.is_some(), "{doc}");
            assert_eq!(parts, whole(doc), "{doc}");
        }
        let bad = [
            // A static array cannot be extended by a table; the head holds no array.
            format!("{head}file = []\n{file}{member}"),
            format!("{head}member = []\n{file}{member}"),
            // A key after a table belongs to it.
            format!("{head}{file}serial = 8\n{member}"),
            // Subtables and plain tables of the arrays' names.
            format!("{head}{file}[file.x]\ny = 1\n{member}"),
            format!("{head}{file}[member]\nname = \"b\"\n"),
            format!("{head}{file}[[file.x]]\ny = 1\n{member}"),
            format!("{head}{file}[other]\n{member}"),
            // No head.
            format!("{file}{member}"),
            // A table header inside a multi-line string is no split point.
            format!("{head}note = '''\n{file}'''\n{member}"),
        ];
        for doc in &bad {
            assert_eq!(whole(doc), None, "{doc}");
            assert_eq!(parse_in_parts(doc.as_bytes()), None, "{doc}");
        }
        // A quoted header is no split point: here the head holds it, and the whole
        // document is parsed instead.
        let quoted = format!("{head}[[\"file\"]]\n{}{member}", &file[8..]);
        assert_eq!(parse_in_parts(quoted.as_bytes()), None);
        assert!(whole(&quoted).is_some());
        // A document with no table is parsed whole.
        assert_eq!(parse_in_parts(head.as_bytes()), None);
        assert!(whole(head).is_some());
    }

    #[test]
    fn own_rules() {
        assert!(matches!(
            check(|m| m.files[0].path = "../etc/shadow".into()),
            Err(VerifyError::UnsafePath {
                problem: PathProblem::ParentDir,
                ..
            })
        ));
        assert!(matches!(
            check(|m| m.files.push(m.files[0].clone())),
            Err(VerifyError::DuplicatePath { .. })
        ));
        assert!(matches!(
            check(|m| {
                let mut twin = m.members[0].clone();
                twin.name = "beta".into();
                m.members.push(twin);
            }),
            Err(VerifyError::DuplicateMemberKey { .. })
        ));
        assert!(matches!(
            check(|m| {
                let mut twin = m.members[0].clone();
                twin.keyid = "22".repeat(32).parse().unwrap();
                m.members.push(twin);
            }),
            Err(VerifyError::DuplicateMember { .. })
        ));
        assert!(matches!(
            check(|m| m.members[0].name = "al\u{1b}pha".into()),
            Err(VerifyError::Name { what: "member", .. })
        ));
        assert!(matches!(
            check(|m| m.members[0].classes.push(String::new())),
            Err(VerifyError::Name { what: "class", .. })
        ));
    }
}
