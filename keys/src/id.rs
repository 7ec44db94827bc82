//! Fixed-size identifiers written as lower-case hex: key ids, SHA-256 sums,
//! deployment ids and run request nonces.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

use crate::hex::{self, HexError};

/// The SHA-256 of a key's SubjectPublicKeyInfo DER: the one identity of a key, used for
/// signatures, roles, the member inventory and TLS pins alike.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; 32]);

/// A SHA-256 digest of some bytes (a blob, a manifest).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Sum([u8; 32]);

/// A deployment's random 128-bit id, made once by `tenet-keys init` and carried by every
/// signed document, so one deployment's documents never verify in another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeploymentId([u8; 16]);

/// A run request's random 128-bit nonce: a member accepts each one once.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nonce([u8; 16]);

impl KeyId {
    /// The key id whose SPKI DER is `spki`.
    pub(crate) fn of_spki(spki: &[u8]) -> KeyId {
        KeyId(sha2::Sha256::digest(spki).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses a key id as a person may type it: upper or lower case, with or without a
    /// `sha256:` prefix. Documents accept only the canonical lower-case form ([`FromStr`]).
    pub fn parse_lenient(text: &str) -> Result<KeyId, HexError> {
        let t = text.trim();
        let t = t.strip_prefix("sha256:").unwrap_or(t);
        t.to_ascii_lowercase().parse()
    }
}

impl Sha256Sum {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Sum {
        Sha256Sum(sha2::Sha256::digest(bytes).into())
    }

    /// From a finished digest.
    pub fn from_bytes(bytes: [u8; 32]) -> Sha256Sum {
        Sha256Sum(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl DeploymentId {
    /// A new random deployment id.
    pub fn generate() -> Result<DeploymentId, getrandom::Error> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b)?;
        Ok(DeploymentId(b))
    }
}

impl Nonce {
    /// A new random nonce.
    pub fn generate() -> Result<Nonce, getrandom::Error> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b)?;
        Ok(Nonce(b))
    }
}

macro_rules! hex_id {
    ($t:ty, $n:expr) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(&self.0))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self)
            }
        }

        impl FromStr for $t {
            type Err = HexError;

            /// Exactly the canonical lower-case hex form.
            fn from_str(s: &str) -> Result<Self, HexError> {
                hex::decode_array::<$n>(s).map(Self)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(KeyId, 32);
hex_id!(Sha256Sum, 32);
hex_id!(DeploymentId, 16);
hex_id!(Nonce, 16);

/// A list of key ids, displayed comma-separated (for error messages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIds(pub Vec<KeyId>);

impl fmt::Display for KeyIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, k) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            Sha256Sum::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn lenient_key_id() {
        let id: KeyId = "ab".repeat(32).parse().unwrap();
        let typed = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(KeyId::parse_lenient(&typed), Ok(id));
        assert!("AB".repeat(32).parse::<KeyId>().is_err());
    }
}
