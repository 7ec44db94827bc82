//! Publishing: sign a policy tree into a bundle, add detached signatures (offline keys),
//! and timestamp a bundle (the online key).
//!
//! **Invariant:** a tree is validated with `tenet_policies::load` before anything is
//! written; an invalid policy is never signed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bundle;
use crate::deployment::{
    Deployment, ensure_empty_dir, read_bytes, write_new, write_replace, write_sig,
};
use crate::document::{Document, MAX_MANIFEST_BYTES, ManifestKind, Schema, TimestampKind};
use crate::error::{PublishError, VerifyError};
use crate::fsio;
use crate::id::{DeploymentId, KeyId, Sha256Sum};
use crate::key::{Role, SecretKey};
use crate::manifest::{FileEntry, Manifest, MemberEntry};
use crate::path::check_path;
use crate::root::Root;
use crate::sig::{Added, SignatureFile};
use crate::time::Time;
use crate::timestamp::{ManifestRef, Timestamp};

/// Whether `sign` signs the manifest or leaves it for `attest` (an offline policy key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// Sign with this key file.
    WithKey(PathBuf),
    /// Write the bundle without `manifest.toml.sig`.
    Unsigned,
}

/// Options of [`sign`].
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// The policy tree.
    pub tree: PathBuf,
    /// The bundle directory to write (absent or empty).
    pub out: PathBuf,
    /// The serial; default last + 1.
    pub serial: Option<u64>,
    /// Lifetime of the manifest.
    pub expires_in: Duration,
    /// The time of signing.
    pub now: Time,
    /// Sign now or leave it for `attest`.
    pub signing: Signing,
}

/// What [`sign`] wrote.
#[derive(Debug, Clone)]
pub struct SignReport {
    /// The bundle directory.
    pub out: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
    /// SHA-256 of `manifest.toml`.
    pub manifest_sha256: Sha256Sum,
    /// The key that signed, if any.
    pub signed_by: Option<KeyId>,
    /// Root versions copied into the bundle.
    pub root_versions: Vec<u64>,
    /// Things a person should read: members without a key, policy warnings, a pending
    /// root.
    pub warnings: Vec<String>,
}

/// Validates `opts.tree`, builds the blob store and the manifest (with the enrolled
/// members of the tree's cluster), signs it unless [`Signing::Unsigned`], copies the
/// root history, and records the serial in the deployment.
pub fn sign(deployment: &mut Deployment, opts: &SignOptions) -> Result<SignReport, PublishError> {
    let policy =
        tenet_policies::load(&opts.tree).map_err(|diagnostics| PublishError::InvalidPolicy {
            tree: opts.tree.clone(),
            count: diagnostics.error_count(),
            diagnostics,
        })?;
    let mut warnings: Vec<String> = policy
        .warnings
        .to_string()
        .lines()
        .map(str::to_string)
        .collect();

    let history = deployment.root_history()?;
    if let Some((version, why)) = &history.pending {
        warnings.push(format!("root version {version} is not used yet: {why}"));
    }
    let root = history.state.root().root().clone();

    let last = deployment.last_serial();
    let serial = opts.serial.unwrap_or(last.saturating_add(1));
    if serial <= last {
        return Err(PublishError::Serial {
            requested: serial,
            last,
        });
    }
    let key = match &opts.signing {
        Signing::WithKey(path) => {
            let key = SecretKey::read(path)?;
            if !root.has_role_key(Role::Policy, &key.key_id()) {
                return Err(PublishError::KeyNotInRole {
                    keyid: key.key_id(),
                    role: Role::Policy,
                    root_version: root.version,
                    path: opts.out.join(bundle::MANIFEST),
                });
            }
            Some(key)
        }
        Signing::Unsigned => None,
    };

    // Members: those of the cluster config that are enrolled.
    let enrolled = deployment.enrolled()?;
    let mut members = Vec::new();
    for m in &policy.cluster.members {
        match enrolled.iter().find(|e| e.name == m.name) {
            Some(e) => {
                let mut classes = m.classes.clone();
                for c in &e.classes {
                    if !classes.contains(c) {
                        classes.push(c.clone());
                    }
                }
                members.push(MemberEntry {
                    name: m.name.clone(),
                    keyid: e.keyid,
                    classes,
                });
            }
            None => warnings.push(format!(
                "member {} has no enrolled key; it is left out of the inventory and cannot fetch this bundle (tenet-keys enroll)",
                m.name
            )),
        }
    }
    for e in &enrolled {
        if policy.cluster.member(&e.name).is_none() {
            warnings.push(format!(
                "enrolled member {} is not in the cluster config; it is left out",
                e.name
            ));
        }
    }

    let files = tree_files(&opts.tree)?;
    let expires = opts
        .now
        .checked_add(opts.expires_in)
        .ok_or(PublishError::TimeOverflow {
            what: "the manifest's expiry",
        })?;
    ensure_empty_dir(&opts.out, 0o755)?;
    let blob_dir = opts.out.join(bundle::BLOB_DIR);
    fsio::create_dir(&blob_dir, 0o755).map_err(|source| PublishError::Write {
        path: blob_dir.clone(),
        source,
    })?;
    let mut entries = Vec::new();
    let mut stored = BTreeSet::new();
    for (rel, path) in files {
        let bytes = read_bytes(&path)?;
        let sha256 = Sha256Sum::of(&bytes);
        if stored.insert(sha256) {
            write_new(&bundle::blob_path(&opts.out, &sha256), &bytes)?;
        }
        entries.push(FileEntry {
            path: rel,
            sha256,
            size: bytes.len() as u64,
        });
    }

    let manifest = Manifest {
        schema: Schema,
        kind: ManifestKind,
        deployment: deployment.id(),
        epoch: root.policy_epoch,
        serial,
        created: opts.now,
        expires,
        root_version: root.version,
        files: entries,
        members,
    };
    let text = manifest.render().map_err(|source| PublishError::Render {
        what: "the manifest",
        source,
    })?;
    // What we wrote must read back as the same manifest under the rules a member applies.
    let manifest = Manifest::parse(text.as_bytes())?;

    let root_dir = opts.out.join(bundle::ROOT_DIR);
    fsio::create_dir(&root_dir, 0o755).map_err(|source| PublishError::Write {
        path: root_dir.clone(),
        source,
    })?;
    for v in &history.versions {
        let from = bundle::root_path(deployment.dir(), *v);
        let to = bundle::root_path(&opts.out, *v);
        write_new(&to, &read_bytes(&from)?)?;
        write_new(
            &bundle::sig_path(&to),
            &read_bytes(&bundle::sig_path(&from))?,
        )?;
    }

    let m_path = opts.out.join(bundle::MANIFEST);
    write_new(&m_path, text.as_bytes())?;
    if let Some(key) = &key {
        let mut sigs = SignatureFile::default();
        sigs.add(Document::Manifest, text.as_bytes(), key);
        write_sig(&m_path, &sigs)?;
    }
    deployment.record_serial(serial)?;
    Ok(SignReport {
        out: opts.out.clone(),
        manifest,
        manifest_sha256: Sha256Sum::of(text.as_bytes()),
        signed_by: key.map(|k| k.key_id()),
        root_versions: history.versions,
        warnings,
    })
}

/// What [`attest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestReport {
    /// The kind of document signed.
    pub document: Document,
    /// The signer.
    pub keyid: KeyId,
    /// Whether a signature was added.
    pub added: Added,
    /// The signature file.
    pub sig_path: PathBuf,
}

/// Adds `key`'s signature of `file` to `file.sig`, with the context named by the
/// file's `kind`. With `trusted` (the deployment's latest verified root), a key that is
/// not listed for the document's role is refused: for a root, a root key of the trusted
/// root or of the file itself.
pub fn attest(
    file: &Path,
    key: &SecretKey,
    trusted: Option<&Root>,
) -> Result<AttestReport, PublishError> {
    let bytes = read_bytes(file)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(VerifyError::TooLarge {
            document: Document::Manifest,
            size: bytes.len() as u64,
            max: MAX_MANIFEST_BYTES,
        }
        .into());
    }
    let document = document_kind(file, &bytes)?;
    let keyid = key.key_id();
    if let Some(root) = trusted {
        let allowed = match document {
            Document::Root => {
                let own = Root::parse(&bytes)?;
                root.has_role_key(Role::Root, &keyid) || own.has_role_key(Role::Root, &keyid)
            }
            other => root.has_role_key(other.role(), &keyid),
        };
        if !allowed {
            return Err(PublishError::KeyNotInRole {
                keyid,
                role: document.role(),
                root_version: root.version,
                path: file.to_path_buf(),
            });
        }
    }
    let sig_path = bundle::sig_path(file);
    let mut sigs = if sig_path.exists() {
        SignatureFile::parse(document, &read_bytes(&sig_path)?)?
    } else {
        SignatureFile::default()
    };
    let added = sigs.add(document, &bytes, key);
    if added == Added::Added {
        write_sig(file, &sigs)?;
    }
    Ok(AttestReport {
        document,
        keyid,
        added,
        sig_path,
    })
}

/// Makes a signed timestamp naming `manifest_bytes` (what policyd does with its online
/// key every TTL/2). The version is `now` in unix seconds, or one more than `previous`
/// if that is not lower, so versions from one signer always increase; but never more
/// than [`crate::verify::DEFAULT_TIMESTAMP_SKEW`] ahead of `now`: a `previous` signed
/// while this clock was ahead is not carried on, since members refuse such a version.
pub fn make_timestamp(
    deployment: DeploymentId,
    manifest_bytes: &[u8],
    key: &SecretKey,
    now: Time,
    ttl: Duration,
    previous: Option<u64>,
) -> Result<(Timestamp, String, String), PublishError> {
    let manifest = Manifest::parse(manifest_bytes)?;
    let latest = crate::verify::Clock::new(now).latest_timestamp_version();
    let version = match previous {
        Some(p) if p >= now.unix() && p < latest => p.saturating_add(1),
        _ => now.unix(),
    };
    let ts = Timestamp {
        schema: Schema,
        kind: TimestampKind,
        deployment,
        version,
        expires: now.checked_add(ttl).ok_or(PublishError::TimeOverflow {
            what: "the timestamp's expiry",
        })?,
        manifest: ManifestRef {
            epoch: manifest.epoch,
            serial: manifest.serial,
            sha256: Sha256Sum::of(manifest_bytes),
            size: manifest_bytes.len() as u64,
        },
    };
    let text = ts.render().map_err(|source| PublishError::Render {
        what: "the timestamp",
        source,
    })?;
    let mut sigs = SignatureFile::default();
    sigs.add(Document::Timestamp, text.as_bytes(), key);
    let sig_text = sigs.render().map_err(|source| PublishError::Render {
        what: "a signature file",
        source,
    })?;
    Ok((ts, text, sig_text))
}

/// Writes `BUNDLE/timestamp.toml` and its signature for the bundle's manifest. With
/// `trusted`, the key must be a timestamp key of that root.
pub fn timestamp_bundle(
    bundle_dir: &Path,
    key: &SecretKey,
    trusted: Option<&Root>,
    now: Time,
    ttl: Duration,
) -> Result<Timestamp, PublishError> {
    let ts_path = bundle_dir.join(bundle::TIMESTAMP);
    if let Some(root) = trusted
        && !root.has_role_key(Role::Timestamp, &key.key_id())
    {
        return Err(PublishError::KeyNotInRole {
            keyid: key.key_id(),
            role: Role::Timestamp,
            root_version: root.version,
            path: ts_path,
        });
    }
    let manifest_bytes = read_bytes(&bundle_dir.join(bundle::MANIFEST))?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    let previous = if ts_path.exists() {
        Timestamp::parse(&read_bytes(&ts_path)?)
            .ok()
            .map(|t| t.version)
    } else {
        None
    };
    let (ts, text, sig_text) = make_timestamp(
        manifest.deployment,
        &manifest_bytes,
        key,
        now,
        ttl,
        previous,
    )?;
    write_replace(&ts_path, text.as_bytes(), 0o644)?;
    write_replace(&bundle::sig_path(&ts_path), sig_text.as_bytes(), 0o644)?;
    Ok(ts)
}

/// The kind of a signed document, read from its `kind` field.
fn document_kind(file: &Path, bytes: &[u8]) -> Result<Document, PublishError> {
    let unknown = |found: String| PublishError::UnknownKind {
        path: file.to_path_buf(),
        found,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| unknown("(not UTF-8)".to_string()))?;
    let table: toml::Table = toml::from_str(text).map_err(|_| unknown("(not TOML)".to_string()))?;
    match table.get("kind") {
        Some(toml::Value::String(k)) => Document::from_kind(k).ok_or_else(|| unknown(k.clone())),
        Some(other) => Err(unknown(other.to_string())),
        None => Err(unknown(String::new())),
    }
}

/// Every regular file of the tree, as (manifest path, filesystem path), sorted. Hidden
/// entries are skipped, as the policy loader skips them; links and special files are
/// refused.
fn tree_files(tree: &Path) -> Result<Vec<(String, PathBuf)>, PublishError> {
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(tree)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = entry.map_err(|source| PublishError::Walk {
            path: tree.to_path_buf(),
            source,
        })?;
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        if !ft.is_file() {
            return Err(PublishError::TreeEntry {
                path: entry.path().to_path_buf(),
            });
        }
        let rel = entry.path().strip_prefix(tree).unwrap_or(entry.path());
        let mut parts = Vec::new();
        for c in rel.components() {
            let s = c
                .as_os_str()
                .to_str()
                .ok_or_else(|| PublishError::TreePath {
                    path: entry.path().to_path_buf(),
                    problem: crate::error::PathProblem::NotUtf8,
                })?;
            parts.push(s);
        }
        let manifest_path = parts.join("/");
        check_path(&manifest_path).map_err(|problem| PublishError::TreePath {
            path: entry.path().to_path_buf(),
            problem,
        })?;
        out.push((manifest_path, entry.path().to_path_buf()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_versions_increase_for_one_signer() {
        let manifest = crate::manifest::tests_support::sample_text();
        let key = SecretKey::from_seed(&[20; 32]);
        let now = Time::from_unix(1_795_298_400).unwrap();
        let ttl = Duration::from_secs(3600);
        let d: DeploymentId = "00112233445566778899aabbccddeeff".parse().unwrap();
        let (t1, _, _) = make_timestamp(d, manifest.as_bytes(), &key, now, ttl, None).unwrap();
        assert_eq!(t1.version, now.unix());
        // Signed again within the same second: one more, never the same.
        let (t2, _, _) =
            make_timestamp(d, manifest.as_bytes(), &key, now, ttl, Some(t1.version)).unwrap();
        assert_eq!(t2.version, now.unix() + 1);
        assert_eq!(t2.manifest.size, manifest.len() as u64);
        assert_eq!(t2.manifest.sha256, Sha256Sum::of(manifest.as_bytes()));
        // A version signed while this clock was far ahead is not carried on: members
        // would refuse it.
        let ahead = now.unix() + 86_400;
        let (t3, _, _) =
            make_timestamp(d, manifest.as_bytes(), &key, now, ttl, Some(ahead)).unwrap();
        assert_eq!(t3.version, now.unix());
    }

    #[test]
    fn tree_files_refuse_links_and_skip_hidden_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path();
        fsio::create_dir(&tree.join("files"), 0o755).unwrap();
        fsio::create_dir(&tree.join(".git"), 0o755).unwrap();
        for (p, b) in [("a.toml", "x"), ("files/m", "y"), (".git/HEAD", "z")] {
            fsio::write_atomic(&tree.join(p), b.as_bytes(), 0o644, fsio::Overwrite::Refuse)
                .unwrap();
        }
        let names: Vec<String> = tree_files(tree)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a.toml", "files/m"]);
        fixture_symlink("/etc/passwd", &tree.join("files/link"));
        assert!(matches!(
            tree_files(tree),
            Err(PublishError::TreeEntry { .. })
        ));
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "a fixture link in a temp tree, not a managed change"
    )]
    fn fixture_symlink(target: &str, at: &Path) {
        std::os::unix::fs::symlink(target, at).unwrap();
    }
}
