//! The state of pushed runs held in [`crate::shared::Shared`]: the run in progress
//! and the replay cache. What acts on it is [`crate::runreq`].

use std::sync::Mutex;

use hyper::body::Bytes;
use tenet_keys::runreq::ReplayCache;
use tenet_keys::{KeyId, Time};
use tokio::sync::broadcast;

/// The pushed run in progress, if any.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    pub(crate) current: Mutex<Option<Current>>,
    /// The replay cache, opened at the first request (again after a write failed);
    /// the lock serialises its check and write.
    pub(crate) nonces: Mutex<Option<ReplayCache>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) pid: u32,
    pub(crate) started: Time,
    pub(crate) signer: KeyId,
    pub(crate) lines: broadcast::Sender<Bytes>,
}
