//! The TLS configurations in full handshakes, run in memory: a pinned member connects,
//! and an unknown client, an impostor server and a client without a certificate are
//! each refused with the alert a peer would see.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct,
    ServerConfig, ServerConnection, SignatureScheme,
};
use tenet_keys::tls::{self, Identity, MemberPins, Refusal, Subject};
use tenet_keys::{KeyId, SecretKey};

use crate::util::key;

/// What each end saw.
struct Outcome {
    client: Result<(), rustls::Error>,
    server: Result<(), rustls::Error>,
    /// The key id the server saw, if its handshake finished.
    server_saw: Option<KeyId>,
    /// The key id the client saw, if its handshake finished.
    client_saw: Option<KeyId>,
    alpn: Option<Vec<u8>>,
}

/// Runs a handshake between the two configurations, moving bytes until neither end
/// has anything to send. Like a real client, the client reads once more after its own
/// handshake finishes, which is where a TLS 1.3 client-certificate refusal arrives.
fn handshake(client: ClientConfig, server: ServerConfig) -> Outcome {
    let mut c = ClientConnection::new(Arc::new(client), tls::server_name()).unwrap();
    let mut s = ServerConnection::new(Arc::new(server)).unwrap();
    let mut client_result = Ok(());
    let mut server_result = Ok(());
    for _ in 0..32 {
        let mut moved = false;
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() && server_result.is_ok() {
            moved = true;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                if s.read_tls(&mut rd).is_err() {
                    break;
                }
            }
            if let Err(e) = s.process_new_packets() {
                server_result = Err(e);
            }
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() && client_result.is_ok() {
            moved = true;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                if c.read_tls(&mut rd).is_err() {
                    break;
                }
            }
            if let Err(e) = c.process_new_packets() {
                client_result = Err(e);
            }
        }
        if !moved {
            break;
        }
    }
    let finished = |handshaking: bool, r: &Result<(), rustls::Error>| !handshaking && r.is_ok();
    Outcome {
        server_saw: finished(s.is_handshaking(), &server_result)
            .then(|| tls::peer_key_id(&s).unwrap()),
        client_saw: finished(c.is_handshaking(), &client_result)
            .then(|| tls::peer_key_id(&c).unwrap()),
        alpn: c.alpn_protocol().map(<[u8]>::to_vec),
        client: client_result,
        server: server_result,
    }
}

struct Parties {
    server_key: SecretKey,
    member_key: SecretKey,
    pins: MemberPins,
}

impl Parties {
    fn new() -> Parties {
        let member_key = key(40);
        let pins = MemberPins::new();
        pins.replace([member_key.key_id()]);
        Parties {
            server_key: key(30),
            member_key,
            pins,
        }
    }

    fn server(&self) -> ServerConfig {
        let id = Identity::new(&self.server_key, Subject::PolicyServer).unwrap();
        tls::server_config(&id, Arc::new(self.pins.clone())).unwrap()
    }

    fn client(&self, member: &SecretKey) -> ClientConfig {
        let id = Identity::new(member, Subject::Member("alpha".to_string())).unwrap();
        tls::client_config(&id, vec![self.server_key.key_id()]).unwrap()
    }
}

#[test]
fn a_pinned_member_connects_and_each_end_sees_the_other_key_id() {
    let p = Parties::new();
    let o = handshake(p.client(&p.member_key), p.server());
    assert!(
        o.client.is_ok() && o.server.is_ok(),
        "{:?} {:?}",
        o.client,
        o.server
    );
    assert_eq!(o.server_saw, Some(p.member_key.public().key_id()));
    assert_eq!(o.client_saw, Some(p.server_key.public().key_id()));
    assert_eq!(o.alpn.as_deref(), Some(&b"h2"[..]));
}

#[test]
fn an_unknown_client_is_refused_at_the_handshake() {
    let p = Parties::new();
    let stranger = key(41);
    let o = handshake(p.client(&stranger), p.server());
    assert_eq!(
        o.server,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure
        ))
    );
    assert_eq!(
        o.client,
        Err(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
    );
    assert_eq!(o.server_saw, None);
    let err = o.client.unwrap_err();
    assert_eq!(tls::refusal(&err), Some(Refusal::ClientNotAdmitted));
}

#[test]
fn a_key_removed_from_the_pins_is_refused_on_the_next_connection() {
    let p = Parties::new();
    let server = Arc::new(p.server());
    let client = p.client(&p.member_key);
    let o = handshake(client.clone(), (*server).clone());
    assert!(o.server.is_ok(), "{:?}", o.server);
    p.pins.replace([key(42).key_id()]);
    let o = handshake(client, (*server).clone());
    assert_eq!(
        o.client,
        Err(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
    );
}

#[test]
fn an_impostor_server_is_refused_by_the_member() {
    let p = Parties::new();
    // The impostor admits the member, but its key is not in the member's pins.
    let impostor = Identity::new(&key(31), Subject::PolicyServer).unwrap();
    let server = tls::server_config(&impostor, Arc::new(p.pins.clone())).unwrap();
    let o = handshake(p.client(&p.member_key), server);
    assert_eq!(
        o.client,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure
        ))
    );
    assert_eq!(
        o.server,
        Err(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
    );
    assert_eq!(o.client_saw, None);
    let err = o.client.unwrap_err();
    assert_eq!(tls::refusal(&err), Some(Refusal::ServerNotPinned));
    // The same error wrapped as tokio-rustls and hyper wrap it is still found.
    let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, err);
    assert_eq!(tls::refusal(&wrapped), Some(Refusal::ServerNotPinned));
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let p = Parties::new();
    let client = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
    let o = handshake(client, p.server());
    assert_eq!(o.server, Err(rustls::Error::NoCertificatesPresented));
    assert_eq!(
        o.client,
        Err(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
        ))
    );
    let err = o.client.unwrap_err();
    assert_eq!(tls::refusal(&err), Some(Refusal::ClientCertificateMissing));
}

#[test]
fn an_empty_pin_list_admits_no_one() {
    let p = Parties::new();
    p.pins.replace([]);
    let o = handshake(p.client(&p.member_key), p.server());
    assert_eq!(
        o.client,
        Err(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
    );
}

/// A test-only verifier that accepts any server, to reach the server's own checks.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
