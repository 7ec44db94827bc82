//! Fixtures: a deployment made with the library from fixed seeds, documents signed on
//! demand, and bundles written to temp directories.
#![expect(
    clippy::disallowed_methods,
    reason = "fixtures write starting bundles directly, not through the atomic helper"
)]

use std::path::{Path, PathBuf};

use tenet_keys::document::{ManifestKind, RootKind, Schema, TimestampKind};
use tenet_keys::manifest::{FileEntry, Manifest, MemberEntry};
use tenet_keys::root::{Alg, KeyEntry, RoleSpec, Roles, Root, Transport};
use tenet_keys::sig::{SignatureEntry, SignatureFile};
use tenet_keys::timestamp::{ManifestRef, Timestamp};
use tenet_keys::{
    Clock, DeploymentId, Document, SecretKey, Sha256Sum, Time, TrustState, TrustedRoot,
    VerifyError, bundle,
};

/// The fixture's "now": 2026-11-21T22:00:00Z.
pub(crate) const NOW: u64 = 1_795_298_400;
pub(crate) const DAY: u64 = 86_400;

pub(crate) fn t(secs: u64) -> Time {
    Time::from_unix(secs).unwrap()
}

pub(crate) fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

/// A deployment: root keys 1, 2, 3 (threshold 2), policy key 10, timestamp key 20.
pub(crate) struct Fx {
    pub(crate) root_keys: Vec<SecretKey>,
    pub(crate) policy: SecretKey,
    pub(crate) timestamp: SecretKey,
    pub(crate) deployment: DeploymentId,
    pub(crate) root: Root,
    pub(crate) root_text: String,
    pub(crate) root_sig: String,
    pub(crate) files: Vec<(String, Vec<u8>)>,
}

pub(crate) fn entry(k: &SecretKey, name: &str) -> KeyEntry {
    KeyEntry {
        id: k.key_id(),
        alg: Alg::Ed25519,
        public: k.public(),
        name: name.to_string(),
    }
}

pub(crate) fn spec(keys: &[&SecretKey], threshold: u32) -> RoleSpec {
    RoleSpec {
        keyids: keys.iter().map(|k| k.key_id()).collect(),
        threshold,
    }
}

/// Signs `bytes` as `document` with each key, in order (duplicates kept).
pub(crate) fn sig(keys: &[&SecretKey], document: Document, bytes: &[u8]) -> String {
    let file = SignatureFile {
        signatures: keys
            .iter()
            .map(|k| SignatureEntry {
                keyid: k.key_id(),
                sig: k.sign(document.context(), bytes),
            })
            .collect(),
    };
    file.render().unwrap()
}

impl Fx {
    pub(crate) fn new() -> Fx {
        let root_keys = vec![key(1), key(2), key(3)];
        let policy = key(10);
        let timestamp = key(20);
        let deployment: DeploymentId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let mut keys: Vec<KeyEntry> = root_keys
            .iter()
            .enumerate()
            .map(|(i, k)| entry(k, &format!("root-{}", i + 1)))
            .collect();
        keys.push(entry(&policy, "policy"));
        keys.push(entry(&timestamp, "timestamp"));
        let root = Root {
            schema: Schema,
            kind: RootKind,
            deployment,
            version: 1,
            expires: t(NOW + 365 * DAY),
            policy_epoch: 1,
            roles: Roles {
                root: spec(&root_keys.iter().collect::<Vec<_>>(), 2),
                policy: spec(&[&policy], 1),
                timestamp: spec(&[&timestamp], 1),
                admin: RoleSpec {
                    keyids: vec![],
                    threshold: 1,
                },
            },
            keys,
            admin_scopes: vec![],
            transport: Transport {
                server_spki: vec![key(30).key_id()],
            },
        };
        let root_text = root.render().unwrap();
        let root_sig = sig(
            &[&root_keys[0], &root_keys[1]],
            Document::Root,
            root_text.as_bytes(),
        );
        let files = vec![
            (
                "cluster.toml".to_string(),
                b"[cluster]\nname = \"dce\"\n".to_vec(),
            ),
            ("files/motd".to_string(), b"welcome\n".to_vec()),
        ];
        Fx {
            root_keys,
            policy,
            timestamp,
            deployment,
            root,
            root_text,
            root_sig,
            files,
        }
    }

    pub(crate) fn state(&self) -> TrustState {
        TrustState::new(
            TrustedRoot::bootstrap(self.root_text.as_bytes(), self.root_sig.as_bytes(), None)
                .unwrap(),
        )
    }

    pub(crate) fn clock(&self) -> Clock {
        Clock::new(t(NOW))
    }

    pub(crate) fn manifest(&self, serial: u64) -> Manifest {
        Manifest {
            schema: Schema,
            kind: ManifestKind,
            deployment: self.deployment,
            epoch: 1,
            serial,
            created: t(NOW - 60),
            expires: t(NOW + 14 * DAY),
            root_version: 1,
            files: self
                .files
                .iter()
                .map(|(p, b)| FileEntry {
                    path: p.clone(),
                    sha256: Sha256Sum::of(b),
                    size: b.len() as u64,
                })
                .collect(),
            members: vec![MemberEntry {
                name: "alpha".to_string(),
                keyid: key(40).key_id(),
                classes: vec!["dce_server".to_string()],
            }],
        }
    }

    /// The manifest's text and its policy signature.
    pub(crate) fn signed(&self, m: &Manifest) -> (String, String) {
        let text = m.render().unwrap();
        let s = sig(&[&self.policy], Document::Manifest, text.as_bytes());
        (text, s)
    }

    pub(crate) fn timestamp_for(
        &self,
        manifest_text: &str,
        version: u64,
        expires: Time,
    ) -> Timestamp {
        let m = Manifest::parse(manifest_text.as_bytes()).unwrap();
        Timestamp {
            schema: Schema,
            kind: TimestampKind,
            deployment: self.deployment,
            version,
            expires,
            manifest: ManifestRef {
                epoch: m.epoch,
                serial: m.serial,
                sha256: Sha256Sum::of(manifest_text.as_bytes()),
                size: manifest_text.len() as u64,
            },
        }
    }

    pub(crate) fn signed_ts(&self, ts: &Timestamp) -> (String, String) {
        let text = ts.render().unwrap();
        let s = sig(&[&self.timestamp], Document::Timestamp, text.as_bytes());
        (text, s)
    }

    /// A state that trusts manifest `serial` (made and accepted here).
    pub(crate) fn state_at(&self, serial: u64) -> (TrustState, String) {
        let (text, s) = self.signed(&self.manifest(serial));
        let (state, _) = tenet_keys::check_manifest(
            &self.state(),
            text.as_bytes(),
            s.as_bytes(),
            None,
            &self.clock(),
        )
        .unwrap();
        (state, text)
    }

    /// Root version 2: a copy of root 1 with `edit` applied.
    pub(crate) fn next_root(&self, edit: impl FnOnce(&mut Root)) -> Root {
        let mut r = self.root.clone();
        r.version = 2;
        edit(&mut r);
        r
    }

    /// Writes a bundle: root 1, the manifest and its signature, and the fixture's blobs.
    pub(crate) fn write_bundle(
        &self,
        dir: &Path,
        manifest_text: &str,
        manifest_sig: &str,
    ) -> PathBuf {
        let out = dir.join("bundle");
        write(&bundle::root_path(&out, 1), self.root_text.as_bytes());
        write(
            &bundle::sig_path(&bundle::root_path(&out, 1)),
            self.root_sig.as_bytes(),
        );
        write(&out.join(bundle::MANIFEST), manifest_text.as_bytes());
        write(
            &bundle::sig_path(&out.join(bundle::MANIFEST)),
            manifest_sig.as_bytes(),
        );
        for (_, b) in &self.files {
            write(&bundle::blob_path(&out, &Sha256Sum::of(b)), b);
        }
        out
    }
}

/// Writes a fixture file, creating parents.
pub(crate) fn write(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// Runs `f` on a copy of `state`, expects an error, and checks the state is unchanged
/// (in memory and in its persisted form).
pub(crate) fn refused<T: std::fmt::Debug>(
    state: &TrustState,
    f: impl FnOnce(&TrustState) -> Result<T, VerifyError>,
) -> VerifyError {
    let before = state.clone();
    let persisted = state.to_toml().unwrap();
    let result = f(state);
    assert_eq!(*state, before, "the trusted state changed");
    assert_eq!(state.to_toml().unwrap(), persisted);
    match result {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => {
            // Every message is lowercase-first and has no trailing period.
            let msg = e.to_string();
            assert!(!msg.ends_with('.'), "{msg}");
            assert!(!msg.starts_with(|c: char| c.is_uppercase()), "{msg}");
            e
        }
    }
}

/// Makes a fixture symlink at `at` pointing to `target`.
pub(crate) fn symlink(target: &str, at: &Path) {
    std::os::unix::fs::symlink(target, at).unwrap();
}
