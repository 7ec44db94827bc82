//! `timestamp.toml`: a short-lived, online-signed statement of which manifest is
//! current. It bounds how long a stale or hostile policy server can hide a newer
//! manifest (freeze) to its TTL, while the manifest's own expiry is the hard bound.
//!
//! ```toml
//! # timestamp.toml (at most 4 KiB), signed in timestamp.toml.sig ("tenet-timestamp-v1")
//! schema = 1
//! kind = "timestamp"
//! deployment = "1f63766877b11c62791bb77c0ea94006"
//! version = 1795298400               # unix seconds at signing
//! expires = 2026-11-22T04:00:00Z     # default 6 hours
//!
//! [manifest]
//! epoch = 1
//! serial = 1042
//! sha256 = "b159…"                   # of manifest.toml's exact bytes
//! size = 661
//! ```

use serde::{Deserialize, Serialize};

use crate::document::{Document, Schema, TimestampKind, parse, render};
use crate::error::VerifyError;
use crate::id::{DeploymentId, Sha256Sum};
use crate::time::Time;

/// Default lifetime of a timestamp.
pub const DEFAULT_TIMESTAMP_TTL_SECS: u64 = 6 * 3600;

/// A parsed `timestamp.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timestamp {
    /// Always 1.
    pub schema: Schema,
    /// Always `"timestamp"`.
    pub kind: TimestampKind,
    /// The deployment it belongs to.
    pub deployment: DeploymentId,
    /// Unix seconds at signing, so timestamps from two policy servers compare.
    pub version: u64,
    /// After this it is refused.
    pub expires: Time,
    /// The manifest it names.
    pub manifest: ManifestRef,
}

impl crate::document::Headed for Timestamp {}

/// The manifest a timestamp names: enough to fetch it with a size cap and check it by
/// hash before verifying its signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRef {
    /// Its epoch.
    pub epoch: u64,
    /// Its serial.
    pub serial: u64,
    /// SHA-256 of its exact bytes.
    pub sha256: Sha256Sum,
    /// Its size in bytes.
    pub size: u64,
}

impl Timestamp {
    /// Parses a timestamp (not its signatures). Use [`crate::verify`] to trust one.
    pub fn parse(bytes: &[u8]) -> Result<Timestamp, VerifyError> {
        parse(Document::Timestamp, bytes)
    }

    /// The timestamp as TOML, ready to sign.
    pub fn render(&self) -> Result<String, toml::ser::Error> {
        render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_then_parse_is_identity() {
        let t = Timestamp {
            schema: Schema,
            kind: TimestampKind,
            deployment: "00112233445566778899aabbccddeeff".parse().unwrap(),
            version: 1_795_298_400,
            expires: Time::from_unix(1_795_298_400 + DEFAULT_TIMESTAMP_TTL_SECS).unwrap(),
            manifest: ManifestRef {
                epoch: 1,
                serial: 1042,
                sha256: Sha256Sum::of(b"m"),
                size: 18_342,
            },
        };
        let text = t.render().unwrap();
        assert!(text.len() < 1024, "{text}");
        assert_eq!(Timestamp::parse(text.as_bytes()).unwrap(), t);
    }
}
