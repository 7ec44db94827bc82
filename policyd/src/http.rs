//! Serving HTTP over mutual TLS on one socket: the accept loop and each connection.
//!
//! Limits, applied to every TLS socket:
//! - [`Admission`]: per-address and global caps on handshakes in progress and on open
//!   connections, checked as each connection is accepted (over a cap, it is closed at
//!   once; past a handshake cap, the oldest handshake in progress is ended instead);
//! - the TLS handshake must finish within `handshake_timeout`; a refused one is
//!   lingered over briefly only while handshake slots are plentiful;
//! - HTTP/1.1 request heads must arrive within `header_read_timeout` (the first from
//!   the end of the handshake, a later one from its first byte) and fit in
//!   `max_header_bytes` (else 431);
//! - a connection with no bytes moving for `idle_timeout` is closed, which also ends
//!   slow readers and writers and idle keep-alive connections; one older than
//!   `max_connection_age` is closed between requests;
//! - on shutdown or demotion a connection is asked to finish and then closed after
//!   `drain_timeout`.
//!
//! Both sockets offer ALPN `http/1.1` only. The verified peer key id is taken from the
//! finished handshake and passed to the routes with every request.
//!
//! Memory: an HTTP/1.1 keep-alive connection between requests holds no hyper state
//! (see [`serve_http1`]), and the connection task is kept small, so an idle
//! connection costs about 10 KB: its TLS session (rustls keeps a 4 KiB receive
//! buffer), the task, and the socket's registration (`bench/RESULTS.md`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tenet_keys::KeyId;
use tenet_keys::tls::{self, ClientPolicy, MemberPins};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use crate::admission::{Admission, Slot};
use crate::metrics::{HandshakeRefusal, Site};
use crate::routes;
use crate::shared::Shared;
use crate::shared::promotion_state::SharedAcceptor;
use crate::shutdown::Stop;
use crate::trusted::LogLimit;

/// A TLS server configuration for either socket: [`tls::server_config`] with ALPN
/// `http/1.1` only (agents and `push` speak HTTP/1.1; h2 would multiply what one
/// connection may ask for at once).
pub(crate) fn server_config(
    identity: &tls::Identity,
    clients: Arc<dyn ClientPolicy>,
) -> Result<rustls::ServerConfig, tls::TlsError> {
    let mut config = tls::server_config(identity, clients)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts connections on `tcp` until `stop`, serving each on its own task once
/// [`Admission`] gives it a slot; a connection over a limit is closed at once (or, past
/// a handshake limit, the oldest handshake in progress is).
pub(crate) async fn serve_tls(
    shared: Arc<Shared>,
    site: Site,
    tcp: TcpListener,
    acceptor: SharedAcceptor,
    mut stop: Stop,
) {
    let admission =
        Arc::new(Admission::new(&shared.config.limits).with_gauge(shared.metrics.clone(), site));
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.wait() => break,
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually a full descriptor table: pause rather than spin.
                    warn!(socket = site.name(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = match admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                shared.metrics.handshake_refused(site, why);
                debug!(socket = site.name(), %peer, reason = why.name(), "connection refused");
                // Closed at once: no linger, no queue.
                drop(stream);
                continue;
            }
        };
        // Streamed answers (a pushed run's lines) are many small writes: without this,
        // Nagle's algorithm and the client's delayed ACK hold each one for ~40 ms.
        let _ = stream.set_nodelay(true);
        let acceptor = TlsAcceptor::from(
            acceptor
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        );
        let shared = shared.clone();
        let stop = stop.clone();
        let guard = shared.connections.enter();
        let admission = admission.clone();
        tokio::spawn(async move {
            let _guard = guard;
            connection(shared, site, stream, acceptor, &admission, slot, stop).await;
            debug!(socket = site.name(), %peer, "connection closed");
        });
    }
    info!(socket = site.name(), "stopped accepting");
}

/// One TLS connection: handshake, then HTTP until the client leaves, goes idle, grows
/// too old, or the socket is stopped.
///
/// The task of an idle connection is kept small: what only the handshake or a request
/// needs is boxed for that time, and the TLS stream is borrowed rather than passed by
/// value (an `async fn` keeps a copy of each argument besides its local).
async fn connection(
    shared: Arc<Shared>,
    site: Site,
    stream: TcpStream,
    acceptor: TlsAcceptor,
    admission: &Admission,
    slot: Slot,
    mut stop: Stop,
) {
    let born = Instant::now();
    let mut slot = slot;
    let evicted = slot.evicted();
    let Some((tls, peer)) = Box::pin(handshake(
        &shared, site, stream, acceptor, admission, evicted,
    ))
    .await
    else {
        return;
    };
    let _slot = match admission.established(slot) {
        Ok(slot) => slot,
        Err(why) => {
            shared.metrics.handshake_refused(site, why);
            debug!(socket = site.name(), peer = %peer, "no connection slot left; closed");
            return;
        }
    };
    // With joins on, a key that is not an enrolled member gets past the handshake to
    // reach `POST /v1/join` only. Such strangers get a few connections of their own
    // (never the members' slots' worth) and one request each.
    let stranger = site == Site::Serving
        && shared.config.serve.join_dir.is_some()
        && !shared
            .promotion
            .snapshot()
            .is_some_and(|s| s.bundle.members().contains(&peer));
    let _stranger = if stranger {
        match STRANGERS.try_acquire() {
            Ok(permit) => Some(permit),
            Err(_) => {
                debug!(socket = site.name(), peer = %peer, "too many connections from keys that are not members; closed");
                return;
            }
        }
    } else {
        None
    };
    let _open = shared.metrics.connection(site);
    let activity = Activity::new();
    let mut io = Watched {
        inner: tls,
        activity: activity.clone(),
    };
    let service = Answer {
        shared: shared.clone(),
        site,
        peer,
        requests: Arc::new(Requests::default()),
        pinned: Arc::new(routes::Pinned::default()),
    };
    serve_http1(
        &shared, &mut io, service, &activity, born, &mut stop, stranger,
    )
    .await;
}

/// Connections at once from keys that are not members, with joins on (see
/// [`connection`]): a join is one short request, and these never crowd out members.
pub(crate) const MAX_STRANGER_CONNECTIONS: usize = 8;
static STRANGERS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_STRANGER_CONNECTIONS);

/// The TLS handshake within `handshake_timeout`: the stream and the client's verified
/// key id; `None` (counted and logged) if it failed. A refused client is lingered over
/// (so it reads the alert) only while handshake slots are plentiful.
async fn handshake(
    shared: &Shared,
    site: Site,
    stream: TcpStream,
    acceptor: TlsAcceptor,
    admission: &Admission,
    evicted: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Option<(Tls, KeyId)> {
    let limits = &shared.config.limits;
    let metrics = &shared.metrics;
    let handshake = acceptor.accept(stream).into_fallible();
    let evicted = async {
        match evicted {
            // Sent, or the sender dropped: either way this slot is gone.
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    };
    let timed = tokio::time::timeout(limits.handshake_timeout, handshake);
    let outcome = tokio::select! {
        outcome = timed => outcome,
        () = evicted => {
            // Counted by the admission when it took the slot.
            debug!(socket = site.name(), "tls handshake ended: its slot went to a newer connection");
            return None;
        }
    };
    let tls = match outcome {
        Err(_) => {
            metrics.handshake_refused(site, HandshakeRefusal::Timeout);
            debug!(socket = site.name(), "tls handshake timed out");
            return None;
        }
        Ok(Err((e, stream))) => {
            let why = classify(&e);
            metrics.handshake_refused(site, why);
            debug!(socket = site.name(), reason = why.name(), error = %e, "tls handshake refused");
            if !admission.scarce() {
                linger(stream, LINGER_TIME.min(limits.handshake_timeout)).await;
            }
            return None;
        }
        Ok(Ok(tls)) => tls,
    };
    let (_, conn) = tls.get_ref();
    let Ok(peer) = tls::peer_key_id(conn) else {
        // Client authentication is mandatory, so a finished handshake has a certificate.
        metrics.handshake_refused(site, HandshakeRefusal::Failed);
        return None;
    };
    Some((tls, peer))
}

/// HTTP/1.1 on one connection, one request at a time. Between requests (keep-alive)
/// the connection holds no HTTP state: hyper serves a *turn* over a [`Turn`] stream,
/// which ends the turn once every request of it is answered and flushed and the client
/// has sent nothing more; the connection then waits here for the first byte of the
/// next request and starts a new turn with it. Idle, a connection costs its TLS state
/// and this task, not hyper's buffers (16 KiB and more).
///
/// Timeouts: the first request must start within `header_read_timeout` of the
/// handshake; later ones within `idle_timeout` of the last bytes moved; a request head,
/// once started, within `header_read_timeout` (hyper's timer runs from the start of a
/// turn). Between requests, a connection older than `max_connection_age` (from `born`)
/// is closed; a request in progress is never cut for its age.
async fn serve_http1(
    shared: &Shared,
    io: &mut Watched<Tls>,
    mut service: Answer,
    activity: &Activity,
    born: Instant,
    stop: &mut Stop,
    one_request: bool,
) {
    use tokio::io::AsyncReadExt as _;
    let limits = &shared.config.limits;
    let site = service.site;
    let peer = service.peer;
    let requests = service.requests.clone();
    let mut quiet = limits.header_read_timeout;
    let mut prefix = Bytes::new();
    loop {
        if prefix.is_empty() {
            let mut byte = [0u8; 1];
            let read = tokio::select! {
                read = io.read(&mut byte) => read,
                () = stop.wait() => {
                    Box::pin(close(io, limits.drain_timeout)).await;
                    return;
                }
                () = activity.idle_for(quiet) => {
                    debug!(socket = site.name(), peer = %peer, "closing an idle connection");
                    Box::pin(close(io, limits.drain_timeout)).await;
                    return;
                }
                () = tokio::time::sleep_until(born + limits.max_connection_age) => {
                    debug!(socket = site.name(), peer = %peer, "closing a connection at its maximum age");
                    Box::pin(close(io, limits.drain_timeout)).await;
                    return;
                }
            };
            match read {
                Ok(0) => {
                    // The client closed its side: close ours as hyper would.
                    Box::pin(close(io, limits.drain_timeout)).await;
                    return;
                }
                Ok(_) => prefix = Bytes::copy_from_slice(&byte),
                Err(e) => {
                    debug!(socket = site.name(), peer = %peer, error = %e, "connection ended with an error");
                    return;
                }
            }
        }
        quiet = limits.idle_timeout;
        requests.new_turn();
        let turn = Turn {
            prefix: std::mem::take(&mut prefix),
            inner: &mut *io,
            requests: requests.clone(),
            unflushed: false,
            paused: false,
        };
        let mut conn: H1<'_> = Box::new(
            http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes)
                .keep_alive(!one_request)
                .serve_connection(TokioIo::new(turn), service),
        );
        let Some(result) = Box::pin(drive(&mut conn, shared, site, activity, stop)).await else {
            return;
        };
        let paused;
        (paused, prefix, service) = {
            let parts = conn.into_parts();
            // The bytes of a pipelined request, copied: `read_buf` shares hyper's
            // whole read buffer.
            let rest = Bytes::copy_from_slice(&parts.read_buf);
            (parts.io.inner().paused, rest, parts.service)
        };
        let resumable = paused
            && match &result {
                Ok(()) => true,
                // The turn ended inside a pipelined request's head: its bytes are in
                // `prefix` and start the next turn.
                Err(e) => e.is_incomplete_message(),
            };
        if !resumable || one_request {
            match result {
                Ok(()) => Box::pin(close(io, limits.drain_timeout)).await,
                Err(e) => {
                    debug!(socket = site.name(), peer = %peer, error = %e, "connection ended with an error");
                }
            }
            return;
        }
    }
}

type Tls = TlsStream<TcpStream>;
type H1<'a> = Box<http1::Connection<TokioIo<Turn<&'a mut Watched<Tls>>>, Answer>>;

/// A hyper connection as the select loop drives it.
trait Serving {
    /// Polls the connection; for HTTP/1.1, without shutting the stream down, so that a
    /// paused turn gives it back.
    fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>>;
    /// Asks the connection to finish its requests and close.
    fn graceful_shutdown(&mut self);
}

impl Serving for H1<'_> {
    fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.poll_without_shutdown(cx)
    }

    fn graceful_shutdown(&mut self) {
        Pin::new(&mut **self).graceful_shutdown();
    }
}

/// Serves `conn` until it ends (its result), or until it is abandoned (`None`): after
/// a stop or `idle_timeout` without bytes moving it is asked to finish, and dropped
/// when its drain time is up.
async fn drive<C: Serving>(
    conn: &mut C,
    shared: &Shared,
    site: Site,
    activity: &Activity,
    stop: &mut Stop,
) -> Option<hyper::Result<()>> {
    let limits = &shared.config.limits;
    let mut deadline: Option<Instant> = None;
    loop {
        tokio::select! {
            result = std::future::poll_fn(|cx| conn.poll_serve(cx)) => return Some(result),
            () = stop.wait(), if deadline.is_none() => {
                conn.graceful_shutdown();
                deadline = Some(Instant::now() + limits.drain_timeout);
            }
            () = activity.idle_for(limits.idle_timeout), if deadline.is_none() => {
                debug!(socket = site.name(), "closing an idle connection");
                conn.graceful_shutdown();
                deadline = Some(Instant::now() + limits.drain_timeout.min(limits.idle_timeout));
            }
            () = sleep_until(deadline), if deadline.is_some() => return None,
        }
    }
}

/// Closes a connection's TLS session and TCP stream (`close_notify`, then FIN), giving
/// up after `limit`.
async fn close<T: AsyncWrite + Unpin>(io: &mut T, limit: Duration) {
    use tokio::io::AsyncWriteExt as _;
    let _ = tokio::time::timeout(limit, io.shutdown()).await;
}

/// The service of one connection: [`routes::handle`] for the verified `peer`, with
/// each request counted in `requests`, every bundle route answered from one snapshot
/// (`pinned`).
struct Answer {
    shared: Arc<Shared>,
    site: Site,
    peer: KeyId,
    requests: Arc<Requests>,
    pinned: Arc<routes::Pinned>,
}

impl Service<Request<Incoming>> for Answer {
    type Response = Response<Tracked>;
    type Error = Infallible;
    // Boxed: hyper keeps a slot for the future of the request in flight for the whole
    // turn, and the routes' future is large.
    type Future = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.requests.begin(req.body().is_end_stream());
        let (shared, site, peer) = (self.shared.clone(), self.site, self.peer);
        let (requests, pinned) = (self.requests.clone(), self.pinned.clone());
        Box::pin(async move {
            let response = routes::handle(&shared, site, peer, &pinned, req).await;
            Ok(response.map(|body| Tracked { body, requests }))
        })
    }
}

/// What the requests of an HTTP/1.1 turn are doing, as [`Turn`] needs to know it.
#[derive(Debug, Default)]
struct Requests {
    /// Requests whose answer hyper has not finished writing.
    open: AtomicUsize,
    /// Whether a request of this turn has been answered.
    answered: AtomicBool,
    /// Whether a request of this connection had a body: such a turn is never paused,
    /// since hyper may still be reading (or draining) that body.
    bodies: AtomicBool,
}

impl Requests {
    fn new_turn(&self) {
        self.answered.store(false, Ordering::Relaxed);
    }

    fn begin(&self, bodiless: bool) {
        self.open.fetch_add(1, Ordering::Relaxed);
        if !bodiless {
            self.bodies.store(true, Ordering::Relaxed);
        }
    }

    fn end(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.answered.store(true, Ordering::Relaxed);
    }

    /// Whether hyper is between requests: something was answered, nothing is open, and
    /// no request body can be in the stream.
    fn between(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
            && self.open.load(Ordering::Relaxed) == 0
            && !self.bodies.load(Ordering::Relaxed)
    }
}

/// A response body that marks its request answered when hyper drops it, which hyper
/// does once the whole body is in its write buffer (or the response is abandoned).
struct Tracked {
    body: routes::Reply,
    requests: Arc<Requests>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = routes::Cut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, routes::Cut>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.requests.end();
    }
}

/// Admits the enrolled members of the manifest being served, and logs the others (at
/// most once every few seconds, with a count of the lines held back). With joins on
/// (`[serve] join_dir`), every key that proves itself is admitted: such a key reaches
/// only `POST /v1/join`, since every other serving route checks the peer again.
#[derive(Debug)]
pub(crate) struct EnrolledMembers {
    pub(crate) pins: MemberPins,
    pub(crate) log: LogLimit,
    pub(crate) joins: Joins,
}

/// Whether the serving socket admits keys that are not enrolled (to reach the join route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joins {
    /// Enrolled members only.
    Off,
    /// Any proved key past the handshake; non-members reach only `POST /v1/join`.
    Open,
}

impl ClientPolicy for EnrolledMembers {
    fn admits(&self, keyid: &KeyId) -> bool {
        if self.joins == Joins::Open {
            return true;
        }
        let admitted = self.pins.contains(keyid);
        if !admitted && let Some(suppressed) = self.log.allow() {
            info!(keyid = %keyid, suppressed, "refused a client key that is not an enrolled member of the served manifest");
        }
        admitted
    }
}

/// Closes a refused connection gently: the alert is already written; send FIN, then
/// read and discard what the client still sends, for a moment. Closing at once with
/// unread client data makes the kernel send a reset, and the client would lose the
/// alert (with TLS 1.3 the client learns of a refused certificate only from it).
async fn linger(mut stream: TcpStream, time: Duration) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(time, drain).await;
}

/// How long (at most) and how much a refused connection is read before it is closed.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Why a handshake failed, from the error tokio-rustls returned.
fn classify(e: &io::Error) -> HandshakeRefusal {
    match tls::tls_error_in(e) {
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        )) => HandshakeRefusal::NotAdmitted,
        Some(rustls::Error::NoCertificatesPresented) => HandshakeRefusal::NoCertificate,
        _ => HandshakeRefusal::Failed,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// When bytes last moved on a connection, in milliseconds since `start`.
#[derive(Debug, Clone)]
struct Activity(Arc<(Instant, AtomicU64)>);

impl Activity {
    fn new() -> Activity {
        Activity(Arc::new((Instant::now(), AtomicU64::new(0))))
    }

    fn touch(&self) {
        let ms = u64::try_from(self.0.0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.1.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no bytes have moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.0.0 + Duration::from_millis(self.0.1.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that records when bytes move through it.
struct Watched<T> {
    inner: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The stream of one HTTP/1.1 turn: `prefix` (bytes read before the turn started)
/// first, then `inner`. When hyper asks for more bytes between requests
/// ([`Requests::between`]), everything written has been flushed, and `inner` has none
/// ready, it reads end-of-stream instead and the turn is `paused`: hyper finishes
/// without shutting `inner` down and gives it back.
struct Turn<T> {
    prefix: Bytes,
    inner: T,
    requests: Arc<Requests>,
    /// Written to since the last completed flush.
    unflushed: bool,
    paused: bool,
}

impl<T: AsyncRead + Unpin> AsyncRead for Turn<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix = self.prefix.slice(n..);
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending if !self.unflushed && self.requests.between() => {
                self.paused = true;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Turn<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.unflushed = true;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.unflushed = true;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            self.unflushed = false;
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves plain HTTP/1 on `tcp` until `stop` (the metrics endpoint and the status
/// page): at most `max` connections at once (more wait to be accepted), one request
/// each, under the configured header and idle limits; `respond` answers.
pub(crate) async fn serve_plain<F, Fut>(
    shared: Arc<Shared>,
    tcp: TcpListener,
    mut stop: Stop,
    max: usize,
    what: &'static str,
    respond: F,
) where
    F: Fn(Arc<Shared>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<http_body_util::Full<Bytes>>> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let stream = tokio::select! {
            () = stop.wait() => break,
            accepted = tcp.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "{what} accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let respond = respond.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service_shared = shared.clone();
            let service = hyper::service::service_fn(move |req| {
                let answer = respond(service_shared.clone(), req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let limits = &shared.config.limits;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes)
                .keep_alive(false);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.wait() => {}
                () = tokio::time::sleep(limits.idle_timeout) => {}
            }
        });
    }
}
