//! The tenet agent: converges a cluster member to its policy.
//!
//! [`apply::apply`] loads a policy tree, resolves it for this member's facts and
//! hands the promises to the [`converge`] engine, which observes, plans, applies and
//! verifies each one and reports to a [`report::Reporter`].
//!
//! **Invariant:** only [`fsops`] writes to the managed system and only [`exec`]
//! starts processes; nothing outside the configured root is ever touched.

pub mod apply;
pub mod cli;
pub mod config;
pub mod converge;
pub mod daemon;
pub mod demo;
pub mod escape;
pub mod event;
pub mod exec;
pub mod exit;
pub mod facts;
pub mod failover;
pub mod fsops;
pub mod lock;
pub mod push;
pub mod report;
pub mod run;
pub mod simulate;
pub mod statcache;
pub mod statefs;
pub mod sync;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
