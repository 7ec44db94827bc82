//! The verifier's ratchet: trusted root, root updates, timestamp, manifest, blobs, and
//! whole bundles on disk.
//!
//! Every function is pure in the trusted state: it takes the current [`TrustState`] and
//! returns a new one, or an error and no new state, so a caller persists only what
//! passed every check. No function reads the clock; the caller passes a [`Clock`].
//!
//! **Invariant:** only [`verify_bundle`] constructs a [`VerifiedBundle`]; the agent
//! converges nothing else.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::bundle;
use crate::document::{Document, MAX_SIGNATURE_BYTES, SCHEMA, check_size, render};
use crate::error::VerifyError;
use crate::id::{DeploymentId, Sha256Sum};
use crate::key::Role;
use crate::manifest::{FileEntry, Manifest, MemberEntry};
use crate::root::Root;
use crate::sig::{SignatureFile, check_threshold};
use crate::time::Time;
use crate::timestamp::{ManifestRef, Timestamp};

/// Default tolerance for a manifest `created` in the future (clock skew between the
/// signing workstation and a member).
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Default tolerance for a timestamp `version` (its signing time, unix seconds) ahead
/// of the member's clock. The timestamp is signed online by the promoted policyd, a
/// cluster member whose clock is kept with the others', so the bound is tighter than
/// [`DEFAULT_MAX_SKEW`]. A version beyond it is refused
/// ([`VerifyError::TimestampInFuture`]): accepted, it would become the floor every
/// later timestamp must reach, and freeze the member until real time catches up.
pub const DEFAULT_TIMESTAMP_SKEW: Duration = Duration::from_secs(5 * 60);

/// Most root updates [`verify_bundle`] walks in one call.
pub const MAX_ROOT_UPDATES: u64 = 16;

/// The verifier's view of the time: `now`, how far in the future a manifest's
/// `created` may be, and how far ahead a timestamp's version may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    now: Time,
    max_skew: Duration,
    timestamp_skew: Duration,
}

impl Clock {
    /// `now` with the default skews ([`DEFAULT_MAX_SKEW`], [`DEFAULT_TIMESTAMP_SKEW`]).
    pub fn new(now: Time) -> Clock {
        Clock {
            now,
            max_skew: DEFAULT_MAX_SKEW,
            timestamp_skew: DEFAULT_TIMESTAMP_SKEW,
        }
    }

    /// The same time with another skew tolerance for a manifest's `created`.
    pub fn with_max_skew(self, max_skew: Duration) -> Clock {
        Clock { max_skew, ..self }
    }

    /// The same time with another skew tolerance for a timestamp's version.
    pub fn with_timestamp_skew(self, timestamp_skew: Duration) -> Clock {
        Clock {
            timestamp_skew,
            ..self
        }
    }

    /// The time checked against.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The highest timestamp version this clock accepts: now plus the timestamp skew.
    pub fn latest_timestamp_version(&self) -> u64 {
        self.now
            .unix()
            .saturating_add(self.timestamp_skew.as_secs())
    }
}

/// A root accepted as trusted, with its exact bytes and signature file (kept so it can
/// be persisted and re-checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRoot {
    bytes: Vec<u8>,
    signatures: Vec<u8>,
    root: Root,
}

impl TrustedRoot {
    /// Trusts a root obtained out of band (the first root of a member, or a root file an
    /// operator names). It must be signed by a threshold of its own root keys. Its expiry
    /// is not checked here: an expired anchor can still be updated; see [`check_root_fresh`].
    ///
    /// With `pin`, the SHA-256 of the bytes is compared before anything else is read.
    pub fn bootstrap(
        bytes: &[u8],
        signatures: &[u8],
        pin: Option<Sha256Sum>,
    ) -> Result<TrustedRoot, VerifyError> {
        check_size(Document::Root, bytes)?;
        if let Some(expected) = pin {
            let found = Sha256Sum::of(bytes);
            if found != expected {
                return Err(VerifyError::RootPin { expected, found });
            }
        }
        let sigs = SignatureFile::parse(Document::Root, signatures)?;
        // A self-signed anchor cannot be checked before parsing: its keys are inside it.
        let root = Root::parse(bytes)?;
        check_threshold(Document::Root, bytes, &sigs, &root.role_keys(Role::Root))
            .map_err(|e| new_root_threshold(e, root.version))?;
        Ok(TrustedRoot {
            bytes: bytes.to_vec(),
            signatures: signatures.to_vec(),
            root,
        })
    }

    /// The parsed root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The exact bytes of `root.toml`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The exact bytes of `root.toml.sig`.
    pub fn signatures(&self) -> &[u8] {
        &self.signatures
    }

    /// SHA-256 of the root's bytes (what `--root-sha256` pins).
    pub fn sha256(&self) -> Sha256Sum {
        Sha256Sum::of(&self.bytes)
    }
}

/// What a member trusts: the root, the manifest ratchet `(epoch, serial, sha256)` and
/// the newest timestamp version seen, with that timestamp's expiry (how long the member
/// counts as in fresh contact with the master). Persist it after every accepted step,
/// before using what was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustState {
    root: TrustedRoot,
    epoch: u64,
    serial: u64,
    manifest_sha256: Option<Sha256Sum>,
    timestamp_version: u64,
    timestamp_expires: Option<Time>,
}

impl TrustState {
    /// A fresh state anchored at `root`: no manifest trusted yet.
    pub fn new(root: TrustedRoot) -> TrustState {
        TrustState {
            epoch: root.root.policy_epoch,
            root,
            serial: 0,
            manifest_sha256: None,
            timestamp_version: 0,
            timestamp_expires: None,
        }
    }

    /// The trusted root.
    pub fn root(&self) -> &TrustedRoot {
        &self.root
    }

    /// The epoch of the trusted manifest (the root's policy epoch before any).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The serial of the trusted manifest (0 before any).
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// SHA-256 of the trusted manifest.
    pub fn manifest_sha256(&self) -> Option<Sha256Sum> {
        self.manifest_sha256
    }

    /// The newest timestamp version accepted (0 before any, or after a timestamp key
    /// rotation).
    pub fn timestamp_version(&self) -> u64 {
        self.timestamp_version
    }

    /// When the newest timestamp accepted expires (`None` before any, or in a state
    /// persisted before this was recorded): past it, with no newer one accepted, the
    /// member has had no fresh word from the master for longer than a timestamp lives.
    pub fn timestamp_expires(&self) -> Option<Time> {
        self.timestamp_expires
    }

    /// The timestamp version a new timestamp must reach: the trusted one, unless that
    /// is itself beyond `clock`'s timestamp skew (pinned by a far-future timestamp
    /// accepted before versions were bounded, or while this clock was wrong), in which
    /// case it is no floor at all and the next valid timestamp replaces it.
    pub fn timestamp_floor(&self, clock: &Clock) -> u64 {
        if self.timestamp_version > clock.latest_timestamp_version() {
            0
        } else {
            self.timestamp_version
        }
    }

    /// The state as TOML, for the agent to persist (atomically, where policy content
    /// cannot write).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        render(&StateFile {
            schema: SCHEMA,
            kind: STATE_KIND.to_string(),
            epoch: self.epoch,
            serial: self.serial,
            manifest_sha256: self.manifest_sha256,
            timestamp_version: self.timestamp_version,
            timestamp_expires: self.timestamp_expires,
            root: text(&self.root.bytes),
            root_signatures: text(&self.root.signatures),
        })
    }

    /// Reads a persisted state. The root inside is checked again against its own
    /// signatures, so a corrupted state file is refused rather than trusted.
    pub fn from_toml(text: &str) -> Result<TrustState, VerifyError> {
        let f: StateFile =
            toml::from_str(text).map_err(|source| VerifyError::TrustState { source })?;
        if f.schema != SCHEMA || f.kind != STATE_KIND {
            return Err(VerifyError::TrustStateKind {
                schema: f.schema,
                kind: f.kind,
            });
        }
        let root = TrustedRoot::bootstrap(f.root.as_bytes(), f.root_signatures.as_bytes(), None)?;
        Ok(TrustState {
            root,
            epoch: f.epoch,
            serial: f.serial,
            manifest_sha256: f.manifest_sha256,
            timestamp_version: f.timestamp_version,
            timestamp_expires: f.timestamp_expires,
        })
    }

    fn deployment(&self) -> DeploymentId {
        self.root.root.deployment
    }
}

const STATE_KIND: &str = "trust-state";

/// The persisted form of [`TrustState`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    schema: u32,
    kind: String,
    epoch: u64,
    serial: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest_sha256: Option<Sha256Sum>,
    timestamp_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp_expires: Option<Time>,
    root: String,
    root_signatures: String,
}

/// Accepts `bytes` as the next root: exactly version N+1 of the same deployment, signed
/// by a threshold of the trusted root's root keys **and** of its own, not lowering the
/// policy epoch. If the timestamp keys changed, the timestamp ratchet restarts (a leaked
/// timestamp key may have pushed it arbitrarily far). Expiry is checked once the walk
/// is over ([`check_root_fresh`]).
pub fn update_root(
    state: &TrustState,
    bytes: &[u8],
    signatures: &[u8],
) -> Result<TrustState, VerifyError> {
    check_size(Document::Root, bytes)?;
    let sigs = SignatureFile::parse(Document::Root, signatures)?;
    let old = &state.root.root;
    // The trusted keys speak first, over the raw bytes, before anything is parsed.
    check_threshold(Document::Root, bytes, &sigs, &old.role_keys(Role::Root)).map_err(
        |e| match e {
            VerifyError::Threshold {
                valid,
                threshold,
                ignored,
                ..
            } => VerifyError::OldRootThreshold {
                version: old.version + 1,
                trusted_version: old.version,
                valid,
                threshold,
                ignored,
            },
            other => other,
        },
    )?;
    let new = Root::parse(bytes)?;
    check_threshold(Document::Root, bytes, &sigs, &new.role_keys(Role::Root))
        .map_err(|e| new_root_threshold(e, new.version))?;
    if new.deployment != old.deployment {
        return Err(VerifyError::Deployment {
            document: Document::Root,
            found: new.deployment,
            expected: old.deployment,
        });
    }
    if Some(new.version) != old.version.checked_add(1) {
        return Err(VerifyError::RootVersion {
            expected: old.version.saturating_add(1),
            found: new.version,
        });
    }
    if new.policy_epoch < old.policy_epoch {
        return Err(VerifyError::RootEpoch {
            version: new.version,
            old: old.policy_epoch,
            new: new.policy_epoch,
        });
    }
    let timestamp_keys_changed =
        role_key_set(old, Role::Timestamp) != role_key_set(&new, Role::Timestamp);
    let mut next = state.clone();
    next.root = TrustedRoot {
        bytes: bytes.to_vec(),
        signatures: signatures.to_vec(),
        root: new,
    };
    if timestamp_keys_changed {
        next.timestamp_version = 0;
    }
    Ok(next)
}

/// Refuses a trusted root that has expired (after a chain of updates, the last root
/// must be current).
pub fn check_root_fresh(state: &TrustState, clock: &Clock) -> Result<(), VerifyError> {
    let expires = state.root.root.expires;
    if expires <= clock.now {
        return Err(VerifyError::Expired {
            document: Document::Root,
            expires,
            now: clock.now,
        });
    }
    Ok(())
}

/// The manifest a verified timestamp names, to be checked by [`check_manifest`]. Only
/// [`check_timestamp`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedManifest {
    manifest: ManifestRef,
    timestamp_version: u64,
    timestamp_expires: Time,
}

impl ExpectedManifest {
    /// The manifest's epoch, serial, hash and size.
    pub fn manifest(&self) -> &ManifestRef {
        &self.manifest
    }

    /// The version of the timestamp that named it.
    pub fn timestamp_version(&self) -> u64 {
        self.timestamp_version
    }

    /// When the timestamp that named it expires.
    pub fn timestamp_expires(&self) -> Time {
        self.timestamp_expires
    }
}

/// What a verified timestamp means for the member.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimestampOutcome {
    /// Older than the trusted timestamp (the other half of a split brain, or a lagging
    /// clock) and naming no newer manifest: ignore it and keep the state. Not an alarm
    /// by itself (authority lies in the serial), but no fresh word from the master
    /// either: the member goes stale once the trusted timestamp expires.
    Ignored {
        /// The version offered.
        offered: u64,
        /// The version trusted.
        trusted: u64,
    },
    /// Names the manifest already trusted; persist `state` (it records the newer
    /// timestamp version) and there is nothing to fetch.
    Current {
        /// The state with the new timestamp version.
        state: Box<TrustState>,
        /// The manifest it names, to re-check a cached bundle against.
        expected: ExpectedManifest,
    },
    /// Names a newer manifest: fetch at most its size and check it with
    /// [`check_manifest`]. The state does not change until the manifest is accepted.
    Newer(ExpectedManifest),
}

/// Checks a timestamp (SECURITY_MODEL §3.4 step 4): size, timestamp-role threshold over
/// the raw bytes, then schema, kind, deployment and expiry, a version no more than the
/// clock's timestamp skew ahead of now ([`VerifyError::TimestampInFuture`]); then the
/// ratchets.
///
/// A timestamp older than the trusted one ([`TrustState::timestamp_floor`]) is
/// [`TimestampOutcome::Ignored`], unless it names a newer manifest: that manifest is
/// still worth fetching, since its signatures and the serial ratchet are what protect
/// the member (the older timestamp does not lower the trusted version). Otherwise a
/// lower manifest `(epoch, serial)` than trusted is a rollback error; the same serial
/// with another hash is an equivocation error.
pub fn check_timestamp(
    state: &TrustState,
    bytes: &[u8],
    signatures: &[u8],
    clock: &Clock,
) -> Result<TimestampOutcome, VerifyError> {
    check_size(Document::Timestamp, bytes)?;
    let sigs = SignatureFile::parse(Document::Timestamp, signatures)?;
    let root = &state.root.root;
    check_threshold(
        Document::Timestamp,
        bytes,
        &sigs,
        &root.role_keys(Role::Timestamp),
    )?;
    let ts = Timestamp::parse(bytes)?;
    check_deployment(Document::Timestamp, ts.deployment, state)?;
    if ts.expires <= clock.now {
        return Err(VerifyError::Expired {
            document: Document::Timestamp,
            expires: ts.expires,
            now: clock.now,
        });
    }
    if ts.version > clock.latest_timestamp_version() {
        return Err(VerifyError::TimestampInFuture {
            version: ts.version,
            now: clock.now,
            now_unix: clock.now.unix(),
            max_skew_secs: clock.timestamp_skew.as_secs(),
        });
    }
    let m = ts.manifest;
    let expected = ExpectedManifest {
        manifest: m,
        timestamp_version: ts.version,
        timestamp_expires: ts.expires,
    };
    let floor = state.timestamp_floor(clock);
    if ts.version < floor {
        return Ok(match compare(state, m.epoch, m.serial, m.sha256) {
            Ok(Ratchet::Newer) => TimestampOutcome::Newer(expected),
            _ => TimestampOutcome::Ignored {
                offered: ts.version,
                trusted: floor,
            },
        });
    }
    match compare(state, m.epoch, m.serial, m.sha256)? {
        Ratchet::Same => {
            let mut next = state.clone();
            next.timestamp_version = ts.version;
            next.timestamp_expires = Some(ts.expires);
            Ok(TimestampOutcome::Current {
                state: Box::new(next),
                expected,
            })
        }
        Ratchet::Newer => Ok(TimestampOutcome::Newer(expected)),
    }
}

/// Checks a manifest (SECURITY_MODEL §3.4 step 5): size and hash against the timestamp
/// when one named it, policy-role threshold over the raw bytes, then parse (safe unique
/// paths, unique members), deployment, `epoch == root.policy_epoch`, the serial ratchet,
/// root version, expiry and `created` against the clock.
///
/// Returns the new state (to persist once the blobs are in place) and the manifest. The
/// manifest already trusted (same serial, same hash) is accepted again, so a cached
/// bundle can be re-verified.
pub fn check_manifest(
    state: &TrustState,
    bytes: &[u8],
    signatures: &[u8],
    expected: Option<&ExpectedManifest>,
    clock: &Clock,
) -> Result<(TrustState, Manifest), VerifyError> {
    let mut expired = Vec::new();
    check_manifest_known(
        state,
        bytes,
        signatures,
        expected,
        clock,
        None,
        Expiry::Enforce,
        &mut expired,
    )
}

/// Whether an expired document fails verification or is only noted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// An expired root, timestamp or manifest is an error.
    Enforce,
    /// Every check runs but expiry; each expiry is noted instead. The trusted
    /// manifest (by its hash) is not judged against the clock's skew either.
    Note,
}

impl Expiry {
    /// `Ok` for an expired document noted in `notes`; the error when expiry is enforced.
    fn expired(self, e: VerifyError, notes: &mut Vec<VerifyError>) -> Result<(), VerifyError> {
        match self {
            Expiry::Enforce => Err(e),
            Expiry::Note => {
                notes.push(e);
                Ok(())
            }
        }
    }
}

/// [`check_manifest`], taking the parse from `known` when `bytes` hash to its hash:
/// the same bytes, parsed and checked moments ago (every other check runs again).
/// With [`Expiry::Note`], an expired manifest is pushed to `expired` instead.
#[expect(
    clippy::too_many_arguments,
    reason = "one internal step function behind the public ones"
)]
fn check_manifest_known(
    state: &TrustState,
    bytes: &[u8],
    signatures: &[u8],
    expected: Option<&ExpectedManifest>,
    clock: &Clock,
    known: Option<Known>,
    expiry: Expiry,
    expired: &mut Vec<VerifyError>,
) -> Result<(TrustState, Manifest), VerifyError> {
    check_size(Document::Manifest, bytes)?;
    let sha256 = if let Some(e) = expected {
        let found = bytes.len() as u64;
        if found != e.manifest.size {
            return Err(VerifyError::ManifestSize {
                expected: e.manifest.size,
                found,
            });
        }
        let sha = Sha256Sum::of(bytes);
        if sha != e.manifest.sha256 {
            return Err(VerifyError::ManifestHash {
                expected: e.manifest.sha256,
                found: sha,
            });
        }
        sha
    } else {
        Sha256Sum::of(bytes)
    };
    let sigs = SignatureFile::parse(Document::Manifest, signatures)?;
    let root = &state.root.root;
    check_threshold(
        Document::Manifest,
        bytes,
        &sigs,
        &root.role_keys(Role::Policy),
    )?;
    let m = match known {
        Some(Known {
            sha256: k,
            manifest,
        }) if k == sha256 => manifest,
        _ => Manifest::parse(bytes)?,
    };
    check_deployment(Document::Manifest, m.deployment, state)?;
    if m.epoch != root.policy_epoch {
        return Err(VerifyError::Epoch {
            serial: m.serial,
            epoch: m.epoch,
            root_epoch: root.policy_epoch,
        });
    }
    if let Some(e) = expected
        && (m.epoch, m.serial) != (e.manifest.epoch, e.manifest.serial)
    {
        return Err(VerifyError::ManifestNotNamed {
            epoch: m.epoch,
            serial: m.serial,
            expected_epoch: e.manifest.epoch,
            expected_serial: e.manifest.serial,
        });
    }
    let ratchet = compare(state, m.epoch, m.serial, sha256)?;
    if m.root_version > root.version {
        return Err(VerifyError::ManifestRootVersion {
            serial: m.serial,
            manifest: m.root_version,
            trusted: root.version,
        });
    }
    if m.expires <= clock.now {
        expiry.expired(
            VerifyError::Expired {
                document: Document::Manifest,
                expires: m.expires,
                now: clock.now,
            },
            expired,
        )?;
    }
    // The manifest the ratchet accepted, by its exact hash, when this clock may have
    // been right: a clock stepped back since (an RTC behind at boot) must not take a
    // member's cached policy away. Any other manifest is judged against the clock.
    let accepted = expiry == Expiry::Note && matches!(ratchet, Ratchet::Same);
    let latest_created = clock.now.checked_add(clock.max_skew).unwrap_or(Time::MAX);
    if !accepted && m.created > latest_created {
        return Err(VerifyError::CreatedInFuture {
            serial: m.serial,
            created: m.created,
            now: clock.now,
            max_skew_secs: clock.max_skew.as_secs(),
        });
    }
    let mut next = state.clone();
    next.epoch = m.epoch;
    next.serial = m.serial;
    next.manifest_sha256 = Some(sha256);
    if let Some(e) = expected {
        // A version pinned beyond the clock's skew is no floor: the timestamp that
        // named this manifest replaces it. An older timestamp naming a newer manifest
        // leaves the trusted version alone.
        let floor = state.timestamp_floor(clock);
        if e.timestamp_version >= floor {
            next.timestamp_version = e.timestamp_version;
            next.timestamp_expires = Some(e.timestamp_expires);
        } else {
            next.timestamp_version = floor;
            next.timestamp_expires = next.timestamp_expires.max(Some(e.timestamp_expires));
        }
    }
    Ok((next, m))
}

/// Checks a blob held in memory against its manifest entry: size first, then hash.
pub fn check_blob(entry: &FileEntry, bytes: &[u8]) -> Result<(), VerifyError> {
    let found = bytes.len() as u64;
    if found > entry.size {
        return Err(VerifyError::BlobTooLarge {
            path: entry.path.clone(),
            declared: entry.size,
        });
    }
    if found < entry.size {
        return Err(VerifyError::BlobTooSmall {
            path: entry.path.clone(),
            declared: entry.size,
            found,
        });
    }
    check_hash(entry, Sha256Sum::of(bytes))
}

/// Streams a blob from `reader` into `sink`, hashing as it goes and reading at most one
/// byte past the declared size, so an endless or oversized blob is refused without
/// reading it all. The sink has received unverified bytes when this fails: write into a
/// staging file and discard it on error.
pub fn check_blob_stream(
    entry: &FileEntry,
    reader: impl Read,
    mut sink: impl Write,
) -> Result<(), VerifyError> {
    let io_err = |source| VerifyError::BlobIo {
        path: entry.path.clone(),
        source,
    };
    let mut limited = reader.take(entry.size.saturating_add(1));
    let mut hasher = sha2::Sha256::new();
    // Sized to the blob (plus the byte that tells an over-long one): most blobs are
    // small, and a full sync streams ten thousand of them.
    let room = usize::try_from(entry.size.saturating_add(1)).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; room.min(64 * 1024)];
    let mut total: u64 = 0;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        total += n as u64;
        if total > entry.size {
            return Err(VerifyError::BlobTooLarge {
                path: entry.path.clone(),
                declared: entry.size,
            });
        }
        hasher.update(&buf[..n]);
        sink.write_all(&buf[..n]).map_err(io_err)?;
    }
    if total < entry.size {
        return Err(VerifyError::BlobTooSmall {
            path: entry.path.clone(),
            declared: entry.size,
            found: total,
        });
    }
    check_hash(entry, Sha256Sum::from_bytes(hasher.finalize().into()))
}

/// A bundle whose roots, timestamp (if any), manifest and every blob verified against a
/// trusted state. Only [`verify_bundle`] makes one.
#[derive(Debug)]
pub struct VerifiedBundle {
    dir: PathBuf,
    state: TrustState,
    manifest: Manifest,
    timestamp: Option<Timestamp>,
    root_updates: Vec<u64>,
}

impl VerifiedBundle {
    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trust state after this bundle: persist it before converging.
    pub fn state(&self) -> &TrustState {
        &self.state
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Every file of the policy tree.
    pub fn files(&self) -> &[FileEntry] {
        &self.manifest.files
    }

    /// The member inventory.
    pub fn members(&self) -> &[MemberEntry] {
        &self.manifest.members
    }

    /// The timestamp, if the bundle had one that was used.
    pub fn timestamp(&self) -> Option<&Timestamp> {
        self.timestamp.as_ref()
    }

    /// Root versions accepted while verifying, in order.
    pub fn root_updates(&self) -> &[u64] {
        &self.root_updates
    }

    /// Where the blob of `entry` is stored.
    pub fn blob_path(&self, entry: &FileEntry) -> PathBuf {
        bundle::blob_path(&self.dir, &entry.sha256)
    }

    /// Reads the file at manifest path `path`, checking its blob again (the directory
    /// may have changed since verification). `None` if the manifest has no such path.
    pub fn read_file(&self, path: &str) -> Option<Result<Vec<u8>, VerifyError>> {
        let entry = self.manifest.file(path)?;
        Some(read_blob(&self.dir, entry))
    }

    /// Gives up the bundle, keeping the state to persist.
    pub fn into_state(self) -> TrustState {
        self.state
    }
}

/// Verifies a bundle directory against `state`: walks `root/<N>.root.toml` from the
/// trusted version upwards (at most [`MAX_ROOT_UPDATES`]), requires the final root to
/// be unexpired, checks `timestamp.toml` if present, then the manifest, then every blob.
pub fn verify_bundle(
    state: &TrustState,
    dir: &Path,
    clock: &Clock,
) -> Result<VerifiedBundle, VerifyError> {
    verify_bundle_with(state, dir, clock, Blobs::Hash, None)
}

/// [`verify_bundle`] for a bundle whose blobs were each checked against their hash
/// when they were stored (a member's cache, outside the managed root): roots,
/// timestamp and manifest are verified as there, but the blobs are not opened.
/// Whoever uses a blob's bytes reads them through [`read_blob_into`] or
/// [`VerifiedBundle::read_file`], which refuse a missing blob and check its size and
/// hash as they read, so no unverified byte is ever used.
pub fn verify_bundle_stored(
    state: &TrustState,
    dir: &Path,
    clock: &Clock,
) -> Result<VerifiedBundle, VerifyError> {
    verify_bundle_with(state, dir, clock, Blobs::Stored, None)
}

/// How [`verify_bundle_with`] checks blobs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Blobs {
    /// Read and hash every blob.
    Hash,
    /// Not opened (each is checked when it is read).
    Stored,
}

/// A manifest already parsed and checked, with the hash of the bytes it came from.
#[derive(Debug)]
pub struct Known {
    /// The SHA-256 of the manifest's bytes.
    pub sha256: Sha256Sum,
    /// What [`Manifest::parse`] made of them.
    pub manifest: Manifest,
}

/// [`verify_bundle_stored`] for a bundle just staged from a manifest that
/// [`check_manifest`] accepted: every document is read back and checked again, but a
/// manifest whose bytes still hash to `known`'s is not parsed a second time.
pub fn verify_bundle_staged(
    state: &TrustState,
    dir: &Path,
    clock: &Clock,
    known: Known,
) -> Result<VerifiedBundle, VerifyError> {
    verify_bundle_with(state, dir, clock, Blobs::Stored, Some(known))
}

/// A member's cached bundle that passed every check of [`verify_bundle_stored`] but
/// expiry: its manifest, and what had expired. Not a [`VerifiedBundle`]: nothing is
/// committed from it, and the ratchet does not move.
#[derive(Debug)]
pub struct CachedBundle {
    manifest: Manifest,
    expired: Vec<VerifyError>,
}

impl CachedBundle {
    /// The manifest: its signatures, deployment, epoch, serial ratchet (the trusted
    /// serial's hash, or a newer serial), root version and, for a newer serial,
    /// `created` all checked.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Gives up the bundle, keeping the manifest.
    pub fn into_manifest(self) -> Manifest {
        self.manifest
    }

    /// The [`VerifyError::Expired`] of each document that has expired (the final root,
    /// the manifest); empty when the bundle is current.
    pub fn expired(&self) -> &[VerifyError] {
        &self.expired
    }
}

/// Re-verifies a member's cached bundle as [`verify_bundle_stored`] does, with every
/// check but expiry: the roots' signatures and the walk, the manifest's signatures
/// over its exact bytes, deployment, epoch, the serial ratchet (the trusted serial
/// only with the trusted hash), root version and, for a serial newer than the
/// trusted one, `created`. An expired root or manifest is reported in
/// [`CachedBundle::expired`] instead of failing, so that a member with no master keeps
/// enforcing its last verified policy, and knows it; an edited manifest still fails,
/// expired or not. The trusted manifest's `created` is not held against the clock
/// again: it was checked when the manifest was accepted, and a clock stepped back
/// since (an RTC behind at boot) must not take the policy away from `event`.
pub fn verify_cached(
    state: &TrustState,
    dir: &Path,
    clock: &Clock,
) -> Result<CachedBundle, VerifyError> {
    let mut expired = Vec::new();
    let bundle = verify_bundle_checked(
        state,
        dir,
        clock,
        Blobs::Stored,
        None,
        Expiry::Note,
        &mut expired,
    )?;
    Ok(CachedBundle {
        manifest: bundle.manifest,
        expired,
    })
}

fn verify_bundle_with(
    state: &TrustState,
    dir: &Path,
    clock: &Clock,
    blobs: Blobs,
    known: Option<Known>,
) -> Result<VerifiedBundle, VerifyError> {
    let mut expired = Vec::new();
    verify_bundle_checked(
        state,
        dir,
        clock,
        blobs,
        known,
        Expiry::Enforce,
        &mut expired,
    )
}

fn verify_bundle_checked(
    state: &TrustState,
    dir: &Path,
    clock: &Clock,
    blobs: Blobs,
    known: Option<Known>,
    expiry: Expiry,
    expired: &mut Vec<VerifyError>,
) -> Result<VerifiedBundle, VerifyError> {
    let mut state = state.clone();
    let mut root_updates = Vec::new();
    for _ in 0..MAX_ROOT_UPDATES {
        let next = state.root.root.version.saturating_add(1);
        let path = bundle::root_path(dir, next);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(source) => return Err(VerifyError::Read { path, source }),
            Ok(_) => {}
        }
        let bytes = read_capped(&path, Document::Root)?;
        let sigs = read_signatures(&path, Document::Root)?;
        state = update_root(&state, &bytes, &sigs)?;
        root_updates.push(next);
    }
    if let Err(e) = check_root_fresh(&state, clock) {
        expiry.expired(e, expired)?;
    }

    let ts_path = dir.join(bundle::TIMESTAMP);
    let mut timestamp = None;
    let mut expected = None;
    // A cached bundle keeps no timestamp (it expires within hours): only a bundle
    // being verified for use has one to check.
    if ts_path.exists() && expiry == Expiry::Enforce {
        let bytes = read_capped(&ts_path, Document::Timestamp)?;
        let sigs = read_signatures(&ts_path, Document::Timestamp)?;
        match check_timestamp(&state, &bytes, &sigs, clock)? {
            TimestampOutcome::Ignored { .. } => {}
            TimestampOutcome::Current {
                state: s,
                expected: e,
            } => {
                state = *s;
                expected = Some(e);
                timestamp = Some(Timestamp::parse(&bytes)?);
            }
            TimestampOutcome::Newer(e) => {
                expected = Some(e);
                timestamp = Some(Timestamp::parse(&bytes)?);
            }
        }
    }

    let m_path = dir.join(bundle::MANIFEST);
    let bytes = read_capped(&m_path, Document::Manifest)?;
    let sigs = read_signatures(&m_path, Document::Manifest)?;
    let (state, manifest) = check_manifest_known(
        &state,
        &bytes,
        &sigs,
        expected.as_ref(),
        clock,
        known,
        expiry,
        expired,
    )?;

    let mut checked = BTreeSet::new();
    for entry in &manifest.files {
        if blobs == Blobs::Hash && checked.insert(entry.sha256) {
            read_blob_into(dir, entry, io::sink())?;
        }
    }
    Ok(VerifiedBundle {
        dir: dir.to_path_buf(),
        state,
        manifest,
        timestamp,
        root_updates,
    })
}

/// Where the ratchet stands relative to an offered manifest.
enum Ratchet {
    /// The very manifest trusted.
    Same,
    /// A newer one.
    Newer,
}

fn compare(
    state: &TrustState,
    epoch: u64,
    serial: u64,
    sha256: Sha256Sum,
) -> Result<Ratchet, VerifyError> {
    let offered = (epoch, serial);
    let trusted = (state.epoch, state.serial);
    if offered > trusted {
        return Ok(Ratchet::Newer);
    }
    match state.manifest_sha256 {
        Some(h) if offered == trusted && h == sha256 => Ok(Ratchet::Same),
        Some(h) if offered == trusted => Err(VerifyError::Equivocation {
            epoch,
            serial,
            trusted: h,
            offered: sha256,
        }),
        _ => Err(VerifyError::Rollback {
            epoch,
            serial,
            trusted_epoch: state.epoch,
            trusted_serial: state.serial,
        }),
    }
}

fn check_deployment(
    document: Document,
    found: DeploymentId,
    state: &TrustState,
) -> Result<(), VerifyError> {
    let expected = state.deployment();
    if found != expected {
        return Err(VerifyError::Deployment {
            document,
            found,
            expected,
        });
    }
    Ok(())
}

fn check_hash(entry: &FileEntry, found: Sha256Sum) -> Result<(), VerifyError> {
    if found != entry.sha256 {
        return Err(VerifyError::BlobHash {
            path: entry.path.clone(),
            declared: entry.sha256,
            found,
        });
    }
    Ok(())
}

fn new_root_threshold(e: VerifyError, version: u64) -> VerifyError {
    match e {
        VerifyError::Threshold {
            valid,
            threshold,
            ignored,
            ..
        } => VerifyError::NewRootThreshold {
            version,
            valid,
            threshold,
            ignored,
        },
        other => other,
    }
}

fn role_key_set(root: &Root, role: Role) -> BTreeSet<[u8; 32]> {
    root.role_keys(role)
        .keys
        .iter()
        .map(|(_, k)| k.to_bytes())
        .collect()
}

/// Reads a document, refusing one over its cap without reading it all.
fn read_capped(path: &Path, document: Document) -> Result<Vec<u8>, VerifyError> {
    read_limited(path, document.max_bytes()).map_err(|e| match e {
        Limited::Io(source) => VerifyError::Read {
            path: path.to_path_buf(),
            source,
        },
        Limited::Over(size) => VerifyError::TooLarge {
            document,
            size,
            max: document.max_bytes(),
        },
    })
}

/// Reads `X.sig` beside `path`.
fn read_signatures(path: &Path, document: Document) -> Result<Vec<u8>, VerifyError> {
    let sig_path = bundle::sig_path(path);
    read_limited(&sig_path, MAX_SIGNATURE_BYTES).map_err(|e| match e {
        Limited::Io(source) => VerifyError::Read {
            path: sig_path.clone(),
            source,
        },
        Limited::Over(size) => VerifyError::SignatureFile {
            document,
            problem: crate::error::SigFileProblem::TooLarge {
                size,
                max: MAX_SIGNATURE_BYTES,
            },
        },
    })
}

enum Limited {
    Io(io::Error),
    /// At least this many bytes (more than the cap).
    Over(u64),
}

fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, Limited> {
    let file = File::open(path).map_err(Limited::Io)?;
    let len = file.metadata().map_err(Limited::Io)?.len();
    if len > max {
        return Err(Limited::Over(len));
    }
    let mut out = Vec::with_capacity(len as usize);
    file.take(max + 1)
        .read_to_end(&mut out)
        .map_err(Limited::Io)?;
    if out.len() as u64 > max {
        return Err(Limited::Over(out.len() as u64));
    }
    Ok(out)
}

fn read_blob(dir: &Path, entry: &FileEntry) -> Result<Vec<u8>, VerifyError> {
    let mut out = Vec::new();
    read_blob_into(dir, entry, &mut out)?;
    Ok(out)
}

/// Reads the blob of `entry` from the bundle at `dir` into `sink` ([`open_blob`]); the
/// content must then match the declared size and hash.
pub fn read_blob_into(dir: &Path, entry: &FileEntry, sink: impl Write) -> Result<(), VerifyError> {
    let file = open_blob(dir, entry)?;
    check_blob_stream(entry, file, sink)
}

/// Opens the blob of `entry` in the bundle or store at `dir`, refusing a missing blob,
/// one that is not a regular file, and one larger than declared before a byte is
/// hashed. The blob is opened without following a symlink or blocking on a FIFO, and
/// judged by what was opened (one path lookup, and nothing can be swapped in between a
/// check and the open). The caller hashes what it reads.
pub fn open_blob(dir: &Path, entry: &FileEntry) -> Result<std::fs::File, VerifyError> {
    let location = bundle::blob_path(dir, &entry.sha256);
    let not_file = || VerifyError::BlobNotFile {
        path: entry.path.clone(),
        sha256: entry.sha256,
    };
    let file = crate::fsio::open_read_no_follow(&location).map_err(|source| {
        match source.raw_os_error() {
            // Not there, or a component of the store's path is not a directory.
            _ if matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
            {
                VerifyError::MissingBlob {
                    path: entry.path.clone(),
                    sha256: entry.sha256,
                    source,
                }
            }
            // A symlink (O_NOFOLLOW) or a socket.
            _ if crate::fsio::is_symlink_refusal(&source) => not_file(),
            Some(code) if code == nix::errno::Errno::ENXIO as i32 => not_file(),
            _ => VerifyError::Read {
                path: location.clone(),
                source,
            },
        }
    })?;
    let meta = file.metadata().map_err(|source| VerifyError::Read {
        path: location.clone(),
        source,
    })?;
    if !meta.is_file() {
        return Err(not_file());
    }
    // The size is refused before a byte is hashed; the stream check repeats it in case
    // the file grows while being read.
    if meta.len() > entry.size {
        return Err(VerifyError::BlobTooLarge {
            path: entry.path.clone(),
            declared: entry.size,
        });
    }
    Ok(file)
}
