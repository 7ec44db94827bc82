//! The tenet policy language.
//!
//! A policy tree is a directory of TOML files: the cluster (members, packages), and
//! promises about files, lines, settings, links, directories, absent paths, commands,
//! the hostname and copies. [`load`] reads and validates a tree, reporting every
//! problem at once as `file:line:col: field: message`; [`Policy::resolve`] evaluates
//! it for one member's [`Facts`].
//!
//! **Invariant:** this crate does no network I/O and writes nothing; it reads the
//! policy tree and nothing else.

use std::path::PathBuf;

pub mod cond;
mod conflict;
pub mod diag;
pub mod duration;
pub mod examples;
pub mod facts;
pub mod jinja;
mod load;
pub mod located;
pub mod model;
pub mod plan;
mod read;
mod resolve;
pub mod split;
pub mod template;

pub use diag::{Diagnostic, Diagnostics, Origin, Severity};
pub use facts::Facts;
pub use load::{
    FILES_DIR, MODULE_FILE, MODULES_DIR, PROMISE_TYPES, TEMP_SUFFIX, TreeFiles, is_policy_file,
    load, load_from,
};
pub use model::Unresolved;
pub use resolve::{Resolution, UnknownMember};

/// A validated policy tree.
#[derive(Debug)]
pub struct Policy {
    /// Where it was loaded from.
    pub tree: PathBuf,
    /// The cluster config.
    pub cluster: model::Cluster,
    /// Computed values.
    pub values: Vec<model::Value>,
    /// Every promise, in file order then declaration order.
    pub promises: Vec<model::Promise>,
    /// Failover plans, in file order then declaration order.
    pub plans: Vec<plan::Plan>,
    /// Warnings found while loading (the tree is valid).
    pub warnings: Diagnostics,
}
