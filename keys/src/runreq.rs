//! Run requests: an administrator asks one member to converge now.
//!
//! A request can only say "converge now against the latest verified policy", as a dry
//! run or not, with a few classes set for that run. It never carries a command, a file
//! or policy. It is signed detached, with the `tenet-runreq-v1` context, by a key of the
//! root's admin role, and the root's `[[admin_scope]]` of that key bounds the members it
//! may name and the classes it may set.
//!
//! ```toml
//! # signed over these exact bytes, context "tenet-runreq-v1"
//! schema = 1
//! kind = "runreq"
//! deployment = "1f63766877b11c62791bb77c0ea94006"
//! member = "alpha"                        # exactly one target member
//! nonce = "5be0a4f1c2d3e4f5a6b7c8d9e0f1a2b3"  # random 128 bits; accepted once
//! issued = 2026-11-21T22:10:00Z
//! expires = 2026-11-21T22:15:00Z          # at most 15 minutes after issued
//! dry_run = false
//! classes = ["maint_restart"]             # each allowed by the signer's scope
//! ```
//!
//! On the wire the bytes travel as they were signed and the signatures beside them
//! ([`signature_header`]: `KEYID:SIG`, comma-separated).
//!
//! [`verify`] checks, in order: size; that it is signed at all; every signature over the
//! raw bytes (a signer outside the admin role is refused by name); the admin threshold;
//! only then the parse (strict, `schema`, `kind`, field rules); deployment; target
//! member; lifetime; not yet valid (with a clock-skew bound); expired (by the later of
//! the clock and the last time the cache accepted a request); that the TLS peer is a
//! signer; the signers' scopes (member, then classes); and last the nonce against the
//! member's [`ReplayCache`] (not seen before, within its key's quota and the cache's
//! size), which records it. Every refusal is its own
//! [`RunRequestError`] variant with a stable [`RunRequestError::code`].
//!
//! **Invariant:** nothing of a request is parsed before its signatures verified over the
//! exact bytes; a nonce is recorded only for a request that passed every other check.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::document::{Document, MAX_RUNREQ_BYTES, RunRequestKind, Schema, parse, render};
use crate::error::VerifyError;
use crate::id::{DeploymentId, KeyId, Nonce};
use crate::key::{Role, SecretKey, Signature};
use crate::manifest::is_valid_name;
use crate::root::{Root, is_class_name};
use crate::sig::SignatureEntry;
use crate::time::Time;

pub use replay::{
    COMPACT_SLACK, MAX_REPLAY_ENTRIES, MAX_REPLAY_ENTRIES_PER_KEY, ReplayCache, ReplayCacheError,
};

/// The longest a request may be valid: `expires - issued`.
pub const MAX_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How far in the future `issued` may be by default (the members' clock skew bound).
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(120);
/// Most classes one request may set.
pub const MAX_CLASSES: usize = 32;
/// Most signatures read from one request.
pub const MAX_REQUEST_SIGNATURES: usize = 8;
/// The HTTP header carrying the signatures.
pub const SIGNATURE_HEADER: &str = "tenet-signature";

/// A parsed run request. Build one with [`RunRequest::new`], sign it with [`sign`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Always 1.
    pub schema: Schema,
    /// Always `"runreq"`.
    pub kind: RunRequestKind,
    /// The deployment whose root lists the signer.
    pub deployment: DeploymentId,
    /// The one member that may act on it.
    pub member: String,
    /// Random; a member accepts it once.
    pub nonce: Nonce,
    /// When it was made.
    pub issued: Time,
    /// After this it is refused; at most [`MAX_LIFETIME`] after `issued`.
    pub expires: Time,
    /// Report what would change, change nothing.
    pub dry_run: bool,
    /// Classes set for this run only.
    #[serde(default)]
    pub classes: Vec<String>,
}

impl crate::document::Headed for RunRequest {}

/// How a run should go: apply or dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Converge.
    Apply,
    /// Report what would change.
    DryRun,
}

/// A request's exact bytes and its detached signatures, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRunRequest {
    /// The signed bytes.
    pub bytes: Vec<u8>,
    /// The signatures over them.
    pub signatures: Vec<SignatureEntry>,
}

/// What an accepted request asks, and who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The request.
    pub request: RunRequest,
    /// The admin keys whose valid signatures counted, in signature order.
    pub signers: Vec<KeyId>,
}

/// Why a run request was refused. [`RunRequestError::code`] names each for the wire.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunRequestError {
    /// Larger than [`MAX_RUNREQ_BYTES`].
    #[error("run request of {size} bytes is over the {max}-byte cap")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// No signature came with it.
    #[error("run request is not signed")]
    Unsigned,
    /// The signature header is not `KEYID:SIG[,KEYID:SIG]`.
    #[error("run request signatures are malformed: {reason}")]
    SignatureHeader {
        /// What is wrong.
        reason: String,
    },
    /// A signature by an admin key does not verify over the bytes.
    #[error("run request signature by admin key {keyid} does not verify")]
    BadSignature {
        /// The admin key.
        keyid: KeyId,
    },
    /// The signer is not a key the trusted root lists.
    #[error(
        "run request is signed by key {keyid}, which the trusted root (version {root_version}) does not list"
    )]
    UnknownKey {
        /// The signer.
        keyid: KeyId,
        /// The root checked against.
        root_version: u64,
    },
    /// The signer is a key of the root, but not of the admin role.
    #[error("run request is signed by key {keyid} ({name}), which is not an admin key")]
    NotAdmin {
        /// The signer.
        keyid: KeyId,
        /// Its name in the root.
        name: String,
    },
    /// Fewer distinct admin keys signed than the admin role's threshold.
    #[error("run request has {valid} valid admin signatures; the admin role needs {threshold}")]
    Threshold {
        /// Distinct admin keys whose signature verified.
        valid: usize,
        /// The admin threshold.
        threshold: u32,
    },
    /// The signed bytes are not a run request.
    #[error("run request is malformed")]
    Malformed {
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// A field breaks its rule (member name, class names, class count).
    #[error("run request field {field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Made for another deployment.
    #[error("run request is for deployment {found}, not this member's deployment {expected}")]
    WrongDeployment {
        /// This member's deployment.
        expected: DeploymentId,
        /// The request's.
        found: DeploymentId,
    },
    /// Made for another member.
    #[error("run request is for member {found:?}, not this member ({expected})")]
    WrongMember {
        /// This member.
        expected: String,
        /// The request's target.
        found: String,
    },
    /// `expires` is not after `issued`, or more than [`MAX_LIFETIME`] after it.
    #[error(
        "run request is valid from {issued} to {expires}; at most {max_secs} seconds are allowed"
    )]
    Lifetime {
        /// Issued.
        issued: Time,
        /// Expires.
        expires: Time,
        /// The cap in seconds.
        max_secs: u64,
    },
    /// Issued further in the future than the clock skew bound allows.
    #[error(
        "run request is not yet valid: issued {issued}, now {now} (clock skew bound {skew_secs}s)"
    )]
    NotYetValid {
        /// Issued.
        issued: Time,
        /// This member's time.
        now: Time,
        /// The bound in seconds.
        skew_secs: u64,
    },
    /// Expired.
    #[error("run request expired at {expires} (now {now})")]
    Expired {
        /// Expires.
        expires: Time,
        /// This member's time.
        now: Time,
    },
    /// The connection's client key is not one of the signers.
    #[error("run request is signed by {signers} but arrived from key {peer}")]
    PeerNotSigner {
        /// The TLS client's key.
        peer: KeyId,
        /// The signers.
        signers: crate::id::KeyIds,
    },
    /// The signer's scope does not name the target member.
    #[error("admin key {keyid} may not trigger runs on member {member}")]
    MemberOutOfScope {
        /// The signer.
        keyid: KeyId,
        /// The target member.
        member: String,
    },
    /// The signer's scope does not allow a class.
    #[error("admin key {keyid} may not set class {class}")]
    ClassOutOfScope {
        /// The signer.
        keyid: KeyId,
        /// The class.
        class: String,
    },
    /// The nonce was accepted before (a replay).
    #[error("run request nonce {nonce} was already used (replay)")]
    Replayed {
        /// The nonce.
        nonce: Nonce,
    },
    /// The signing key already has its quota of unexpired nonces in the replay cache.
    #[error(
        "key {keyid} has {entries} unexpired run requests in the replay cache (its quota); try again later"
    )]
    ReplayQuota {
        /// The key the request counts against.
        keyid: KeyId,
        /// Its entries.
        entries: usize,
    },
    /// The replay cache is full of unexpired nonces.
    #[error("the replay cache holds {entries} unexpired nonces; try again later")]
    ReplayCacheFull {
        /// Entries.
        entries: usize,
    },
    /// The request could not be rendered (when making one).
    #[error("cannot render the run request")]
    Render {
        /// Why.
        #[source]
        source: toml::ser::Error,
    },
    /// No random nonce could be made.
    #[error("cannot make a random nonce: {reason}")]
    Random {
        /// Why.
        reason: String,
    },
}

impl RunRequestError {
    /// A stable, machine-readable name for the refusal (the wire's `reason`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "oversized",
            Self::Unsigned => "unsigned",
            Self::SignatureHeader { .. } => "malformed_signature",
            Self::BadSignature { .. } => "bad_signature",
            Self::UnknownKey { .. } => "unknown_key",
            Self::NotAdmin { .. } => "not_admin",
            Self::Threshold { .. } => "threshold",
            Self::Malformed { .. } | Self::Field { .. } => "malformed",
            Self::WrongDeployment { .. } => "wrong_deployment",
            Self::WrongMember { .. } => "wrong_member",
            Self::Lifetime { .. } => "lifetime",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::Expired { .. } => "expired",
            Self::PeerNotSigner { .. } => "peer_not_signer",
            Self::MemberOutOfScope { .. } => "member_out_of_scope",
            Self::ClassOutOfScope { .. } => "class_out_of_scope",
            Self::Replayed { .. } => "replayed",
            Self::ReplayQuota { .. } => "replay_quota",
            Self::ReplayCacheFull { .. } => "replay_cache_full",
            Self::Render { .. } => "render",
            Self::Random { .. } => "random",
        }
    }
}

impl RunRequest {
    /// A request for `member` with a fresh random nonce, valid from `issued` for
    /// `lifetime` (at most [`MAX_LIFETIME`]).
    pub fn new(
        deployment: DeploymentId,
        member: &str,
        issued: Time,
        lifetime: Duration,
        mode: RunMode,
        classes: Vec<String>,
    ) -> Result<RunRequest, RunRequestError> {
        let nonce = Nonce::generate().map_err(|e| RunRequestError::Random {
            reason: e.to_string(),
        })?;
        let expires = issued.checked_add(lifetime).unwrap_or(issued);
        let request = RunRequest {
            schema: Schema,
            kind: RunRequestKind,
            deployment,
            member: member.to_string(),
            nonce,
            issued,
            expires,
            dry_run: mode == RunMode::DryRun,
            classes,
        };
        request.check_fields()?;
        request.check_lifetime()?;
        Ok(request)
    }

    /// Parses (strictly) bytes whose signatures were already verified.
    fn parse(bytes: &[u8]) -> Result<RunRequest, RunRequestError> {
        let request: RunRequest = parse(Document::RunRequest, bytes)
            .map_err(|source| RunRequestError::Malformed { source })?;
        request.check_fields()?;
        Ok(request)
    }

    /// The request as TOML, ready to sign.
    pub fn render(&self) -> Result<String, RunRequestError> {
        render(self).map_err(|source| RunRequestError::Render { source })
    }

    /// The mode asked for.
    pub fn mode(&self) -> RunMode {
        if self.dry_run {
            RunMode::DryRun
        } else {
            RunMode::Apply
        }
    }

    fn check_fields(&self) -> Result<(), RunRequestError> {
        if !is_valid_name(&self.member) {
            return Err(RunRequestError::Field {
                field: "member",
                reason: format!("{:?} is not a member name", self.member),
            });
        }
        if self.classes.len() > MAX_CLASSES {
            return Err(RunRequestError::Field {
                field: "classes",
                reason: format!("{} classes; at most {MAX_CLASSES}", self.classes.len()),
            });
        }
        if let Some(bad) = self.classes.iter().find(|c| !is_class_name(c)) {
            return Err(RunRequestError::Field {
                field: "classes",
                reason: format!(
                    "{bad:?} is not a class name (1 to 64 letters, digits, _ - ., not starting with -)"
                ),
            });
        }
        Ok(())
    }

    fn check_lifetime(&self) -> Result<(), RunRequestError> {
        let life = self.expires.unix().checked_sub(self.issued.unix());
        match life {
            Some(secs) if secs > 0 && secs <= MAX_LIFETIME.as_secs() => Ok(()),
            _ => Err(RunRequestError::Lifetime {
                issued: self.issued,
                expires: self.expires,
                max_secs: MAX_LIFETIME.as_secs(),
            }),
        }
    }
}

/// Renders and signs `request` with the admin key `key`.
pub fn sign(request: &RunRequest, key: &SecretKey) -> Result<SignedRunRequest, RunRequestError> {
    let bytes = request.render()?.into_bytes();
    let sig = key.sign(Document::RunRequest.context(), &bytes);
    Ok(SignedRunRequest {
        signatures: vec![SignatureEntry {
            keyid: key.key_id(),
            sig,
        }],
        bytes,
    })
}

/// The signatures as the [`SIGNATURE_HEADER`] value: `KEYID:SIG`, comma-separated.
pub fn signature_header(signatures: &[SignatureEntry]) -> String {
    signatures
        .iter()
        .map(|s| format!("{}:{}", s.keyid, crate::hex::encode(&s.sig.to_bytes())))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a [`SIGNATURE_HEADER`] value; an empty or absent value is [`RunRequestError::Unsigned`].
pub fn parse_signature_header(text: &str) -> Result<Vec<SignatureEntry>, RunRequestError> {
    let bad = |reason: String| RunRequestError::SignatureHeader { reason };
    let text = text.trim();
    if text.is_empty() {
        return Err(RunRequestError::Unsigned);
    }
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() > MAX_REQUEST_SIGNATURES {
        return Err(bad(format!(
            "{} signatures; at most {MAX_REQUEST_SIGNATURES}",
            parts.len()
        )));
    }
    parts
        .into_iter()
        .map(|part| {
            let (keyid, sig) = part
                .split_once(':')
                .ok_or_else(|| bad("expected KEYID:SIG".to_string()))?;
            let keyid: KeyId = keyid.parse().map_err(|e| bad(format!("key id: {e}")))?;
            let sig =
                crate::hex::decode_array::<64>(sig).map_err(|e| bad(format!("signature: {e}")))?;
            Ok(SignatureEntry {
                keyid,
                sig: Signature::from_bytes(sig),
            })
        })
        .collect()
}

/// What the member checking a request knows about itself.
#[derive(Debug, Clone)]
pub struct Verifier<'a> {
    /// The member's trusted root (the newest it verified).
    pub root: &'a Root,
    /// The member's own name.
    pub member: &'a str,
    /// The TLS client's key id, when the request came over a connection; it must be a signer.
    pub peer: Option<KeyId>,
    /// The member's clock.
    pub now: Time,
    /// How far in the future `issued` may be.
    pub max_skew: Duration,
}

/// Checks a signed request (see the module docs for the order) and, if every check
/// passes, records its nonce in `seen`. The caller persists `seen`
/// ([`ReplayCache::persist`]) before acting.
pub fn verify(
    v: &Verifier<'_>,
    bytes: &[u8],
    signatures: &[SignatureEntry],
    seen: &mut ReplayCache,
) -> Result<Accepted, RunRequestError> {
    let size = bytes.len() as u64;
    if size > MAX_RUNREQ_BYTES {
        return Err(RunRequestError::TooLarge {
            size,
            max: MAX_RUNREQ_BYTES,
        });
    }
    if signatures.is_empty() {
        return Err(RunRequestError::Unsigned);
    }
    let root = v.root;
    let context = Document::RunRequest.context();
    let mut signers: Vec<KeyId> = Vec::new();
    let mut distinct: BTreeSet<[u8; 32]> = BTreeSet::new();
    for entry in signatures {
        let Some(key) = root.key(&entry.keyid) else {
            return Err(RunRequestError::UnknownKey {
                keyid: entry.keyid,
                root_version: root.version,
            });
        };
        if !root.has_role_key(Role::Admin, &entry.keyid) {
            return Err(RunRequestError::NotAdmin {
                keyid: entry.keyid,
                name: key.name.clone(),
            });
        }
        if !key.public.verify(context, bytes, &entry.sig) {
            return Err(RunRequestError::BadSignature { keyid: entry.keyid });
        }
        if distinct.insert(key.public.to_bytes()) {
            signers.push(entry.keyid);
        }
    }
    let threshold = root.roles.admin.threshold;
    if threshold == 0 || signers.len() < threshold as usize {
        return Err(RunRequestError::Threshold {
            valid: signers.len(),
            threshold,
        });
    }

    let request = RunRequest::parse(bytes)?;
    if request.deployment != root.deployment {
        return Err(RunRequestError::WrongDeployment {
            expected: root.deployment,
            found: request.deployment,
        });
    }
    if request.member != v.member {
        return Err(RunRequestError::WrongMember {
            expected: v.member.to_string(),
            found: request.member.clone(),
        });
    }
    request.check_lifetime()?;
    let latest = v.now.checked_add(v.max_skew).unwrap_or(v.now);
    if request.issued > latest {
        return Err(RunRequestError::NotYetValid {
            issued: request.issued,
            now: v.now,
            skew_secs: v.max_skew.as_secs(),
        });
    }
    // Not before the latest time a request was accepted: a clock stepped back does not
    // make an expired request (whose nonce may be forgotten) valid again.
    let now = seen.clock(v.now);
    if now >= request.expires {
        return Err(RunRequestError::Expired {
            expires: request.expires,
            now,
        });
    }
    if let Some(peer) = v.peer
        && !signers.contains(&peer)
    {
        return Err(RunRequestError::PeerNotSigner {
            peer,
            signers: crate::id::KeyIds(signers),
        });
    }
    for keyid in &signers {
        let scope = root.admin_scope(keyid);
        if !scope.is_some_and(|s| s.allows_member(&request.member)) {
            return Err(RunRequestError::MemberOutOfScope {
                keyid: *keyid,
                member: request.member.clone(),
            });
        }
        if let Some(class) = request
            .classes
            .iter()
            .find(|c| !scope.is_some_and(|s| s.allows_class(c)))
        {
            return Err(RunRequestError::ClassOutOfScope {
                keyid: *keyid,
                class: class.clone(),
            });
        }
    }
    // A nonce is kept for the skew bound past its expiry.
    seen.prune(now, v.max_skew);
    if seen.contains(&request.nonce) {
        return Err(RunRequestError::Replayed {
            nonce: request.nonce,
        });
    }
    // Counted against the connection's key (a signer), else the first signer.
    let Some(&key) = v.peer.as_ref().or(signers.first()) else {
        return Err(RunRequestError::Unsigned);
    };
    if seen.count_for(&key) >= MAX_REPLAY_ENTRIES_PER_KEY {
        return Err(RunRequestError::ReplayQuota {
            keyid: key,
            entries: seen.count_for(&key),
        });
    }
    if seen.len() >= MAX_REPLAY_ENTRIES {
        return Err(RunRequestError::ReplayCacheFull {
            entries: seen.len(),
        });
    }
    seen.record(request.nonce, request.expires, key, now);
    Ok(Accepted { request, signers })
}

mod replay;
#[cfg(test)]
mod tests;
