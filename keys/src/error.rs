//! Every error of the crate: verification ([`VerifyError`]), key files ([`KeyError`]) and
//! the publishing commands ([`PublishError`]), join tokens ([`JoinError`]).
//!
//! Messages are lowercase, name the object and carry what a person needs to act: the
//! serial, the key id, the path.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::document::Document;
use crate::id::{DeploymentId, KeyId, KeyIds, Nonce, Sha256Sum};
use crate::key::Role;
use crate::time::{Time, TimeError};

/// Why a document, a bundle or a blob was not trusted. The trusted state never changes
/// when one of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The document is over its size cap; nothing else was looked at.
    #[error("{document} is {size} bytes, more than the {max} allowed; refusing to read it")]
    TooLarge {
        /// Which document.
        document: Document,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The document is not UTF-8 (after its signatures verified).
    #[error("{document} is not UTF-8")]
    NotUtf8 {
        /// Which document.
        document: Document,
    },
    /// The document is not TOML of its schema (after its signatures verified).
    #[error("{document} is malformed")]
    Parse {
        /// Which document.
        document: Document,
        /// The TOML error, with its location.
        #[source]
        source: toml::de::Error,
    },
    /// The document's `schema` is not one this version reads.
    #[error("{document} has schema {found}; this version reads schema 1")]
    Schema {
        /// Which document.
        document: Document,
        /// The schema found, as written.
        found: String,
    },
    /// The document's `kind` is not the expected one.
    #[error("expected a {document}, found kind {found:?}")]
    Kind {
        /// The document expected.
        document: Document,
        /// The kind found, as written.
        found: String,
    },
    /// The detached signature file is unreadable.
    #[error("the signature file of the {document} is unusable: {problem}")]
    SignatureFile {
        /// Which document it signs.
        document: Document,
        /// What is wrong.
        problem: SigFileProblem,
    },
    /// A key of the signing role made a signature that does not verify over these bytes.
    #[error("{document} has a signature by {role} key {keyid} that does not verify")]
    BadSignature {
        /// Which document.
        document: Document,
        /// The role the key was checked for.
        role: Role,
        /// The key.
        keyid: KeyId,
    },
    /// Too few distinct keys of the role signed.
    #[error(
        "{document} is signed by {valid} distinct {role} key(s), needs {threshold} (signers not in the {role} role: {ignored})"
    )]
    Threshold {
        /// Which document.
        document: Document,
        /// The role whose threshold was not met.
        role: Role,
        /// Distinct keys of the role whose signature verified.
        valid: usize,
        /// Distinct keys needed.
        threshold: usize,
        /// Signers that are not keys of the role (they do not count).
        ignored: KeyIds,
    },
    /// Too few distinct root keys of the trusted root signed a root update.
    #[error(
        "root version {version} is signed by {valid} distinct root key(s) of the trusted root version {trusted_version}, needs {threshold} (other signers: {ignored})"
    )]
    OldRootThreshold {
        /// The new root's version.
        version: u64,
        /// The trusted root's version.
        trusted_version: u64,
        /// Distinct old root keys whose signature verified.
        valid: usize,
        /// The old root's threshold.
        threshold: usize,
        /// Signers that are not root keys of the trusted root.
        ignored: KeyIds,
    },
    /// Too few distinct root keys of a new root signed it.
    #[error(
        "root version {version} is signed by {valid} distinct root key(s) of its own, needs {threshold} (other signers: {ignored})"
    )]
    NewRootThreshold {
        /// The new root's version.
        version: u64,
        /// Distinct new root keys whose signature verified.
        valid: usize,
        /// The new root's threshold.
        threshold: usize,
        /// Signers that are not root keys of the new root.
        ignored: KeyIds,
    },
    /// A bootstrap root does not have the pinned hash.
    #[error("root has sha256 {found}, but the pinned root hash is {expected}")]
    RootPin {
        /// The pinned hash.
        expected: Sha256Sum,
        /// The hash of the bytes offered.
        found: Sha256Sum,
    },
    /// A root is structurally invalid (keys, roles, thresholds).
    #[error("root version {version} is invalid: {problem}")]
    InvalidRoot {
        /// The root's version.
        version: u64,
        /// What is wrong.
        problem: RootProblem,
    },
    /// The document belongs to another deployment.
    #[error("{document} belongs to deployment {found}, not to the trusted deployment {expected}")]
    Deployment {
        /// Which document.
        document: Document,
        /// Its deployment id.
        found: DeploymentId,
        /// The trusted root's deployment id.
        expected: DeploymentId,
    },
    /// The document has expired.
    #[error("{document} expired at {expires} (now {now})")]
    Expired {
        /// Which document.
        document: Document,
        /// Its expiry.
        expires: Time,
        /// The time checked against.
        now: Time,
    },
    /// A root update is not exactly the next version.
    #[error("root update to version {found} refused: the next root must be version {expected}")]
    RootVersion {
        /// The trusted version plus one.
        expected: u64,
        /// The version offered.
        found: u64,
    },
    /// A root update lowers the policy epoch.
    #[error("root version {version} lowers the policy epoch from {old} to {new}")]
    RootEpoch {
        /// The new root's version.
        version: u64,
        /// The trusted root's policy epoch.
        old: u64,
        /// The new root's policy epoch.
        new: u64,
    },
    /// A manifest (or the manifest a timestamp names) is older than the trusted one.
    #[error(
        "manifest serial {serial} (epoch {epoch}) is older than the trusted serial {trusted_serial} (epoch {trusted_epoch}); refusing rollback"
    )]
    Rollback {
        /// The offered epoch.
        epoch: u64,
        /// The offered serial.
        serial: u64,
        /// The trusted epoch.
        trusted_epoch: u64,
        /// The trusted serial.
        trusted_serial: u64,
    },
    /// Two different manifests claim the same epoch and serial.
    #[error(
        "manifest serial {serial} (epoch {epoch}) has sha256 {offered}, but the trusted manifest with that serial has {trusted}; refusing equivocation (two signers published one serial)"
    )]
    Equivocation {
        /// The epoch.
        epoch: u64,
        /// The serial.
        serial: u64,
        /// The trusted manifest's hash.
        trusted: Sha256Sum,
        /// The offered manifest's hash.
        offered: Sha256Sum,
    },
    /// The manifest is not the size the timestamp names.
    #[error("manifest is {found} bytes, but the timestamp names one of {expected} bytes")]
    ManifestSize {
        /// The size named by the timestamp.
        expected: u64,
        /// The size offered (or a lower bound when reading stopped early).
        found: u64,
    },
    /// The manifest does not hash to what the timestamp names.
    #[error("manifest has sha256 {found}, but the timestamp names {expected}")]
    ManifestHash {
        /// The hash named by the timestamp.
        expected: Sha256Sum,
        /// The hash of the bytes offered.
        found: Sha256Sum,
    },
    /// The manifest's epoch and serial are not those the timestamp names.
    #[error(
        "manifest is serial {serial} (epoch {epoch}), but the timestamp names serial {expected_serial} (epoch {expected_epoch})"
    )]
    ManifestNotNamed {
        /// The manifest's epoch.
        epoch: u64,
        /// The manifest's serial.
        serial: u64,
        /// The epoch the timestamp names.
        expected_epoch: u64,
        /// The serial the timestamp names.
        expected_serial: u64,
    },
    /// The manifest's epoch is not the root's policy epoch.
    #[error(
        "manifest serial {serial} has epoch {epoch}, but the trusted root's policy epoch is {root_epoch}"
    )]
    Epoch {
        /// The manifest's serial.
        serial: u64,
        /// The manifest's epoch.
        epoch: u64,
        /// The root's policy epoch.
        root_epoch: u64,
    },
    /// The manifest names a root newer than the trusted one.
    #[error(
        "manifest serial {serial} names root version {manifest}, newer than the trusted root version {trusted}"
    )]
    ManifestRootVersion {
        /// The manifest's serial.
        serial: u64,
        /// The root version the manifest names.
        manifest: u64,
        /// The trusted root's version.
        trusted: u64,
    },
    /// The manifest's creation time is beyond the allowed clock skew.
    #[error(
        "manifest serial {serial} was created at {created}, more than {max_skew_secs} s after now ({now}); check the clocks"
    )]
    CreatedInFuture {
        /// The manifest's serial.
        serial: u64,
        /// Its creation time.
        created: Time,
        /// The time checked against.
        now: Time,
        /// The allowed skew.
        max_skew_secs: u64,
    },
    /// A timestamp's version (its signing time, unix seconds) is beyond the allowed
    /// clock skew: a signer whose clock is ahead, or a forged version meant to freeze
    /// members on their serial.
    #[error(
        "timestamp version {version} is more than {max_skew_secs} s ahead of now ({now}, unix {now_unix}); refused so that it cannot freeze this member; check the master's clock"
    )]
    TimestampInFuture {
        /// The version offered.
        version: u64,
        /// The time checked against.
        now: Time,
        /// The same, in unix seconds.
        now_unix: u64,
        /// The allowed skew.
        max_skew_secs: u64,
    },
    /// A manifest path breaks the path rule.
    #[error("manifest path {path:?} is unsafe: {problem}")]
    UnsafePath {
        /// The path, as written.
        path: String,
        /// Which rule it breaks.
        problem: PathProblem,
    },
    /// A manifest path is listed twice.
    #[error("manifest lists path {path:?} twice")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// Two files with the same SHA-256 but different sizes (one blob cannot be both).
    #[error("{path} has sha256 {sha256} like {other}, but another size")]
    ConflictingBlobSize {
        /// The later file.
        path: String,
        /// The earlier file with that hash.
        other: String,
        /// The shared hash.
        sha256: Sha256Sum,
    },
    /// Two members of the inventory share a key id.
    #[error("manifest lists key id {keyid} for both member {first} and member {second}")]
    DuplicateMemberKey {
        /// The key id.
        keyid: KeyId,
        /// The first member listing it.
        first: String,
        /// The second member listing it.
        second: String,
    },
    /// A member is listed twice.
    #[error("manifest lists member {name} twice")]
    DuplicateMember {
        /// The member.
        name: String,
    },
    /// A member or class name has characters a person could be fooled by.
    #[error(
        "manifest has an invalid {what} name {name:?}; names are letters, digits, `-`, `_` and `.`, starting with a letter or digit (at most 128)"
    )]
    Name {
        /// `member` or `class`.
        what: &'static str,
        /// The name, as written.
        name: String,
    },
    /// A blob named by the manifest is not in the bundle.
    #[error("blob for {path} (sha256 {sha256}) is missing")]
    MissingBlob {
        /// The manifest path.
        path: String,
        /// The declared hash.
        sha256: Sha256Sum,
        /// Why it could not be opened.
        #[source]
        source: io::Error,
    },
    /// A blob is not a regular file (a link, a directory...).
    #[error("blob for {path} (sha256 {sha256}) is not a regular file")]
    BlobNotFile {
        /// The manifest path.
        path: String,
        /// The declared hash.
        sha256: Sha256Sum,
    },
    /// A blob is larger than declared; it was not read past the declared size.
    #[error("blob for {path} is larger than the declared {declared} bytes; refusing it")]
    BlobTooLarge {
        /// The manifest path.
        path: String,
        /// The declared size.
        declared: u64,
    },
    /// A blob is smaller than declared.
    #[error("blob for {path} is {found} bytes, but the manifest declares {declared}")]
    BlobTooSmall {
        /// The manifest path.
        path: String,
        /// The declared size.
        declared: u64,
        /// The size found.
        found: u64,
    },
    /// A blob has the declared size but another hash.
    #[error("blob for {path} has sha256 {found}, but the manifest declares {declared}")]
    BlobHash {
        /// The manifest path.
        path: String,
        /// The declared hash.
        declared: Sha256Sum,
        /// The hash of the bytes offered.
        found: Sha256Sum,
    },
    /// A blob stream failed while being read or written.
    #[error("cannot stream the blob for {path}")]
    BlobIo {
        /// The manifest path.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file of the bundle could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A persisted trust state is not readable.
    #[error("the trust state is malformed")]
    TrustState {
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// A persisted trust state has the wrong schema or kind.
    #[error(
        "the trust state has schema {schema} and kind {kind:?}; expected schema 1 and kind \"trust-state\""
    )]
    TrustStateKind {
        /// The schema found.
        schema: u32,
        /// The kind found.
        kind: String,
    },
}

/// What is wrong with a signature file.
#[derive(Debug)]
#[non_exhaustive]
pub enum SigFileProblem {
    /// Over the size cap.
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// Not UTF-8.
    NotUtf8,
    /// Not a list of `[[signature]] keyid sig`.
    Parse(toml::de::Error),
    /// More entries than the cap.
    TooMany {
        /// Entries found.
        count: usize,
        /// The cap.
        max: usize,
    },
}

impl fmt::Display for SigFileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { size, max } => write!(f, "{size} bytes, more than the {max} allowed"),
            Self::NotUtf8 => f.write_str("not UTF-8"),
            Self::Parse(e) => write!(f, "{}", e.to_string().trim_end()),
            Self::TooMany { count, max } => {
                write!(f, "{count} signatures, more than the {max} allowed")
            }
        }
    }
}

/// What is structurally wrong with a root.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootProblem {
    /// Versions start at 1.
    ZeroVersion,
    /// A role needs no signature at all.
    ZeroThreshold {
        /// The role.
        role: Role,
    },
    /// A role needs more signatures than it has keys.
    ThresholdAboveKeys {
        /// The role.
        role: Role,
        /// Its threshold.
        threshold: u32,
        /// Its distinct keys.
        keys: usize,
    },
    /// A role names a key that `[[key]]` does not list.
    UnlistedKey {
        /// The role.
        role: Role,
        /// The key id.
        keyid: KeyId,
    },
    /// A role lists one key twice.
    DuplicateRoleKey {
        /// The role.
        role: Role,
        /// The key id.
        keyid: KeyId,
    },
    /// A `[[key]]` id is not the key id of its public key.
    KeyIdMismatch {
        /// The id written.
        listed: KeyId,
        /// The id of the public key.
        computed: KeyId,
    },
    /// A `[[key]]` is listed twice.
    DuplicateKey {
        /// The key id.
        keyid: KeyId,
    },
    /// A key name is empty, too long or has control characters.
    KeyName {
        /// The key id.
        keyid: KeyId,
    },
    /// An `[[admin_scope]]` names a key that is not in the admin role.
    ScopeNotAdmin {
        /// The key id.
        keyid: KeyId,
    },
    /// Two `[[admin_scope]]` tables name one key.
    DuplicateScope {
        /// The key id.
        keyid: KeyId,
    },
    /// A scope pattern is neither `*`, a name, nor (for classes) `prefix*`.
    ScopePattern {
        /// The key id.
        keyid: KeyId,
        /// The pattern.
        pattern: String,
    },
}

impl fmt::Display for RootProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroVersion => f.write_str("versions start at 1"),
            Self::ZeroThreshold { role } => write!(f, "role {role} has threshold 0"),
            Self::ThresholdAboveKeys {
                role,
                threshold,
                keys,
            } => write!(
                f,
                "role {role} needs {threshold} signatures but lists only {keys} distinct keys"
            ),
            Self::UnlistedKey { role, keyid } => {
                write!(f, "role {role} names key {keyid}, which no [[key]] lists")
            }
            Self::DuplicateRoleKey { role, keyid } => {
                write!(f, "role {role} lists key {keyid} twice")
            }
            Self::KeyIdMismatch { listed, computed } => write!(
                f,
                "[[key]] id {listed} is not the key id of its public key ({computed})"
            ),
            Self::DuplicateKey { keyid } => write!(f, "[[key]] {keyid} is listed twice"),
            Self::KeyName { keyid } => write!(
                f,
                "[[key]] {keyid} has an empty or unprintable name (at most 64 printable characters)"
            ),
            Self::ScopeNotAdmin { keyid } => write!(
                f,
                "[[admin_scope]] names key {keyid}, which is not a key of the admin role"
            ),
            Self::DuplicateScope { keyid } => {
                write!(f, "[[admin_scope]] for key {keyid} is given twice")
            }
            Self::ScopePattern { keyid, pattern } => write!(
                f,
                "[[admin_scope]] of key {keyid}: {pattern:?} is not a member or class pattern"
            ),
        }
    }
}

/// Which part of the path rule a manifest path breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    /// The empty path.
    Empty,
    /// Longer than the cap.
    TooLong {
        /// The cap in bytes.
        max: usize,
    },
    /// Starts with `/`.
    Absolute,
    /// Has a `..` component.
    ParentDir,
    /// Has a `.` component.
    CurDir,
    /// Has an empty component (`a//b`, a trailing `/`).
    EmptyComponent,
    /// Has a NUL byte.
    Nul,
    /// Has a backslash (a separator elsewhere).
    Backslash,
    /// Has another control character.
    Control,
    /// A file name that is not UTF-8 (only met while reading a tree).
    NotUtf8,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::TooLong { max } => write!(f, "it is longer than {max} bytes"),
            Self::Absolute => f.write_str("it is absolute; paths are relative to the policy tree"),
            Self::ParentDir => f.write_str("it has a '..' component"),
            Self::CurDir => f.write_str("it has a '.' component"),
            Self::EmptyComponent => f.write_str("it has an empty component"),
            Self::Nul => f.write_str("it has a NUL byte"),
            Self::Backslash => f.write_str("it has a backslash"),
            Self::Control => f.write_str("it has a control character"),
            Self::NotUtf8 => f.write_str("it is not UTF-8"),
        }
    }
}

/// Why a private key file could not be made, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The operating system's randomness failed.
    #[error("cannot get randomness for a new key: {reason}")]
    Random {
        /// The error as reported.
        reason: String,
    },
    /// The key file could not be opened or read.
    #[error("cannot read private key {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The key file is not a regular file.
    #[error("private key {} is not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// The key file is readable or writable by others.
    #[error("private key {} has mode {mode:03o}; others may read it (run chmod 600)", path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file belongs to another user than the one reading it (and not to root):
    /// that user could replace the key.
    #[error(
        "private key {} is owned by uid {owner}, not by this user (uid {euid}) or root (run chown)",
        path.display()
    )]
    Owner {
        /// The file.
        path: PathBuf,
        /// The file's owner.
        owner: u32,
        /// The effective uid reading it.
        euid: u32,
    },
    /// The key file is larger than any key.
    #[error("private key {} is larger than {max} bytes; is it a key?", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// The file is not an ed25519 PKCS#8 PEM key.
    #[error("private key {} is not an ed25519 PKCS#8 PEM key: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The decoder's reason.
        reason: String,
    },
    /// The key could not be encoded.
    #[error("cannot encode a private key: {reason}")]
    Encode {
        /// The encoder's reason.
        reason: String,
    },
    /// The destination exists; keys are never replaced.
    #[error("{} exists; a private key is never overwritten", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The key file could not be written.
    #[error("cannot write private key {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Why a publishing command (init, enroll, sign, attest, timestamp) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The policy tree is invalid; nothing was signed.
    #[error("policy tree {} is invalid ({count} errors); nothing was signed", tree.display())]
    InvalidPolicy {
        /// The tree.
        tree: PathBuf,
        /// Errors found.
        count: usize,
        /// Every problem, to print.
        diagnostics: tenet_policies::Diagnostics,
    },
    /// A key file problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A document did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The policy tree could not be walked.
    #[error("cannot walk the policy tree {}", path.display())]
    Walk {
        /// The tree.
        path: PathBuf,
        /// The walk error.
        #[source]
        source: walkdir::Error,
    },
    /// A directory the mirror layout writes into is a symbolic link.
    #[error(
        "{} is a symbolic link; a mirror's blobs/ and root/ must be real directories inside it (remove the link, or publish to the directory it points to)",
        path.display()
    )]
    SymlinkInMirror {
        /// The link.
        path: PathBuf,
    },
    /// The destination directory is not empty.
    #[error("{} exists and is not empty; refusing to write into it", path.display())]
    NotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// A configuration file of the deployment is malformed.
    #[error("{} is malformed", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// A document could not be rendered as TOML.
    #[error("cannot render {what} as TOML")]
    Render {
        /// What was being rendered.
        what: &'static str,
        /// The serialiser's error.
        #[source]
        source: toml::ser::Error,
    },
    /// The requested serial does not increase.
    #[error(
        "serial {requested} is not greater than the last serial {last} signed for this deployment; serials only increase"
    )]
    Serial {
        /// The serial asked for.
        requested: u64,
        /// The last serial recorded.
        last: u64,
    },
    /// No administrator of that name is recorded.
    #[error("administrator {name} is not recorded in admins.toml")]
    NoAdmin {
        /// The name.
        name: String,
    },
    /// A scope pattern given for an administrator is invalid.
    #[error("{pattern:?} is not a {what} pattern (a name, `*`, or for classes `prefix*`)")]
    ScopePattern {
        /// `member` or `class`.
        what: &'static str,
        /// The pattern.
        pattern: String,
    },
    /// The member is not enrolled.
    #[error("member {member} is not enrolled")]
    NotEnrolled {
        /// The member.
        member: String,
    },
    /// The key id already belongs to another member.
    #[error(
        "key id {keyid} is already enrolled for member {member}; one key identifies one member"
    )]
    KeyInUse {
        /// The key id.
        keyid: KeyId,
        /// The member holding it.
        member: String,
    },
    /// A member name breaks the naming rule.
    #[error(
        "{name:?} is not a member name; names are letters, digits, `-`, `_` and `.`, starting with a letter or digit (at most 128)"
    )]
    MemberName {
        /// The name given.
        name: String,
    },
    /// The key is not one the root lists for the document's role.
    #[error("key {keyid} is not a {role} key of root version {root_version}; refusing to sign {}", path.display())]
    KeyNotInRole {
        /// The key id.
        keyid: KeyId,
        /// The role it would need.
        role: Role,
        /// The root checked.
        root_version: u64,
        /// The document.
        path: PathBuf,
    },
    /// The file's `kind` is not one of the signed documents.
    #[error("cannot tell what {} is: kind {found:?}; expected root, manifest or timestamp", path.display())]
    UnknownKind {
        /// The file.
        path: PathBuf,
        /// The kind found.
        found: String,
    },
    /// A tree entry is a symlink or a special file.
    #[error("policy tree entry {} is not a regular file or directory; bundles carry regular files only", path.display())]
    TreeEntry {
        /// The entry.
        path: PathBuf,
    },
    /// A tree entry's path breaks the manifest path rule.
    #[error("policy tree entry {} cannot be named in a manifest: {problem}", path.display())]
    TreePath {
        /// The entry.
        path: PathBuf,
        /// Which rule it breaks.
        problem: PathProblem,
    },
    /// The deployment has no root yet.
    #[error("deployment {} has no root/N.root.toml", dir.display())]
    NoRoot {
        /// The deployment directory.
        dir: PathBuf,
    },
    /// Root key count and threshold do not fit.
    #[error("a root threshold of {threshold} needs between 1 and {keys} root keys")]
    RootThreshold {
        /// Keys asked for.
        keys: u32,
        /// Threshold asked for.
        threshold: u32,
    },
    /// A computed time is past 9999.
    #[error("{what} would be after 9999-12-31")]
    TimeOverflow {
        /// What was being computed.
        what: &'static str,
    },
    /// A time could not be read.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// A join token or request was refused, or its files are unusable.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// `members`: the cluster config or the engine's membership could not be read.
    #[error(transparent)]
    Members(#[from] MembersError),
    /// The deployment has no administrator key to sign a join token with, or several.
    #[error("{reason}; name the administrator's key with --key")]
    NoAdminKey {
        /// What was found.
        reason: String,
    },
    /// The mirror holds a newer manifest (or another under the same serial).
    #[error(
        "mirror {} holds epoch {held_epoch} serial {held_serial}; refusing to publish epoch {offered_epoch} serial {offered_serial} over it (a mirror never goes backwards)",
        mirror.display()
    )]
    MirrorAhead {
        /// The mirror's directory.
        mirror: PathBuf,
        /// The epoch it holds.
        held_epoch: u64,
        /// The serial it holds.
        held_serial: u64,
        /// The epoch offered.
        offered_epoch: u64,
        /// The serial offered.
        offered_serial: u64,
    },
}

/// Why a token was refused. [`JoinError::code`] (see [`crate::join`]) names each for the wire.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// Not a token: size, field count or a field's syntax.
    #[error("join token is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The signer is not a key of the root.
    #[error("join token is signed by key {keyid}, which root version {root_version} does not list")]
    UnknownKey {
        /// The signer.
        keyid: KeyId,
        /// The root checked against.
        root_version: u64,
    },
    /// The signer is a key of the root, but not an admin key.
    #[error("join token is signed by key {keyid} ({name}), which is not an admin key")]
    NotAdmin {
        /// The signer.
        keyid: KeyId,
        /// Its name in the root.
        name: String,
    },
    /// The signature does not verify.
    #[error("join token signature by admin key {keyid} does not verify")]
    BadSignature {
        /// The signer.
        keyid: KeyId,
    },
    /// Made for another deployment.
    #[error("join token is for deployment {found}, not {expected}")]
    WrongDeployment {
        /// The root's deployment.
        expected: DeploymentId,
        /// The token's.
        found: DeploymentId,
    },
    /// The signer's scope does not cover the member or a class.
    #[error("admin key {keyid} may not enrol {what}")]
    OutOfScope {
        /// The signer.
        keyid: KeyId,
        /// `member NAME` or `class NAME`.
        what: String,
    },
    /// `issued` is further in the future than the skew allows.
    #[error("join token was issued at {issued}, later than now ({now}) allows")]
    NotYetValid {
        /// Its `issued`.
        issued: Time,
        /// The clock.
        now: Time,
    },
    /// Past `expires`.
    #[error("join token expired at {expires} (now {now})")]
    Expired {
        /// Its `expires`.
        expires: Time,
        /// The clock.
        now: Time,
    },
    /// Presented for another member name than the one it names.
    #[error("join token is for member {token:?}, not {asked:?}")]
    WrongMember {
        /// The token's member.
        token: String,
        /// The name asked for.
        asked: String,
    },
    /// Its id was accepted before.
    #[error("join token {id} was already used")]
    Used {
        /// The token id.
        id: Nonce,
    },
    /// The member was revoked after the token was issued.
    #[error(
        "member {member} was revoked at {revoked}, after join token {id} was issued ({issued})"
    )]
    RevokedSince {
        /// The member.
        member: String,
        /// The token id.
        id: Nonce,
        /// Its `issued`.
        issued: Time,
        /// When the member was revoked.
        revoked: Time,
    },
    /// The key presented is already enrolled.
    #[error("key {keyid} is already enrolled (as member {member})")]
    AlreadyEnrolled {
        /// The key.
        keyid: KeyId,
        /// Its member.
        member: String,
    },
    /// No stored request for the member.
    #[error("no join request from member {member} in {dir}")]
    NoRequest {
        /// The member.
        member: String,
        /// The requests directory.
        dir: PathBuf,
    },
    /// A stored request is not readable as one.
    #[error("join request {path} is malformed")]
    BadRequest {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// A file could not be read or written.
    #[error("cannot {what} {path}")]
    Io {
        /// `read`, `write`...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Randomness was unavailable.
    #[error("cannot draw a token id")]
    Random {
        /// Why.
        #[source]
        source: getrandom::Error,
    },
}

impl JoinError {
    /// A stable code for the wire (`{"type":"refused","reason":CODE}`).
    pub fn code(&self) -> &'static str {
        match self {
            JoinError::Malformed { .. } => "malformed",
            JoinError::UnknownKey { .. } => "unknown_key",
            JoinError::NotAdmin { .. } => "not_admin",
            JoinError::BadSignature { .. } => "bad_signature",
            JoinError::WrongDeployment { .. } => "wrong_deployment",
            JoinError::OutOfScope { .. } => "out_of_scope",
            JoinError::NotYetValid { .. } => "not_yet_valid",
            JoinError::Expired { .. } => "expired",
            JoinError::WrongMember { .. } => "wrong_member",
            JoinError::Used { .. } => "token_used",
            JoinError::RevokedSince { .. } => "revoked",
            JoinError::AlreadyEnrolled { .. } => "already_enrolled",
            JoinError::NoRequest { .. } => "no_request",
            JoinError::BadRequest { .. } => "bad_request",
            JoinError::Io { .. } => "io",
            JoinError::Random { .. } => "random",
        }
    }

    /// Whether the refusal is about trust (signature, signer, scope, time, reuse) rather
    /// than a file or the input's shape.
    pub fn is_trust(&self) -> bool {
        !matches!(
            self,
            JoinError::Malformed { .. }
                | JoinError::NoRequest { .. }
                | JoinError::BadRequest { .. }
                | JoinError::Io { .. }
                | JoinError::Random { .. }
        )
    }
}

/// Why a cluster config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    /// The file is not valid TOML.
    #[error("{path} is not valid TOML")]
    Toml {
        /// The file.
        path: String,
        /// The parser's error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// No file of the tree declares `[cluster]`.
    #[error("no file of {0} declares [cluster]")]
    NoCluster(String),
    /// The engine's command could not run or failed.
    #[error("{engine}: `{command}` {reason}")]
    Engine {
        /// The engine.
        engine: &'static str,
        /// The command line.
        command: String,
        /// What went wrong (its stderr, or the spawn error).
        reason: String,
    },
    /// The engine's command named no node: a proposal would remove every member.
    #[error("{engine}: `{command}` names no node; refusing to propose removing every member")]
    NoNodes {
        /// The engine.
        engine: &'static str,
        /// The command line.
        command: String,
    },
}
