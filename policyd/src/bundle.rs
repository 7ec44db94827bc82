//! Loading a bundle directory for serving: every document is read once into memory,
//! verified there with `tenet_keys::verify`'s steps, and those exact bytes are what
//! the routes serve, so nothing changed on disk after verification is ever served.
//!
//! The checks, in order: the root history from version 1 must lead to the trusted root
//! byte for byte (every step signed by old and new root keys); newer versions must
//! update the trusted root; the newest root must be unexpired; the manifest must pass
//! `check_manifest` against the daemon's ratchet (signature, deployment, epoch, no
//! rollback, no equivocation, expiry, safe paths); every blob must match its size and
//! hash.
//!
//! The bundle's own `timestamp.toml`, if any, is ignored: policyd signs its own
//! timestamps, and one left by `tenet-keys timestamp` has usually expired by the time
//! the package moves (which would make `verify_bundle` refuse the whole bundle).
//!
//! **Invariant:** blobs are named by the hashes of the verified manifest only; no
//! request text ever becomes part of a path.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use hyper::body::Bytes;
use tenet_keys::document::{MAX_MANIFEST_BYTES, MAX_ROOT_BYTES, MAX_SIGNATURE_BYTES};
use tenet_keys::verify::read_blob_into;
use tenet_keys::{
    Clock, FileEntry, KeyId, Manifest, Sha256Sum, TrustState, TrustedRoot, VerifyError, bundle,
    check_manifest, check_root_fresh, update_root,
};

use crate::error::BundleError;

/// Most root versions read from a bundle.
const MAX_ROOT_VERSIONS: u64 = 1024;

/// A verified bundle held for serving.
#[derive(Debug)]
pub(crate) struct LoadedBundle {
    dir: PathBuf,
    state: TrustState,
    manifest: Manifest,
    manifest_bytes: Bytes,
    manifest_sig: Bytes,
    manifest_sha256: Sha256Sum,
    roots: Vec<SignedDocument>,
    /// Each distinct hash's first entry, by its index in `manifest.files` (no entry
    /// is held twice).
    blobs: HashMap<Sha256Sum, usize>,
    members: HashSet<KeyId>,
}

/// A document's exact bytes and its signature file's.
#[derive(Debug, Clone)]
pub(crate) struct SignedDocument {
    /// The document.
    pub(crate) bytes: Bytes,
    /// `X.sig`.
    pub(crate) sig: Bytes,
}

impl LoadedBundle {
    /// Reads and verifies the bundle at `dir` (symlinks resolved once, here) against
    /// `trusted`, the daemon's ratchet.
    pub(crate) fn load(
        dir: &Path,
        trusted: &TrustState,
        clock: &Clock,
    ) -> Result<LoadedBundle, BundleError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| BundleError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        let roots = read_roots(&dir)?;
        let newest = roots.len() as u64;
        let trusted_version = trusted.root().root().version;
        let first = roots
            .first()
            .ok_or_else(|| BundleError::NoRoot { dir: dir.clone() })?;
        if newest < trusted_version {
            return Err(BundleError::RootBehind {
                dir,
                newest,
                trusted: trusted_version,
            });
        }
        let root_err = |version: u64| {
            let dir = dir.clone();
            move |source| BundleError::Root {
                dir,
                version,
                source: Box::new(source),
            }
        };
        // Versions 1..=trusted: the history must lead to the very root trusted.
        let anchor = TrustedRoot::bootstrap(&first.bytes, &first.sig, None).map_err(root_err(1))?;
        let mut history = TrustState::new(anchor);
        for version in 2..=trusted_version {
            let doc = &roots[index(version)];
            history = update_root(&history, &doc.bytes, &doc.sig).map_err(root_err(version))?;
        }
        if history.root().bytes() != trusted.root().bytes() {
            return Err(BundleError::ForeignRoot {
                dir,
                version: trusted_version,
            });
        }
        // Newer versions update the trusted root.
        let mut state = trusted.clone();
        for version in trusted_version + 1..=newest {
            let doc = &roots[index(version)];
            state = update_root(&state, &doc.bytes, &doc.sig).map_err(root_err(version))?;
        }
        check_root_fresh(&state, clock).map_err(root_err(newest))?;

        let m_path = dir.join(bundle::MANIFEST);
        let manifest_bytes = read_capped(&m_path, MAX_MANIFEST_BYTES)?;
        let manifest_sig = read_capped(&bundle::sig_path(&m_path), MAX_SIGNATURE_BYTES)?;
        let (state, manifest) = check_manifest(&state, &manifest_bytes, &manifest_sig, None, clock)
            .map_err(|source| BundleError::Manifest {
                dir: dir.clone(),
                source: Box::new(source),
            })?;

        let mut blobs = HashMap::with_capacity(manifest.files.len());
        for (at, entry) in manifest.files.iter().enumerate() {
            if blobs.contains_key(&entry.sha256) {
                continue;
            }
            read_blob_into(&dir, entry, io::sink()).map_err(|source| BundleError::Blob {
                dir: dir.clone(),
                file: entry.path.clone(),
                source: Box::new(source),
            })?;
            blobs.insert(entry.sha256, at);
        }
        let members = manifest.members.iter().map(|m| m.keyid).collect();
        Ok(LoadedBundle {
            manifest_sha256: Sha256Sum::of(&manifest_bytes),
            manifest_bytes: Bytes::from(manifest_bytes),
            manifest_sig: Bytes::from(manifest_sig),
            dir,
            state,
            manifest,
            roots,
            blobs,
            members,
        })
    }

    /// The bundle directory, symlinks resolved.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trust state after this bundle (the daemon's next ratchet).
    pub(crate) fn state(&self) -> &TrustState {
        &self.state
    }

    /// The verified manifest.
    pub(crate) fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest's serial.
    pub(crate) fn serial(&self) -> u64 {
        self.manifest.serial
    }

    /// SHA-256 of the manifest's bytes.
    pub(crate) fn manifest_sha256(&self) -> Sha256Sum {
        self.manifest_sha256
    }

    /// The manifest's exact bytes and signatures.
    pub(crate) fn manifest_document(&self) -> SignedDocument {
        SignedDocument {
            bytes: self.manifest_bytes.clone(),
            sig: self.manifest_sig.clone(),
        }
    }

    /// Root `version` of the history, if the bundle has it.
    pub(crate) fn root(&self, version: u64) -> Option<&SignedDocument> {
        let at = usize::try_from(version.checked_sub(1)?).ok()?;
        self.roots.get(at)
    }

    /// The enrolled members' key ids.
    pub(crate) fn members(&self) -> &HashSet<KeyId> {
        &self.members
    }

    /// The inventory name of the member with key `keyid`, if enrolled.
    pub(crate) fn member_name(&self, keyid: &KeyId) -> Option<&str> {
        self.manifest.member_by_key(keyid).map(|m| m.name.as_str())
    }

    /// The manifest entry whose content has this hash, if any.
    pub(crate) fn blob_entry(&self, sha256: &Sha256Sum) -> Option<&FileEntry> {
        self.blobs
            .get(sha256)
            .and_then(|at| self.manifest.files.get(*at))
    }

    /// Opens the blob of `entry` in the blob store for streaming, after the checks that
    /// need no reading: a regular file (no link followed) of exactly the signed size.
    /// The caller hashes what it reads ([`BlobCheck`]).
    pub(crate) fn open_blob(&self, entry: &FileEntry) -> Result<File, VerifyError> {
        let file = tenet_keys::verify::open_blob(&self.dir, entry)?;
        let meta = file.metadata().map_err(|source| VerifyError::Read {
            path: bundle::blob_path(&self.dir, &entry.sha256),
            source,
        })?;
        if meta.len() < entry.size {
            return Err(VerifyError::BlobTooSmall {
                path: entry.path.clone(),
                declared: entry.size,
                found: meta.len(),
            });
        }
        Ok(file)
    }
}

/// The running check of a blob as it streams: its bytes are counted and hashed, and
/// [`BlobCheck::finish`] says whether they were exactly the signed ones.
pub(crate) struct BlobCheck {
    hasher: sha2::Sha256,
    seen: u64,
}

impl BlobCheck {
    pub(crate) fn new() -> BlobCheck {
        use sha2::Digest as _;
        BlobCheck {
            hasher: sha2::Sha256::new(),
            seen: 0,
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        self.hasher.update(bytes);
        self.seen += bytes.len() as u64;
    }

    /// Whether the bytes seen are `entry`'s: its size and SHA-256.
    pub(crate) fn finish(self, entry: &FileEntry) -> Result<(), VerifyError> {
        use sha2::Digest as _;
        if self.seen > entry.size {
            return Err(VerifyError::BlobTooLarge {
                path: entry.path.clone(),
                declared: entry.size,
            });
        }
        if self.seen < entry.size {
            return Err(VerifyError::BlobTooSmall {
                path: entry.path.clone(),
                declared: entry.size,
                found: self.seen,
            });
        }
        let found = Sha256Sum::from_bytes(self.hasher.finalize().into());
        if found != entry.sha256 {
            return Err(VerifyError::BlobHash {
                path: entry.path.clone(),
                declared: entry.sha256,
                found,
            });
        }
        Ok(())
    }
}

/// SHA-256 of `DIR/manifest.toml` (resolved), to notice a new manifest cheaply: the
/// file is hashed as it is read, never held (this runs on every tick of a promotion).
pub(crate) fn manifest_fingerprint(dir: &Path) -> Result<(PathBuf, Sha256Sum), BundleError> {
    use sha2::Digest as _;
    let dir = std::fs::canonicalize(dir).map_err(|source| BundleError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(bundle::MANIFEST);
    let read_err = |source| BundleError::Read {
        path: path.clone(),
        source,
    };
    let mut file = File::open(&path)
        .map_err(read_err)?
        .take(MAX_MANIFEST_BYTES + 1);
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    let mut seen: u64 = 0;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        hasher.update(&buf[..n]);
        seen += n as u64;
    }
    if seen > MAX_MANIFEST_BYTES {
        return Err(BundleError::TooLarge {
            path,
            max: MAX_MANIFEST_BYTES,
        });
    }
    Ok((dir, Sha256Sum::from_bytes(hasher.finalize().into())))
}

fn index(version: u64) -> usize {
    // Versions are at most MAX_ROOT_VERSIONS, so this always fits.
    usize::try_from(version - 1).unwrap_or(usize::MAX)
}

fn read_roots(dir: &Path) -> Result<Vec<SignedDocument>, BundleError> {
    let mut roots = Vec::new();
    for version in 1..=MAX_ROOT_VERSIONS {
        let path = bundle::root_path(dir, version);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(source) => return Err(BundleError::Read { path, source }),
            Ok(_) => {}
        }
        let bytes = read_capped(&path, MAX_ROOT_BYTES)?;
        let sig = read_capped(&bundle::sig_path(&path), MAX_SIGNATURE_BYTES)?;
        roots.push(SignedDocument {
            bytes: Bytes::from(bytes),
            sig: Bytes::from(sig),
        });
    }
    Ok(roots)
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, BundleError> {
    let read_err = |source| BundleError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    // Sized from the file's length, so a 1.3 MB manifest is not held in a 2 MB
    // buffer grown by doubling (the held bytes are served as they are).
    let len = file.metadata().map_err(read_err)?.len().min(max + 1);
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut out).map_err(read_err)?;
    if out.len() as u64 > max {
        return Err(BundleError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(out)
}
