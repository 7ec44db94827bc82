//! Serving HTTP over mutual TLS on one socket: the accept loop and each connection.
//!
//! Limits, applied to every TLS socket:
//! - a semaphore around `accept` caps open connections (further clients wait in the
//!   kernel's backlog);
//! - the TLS handshake must finish within `handshake_timeout`;
//! - HTTP/1.1 request heads must arrive within `header_read_timeout` and fit in
//!   `max_header_bytes` (else 431); HTTP/2 header lists share the byte cap and streams
//!   are capped per connection;
//! - a connection with no bytes moving for `idle_timeout` is closed, which also ends
//!   slow readers and writers;
//! - on shutdown or demotion a connection is asked to finish and then closed after
//!   `drain_timeout`.
//!
//! The protocol follows ALPN (`h2`, else HTTP/1.1). The verified peer key id is taken
//! from the finished handshake and passed to the routes with every request.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tenet_keys::KeyId;
use tenet_keys::tls::{self, ClientPolicy, MemberPins};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::daemon::Shared;
use crate::metrics::{HandshakeRefusal, Site};
use crate::routes;

/// A TLS server configuration that can be swapped while its socket keeps accepting (a
/// re-promotion with another policy server key).
pub(crate) type SharedAcceptor = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// Accepts connections on `tcp` until `stop`, serving each on its own task.
pub(crate) async fn serve_tls(
    shared: Arc<Shared>,
    site: Site,
    tcp: TcpListener,
    acceptor: SharedAcceptor,
    mut stop: Stop,
) {
    let permits = Arc::new(Semaphore::new(shared.config.limits.max_connections));
    loop {
        let permit = tokio::select! {
            () = stop.wait() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
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
        tokio::spawn(async move {
            let _permit = permit;
            let _guard = guard;
            connection(shared, site, stream, acceptor, stop).await;
            debug!(socket = site.name(), %peer, "connection closed");
        });
    }
    info!(socket = site.name(), "stopped accepting");
}

/// One TLS connection: handshake, then HTTP until the client leaves, goes idle, or
/// the socket is stopped.
async fn connection(
    shared: Arc<Shared>,
    site: Site,
    stream: TcpStream,
    acceptor: TlsAcceptor,
    mut stop: Stop,
) {
    let limits = &shared.config.limits;
    let metrics = &shared.metrics;
    let handshake = acceptor.accept(stream).into_fallible();
    let tls = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
        Err(_) => {
            metrics.handshake_refused(site, HandshakeRefusal::Timeout);
            debug!(socket = site.name(), "tls handshake timed out");
            return;
        }
        Ok(Err((e, stream))) => {
            let why = classify(&e);
            metrics.handshake_refused(site, why);
            debug!(socket = site.name(), reason = why.name(), error = %e, "tls handshake refused");
            linger(stream).await;
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    let (_, conn) = tls.get_ref();
    let Ok(peer) = tls::peer_key_id(conn) else {
        // Client authentication is mandatory, so a finished handshake has a certificate.
        metrics.handshake_refused(site, HandshakeRefusal::Failed);
        return;
    };
    let h2 = conn.alpn_protocol() == Some(b"h2".as_slice());
    let _open = metrics.connection(site);

    let activity = Activity::new();
    let io = TokioIo::new(Watched {
        inner: tls,
        activity: activity.clone(),
    });
    let service_shared = shared.clone();
    let service = service_fn(move |req| {
        let shared = service_shared.clone();
        async move { Ok::<_, Infallible>(routes::handle(&shared, site, peer, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut deadline: Option<Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(socket = site.name(), peer = %peer, error = %e, "connection ended with an error");
                }
                break;
            }
            () = stop.wait(), if deadline.is_none() => {
                conn.as_mut().graceful_shutdown();
                deadline = Some(Instant::now() + limits.drain_timeout);
            }
            () = activity.idle_for(limits.idle_timeout), if deadline.is_none() => {
                debug!(socket = site.name(), peer = %peer, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                deadline = Some(Instant::now() + limits.drain_timeout.min(limits.idle_timeout));
            }
            () = sleep_until(deadline), if deadline.is_some() => break,
        }
    }
}

/// Admits any client that proves its key: the listener's routes decide whom each one
/// answers (the health check answers any authenticated peer).
#[derive(Debug)]
pub(crate) struct AnyProvedKey;

impl ClientPolicy for AnyProvedKey {
    fn admits(&self, _keyid: &KeyId) -> bool {
        true
    }
}

/// Admits the enrolled members of the manifest being served, and logs the others.
#[derive(Debug)]
pub(crate) struct EnrolledMembers {
    pub(crate) pins: MemberPins,
}

impl ClientPolicy for EnrolledMembers {
    fn admits(&self, keyid: &KeyId) -> bool {
        let admitted = self.pins.contains(keyid);
        if !admitted {
            info!(keyid = %keyid, "refused a client key that is not an enrolled member of the served manifest");
        }
        admitted
    }
}

/// Stops when the daemon shuts down or, for a serving socket, when it is demoted.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    global: watch::Receiver<bool>,
    local: Option<watch::Receiver<bool>>,
}

impl Stop {
    /// Stops on the daemon's shutdown only.
    pub(crate) fn global(global: watch::Receiver<bool>) -> Stop {
        Stop {
            global,
            local: None,
        }
    }

    /// Stops on the daemon's shutdown or on `local`.
    pub(crate) fn with(global: watch::Receiver<bool>, local: watch::Receiver<bool>) -> Stop {
        Stop {
            global,
            local: Some(local),
        }
    }

    /// Resolves once stopped (at once if already stopped).
    pub(crate) async fn wait(&mut self) {
        let Stop { global, local } = self;
        match local {
            Some(local) => tokio::select! {
                () = wait_true(global) => {}
                () = wait_true(local) => {}
            },
            None => wait_true(global).await,
        }
    }
}

/// Counts every open connection of the daemon, to drain them on shutdown.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker(Arc<TrackerInner>);

#[derive(Debug, Default)]
struct TrackerInner {
    open: AtomicUsize,
    idle: Notify,
}

impl Tracker {
    /// Counts a connection until the guard drops.
    pub(crate) fn enter(&self) -> TrackerGuard {
        self.0.open.fetch_add(1, Ordering::SeqCst);
        TrackerGuard(self.clone())
    }

    /// Open connections now.
    pub(crate) fn open(&self) -> usize {
        self.0.open.load(Ordering::SeqCst)
    }

    /// Waits until no connection is open or `deadline` passes; returns how many are
    /// still open.
    pub(crate) async fn wait_idle(&self, deadline: Instant) -> usize {
        loop {
            let notified = self.0.idle.notified();
            let open = self.open();
            if open == 0 {
                return 0;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return self.open(),
            }
        }
    }
}

/// Keeps a connection counted.
#[derive(Debug)]
pub(crate) struct TrackerGuard(Tracker);

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

/// Closes a refused connection gently: the alert is already written; send FIN, then
/// read and discard what the client still sends, for a moment. Closing at once with
/// unread client data makes the kernel send a reset, and the client would lose the
/// alert (with TLS 1.3 the client learns of a refused certificate only from it).
async fn linger(mut stream: TcpStream) {
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
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// How long and how much a refused connection is read before it is closed.
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

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|stopped| *stopped).await;
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
