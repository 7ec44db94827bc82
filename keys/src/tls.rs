//! TLS for both ends: self-signed ed25519 certificates made from tenet keys, and rustls
//! configurations that authenticate peers by the SHA-256 of their SubjectPublicKeyInfo
//! (the key id), never by a name, an address or a certificate authority.
//!
//! - Members connect with [`client_config`]: the server must present a key whose id is
//!   in the trusted root's `[transport] server_spki` pins.
//! - The policy server (and a member's own listener) accepts with [`server_config`]:
//!   client certificates are mandatory, possession of the key is proved by the TLS 1.3
//!   handshake signature, and a [`ClientPolicy`] decides at the handshake which key ids
//!   get in ([`MemberPins`]: the enrolled members of the manifest being served).
//!
//! Both ends speak TLS 1.3 only, use the ring provider passed explicitly (never the
//! process default, which panics when two providers are linked), and offer ALPN `h2`
//! then `http/1.1`. The server neither stores sessions nor issues tickets, so every
//! connection runs the client verifier again: a key removed from the pins cannot come
//! back through resumption.
//!
//! **Invariant:** a peer's identity is [`KeyId`], computed from the certificate's SPKI
//! exactly as [`crate::PublicKey::key_id`] computes it for the same key; the
//! certificate's names, dates and extensions are written for people reading
//! `openssl s_client` output and are never consulted.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, CommonState, DigitallySignedStruct,
    DistinguishedName, PeerIncompatible, ServerConfig, SignatureScheme,
};

use crate::error::KeyError;
use crate::id::KeyId;
use crate::key::SecretKey;

/// The ALPN protocols both ends offer, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The name a member puts in its TLS `ClientHello` when it connects to the policy server.
/// The server's certificate is pinned by key, so the name is never checked; any valid
/// DNS name or IP address would do, and a relocatable address needs no certificate change.
pub const SERVER_NAME: &str = "tenet-policyd";

/// Why a TLS certificate or configuration could not be made, or a peer not identified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The private key could not be exported for the certificate.
    #[error("cannot export the key {keyid} for a TLS certificate")]
    ExportKey {
        /// The key's id.
        keyid: KeyId,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// rcgen refused to make the certificate.
    #[error("cannot make a TLS certificate for the key {keyid}")]
    Certificate {
        /// The key's id.
        keyid: KeyId,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// rustls could not load the key for signing, or it does not match the certificate.
    #[error("cannot load the key {keyid} for TLS")]
    SigningKey {
        /// The key's id.
        keyid: KeyId,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS {side} configuration")]
    Config {
        /// `client` or `server`.
        side: &'static str,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The peer presented no certificate (the handshake is not finished, or the peer is
    /// not authenticated).
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    /// The peer's certificate is not a well-formed X.509 certificate.
    #[error("the peer's certificate is malformed")]
    MalformedCertificate {
        /// What webpki found.
        #[source]
        source: webpki::Error,
    },
}

/// Whom a certificate is for. It chooses the certificate's common name and extended key
/// usage, which are informational only.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subject {
    /// The policy server's TLS key (pinned in the root): CN `tenet-policyd`, EKU server
    /// authentication.
    PolicyServer,
    /// A member's node key: CN `tenet-member NAME`, EKU client and server authentication
    /// (a member connects to the master and also answers on its own listener).
    Member(String),
    /// An administrator's key, as `tenet-agent push` presents it to members' listeners:
    /// CN `tenet-admin NAME`, EKU client authentication.
    Admin(String),
}

/// A key with its self-signed certificate, ready for [`client_config`] or
/// [`server_config`]. Its `Debug` shows the subject and key id, never the key.
///
/// It holds the key only as rustls's signing key, made once: the PKCS#8 DER it was made
/// from is wiped as soon as the identity exists, and no configuration gets a copy of it.
pub struct Identity {
    subject: Subject,
    key_id: KeyId,
    certified: Arc<CertifiedKey>,
}

impl Identity {
    /// Makes a self-signed ed25519 certificate for `key`.
    pub fn new(key: &SecretKey, subject: Subject) -> Result<Identity, TlsError> {
        let key_id = key.key_id();
        let der = key.to_pkcs8_der().map_err(|source| TlsError::ExportKey {
            keyid: key_id,
            source,
        })?;
        // Borrowed from `der`, which wipes itself when dropped at the end of this function.
        let private_key = PrivatePkcs8KeyDer::from(der.as_slice());
        let cert_err = |source| TlsError::Certificate {
            keyid: key_id,
            source,
        };
        // rcgen keeps its own copy of the DER, which it does not wipe on drop by itself.
        let pair = zeroize::Zeroizing::new(
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&private_key, &rcgen::PKCS_ED25519)
                .map_err(cert_err)?,
        );
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        let (common_name, usages) = match &subject {
            Subject::PolicyServer => (
                "tenet-policyd".to_string(),
                vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
            ),
            Subject::Member(name) => (
                format!("tenet-member {name}"),
                vec![
                    rcgen::ExtendedKeyUsagePurpose::ClientAuth,
                    rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                ],
            ),
            Subject::Admin(name) => (
                format!("tenet-admin {name}"),
                vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth],
            ),
        };
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = usages;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&*pair).map_err(cert_err)?;
        let signing =
            rustls::crypto::ring::sign::any_eddsa_type(&private_key).map_err(|source| {
                TlsError::SigningKey {
                    keyid: key_id,
                    source,
                }
            })?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing);
        certified
            .keys_match()
            .map_err(|source| TlsError::SigningKey {
                keyid: key_id,
                source,
            })?;
        Ok(Identity {
            subject,
            key_id,
            certified: Arc::new(certified),
        })
    }

    /// The key id (what peers pin).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Whom the certificate is for.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// The self-signed certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        // `new` made the certified key with exactly one certificate.
        &self.certified.cert[0]
    }

    /// The certificate and signing key, for a configuration to present.
    fn resolver(&self) -> Arc<SingleCertAndKey> {
        Arc::new(SingleCertAndKey::from(self.certified.clone()))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Decides, during the handshake, whether a client whose key is proved may connect.
///
/// Implementations must be cheap and must not block for long: they run inside the TLS
/// handshake. A refused client gets the `access_denied` alert and never reaches HTTP.
pub trait ClientPolicy: fmt::Debug + Send + Sync {
    /// Whether the client with this key id may complete the handshake.
    fn admits(&self, keyid: &KeyId) -> bool;
}

/// A shared, swappable set of admitted key ids: the member inventory of the manifest
/// being served. Clones share the set, so the server swaps it on a new manifest and the
/// next handshake sees the change. An empty set admits no one.
#[derive(Debug, Clone, Default)]
pub struct MemberPins(Arc<RwLock<HashSet<KeyId>>>);

impl MemberPins {
    /// An empty set (admits no one).
    pub fn new() -> MemberPins {
        MemberPins::default()
    }

    /// Replaces the whole set at once.
    pub fn replace(&self, keyids: impl IntoIterator<Item = KeyId>) {
        let next: HashSet<KeyId> = keyids.into_iter().collect();
        // A poisoned lock still holds a whole set: writers only ever assign a new one.
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    /// Whether `keyid` is in the set.
    pub fn contains(&self, keyid: &KeyId) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(keyid)
    }

    /// How many key ids are in the set.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ClientPolicy for MemberPins {
    fn admits(&self, keyid: &KeyId) -> bool {
        self.contains(keyid)
    }
}

/// The crypto provider every tenet TLS configuration uses: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A member's client configuration: TLS 1.3, `identity` as the client certificate, and
/// a server accepted iff its key id is one of `server_pins` (the trusted root's
/// `[transport] server_spki`). Session resumption is off, so every connection checks
/// the pins.
pub fn client_config(
    identity: &Identity,
    server_pins: Vec<KeyId>,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServerVerifier {
        pins: server_pins,
        provider: provider.clone(),
    });
    let config_err = |source| TlsError::Config {
        side: "client",
        source,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(identity.resolver());
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// A server configuration: TLS 1.3, `identity` as the server certificate, a client
/// certificate required from every client, and `clients` deciding at the handshake which
/// proved keys get in. No session storage and no tickets, so no handshake skips the
/// client check.
pub fn server_config(
    identity: &Identity,
    clients: Arc<dyn ClientPolicy>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedClientVerifier {
        policy: clients,
        provider: provider.clone(),
    });
    let config_err = |source| TlsError::Config {
        side: "server",
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity.resolver());
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The key id of a certificate: SHA-256 of its SubjectPublicKeyInfo DER.
pub fn certificate_key_id(cert: &CertificateDer<'_>) -> Result<KeyId, TlsError> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|source| TlsError::MalformedCertificate { source })?;
    Ok(KeyId::of_spki(ee.subject_public_key_info().as_ref()))
}

/// The verified peer's key id on a connection whose handshake finished (pass a
/// `ServerConnection` or `ClientConnection`; both dereference to [`CommonState`]).
pub fn peer_key_id(conn: &CommonState) -> Result<KeyId, TlsError> {
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(TlsError::NoPeerCertificate)?;
    certificate_key_id(cert)
}

/// A server name for [`SERVER_NAME`].
pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from(SERVER_NAME)
            .expect("SERVER_NAME is a constant, valid DNS name"),
    )
}

/// Why a TLS peer was refused, as far as the local end can tell.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Refusal {
    /// This end refused the server: its key is not pinned (an impostor, or a root that
    /// does not list the key it uses).
    ServerNotPinned,
    /// The server refused this end's key (is this member enrolled in the manifest it
    /// serves?).
    ClientNotAdmitted,
    /// The server wanted a certificate and got none.
    ClientCertificateMissing,
    /// Another TLS failure.
    Other(rustls::Error),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ServerNotPinned => {
                f.write_str("the server's key is not pinned in the trusted root")
            }
            Refusal::ClientNotAdmitted => {
                f.write_str("rejected by the server (is this member enrolled?)")
            }
            Refusal::ClientCertificateMissing => {
                f.write_str("the server requires a client certificate")
            }
            Refusal::Other(e) => write!(f, "tls: {e}"),
        }
    }
}

/// Finds the TLS failure in an error's source chain (through `hyper`, `std::io` and
/// `tokio-rustls` wrappers) and says what it means. With TLS 1.3, a server's refusal of
/// a client certificate arrives as an alert on the client's first read, so a client
/// should look here when its first request fails.
pub fn refusal(err: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let found = tls_error_in(err)?;
    Some(match found {
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure) => {
            Refusal::ServerNotPinned
        }
        rustls::Error::AlertReceived(AlertDescription::AccessDenied) => Refusal::ClientNotAdmitted,
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            Refusal::ClientCertificateMissing
        }
        other => Refusal::Other(other.clone()),
    })
}

/// The first [`rustls::Error`] in an error's source chain, looking inside `std::io`
/// errors (whose `source` skips the error they wrap).
pub fn tls_error_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

/// Accepts a server iff its end-entity key id is pinned.
#[derive(Debug)]
struct PinnedServerVerifier {
    pins: Vec<KeyId>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let keyid = key_id_for_handshake(end_entity)?;
        if self.pins.contains(&keyid) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(CertificateError::ApplicationVerificationFailure.into())
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Requires a client certificate, and admits a well-formed one iff the policy admits
/// its key id. Possession of the key is proved by `verify_tls13_signature`.
#[derive(Debug)]
struct PinnedClientVerifier {
    policy: Arc<dyn ClientPolicy>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let keyid = key_id_for_handshake(end_entity)?;
        if self.policy.admits(&keyid) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(CertificateError::ApplicationVerificationFailure.into())
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The key id of a certificate offered in a handshake; a malformed one is `BadEncoding`.
fn key_id_for_handshake(cert: &CertificateDer<'_>) -> Result<KeyId, rustls::Error> {
    certificate_key_id(cert).map_err(|_| CertificateError::BadEncoding.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_key_id_is_the_key_id() {
        for (seed, subject) in [
            (1u8, Subject::PolicyServer),
            (2, Subject::Member("alpha".to_string())),
        ] {
            let key = SecretKey::from_seed(&[seed; 32]);
            let id = Identity::new(&key, subject).unwrap();
            assert_eq!(certificate_key_id(id.certificate()).unwrap(), key.key_id());
            assert_eq!(id.key_id(), key.public().key_id());
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = SecretKey::from_seed(&[3; 32]);
        let id = Identity::new(&key, Subject::PolicyServer).unwrap();
        let shown = format!("{id:?}");
        assert!(shown.contains(&key.key_id().to_string()), "{shown}");
        assert!(!shown.contains("private_key"), "{shown}");
    }

    #[test]
    fn only_tls13_is_compiled_in() {
        // rustls is built without its `tls12` feature; the verifiers' TLS 1.2 refusal is a
        // second line should that ever change.
        let p = provider();
        assert!(!p.cipher_suites.is_empty());
        assert!(
            p.cipher_suites
                .iter()
                .all(|s| s.version() == &rustls::version::TLS13)
        );
    }

    #[test]
    fn malformed_certificates_are_bad_encoding() {
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let client = PinnedClientVerifier {
            policy: Arc::new(MemberPins::new()),
            provider: provider(),
        };
        assert_eq!(
            client
                .verify_client_cert(&junk, &[], UnixTime::now())
                .unwrap_err(),
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
        );
        assert!(matches!(
            certificate_key_id(&junk),
            Err(TlsError::MalformedCertificate { .. })
        ));
    }

    #[test]
    fn member_pins_are_shared_between_clones() {
        let pins = MemberPins::new();
        let seen_by_verifier = pins.clone();
        let a = SecretKey::from_seed(&[5; 32]).key_id();
        let b = SecretKey::from_seed(&[6; 32]).key_id();
        assert!(!seen_by_verifier.admits(&a));
        pins.replace([a]);
        assert!(seen_by_verifier.admits(&a) && !seen_by_verifier.admits(&b));
        pins.replace([b]);
        assert!(!seen_by_verifier.admits(&a) && seen_by_verifier.admits(&b));
        assert_eq!(seen_by_verifier.len(), 1);
    }
}
