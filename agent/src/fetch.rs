//! The mTLS client to the master: one HTTP/1.1 connection over the keys crate's pinned
//! TLS client configuration, on a current-thread tokio runtime, every response capped.
//!
//! The caller sees a blocking [`Master`]: `get` returns the body of a 200, and any
//! other status, a body over its cap, a timeout or a transport failure is a
//! [`FetchError`] that says whether the master was unreachable or refused on trust.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tenet_keys::tls::{self, Identity, Refusal, Subject};
use tenet_keys::{KeyId, SecretKey};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The limit on one request once connected.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No answer: connection refused or timed out, the TLS session failed for a reason
    /// other than the server's key, or the connection broke.
    #[error("{0}")]
    Unreachable(String),
    /// The server presented a key that the trusted root does not pin.
    #[error("master {master}: {refusal}")]
    NotPinned {
        /// `host:port`.
        master: String,
        /// The refusal.
        refusal: Refusal,
    },
    /// The master answered something other than 200.
    #[error("GET {path}: status {status}")]
    Status {
        /// The request path.
        path: String,
        /// The status.
        status: StatusCode,
    },
    /// The body is larger than allowed.
    #[error("GET {path}: response over {max} bytes")]
    TooLarge {
        /// The request path.
        path: String,
        /// The cap.
        max: u64,
    },
    /// The node key or TLS configuration is unusable.
    #[error("{0}")]
    Setup(String),
}

/// A connection to the master.
pub struct Master {
    runtime: tokio::runtime::Runtime,
    sender: SendRequest<Empty<Bytes>>,
    name: String,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master").field("name", &self.name).finish()
    }
}

/// The TLS client configuration of a member with `key`, pinning `pins`, offering
/// HTTP/1.1.
pub fn client_config(
    member: &str,
    key: &SecretKey,
    pins: Vec<KeyId>,
) -> Result<Arc<rustls::ClientConfig>, FetchError> {
    let id = Identity::new(key, Subject::Member(member.to_string()))
        .map_err(|e| FetchError::Setup(tenet_keys::error_chain(&e)))?;
    let mut config = tls::client_config(&id, pins)
        .map_err(|e| FetchError::Setup(tenet_keys::error_chain(&e)))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Master {
    /// Connects to `master` (`host:port`) within `timeout`.
    pub fn connect(
        master: &str,
        config: Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<Master, FetchError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| FetchError::Setup(format!("cannot start the I/O runtime: {e}")))?;
        let name = master.to_string();
        let unreachable = |what: String| FetchError::Unreachable(format!("{name}: {what}"));
        let sender = runtime.block_on(async {
            let connect = async {
                let tcp = TcpStream::connect(master)
                    .await
                    .map_err(|e| unreachable(format!("connect: {e}")))?;
                let _ = tcp.set_nodelay(true);
                let tls = TlsConnector::from(config)
                    .connect(tls::server_name(), tcp)
                    .await
                    .map_err(|e| classify(&name, "TLS handshake", &e))?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| classify(&name, "HTTP handshake", &e))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection to the master ended: {e}");
                    }
                });
                Ok::<_, FetchError>(sender)
            };
            tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| unreachable(format!("no connection within {timeout:?}")))?
        })?;
        Ok(Master {
            runtime,
            sender,
            name,
        })
    }

    /// `GET path`: the body of a 200 response, at most `max` bytes.
    pub fn get(&mut self, path: &str, max: u64) -> Result<Vec<u8>, FetchError> {
        match self.get_optional(path, max)? {
            Some(body) => Ok(body),
            None => Err(FetchError::Status {
                path: path.to_string(),
                status: StatusCode::NOT_FOUND,
            }),
        }
    }

    /// `GET path`: `Some(body)` on 200, `None` on 404, an error otherwise.
    pub fn get_optional(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let name = self.name.clone();
        let sender = &mut self.sender;
        self.runtime.block_on(async {
            let fetch = async {
                sender
                    .ready()
                    .await
                    .map_err(|e| classify(&name, "connection", &e))?;
                let req = Request::get(path)
                    .header("host", tls::SERVER_NAME)
                    .body(Empty::<Bytes>::new())
                    .map_err(|e| FetchError::Setup(format!("GET {path}: {e}")))?;
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| classify(&name, &format!("GET {path}"), &e))?;
                match resp.status() {
                    StatusCode::OK => {}
                    StatusCode::NOT_FOUND => return Ok(None),
                    status => {
                        return Err(FetchError::Status {
                            path: path.to_string(),
                            status,
                        });
                    }
                }
                read_capped(&name, path, resp.into_body(), max)
                    .await
                    .map(Some)
            };
            tokio::time::timeout(REQUEST_TIMEOUT, fetch)
                .await
                .map_err(|_| {
                    FetchError::Unreachable(format!(
                        "{name}: GET {path}: no answer within {REQUEST_TIMEOUT:?}"
                    ))
                })?
        })
    }
}

async fn read_capped(
    name: &str,
    path: &str,
    mut body: Incoming,
    max: u64,
) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| classify(name, &format!("GET {path}"), &e))?;
        if let Ok(data) = frame.into_data() {
            if (out.len() + data.len()) as u64 > max {
                return Err(FetchError::TooLarge {
                    path: path.to_string(),
                    max,
                });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// A transport failure: an unpinned server key is a trust refusal, anything else
/// (including the server refusing this member's key) means no master answered.
fn classify(name: &str, what: &str, e: &(dyn std::error::Error + 'static)) -> FetchError {
    match tls::refusal(e) {
        Some(Refusal::ServerNotPinned) => FetchError::NotPinned {
            master: name.to_string(),
            refusal: Refusal::ServerNotPinned,
        },
        Some(r) => FetchError::Unreachable(format!("{name}: {what}: {r}")),
        None => FetchError::Unreachable(format!("{name}: {what}: {}", tenet_keys::error_chain(e))),
    }
}
