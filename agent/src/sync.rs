//! The sync client: one conversation with the master ([`mod@pull`]), the verified bundle
//! in force ([`trusted`]), and where both keep what they hold ([`cache`], [`store`]),
//! over the pinned mutual-TLS client ([`fetch`]).
//!
//! Nothing here converges, runs a failover plan or imports a command: `run` strings
//! `pull::pull` and the commit together, and converges what [`trusted`] hands it.
//!
//! The state directory, each file with the module that owns it:
//!
//! ```text
//! STATE/                          owner-only; never inside the managed root
//!   run.lock                      one run at a time; its text names the holder (lock)
//!   sync.lock                     one sync per state directory, held by `run` (lock, ops::run)
//!   last-run.json                 the last `run`'s summary and exit code (ops::run)
//!   trust.toml                    the ratchet (TrustState::to_toml), replaced atomically (sync::cache)
//!   blobs/sha256/<hex>            a cached blob, named by its SHA-256 (sync::store)
//!   blobs/packs/<name>.pack|.idx  many cached blobs, written by one sync (sync::store)
//!   blobs/.damaged                a stored blob or pack was found damaged: the next
//!                                 sync fetches the bundle in force again (sync::cache)
//!   bundles/<serial>/             a verified bundle: roots, manifest,
//!                                 blobs -> ../../blobs (sync::cache)
//!   bundles/.staging/             the bundle being fetched; removed on start (sync::cache, sync::pull)
//!   current -> bundles/<serial>   the bundle in force (sync::cache)
//!   events/<id>.jsonl             a failover event's journal (failover::journal)
//!   packages/<package>.toml       which event started a package here (failover::started)
//!   stat-cache                    managed files' hashes by lstat (statcache)
//!   reports/<time>-<n>-<pid>.json run reports not yet delivered to the master (sync::upload)
//! ```
//!
//! Every write in it goes through [`crate::statefs`] (or `tenet_keys::fsio` for
//! whole documents).

pub mod cache;
pub mod fetch;
pub mod pull;
pub mod store;
pub mod trusted;
pub mod upload;
