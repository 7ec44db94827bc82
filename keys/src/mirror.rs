//! `tenet-keys publish --to DIR`: a bundle laid out for a static mirror, which any plain
//! HTTPS server (nginx, an object store, a CDN) can serve without being trusted.
//!
//! The mirror is the bundle's own layout ([`crate::bundle`]) with a fresh timestamp
//! signed by the online timestamp key:
//!
//! ```text
//! DIR/
//!   root/<n>.root.toml  root/<n>.root.toml.sig   every root version of the bundle
//!   manifest.toml       manifest.toml.sig
//!   timestamp.toml      timestamp.toml.sig       signed now, naming manifest.toml
//!   blobs/sha256/<hex>                           every blob, each hashed as it is copied
//! ```
//!
//! (policyd's paths, `/v1/timestamp` beside `/v1/timestamp/sig`, cannot both be files of
//! one directory tree; members map each request to this layout when they ask a mirror.)
//!
//! Writes go blobs first, then roots, then the manifest, then the timestamp last, each
//! file replaced atomically: a member reading during a publish sees the old timestamp
//! (naming the old manifest, whose blobs are still there) until the new one is in place,
//! except in the moment between a document and its signature being replaced; such a
//! member is refused on trust for that run and fetches the whole on its next.
//! Blobs of older serials are kept, so a member part-way through an older one finishes.
//!
//! **Invariant:** a mirror never goes backwards: a bundle of an older epoch or serial
//! than the mirror holds (or another manifest under the same serial) is refused before
//! anything is written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bundle;
use crate::deployment::{read_bytes, write_replace};
use crate::error::PublishError;
use crate::fsio;
use crate::id::Sha256Sum;
use crate::key::{Role, SecretKey};
use crate::manifest::Manifest;
use crate::publish::make_timestamp;
use crate::root::Root;
use crate::time::Time;
use crate::timestamp::Timestamp;

/// Options of [`publish_mirror`].
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// The bundle to publish (as `sign` wrote it).
    pub bundle: PathBuf,
    /// The mirror's directory (created if missing).
    pub to: PathBuf,
    /// The time of signing.
    pub now: Time,
    /// How long the timestamp is valid.
    pub ttl: Duration,
}

/// What [`publish_mirror`] wrote.
#[derive(Debug, Clone)]
pub struct MirrorReport {
    /// The timestamp signed.
    pub timestamp: Timestamp,
    /// Blobs copied.
    pub blobs_written: usize,
    /// Blobs the mirror already held (checked by size and hash).
    pub blobs_kept: usize,
    /// Root versions in the mirror.
    pub roots: usize,
}

/// Lays out the bundle `opts.bundle` in `opts.to` with a timestamp signed by `key`
/// (with `trusted`, it must be a timestamp key of that root).
pub fn publish_mirror(
    opts: &MirrorOptions,
    key: &SecretKey,
    trusted: Option<&Root>,
) -> Result<MirrorReport, PublishError> {
    let ts_path = opts.to.join(bundle::TIMESTAMP);
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
    let manifest_path = opts.bundle.join(bundle::MANIFEST);
    let manifest_bytes = read_bytes(&manifest_path)?;
    let manifest_sig = read_bytes(&bundle::sig_path(&manifest_path))?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    check_not_behind(&opts.to, &manifest, &manifest_bytes)?;

    refuse_symlinked_dirs(&opts.to)?;
    let mkdir = |dir: &Path| {
        fsio::create_dir(dir, 0o755).map_err(|source| PublishError::Write {
            path: dir.to_path_buf(),
            source,
        })
    };
    mkdir(&opts.to.join(bundle::BLOB_DIR))?;
    mkdir(&opts.to.join(bundle::ROOT_DIR))?;

    let (mut blobs_written, mut blobs_kept) = (0, 0);
    let mut seen = BTreeSet::new();
    for entry in &manifest.files {
        if !seen.insert(entry.sha256) {
            continue;
        }
        if crate::verify::read_blob_into(&opts.to, entry, std::io::sink()).is_ok() {
            blobs_kept += 1;
            continue;
        }
        let mut bytes = Vec::new();
        crate::verify::read_blob_into(&opts.bundle, entry, &mut bytes)?;
        write_replace(&bundle::blob_path(&opts.to, &entry.sha256), &bytes, 0o644)?;
        blobs_written += 1;
    }

    let roots = copy_roots(&opts.bundle, &opts.to)?;

    let out_manifest = opts.to.join(bundle::MANIFEST);
    write_replace(&bundle::sig_path(&out_manifest), &manifest_sig, 0o644)?;
    write_replace(&out_manifest, &manifest_bytes, 0o644)?;

    let previous = std::fs::read(&ts_path)
        .ok()
        .and_then(|b| Timestamp::parse(&b).ok())
        .map(|t| t.version);
    let (timestamp, text, sig) = make_timestamp(
        manifest.deployment,
        &manifest_bytes,
        key,
        opts.now,
        opts.ttl,
        previous,
    )?;
    write_replace(&bundle::sig_path(&ts_path), sig.as_bytes(), 0o644)?;
    write_replace(&ts_path, text.as_bytes(), 0o644)?;
    Ok(MirrorReport {
        timestamp,
        blobs_written,
        blobs_kept,
        roots,
    })
}

/// Refuses a mirror whose `blobs/`, `blobs/sha256/` or `root/` is a symbolic link:
/// the publisher writes only inside the directory it was given, so a link planted
/// there cannot send the bundle's files (or the directories made for them) elsewhere.
/// Checked before anything is created.
fn refuse_symlinked_dirs(to: &Path) -> Result<(), PublishError> {
    let blob_parent = Path::new(bundle::BLOB_DIR)
        .parent()
        .unwrap_or_else(|| Path::new(bundle::BLOB_DIR));
    for rel in [
        blob_parent,
        Path::new(bundle::BLOB_DIR),
        Path::new(bundle::ROOT_DIR),
    ] {
        let path = to.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(PublishError::SymlinkInMirror { path });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(PublishError::Read { path, source }),
        }
    }
    Ok(())
}

/// Refuses a manifest older than the one the mirror at `to` holds, or another one
/// under the same epoch and serial.
fn check_not_behind(to: &Path, offered: &Manifest, bytes: &[u8]) -> Result<(), PublishError> {
    let held_path = to.join(bundle::MANIFEST);
    let Ok(held_bytes) = std::fs::read(&held_path) else {
        return Ok(());
    };
    let held = Manifest::parse(&held_bytes)?;
    let same = Sha256Sum::of(&held_bytes) == Sha256Sum::of(bytes);
    let behind = (offered.epoch, offered.serial) < (held.epoch, held.serial);
    let equivocal = (offered.epoch, offered.serial) == (held.epoch, held.serial) && !same;
    if behind || equivocal {
        return Err(PublishError::MirrorAhead {
            mirror: to.to_path_buf(),
            held_epoch: held.epoch,
            held_serial: held.serial,
            offered_epoch: offered.epoch,
            offered_serial: offered.serial,
        });
    }
    Ok(())
}

/// Copies every root version of the bundle (and its signatures) that the mirror lacks
/// or holds differently; the number of root versions.
fn copy_roots(from: &Path, to: &Path) -> Result<usize, PublishError> {
    let dir = from.join(bundle::ROOT_DIR);
    let list = std::fs::read_dir(&dir).map_err(|source| PublishError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut names = Vec::new();
    for e in list {
        let e = e.map_err(|source| PublishError::Read {
            path: dir.clone(),
            source,
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        if bundle::root_version_of(&name).is_some() {
            names.push(name);
        }
    }
    names.sort();
    for name in &names {
        for file in [name.clone(), format!("{name}{}", bundle::SIG_SUFFIX)] {
            let bytes = read_bytes(&dir.join(&file))?;
            let dest = to.join(bundle::ROOT_DIR).join(&file);
            if std::fs::read(&dest).ok().as_deref() != Some(bytes.as_slice()) {
                write_replace(&dest, &bytes, 0o644)?;
            }
        }
    }
    Ok(names.len())
}
