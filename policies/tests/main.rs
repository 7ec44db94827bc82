//! Integration tests of the policy loader: golden diagnostics and robustness.
#![expect(
    clippy::disallowed_methods,
    reason = "tests write policy trees directly; the loader never writes"
)]
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first surprise"
)]

mod diagnostics;
mod modules;
mod robustness;
mod values;
