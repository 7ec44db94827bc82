//! The mTLS client to the master: one HTTP/1.1 connection over the keys crate's pinned
//! TLS client configuration, on a current-thread tokio runtime, every response capped.
//! The same client asks a static mirror ([`Master::connect_mirror`]): plain HTTPS
//! checked against the CA the administrator names, and each [`Resource`] named by the
//! mirror's file layout instead of policyd's routes.
//!
//! The caller sees a blocking [`Master`]: `get` returns the body of a 200, `post` a
//! [`BodyReader`] streaming it, and any other status, a body over its cap, a timeout or
//! a transport failure is a [`FetchError`] that says whether the master was unreachable
//! or refused on trust. Besides each request's own limit, every connection and request
//! ends by the [`Master`]'s deadline (the run's `--deadline`), so a master that accepts
//! and then stalls cannot keep a run going for longer.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject as _;
use tenet_keys::tls::{self, Identity, Refusal, Subject};
use tenet_keys::{KeyId, SecretKey, Sha256Sum, bundle};
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
    #[error("{method} {path}: status {status}")]
    Status {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
        /// The status.
        status: StatusCode,
    },
    /// The body is larger than allowed.
    #[error("{method} {path}: response over {max} bytes")]
    TooLarge {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
        /// The cap.
        max: u64,
    },
    /// The node key or TLS configuration is unusable.
    #[error("{0}")]
    Setup(String),
}

/// A connection to the master (or a mirror).
pub struct Master {
    runtime: tokio::runtime::Runtime,
    sender: SendRequest<Full<Bytes>>,
    /// The name in messages: `host:port`, or a mirror's URL.
    name: String,
    peer: Peer,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
    deadline: Deadline,
    layout: Layout,
}

/// Where to connect and whom to expect there.
#[derive(Debug, Clone)]
struct Peer {
    /// `host:port` connected to.
    address: String,
    /// The TLS server name.
    server_name: ServerName<'static>,
    /// The `Host` header.
    host: String,
}

/// How a [`Resource`] is named on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// policyd's routes (`/v1/timestamp`, `POST /v1/blobs`).
    Policyd,
    /// A static mirror: the bundle's files below `prefix` (`PREFIX/timestamp.toml`).
    Static { prefix: String },
}

/// What a member asks a master or mirror for.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// Root version n.
    Root(u64),
    /// Root version n's signatures.
    RootSig(u64),
    /// The current timestamp.
    Timestamp,
    /// Its signatures.
    TimestampSig,
    /// The current manifest.
    Manifest,
    /// Its signatures.
    ManifestSig,
    /// A blob by hash.
    Blob(&'a Sha256Sum),
}

/// When all talk with the master must be over, and how long that was given.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    after: Duration,
}

impl Deadline {
    /// The earlier of `limit` and the deadline, and whether the deadline is the one.
    fn cap(self, limit: tokio::time::Instant) -> (tokio::time::Instant, bool) {
        if self.at <= limit {
            (self.at, true)
        } else {
            (limit, false)
        }
    }

    /// Why `what` failed when the limit `capped` ran out.
    fn late(self, name: &str, what: &str, capped: bool, limit: Duration) -> FetchError {
        if capped {
            FetchError::Unreachable(format!(
                "{name}: {what}: the run's deadline ({:?} for the master) passed",
                self.after
            ))
        } else {
            FetchError::Unreachable(format!("{name}: {what}: no answer within {limit:?}"))
        }
    }
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

/// The TLS client configuration for a static mirror: ordinary HTTPS (TLS 1.3)
/// whose certificate must chain to one of the CA certificates in the PEM file `ca`
/// and name the mirror's host; no client certificate, HTTP/1.1.
pub fn mirror_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, FetchError> {
    let setup = |what: String| FetchError::Setup(format!("mirror CA {}: {what}", ca.display()));
    let pem = std::fs::read(ca).map_err(|e| setup(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| setup(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| setup(format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(setup("holds no certificate".to_string()));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Master {
    /// Connects to `master` (`host:port`) within `timeout`; every later request must
    /// also end within `deadline` of now.
    pub fn connect(
        master: &str,
        config: Arc<rustls::ClientConfig>,
        timeout: Duration,
        deadline: Duration,
    ) -> Result<Master, FetchError> {
        let peer = Peer {
            address: master.to_string(),
            server_name: tls::server_name(),
            host: tls::SERVER_NAME.to_string(),
        };
        Master::open_with(master, peer, config, timeout, deadline, Layout::Policyd)
    }

    /// Connects to the static mirror at `url` (`https://host[:port][/prefix]`, parsed
    /// into `address`, `host` and `prefix` by the configuration) with `config`
    /// ([`mirror_config`]), within `timeout`; every later request must also end within
    /// `deadline` of now.
    pub fn connect_mirror(
        mirror: &crate::config::MirrorConfig,
        config: Arc<rustls::ClientConfig>,
        timeout: Duration,
        deadline: Duration,
    ) -> Result<Master, FetchError> {
        let server_name = ServerName::try_from(mirror.host.clone()).map_err(|e| {
            FetchError::Setup(format!(
                "mirror {}: host {:?}: {e}",
                mirror.url, mirror.host
            ))
        })?;
        let host = if mirror.port == 443 {
            mirror.host.clone()
        } else {
            mirror.address()
        };
        let peer = Peer {
            address: mirror.address(),
            server_name,
            host,
        };
        let layout = Layout::Static {
            prefix: mirror.prefix.clone(),
        };
        Master::open_with(&mirror.url, peer, config, timeout, deadline, layout)
    }

    fn open_with(
        name: &str,
        peer: Peer,
        config: Arc<rustls::ClientConfig>,
        timeout: Duration,
        deadline: Duration,
        layout: Layout,
    ) -> Result<Master, FetchError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| FetchError::Setup(format!("cannot start the I/O runtime: {e}")))?;
        let deadline = runtime.block_on(async {
            Deadline {
                at: tokio::time::Instant::now() + deadline,
                after: deadline,
            }
        });
        let sender = runtime.block_on(open(name, &peer, config.clone(), timeout, deadline))?;
        Ok(Master {
            runtime,
            sender,
            name: name.to_string(),
            peer,
            config,
            timeout,
            deadline,
            layout,
        })
    }

    /// Where answers come from, for messages: `host:port`, or a mirror's URL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is a static mirror (no batched blob route, older timestamps a
    /// rollback).
    pub fn is_mirror(&self) -> bool {
        matches!(self.layout, Layout::Static { .. })
    }

    /// The request path of `resource` on this server.
    pub fn path(&self, resource: Resource<'_>) -> String {
        match &self.layout {
            Layout::Policyd => match resource {
                Resource::Root(n) => format!("/v1/root/{n}"),
                Resource::RootSig(n) => format!("/v1/root/{n}/sig"),
                Resource::Timestamp => "/v1/timestamp".to_string(),
                Resource::TimestampSig => "/v1/timestamp/sig".to_string(),
                Resource::Manifest => "/v1/manifest".to_string(),
                Resource::ManifestSig => "/v1/manifest/sig".to_string(),
                Resource::Blob(sha) => format!("/v1/blob/sha256/{sha}"),
            },
            Layout::Static { prefix } => {
                let sig = bundle::SIG_SUFFIX;
                let file = match resource {
                    Resource::Root(n) => {
                        format!("{}/{}", bundle::ROOT_DIR, bundle::root_file_name(n))
                    }
                    Resource::RootSig(n) => {
                        format!("{}/{}{sig}", bundle::ROOT_DIR, bundle::root_file_name(n))
                    }
                    Resource::Timestamp => bundle::TIMESTAMP.to_string(),
                    Resource::TimestampSig => format!("{}{sig}", bundle::TIMESTAMP),
                    Resource::Manifest => bundle::MANIFEST.to_string(),
                    Resource::ManifestSig => format!("{}{sig}", bundle::MANIFEST),
                    Resource::Blob(sha) => format!("{}/{sha}", bundle::BLOB_DIR),
                };
                format!("{prefix}/{file}")
            }
        }
    }

    /// Replaces the connection with a new one (after a refused request whose body the
    /// master may not have read: it may close the connection under the rest of it).
    /// Opens a new connection to the master in place of the current one.
    pub(crate) fn reconnect(&mut self) -> Result<(), FetchError> {
        let open = open(
            &self.name,
            &self.peer,
            self.config.clone(),
            self.timeout,
            self.deadline,
        );
        self.sender = self.runtime.block_on(open)?;
        Ok(())
    }

    /// `GET path`: the body of a 200 response, at most `max` bytes.
    pub fn get(&mut self, path: &str, max: u64) -> Result<Vec<u8>, FetchError> {
        match self.get_optional(path, max)? {
            Some(body) => Ok(body),
            None => Err(FetchError::Status {
                method: Method::GET,
                path: path.to_string(),
                status: StatusCode::NOT_FOUND,
            }),
        }
    }

    /// `GET path`: `Some(body)` on 200, `None` on 404, an error otherwise.
    pub fn get_optional(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, FetchError> {
        // A server may close a kept-alive connection between requests (nginx after
        // `keepalive_requests`, a CDN's idle limit): ask on a new one.
        if self.sender.is_closed() {
            self.reconnect()?;
        }
        let name = self.name.clone();
        let host = self.peer.host.clone();
        let sender = &mut self.sender;
        let deadline = self.deadline;
        self.runtime.block_on(async {
            let fetch = async {
                sender
                    .ready()
                    .await
                    .map_err(|e| classify(&name, "connection", &e))?;
                let req = Request::get(path)
                    .header("host", host.as_str())
                    .body(Full::new(Bytes::new()))
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
                            method: Method::GET,
                            path: path.to_string(),
                            status,
                        });
                    }
                }
                read_capped(&name, path, resp.into_body(), max)
                    .await
                    .map(Some)
            };
            let (until, capped) = deadline.cap(tokio::time::Instant::now() + REQUEST_TIMEOUT);
            tokio::time::timeout_at(until, fetch).await.map_err(|_| {
                deadline.late(&name, &format!("GET {path}"), capped, REQUEST_TIMEOUT)
            })?
        })
    }
    /// `POST path` with a small `body`: the status and the answer's body (at most `max`
    /// bytes), whatever the status (`tenet-agent join` shows a refusal's reason).
    pub fn post_answer(
        &mut self,
        path: &str,
        body: Vec<u8>,
        max: u64,
    ) -> Result<(StatusCode, Vec<u8>), FetchError> {
        let name = self.name.clone();
        let sender = &mut self.sender;
        let deadline = self.deadline;
        self.runtime.block_on(async {
            let send = async {
                sender
                    .ready()
                    .await
                    .map_err(|e| classify(&name, "connection", &e))?;
                let req = Request::post(path)
                    .header("host", tls::SERVER_NAME)
                    .header("content-type", "application/toml")
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| FetchError::Setup(format!("POST {path}: {e}")))?;
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| classify(&name, &format!("POST {path}"), &e))?;
                let status = resp.status();
                let body = read_capped(&name, path, resp.into_body(), max).await?;
                Ok((status, body))
            };
            let (until, capped) = deadline.cap(tokio::time::Instant::now() + REQUEST_TIMEOUT);
            tokio::time::timeout_at(until, send).await.map_err(|_| {
                deadline.late(&name, &format!("POST {path}"), capped, REQUEST_TIMEOUT)
            })?
        })
    }

    /// `POST path` with `body` (`application/octet-stream`): on 200, a reader of the
    /// answer's body that fails once it has yielded more than `max` bytes; any other
    /// status is [`FetchError::Status`]. The body streams as it is read, within
    /// [`REQUEST_TIMEOUT`] of the request.
    pub fn post(
        &mut self,
        path: &str,
        body: Vec<u8>,
        max: u64,
    ) -> Result<BodyReader<'_>, FetchError> {
        let name = self.name.clone();
        let host = self.peer.host.clone();
        let sender = &mut self.sender;
        // A batch may be tens of MiB: on top of the request timeout, time for its
        // declared bytes at no less than 256 KiB/s; never past the run's deadline.
        let allowed = REQUEST_TIMEOUT + std::time::Duration::from_secs(max / (256 * 1024));
        let run_deadline = self.deadline;
        let (deadline, capped) = self
            .runtime
            .block_on(async { run_deadline.cap(tokio::time::Instant::now() + allowed) });
        let late = || run_deadline.late(&name, &format!("POST {path}"), capped, allowed);
        let body = self.runtime.block_on(async {
            let send = async {
                sender
                    .ready()
                    .await
                    .map_err(|e| classify(&name, "connection", &e))?;
                let req = Request::post(path)
                    .header("host", host.as_str())
                    .header("content-type", "application/octet-stream")
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| FetchError::Setup(format!("POST {path}: {e}")))?;
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| classify(&name, &format!("POST {path}"), &e))?;
                let status = resp.status();
                if status != StatusCode::OK {
                    let _ = read_capped(&name, path, resp.into_body(), REFUSAL_MAX).await;
                    return Ok(Err(status));
                }
                Ok(Ok(resp.into_body()))
            };
            tokio::time::timeout_at(deadline, send)
                .await
                .map_err(|_| late())?
        })?;
        let body = match body {
            Ok(body) => body,
            Err(status) => {
                // A master that refuses may not have read the whole request body, and
                // then closes the connection under the rest (an older policyd's 404):
                // the next request gets a new one.
                self.reconnect()?;
                return Err(FetchError::Status {
                    method: Method::POST,
                    path: path.to_string(),
                    status,
                });
            }
        };
        Ok(BodyReader {
            runtime: &self.runtime,
            body,
            chunk: Bytes::new(),
            delivered: 0,
            max,
            deadline,
            late: run_deadline
                .late(&self.name, &format!("POST {path}"), capped, allowed)
                .to_string(),
            name: self.name.clone(),
            path: path.to_string(),
            error: None,
        })
    }
}

/// One HTTP/1.1 connection to `master` within `timeout`, its driver spawned on the
/// current runtime.
async fn open(
    master: &str,
    peer: &Peer,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
    deadline: Deadline,
) -> Result<SendRequest<Full<Bytes>>, FetchError> {
    let unreachable = |what: String| FetchError::Unreachable(format!("{master}: {what}"));
    let connect = async {
        let tcp = TcpStream::connect(&peer.address)
            .await
            .map_err(|e| unreachable(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(config)
            .connect(peer.server_name.clone(), tcp)
            .await
            .map_err(|e| classify(master, "TLS handshake", &e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| classify(master, "HTTP handshake", &e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection to the master ended: {e}");
            }
        });
        Ok::<_, FetchError>(sender)
    };
    let (until, capped) = deadline.cap(tokio::time::Instant::now() + timeout);
    tokio::time::timeout_at(until, connect).await.map_err(|_| {
        if capped {
            deadline.late(master, "connect", true, timeout)
        } else {
            unreachable(format!("no connection within {timeout:?}"))
        }
    })?
}

/// The most of a refusal's body read (and dropped) to keep the connection usable.
const REFUSAL_MAX: u64 = 64 * 1024;

/// The body of a 200 to [`Master::post`], read as it arrives (nothing but the frame in
/// hand is held). A transport failure, the timeout or more than the cap is an
/// `io::Error` to the reader, and the [`FetchError`] behind it is kept for
/// [`BodyReader::take_error`], so the caller can tell an unreachable master from a
/// body that failed a check.
pub struct BodyReader<'a> {
    runtime: &'a tokio::runtime::Runtime,
    body: Incoming,
    chunk: Bytes,
    /// Bytes handed to the reader so far (at most `max`).
    delivered: u64,
    max: u64,
    deadline: tokio::time::Instant,
    /// What to say when `deadline` passes.
    late: String,
    name: String,
    path: String,
    error: Option<FetchError>,
}

impl std::fmt::Debug for BodyReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("path", &self.path)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl BodyReader<'_> {
    /// The failure behind the last `io::Error` this reader returned, if any.
    pub fn take_error(&mut self) -> Option<FetchError> {
        self.error.take()
    }

    /// Whether the body has no byte left (reads at most one more frame; the cap does
    /// not apply, so a body longer than expected answers `false`, not an error).
    pub fn at_end(&mut self) -> Result<bool, FetchError> {
        if !self.chunk.is_empty() {
            return Ok(false);
        }
        Ok(self.next_chunk()?.is_none())
    }

    /// The next non-empty data frame, `None` at the end of the body.
    fn next_chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        let (name, path) = (&self.name, &self.path);
        let body = &mut self.body;
        loop {
            let deadline = self.deadline;
            let frame = self
                .runtime
                .block_on(async { tokio::time::timeout_at(deadline, body.frame()).await })
                .map_err(|_| FetchError::Unreachable(self.late.clone()))?;
            let Some(frame) = frame else {
                return Ok(None);
            };
            let frame = frame.map_err(|e| classify(name, &format!("POST {path}"), &e))?;
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                return Ok(Some(data));
            }
        }
    }

    fn fail(&mut self, e: FetchError) -> io::Error {
        let error = io::Error::other(e.to_string());
        self.error = Some(e);
        error
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.chunk.is_empty() {
            match self.next_chunk() {
                Ok(Some(chunk)) => self.chunk = chunk,
                Ok(None) => return Ok(0),
                Err(e) => return Err(self.fail(e)),
            }
        }
        let room = self.max.saturating_sub(self.delivered);
        if room == 0 {
            let e = FetchError::TooLarge {
                method: Method::POST,
                path: self.path.clone(),
                max: self.max,
            };
            return Err(self.fail(e));
        }
        let n = buf
            .len()
            .min(self.chunk.len())
            .min(usize::try_from(room).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        self.delivered += n as u64;
        Ok(n)
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
                    method: Method::GET,
                    path: path.to_string(),
                    max,
                });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// How much one batched request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most blobs per request.
    pub blobs: usize,
    /// Most bytes of declared size per request; a blob larger than this goes alone.
    pub bytes: u64,
}

/// Splits blobs of `sizes` (in order) into consecutive index ranges within `limits`;
/// every range holds at least one blob.
pub fn plan_batches(
    sizes: impl IntoIterator<Item = u64>,
    limits: BatchLimits,
) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    let mut end = 0;
    for (at, size) in sizes.into_iter().enumerate() {
        let full = at - start >= limits.blobs.max(1)
            || (at > start && bytes.saturating_add(size) > limits.bytes);
        if full {
            batches.push(start..at);
            (start, bytes) = (at, 0);
        }
        bytes = bytes.saturating_add(size);
        end = at + 1;
    }
    if end > start {
        batches.push(start..end);
    }
    batches
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(sizes: &[u64], blobs: usize, bytes: u64) -> Vec<std::ops::Range<usize>> {
        plan_batches(sizes.iter().copied(), BatchLimits { blobs, bytes })
    }

    #[test]
    fn batches_respect_both_limits_and_cover_every_blob_once() {
        assert_eq!(plan(&[], 3, 10), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(plan(&[1; 7], 3, 100), [0..3, 3..6, 6..7]);
        assert_eq!(plan(&[1; 6], 3, 100), [0..3, 3..6]);
        // Bytes: 4 + 4 fits 10, a third 4 does not.
        assert_eq!(plan(&[4, 4, 4, 2], 10, 10), [0..2, 2..4]);
        // Exactly the cap fits.
        assert_eq!(plan(&[5, 5, 1], 10, 10), [0..2, 2..3]);
        // A blob over the cap goes alone, wherever it is.
        assert_eq!(plan(&[1, 50, 1, 1], 10, 10), [0..1, 1..2, 2..4]);
        assert_eq!(plan(&[50], 10, 10), Vec::from_iter(std::iter::once(0..1)));
        assert_eq!(plan(&[0; 5], 2, 0), [0..2, 2..4, 4..5]);
        // No limit of zero blobs can stall the plan.
        assert_eq!(plan(&[1, 1], 0, 10), [0..1, 1..2]);
    }
}
