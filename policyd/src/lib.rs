//! The tenet policy server, `tenet-policyd`.
//!
//! Every member runs it. Its **listener** (default port 8740, mutual TLS with the
//! member's node key) answers `GET /v1/health` and `POST /v1/run`, a push-triggered
//! run signed by an administrator ([`runreq`]). When the HA engine starts the policyd package on a member, `tenet-policyd
//! promote` makes that member the **master**: the daemon verifies the signed bundle
//! against its trusted root and serves it on the **serving socket** (default port 8741,
//! mutual TLS with the policy server key pinned in the root; only enrolled members of
//! the served manifest get past the handshake). `tenet-policyd demote` closes the
//! serving socket; the listener keeps running.
//!
//! Two sockets rather than one, because the two roles differ at the TLS layer: the
//! serving socket must present the key members pin (it moves with the package), while
//! the listener presents the member's own key; and the serving socket admits only the
//! served manifest's members at the handshake, while the listener admits the admin keys
//! of the newest verified root and enrolled members, and authorises per route. Demotion is then simply closing a socket.
//!
//! - [`config`]: `policyd.toml`; [`cli`]: the command line; [`exit`]: the exit codes; [`ha`]: the
//!   idempotent `start`/`stop`/`watch`/`validate` that the HA adapters in `packaging/`
//!   map to their engine's conventions.
//! - [`daemon`]: start-up, run, drain; [`promotion`]: the [`promotion::State`] and the
//!   serving session; [`control`]: the Unix socket the one-shot commands use (its
//!   client side in [`control::client`]).
//! - Inside: `shared` (the context every task shares), `shutdown` (stopping and
//!   draining), `bundle` (load and verify a bundle into memory), `admission`
//!   (per-address connection caps), `trusted` (the trusted root and the listener's
//!   admitted keys), `http` (accept loop, limits, connections), `body` (the response body), `routes` (the fixed route table, streamed
//!   blobs), `launch` (how a pushed run's agent is started), `metrics` (Prometheus
//!   text).
//!
//! **Invariants:** policyd never evaluates policy, it serves verified bytes; no request
//! path becomes a filesystem path; the listener survives demotion; the served serial
//! never goes backwards within a daemon's life.

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod error;
pub mod exit;
pub mod ha;
pub mod promotion;
pub mod reportdb;
pub mod runreq;

mod admission;
mod body;
mod bundle;
mod history;
mod http;
mod join;
mod launch;
mod metrics;
mod page;
mod reports;
mod routes;
mod shared;
mod shutdown;
mod trusted;

pub use config::Config;
pub use error::{BundleError, ConfigError, ControlError, DaemonError, PromoteError};
pub use promotion::State;
