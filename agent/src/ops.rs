//! The commands: each subcommand is one function here, and `main.rs` only wires
//! arguments to it (through `cli`) and maps what it returns to an exit code.
//!
//! Commands use the layers below (the sync client, the engine, the base modules);
//! nothing below imports a command. Between commands: `run` and `demo` use `apply`'s
//! pipeline, and `event`, `watch` and `simulate` get their policy from `source`.

pub mod apply;
pub mod check;
pub mod daemon;
pub mod demo;
pub mod event;
pub mod join;
pub mod push;
pub mod run;
pub mod simulate;
pub mod source;
pub mod watch;
