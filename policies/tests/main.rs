//! Integration tests of the policy loader: golden diagnostics and robustness.
#![expect(
    clippy::disallowed_methods,
    reason = "tests write policy trees directly; the loader never writes"
)]

mod diagnostics;
mod robustness;
