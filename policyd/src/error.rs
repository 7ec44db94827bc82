//! Every error of the crate: the configuration ([`ConfigError`]), start-up
//! ([`DaemonError`]), loading a bundle ([`BundleError`]), promotion ([`PromoteError`])
//! and the control socket's client side ([`ControlError`]).
//!
//! Messages are lowercase, name the object (file, address, key id, serial) and carry
//! the underlying error as their source.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use tenet_keys::{KeyError, KeyId, PublishError, TlsError, VerifyError};

use crate::exit::ExitCode;

/// Why the configuration file was refused. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is larger than any configuration should be.
    #[error("the configuration {path} is larger than {max} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// The file is not TOML of the expected shape (an unknown field, a wrong type).
    #[error("{at}: the configuration is malformed")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where in it (`file:line:col`).
        at: tenet_policies::Origin,
        /// The TOML error, with its line and column.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A field has a value that cannot be used.
    #[error("{at}: {field}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where in it (`file:line:col`): the field's value, or the file's start when
        /// a required field is left out.
        at: tenet_policies::Origin,
        /// The field, dotted (`limits.max_header_bytes`).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The persisted ratchet is unreadable, forged, or from another deployment.
    #[error(
        "cannot use the persisted ratchet {path}: {reason}; remove it only if this member must serve another deployment"
    )]
    Ratchet {
        /// The ratchet file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The node key could not be read.
    #[error("cannot use the node key {path}")]
    NodeKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// The trusted root file could not be read.
    #[error("cannot read the trusted root {path}")]
    ReadRoot {
        /// The root file (or its `.sig`).
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The trusted root does not verify against its own root keys.
    #[error("the trusted root {path} does not verify")]
    Root {
        /// The root file.
        path: PathBuf,
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// A TLS configuration could not be made.
    #[error("cannot set up TLS")]
    Tls {
        /// Why.
        #[source]
        source: TlsError,
    },
    /// The state directory could not be created or secured.
    #[error("cannot prepare the state directory {path}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another daemon answers on the control socket.
    #[error("another tenet-policyd is running on {socket}")]
    AlreadyRunning {
        /// The control socket.
        socket: PathBuf,
    },
    /// A socket could not be bound.
    #[error("cannot bind the {what} on {address}")]
    Bind {
        /// `listener`, `metrics endpoint` or `control socket`.
        what: &'static str,
        /// The address or socket path.
        address: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install the signal handlers")]
    Signals {
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl DaemonError {
    /// Whether the error is the configuration's fault (a key or root file it names),
    /// rather than the environment's.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            DaemonError::NodeKey { .. } | DaemonError::ReadRoot { .. }
        )
    }

    /// Whether trust was refused (the trusted root itself does not verify).
    pub fn is_trust_refusal(&self) -> bool {
        matches!(self, DaemonError::Root { .. })
    }

    /// The exit code of `serve` failing with this error.
    pub fn exit_code(&self) -> ExitCode {
        if self.is_configuration() {
            ExitCode::InvalidConfig
        } else if self.is_trust_refusal() {
            ExitCode::TrustRefused
        } else {
            ExitCode::Failure
        }
    }
}

/// Why a bundle directory was not accepted for serving. The served bundle, if any, is
/// unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bundle directory could not be opened.
    #[error("cannot open the bundle {path}")]
    Open {
        /// The directory as named.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file of the bundle could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file of the bundle is over its cap.
    #[error("{path} is larger than {max} bytes; refusing to read it")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// The bundle has no root history.
    #[error("the bundle {dir} has no root/1.root.toml")]
    NoRoot {
        /// The bundle.
        dir: PathBuf,
    },
    /// The bundle's root history stops before the trusted root.
    #[error(
        "the bundle {dir} has root versions up to {newest}, older than the trusted root version {trusted}"
    )]
    RootBehind {
        /// The bundle.
        dir: PathBuf,
        /// Its newest root version.
        newest: u64,
        /// The trusted root's version.
        trusted: u64,
    },
    /// The bundle's root at the trusted version is another root: another deployment,
    /// or a forged history.
    #[error("root version {version} in {dir} is not the trusted root version {version}")]
    ForeignRoot {
        /// The bundle.
        dir: PathBuf,
        /// The version compared.
        version: u64,
    },
    /// A root version of the bundle does not verify.
    #[error("root version {version} in {dir} does not verify")]
    Root {
        /// The bundle.
        dir: PathBuf,
        /// The version.
        version: u64,
        /// Why.
        #[source]
        source: Box<VerifyError>,
    },
    /// The manifest does not verify (signature, deployment, epoch, rollback, expiry).
    #[error("the manifest of {dir} does not verify")]
    Manifest {
        /// The bundle.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Box<VerifyError>,
    },
    /// A blob is missing or does not match the manifest.
    #[error("the blob of {file} in {dir} does not verify")]
    Blob {
        /// The bundle.
        dir: PathBuf,
        /// The manifest path of the file.
        file: String,
        /// Why.
        #[source]
        source: Box<VerifyError>,
    },
}

impl BundleError {
    /// Whether the bundle was refused on trust grounds (as opposed to being unreadable).
    pub fn is_trust_refusal(&self) -> bool {
        !matches!(self, BundleError::Open { .. } | BundleError::Read { .. })
    }
}

/// Why a promotion (or a pick-up of a newer bundle) was refused. The daemon keeps its
/// previous state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromoteError {
    /// The ratchet could not be persisted, so the bundle is not served: a restarted
    /// daemon must never serve an older serial than this one.
    #[error("cannot persist the served serial to {path}")]
    Ratchet {
        /// The ratchet file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No key file was named, on the command line or in the configuration.
    #[error("no {what} key: pass {flag} or set {field} in the configuration")]
    NoKey {
        /// `timestamp` or `policy server TLS`.
        what: &'static str,
        /// The command-line flag.
        flag: &'static str,
        /// The configuration field.
        field: &'static str,
    },
    /// A key file could not be read.
    #[error("cannot use the {what} key {path}")]
    Key {
        /// `timestamp` or `policy server TLS`.
        what: &'static str,
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// The bundle was not accepted.
    #[error("refusing the bundle")]
    Bundle {
        /// Why.
        #[source]
        source: BundleError,
    },
    /// The server key is not pinned by the bundle's root, so members would refuse it.
    #[error(
        "the policy server key {keyid} is not pinned in root version {root_version} ([transport] server_spki); members would refuse it"
    )]
    ServerKeyNotPinned {
        /// The key's id.
        keyid: KeyId,
        /// The root version checked.
        root_version: u64,
    },
    /// The timestamp key is not a timestamp key of the bundle's root.
    #[error(
        "the timestamp key {keyid} is not a timestamp key of root version {root_version}; members would refuse its timestamps"
    )]
    TimestampKeyNotInRole {
        /// The key's id.
        keyid: KeyId,
        /// The root version checked.
        root_version: u64,
    },
    /// The timestamp could not be made.
    #[error("cannot sign the timestamp for serial {serial}")]
    SignTimestamp {
        /// The manifest's serial.
        serial: u64,
        /// Why.
        #[source]
        source: Box<PublishError>,
    },
    /// The timestamp just made does not verify as a member would check it.
    #[error("the timestamp signed for serial {serial} does not verify")]
    CheckTimestamp {
        /// The manifest's serial.
        serial: u64,
        /// Why.
        #[source]
        source: Box<VerifyError>,
    },
    /// The serving socket could not be bound.
    #[error("cannot bind the serving socket on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The serving TLS configuration could not be made.
    #[error("cannot set up TLS for serving")]
    Tls {
        /// Why.
        #[source]
        source: TlsError,
    },
    /// The background task doing the work stopped unexpectedly.
    #[error("the promotion task stopped unexpectedly")]
    Task {
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl PromoteError {
    /// Whether trust was refused (bundle, key roles, pins), as opposed to an I/O or
    /// configuration problem.
    pub fn is_trust_refusal(&self) -> bool {
        match self {
            PromoteError::Bundle { source } => source.is_trust_refusal(),
            PromoteError::ServerKeyNotPinned { .. }
            | PromoteError::TimestampKeyNotInRole { .. }
            | PromoteError::CheckTimestamp { .. } => true,
            _ => false,
        }
    }

    /// Whether the configuration (or the command line) is at fault.
    pub fn is_configuration(&self) -> bool {
        matches!(self, PromoteError::NoKey { .. })
    }
}

/// Why a one-shot command could not talk to the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Nothing answers on the control socket.
    #[error("cannot reach tenet-policyd on {socket} (is it running?)")]
    Connect {
        /// The control socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The exchange failed half-way (or timed out).
    #[error("lost the connection to tenet-policyd on {socket}")]
    Io {
        /// The control socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The request could not be encoded.
    #[error("cannot encode the request")]
    Encode {
        /// Why.
        #[source]
        source: toml::ser::Error,
    },
    /// The daemon's reply is not a reply.
    #[error("tenet-policyd on {socket} sent a malformed reply")]
    Reply {
        /// The control socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// The daemon's reply is over the cap.
    #[error("tenet-policyd on {socket} sent a reply larger than {max} bytes")]
    TooLarge {
        /// The control socket.
        socket: PathBuf,
        /// The cap.
        max: u64,
    },
}
