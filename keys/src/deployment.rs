//! A deployment directory on the signing workstation: its id and last serial, the
//! enrolled member keys, the private keys made by `init`, and the root history.
//!
//! ```text
//! DIR/deployment.toml   deployment id, last serial signed
//! DIR/inventory.toml    enrolled members: name and node key id
//! DIR/admins.toml       administrators: name, key id, public key, scope (the next
//!                       root's admin role; absent until the first `admin-key`)
//! DIR/keys/*.key        private keys (0600, in a 0700 directory)
//! DIR/root/N.root.toml  every root version, with its .sig
//! ```
//!
//! Nothing here is signed: it is the workstation's own state, the single source of
//! serials (two writers must never sign one serial).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bundle;
use crate::document::{Document, RootKind, Schema, render};
use crate::error::{KeyError, PublishError};
use crate::fsio::{self, Overwrite};
use crate::id::{DeploymentId, KeyId};
use crate::key::SecretKey;
use crate::manifest::is_valid_name;
use crate::root::{
    AdminScope, Alg, KeyEntry, RoleSpec, Roles, Root, Transport, is_class_pattern,
    is_member_pattern,
};
use crate::sig::SignatureFile;
use crate::time::Time;
use crate::verify::{TrustState, TrustedRoot, update_root};

/// `deployment.toml`.
pub const DEPLOYMENT_FILE: &str = "deployment.toml";
/// `inventory.toml`.
pub const INVENTORY_FILE: &str = "inventory.toml";
/// The private key directory.
pub const KEYS_DIR: &str = "keys";
/// The policy key made by `init`.
pub const POLICY_KEY: &str = "keys/policy.key";
/// The timestamp key made by `init`.
pub const TIMESTAMP_KEY: &str = "keys/timestamp.key";
/// The policy server's TLS key made by `init`.
pub const SERVER_TLS_KEY: &str = "keys/server-tls.key";
/// The administrators file.
pub const ADMINS_FILE: &str = "admins.toml";
/// A member's identity key, as `node-key` writes it.
pub const NODE_KEY_FILE: &str = "localhost.key";

/// What `init` makes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Root keys to make (n).
    pub root_keys: u32,
    /// Root signatures needed (k).
    pub root_threshold: u32,
    /// Lifetime of root version 1.
    pub expires_in: Duration,
    /// The time of creation.
    pub now: Time,
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The new deployment id.
    pub deployment: DeploymentId,
    /// `DIR/root/1.root.toml`.
    pub root: PathBuf,
    /// Each key made: role (or `server-tls`), file, key id.
    pub keys: Vec<(String, PathBuf, KeyId)>,
    /// The SHA-256 of root version 1, for members to pin.
    pub root_sha256: crate::id::Sha256Sum,
}

/// A deployment directory opened for publishing.
#[derive(Debug, Clone)]
pub struct Deployment {
    dir: PathBuf,
    state: DeploymentFile,
}

/// An enrolled member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolled {
    /// The member's name in the cluster config.
    pub name: String,
    /// Its node key's id.
    pub keyid: KeyId,
    /// Classes given at enrolment (a join token's), added to the cluster config's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

/// An administrator: a key of the admin role and its scope, as the next root lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// The administrator's name (the key's name in the root).
    pub name: String,
    /// The admin key's id.
    pub keyid: KeyId,
    /// The public key.
    pub public: crate::key::PublicKey,
    /// Member names or `*`.
    pub members: Vec<String>,
    /// Class names, `prefix*` or `*`.
    #[serde(default)]
    pub classes: Vec<String>,
}

/// What `add_admin` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminChange {
    /// A new key was made at this path.
    NewKey(PathBuf),
    /// The administrator existed: only the scope was replaced.
    ScopeReplaced,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminsFile {
    schema: Schema,
    kind: AdminsKind,
    #[serde(rename = "admin", default)]
    admins: Vec<Admin>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
enum AdminsKind {
    #[default]
    #[serde(rename = "admins")]
    Admins,
}

/// What `enroll` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrollment {
    /// The member was not enrolled before.
    New,
    /// The member's previous key was replaced.
    Replaced(KeyId),
    /// The member already had this key.
    Unchanged,
}

/// The verified root history of a deployment.
#[derive(Debug, Clone)]
pub struct RootHistory {
    /// The state after walking every verifiable root from version 1.
    pub state: TrustState,
    /// The root versions that verified, from 1.
    pub versions: Vec<u64>,
    /// The next root file, if one exists and did not verify (for example, awaiting
    /// signatures), with why.
    pub pending: Option<(u64, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentFile {
    schema: Schema,
    kind: DeploymentKind,
    deployment: DeploymentId,
    last_serial: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    schema: Schema,
    kind: InventoryKind,
    #[serde(rename = "member", default)]
    members: Vec<Enrolled>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
enum DeploymentKind {
    #[default]
    #[serde(rename = "deployment")]
    Deployment,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
enum InventoryKind {
    #[default]
    #[serde(rename = "inventory")]
    Inventory,
}

/// Makes a new deployment in `dir` (absent or empty): a deployment id; root, policy,
/// timestamp and policy server keys under `keys/`; root version 1 signed by every root
/// key; `deployment.toml` (last serial 0) and an empty `inventory.toml`.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<InitReport, PublishError> {
    if opts.root_threshold == 0 || opts.root_threshold > opts.root_keys {
        return Err(PublishError::RootThreshold {
            keys: opts.root_keys,
            threshold: opts.root_threshold,
        });
    }
    ensure_empty_dir(dir, 0o700)?;
    let keys_dir = dir.join(KEYS_DIR);
    fsio::create_dir(&keys_dir, 0o700).map_err(|source| PublishError::Write {
        path: keys_dir.clone(),
        source,
    })?;
    let deployment = DeploymentId::generate().map_err(|e| KeyError::Random {
        reason: e.to_string(),
    })?;

    let mut made = Vec::new();
    let mut new_key = |name: &str| -> Result<SecretKey, PublishError> {
        let key = SecretKey::generate()?;
        let path = keys_dir.join(format!("{name}.key"));
        key.write(&path)?;
        made.push((name.to_string(), path, key.key_id()));
        Ok(key)
    };
    let mut root_keys = Vec::new();
    for i in 1..=opts.root_keys {
        root_keys.push((format!("root-{i}"), new_key(&format!("root-{i}"))?));
    }
    let policy = new_key("policy")?;
    let timestamp = new_key("timestamp")?;
    let server = new_key("server-tls")?;

    let entry = |name: &str, k: &SecretKey| KeyEntry {
        id: k.key_id(),
        alg: Alg::Ed25519,
        public: k.public(),
        name: name.to_string(),
    };
    let mut keys: Vec<KeyEntry> = root_keys.iter().map(|(n, k)| entry(n, k)).collect();
    keys.push(entry("policy", &policy));
    keys.push(entry("timestamp", &timestamp));
    let expires = opts
        .now
        .checked_add(opts.expires_in)
        .ok_or(PublishError::TimeOverflow {
            what: "the root's expiry",
        })?;
    let root = Root {
        schema: Schema,
        kind: RootKind,
        deployment,
        version: 1,
        expires,
        policy_epoch: 1,
        roles: Roles {
            root: RoleSpec {
                keyids: root_keys.iter().map(|(_, k)| k.key_id()).collect(),
                threshold: opts.root_threshold,
            },
            policy: RoleSpec {
                keyids: vec![policy.key_id()],
                threshold: 1,
            },
            timestamp: RoleSpec {
                keyids: vec![timestamp.key_id()],
                threshold: 1,
            },
            admin: RoleSpec {
                keyids: vec![],
                threshold: 1,
            },
        },
        keys,
        admin_scopes: vec![],
        transport: Transport {
            server_spki: vec![server.key_id()],
        },
    };
    let text = root.render().map_err(|source| PublishError::Render {
        what: "the root",
        source,
    })?;
    let mut sigs = SignatureFile::default();
    for (_, k) in &root_keys {
        sigs.add(Document::Root, text.as_bytes(), k);
    }
    let root_dir = dir.join(bundle::ROOT_DIR);
    fsio::create_dir(&root_dir, 0o755).map_err(|source| PublishError::Write {
        path: root_dir.clone(),
        source,
    })?;
    let root_path = bundle::root_path(dir, 1);
    write_new(&root_path, text.as_bytes())?;
    write_sig(&root_path, &sigs)?;

    let d = Deployment {
        dir: dir.to_path_buf(),
        state: DeploymentFile {
            schema: Schema,
            kind: DeploymentKind::Deployment,
            deployment,
            last_serial: 0,
        },
    };
    d.save_state()?;
    d.save_inventory(&InventoryFile::default())?;
    Ok(InitReport {
        deployment,
        root: root_path,
        keys: made,
        root_sha256: crate::id::Sha256Sum::of(text.as_bytes()),
    })
}

/// A key to replace in the next root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotate {
    /// New root keys (same count and threshold); the update needs k old and k new.
    Root,
    /// A new policy key; also bumps the policy epoch, so serials signed by the old key
    /// can never win again.
    Policy,
    /// A new timestamp key; members restart their timestamp ratchet.
    Timestamp,
    /// A new policy server TLS key, pinned next to the current one (drop the old pin in
    /// a later root, once every member has this one).
    ServerTls,
}

/// Options of [`next_root`].
#[derive(Debug, Clone)]
pub struct NextRootOptions {
    /// Lifetime of the new root.
    pub expires_in: Duration,
    /// The time of creation.
    pub now: Time,
    /// Keys to replace.
    pub rotate: Vec<Rotate>,
    /// Raise the policy epoch even without a policy key rotation.
    pub bump_epoch: bool,
    /// Server pins to remove.
    pub drop_pins: Vec<KeyId>,
}

/// What [`next_root`] wrote.
#[derive(Debug, Clone)]
pub struct NextRootReport {
    /// The unsigned new root file.
    pub path: PathBuf,
    /// Its version.
    pub version: u64,
    /// Keys made: name, file, key id.
    pub keys: Vec<(String, PathBuf, KeyId)>,
    /// Root signatures needed from the trusted root's root keys.
    pub old_threshold: u32,
    /// Root signatures needed from the new root's own root keys.
    pub new_threshold: u32,
    /// Whether the root keys changed (so both sets must sign).
    pub root_keys_changed: bool,
}

/// Writes `DIR/root/<N+1>.root.toml`, unsigned: the latest verified root with a new
/// version and expiry, the requested keys replaced (new private keys under `keys/`,
/// named `<role>-v<N+1>.key`) and pins dropped. Sign it with `attest`, once per root key.
pub fn next_root(d: &Deployment, opts: &NextRootOptions) -> Result<NextRootReport, PublishError> {
    let history = d.root_history()?;
    let old = history.state.root().root();
    let version = old.version + 1;
    let path = bundle::root_path(&d.dir, version);
    if path.exists() {
        return Err(PublishError::NotEmpty { path });
    }
    let mut root = old.clone();
    root.version = version;
    root.expires = opts
        .now
        .checked_add(opts.expires_in)
        .ok_or(PublishError::TimeOverflow {
            what: "the root's expiry",
        })?;
    if opts.bump_epoch || opts.rotate.contains(&Rotate::Policy) {
        root.policy_epoch += 1;
    }
    let keys_dir = d.dir.join(KEYS_DIR);
    let mut made = Vec::new();
    let mut new_key = |name: String| -> Result<SecretKey, PublishError> {
        let key = SecretKey::generate()?;
        let file = keys_dir.join(format!("{name}.key"));
        key.write(&file)?;
        made.push((name, file, key.key_id()));
        Ok(key)
    };
    let entry = |name: String, k: &SecretKey| KeyEntry {
        id: k.key_id(),
        alg: Alg::Ed25519,
        public: k.public(),
        name,
    };
    for r in &opts.rotate {
        let (spec, prefix, count) = match r {
            Rotate::Root => (&mut root.roles.root, "root", old.roles.root.keyids.len()),
            Rotate::Policy => (
                &mut root.roles.policy,
                "policy",
                old.roles.policy.keyids.len(),
            ),
            Rotate::Timestamp => (
                &mut root.roles.timestamp,
                "timestamp",
                old.roles.timestamp.keyids.len(),
            ),
            Rotate::ServerTls => {
                let k = new_key(format!("server-tls-v{version}"))?;
                root.transport.server_spki.push(k.key_id());
                continue;
            }
        };
        spec.keyids.clear();
        for i in 1..=count.max(1) {
            let name = if count > 1 {
                format!("{prefix}-{i}-v{version}")
            } else {
                format!("{prefix}-v{version}")
            };
            let k = new_key(name.clone())?;
            spec.keyids.push(k.key_id());
            root.keys.push(entry(name, &k));
        }
    }
    root.transport
        .server_spki
        .retain(|pin| !opts.drop_pins.contains(pin));
    if let Some(admins) = d.load_admins()? {
        // admins.toml is the admin role of every root from now on.
        let old_admins = root.roles.admin.keyids.clone();
        root.keys.retain(|k| !old_admins.contains(&k.id));
        root.roles.admin.keyids = admins.admins.iter().map(|a| a.keyid).collect();
        root.roles.admin.threshold = 1;
        for a in &admins.admins {
            root.keys.push(KeyEntry {
                id: a.keyid,
                alg: Alg::Ed25519,
                public: a.public,
                name: a.name.clone(),
            });
        }
        root.admin_scopes = admins
            .admins
            .iter()
            .map(|a| AdminScope {
                keyid: a.keyid,
                members: a.members.clone(),
                classes: a.classes.clone(),
            })
            .collect();
    }
    // Keys no role names any more leave the root.
    let named: Vec<KeyId> = [
        &root.roles.root,
        &root.roles.policy,
        &root.roles.timestamp,
        &root.roles.admin,
    ]
    .iter()
    .flat_map(|s| s.keyids.iter().copied())
    .collect();
    root.keys.retain(|k| named.contains(&k.id));
    let text = root.render().map_err(|source| PublishError::Render {
        what: "the root",
        source,
    })?;
    // The new root must pass the structural rules a member applies.
    Root::parse(text.as_bytes())?;
    write_new(&path, text.as_bytes())?;
    Ok(NextRootReport {
        path,
        version,
        keys: made,
        old_threshold: old.roles.root.threshold,
        new_threshold: root.roles.root.threshold,
        root_keys_changed: opts.rotate.contains(&Rotate::Root),
    })
}

/// Makes a member identity key `DIR/localhost.key` (0600) and returns its path and id.
pub fn node_key(dir: &Path) -> Result<(PathBuf, KeyId), PublishError> {
    fsio::create_dir(dir, 0o700).map_err(|source| PublishError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let key = SecretKey::generate()?;
    let path = dir.join(NODE_KEY_FILE);
    key.write(&path)?;
    Ok((path, key.key_id()))
}

impl Deployment {
    /// Opens a deployment directory made by [`init`].
    pub fn open(dir: &Path) -> Result<Deployment, PublishError> {
        let path = dir.join(DEPLOYMENT_FILE);
        let text = read_text(&path)?;
        let state: DeploymentFile =
            toml::from_str(&text).map_err(|source| PublishError::Config { path, source })?;
        Ok(Deployment {
            dir: dir.to_path_buf(),
            state,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The deployment id.
    pub fn id(&self) -> DeploymentId {
        self.state.deployment
    }

    /// The last serial signed (0 before any).
    pub fn last_serial(&self) -> u64 {
        self.state.last_serial
    }

    /// Records `serial` as the last one signed; it must be greater than the last.
    pub fn record_serial(&mut self, serial: u64) -> Result<(), PublishError> {
        if serial <= self.state.last_serial {
            return Err(PublishError::Serial {
                requested: serial,
                last: self.state.last_serial,
            });
        }
        self.state.last_serial = serial;
        self.save_state()
    }

    /// Walks `root/1.root.toml`, `2`, ... verifying each as a member would (version 1 by
    /// its own root keys, each next one by old and new root keys). Stops at the first
    /// missing version; a version that does not verify yet is reported as pending.
    pub fn root_history(&self) -> Result<RootHistory, PublishError> {
        let first = bundle::root_path(&self.dir, 1);
        if !first.exists() {
            return Err(PublishError::NoRoot {
                dir: self.dir.clone(),
            });
        }
        let bytes = read_bytes(&first)?;
        let sigs = read_bytes(&bundle::sig_path(&first))?;
        let mut state = TrustState::new(TrustedRoot::bootstrap(&bytes, &sigs, None)?);
        let mut versions = vec![1];
        let mut pending = None;
        loop {
            let next = state.root().root().version + 1;
            let path = bundle::root_path(&self.dir, next);
            if !path.exists() {
                break;
            }
            let bytes = read_bytes(&path)?;
            let sig_path = bundle::sig_path(&path);
            let sigs = if sig_path.exists() {
                read_bytes(&sig_path)?
            } else {
                Vec::new()
            };
            match update_root(&state, &bytes, &sigs) {
                Ok(s) => {
                    state = s;
                    versions.push(next);
                }
                Err(e) => {
                    pending = Some((next, crate::error_chain(&e)));
                    break;
                }
            }
        }
        Ok(RootHistory {
            state,
            versions,
            pending,
        })
    }

    /// The enrolled members.
    pub fn enrolled(&self) -> Result<Vec<Enrolled>, PublishError> {
        Ok(self.load_inventory()?.members)
    }

    /// Enrolls `keyid` as the identity of `member` (replacing a previous key). A key id
    /// identifies one member only.
    pub fn enroll(&self, member: &str, keyid: KeyId) -> Result<Enrollment, PublishError> {
        if !is_valid_name(member) {
            return Err(PublishError::MemberName {
                name: member.to_string(),
            });
        }
        let mut inv = self.load_inventory()?;
        if let Some(other) = inv
            .members
            .iter()
            .find(|m| m.keyid == keyid && m.name != member)
        {
            return Err(PublishError::KeyInUse {
                keyid,
                member: other.name.clone(),
            });
        }
        let outcome = match inv.members.iter_mut().find(|m| m.name == member) {
            Some(m) if m.keyid == keyid => return Ok(Enrollment::Unchanged),
            Some(m) => Enrollment::Replaced(std::mem::replace(&mut m.keyid, keyid)),
            None => {
                inv.members.push(Enrolled {
                    name: member.to_string(),
                    keyid,
                    classes: Vec::new(),
                });
                Enrollment::New
            }
        };
        inv.members.sort_by(|a, b| a.name.cmp(&b.name));
        self.save_inventory(&inv)?;
        Ok(outcome)
    }

    /// Sets the classes `member` was enrolled with (a join token's); the next signed
    /// manifest lists them beside the cluster config's.
    pub fn set_classes(&self, member: &str, classes: &[String]) -> Result<(), PublishError> {
        let mut inv = self.load_inventory()?;
        let m = inv
            .members
            .iter_mut()
            .find(|m| m.name == member)
            .ok_or_else(|| PublishError::NotEnrolled {
                member: member.to_string(),
            })?;
        m.classes = classes.to_vec();
        self.save_inventory(&inv)
    }

    /// Removes `member`'s key; returns the key id removed.
    pub fn revoke(&self, member: &str) -> Result<KeyId, PublishError> {
        let mut inv = self.load_inventory()?;
        let at = inv
            .members
            .iter()
            .position(|m| m.name == member)
            .ok_or_else(|| PublishError::NotEnrolled {
                member: member.to_string(),
            })?;
        let removed = inv.members.remove(at);
        self.save_inventory(&inv)?;
        Ok(removed.keyid)
    }

    /// The administrators recorded in `admins.toml` (none before the first).
    pub fn admins(&self) -> Result<Vec<Admin>, PublishError> {
        Ok(self.load_admins()?.map(|f| f.admins).unwrap_or_default())
    }

    /// Records administrator `name` with a scope: makes its key `keys/admin-NAME.key`
    /// (0600) if the administrator is new, else replaces only the scope. The next root
    /// (`root-next`) lists it in the admin role with this scope.
    pub fn add_admin(
        &self,
        name: &str,
        members: Vec<String>,
        classes: Vec<String>,
    ) -> Result<(Admin, AdminChange), PublishError> {
        if !is_valid_name(name) {
            return Err(PublishError::MemberName {
                name: name.to_string(),
            });
        }
        let bad = members
            .iter()
            .find(|m| !is_member_pattern(m))
            .map(|m| ("member", m))
            .or_else(|| {
                classes
                    .iter()
                    .find(|c| !is_class_pattern(c))
                    .map(|c| ("class", c))
            });
        if let Some((what, pattern)) = bad {
            return Err(PublishError::ScopePattern {
                what,
                pattern: pattern.clone(),
            });
        }
        let mut file = self.load_admins()?.unwrap_or_default();
        let change = match file.admins.iter_mut().find(|a| a.name == name) {
            Some(a) => {
                a.members = members;
                a.classes = classes;
                AdminChange::ScopeReplaced
            }
            None => {
                let key = SecretKey::generate()?;
                let path = self.dir.join(KEYS_DIR).join(format!("admin-{name}.key"));
                key.write(&path)?;
                file.admins.push(Admin {
                    name: name.to_string(),
                    keyid: key.key_id(),
                    public: key.public(),
                    members,
                    classes,
                });
                AdminChange::NewKey(path)
            }
        };
        file.admins.sort_by(|a, b| a.name.cmp(&b.name));
        self.save_admins(&file)?;
        let admin = file
            .admins
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| PublishError::NoAdmin {
                name: name.to_string(),
            })?;
        Ok((admin, change))
    }

    /// Removes administrator `name`; the next root leaves its key out.
    pub fn remove_admin(&self, name: &str) -> Result<KeyId, PublishError> {
        let mut file = self.load_admins()?.unwrap_or_default();
        let at = file
            .admins
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| PublishError::NoAdmin {
                name: name.to_string(),
            })?;
        let removed = file.admins.remove(at);
        self.save_admins(&file)?;
        Ok(removed.keyid)
    }

    fn load_admins(&self) -> Result<Option<AdminsFile>, PublishError> {
        let path = self.dir.join(ADMINS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = read_text(&path)?;
        toml::from_str(&text)
            .map(Some)
            .map_err(|source| PublishError::Config { path, source })
    }

    fn save_admins(&self, file: &AdminsFile) -> Result<(), PublishError> {
        let text = render(file).map_err(|source| PublishError::Render {
            what: "the administrators",
            source,
        })?;
        write_replace(&self.dir.join(ADMINS_FILE), text.as_bytes(), 0o644)
    }

    /// The default policy key, `DIR/keys/policy.key`.
    pub fn policy_key_path(&self) -> PathBuf {
        self.dir.join(POLICY_KEY)
    }

    fn load_inventory(&self) -> Result<InventoryFile, PublishError> {
        let path = self.dir.join(INVENTORY_FILE);
        if !path.exists() {
            return Ok(InventoryFile::default());
        }
        let text = read_text(&path)?;
        toml::from_str(&text).map_err(|source| PublishError::Config { path, source })
    }

    fn save_inventory(&self, inv: &InventoryFile) -> Result<(), PublishError> {
        let text = render(inv).map_err(|source| PublishError::Render {
            what: "the inventory",
            source,
        })?;
        write_replace(&self.dir.join(INVENTORY_FILE), text.as_bytes(), 0o644)
    }

    fn save_state(&self) -> Result<(), PublishError> {
        let text = render(&self.state).map_err(|source| PublishError::Render {
            what: "the deployment state",
            source,
        })?;
        write_replace(&self.dir.join(DEPLOYMENT_FILE), text.as_bytes(), 0o644)
    }
}

/// Creates `dir` (mode `mode`) or accepts it if it exists and is empty.
pub(crate) fn ensure_empty_dir(dir: &Path, mode: u32) -> Result<(), PublishError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(PublishError::NotEmpty {
                    path: dir.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fsio::create_dir(dir, mode).map_err(|source| PublishError::Write {
                path: dir.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(PublishError::Read {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, PublishError> {
    std::fs::read(path).map_err(|source| PublishError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, PublishError> {
    std::fs::read_to_string(path).map_err(|source| PublishError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write_replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PublishError> {
    fsio::write_atomic(path, bytes, mode, Overwrite::Replace).map_err(|source| {
        PublishError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    fsio::write_atomic(path, bytes, 0o644, Overwrite::Refuse).map_err(|source| {
        PublishError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

pub(crate) fn write_sig(doc_path: &Path, sigs: &SignatureFile) -> Result<(), PublishError> {
    let text = sigs.render().map_err(|source| PublishError::Render {
        what: "a signature file",
        source,
    })?;
    write_replace(&bundle::sig_path(doc_path), text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (tempfile::TempDir, Deployment) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dep");
        init(
            &dir,
            &InitOptions {
                root_keys: 1,
                root_threshold: 1,
                expires_in: Duration::from_secs(86_400),
                now: Time::from_unix(1_795_298_400).unwrap(),
            },
        )
        .unwrap();
        let d = Deployment::open(&dir).unwrap();
        (tmp, d)
    }

    #[test]
    fn enroll_replace_and_revoke() {
        let (_tmp, d) = fresh();
        let (a, b) = (
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
        );
        assert_eq!(d.enroll("alpha", a.key_id()).unwrap(), Enrollment::New);
        assert_eq!(
            d.enroll("alpha", a.key_id()).unwrap(),
            Enrollment::Unchanged
        );
        assert!(matches!(
            d.enroll("beta", a.key_id()),
            Err(PublishError::KeyInUse { .. })
        ));
        assert_eq!(
            d.enroll("alpha", b.key_id()).unwrap(),
            Enrollment::Replaced(a.key_id())
        );
        assert!(matches!(
            d.enroll("al pha", a.key_id()),
            Err(PublishError::MemberName { .. })
        ));
        assert_eq!(d.revoke("alpha").unwrap(), b.key_id());
        assert!(matches!(
            d.revoke("alpha"),
            Err(PublishError::NotEnrolled { .. })
        ));
    }

    #[test]
    fn serials_only_increase_and_init_refuses_a_used_directory() {
        let (_tmp, mut d) = fresh();
        d.record_serial(3).unwrap();
        assert!(matches!(
            d.record_serial(3),
            Err(PublishError::Serial {
                requested: 3,
                last: 3
            })
        ));
        assert_eq!(Deployment::open(d.dir()).unwrap().last_serial(), 3);
        let again = init(
            d.dir(),
            &InitOptions {
                root_keys: 1,
                root_threshold: 1,
                expires_in: Duration::from_secs(60),
                now: Time::from_unix(0).unwrap(),
            },
        );
        assert!(matches!(again, Err(PublishError::NotEmpty { .. })));
    }

    #[test]
    fn next_root_rotates_policy_and_bumps_the_epoch() {
        let (_tmp, d) = fresh();
        let before = d.root_history().unwrap().state.root().root().clone();
        let r = next_root(
            &d,
            &NextRootOptions {
                expires_in: Duration::from_secs(86_400),
                now: Time::from_unix(1_795_298_400).unwrap(),
                rotate: vec![Rotate::Policy],
                bump_epoch: false,
                drop_pins: vec![],
            },
        )
        .unwrap();
        let new = Root::parse(&std::fs::read(&r.path).unwrap()).unwrap();
        assert_eq!((new.version, new.policy_epoch), (2, 2));
        assert_ne!(new.roles.policy.keyids, before.roles.policy.keyids);
        // The old policy key left the [[key]] list; the new one is a readable 0600 file.
        assert_eq!(new.keys.len(), before.keys.len());
        let (_, file, id) = &r.keys[0];
        assert_eq!(SecretKey::read(file).unwrap().key_id(), *id);
        // Unsigned, it is pending: the history still ends at version 1.
        let h = d.root_history().unwrap();
        assert_eq!(h.versions, vec![1]);
        assert_eq!(h.pending.map(|p| p.0), Some(2));
    }

    #[test]
    fn admins_enter_and_leave_the_admin_role_with_their_scope() {
        let (_tmp, d) = fresh();
        let next = |d: &Deployment| {
            let r = next_root(
                d,
                &NextRootOptions {
                    expires_in: Duration::from_secs(86_400),
                    now: Time::from_unix(1_795_298_400).unwrap(),
                    rotate: vec![],
                    bump_epoch: false,
                    drop_pins: vec![],
                },
            )
            .unwrap();
            let bytes = std::fs::read(&r.path).unwrap();
            let key = SecretKey::read(&d.dir().join("keys/root-1.key")).unwrap();
            crate::publish::attest(&r.path, &key, None).unwrap();
            Root::parse(&bytes).unwrap()
        };
        let (alice, change) = d
            .add_admin("alice", vec!["*".into()], vec!["maint_*".into()])
            .unwrap();
        let AdminChange::NewKey(path) = change else {
            panic!("{change:?}")
        };
        assert_eq!(SecretKey::read(&path).unwrap().key_id(), alice.keyid);
        let root = next(&d);
        assert_eq!(root.roles.admin.keyids, vec![alice.keyid]);
        assert_eq!(root.key(&alice.keyid).unwrap().name, "alice");
        assert!(
            root.admin_scope(&alice.keyid)
                .unwrap()
                .allows_class("maint_a")
        );
        // A scope change keeps the key.
        let (again, change) = d.add_admin("alice", vec!["beta".into()], vec![]).unwrap();
        assert_eq!(
            (again.keyid, change),
            (alice.keyid, AdminChange::ScopeReplaced)
        );
        assert!(matches!(
            d.add_admin("bob", vec!["a b".into()], vec![]),
            Err(PublishError::ScopePattern { what: "member", .. })
        ));
        // Removed: the next root has no admin key left.
        assert_eq!(d.remove_admin("alice").unwrap(), alice.keyid);
        let root = next(&d);
        assert!(root.roles.admin.keyids.is_empty() && root.admin_scopes.is_empty());
        assert!(root.key(&alice.keyid).is_none());
    }
}
