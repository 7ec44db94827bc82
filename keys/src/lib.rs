//! tenet's keys and trust: ed25519 roles, the signed root, manifest and timestamp,
//! bundles, and the verifier's ratchet.
//!
//! A policy tree is trusted only because of offline ed25519 signatures over the exact
//! bytes of a manifest, checked against a pinned, versioned root. The policy server is an
//! untrusted mirror: it serves bundles and signs short-lived timestamps, nothing more.
//!
//! - Publishing (`tenet-keys`): [`deployment::init`], [`publish::sign`],
//!   [`publish::attest`], [`publish::timestamp_bundle`] (policyd: [`publish::make_timestamp`]).
//! - Verifying (the agent, and policyd before it serves): [`verify::TrustState`],
//!   [`verify::update_root`], [`verify::check_timestamp`], [`verify::check_manifest`],
//!   [`verify::check_blob`], [`verify::verify_bundle`] → [`verify::VerifiedBundle`].
//! - Transport: [`tls::client_config`] and [`tls::server_config`] (TLS 1.3, peers
//!   pinned by key id).
//! - Run requests: [`runreq::sign`] (an admin), [`runreq::verify`] with a
//!   [`runreq::ReplayCache`] (the member).
//! - Join tokens: [`join::JoinToken::issue`] (an admin), [`join::verify`] with
//!   [`join::UsedTokens`] (the master), [`join::Joins`] (approval).
//!
//! **Invariants:** only this crate reads private key material; only
//! [`verify::verify_bundle`] constructs a [`verify::VerifiedBundle`]; signatures are
//! checked over raw bytes before a document is parsed; the library never prints and
//! never reads the clock.

pub mod bundle;
pub mod cli;
pub mod deployment;
pub mod document;
pub mod error;
pub mod fsio;
pub mod hex;
pub mod id;
pub mod join;
pub mod jsonl;
pub mod key;
pub mod manifest;
pub mod members;
pub mod mirror;
pub mod path;
pub mod publish;
pub mod root;
pub mod runreq;
pub mod sig;
pub mod time;
pub mod timestamp;
pub mod tls;
pub mod verify;

pub use document::Document;
pub use error::{KeyError, PublishError, VerifyError};
pub use id::{DeploymentId, KeyId, Sha256Sum};
pub use key::{Context, PublicKey, Role, SecretKey, Signature};
pub use manifest::{FileEntry, Manifest, MemberEntry};
pub use root::Root;
pub use time::Time;
pub use timestamp::Timestamp;
pub use tls::{ClientPolicy, Identity, MemberPins, Subject, TlsError};
pub use verify::{
    CachedBundle, Clock, ExpectedManifest, Known, TimestampOutcome, TrustState, TrustedRoot,
    VerifiedBundle, check_blob, check_blob_stream, check_manifest, check_root_fresh,
    check_timestamp, read_blob_into, update_root, verify_bundle, verify_bundle_staged,
    verify_bundle_stored, verify_cached,
};

/// An error and its sources, joined by `: `.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(c.to_string().trim_end());
        cur = c.source();
    }
    s
}
