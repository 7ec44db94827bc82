//! Promotion and demotion: the explicit [`State`], the serving session, the timestamp
//! re-signed every TTL/2, and picking up a newer bundle without a restart.
//!
//! - **Promote** (`tenet-policyd promote`): read the timestamp and policy server keys,
//!   load and verify the bundle (module `bundle`) against the daemon's ratchet, check
//!   that the root pins the server key and lists the timestamp key, sign a timestamp,
//!   then bind the serving socket (first promotion) and swap the served snapshot in.
//!   Any failure leaves the previous state untouched. Promoting again while serving is
//!   how a new bundle directory or new keys are taken: the same checks, then a swap.
//! - **Pick-up**: while serving, the bundle path named at promotion is checked every
//!   `watch_interval` (symlinks resolved, SHA-256 of `manifest.toml`). A new manifest is
//!   verified like a promotion; one that fails is logged once and the served bundle
//!   stays. Publish by writing a new bundle directory and flipping a symlink.
//! - **Demote** (`tenet-policyd demote`): the serving socket is closed, open serving
//!   connections are asked to finish, and the state is `Listening`. The listener is
//!   not touched.
//!
//! **Invariant:** the ratchet (the trust state after the last served bundle) only moves
//! forward, and survives demotion: a daemon never serves an older serial than it has
//! served, nor another manifest with the same serial.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tenet_keys::fsio::Overwrite;
use tenet_keys::key::Role;
use tenet_keys::tls::{Identity, Subject};
use tenet_keys::{
    Clock, KeyId, SecretKey, Time, TimestampOutcome, TrustState, check_timestamp, publish,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{error, info, warn};

use crate::bundle::{self, LoadedBundle, SignedDocument};
use crate::error::PromoteError;
use crate::http::{self, EnrolledMembers};
use crate::metrics::Site;
use crate::shared::Shared;
pub use crate::shared::promotion_state::State;
use crate::shared::promotion_state::{Control, Session, SignedTimestamp, Snapshot};
use crate::shutdown::Stop;

/// What a promotion asks for. Paths are absolute (the command line makes them so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoteRequest {
    /// The bundle directory (may be a symlink that a publisher flips).
    pub bundle: PathBuf,
    /// The timestamp key; else the configuration's.
    pub timestamp_key: Option<PathBuf>,
    /// The policy server TLS key; else the configuration's.
    pub server_key: Option<PathBuf>,
}

/// Promotes (or re-promotes) the daemon; see the module docs. On error the state is
/// unchanged.
pub(crate) async fn promote(
    shared: &Arc<Shared>,
    request: PromoteRequest,
) -> Result<Arc<Snapshot>, PromoteError> {
    let mut control = shared.promotion.control.lock().await;
    let result = promote_locked(shared, &mut control, request).await;
    if let Err(e) = &result {
        shared.metrics.bundle_refused();
        warn!(error = %tenet_keys::error_chain(e), "promotion refused");
    }
    result
}

/// Stops serving; returns the state before. Demoting a listening daemon does nothing.
pub(crate) async fn demote(shared: &Arc<Shared>) -> State {
    let mut control = shared.promotion.control.lock().await;
    let before = shared.promotion.state();
    if let Some(session) = control.session.take() {
        shared.promotion.set_view(None);
        shared.promotion.pins.replace([]);
        let _ = session.stop.send(true);
        session.refresh_task.abort();
        // The accept loop drops the socket as soon as it sees the stop; waiting for it
        // lets a promotion right after bind the same port.
        let _ = session.accept_task.await;
        // The package filesystem may be unmounted next: let go of the database on it.
        shared.reports.close();
        info!(?before, "demoted; the listener keeps running");
    }
    before
}

async fn promote_locked(
    shared: &Arc<Shared>,
    control: &mut Control,
    request: PromoteRequest,
) -> Result<Arc<Snapshot>, PromoteError> {
    let serve = &shared.config.serve;
    let timestamp_path = request
        .timestamp_key
        .clone()
        .or_else(|| serve.timestamp_key.clone())
        .ok_or(PromoteError::NoKey {
            what: "timestamp",
            flag: "--timestamp-key",
            field: "serve.timestamp_key",
        })?;
    let server_path = request
        .server_key
        .clone()
        .or_else(|| serve.server_key.clone())
        .ok_or(PromoteError::NoKey {
            what: "policy server TLS",
            flag: "--server-key",
            field: "serve.server_key",
        })?;
    let ratchet = control.ratchet.clone();
    let dir = request.bundle.clone();
    let now = now();
    let (timestamp_key, server_key, bundle) = tokio::task::spawn_blocking(move || {
        let timestamp_key =
            SecretKey::read(&timestamp_path).map_err(|source| PromoteError::Key {
                what: "timestamp",
                path: timestamp_path,
                source,
            })?;
        let server_key = SecretKey::read(&server_path).map_err(|source| PromoteError::Key {
            what: "policy server TLS",
            path: server_path,
            source,
        })?;
        let bundle = LoadedBundle::load(&dir, &ratchet, &Clock::new(now))
            .map_err(|source| PromoteError::Bundle { source })?;
        Ok::<_, PromoteError>((timestamp_key, server_key, bundle))
    })
    .await
    .map_err(|source| PromoteError::Task { source })??;

    check_keys(&bundle, &timestamp_key, server_key.key_id())?;
    let previous = shared.promotion.snapshot().map(|s| s.timestamp.version);
    let timestamp = sign_timestamp(shared, &bundle, &timestamp_key, now, previous)?;
    persist_ratchet(&shared.config.state_dir, bundle.state())?;
    let fingerprint = (bundle.dir().to_path_buf(), bundle.manifest_sha256());
    let bundle = Arc::new(bundle);
    let timestamp_key = Arc::new(timestamp_key);

    if let Some(session) = control.session.as_mut() {
        if session.server_key_id != server_key.key_id() {
            let acceptor = serving_acceptor(shared, &server_key)?;
            *session
                .acceptor
                .write()
                .unwrap_or_else(PoisonError::into_inner) = acceptor;
            session.server_key_id = server_key.key_id();
        }
        session.requested = request.bundle;
        session.fingerprint = fingerprint;
        session.last_refused = None;
        session.timestamp_key = timestamp_key;
        let address = shared
            .promotion
            .snapshot()
            .map(|s| s.address)
            .unwrap_or(shared.config.serve.listen);
        return Ok(commit(shared, control, bundle, timestamp, address));
    }

    let acceptor = Arc::new(RwLock::new(serving_acceptor(shared, &server_key)?));
    let listen = shared.config.serve.listen;
    let tcp = TcpListener::bind(listen)
        .await
        .map_err(|source| PromoteError::Bind {
            address: listen,
            source,
        })?;
    let address = tcp.local_addr().unwrap_or(listen);
    let snapshot = commit(shared, control, bundle, timestamp, address);
    let (stop, stopped) = watch::channel(false);
    let accept_task = tokio::spawn(http::serve_tls(
        shared.clone(),
        Site::Serving,
        tcp,
        acceptor.clone(),
        Stop::with(shared.shutdown.clone(), stopped.clone()),
    ));
    let refresh_task = tokio::spawn(refresh(
        shared.clone(),
        Stop::with(shared.shutdown.clone(), stopped),
    ));
    info!(%address, "serving socket bound");
    control.session = Some(Session {
        requested: request.bundle,
        fingerprint,
        last_refused: None,
        timestamp_key,
        server_key_id: server_key.key_id(),
        acceptor,
        stop,
        accept_task,
        refresh_task,
    });
    Ok(snapshot)
}

/// The file in the state directory that keeps the ratchet across restarts.
pub(crate) const RATCHET_FILE: &str = "ratchet.toml";

/// Writes the trust state of a bundle about to be served, atomically, before it is
/// served.
fn persist_ratchet(state_dir: &Path, state: &TrustState) -> Result<(), PromoteError> {
    let path = state_dir.join(RATCHET_FILE);
    let fail = |source| PromoteError::Ratchet {
        path: path.clone(),
        source,
    };
    let text = state
        .to_toml()
        .map_err(|e| fail(std::io::Error::other(e)))?;
    tenet_keys::fsio::write_atomic(&path, text.as_bytes(), 0o600, Overwrite::Replace).map_err(fail)
}

/// Makes `bundle` the served one: ratchet, handshake pins, then the snapshot.
fn commit(
    shared: &Shared,
    control: &mut Control,
    bundle: Arc<LoadedBundle>,
    timestamp: SignedTimestamp,
    address: std::net::SocketAddr,
) -> Arc<Snapshot> {
    control.ratchet = bundle.state().clone();
    shared
        .promotion
        .pins
        .replace(bundle.members().iter().copied());
    info!(
        serial = bundle.serial(),
        bundle = %bundle.dir().display(),
        members = bundle.members().len(),
        timestamp_version = timestamp.version,
        "serving"
    );
    let snapshot = Arc::new(Snapshot {
        bundle,
        timestamp,
        address,
    });
    *shared
        .promotion
        .view
        .write()
        .unwrap_or_else(PoisonError::into_inner) = Some(snapshot.clone());
    snapshot
}

/// While serving: re-sign the timestamp every TTL/2 and pick up new bundles.
async fn refresh(shared: Arc<Shared>, mut stop: Stop) {
    let half = shared.config.serve.timestamp_ttl / 2;
    let mut watch = tokio::time::interval(shared.config.serve.watch_interval);
    watch.set_missed_tick_behavior(MissedTickBehavior::Delay);
    watch.tick().await;
    let mut retry_at: Option<Instant> = None;
    loop {
        let Some(snapshot) = shared.promotion.snapshot() else {
            return;
        };
        let mut due = snapshot.timestamp.signed_at + half;
        if let Some(r) = retry_at {
            due = due.max(r);
        }
        drop(snapshot);
        tokio::select! {
            () = stop.wait() => return,
            () = tokio::time::sleep_until(due) => {
                retry_at = (!resign(&shared).await).then(|| Instant::now() + Duration::from_secs(5));
            }
            _ = watch.tick() => pick_up(&shared).await,
        }
    }
}

/// Signs a new timestamp for the served bundle; false if that failed.
async fn resign(shared: &Arc<Shared>) -> bool {
    let control = shared.promotion.control.lock().await;
    let (Some(session), Some(snapshot)) = (control.session.as_ref(), shared.promotion.snapshot())
    else {
        return true;
    };
    let now = now();
    let manifest_expires = snapshot.bundle.manifest().expires;
    if manifest_expires <= now {
        warn!(
            serial = snapshot.bundle.serial(),
            expired = %manifest_expires,
            "the served manifest has expired; members keep their cached bundle until a new one is published"
        );
    }
    match sign_timestamp(
        shared,
        &snapshot.bundle,
        &session.timestamp_key,
        now,
        Some(snapshot.timestamp.version),
    ) {
        Ok(timestamp) => {
            info!(
                serial = snapshot.bundle.serial(),
                timestamp_version = timestamp.version,
                "timestamp signed again"
            );
            shared.promotion.set_view(Some(Snapshot {
                bundle: snapshot.bundle.clone(),
                timestamp,
                address: snapshot.address,
            }));
            true
        }
        Err(e) => {
            error!(error = %tenet_keys::error_chain(&e), "cannot sign the timestamp again; the current one expires at its time");
            false
        }
    }
}

/// Takes a new manifest from the promoted bundle path, if there is one and it verifies.
async fn pick_up(shared: &Arc<Shared>) {
    let mut guard = shared.promotion.control.lock().await;
    let control = &mut *guard;
    let Some(session) = control.session.as_ref() else {
        return;
    };
    let requested = session.requested.clone();
    let fingerprint =
        match tokio::task::spawn_blocking(move || bundle::manifest_fingerprint(&requested)).await {
            Ok(Ok(f)) => f,
            // A publisher may be between writing and flipping; the next tick looks again.
            Ok(Err(_)) | Err(_) => return,
        };
    if fingerprint == session.fingerprint || session.last_refused.as_ref() == Some(&fingerprint) {
        return;
    }
    let timestamp_key = session.timestamp_key.clone();
    let server_key_id = session.server_key_id;
    let ratchet = control.ratchet.clone();
    let dir = fingerprint.0.clone();
    let now = now();
    let loaded = tokio::task::spawn_blocking(move || {
        LoadedBundle::load(&dir, &ratchet, &Clock::new(now))
            .map_err(|source| PromoteError::Bundle { source })
    })
    .await
    .map_err(|source| PromoteError::Task { source })
    .and_then(|r| r);
    let previous = shared.promotion.snapshot().map(|s| s.timestamp.version);
    let accepted = loaded.and_then(|bundle| {
        check_keys(&bundle, &timestamp_key, server_key_id)?;
        let timestamp = sign_timestamp(shared, &bundle, &timestamp_key, now, previous)?;
        persist_ratchet(&shared.config.state_dir, bundle.state())?;
        Ok((bundle, timestamp))
    });
    match accepted {
        Ok((bundle, timestamp)) => {
            let served = (bundle.dir().to_path_buf(), bundle.manifest_sha256());
            let address = shared
                .promotion
                .snapshot()
                .map(|s| s.address)
                .unwrap_or(shared.config.serve.listen);
            info!(serial = bundle.serial(), "picked up a new bundle");
            commit(shared, control, Arc::new(bundle), timestamp, address);
            if let Some(session) = control.session.as_mut() {
                session.fingerprint = served;
                session.last_refused = None;
            }
        }
        Err(e) => {
            shared.metrics.bundle_refused();
            warn!(
                bundle = %fingerprint.0.display(),
                error = %tenet_keys::error_chain(&e),
                "refused a new bundle; still serving the previous one"
            );
            if let Some(session) = control.session.as_mut() {
                session.last_refused = Some(fingerprint);
            }
        }
    }
}

/// The server key must be pinned and the timestamp key listed by the bundle's root.
fn check_keys(
    bundle: &LoadedBundle,
    timestamp_key: &SecretKey,
    server_key_id: KeyId,
) -> Result<(), PromoteError> {
    let root = bundle.state().root().root();
    if !root.transport.server_spki.contains(&server_key_id) {
        return Err(PromoteError::ServerKeyNotPinned {
            keyid: server_key_id,
            root_version: root.version,
        });
    }
    if !root.has_role_key(Role::Timestamp, &timestamp_key.key_id()) {
        return Err(PromoteError::TimestampKeyNotInRole {
            keyid: timestamp_key.key_id(),
            root_version: root.version,
        });
    }
    Ok(())
}

/// Signs a timestamp naming the bundle's manifest, and checks it as a member would.
fn sign_timestamp(
    shared: &Shared,
    bundle: &LoadedBundle,
    key: &SecretKey,
    now: Time,
    previous: Option<u64>,
) -> Result<SignedTimestamp, PromoteError> {
    let serial = bundle.serial();
    let manifest = bundle.manifest_document();
    let (ts, text, sig) = publish::make_timestamp(
        bundle.manifest().deployment,
        &manifest.bytes,
        key,
        now,
        shared.config.serve.timestamp_ttl,
        previous,
    )
    .map_err(|source| PromoteError::SignTimestamp {
        serial,
        source: Box::new(source),
    })?;
    match check_timestamp(
        bundle.state(),
        text.as_bytes(),
        sig.as_bytes(),
        &Clock::new(now),
    ) {
        Ok(TimestampOutcome::Current { .. }) => {}
        Ok(other) => {
            // The bundle's state trusts exactly this manifest, so a fresh timestamp
            // naming it can only be `Current`.
            error!(
                ?other,
                "a fresh timestamp was not current; serving it anyway"
            );
        }
        Err(source) => {
            return Err(PromoteError::CheckTimestamp {
                serial,
                source: Box::new(source),
            });
        }
    }
    Ok(SignedTimestamp {
        version: ts.version,
        expires: ts.expires,
        document: SignedDocument {
            bytes: text.into(),
            sig: sig.into(),
        },
        signed_at: Instant::now(),
    })
}

fn serving_acceptor(
    shared: &Shared,
    server_key: &SecretKey,
) -> Result<Arc<rustls::ServerConfig>, PromoteError> {
    let identity = Identity::new(server_key, Subject::PolicyServer)
        .map_err(|source| PromoteError::Tls { source })?;
    let policy = EnrolledMembers {
        pins: shared.promotion.pins.clone(),
        log: crate::trusted::LogLimit::default(),
        joins: if shared.config.serve.join_dir.is_some() {
            http::Joins::Open
        } else {
            http::Joins::Off
        },
    };
    let config = http::server_config(&identity, Arc::new(policy))
        .map_err(|source| PromoteError::Tls { source })?;
    Ok(Arc::new(config))
}

pub(crate) use crate::shared::now;
