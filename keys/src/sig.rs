//! Detached signature files (`X.toml.sig`) and threshold counting.
//!
//! ```toml
//! [[signature]]
//! keyid = "abe5…"    # the signer's key id
//! sig = "155f…"      # 64 bytes, hex: ed25519 over context || 0x00 || exact bytes
//! ```
//!
//! A threshold counts **distinct public keys** of the role: a key listed twice, or two
//! signature entries by one key, count once; signers outside the role do not count. A
//! signature by a key of the role that does not verify is refused outright, since no
//! honest tool writes one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::document::{Document, MAX_SIGNATURE_BYTES, render};
use crate::error::{SigFileProblem, VerifyError};
use crate::id::{KeyId, KeyIds};
use crate::key::{PublicKey, Role, SecretKey, Signature};

/// Most signature entries read from one file.
pub const MAX_SIGNATURES: usize = 64;

/// The contents of `X.toml.sig`: `[[signature]] keyid = "hex" sig = "hex"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// The signatures, in the order they were added.
    #[serde(default, rename = "signature")]
    pub signatures: Vec<SignatureEntry>,
}

/// One signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// The signer's key id.
    pub keyid: KeyId,
    /// The signature over `context || 0x00 || bytes`.
    pub sig: Signature,
}

/// Whether [`SignatureFile::add`] changed the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new signature was appended.
    Added,
    /// The key had already signed these bytes; nothing changed.
    AlreadyPresent,
}

impl SignatureFile {
    /// Parses the signature file of `document`, within its size and count caps.
    pub fn parse(document: Document, bytes: &[u8]) -> Result<SignatureFile, VerifyError> {
        let fail = |problem| VerifyError::SignatureFile { document, problem };
        let size = bytes.len() as u64;
        if size > MAX_SIGNATURE_BYTES {
            return Err(fail(SigFileProblem::TooLarge {
                size,
                max: MAX_SIGNATURE_BYTES,
            }));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| fail(SigFileProblem::NotUtf8))?;
        let file: SignatureFile =
            toml::from_str(text).map_err(|e| fail(SigFileProblem::Parse(e)))?;
        if file.signatures.len() > MAX_SIGNATURES {
            return Err(fail(SigFileProblem::TooMany {
                count: file.signatures.len(),
                max: MAX_SIGNATURES,
            }));
        }
        Ok(file)
    }

    /// The file as TOML.
    pub fn render(&self) -> Result<String, toml::ser::Error> {
        render(self)
    }

    /// Signs `bytes` as `document` with `key` and appends the signature, unless a
    /// signature by that key that verifies is already there.
    pub fn add(&mut self, document: Document, bytes: &[u8], key: &SecretKey) -> Added {
        let keyid = key.key_id();
        let public = key.public();
        let present = self
            .signatures
            .iter()
            .any(|s| s.keyid == keyid && public.verify(document.context(), bytes, &s.sig));
        if present {
            return Added::AlreadyPresent;
        }
        // A stale signature by this key (over older bytes) is replaced.
        self.signatures.retain(|s| s.keyid != keyid);
        self.signatures.push(SignatureEntry {
            keyid,
            sig: key.sign(document.context(), bytes),
        });
        Added::Added
    }
}

/// The keys of one role and how many of them must sign.
#[derive(Debug, Clone)]
pub(crate) struct RoleKeys<'a> {
    pub(crate) role: Role,
    pub(crate) keys: Vec<(KeyId, &'a PublicKey)>,
    pub(crate) threshold: u32,
}

/// Checks that at least `role.threshold` distinct keys of the role signed `bytes` as
/// `document`. Returns how many distinct keys did.
pub(crate) fn check_threshold(
    document: Document,
    bytes: &[u8],
    sigs: &SignatureFile,
    role: &RoleKeys<'_>,
) -> Result<usize, VerifyError> {
    let by_id: BTreeMap<KeyId, &PublicKey> = role.keys.iter().map(|(id, k)| (*id, *k)).collect();
    let mut signed: BTreeSet<[u8; 32]> = BTreeSet::new();
    let mut ignored: Vec<KeyId> = Vec::new();
    for entry in &sigs.signatures {
        match by_id.get(&entry.keyid) {
            Some(key) => {
                if !key.verify(document.context(), bytes, &entry.sig) {
                    return Err(VerifyError::BadSignature {
                        document,
                        role: role.role,
                        keyid: entry.keyid,
                    });
                }
                signed.insert(key.to_bytes());
            }
            None => {
                if !ignored.contains(&entry.keyid) {
                    ignored.push(entry.keyid);
                }
            }
        }
    }
    let valid = signed.len();
    let threshold = role.threshold as usize;
    if threshold == 0 || valid < threshold {
        return Err(VerifyError::Threshold {
            document,
            role: role.role,
            valid,
            threshold,
            ignored: KeyIds(ignored),
        });
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    fn check(
        listed: &[&SecretKey],
        threshold: u32,
        signers: &[&SecretKey],
    ) -> Result<usize, VerifyError> {
        let publics: Vec<PublicKey> = listed.iter().map(|k| k.public()).collect();
        let role = RoleKeys {
            role: Role::Policy,
            keys: publics.iter().map(|p| (p.key_id(), p)).collect(),
            threshold,
        };
        let mut file = SignatureFile::default();
        for s in signers {
            file.signatures.push(SignatureEntry {
                keyid: s.key_id(),
                sig: s.sign(Document::Manifest.context(), b"m"),
            });
        }
        check_threshold(Document::Manifest, b"m", &file, &role)
    }

    #[test]
    fn counts_distinct_keys() {
        let (a, b, c) = (key(1), key(2), key(3));
        assert_eq!(check(&[&a, &b], 2, &[&a, &b]).unwrap(), 2);
        // The same key listed twice and signing twice counts once.
        assert!(matches!(
            check(&[&a, &a], 2, &[&a, &a]),
            Err(VerifyError::Threshold {
                valid: 1,
                threshold: 2,
                ..
            })
        ));
        // An unknown signer does not count and is named.
        match check(&[&a, &b], 2, &[&a, &c]) {
            Err(VerifyError::Threshold {
                valid: 1, ignored, ..
            }) => {
                assert_eq!(ignored.0, vec![c.key_id()]);
            }
            other => panic!("{other:?}"),
        }
        // A threshold of zero is never met.
        assert!(check(&[&a], 0, &[&a]).is_err());
    }

    #[test]
    fn add_is_idempotent_and_parse_round_trips() {
        let a = key(1);
        let mut file = SignatureFile::default();
        assert_eq!(file.add(Document::Root, b"r", &a), Added::Added);
        assert_eq!(file.add(Document::Root, b"r", &a), Added::AlreadyPresent);
        // Re-signing changed bytes replaces the stale signature.
        assert_eq!(file.add(Document::Root, b"r2", &a), Added::Added);
        assert_eq!(file.signatures.len(), 1);
        let text = file.render().unwrap();
        assert_eq!(
            SignatureFile::parse(Document::Root, text.as_bytes()).unwrap(),
            file
        );
    }

    #[test]
    fn refuses_malformed_files() {
        for bad in [
            "[[signature]]\nkeyid = \"00\"\nsig = \"00\"\n",
            "[[signature]]\nkeyid = 1\n",
            "extra = 1\n",
        ] {
            assert!(matches!(
                SignatureFile::parse(Document::Manifest, bad.as_bytes()),
                Err(VerifyError::SignatureFile { .. })
            ));
        }
    }
}
