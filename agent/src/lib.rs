//! The tenet agent: converges a cluster member to its policy.
//!
//! Four layers, each importing only the ones below it (`tests/tests/tidy.rs` holds
//! the code to this map):
//!
//! ```text
//! main.rs ─▶ cli ─▶ ops::{apply, run, daemon, event, watch, simulate, push, demo}
//!                        │  ops::run, ops::demo ─▶ ops::apply (the shared pipeline)
//!                        │  ops::{event, watch, simulate} ─▶ ops::source
//!                        ▼
//!          sync::{pull, trusted, fetch, cache, store}      converge, failover
//!                        │       (no edge between these two columns)      │
//!                        ▼                                                  ▼
//!          base: exit, config, facts, lock, report, escape, fsops, exec,
//!                statcache, statefs
//! ```
//!
//! - [`ops`]: one function per subcommand; `main.rs` only wires arguments to it.
//! - [`sync`]: the sync client (one conversation with the master, the verified
//!   bundle in force, the cache and blob store); its doc draws the state directory.
//! - [`converge`] (the engine: observe, plan, apply, verify each promise) and
//!   [`failover`] (plans in order, journalled).
//! - Base modules: [`exit`] (the exit codes), [`config`], [`facts`], [`lock`],
//!   [`report`], [`escape`], [`fsops`] (writes to the managed root), [`exec`]
//!   (starts processes), [`statcache`], [`statefs`] (writes to the state directory).
//!
//! [`ops::apply::apply`] loads a policy tree, resolves it for this member's facts and
//! hands the promises to the [`converge`] engine, which observes, plans, applies and
//! verifies each one and reports to a [`report::Reporter`].
//!
//! **Invariant:** only [`fsops`] writes to the managed system and only [`exec`]
//! starts processes; nothing outside the configured root is ever touched.

pub mod cli;
pub mod config;
pub mod converge;
pub mod escape;
pub mod exec;
pub mod exit;
pub mod facts;
pub mod failover;
pub mod fsops;
pub mod lock;
pub mod ops;
pub mod report;
pub mod statcache;
pub mod statefs;
pub mod sync;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
