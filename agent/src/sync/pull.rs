//! One conversation with the master, as named steps in the protocol's order:
//! `pull` = `connect` → `update_roots` → `check_timestamp` → `stage_manifest` →
//! `missing_blobs` → `store_blobs` → `flush_staging` → whole-bundle verification.
//!
//! When the master fails (unreachable, or refused on trust), the same conversation is
//! held with each configured mirror in turn (`agent.toml` `mirrors`), with the same
//! checks: only the transport differs (plain HTTPS against the administrator's CA, not
//! the pinned key). The first source that yields a verified answer wins, and the
//! failures before it become warnings; when every source fails, a trust refusal by any
//! of them makes the whole a trust refusal (exit 4), naming each source. A mirror whose
//! timestamp is older than the trusted one and names an older serial than the bundle in
//! force is refused as a rollback (the master's older timestamp is only ignored: a newly
//! promoted master may lag by a timestamp, a mirror that lags by a serial is stale).
//!
//! Everything fetched lands in `STATE/bundles/.staging` and the shared blob store,
//! hashed against a signed document already verified, and is verified again as a
//! whole before `pull` returns it; committing it is the caller's (`run`, under the
//! run lock). No run lock is held here: the caller holds `sync.lock`.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use tenet_keys::document::{Document, MAX_SIGNATURE_BYTES};
use tenet_keys::{
    Clock, ExpectedManifest, FileEntry, Manifest, SecretKey, TimestampOutcome, TrustState,
    VerifiedBundle, VerifyError, bundle, check_blob_stream, check_manifest, check_root_fresh,
    update_root,
};

use crate::config::{Config, MirrorConfig};
use crate::statefs::{self, create_file, flush_written, write_file};
use crate::sync::cache::Cache;
use crate::sync::fetch::{self, FetchError, Master, Resource};
use crate::sync::store::{PACK_MIN, PackWriter};

/// Most root updates walked in one run.
pub const MAX_ROOT_UPDATES: u64 = 16;

/// Whether a bundle is in force when the master is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InForce {
    /// A bundle is cached: nothing newer is an answer.
    Cached,
    /// Nothing is cached: the master must offer a bundle.
    Nothing,
}

/// What the master's offer came to.
pub(crate) enum Synced {
    /// A newer bundle, verified in staging.
    Fetched(Box<VerifiedBundle>),
    /// Nothing newer; this state (newer roots or timestamp version) is to be persisted.
    /// `fresh`: a timestamp was accepted (not ignored as older than the trusted one).
    Current { state: Box<TrustState>, fresh: bool },
}

/// Why a conversation with the master ended without a verified offer.
pub(crate) enum SyncError {
    /// No master answered, or it answered nonsense: fall back on the cache.
    Unreachable(String),
    /// A trust check failed.
    Trust(String),
    /// A local failure.
    Local(String),
}

impl From<FetchError> for SyncError {
    fn from(e: FetchError) -> SyncError {
        match e {
            FetchError::NotPinned { .. } => SyncError::Trust(e.to_string()),
            FetchError::Setup(m) => SyncError::Local(m),
            other => SyncError::Unreachable(other.to_string()),
        }
    }
}

impl From<VerifyError> for SyncError {
    fn from(e: VerifyError) -> SyncError {
        SyncError::Trust(tenet_keys::error_chain(&e))
    }
}

fn local(what: &str) -> impl Fn(std::io::Error) -> SyncError + '_ {
    move |e| SyncError::Local(format!("{what}: {e}"))
}

/// Talks to the master, then to each mirror in turn until one answers with a verified
/// offer (see the module docs); `warnings` gets the failures of the sources tried
/// before the one that answered. All of it ends within `deadline`.
pub(crate) fn pull(
    config: &Config,
    state: &TrustState,
    clock: &Clock,
    cache: &Cache,
    in_force: InForce,
    deadline: std::time::Duration,
    warnings: &mut Vec<String>,
) -> Result<Synced, SyncError> {
    let t0 = std::time::Instant::now();
    let mut failures: Vec<(String, SyncError)> = Vec::new();
    let sources = std::iter::once(None).chain(config.mirrors.iter().map(Some));
    for mirror in sources {
        let left = deadline.saturating_sub(t0.elapsed());
        let (name, outcome) = match mirror {
            None => (
                "master".to_string(),
                connect(config, state, left)
                    .and_then(|m| pull_from(config, m, state, clock, cache, in_force)),
            ),
            Some(mirror) => (
                format!("mirror {}", mirror.url),
                connect_mirror(config, mirror, left)
                    .and_then(|m| pull_from(config, m, state, clock, cache, in_force)),
            ),
        };
        match outcome {
            Ok(synced) => {
                for (source, e) in &failures {
                    warnings.push(format!("{source}: {}", e.message()));
                }
                if mirror.is_some() {
                    warnings.push(format!("answered by {name}"));
                }
                return Ok(synced);
            }
            Err(SyncError::Local(m)) => return Err(SyncError::Local(m)),
            Err(e) => {
                tracing::debug!(source = %name, error = e.message(), "source failed");
                failures.push((name, e));
            }
        }
    }
    Err(combine(failures))
}

/// One error for every source that failed: the only one as it is; several as a trust
/// refusal if any refused on trust, else as unreachable, naming each.
fn combine(mut failures: Vec<(String, SyncError)>) -> SyncError {
    if failures.len() <= 1 {
        return failures.pop().map_or_else(
            || SyncError::Unreachable("no master or mirror configured".to_string()),
            |(_, e)| e,
        );
    }
    let trust = failures
        .iter()
        .any(|(_, e)| matches!(e, SyncError::Trust(_)));
    let text = failures
        .iter()
        .map(|(source, e)| format!("{source}: {}", e.message()))
        .collect::<Vec<_>>()
        .join("; ");
    if trust {
        SyncError::Trust(text)
    } else {
        SyncError::Unreachable(text)
    }
}

impl SyncError {
    /// The message, without its kind.
    fn message(&self) -> &str {
        match self {
            SyncError::Unreachable(m) | SyncError::Trust(m) | SyncError::Local(m) => m,
        }
    }
}

/// The conversation with one source (the master or a mirror), from after the
/// connection to the verified staged bundle.
fn pull_from(
    config: &Config,
    mut master: Master,
    state: &TrustState,
    clock: &Clock,
    cache: &Cache,
    in_force: InForce,
) -> Result<Synced, SyncError> {
    let t0 = std::time::Instant::now();
    tracing::debug!(source = master.name(), "connected");
    let staging = Staging {
        dir: cache.fresh_staging().map_err(local("staging"))?,
    };
    let st = update_roots(&mut master, state, clock, &staging)?;
    let (st, expected) = match check_timestamp(&mut master, st, clock, cache, in_force, &staging)? {
        Offer::Nothing(synced) => return Ok(synced),
        Offer::Newer { state, expected } => (state, expected),
    };
    let (manifest, m) = stage_manifest(&mut master, &st, &expected, clock, &staging)?;
    tracing::debug!(
        elapsed_us = t0.elapsed().as_micros(),
        files = m.files.len(),
        "manifest fetched and checked"
    );
    let (missing, mut written) = missing_blobs(cache, &m, &staging)?;
    written.extend(store_blobs(config, cache, master, &missing, t0)?);
    flush_staging(config, cache, &staging, &written)?;
    // Everything is read back from staging and checked again; the manifest's bytes,
    // if unchanged, are not parsed a second time.
    let known = tenet_keys::Known {
        sha256: tenet_keys::Sha256Sum::of(&manifest),
        manifest: m,
    };
    let verified = tenet_keys::verify_bundle_staged(state, &staging.dir, clock, known)?;
    Ok(Synced::Fetched(Box::new(verified)))
}

/// `STATE/bundles/.staging`, being filled.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Writes one staged file (made durable by [`flush_staging`]).
    fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), SyncError> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(local("staging"))?;
        }
        write_file(&path, bytes).map_err(local("staging"))
    }

    /// Writes a signed document and its signature.
    fn write_signed(&self, rel: &str, bytes: &[u8], sig: &[u8]) -> Result<(), SyncError> {
        self.write(rel, bytes)?;
        self.write(&format!("{rel}{}", bundle::SIG_SUFFIX), sig)
    }
}

/// The pinned mutual-TLS connection to the master, with this member's node key.
fn connect(
    config: &Config,
    state: &TrustState,
    deadline: std::time::Duration,
) -> Result<Master, SyncError> {
    let key = SecretKey::read(&config.node_key).map_err(|e| {
        SyncError::Local(format!(
            "node key {}: {}",
            config.node_key.display(),
            tenet_keys::error_chain(&e)
        ))
    })?;
    let pins = state.root().root().transport.server_spki.clone();
    let tls = fetch::client_config(&config.member, &key, pins)?;
    Ok(Master::connect(
        &config.master(),
        tls,
        config.connect_timeout,
        deadline,
    )?)
}

/// An HTTPS connection to `mirror`, checked against its CA. A mirror that cannot be
/// set up (its CA file unreadable) is one that did not answer: the next is tried.
fn connect_mirror(
    config: &Config,
    mirror: &MirrorConfig,
    deadline: std::time::Duration,
) -> Result<Master, SyncError> {
    let unusable = |e: FetchError| match e {
        FetchError::Setup(m) => SyncError::Unreachable(m),
        other => other.into(),
    };
    let tls = fetch::mirror_config(&mirror.ca).map_err(unusable)?;
    Master::connect_mirror(mirror, tls, config.connect_timeout, deadline).map_err(unusable)
}

/// Walks the root chain: each newer root the master has, verified by the one before,
/// staged; then the newest must not have expired.
fn update_roots(
    master: &mut Master,
    state: &TrustState,
    clock: &Clock,
    staging: &Staging,
) -> Result<TrustState, SyncError> {
    let mut st = state.clone();
    for _ in 0..MAX_ROOT_UPDATES {
        let next = st.root().root().version.saturating_add(1);
        let path = master.path(Resource::Root(next));
        let Some(bytes) = master.get_optional(&path, Document::Root.max_bytes())? else {
            break;
        };
        let sig = master.get(&master.path(Resource::RootSig(next)), MAX_SIGNATURE_BYTES)?;
        st = update_root(&st, &bytes, &sig)?;
        let name = format!("{}/{}", bundle::ROOT_DIR, bundle::root_file_name(next));
        staging.write_signed(&name, &bytes, &sig)?;
    }
    check_root_fresh(&st, clock)?;
    Ok(st)
}

/// What the timestamp offers.
enum Offer {
    /// Nothing to fetch: the answer is this.
    Nothing(Synced),
    /// A manifest to fetch: the state with the timestamp accepted, and what it names.
    Newer {
        /// The trust state with the timestamp accepted.
        state: Box<TrustState>,
        /// The timestamp naming the manifest.
        expected: ExpectedManifest,
    },
}

/// The master's timestamp, checked against the trust state: an older one is ignored,
/// the current one means nothing to fetch (unless a damaged stored blob was set aside
/// or nothing is cached), a newer one is staged and names the manifest to fetch.
fn check_timestamp(
    master: &mut Master,
    st: TrustState,
    clock: &Clock,
    cache: &Cache,
    in_force: InForce,
    staging: &Staging,
) -> Result<Offer, SyncError> {
    let ts = master.get(
        &master.path(Resource::Timestamp),
        Document::Timestamp.max_bytes(),
    )?;
    let ts_sig = master.get(&master.path(Resource::TimestampSig), MAX_SIGNATURE_BYTES)?;
    let have_cache = in_force == InForce::Cached;
    let expected = match tenet_keys::check_timestamp(&st, &ts, &ts_sig, clock)? {
        TimestampOutcome::Ignored { offered, trusted } => {
            tracing::info!(offered, trusted, "older timestamp ignored");
            let named = tenet_keys::Timestamp::parse(&ts).map(|t| t.manifest.serial);
            if master.is_mirror()
                && let Some((in_force, _)) = cache.current()
                && named.as_ref().map_or(true, |serial| *serial < in_force)
            {
                let named = named.map_or_else(
                    |_| "an unreadable serial".to_string(),
                    |s| format!("serial {s}"),
                );
                return Err(SyncError::Trust(format!(
                    "offers timestamp version {offered} naming {named}, older than the trusted timestamp {trusted} and serial {in_force} in force: refusing a rollback"
                )));
            }
            if have_cache {
                return Ok(Offer::Nothing(Synced::Current {
                    state: Box::new(st),
                    fresh: false,
                }));
            }
            return Err(SyncError::Unreachable(format!(
                "{} offers timestamp version {offered}, older than the trusted {trusted}",
                master.name()
            )));
        }
        TimestampOutcome::Current { state, expected } => {
            // A damaged stored blob was set aside: fetch the bundle in force again
            // (its manifest is accepted as the one trusted; only missing blobs move).
            if have_cache && !cache.damaged() {
                return Ok(Offer::Nothing(Synced::Current { state, fresh: true }));
            }
            expected
        }
        TimestampOutcome::Newer(e) => e,
        other => {
            return Err(SyncError::Trust(format!(
                "unexpected timestamp outcome {other:?}"
            )));
        }
    };
    staging.write_signed(bundle::TIMESTAMP, &ts, &ts_sig)?;
    Ok(Offer::Newer {
        state: Box::new(st),
        expected,
    })
}

/// The manifest the timestamp names (no larger than it says), checked and staged:
/// its bytes and the parsed manifest.
fn stage_manifest(
    master: &mut Master,
    st: &TrustState,
    expected: &ExpectedManifest,
    clock: &Clock,
    staging: &Staging,
) -> Result<(Vec<u8>, Manifest), SyncError> {
    let cap = expected.manifest().size.min(Document::Manifest.max_bytes());
    let manifest = master.get(&master.path(Resource::Manifest), cap)?;
    let manifest_sig = master.get(&master.path(Resource::ManifestSig), MAX_SIGNATURE_BYTES)?;
    let (_, m) = check_manifest(st, &manifest, &manifest_sig, Some(expected), clock)?;
    staging.write_signed(bundle::MANIFEST, &manifest, &manifest_sig)?;
    Ok((manifest, m))
}

/// The manifest's blobs the store lacks (each hash once), and the files written so
/// far (staged documents, blobs linked from an older cache layout).
///
/// Blobs are stored once, by hash, in the shared store (`staging/blobs` links to it):
/// a new serial that changes one file fetches and writes one blob. A blob enters the
/// store only after it streamed in hashed against the signed manifest (or was linked
/// from an older cache layout, where it was hashed when stored); a stored one is
/// trusted by its name, and hashed again whenever its bytes are read (`BundleFiles`).
fn missing_blobs<'m>(
    cache: &Cache,
    m: &'m Manifest,
    staging: &Staging,
) -> Result<(Vec<&'m FileEntry>, Vec<PathBuf>), SyncError> {
    let store = cache.blob_store();
    let stored = cache.stored_blobs().map_err(local("blob store"))?;
    let in_force = cache.current().map(|(_, dir)| dir);
    let mut seen = BTreeSet::new();
    let mut written = Vec::new();
    let roots = staging.dir.join(bundle::ROOT_DIR);
    for dir in [&staging.dir, &roots] {
        if let Ok(list) = std::fs::read_dir(dir) {
            for e in list.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    written.push(e.path());
                }
            }
        }
    }
    let mut missing = Vec::new();
    for entry in &m.files {
        if !seen.insert(entry.sha256) {
            continue;
        }
        let hex = entry.sha256.to_string();
        if stored.contains(&hex) {
            continue;
        }
        let path = store.join(&hex);
        if let Some(dir) = &in_force
            && link_blob(&bundle::blob_path(dir, &entry.sha256), &path).is_ok()
        {
            written.push(path);
            continue;
        }
        missing.push(entry);
    }
    Ok((missing, written))
}

/// Fetches the `missing` blobs into the store and ends the conversation: the loose
/// files written (to be flushed with staging).
///
/// Many blobs go into one pack (a full sync: one sequential file instead of
/// thousands), a few loose. A pack keeps the blobs that were checked before a
/// failure, as loose files do, so a retry fetches only the rest.
fn store_blobs(
    config: &Config,
    cache: &Cache,
    mut master: Master,
    missing: &[&FileEntry],
    t0: std::time::Instant,
) -> Result<Vec<PathBuf>, SyncError> {
    let mut sink = if missing.len() >= PACK_MIN {
        Sink::Pack(PackWriter::create(&config.state_dir).map_err(local("blob store"))?)
    } else {
        Sink::Loose {
            dir: cache.blob_store(),
            written: Vec::new(),
        }
    };
    let fetched = fetch_blobs(&mut master, &mut sink, missing, BATCH_LIMITS);
    tracing::debug!(
        elapsed_us = t0.elapsed().as_micros(),
        blobs = missing.len(),
        "blobs fetched"
    );
    let kept = sink.finish().map_err(local("blob store"));
    tracing::debug!(elapsed_us = t0.elapsed().as_micros(), "blobs stored");
    let loose = match (fetched, kept) {
        (Err(e), _) => return Err(e),
        (Ok(()), Err(e)) => return Err(e),
        (Ok(()), Ok(loose)) => loose,
    };
    drop(master);
    Ok(loose)
}

/// Everything staged is durable before anything is verified or switched: one fsync
/// per file when few were written (a change of one file), else one syncfs.
fn flush_staging(
    config: &Config,
    cache: &Cache,
    staging: &Staging,
    written: &[PathBuf],
) -> Result<(), SyncError> {
    let roots = staging.dir.join(bundle::ROOT_DIR);
    let state_blobs = config.state_dir.join(crate::sync::cache::BLOBS);
    flush_written(
        written,
        &[
            &staging.dir,
            &roots,
            &cache.blob_store(),
            &state_blobs,
            &config.state_dir,
        ],
    )
    .map_err(local("staging"))
}

/// What one `POST /v1/blobs` asks for: the server's most hashes, and a share of the
/// server's per-request bytes (a blob larger than that goes alone).
const BATCH_LIMITS: fetch::BatchLimits = fetch::BatchLimits {
    blobs: 4096,
    bytes: 32 * 1024 * 1024,
};

/// Fetches the `missing` blobs into `sink` (loose files, or one pack):
/// in batches within `limits` from `POST /v1/blobs`, or one `GET` each from a master
/// that does not have that route (404 or 405: an older policyd). The fallback also
/// follows a 404 for a hash the master no longer serves; its first `GET` of such a
/// blob fails as before.
fn fetch_blobs(
    master: &mut Master,
    sink: &mut Sink,
    missing: &[&tenet_keys::FileEntry],
    limits: fetch::BatchLimits,
) -> Result<(), SyncError> {
    // A static mirror has no batched route: one GET per blob.
    if master.is_mirror() {
        return missing
            .iter()
            .try_for_each(|entry| fetch_one(master, sink, entry));
    }
    for range in fetch::plan_batches(missing.iter().map(|e| e.size), limits) {
        let start = range.start;
        match fetch_batch(master, sink, &missing[range]) {
            Ok(()) => continue,
            Err(BatchFailure::Unsupported) => {
                tracing::debug!("the master has no batched blob route: one request per blob");
            }
            // An older master may answer 404 without reading the request body and close
            // the connection under the rest of it; the POST then fails before any answer
            // is read. Only a new connection tells that apart from a master that is gone.
            Err(BatchFailure::Broken(e)) => {
                // A key the root does not pin on the new connection is refused on
                // trust, not taken for an absent master.
                if let Err(r) = master.reconnect() {
                    return Err(match r {
                        FetchError::Unreachable(_) => e,
                        other => other,
                    }
                    .into());
                }
                tracing::debug!(error = %e, "the batched blob request broke: one request per blob");
            }
            Err(BatchFailure::Failed(e)) => return Err(e),
        }
        return missing[start..]
            .iter()
            .try_for_each(|entry| fetch_one(master, sink, entry));
    }
    Ok(())
}

/// Why a batch was not stored.
enum BatchFailure {
    /// The master has no `POST /v1/blobs` (404 or 405).
    Unsupported,
    /// The request broke before any answer was read.
    Broken(FetchError),
    /// Anything else: the sync fails.
    Failed(SyncError),
}

impl<E: Into<SyncError>> From<E> for BatchFailure {
    fn from(e: E) -> BatchFailure {
        BatchFailure::Failed(e.into())
    }
}

/// One `POST /v1/blobs` for `batch`: the answer is split by the manifest's declared
/// sizes, each blob streamed through the same checks as a single `GET` into the
/// `sink`. A body shorter than the sum of sizes
/// fails the blob it cuts short (`BlobTooSmall`); bytes after the last blob fail that
/// blob as too large (`BlobTooLarge`), as one `GET` of an over-long blob does. Only the
/// frame in hand is held in memory.
fn fetch_batch(
    master: &mut Master,
    sink: &mut Sink,
    batch: &[&tenet_keys::FileEntry],
) -> Result<(), BatchFailure> {
    let mut request = String::with_capacity(batch.len() * 65);
    let mut total: u64 = 0;
    for entry in batch {
        request.push_str(&entry.sha256.to_string());
        request.push('\n');
        total = total.saturating_add(entry.size);
    }
    let mut body = match master.post("/v1/blobs", request.into_bytes(), total) {
        Ok(b) => b,
        Err(FetchError::Status { status, .. })
            if status == hyper::StatusCode::NOT_FOUND
                || status == hyper::StatusCode::METHOD_NOT_ALLOWED =>
        {
            return Err(BatchFailure::Unsupported);
        }
        Err(e @ FetchError::Unreachable(_)) => return Err(BatchFailure::Broken(e)),
        Err(e) => return Err(e.into()),
    };
    for entry in batch {
        if let Err(e) = sink.put(entry, std::io::Read::take(&mut body, entry.size)) {
            // A transport failure under the read is the master's, not the blob's.
            return Err(match body.take_error() {
                Some(fetch) => fetch.into(),
                None => e.into(),
            });
        }
    }
    match (body.at_end()?, batch.last()) {
        (false, Some(last)) => Err(VerifyError::BlobTooLarge {
            path: last.path.clone(),
            declared: last.size,
        }
        .into()),
        _ => Ok(()),
    }
}

/// One `GET /v1/blob/sha256/{hex}` into the store (a master without batches). A body
/// over the declared size is read one byte past it, so the check refuses it on trust
/// (`BlobTooLarge`) as a batch does.
fn fetch_one(
    master: &mut Master,
    sink: &mut Sink,
    entry: &tenet_keys::FileEntry,
) -> Result<(), SyncError> {
    // More than one byte over is cut off by the cap: a refusal on trust all the same.
    let body = match master.get(
        &master.path(Resource::Blob(&entry.sha256)),
        entry.size.saturating_add(1),
    ) {
        Ok(body) => body,
        Err(FetchError::TooLarge { .. }) => {
            return Err(VerifyError::BlobTooLarge {
                path: entry.path.clone(),
                declared: entry.size,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    sink.put(entry, body.as_slice())
}

/// Where fetched blobs are stored.
enum Sink {
    /// One file each in the store's `sha256/` (`written`, to be flushed).
    Loose { dir: PathBuf, written: Vec<PathBuf> },
    /// All in one pack.
    Pack(PackWriter),
}

impl Sink {
    /// Stores the blob of `entry` from `reader`, checked against its size and hash
    /// first; a blob that fails leaves nothing behind.
    fn put(&mut self, entry: &tenet_keys::FileEntry, reader: impl Read) -> Result<(), SyncError> {
        match self {
            Sink::Pack(pack) => Ok(pack.add(entry, reader)?),
            Sink::Loose { dir, written } => {
                let hex = entry.sha256.to_string();
                let part = dir.join(format!(".{hex}.part"));
                let mut file = create_file(&part).map_err(local("blob store"))?;
                if let Err(e) = check_blob_stream(entry, reader, &mut file) {
                    drop(file);
                    let _ = std::fs::remove_file(&part);
                    return Err(e.into());
                }
                drop(file);
                let path = dir.join(&hex);
                statefs::rename(&part, &path).map_err(local("blob store"))?;
                written.push(path);
                Ok(())
            }
        }
    }

    /// The loose files written (to be flushed with staging), or nothing once the
    /// pack is durable and in place.
    fn finish(self) -> std::io::Result<Vec<PathBuf>> {
        match self {
            Sink::Loose { written, .. } => Ok(written),
            Sink::Pack(pack) => pack.finish().map(|_| Vec::new()),
        }
    }
}

/// Hard-links a blob of the bundle in force (older cache layout) into the store.
fn link_blob(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::hard_link(from, to)
}
