//! The state directory's cache: the ratchet and the last good bundle.
//!
//! ```text
//! STATE/
//!   run.lock
//!   trust.toml                the ratchet (TrustState::to_toml), replaced atomically
//!   bundles/<serial>/         a verified bundle (no timestamp) and its tree/
//!   current -> bundles/<serial>
//!   staging/                  the bundle being fetched; removed on start
//! ```
//!
//! These files live in the agent's state directory, never in the managed root, so
//! they are written here rather than through `fsops`.
#![expect(
    clippy::disallowed_methods,
    reason = "the cache is the agent's own state, outside the managed root; every write is atomic here"
)]

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use tenet_keys::{TrustState, VerifiedBundle};

/// The trust state's file name.
pub const TRUST_FILE: &str = "trust.toml";
/// The cached bundles' directory.
pub const BUNDLES: &str = "bundles";
/// The link to the bundle in force.
pub const CURRENT: &str = "current";
/// The bundle being fetched.
pub const STAGING: &str = "staging";
/// The policy tree materialised in a cached bundle.
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

    /// The staging directory, emptied.
    pub fn fresh_staging(&self) -> io::Result<PathBuf> {
        let staging = self.dir.join(STAGING);
        remove_all(&staging)?;
        fs::create_dir_all(&staging)?;
        Ok(staging)
    }

    /// Removes what an interrupted run left in staging.
    pub fn clean_staging(&self) -> io::Result<()> {
        remove_all(&self.dir.join(STAGING))
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
        let tmp = self.dir.join(format!("{TRUST_FILE}.tmp"));
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(TRUST_FILE))?;
        sync_dir(&self.dir)
    }

    /// The bundle in force: its serial and directory.
    pub fn current(&self) -> Option<(u64, PathBuf)> {
        let target = fs::read_link(self.dir.join(CURRENT)).ok()?;
        let serial = target.file_name()?.to_str()?.parse().ok()?;
        let dir = self.dir.join(BUNDLES).join(serial_name(serial));
        dir.join(TREE).is_dir().then_some((serial, dir))
    }

    /// Makes the verified staged bundle the one in force: materialises its tree, moves it
    /// to `bundles/<serial>/` and flips `current` atomically. Older bundles but the
    /// previous one are removed.
    pub fn commit(&self, bundle: &VerifiedBundle) -> io::Result<PathBuf> {
        let staged = bundle.dir().to_path_buf();
        self.stage_tree(bundle, &staged.join(TREE))?;
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
        let serial = bundle.manifest().serial;
        let bundles = self.dir.join(BUNDLES);
        let dest = bundles.join(serial_name(serial));
        let previous = self.current().map(|(s, _)| s);
        if dest.exists() {
            // The same serial fetched again (its cache was lost): it is not in force.
            remove_all(&dest)?;
        }
        fs::rename(&staged, &dest)?;
        sync_dir(&bundles)?;
        let tmp = self.dir.join(format!("{CURRENT}.tmp"));
        remove_all(&tmp)?;
        std::os::unix::fs::symlink(Path::new(BUNDLES).join(serial_name(serial)), &tmp)?;
        fs::rename(&tmp, self.dir.join(CURRENT))?;
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
        Ok(dest)
    }
}

impl Cache {
    /// Writes every file of the verified bundle's manifest beneath `tree`.
    pub fn stage_tree(&self, bundle: &VerifiedBundle, tree: &Path) -> io::Result<()> {
        materialise(bundle, tree)
    }
}

fn serial_name(serial: u64) -> String {
    serial.to_string()
}

/// Puts every file of the verified manifest beneath `tree`, as a hard link to its
/// verified blob (no content is copied; one inode per blob, so a change to either is
/// caught when the cached bundle is verified again at the next run). Where a link
/// cannot be made (another filesystem), the blob is copied, checked again as it is
/// read. Manifest paths are safe relative paths (checked by the keys crate).
fn materialise(bundle: &VerifiedBundle, tree: &Path) -> io::Result<()> {
    remove_all(tree)?;
    fs::create_dir_all(tree)?;
    let mut made: Option<PathBuf> = None;
    for entry in bundle.files() {
        tenet_keys::path::check_path(&entry.path)
            .map_err(|e| io::Error::other(format!("{}: {e}", entry.path)))?;
        let dest = tree.join(&entry.path);
        if let Some(parent) = dest.parent()
            && made.as_deref() != Some(parent)
        {
            fs::create_dir_all(parent)?;
            made = Some(parent.to_path_buf());
        }
        if fs::hard_link(bundle.blob_path(entry), &dest).is_ok() {
            continue;
        }
        let bytes = bundle
            .read_file(&entry.path)
            .ok_or_else(|| io::Error::other(format!("{}: not in the manifest", entry.path)))?
            .map_err(|e| io::Error::other(tenet_keys::error_chain(&e)))?;
        let mut f = fs::File::create(&dest)?;
        f.write_all(&bytes)?;
    }
    // One flush for the whole tree; the caller switches `current` only after it.
    crate::run::flush(tree)
}

fn remove_all(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
