//! `tenet-agent join`: a new member asks the master to enrol it, with an
//! administrator's one-time token.
//!
//! In order: the trusted root file's SHA-256 must be the fingerprint the operator was
//! given (`--expect-fingerprint`, as `tenet-keys init` and `tenet-keys fingerprint`
//! print it), and its own signatures must hold; the token must be this deployment's;
//! the node key is read, or made if there is none; then one TLS connection to the
//! master, the server pinned to the `[transport] server_spki` keys of that root and the
//! node key as the client certificate (so the master sees the very key it will store
//! prove itself), and `POST /v1/join` with the member name and the token. The master
//! checks the token and stores the request; an administrator approves it
//! (`tenet-keys approve`), and the next signed serial carries the member.
//!
//! Nothing here is trusted from the master but its pinned key: what it answers is shown,
//! never acted on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::StatusCode;
use tenet_keys::join::split;
use tenet_keys::{SecretKey, Sha256Sum, TrustedRoot, bundle};

use crate::exit::ExitCode;
use crate::sync::fetch::{FetchError, Master, client_config};

/// Largest answer read from the master.
const MAX_ANSWER: u64 = 64 * 1024;

/// What `join` needs.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// The master's serving address, `host:port`.
    pub master: String,
    /// The token, as `tenet-keys join-token` printed it.
    pub token: String,
    /// The root file to trust (its `.sig` beside it).
    pub trusted_root: PathBuf,
    /// The root file's expected SHA-256 (64 hex, a `sha256:` prefix accepted).
    pub expect_fingerprint: String,
    /// The node key (made if missing).
    pub key: PathBuf,
    /// The member name asked for; the token's when `None`.
    pub member: Option<String>,
    /// Connection and request limit.
    pub timeout: Duration,
}

/// A stored join request.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The member name.
    pub member: String,
    /// The node key's id.
    pub keyid: tenet_keys::KeyId,
    /// Whether the key was made now.
    pub key_made: bool,
    /// `manual` or `auto`, as the master stored it.
    pub approval: String,
    /// The master's answer line.
    pub answer: String,
}

/// Why `join` did not store a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The expected fingerprint is not a SHA-256.
    #[error("--expect-fingerprint {0:?} is not a SHA-256 (64 hex characters)")]
    BadFingerprint(String),
    /// The root file is not the one the operator was told to expect.
    #[error("trusted root {} has fingerprint {found}, not the expected {expected}; refusing to trust it", path.display())]
    FingerprintMismatch {
        /// The file.
        path: PathBuf,
        /// Expected.
        expected: Sha256Sum,
        /// Found.
        found: Sha256Sum,
    },
    /// The root file cannot be read or does not verify.
    #[error("trusted root {}: {message}", path.display())]
    Root {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The token is not one.
    #[error("the token is unusable: {0}")]
    Token(String),
    /// The token is another deployment's.
    #[error("the token is for deployment {token}, but the trusted root is deployment {root}")]
    WrongDeployment {
        /// The token's.
        token: String,
        /// The root's.
        root: String,
    },
    /// The node key cannot be read or made.
    #[error("node key {}: {message}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The master's key is not pinned by the root.
    #[error("{0}")]
    NotPinned(String),
    /// No answer from the master.
    #[error("{0}")]
    Unreachable(String),
    /// The master refused the request.
    #[error("the master refused the join ({status}, {reason}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The refusal code.
        reason: String,
        /// Its message.
        message: String,
    },
}

impl JoinError {
    /// The exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            JoinError::BadFingerprint(_) | JoinError::Token(_) => ExitCode::Usage,
            JoinError::FingerprintMismatch { .. }
            | JoinError::WrongDeployment { .. }
            | JoinError::NotPinned(_)
            | JoinError::Refused { .. } => ExitCode::TrustRefused,
            JoinError::Root { .. } => ExitCode::TrustRefused,
            JoinError::Unreachable(_) => ExitCode::NoMaster,
            JoinError::Key { .. } => ExitCode::Environment,
        }
    }
}

/// Asks the master to enrol this member (see the module docs).
pub fn join(o: &JoinOptions) -> Result<Joined, JoinError> {
    let expected = parse_fingerprint(&o.expect_fingerprint)?;
    let root_err = |message: String| JoinError::Root {
        path: o.trusted_root.clone(),
        message,
    };
    let bytes = std::fs::read(&o.trusted_root).map_err(|e| root_err(e.to_string()))?;
    let found = Sha256Sum::of(&bytes);
    if found != expected {
        return Err(JoinError::FingerprintMismatch {
            path: o.trusted_root.clone(),
            expected,
            found,
        });
    }
    let sig_path = bundle::sig_path(&o.trusted_root);
    let sigs =
        std::fs::read(&sig_path).map_err(|e| root_err(format!("{}: {e}", sig_path.display())))?;
    let trusted = TrustedRoot::bootstrap(&bytes, &sigs, None)
        .map_err(|e| root_err(tenet_keys::error_chain(&e)))?;
    let root = trusted.root();

    let token = split(&o.token)
        .and_then(|t| t.unverified())
        .map_err(|e| JoinError::Token(tenet_keys::error_chain(&e)))?;
    if token.deployment != root.deployment {
        return Err(JoinError::WrongDeployment {
            token: token.deployment.to_string(),
            root: root.deployment.to_string(),
        });
    }
    let member = o.member.clone().unwrap_or_else(|| token.member.clone());
    let (key, key_made) = node_key(&o.key)?;

    let config = client_config(&member, &key, root.transport.server_spki.clone()).map_err(|e| {
        JoinError::Key {
            path: o.key.clone(),
            message: e.to_string(),
        }
    })?;
    let mut master =
        Master::connect(&o.master, config, o.timeout, o.timeout).map_err(fetch_error)?;
    let body = toml::to_string(&JoinBody {
        member: &member,
        token: o.token.trim(),
    })
    .map_err(|e| JoinError::Token(e.to_string()))?;
    let (status, answer) = master
        .post_answer("/v1/join", body.into_bytes(), MAX_ANSWER)
        .map_err(fetch_error)?;
    let answer = String::from_utf8_lossy(&answer).trim().to_string();
    let parsed: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    let field = |k: &str| parsed[k].as_str().unwrap_or("").to_string();
    if status != StatusCode::OK {
        return Err(JoinError::Refused {
            status: status.as_u16(),
            reason: if parsed.is_object() {
                field("reason")
            } else {
                "unknown".to_string()
            },
            message: if parsed.is_object() {
                field("message")
            } else {
                crate::escape::printable(&answer).into_owned()
            },
        });
    }
    Ok(Joined {
        member,
        keyid: key.key_id(),
        key_made,
        approval: field("approval"),
        answer,
    })
}

#[derive(serde::Serialize)]
struct JoinBody<'a> {
    member: &'a str,
    token: &'a str,
}

fn parse_fingerprint(text: &str) -> Result<Sha256Sum, JoinError> {
    let t = text.trim();
    let t = t.strip_prefix("sha256:").unwrap_or(t).to_ascii_lowercase();
    t.parse()
        .map_err(|_| JoinError::BadFingerprint(text.to_string()))
}

/// The node key at `path`, made (mode 0600) if there is no file.
fn node_key(path: &Path) -> Result<(SecretKey, bool), JoinError> {
    let key_err = |message: String| JoinError::Key {
        path: path.to_path_buf(),
        message,
    };
    if path.exists() {
        let key = SecretKey::read(path).map_err(|e| key_err(tenet_keys::error_chain(&e)))?;
        return Ok((key, false));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| key_err(e.to_string()))?;
    }
    let key = SecretKey::generate().map_err(|e| key_err(tenet_keys::error_chain(&e)))?;
    key.write(path)
        .map_err(|e| key_err(tenet_keys::error_chain(&e)))?;
    Ok((key, true))
}

fn fetch_error(e: FetchError) -> JoinError {
    match e {
        FetchError::NotPinned { .. } => JoinError::NotPinned(e.to_string()),
        other => JoinError::Unreachable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_take_a_prefix_and_either_case() {
        let hex = "ab".repeat(32);
        let want: Sha256Sum = hex.parse().unwrap();
        for text in [hex.clone(), format!("sha256:{hex}"), hex.to_uppercase()] {
            assert_eq!(parse_fingerprint(&text).unwrap(), want, "{text}");
        }
        assert!(parse_fingerprint("abc").is_err());
    }
}
