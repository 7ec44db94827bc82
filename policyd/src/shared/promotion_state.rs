//! The promotion state held in [`crate::shared::Shared`]: the explicit [`State`], what
//! is served now ([`Snapshot`]) and the serving session, with the methods that need no
//! context. Promoting, demoting, re-signing and pick-up act on it in
//! [`crate::promotion`]; the routes read the [`Snapshot`] from here.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use tenet_keys::tls::MemberPins;
use tenet_keys::{KeyId, SecretKey, Sha256Sum, Time, TrustState};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bundle::{LoadedBundle, SignedDocument};

/// A TLS server configuration that can be swapped while its socket keeps accepting (a
/// re-promotion with another policy server key).
pub(crate) type SharedAcceptor = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// Whether this member serves the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The listener runs; no bundle is served.
    Listening,
    /// Promoted: the bundle with this manifest serial is served.
    Serving {
        /// The manifest's serial.
        serial: u64,
    },
}

/// What is served right now: a consistent pair of bundle and timestamp.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) bundle: Arc<LoadedBundle>,
    pub(crate) timestamp: SignedTimestamp,
    pub(crate) address: std::net::SocketAddr,
}

/// A timestamp signed by this daemon.
#[derive(Debug, Clone)]
pub(crate) struct SignedTimestamp {
    pub(crate) version: u64,
    pub(crate) expires: Time,
    pub(crate) document: SignedDocument,
    pub(crate) signed_at: Instant,
}

/// The promotion state of a daemon.
#[derive(Debug)]
pub(crate) struct Promotion {
    /// What handlers read; replaced whole, never edited.
    pub(crate) view: RwLock<Option<Arc<Snapshot>>>,
    /// Serialises promote, demote, re-signing and pick-up.
    pub(crate) control: Mutex<Control>,
    /// The serving socket's handshake allow-list: the served manifest's members.
    pub(crate) pins: MemberPins,
}

#[derive(Debug)]
pub(crate) struct Control {
    pub(crate) ratchet: TrustState,
    pub(crate) session: Option<Session>,
}

/// The serving socket and what keeps it fresh.
#[derive(Debug)]
pub(crate) struct Session {
    /// The bundle path as named at promotion.
    pub(crate) requested: PathBuf,
    /// The served bundle: resolved directory and manifest hash.
    pub(crate) fingerprint: (PathBuf, Sha256Sum),
    /// The last bundle refused at pick-up, so it is not verified and logged again.
    pub(crate) last_refused: Option<(PathBuf, Sha256Sum)>,
    pub(crate) timestamp_key: Arc<SecretKey>,
    pub(crate) server_key_id: KeyId,
    pub(crate) acceptor: SharedAcceptor,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) accept_task: JoinHandle<()>,
    pub(crate) refresh_task: JoinHandle<()>,
}

impl Promotion {
    /// Not promoted, trusting `ratchet`.
    pub(crate) fn new(ratchet: TrustState) -> Promotion {
        Promotion {
            view: RwLock::new(None),
            control: Mutex::new(Control {
                ratchet,
                session: None,
            }),
            pins: MemberPins::new(),
        }
    }

    /// The state now.
    pub(crate) fn state(&self) -> State {
        match self.snapshot() {
            None => State::Listening,
            Some(s) => State::Serving {
                serial: s.bundle.serial(),
            },
        }
    }

    /// The served manifest's members, as the serving socket's handshake admits them
    /// (shared: it changes with the served manifest).
    pub(crate) fn pins(&self) -> MemberPins {
        self.pins.clone()
    }

    /// What is served now, if anything.
    pub(crate) fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_view(&self, snapshot: Option<Snapshot>) {
        *self.view.write().unwrap_or_else(PoisonError::into_inner) = snapshot.map(Arc::new);
    }
}
