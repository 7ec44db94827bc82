//! The signed document kinds and the parsing they share: a size cap, UTF-8, a
//! header check (`schema`, `kind`), then a strict serde parse.
//!
//! Parsing is not verification: callers check signatures over the raw bytes first (see
//! [`crate::verify`]), then parse.

use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::VerifyError;
use crate::key::{Context, Role};

/// The only schema this version reads and writes.
pub const SCHEMA: u32 = 1;

/// Largest `root.toml` read.
pub const MAX_ROOT_BYTES: u64 = 64 * 1024;
/// Largest `manifest.toml` read (about 100,000 files).
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// Largest `timestamp.toml` read.
pub const MAX_TIMESTAMP_BYTES: u64 = 4 * 1024;
/// Largest run request read (a request names one member and a few classes).
pub const MAX_RUNREQ_BYTES: u64 = 4 * 1024;
/// Largest detached signature file read.
pub const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;

/// A kind of signed document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Document {
    /// `root.toml`: keys, roles, thresholds, server pins.
    Root,
    /// `manifest.toml`: every file of the policy tree and the member inventory.
    Manifest,
    /// `timestamp.toml`: which manifest is current, briefly.
    Timestamp,
    /// A run request: an administrator asks one member to converge now.
    RunRequest,
}

impl Document {
    /// The value of the document's `kind` field.
    pub fn kind(self) -> &'static str {
        match self {
            Document::Root => "root",
            Document::Manifest => "manifest",
            Document::Timestamp => "timestamp",
            Document::RunRequest => "runreq",
        }
    }

    /// The document whose `kind` is `kind`.
    pub fn from_kind(kind: &str) -> Option<Document> {
        [
            Document::Root,
            Document::Manifest,
            Document::Timestamp,
            Document::RunRequest,
        ]
        .into_iter()
        .find(|d| d.kind() == kind)
    }

    /// The signature context.
    pub fn context(self) -> Context {
        match self {
            Document::Root => Context::Root,
            Document::Manifest => Context::Manifest,
            Document::Timestamp => Context::Timestamp,
            Document::RunRequest => Context::RunRequest,
        }
    }

    /// The role whose keys sign it.
    pub fn role(self) -> Role {
        match self {
            Document::Root => Role::Root,
            Document::Manifest => Role::Policy,
            Document::Timestamp => Role::Timestamp,
            Document::RunRequest => Role::Admin,
        }
    }

    /// The size cap, checked before anything else.
    pub fn max_bytes(self) -> u64 {
        match self {
            Document::Root => MAX_ROOT_BYTES,
            Document::Manifest => MAX_MANIFEST_BYTES,
            Document::Timestamp => MAX_TIMESTAMP_BYTES,
            Document::RunRequest => MAX_RUNREQ_BYTES,
        }
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// The `schema = 1` field of every document (serialises as 1, reads only 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schema;

impl serde::Serialize for Schema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(SCHEMA)
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            SCHEMA => Ok(Schema),
            n => Err(serde::de::Error::custom(format!(
                "schema {n} is not schema {SCHEMA}"
            ))),
        }
    }
}

macro_rules! kind_tag {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($kind)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let k = String::deserialize(d)?;
                if k == $kind {
                    Ok($name)
                } else {
                    Err(serde::de::Error::custom(format!(
                        "kind {k:?} is not {:?}",
                        $kind
                    )))
                }
            }
        }
    };
}

kind_tag!(
    /// The `kind = "root"` field.
    RootKind,
    "root"
);
kind_tag!(
    /// The `kind = "manifest"` field.
    ManifestKind,
    "manifest"
);
kind_tag!(
    /// The `kind = "timestamp"` field.
    TimestampKind,
    "timestamp"
);
kind_tag!(
    /// The `kind = "runreq"` field.
    RunRequestKind,
    "runreq"
);

/// Refuses `bytes` larger than the document's cap.
pub(crate) fn check_size(document: Document, bytes: &[u8]) -> Result<(), VerifyError> {
    let size = bytes.len() as u64;
    if size > document.max_bytes() {
        return Err(VerifyError::TooLarge {
            document,
            size,
            max: document.max_bytes(),
        });
    }
    Ok(())
}

/// The fields every document starts with; read leniently first so that a document of
/// another kind or a newer schema gets that error rather than "unknown field".
#[derive(Deserialize)]
struct Header {
    schema: Option<toml::Value>,
    kind: Option<toml::Value>,
}

/// A signed document's type: its `schema` field is a [`Schema`] and its `kind` a kind
/// tag, so a strict parse succeeds only with the right header.
pub(crate) trait Headed: DeserializeOwned {}

/// Size cap, UTF-8, then a strict parse into `T`. Only when that fails is the header
/// read leniently, so that a document of another kind or a newer schema gets that
/// error rather than "unknown field" (a large manifest is parsed once, not twice).
pub(crate) fn parse<T: Headed>(document: Document, bytes: &[u8]) -> Result<T, VerifyError> {
    check_size(document, bytes)?;
    let text = std::str::from_utf8(bytes).map_err(|_| VerifyError::NotUtf8 { document })?;
    let strict = toml::from_str(text).map_err(|source| VerifyError::Parse { document, source });
    if strict.is_ok() {
        return strict;
    }
    let header: Header =
        toml::from_str(text).map_err(|source| VerifyError::Parse { document, source })?;
    match header.schema {
        Some(toml::Value::Integer(n)) if n == i64::from(SCHEMA) => {}
        Some(toml::Value::Integer(n)) => {
            return Err(VerifyError::Schema {
                document,
                found: n.to_string(),
            });
        }
        Some(other) => {
            return Err(VerifyError::Schema {
                document,
                found: other.to_string(),
            });
        }
        None => {
            return Err(VerifyError::Schema {
                document,
                found: "nothing".to_string(),
            });
        }
    }
    match header.kind {
        Some(toml::Value::String(k)) if k == document.kind() => {}
        Some(toml::Value::String(k)) => return Err(VerifyError::Kind { document, found: k }),
        Some(other) => {
            return Err(VerifyError::Kind {
                document,
                found: other.to_string(),
            });
        }
        None => {
            return Err(VerifyError::Kind {
                document,
                found: String::new(),
            });
        }
    }
    strict
}

/// Renders a document (or any of the crate's TOML files) as TOML text.
pub(crate) fn render<T: serde::Serialize>(value: &T) -> Result<String, toml::ser::Error> {
    toml::to_string(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be parsed")]
    struct Tiny {
        schema: Schema,
        kind: TimestampKind,
        x: u32,
    }

    impl Headed for Tiny {}

    fn check(text: &str) -> Result<Tiny, VerifyError> {
        parse(Document::Timestamp, text.as_bytes())
    }

    #[test]
    fn header_errors_come_before_field_errors() {
        assert!(check("schema = 1\nkind = \"timestamp\"\nx = 1\n").is_ok());
        assert!(matches!(
            check("schema = 2\nkind = \"timestamp\"\ny = 1\n"),
            Err(VerifyError::Schema { .. })
        ));
        assert!(matches!(
            check("schema = 1\nkind = \"manifest\"\ny = 1\n"),
            Err(VerifyError::Kind { .. })
        ));
        assert!(matches!(
            check("schema = 1\nkind = \"timestamp\"\nx = 1\ny = 2\n"),
            Err(VerifyError::Parse { .. })
        ));
        assert!(matches!(
            parse::<Tiny>(Document::Timestamp, &[0xff, 0xfe]),
            Err(VerifyError::NotUtf8 { .. })
        ));
        let big = format!(
            "schema = 1\nkind = \"timestamp\"\nx = 1\n#{}\n",
            "a".repeat(5000)
        );
        assert!(matches!(check(&big), Err(VerifyError::TooLarge { .. })));
    }
}
