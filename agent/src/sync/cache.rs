//! The state directory's cache: the ratchet and the last good bundle.
//!
//! The files it owns are drawn, with the rest of the state directory, in
//! [`crate::sync`]'s documentation: `trust.toml`, `blobs/.damaged`, `bundles/`,
//! `bundles/.staging/` and `current` (the blob store itself is [`Store`]'s).
//!
//! A new serial stores only the blobs the store does not hold yet: a change of one
//! file writes one blob, and no bundle owns a copy or a link per file. Blobs no bundle
//! kept (the one in force and the previous one) refers to are removed once the store
//! holds more than twice the bundle in force's count plus 64.
//!
//! These files live in the agent's state directory, never in the managed root, so
//! they are written through `statefs` rather than `fsops`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tenet_keys::fsio::{Overwrite, write_atomic};

use tenet_keys::{FileEntry, Manifest, Sha256Sum, TrustState, VerifiedBundle};

use crate::statefs::{self, sync_dir};
use crate::sync::store::Store;

/// The trust state's file name.
pub const TRUST_FILE: &str = "trust.toml";
/// The cached bundles' directory.
pub const BUNDLES: &str = "bundles";
/// The link to the bundle in force.
pub const CURRENT: &str = "current";
/// The bundle being fetched (beside the cached bundles, so that its relative `blobs`
/// link holds after it is renamed into place).
pub const STAGING: &str = "bundles/.staging";
/// Where versions before the shared store staged.
const OLD_STAGING: &str = "staging";
/// The shared blob store.
pub const BLOBS: &str = "blobs";
/// What `bundles/<serial>/blobs` (and staging's) links to.
const BLOBS_LINK: &str = "../../blobs";
/// The name a bundle's policy tree goes by in diagnostics (`bundles/<serial>/tree/x.toml`);
/// the tree is not materialised: its files are read from the blobs ([`BundleFiles`]).
pub const TREE: &str = "tree";

/// The cache in a state directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache in `state_dir` (created owner-only if missing).
    pub fn open(state_dir: &Path) -> io::Result<Cache> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir.join(BUNDLES))?;
        Ok(Cache {
            dir: state_dir.to_path_buf(),
        })
    }

    /// The staging directory, emptied; its `blobs` links to the shared store.
    pub fn fresh_staging(&self) -> io::Result<PathBuf> {
        let staging = self.dir.join(STAGING);
        remove_all(&staging)?;
        fs::create_dir_all(&staging)?;
        fs::create_dir_all(self.blob_store())?;
        statefs::symlink(Path::new(BLOBS_LINK), &staging.join(BLOBS))?;
        Ok(staging)
    }

    /// Removes what an interrupted run left in staging and half-written packs.
    pub fn clean_staging(&self) -> io::Result<()> {
        remove_all(&self.dir.join(OLD_STAGING))?;
        remove_all(&self.dir.join(STAGING))?;
        Store::clean(&self.dir)
    }

    /// The shared blob store. A pack whose index is damaged is removed, and the store
    /// marked for the next sync to fetch what it held.
    pub fn store(&self) -> io::Result<Store> {
        open_store(&self.dir)
    }

    /// `STATE/blobs/sha256`: the loose blobs, by hash (packed ones are in
    /// `blobs/packs`, see [`Store`]).
    pub fn blob_store(&self) -> PathBuf {
        self.dir.join(tenet_keys::bundle::BLOB_DIR)
    }

    /// The names (hex SHA-256) of the blobs in the store, loose or packed.
    pub fn stored_blobs(&self) -> io::Result<HashSet<String>> {
        self.store()?.names()
    }

    /// Whether a stored blob was found damaged (and removed) since the bundle in force
    /// was last fetched: the next sync fetches it again even if nothing is newer.
    pub fn damaged(&self) -> bool {
        damaged_marker(&self.dir).exists()
    }

    /// Clears the damaged mark once the bundle in force was fetched again.
    pub fn clear_damaged(&self) -> io::Result<()> {
        match fs::remove_file(damaged_marker(&self.dir)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The persisted trust state, if any (a corrupted one is an error).
    pub fn trust_state(&self) -> io::Result<Option<String>> {
        match fs::read_to_string(self.dir.join(TRUST_FILE)) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Persists `state` atomically (temp file, fsync, rename, directory fsync).
    pub fn persist(&self, state: &TrustState) -> io::Result<()> {
        let text = state
            .to_toml()
            .map_err(|e| io::Error::other(format!("cannot render the trust state: {e}")))?;
        write_atomic(
            &self.dir.join(TRUST_FILE),
            text.as_bytes(),
            0o644,
            Overwrite::Replace,
        )
    }

    /// The bundle in force: its serial and directory.
    pub fn current(&self) -> Option<(u64, PathBuf)> {
        let target = fs::read_link(self.dir.join(CURRENT)).ok()?;
        let serial = target.file_name()?.to_str()?.parse().ok()?;
        let dir = self.dir.join(BUNDLES).join(serial_name(serial));
        dir.join(tenet_keys::bundle::MANIFEST)
            .is_file()
            .then_some((serial, dir))
    }

    /// Makes the verified staged bundle (already flushed) the one in force: moves it to
    /// `bundles/<serial>/` and flips `current` atomically. Older bundles but the
    /// previous one are removed.
    pub fn commit(&self, bundle: &VerifiedBundle) -> io::Result<PathBuf> {
        let staged = bundle.dir().to_path_buf();
        // The timestamp expires within hours; the cached bundle is re-verified without it.
        for name in [
            tenet_keys::bundle::TIMESTAMP.to_string(),
            format!(
                "{}{}",
                tenet_keys::bundle::TIMESTAMP,
                tenet_keys::bundle::SIG_SUFFIX
            ),
        ] {
            match fs::remove_file(staged.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        // A bundle staged with blobs of its own (a test's, or signed into staging) moves
        // them into the store: they were verified with it.
        let link = staged.join(BLOBS);
        if fs::symlink_metadata(&link)?.is_dir() {
            let store = self.blob_store();
            fs::create_dir_all(&store)?;
            for e in fs::read_dir(staged.join(tenet_keys::bundle::BLOB_DIR))? {
                let e = e?;
                statefs::rename(&e.path(), &store.join(e.file_name()))?;
            }
            statefs::flush(&store)?;
            fs::remove_dir_all(&link)?;
            statefs::symlink(Path::new(BLOBS_LINK), &link)?;
            sync_dir(&staged)?;
        }
        let serial = bundle.manifest().serial;
        let bundles = self.dir.join(BUNDLES);
        let dest = bundles.join(serial_name(serial));
        let previous = self.current().map(|(s, _)| s);
        if previous == Some(serial) && dest.is_dir() {
            // The bundle in force fetched again (a damaged blob was set aside): the
            // same manifest, whose missing blobs are now in the store. It stays in
            // place, so no crash can leave the member without it.
            remove_all(&staged)?;
            return Ok(dest);
        }
        if dest.exists() {
            // The same serial fetched again (its cache was lost): it is not in force.
            remove_all(&dest)?;
        }
        statefs::rename(&staged, &dest)?;
        sync_dir(&bundles)?;
        let tmp = self.dir.join(format!("{CURRENT}.tmp"));
        remove_all(&tmp)?;
        statefs::symlink(&Path::new(BUNDLES).join(serial_name(serial)), &tmp)?;
        statefs::rename(&tmp, &self.dir.join(CURRENT))?;
        sync_dir(&self.dir)?;
        for entry in fs::read_dir(&bundles)? {
            let entry = entry?;
            let keep = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|s| s == serial || Some(s) == previous);
            if !keep {
                remove_all(&entry.path())?;
            }
        }
        self.collect_blobs(bundle.manifest(), previous.filter(|p| *p != serial))?;
        Ok(dest)
    }

    /// Removes blobs that neither the bundle in force (`manifest`) nor the previous one
    /// refers to, once the store holds more than twice the blobs in force plus 64 (so
    /// a run that changes one file does not read the previous manifest for one blob).
    fn collect_blobs(&self, manifest: &Manifest, previous: Option<u64>) -> io::Result<()> {
        let store = self.store()?;
        let stored = store.names()?;
        let mut keep: HashSet<Sha256Sum> = manifest.files.iter().map(|f| f.sha256).collect();
        if stored.len() <= 2 * keep.len() + 64 {
            return Ok(());
        }
        if let Some(p) = previous {
            let path = self
                .dir
                .join(BUNDLES)
                .join(serial_name(p))
                .join(tenet_keys::bundle::MANIFEST);
            // Verified when it was committed; if it cannot be read, keep everything.
            let Ok(m) = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| Manifest::parse(&b).map_err(|e| e.to_string()))
            else {
                return Ok(());
            };
            keep.extend(m.files.iter().map(|f| f.sha256));
        }
        store.retain(&keep, |what| {
            mark_damaged(&self.dir)?;
            tracing::warn!(
                "left a damaged blob out of the blob store ({what}); the next run that reaches the master fetches it again"
            );
            Ok(())
        })
    }
}

fn serial_name(serial: u64) -> String {
    serial.to_string()
}

/// A verified bundle's policy tree, read straight from its blobs: the files are the
/// manifest's, and each is checked against its size and SHA-256 in the signed manifest
/// as it is read ([`Store::read_into`]), so the policy loaded is made of
/// verified bytes only, whatever happened to the directory since it was verified.
#[derive(Debug, Clone)]
pub struct BundleFiles {
    /// Where `blobs/` is (the state directory, or the bundle's own).
    dir: PathBuf,
    /// The blobs under `dir`, loose or packed.
    store: Arc<Store>,
    /// Whether `dir` is the state directory's shared store (through the bundle's
    /// `blobs` link), where a damaged blob is set aside to be fetched again.
    shared: bool,
    tree: PathBuf,
    files: Arc<HashMap<String, FileEntry>>,
}

impl BundleFiles {
    /// The tree of the bundle at `dir`, whose verified manifest is `manifest`.
    pub fn new(dir: &Path, manifest: &Manifest) -> io::Result<BundleFiles> {
        // Blobs are read from the store the bundle's `blobs` link names, resolved once
        // rather than followed for every file.
        let blobs = fs::canonicalize(dir.join(BLOBS)).ok();
        let shared = fs::symlink_metadata(dir.join(BLOBS)).is_ok_and(|m| m.is_symlink());
        let base = blobs
            .as_deref()
            .and_then(Path::parent)
            .map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
        Ok(BundleFiles {
            shared,
            tree: dir.join(TREE),
            store: Arc::new(if shared {
                open_store(&base)?
            } else {
                Store::open(&base, |_| Ok(()))?
            }),
            dir: base,
            files: Arc::new(
                manifest
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), f.clone()))
                    .collect(),
            ),
        })
    }

    /// The path the tree goes by in diagnostics.
    pub fn tree(&self) -> PathBuf {
        self.tree.clone()
    }

    /// Removes a stored blob whose bytes no longer match its name (or notes one that
    /// is missing), and marks the store damaged so that the next `run` that reaches
    /// the master fetches the bundle in force again (only the blobs the store lacks).
    /// Best effort: the caller refuses the blob either way.
    fn set_aside(&self, entry: &FileEntry, present: bool) {
        if !self.shared {
            return;
        }
        let blob = entry.sha256;
        // The mark first: a blob is never gone without the mark that fetches it again.
        match mark_damaged(&self.dir).and_then(|()| {
            if present {
                self.store.forget(&blob)
            } else {
                Ok(())
            }
        }) {
            Ok(()) if present => tracing::warn!(
                %blob,
                "removed a stored blob that no longer matches its hash; the next run fetches it again"
            ),
            Ok(()) => {
                tracing::warn!(%blob, "a stored blob is missing; the next run fetches it again")
            }
            Err(e) => {
                tracing::warn!(%blob, error = %e, "cannot set a damaged blob aside")
            }
        }
    }
}

/// Whether a read failed because the stored bytes are not the blob's (as opposed to
/// the store being unreadable).
fn is_damaged(e: &tenet_keys::VerifyError) -> bool {
    use tenet_keys::VerifyError as V;
    matches!(
        e,
        V::BlobHash { .. }
            | V::BlobTooLarge { .. }
            | V::BlobTooSmall { .. }
            | V::BlobNotFile { .. }
    )
}

/// `STATE/blobs/.damaged`: a stored blob was found damaged and removed.
fn damaged_marker(state_dir: &Path) -> PathBuf {
    state_dir.join(BLOBS).join(".damaged")
}

/// Sets `STATE/blobs/.damaged`, durably (the file and its name).
fn mark_damaged(state_dir: &Path) -> io::Result<()> {
    let blobs = state_dir.join(BLOBS);
    fs::create_dir_all(&blobs)?;
    fs::File::create(damaged_marker(state_dir))?.sync_all()?;
    sync_dir(&blobs)
}

/// The shared store of `state_dir`; a damaged pack index found while opening it is
/// removed with its pack, once the store is marked for the next sync to fetch them
/// again.
fn open_store(state_dir: &Path) -> io::Result<Store> {
    Store::open(state_dir, |what| {
        mark_damaged(state_dir)?;
        tracing::warn!(
            "removing a damaged pack of the blob store ({what}); the next run that reaches the master fetches its blobs again"
        );
        Ok(())
    })
}

impl tenet_policies::TreeFiles for BundleFiles {
    fn policy_files(&self, _tree: &Path) -> Result<Vec<PathBuf>, String> {
        let mut out: Vec<PathBuf> = self
            .files
            .keys()
            .map(PathBuf::from)
            .filter(|p| tenet_policies::is_policy_file(p))
            .collect();
        out.sort();
        Ok(out)
    }

    fn read(&self, _tree: &Path, rel: &Path) -> io::Result<Vec<u8>> {
        let entry = rel
            .to_str()
            .and_then(|r| self.files.get(r))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not in the signed manifest"))?;
        let mut out = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0));
        if let Err(e) = self.store.read_into(entry, &mut out) {
            if is_damaged(&e) {
                self.set_aside(entry, true);
            } else if matches!(e, tenet_keys::VerifyError::MissingBlob { .. }) {
                self.set_aside(entry, false);
            }
            return Err(io::Error::other(tenet_keys::error_chain(&e)));
        }
        Ok(out)
    }

    /// From the signed manifest: a `source` file is compared by its hash and read
    /// (and checked) only when a file must be written.
    fn digest(&self, _tree: &Path, rel: &Path) -> Option<(u64, [u8; 32])> {
        let entry = self.files.get(rel.to_str()?)?;
        Some((entry.size, *entry.sha256.as_bytes()))
    }

    /// From the signed manifest: its files beneath `rel` (a `[[tree]]`'s source).
    fn files_under(&self, _tree: &Path, rel: &Path) -> Result<Vec<PathBuf>, String> {
        let mut out: Vec<PathBuf> = self
            .files
            .keys()
            .map(Path::new)
            .filter(|p| p.starts_with(rel) && *p != rel)
            .map(Path::to_path_buf)
            .collect();
        if out.is_empty() {
            return Err("no such directory in the signed manifest".to_string());
        }
        out.sort();
        Ok(out)
    }
}

fn remove_all(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}
