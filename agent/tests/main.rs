//! Integration tests of the tenet-agent binary, one module per topic.

mod accounts;
mod bad_input;
mod cli;
mod crash;
mod event;
mod idempotence;
mod lang;
mod links;
mod mirror;
mod modules;
mod notify;
mod output;
mod pkg;
mod pkg_rpm;
mod process;
mod push;
mod run;
mod service;
mod service_booted;
mod statcache;
mod tree;
mod util;
