//! What every task of the daemon shares: one [`Shared`] context, built once by
//! [`crate::daemon`] and passed to the listener, the serving socket, the routes, the
//! control socket and the pushed runs, which import it from here rather than from the
//! daemon that builds it.
//!
//! `Shared` holds the state of [`crate::promotion`] (a [`Promotion`]), of the routes
//! (the [`BlobMemory`] budget) and of pushed runs ([`Runs`]). Those state types live
//! here, in `shared/` (`promotion_state`, `blob_memory`, `runs`), with their methods
//! that need no context; what acts on them with `&Shared` stays in `promotion`,
//! `routes` and `runreq`. So `shared` imports none of the modules that take `&Shared`,
//! the routes read the served [`promotion_state::Snapshot`] from here rather than from
//! `promotion` (whose serving socket runs `http`'s accept loop, which dispatches to the
//! routes), and the response body is the leaf `body`: no import circle. Nothing
//! imports [`crate::daemon`], which only builds the context and starts the tasks.

pub(crate) mod blob_memory;
pub(crate) mod promotion_state;
pub(crate) mod report_limit;
pub(crate) mod runs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{Config, RunStart};
use crate::metrics::Metrics;
use crate::reportdb::ReportDb;
use crate::shutdown::Tracker;
use crate::trusted::ListenerKeys;

use blob_memory::BlobMemory;
use promotion_state::Promotion;
use report_limit::ReportLimit;
use runs::Runs;

/// What the daemon bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// The listener.
    pub listener: SocketAddr,
    /// The metrics endpoint, if on.
    pub metrics: Option<SocketAddr>,
    /// The status page, if on.
    pub page: Option<SocketAddr>,
    /// The control socket.
    pub control: PathBuf,
}

/// What every task of the daemon shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    pub(crate) promotion: Promotion,
    pub(crate) connections: Tracker,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) addresses: Addresses,
    /// Whom the listener admits, and the newest verified root (run requests).
    pub(crate) keys: Arc<ListenerKeys>,
    /// How a pushed run's agent is started (`[run] start`, `auto` resolved).
    pub(crate) run_start: RunStart,
    /// The blob bytes all answers in flight may hold together.
    pub(crate) blob_memory: BlobMemory,
    /// The pushed run in progress and the replay cache (behind its lock).
    pub(crate) runs: Runs,
    /// The report database (open while serving).
    pub(crate) reports: ReportDb,
    /// Each member's allowance of reports.
    pub(crate) report_limit: ReportLimit,
}

/// The daemon's one reading of the clock.
pub(crate) fn now() -> tenet_keys::Time {
    tenet_keys::Time::from_system(std::time::SystemTime::now())
}
