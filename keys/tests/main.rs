//! Integration tests of tenet-keys: attacks on the verifier, the ratchet, the parsers and
//! the `tenet-keys` binary.
//!
//! The modules are marked `cfg(test)` so that helpers, not only `#[test]` functions, get
//! the workspace's test allowance for `unwrap`.

#[cfg(test)]
mod attacks;
#[cfg(test)]
mod cli;
#[cfg(test)]
mod parsers;
#[cfg(test)]
mod ratchet;
#[cfg(test)]
mod tls;
#[cfg(test)]
mod util;
