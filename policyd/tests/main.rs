//! Integration tests of tenet-policyd: the binary as a process, real TLS on loopback,
//! deployments made with the `tenet-keys` library.
//!
//! The modules are marked `cfg(test)` so that helpers, not only `#[test]` functions, get
//! the workspace's test allowance for `unwrap`.

#[cfg(test)]
mod abuse;
#[cfg(test)]
mod batch;
#[cfg(test)]
mod ha;
#[cfg(test)]
mod help;
#[cfg(test)]
mod lifecycle;
#[cfg(test)]
mod run;
#[cfg(test)]
mod serving;
#[cfg(test)]
mod util;
