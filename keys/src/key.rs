//! Ed25519 keys: generation, key ids, PKCS#8 PEM files (mode 0600, owned by the user
//! reading them or root), and signatures with domain separation.
//!
//! **Invariant:** this is the only module of the workspace that reads private key
//! material. Every copy of it this module makes (the file's text, PEM, PKCS#8 DER) is
//! wiped when dropped ([`Zeroizing`]); dalek's `SigningKey` wipes itself. Every signature covers `context || 0x00 || bytes`, so a signature made for
//! one kind of document never verifies as another; verification is `verify_strict`.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt};
use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::fsio::{self, Overwrite};
use crate::hex;
use crate::id::KeyId;

/// DER prefix of an ed25519 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID 1.3.101.112 },
/// BIT STRING (32 bytes) }. The 32 public key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Largest private key file read (a PKCS#8 v2 ed25519 PEM is about 170 bytes).
const MAX_KEY_FILE: u64 = 4096;

/// What a signature is for. The context is signed with the bytes, so a signature can
/// never be replayed as one of another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Context {
    /// `root.toml`.
    Root,
    /// `manifest.toml`.
    Manifest,
    /// `timestamp.toml`.
    Timestamp,
    /// A run request ([`crate::runreq`]).
    RunRequest,
    /// A join token ([`crate::join`]).
    JoinToken,
}

impl Context {
    /// The domain-separation tag.
    pub fn tag(self) -> &'static str {
        match self {
            Context::Root => "tenet-root-v1",
            Context::Manifest => "tenet-manifest-v1",
            Context::Timestamp => "tenet-timestamp-v1",
            Context::RunRequest => "tenet-runreq-v1",
            Context::JoinToken => "tenet-join-v1",
        }
    }

    /// The exact message signed for `bytes`: `tag || 0x00 || bytes`.
    fn message(self, bytes: &[u8]) -> Vec<u8> {
        let tag = self.tag().as_bytes();
        let mut m = Vec::with_capacity(tag.len() + 1 + bytes.len());
        m.extend_from_slice(tag);
        m.push(0);
        m.extend_from_slice(bytes);
        m
    }
}

/// The roles a root lists keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Offline, k of n: signs `root.toml`.
    Root,
    /// Offline or semi-offline: signs `manifest.toml`.
    Policy,
    /// Online (on the package filesystem): signs the short-lived `timestamp.toml`.
    Timestamp,
    /// One key per operator: signs run requests.
    Admin,
}

impl Role {
    /// Every role, in the order a root lists them.
    pub const ALL: [Role; 4] = [Role::Root, Role::Policy, Role::Timestamp, Role::Admin];

    /// The role's name in `root.toml` (`[roles.NAME]`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Policy => "policy",
            Role::Timestamp => "timestamp",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

/// An ed25519 private key. Its `Debug` shows only the key id.
pub struct SecretKey(SigningKey);

impl PublicKey {
    /// The key from its 32 bytes; `None` if they are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<PublicKey> {
        VerifyingKey::from_bytes(bytes).ok().map(PublicKey)
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The SubjectPublicKeyInfo DER (44 bytes), as in an X.509 certificate.
    pub fn spki_der(&self) -> [u8; 44] {
        let mut der = [0u8; 44];
        der[..12].copy_from_slice(&ED25519_SPKI_PREFIX);
        der[12..].copy_from_slice(self.0.as_bytes());
        der
    }

    /// The key id: lower-hex SHA-256 of [`PublicKey::spki_der`]. For the policy server's
    /// TLS key this is also its SPKI pin.
    pub fn key_id(&self) -> KeyId {
        KeyId::of_spki(&self.spki_der())
    }

    /// Whether `sig` is this key's signature of `bytes` in `context` (strict: malleable
    /// signatures and small-order keys are refused).
    pub fn verify(&self, context: Context, bytes: &[u8], sig: &Signature) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        self.0.verify_strict(&context.message(bytes), &sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0.as_bytes()))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let b = hex::decode_array::<32>(&s).map_err(serde::de::Error::custom)?;
        PublicKey::from_bytes(&b)
            .ok_or_else(|| serde::de::Error::custom("not an ed25519 public key"))
    }
}

impl Signature {
    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    /// From 64 bytes (whether they verify is checked later).
    pub fn from_bytes(bytes: [u8; 64]) -> Signature {
        Signature(bytes)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(&self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode_array::<64>(&s)
            .map(Signature)
            .map_err(serde::de::Error::custom)
    }
}

impl SecretKey {
    /// A new key from 32 bytes of the operating system's randomness.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random {
            reason: e.to_string(),
        })?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(SecretKey(key))
    }

    /// The key from a 32-byte seed (tests and fuzzing use fixed seeds).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The key id of the public half.
    pub fn key_id(&self) -> KeyId {
        self.public().key_id()
    }

    /// Signs `bytes` in `context`.
    pub fn sign(&self, context: Context, bytes: &[u8]) -> Signature {
        Signature(self.0.sign(&context.message(bytes)).to_bytes())
    }

    /// The key as PKCS#8 v2 PEM (`-----BEGIN PRIVATE KEY-----`), wiped when dropped.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.0
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| KeyError::Encode {
                reason: e.to_string(),
            })
    }

    /// The key as PKCS#8 DER (what rcgen's `KeyPair::from_pkcs8_der_and_sign_algo` loads),
    /// wiped when dropped.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let doc = self.0.to_pkcs8_der().map_err(|e| KeyError::Encode {
            reason: e.to_string(),
        })?;
        // The document wipes its own copy when dropped.
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Parses a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<SecretKey, String> {
        SigningKey::from_pkcs8_pem(pem)
            .map(SecretKey)
            .map_err(|e| e.to_string())
    }

    /// Reads a private key file. It must be a regular file no one but its owner can read
    /// or write (like ssh, a group- or world-readable key is refused), owned by the
    /// effective user or root: a key file another user owns is that user's to replace,
    /// so a key they chose would sign or authenticate as this one.
    pub fn read(path: &Path) -> Result<SecretKey, KeyError> {
        let read_err = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        // Not blocking: a FIFO put at the path (by whoever can write its directory) must
        // be refused as not a file, not wait forever for a writer.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
            .map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(KeyError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != euid && meta.uid() != 0 {
            return Err(KeyError::Owner {
                path: path.to_path_buf(),
                owner: meta.uid(),
                euid,
            });
        }
        // Room for the whole allowed size up front, so the text is never moved to a
        // bigger buffer (which would leave an unwiped copy behind).
        let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE as usize + 64));
        file.take(MAX_KEY_FILE + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_KEY_FILE {
            return Err(KeyError::TooLarge {
                path: path.to_path_buf(),
                max: MAX_KEY_FILE,
            });
        }
        SecretKey::from_pem(&text).map_err(|reason| KeyError::Pem {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Writes the key as PEM to a new file with mode 0600, atomically. An existing file
    /// is never replaced.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        let pem = self.to_pem()?;
        fsio::write_atomic(path, pem.as_bytes(), 0o600, Overwrite::Refuse).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                KeyError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(key id {})", self.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_sha256_of_spki() {
        // RFC 8410 §10.1 example public key.
        let public = hex::decode_array::<32>(
            "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1",
        )
        .unwrap();
        let key = PublicKey::from_bytes(&public).unwrap();
        let spki = key.spki_der();
        assert_eq!(
            hex::encode(&spki[..12]),
            "302a300506032b6570032100",
            "the fixed ed25519 SPKI prefix"
        );
        assert_eq!(key.key_id(), KeyId::of_spki(&spki));
    }

    #[test]
    fn contexts_separate_signatures() {
        let k = SecretKey::from_seed(&[7; 32]);
        let sig = k.sign(Context::Timestamp, b"doc");
        assert!(k.public().verify(Context::Timestamp, b"doc", &sig));
        assert!(!k.public().verify(Context::Manifest, b"doc", &sig));
        assert!(!k.public().verify(Context::Timestamp, b"doc2", &sig));
        let mut bad = sig.to_bytes();
        bad[3] ^= 1;
        assert!(
            !k.public()
                .verify(Context::Timestamp, b"doc", &Signature::from_bytes(bad))
        );
    }

    #[test]
    fn pem_file_round_trip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        let k = SecretKey::generate().unwrap();
        k.write(&p).unwrap();
        assert_eq!(SecretKey::read(&p).unwrap().key_id(), k.key_id());
        assert!(matches!(k.write(&p), Err(KeyError::Exists { .. })));

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SecretKey::read(&p),
            Err(KeyError::Permissions { mode: 0o644, .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = SecretKey::from_seed(&[9; 32]);
        let shown = format!("{k:?}");
        assert!(shown.contains(&k.key_id().to_string()));
        assert!(!shown.contains(&hex::encode(&[9; 32])));
    }
}
