//! Join tokens: an administrator's one-time, expiring permission for one new member to
//! ask the master to enrol its key.
//!
//! A token is one line an operator can paste (about 300 characters):
//!
//! ```text
//! tenet-join-v1:DEPLOYMENT:MEMBER:ID:ISSUED:EXPIRES:APPROVAL:CLASSES:KEYID:SIGNATURE
//! ```
//!
//! `DEPLOYMENT` (32 hex), `MEMBER` (a member name), `ID` (128 random bits, 32 hex),
//! `ISSUED` and `EXPIRES` (unix seconds), `APPROVAL` (`manual` or `auto`), `CLASSES`
//! (comma-separated, maybe empty), then the signer's key id and its ed25519 signature
//! (128 hex) over everything before `:KEYID`, with the `tenet-join-v1` context. No field
//! can hold a `:` (names and classes never do), so the split is unambiguous.
//!
//! [`verify`] checks, in order: size; shape (ten fields); that the signer is a key of
//! the root, of the admin role; the signature over the raw payload; only then the
//! fields; deployment; the signer's scope (member, then each class); not yet valid (with
//! a clock-skew bound); expired. One-time use is the holder's part: the master records
//! each accepted id in a [`UsedTokens`] file before it stores the request.
//!
//! A stored [`JoinRequest`] (the master's `join_dir/requests/MEMBER.toml`) carries the
//! token itself, so `tenet-keys approve` verifies it again against the deployment's own
//! root rather than trusting the master's checks; what it must take from the master is
//! the binding of the key id to the token (the master saw the key prove itself in the
//! TLS handshake).
//!
//! **Invariant:** no field of a token is interpreted before its signature verified over
//! the exact payload bytes.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::error::JoinError;
use crate::fsio::{self, Overwrite};
use crate::hex;
use crate::id::{DeploymentId, KeyId, Nonce};
use crate::key::{Context, Role, SecretKey, Signature};
use crate::manifest::is_valid_name;
use crate::root::{Root, is_class_name};
use crate::time::Time;

/// The first field of every token.
pub const TOKEN_PREFIX: &str = "tenet-join-v1";
/// Largest token accepted.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// The longest a token may be valid: `expires - issued`.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// How far in the future `issued` may be (the members' clock skew bound).
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(120);
/// Most classes a token may name.
pub const MAX_CLASSES: usize = 32;
/// Where the master keeps stored requests, under its join directory.
pub const REQUESTS_DIR: &str = "requests";
/// The master's record of used token ids, in its join directory.
pub const USED_FILE: &str = "used-tokens.log";

/// How a request made with the token is approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// By `tenet-keys approve NAME`.
    Manual,
    /// By `tenet-keys approve --auto`, with every other auto request.
    Auto,
}

impl Approval {
    /// The word in a token.
    pub fn name(self) -> &'static str {
        match self {
            Approval::Manual => "manual",
            Approval::Auto => "auto",
        }
    }
}

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The deployment whose root lists the signer.
    pub deployment: DeploymentId,
    /// The one member name it may enrol.
    pub member: String,
    /// Random; the master accepts it once.
    pub id: Nonce,
    /// When it was made.
    pub issued: Time,
    /// After this the master refuses it.
    pub expires: Time,
    /// How its request is approved.
    pub approval: Approval,
    /// Classes the member is enrolled with.
    pub classes: Vec<String>,
}

/// A token's parts, parsed but not yet trusted.
#[derive(Debug, Clone)]
pub struct SignedToken {
    payload: String,
    /// The key that says it signed.
    pub signer: KeyId,
    signature: Signature,
}

impl JoinToken {
    /// A token for `member` valid from `now` for `lifetime`, with a fresh id.
    pub fn new(
        deployment: DeploymentId,
        member: &str,
        now: Time,
        lifetime: Duration,
        approval: Approval,
        classes: Vec<String>,
    ) -> Result<JoinToken, JoinError> {
        let malformed = |reason: String| JoinError::Malformed { reason };
        if lifetime > MAX_LIFETIME || lifetime.is_zero() {
            return Err(malformed(format!(
                "a token lives more than 0s and at most {}d",
                MAX_LIFETIME.as_secs() / 86_400
            )));
        }
        let expires = now
            .checked_add(lifetime)
            .ok_or_else(|| malformed("expiry out of range".to_string()))?;
        let token = JoinToken {
            deployment,
            member: member.to_string(),
            id: Nonce::generate().map_err(|source| JoinError::Random { source })?,
            issued: now,
            expires,
            approval,
            classes,
        };
        token.check_fields()?;
        Ok(token)
    }

    /// The signed text: every field before `:KEYID`.
    fn payload(&self) -> String {
        format!(
            "{TOKEN_PREFIX}:{}:{}:{}:{}:{}:{}:{}",
            self.deployment,
            self.member,
            self.id,
            self.issued.unix(),
            self.expires.unix(),
            self.approval.name(),
            self.classes.join(",")
        )
    }

    /// The token as handed to an operator, signed with `key`.
    pub fn issue(&self, key: &SecretKey) -> String {
        let payload = self.payload();
        let sig = key.sign(Context::JoinToken, payload.as_bytes());
        format!(
            "{payload}:{}:{}",
            key.key_id(),
            hex::encode(&sig.to_bytes())
        )
    }

    fn check_fields(&self) -> Result<(), JoinError> {
        let malformed = |reason: String| JoinError::Malformed { reason };
        if !is_valid_name(&self.member) {
            return Err(malformed(format!(
                "member {:?} is not a valid member name",
                self.member
            )));
        }
        if self.classes.len() > MAX_CLASSES {
            return Err(malformed(format!("more than {MAX_CLASSES} classes")));
        }
        if let Some(c) = self.classes.iter().find(|c| !is_class_name(c)) {
            return Err(malformed(format!("class {c:?} is not a valid class name")));
        }
        if self.expires <= self.issued
            || self.expires.unix() - self.issued.unix() > MAX_LIFETIME.as_secs()
        {
            return Err(malformed(
                "expires must be after issued, within the maximum lifetime".to_string(),
            ));
        }
        Ok(())
    }
}

/// Splits a token into its payload, signer and signature, interpreting nothing else.
pub fn split(text: &str) -> Result<SignedToken, JoinError> {
    let malformed = |reason: &str| JoinError::Malformed {
        reason: reason.to_string(),
    };
    let text = text.trim();
    if text.len() > MAX_TOKEN_BYTES {
        return Err(malformed("longer than a token can be"));
    }
    let (rest, sig) = text
        .rsplit_once(':')
        .ok_or_else(|| malformed("no signature"))?;
    let (payload, signer) = rest
        .rsplit_once(':')
        .ok_or_else(|| malformed("no signer"))?;
    if !payload.starts_with(TOKEN_PREFIX) || payload.split(':').count() != 8 {
        return Err(malformed("not a tenet-join-v1 token"));
    }
    let signer = signer
        .parse::<KeyId>()
        .map_err(|_| malformed("the signer is not a key id"))?;
    let sig = hex::decode_array::<64>(sig).map_err(|_| malformed("the signature is not hex"))?;
    Ok(SignedToken {
        payload: payload.to_string(),
        signer,
        signature: Signature::from_bytes(sig),
    })
}

impl SignedToken {
    /// The fields, unverified: for a member to show what it presents, never to decide.
    pub fn unverified(&self) -> Result<JoinToken, JoinError> {
        parse_payload(&self.payload)
    }
}

/// Checks `text` against `root` at `now` (see the module docs for the order) and returns
/// what it allows. It does not look at reuse: that is [`UsedTokens`]'s.
pub fn verify(
    root: &Root,
    text: &str,
    now: Time,
    max_skew: Duration,
) -> Result<JoinToken, JoinError> {
    let signed = split(text)?;
    let keyid = signed.signer;
    let Some(entry) = root.key(&keyid) else {
        return Err(JoinError::UnknownKey {
            keyid,
            root_version: root.version,
        });
    };
    if !root.has_role_key(Role::Admin, &keyid) {
        return Err(JoinError::NotAdmin {
            keyid,
            name: entry.name.clone(),
        });
    }
    if !entry.public.verify(
        Context::JoinToken,
        signed.payload.as_bytes(),
        &signed.signature,
    ) {
        return Err(JoinError::BadSignature { keyid });
    }
    let token = parse_payload(&signed.payload)?;
    if token.deployment != root.deployment {
        return Err(JoinError::WrongDeployment {
            expected: root.deployment,
            found: token.deployment,
        });
    }
    let scope = root.admin_scope(&keyid);
    if !scope.is_some_and(|s| s.allows_member(&token.member)) {
        return Err(JoinError::OutOfScope {
            keyid,
            what: format!("member {}", token.member),
        });
    }
    if let Some(c) = token
        .classes
        .iter()
        .find(|c| !scope.is_some_and(|s| s.allows_class(c)))
    {
        return Err(JoinError::OutOfScope {
            keyid,
            what: format!("class {c}"),
        });
    }
    if token.issued.unix() > now.unix().saturating_add(max_skew.as_secs()) {
        return Err(JoinError::NotYetValid {
            issued: token.issued,
            now,
        });
    }
    if now >= token.expires {
        return Err(JoinError::Expired {
            expires: token.expires,
            now,
        });
    }
    Ok(token)
}

fn parse_payload(payload: &str) -> Result<JoinToken, JoinError> {
    let malformed = |field: &str| JoinError::Malformed {
        reason: format!("field {field} is invalid"),
    };
    let f: Vec<&str> = payload.split(':').collect();
    let [
        prefix,
        deployment,
        member,
        id,
        issued,
        expires,
        approval,
        classes,
    ] = f.as_slice()
    else {
        return Err(malformed("count"));
    };
    if *prefix != TOKEN_PREFIX {
        return Err(malformed("prefix"));
    }
    let time = |s: &str, field: &str| {
        s.parse::<u64>()
            .ok()
            .and_then(Time::from_unix)
            .ok_or_else(|| malformed(field))
    };
    let token = JoinToken {
        deployment: deployment.parse().map_err(|_| malformed("deployment"))?,
        member: (*member).to_string(),
        id: id.parse().map_err(|_| malformed("id"))?,
        issued: time(issued, "issued")?,
        expires: time(expires, "expires")?,
        approval: match *approval {
            "manual" => Approval::Manual,
            "auto" => Approval::Auto,
            _ => return Err(malformed("approval")),
        },
        classes: if classes.is_empty() {
            Vec::new()
        } else {
            classes.split(',').map(str::to_string).collect()
        },
    };
    token.check_fields()?;
    Ok(token)
}

/// A request the master stored: `join_dir/requests/MEMBER.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The member name asked for (the token's).
    pub member: String,
    /// The key that proved itself in the TLS handshake.
    pub keyid: KeyId,
    /// When the master accepted it (the token was valid then).
    pub received: Time,
    /// How it is approved (the token's).
    pub approval: Approval,
    /// The classes the token names.
    #[serde(default)]
    pub classes: Vec<String>,
    /// The token itself, verified again at approval.
    pub token: String,
}

impl JoinRequest {
    /// Stores the request as `dir/requests/MEMBER.toml` (replacing an earlier one for
    /// the same member: each came with its own one-time token).
    pub fn store(&self, dir: &Path) -> Result<PathBuf, JoinError> {
        let requests = dir.join(REQUESTS_DIR);
        fs::create_dir_all(&requests).map_err(|source| JoinError::Io {
            what: "create",
            path: requests.clone(),
            source,
        })?;
        let path = requests.join(format!("{}.toml", self.member));
        let text = toml::to_string(self).map_err(|e| JoinError::Malformed {
            reason: e.to_string(),
        })?;
        fsio::write_atomic(&path, text.as_bytes(), 0o644, Overwrite::Replace).map_err(
            |source| JoinError::Io {
                what: "write",
                path: path.clone(),
                source,
            },
        )?;
        Ok(path)
    }
}

/// The stored requests in `dir` (a join directory), by member name.
pub fn requests(dir: &Path) -> Result<Vec<(PathBuf, JoinRequest)>, JoinError> {
    let requests = dir.join(REQUESTS_DIR);
    let entries = match fs::read_dir(&requests) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JoinError::Io {
                what: "read",
                path: requests,
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| JoinError::Io {
            what: "read",
            path: requests.clone(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        out.push((path.clone(), read_request(&path)?));
    }
    out.sort_by(|a, b| a.1.member.cmp(&b.1.member));
    Ok(out)
}

fn read_request(path: &Path) -> Result<JoinRequest, JoinError> {
    let text = fs::read_to_string(path).map_err(|source| JoinError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| JoinError::BadRequest {
        path: path.to_path_buf(),
        source,
    })
}

/// The token ids a master accepted: `join_dir/used-tokens.log`, one `ID EXPIRES` line
/// each, appended and `fdatasync`ed before the request is stored, so a replay is refused
/// after a restart too. Lines of tokens long expired are ignored when read (tokens are
/// few: the file is not compacted).
#[derive(Debug)]
pub struct UsedTokens {
    path: PathBuf,
    ids: HashSet<Nonce>,
}

impl UsedTokens {
    /// Reads `path` (absent: none used).
    pub fn open(path: &Path) -> Result<UsedTokens, JoinError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(JoinError::Io {
                    what: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        // A torn last line (a crash mid-append) is not a valid id: skipped.
        let ids = text
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        Ok(UsedTokens {
            path: path.to_path_buf(),
            ids,
        })
    }

    /// Records `token`'s id, durably; refuses one recorded before.
    pub fn record(&mut self, token: &JoinToken) -> Result<(), JoinError> {
        if self.ids.contains(&token.id) {
            return Err(JoinError::Used { id: token.id });
        }
        let io_err = |source| JoinError::Io {
            what: "append to",
            path: self.path.clone(),
            source,
        };
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err)?;
        f.write_all(format!("{} {}\n", token.id, token.expires.unix()).as_bytes())
            .map_err(io_err)?;
        f.sync_data().map_err(io_err)?;
        self.ids.insert(token.id);
        Ok(())
    }
}

/// The administrator's side of joins, in the deployment directory: `joins.toml` lists
/// the token ids approved and each member's last revocation.
pub const JOINS_FILE: &str = "joins.toml";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinsFile {
    #[serde(default)]
    approved: Vec<Nonce>,
    #[serde(default, rename = "revoked")]
    revocations: Vec<Revocation>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Revocation {
    member: String,
    at: Time,
}

/// The deployment's join record.
#[derive(Debug)]
pub struct Joins {
    path: PathBuf,
    file: JoinsFile,
}

impl Joins {
    /// Reads `deployment_dir/joins.toml` (absent: empty).
    pub fn open(deployment_dir: &Path) -> Result<Joins, JoinError> {
        let path = deployment_dir.join(JOINS_FILE);
        let file = match fs::read_to_string(&path) {
            Ok(t) => toml::from_str(&t).map_err(|source| JoinError::BadRequest {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => JoinsFile::default(),
            Err(source) => {
                return Err(JoinError::Io {
                    what: "read",
                    path,
                    source,
                });
            }
        };
        Ok(Joins { path, file })
    }

    /// Records that `member` was revoked at `at`: tokens issued before are refused.
    pub fn revoked(&mut self, member: &str, at: Time) -> Result<(), JoinError> {
        self.file.revocations.retain(|r| r.member != member);
        self.file.revocations.push(Revocation {
            member: member.to_string(),
            at,
        });
        self.save()
    }

    /// Checks that `token` may still enrol: not approved before, its member not revoked
    /// since it was issued.
    pub fn check(&self, token: &JoinToken) -> Result<(), JoinError> {
        if self.file.approved.contains(&token.id) {
            return Err(JoinError::Used { id: token.id });
        }
        if let Some(r) = self
            .file
            .revocations
            .iter()
            .find(|r| r.member == token.member && r.at >= token.issued)
        {
            return Err(JoinError::RevokedSince {
                member: token.member.clone(),
                id: token.id,
                issued: token.issued,
                revoked: r.at,
            });
        }
        Ok(())
    }

    /// Records `token` as approved.
    pub fn approved(&mut self, token: &JoinToken) -> Result<(), JoinError> {
        self.file.approved.push(token.id);
        self.save()
    }

    fn save(&self) -> Result<(), JoinError> {
        let text = toml::to_string(&self.file).map_err(|e| JoinError::Malformed {
            reason: e.to_string(),
        })?;
        fsio::write_atomic(&self.path, text.as_bytes(), 0o644, Overwrite::Replace).map_err(
            |source| JoinError::Io {
                what: "write",
                path: self.path.clone(),
                source,
            },
        )
    }
}

#[cfg(test)]
mod tests;
