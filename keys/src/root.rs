//! `root.toml`: the deployment's trust anchor. It lists every key with its role, each
//! role's threshold, the policy epoch and the policy server's TLS pins.
//!
//! A root is accepted only through [`crate::verify`]: bootstrap (its own root keys) or
//! an update from the trusted root (exactly version N+1, old and new thresholds).
//!
//! ```toml
//! # root/2.root.toml, signed in root/2.root.toml.sig (context "tenet-root-v1")
//! schema = 1
//! kind = "root"
//! deployment = "1f63766877b11c62791bb77c0ea94006"   # 128-bit, made by init
//! version = 2                                         # exactly trusted + 1
//! expires = 2027-11-21T00:00:00Z
//! policy_epoch = 1                                    # every manifest carries it
//!
//! [roles.root]                                        # also: policy, timestamp, admin
//! keyids = ["b88b…", "ead3…", "d362…"]
//! threshold = 2
//!
//! [[key]]
//! id = "b88b…"             # SHA-256 of the SPKI DER of `public`; checked
//! alg = "ed25519"
//! public = "68aa…"         # 32 bytes, hex
//! name = "root-1"
//!
//! [[admin_scope]]         # one per admin key: what its run requests may ask for
//! keyid = "77c1…"          # a key of the admin role
//! members = ["*"]          # member names, or "*" for every member
//! classes = ["maint_*"]    # class names, "prefix*", or "*"; [] allows no classes
//!
//! [transport]
//! server_spki = ["5a06…"]  # the policy server's TLS key id(s): current, then next
//! ```
//!
//! `[[admin_scope]]` came after the first roots: a root without it parses as before, and
//! an admin key without a scope may ask for nothing.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::document::{Document, RootKind, Schema, parse, render};
use crate::error::{RootProblem, VerifyError};
use crate::id::{DeploymentId, KeyId};
use crate::key::{PublicKey, Role};
use crate::sig::RoleKeys;
use crate::time::Time;

/// A parsed `root.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Always 1.
    pub schema: Schema,
    /// Always `"root"`.
    pub kind: RootKind,
    /// The deployment this root anchors.
    pub deployment: DeploymentId,
    /// 1 for the first root; each update is exactly one more.
    pub version: u64,
    /// After this, the root is no longer trusted as the latest.
    pub expires: Time,
    /// The epoch every manifest must carry; bumped after a policy key compromise.
    pub policy_epoch: u64,
    /// Keys and thresholds per role.
    pub roles: Roles,
    /// Every key any role names.
    #[serde(rename = "key", default)]
    pub keys: Vec<KeyEntry>,
    /// What each admin key's run requests may ask for (absent in older roots).
    #[serde(rename = "admin_scope", default, skip_serializing_if = "Vec::is_empty")]
    pub admin_scopes: Vec<AdminScope>,
    /// Transport pins.
    pub transport: Transport,
}

impl crate::document::Headed for Root {}

/// The four roles of a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Signs `root.toml` (k of n, offline).
    pub root: RoleSpec,
    /// Signs `manifest.toml`.
    pub policy: RoleSpec,
    /// Signs `timestamp.toml` (online).
    pub timestamp: RoleSpec,
    /// Signs run requests (one key per operator; may be empty).
    pub admin: RoleSpec,
}

/// One role's keys and threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Key ids of the role; each must be listed in `[[key]]`.
    pub keyids: Vec<KeyId>,
    /// How many distinct keys must sign.
    pub threshold: u32,
}

/// One `[[key]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The key id; must be the key id of `public`.
    pub id: KeyId,
    /// The algorithm.
    pub alg: Alg,
    /// The public key, hex.
    pub public: PublicKey,
    /// A name for people (`root-1`, `policy`, an operator's name).
    pub name: String,
}

/// Signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Alg {
    /// Ed25519.
    #[serde(rename = "ed25519")]
    Ed25519,
}

/// One `[[admin_scope]]`: the members and classes an admin key's run requests may name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminScope {
    /// A key of the admin role.
    pub keyid: KeyId,
    /// Member names, or `"*"` for every member.
    pub members: Vec<String>,
    /// Class names, `"prefix*"`, or `"*"`; empty allows a plain "converge now" only.
    #[serde(default)]
    pub classes: Vec<String>,
}

impl AdminScope {
    /// Whether the scope names `member` (or every member).
    pub fn allows_member(&self, member: &str) -> bool {
        self.members.iter().any(|m| m == "*" || m == member)
    }

    /// Whether the scope allows setting `class`.
    pub fn allows_class(&self, class: &str) -> bool {
        self.classes.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => class.starts_with(prefix),
            None => p == class,
        })
    }
}

/// Whether `pattern` is a member pattern of a scope: `*` or a member name.
pub fn is_member_pattern(pattern: &str) -> bool {
    pattern == "*" || crate::manifest::is_valid_name(pattern)
}

/// Whether `pattern` is a class pattern of a scope: a class name, optionally followed by
/// `*` (a prefix), or `*` alone.
pub fn is_class_pattern(pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => is_class_name(prefix),
        None => is_class_name(pattern),
    }
}

/// Whether `name` is a class name a run request may carry: 1 to 64 ASCII letters,
/// digits, `_`, `-` or `.`, not starting with `-` (so a class can never be read as an
/// option of the command it is passed to).
pub fn is_class_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
}

/// `[transport]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transport {
    /// SHA-256 of the policy server's TLS SubjectPublicKeyInfo, current first, then any
    /// announced next key.
    #[serde(default)]
    pub server_spki: Vec<KeyId>,
}

impl Root {
    /// Parses and checks the structure (not the signatures) of a root. Use
    /// [`crate::verify`] to trust one.
    pub fn parse(bytes: &[u8]) -> Result<Root, VerifyError> {
        let root: Root = parse(Document::Root, bytes)?;
        root.check().map_err(|problem| VerifyError::InvalidRoot {
            version: root.version,
            problem,
        })?;
        Ok(root)
    }

    /// The root as TOML, ready to sign.
    pub fn render(&self) -> Result<String, toml::ser::Error> {
        render(self)
    }

    /// The spec of `role`.
    pub fn role(&self, role: Role) -> &RoleSpec {
        match role {
            Role::Root => &self.roles.root,
            Role::Policy => &self.roles.policy,
            Role::Timestamp => &self.roles.timestamp,
            Role::Admin => &self.roles.admin,
        }
    }

    /// The scope of the admin key `id`, if the root gives it one.
    pub fn admin_scope(&self, id: &KeyId) -> Option<&AdminScope> {
        self.admin_scopes.iter().find(|s| s.keyid == *id)
    }

    /// The `[[key]]` with this id.
    pub fn key(&self, id: &KeyId) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.id == *id)
    }

    /// Whether `id` is a key of `role`.
    pub fn has_role_key(&self, role: Role, id: &KeyId) -> bool {
        self.role(role).keyids.contains(id)
    }

    /// The public keys of `role`, with its threshold.
    pub(crate) fn role_keys(&self, role: Role) -> RoleKeys<'_> {
        let spec = self.role(role);
        RoleKeys {
            role,
            keys: spec
                .keyids
                .iter()
                .filter_map(|id| self.key(id).map(|k| (*id, &k.public)))
                .collect(),
            threshold: spec.threshold,
        }
    }

    /// The structural rules: versions from 1; every `[[key]]` id is its key's id and
    /// unique; every role names listed keys, each once, and a threshold between 1 and its
    /// key count (the admin role may be empty); each `[[admin_scope]]` belongs to a key of
    /// the admin role, once, and holds only valid patterns.
    fn check(&self) -> Result<(), RootProblem> {
        if self.version == 0 {
            return Err(RootProblem::ZeroVersion);
        }
        let mut ids = BTreeSet::new();
        for k in &self.keys {
            let computed = k.public.key_id();
            if computed != k.id {
                return Err(RootProblem::KeyIdMismatch {
                    listed: k.id,
                    computed,
                });
            }
            if !ids.insert(k.id) {
                return Err(RootProblem::DuplicateKey { keyid: k.id });
            }
            let printable = !k.name.is_empty()
                && k.name.chars().count() <= 64
                && !k.name.chars().any(char::is_control);
            if !printable {
                return Err(RootProblem::KeyName { keyid: k.id });
            }
        }
        for role in Role::ALL {
            let spec = self.role(role);
            let mut seen = BTreeSet::new();
            for id in &spec.keyids {
                if !ids.contains(id) {
                    return Err(RootProblem::UnlistedKey { role, keyid: *id });
                }
                if !seen.insert(*id) {
                    return Err(RootProblem::DuplicateRoleKey { role, keyid: *id });
                }
            }
            if spec.threshold == 0 {
                return Err(RootProblem::ZeroThreshold { role });
            }
            let empty_admin = role == Role::Admin && spec.keyids.is_empty();
            if !empty_admin && spec.threshold as usize > seen.len() {
                return Err(RootProblem::ThresholdAboveKeys {
                    role,
                    threshold: spec.threshold,
                    keys: seen.len(),
                });
            }
        }
        let mut scoped = BTreeSet::new();
        for scope in &self.admin_scopes {
            if !self.roles.admin.keyids.contains(&scope.keyid) {
                return Err(RootProblem::ScopeNotAdmin { keyid: scope.keyid });
            }
            if !scoped.insert(scope.keyid) {
                return Err(RootProblem::DuplicateScope { keyid: scope.keyid });
            }
            let bad = scope
                .members
                .iter()
                .find(|m| !is_member_pattern(m))
                .or_else(|| scope.classes.iter().find(|c| !is_class_pattern(c)));
            if let Some(pattern) = bad {
                return Err(RootProblem::ScopePattern {
                    keyid: scope.keyid,
                    pattern: pattern.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SecretKey;

    fn entry(k: &SecretKey, name: &str) -> KeyEntry {
        KeyEntry {
            id: k.key_id(),
            alg: Alg::Ed25519,
            public: k.public(),
            name: name.to_string(),
        }
    }

    fn sample() -> Root {
        let (r, p, t) = (
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
            SecretKey::from_seed(&[3; 32]),
        );
        let spec = |k: &SecretKey| RoleSpec {
            keyids: vec![k.key_id()],
            threshold: 1,
        };
        Root {
            schema: Schema,
            kind: RootKind,
            deployment: "00112233445566778899aabbccddeeff".parse().unwrap(),
            version: 1,
            expires: Time::parse_rfc3339("2027-11-21T00:00:00Z").unwrap(),
            policy_epoch: 1,
            roles: Roles {
                root: spec(&r),
                policy: spec(&p),
                timestamp: spec(&t),
                admin: RoleSpec {
                    keyids: vec![],
                    threshold: 1,
                },
            },
            keys: vec![
                entry(&r, "root-1"),
                entry(&p, "policy"),
                entry(&t, "timestamp"),
            ],
            admin_scopes: vec![],
            transport: Transport {
                server_spki: vec![t.key_id()],
            },
        }
    }

    fn check(edit: impl FnOnce(&mut Root), expected: RootProblem) {
        let mut root = sample();
        edit(&mut root);
        let text = root.render().unwrap();
        match Root::parse(text.as_bytes()) {
            Err(VerifyError::InvalidRoot { problem, .. }) => assert_eq!(problem, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }

    #[test]
    fn render_then_parse_is_identity() {
        let root = sample();
        let text = root.render().unwrap();
        assert!(text.contains("expires = 2027-11-21T00:00:00Z"), "{text}");
        assert_eq!(Root::parse(text.as_bytes()).unwrap(), root);
    }

    #[test]
    fn structural_rules() {
        check(|r| r.version = 0, RootProblem::ZeroVersion);
        let policy = SecretKey::from_seed(&[2; 32]).key_id();
        check(
            |r| r.roles.policy.threshold = 0,
            RootProblem::ZeroThreshold { role: Role::Policy },
        );
        check(
            |r| r.roles.policy.threshold = 2,
            RootProblem::ThresholdAboveKeys {
                role: Role::Policy,
                threshold: 2,
                keys: 1,
            },
        );
        check(
            |r| r.roles.policy.keyids.push(policy),
            RootProblem::DuplicateRoleKey {
                role: Role::Policy,
                keyid: policy,
            },
        );
        let stranger = SecretKey::from_seed(&[9; 32]).key_id();
        check(
            |r| r.roles.admin.keyids.push(stranger),
            RootProblem::UnlistedKey {
                role: Role::Admin,
                keyid: stranger,
            },
        );
        check(
            |r| r.keys[1].id = stranger,
            RootProblem::KeyIdMismatch {
                listed: stranger,
                computed: policy,
            },
        );
        check(
            |r| {
                let dup = r.keys[1].clone();
                r.keys.push(dup);
            },
            RootProblem::DuplicateKey { keyid: policy },
        );
        check(
            |r| r.keys[1].name = "a\u{1b}[2J".to_string(),
            RootProblem::KeyName { keyid: policy },
        );
        let admin = SecretKey::from_seed(&[7; 32]);
        let with_admin = |r: &mut Root| {
            r.keys.push(entry(&admin, "alice"));
            r.roles.admin.keyids.push(admin.key_id());
        };
        let scope = |keyid, members: &[&str], classes: &[&str]| AdminScope {
            keyid,
            members: members.iter().map(|s| s.to_string()).collect(),
            classes: classes.iter().map(|s| s.to_string()).collect(),
        };
        check(
            |r| r.admin_scopes.push(scope(policy, &["*"], &[])),
            RootProblem::ScopeNotAdmin { keyid: policy },
        );
        check(
            |r| {
                with_admin(r);
                r.admin_scopes.push(scope(admin.key_id(), &["*"], &[]));
                r.admin_scopes.push(scope(admin.key_id(), &["alpha"], &[]));
            },
            RootProblem::DuplicateScope {
                keyid: admin.key_id(),
            },
        );
        for bad in ["a b", "x*y", "**"] {
            check(
                |r| {
                    with_admin(r);
                    r.admin_scopes.push(scope(admin.key_id(), &["*"], &[bad]));
                },
                RootProblem::ScopePattern {
                    keyid: admin.key_id(),
                    pattern: bad.to_string(),
                },
            );
        }
    }

    #[test]
    fn scopes_render_parse_and_match() {
        let mut root = sample();
        // A root without scopes renders without the table: older roots keep their bytes.
        assert!(!root.render().unwrap().contains("admin_scope"));
        let admin = SecretKey::from_seed(&[7; 32]);
        root.keys.push(entry(&admin, "alice"));
        root.roles.admin.keyids.push(admin.key_id());
        root.admin_scopes.push(AdminScope {
            keyid: admin.key_id(),
            members: vec!["alpha".to_string()],
            classes: vec!["maint_*".to_string(), "web".to_string()],
        });
        let parsed = Root::parse(root.render().unwrap().as_bytes()).unwrap();
        assert_eq!(parsed, root);
        let s = parsed.admin_scope(&admin.key_id()).unwrap();
        assert!(s.allows_member("alpha") && !s.allows_member("beta"));
        assert!(s.allows_class("maint_x") && s.allows_class("web"));
        assert!(!s.allows_class("webx") && !s.allows_class("maint"));
    }
}
