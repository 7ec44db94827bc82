//! The fixed route table of each TLS socket, and the handlers.
//!
//! | socket   | route                         | answers                | auth            |
//! |----------|-------------------------------|------------------------|-----------------|
//! | listener | `GET /v1/health`              | state and serial       | admin or member |
//! | listener | `POST /v1/run`                | a pushed run, streamed | admin           |
//! | serve    | `GET /v1/root/{n}` (`/sig`)   | root version n         | member          |
//! | serve    | `GET /v1/timestamp` (`/sig`)  | the current timestamp  | member          |
//! | serve    | `GET /v1/manifest` (`/sig`)   | the current manifest   | member          |
//! | serve    | `GET /v1/blob/sha256/{hex}`   | a file of the tree     | member          |
//! | serve    | `POST /v1/blobs`              | many files, in order   | member          |
//! | serve    | `POST /v1/join`               | a join request stored  | any proved key  |
//! | serve    | `POST /v1/report`             | a run's report, stored | member (its own)|
//!
//! Paths are matched segment by segment against these literals, with `{n}` a decimal
//! without leading zeros and `{hex}` exactly 64 lower-case hex digits; anything else is
//! 404 before any state or file is looked at. No request text becomes a filesystem
//! path: a blob is found by its hash in the verified manifest, and only then read from
//! the blob store under the name that hash gives. Every route takes `GET` only and no
//! request body, except `POST /v1/run` (a signed run request of at most 4 KiB; see
//! [`crate::runreq`]) and `POST /v1/blobs`.
//!
//! `POST /v1/blobs` (a full sync in a handful of requests): the body names blobs, one
//! hash per line (`{hex}` as above, each line ending in `\n`, the last one optionally
//! not), at most [`MAX_BATCH_BLOBS`] of them ([`MAX_BATCH_BODY`] bytes; 413 beyond). A
//! malformed line is 400 naming its number, and so is a hash named a second time; a hash
//! no file of the served manifest has is 404 naming the first such, before any blob is
//! read. One request thus reads each blob of the served bundle at most once, as one
//! `GET` per blob would. The answer is 200, `application/octet-stream`, the blobs'
//! bytes concatenated in request order with no framing (the member knows every size
//! from the signed manifest), its `Content-Length` their sum.
//!
//! Blob answers (`GET /v1/blob` too) are streamed from the blob store, never held whole
//! ([`stream_blobs`]): every blob is opened and found to be a regular file of its signed
//! size before the answer starts (else 500, nothing sent); each is hashed again as it
//! streams and its last chunk is sent only once it matched, so a blob changed in place
//! since it was verified is cut short (the connection closes before `Content-Length`)
//! and never reaches a member whole. The chunks all answers hold at once share one
//! budget, `limits.blob_memory`
//! ([`BlobMemory`](crate::shared::blob_memory::BlobMemory)); an answer waits for room.
//!
//! "member" means the peer's key id is in the inventory of the manifest being served,
//! checked on every request (the handshake already refused others; the check covers a
//! connection that outlives a manifest that dropped its key).
//!
//! One connection is one conversation ([`Pinned`]): its bundle routes answer from the
//! snapshot its first one saw, so a member's timestamp, its signatures, the manifest it
//! names and that manifest's blobs always belong together, even when a promotion or a
//! re-signed timestamp lands between two of its requests (otherwise the member gets an
//! old document with a new signature, and refuses it on trust). The next connection sees
//! the new snapshot; a connection lives at most `max_connection_age`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tenet_keys::{FileEntry, KeyId, Sha256Sum, VerifyError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::error;

use crate::body::Body;
use crate::bundle::{BlobCheck, LoadedBundle};
use crate::metrics::{Metrics, Site};
use crate::shared::Shared;
use crate::shared::promotion_state::{Snapshot, State};

/// A route of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /v1/health` (listener).
    Health,
    /// `POST /v1/run` (listener): a pushed run.
    Run,
    /// `GET /v1/root/{n}`.
    Root(u64),
    /// `GET /v1/root/{n}/sig`.
    RootSig(u64),
    /// `GET /v1/timestamp`.
    Timestamp,
    /// `GET /v1/timestamp/sig`.
    TimestampSig,
    /// `GET /v1/manifest`.
    Manifest,
    /// `GET /v1/manifest/sig`.
    ManifestSig,
    /// `GET /v1/blob/sha256/{hex}`.
    Blob(Sha256Sum),
    /// `POST /v1/blobs`: many blobs in one answer.
    Blobs,
    /// `POST /v1/join`: a new member's join request ([`crate::join`]).
    Join,
    /// `POST /v1/report`: a member's run report ([`crate::reports`]).
    Report,
}

/// Most hashes one `POST /v1/blobs` may name.
pub(crate) const MAX_BATCH_BLOBS: usize = 4096;
/// Largest `POST /v1/blobs` body: [`MAX_BATCH_BLOBS`] lines of 64 hex digits and `\n`.
pub(crate) const MAX_BATCH_BODY: u64 = MAX_BATCH_BLOBS as u64 * 65;

/// Whom a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// A key the listener admits: an admin key of the newest verified root, or an
    /// enrolled member.
    Admitted,
    /// An enrolled member of the manifest being served.
    Member,
    /// A key of the admin role of the member's newest verified root (checked by the
    /// handler, which also requires it to be the request's signer).
    Admin,
}

/// What [`handle`] answers with: a [`Body`], or a streamed blob answer, which fails
/// ([`Cut`], closing the connection) if a blob turns out changed.
pub(crate) type Reply = BoxBody<Bytes, Cut>;

/// A whole answer as a [`Reply`].
fn whole(body: Full<Bytes>) -> Reply {
    lift(BodyExt::boxed(body))
}

/// A body that cannot fail, as a [`Reply`].
fn lift(body: Body) -> Reply {
    body.map_err(|never| match never {}).boxed()
}

impl Route {
    /// The route `path` names on `site`, if any.
    pub(crate) fn parse(site: Site, path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/v1/")?;
        let segments: Vec<&str> = rest.splitn(5, '/').collect();
        match site {
            Site::Listener => match segments.as_slice() {
                ["health"] => Some(Route::Health),
                ["run"] => Some(Route::Run),
                _ => None,
            },
            Site::Serving => match segments.as_slice() {
                ["root", n] => version(n).map(Route::Root),
                ["root", n, "sig"] => version(n).map(Route::RootSig),
                ["timestamp"] => Some(Route::Timestamp),
                ["timestamp", "sig"] => Some(Route::TimestampSig),
                ["manifest"] => Some(Route::Manifest),
                ["manifest", "sig"] => Some(Route::ManifestSig),
                ["blob", "sha256", hex] => sha256(hex).map(Route::Blob),
                ["blobs"] => Some(Route::Blobs),
                ["join"] => Some(Route::Join),
                ["report"] => Some(Route::Report),
                _ => None,
            },
        }
    }

    /// The route's name in metrics.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Run => "run",
            Route::Root(_) => "root",
            Route::RootSig(_) => "root_sig",
            Route::Timestamp => "timestamp",
            Route::TimestampSig => "timestamp_sig",
            Route::Manifest => "manifest",
            Route::ManifestSig => "manifest_sig",
            Route::Blob(_) => "blob",
            Route::Blobs => "blobs",
            Route::Join => "join",
            Route::Report => "report",
        }
    }

    fn auth(&self) -> Auth {
        match self {
            Route::Health => Auth::Admitted,
            Route::Run => Auth::Admin,
            _ => Auth::Member,
        }
    }
}

/// Answers one request from `peer` on `site`, and counts it.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    site: Site,
    peer: KeyId,
    pinned: &Pinned,
    req: Request<Incoming>,
) -> Response<Reply> {
    let route = Route::parse(site, req.uri().path());
    let response = match route {
        None => text(StatusCode::NOT_FOUND, "no such route\n".to_string()).map(whole),
        Some(Route::Run | Route::Blobs | Route::Join | Route::Report)
            if req.method() != Method::POST =>
        {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route answers POST only\n".to_string(),
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            r.map(whole)
        }
        Some(Route::Run) => crate::runreq::handle(shared, peer, req).await.map(lift),
        Some(Route::Blobs) => blobs(shared, peer, pinned, req).await,
        Some(Route::Join) => crate::join::handle(shared, peer, req).await.map(lift),
        Some(Route::Report) => crate::reports::handle(shared, peer, req).await.map(lift),
        Some(route) => answer(shared, route, peer, pinned, &req).await,
    };
    let label = route.as_ref().map_or("unknown", Route::name);
    shared
        .metrics
        .request(site, label, response.status().as_u16());
    response
}

async fn answer(
    shared: &Shared,
    route: Route,
    peer: KeyId,
    pinned: &Pinned,
    req: &Request<Incoming>,
) -> Response<Reply> {
    if req.method() != Method::GET {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "this route answers GET only\n".to_string(),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r.map(whole);
    }
    let body = req.body();
    if !body.is_end_stream() && body.size_hint().exact() != Some(0) {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "this route takes no request body\n".to_string(),
        )
        .map(whole);
    }
    match route.auth() {
        // The listener's routes: a key the listener admits (checked again here, for a
        // connection that outlives a change of the admitted keys).
        Auth::Admitted | Auth::Admin => match route {
            Route::Health if shared.keys.admitted(&peer) => health(shared),
            Route::Health => text(
                StatusCode::FORBIDDEN,
                format!("key id {peer} is neither an admin key nor an enrolled member\n"),
            ),
            _ => text(StatusCode::NOT_FOUND, "no such route\n".to_string()),
        }
        .map(whole),
        Auth::Member => match member_snapshot(shared, peer, pinned) {
            Ok(snapshot) => {
                if route == Route::Timestamp {
                    shared.metrics.timestamp_fetched(
                        peer,
                        snapshot.bundle.members(),
                        crate::shared::now().unix(),
                    );
                }
                bundle_route(shared, &snapshot, route).await
            }
            Err((status, message)) => text(status, message).map(whole),
        },
    }
}

/// A refusal: its status and message.
type Refused = (StatusCode, String);

/// The snapshot one connection answers from: the one served when its first bundle
/// route was asked (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Pinned(std::sync::Mutex<Option<Arc<Snapshot>>>);

impl Pinned {
    /// The pinned snapshot, or the one served now (then pinned).
    fn snapshot(&self, shared: &Shared) -> Option<Arc<Snapshot>> {
        let mut pinned = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pinned.is_none() {
            *pinned = shared.promotion.snapshot();
        }
        pinned.clone()
    }
}

/// The bundle this connection is served ([`Pinned`]), if `peer` is an enrolled member
/// of it; else the refusal.
fn member_snapshot(
    shared: &Shared,
    peer: KeyId,
    pinned: &Pinned,
) -> Result<Arc<Snapshot>, Refused> {
    let Some(snapshot) = pinned.snapshot(shared) else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "this member is not serving a bundle\n".to_string(),
        ));
    };
    if !snapshot.bundle.members().contains(&peer) {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "key id {peer} is not an enrolled member of manifest serial {}\n",
                snapshot.bundle.serial()
            ),
        ));
    }
    Ok(snapshot)
}

async fn bundle_route(shared: &Shared, s: &Snapshot, route: Route) -> Response<Reply> {
    let document = |bytes: Option<Bytes>| match bytes {
        Some(b) => toml(b),
        None => text(StatusCode::NOT_FOUND, "no such document\n".to_string()),
    };
    if let Route::Blob(sha256) = route {
        return blob(shared, s, sha256).await;
    }
    match route {
        Route::Root(n) => document(s.bundle.root(n).map(|d| d.bytes.clone())),
        Route::RootSig(n) => document(s.bundle.root(n).map(|d| d.sig.clone())),
        Route::Timestamp => toml(s.timestamp.document.bytes.clone()),
        Route::TimestampSig => toml(s.timestamp.document.sig.clone()),
        Route::Manifest => toml(s.bundle.manifest_document().bytes),
        Route::ManifestSig => toml(s.bundle.manifest_document().sig),
        Route::Blob(_)
        | Route::Health
        | Route::Run
        | Route::Blobs
        | Route::Join
        | Route::Report => text(StatusCode::NOT_FOUND, "no such route\n".to_string()),
    }
    .map(whole)
}

async fn blob(shared: &Shared, s: &Snapshot, sha256: Sha256Sum) -> Response<Reply> {
    // Only a hash the verified manifest lists reaches the filesystem.
    let Some(entry) = s.bundle.blob_entry(&sha256).cloned() else {
        return text(
            StatusCode::NOT_FOUND,
            "no file of the served manifest has this hash\n".to_string(),
        )
        .map(whole);
    };
    stream_blobs(shared, s, vec![entry], "max-age=86400, immutable").await
}

/// `POST /v1/blobs` from `peer`: the named blobs, concatenated in request order (see the
/// module docs). Membership is checked before any body is read, and every hash is
/// looked up before any blob is.
async fn blobs(
    shared: &Shared,
    peer: KeyId,
    pinned: &Pinned,
    req: Request<Incoming>,
) -> Response<Reply> {
    let refuse = |status, message| text(status, message).map(whole);
    let snapshot = match member_snapshot(shared, peer, pinned) {
        Ok(s) => s,
        Err((status, message)) => return refuse(status, message),
    };
    let body = match read_batch_body(shared, req.into_body()).await {
        Ok(b) => b,
        Err((status, message)) => return refuse(status, message),
    };
    let hashes = match parse_batch(&body) {
        Ok(h) => h,
        Err(e) => return refuse(e.status(), format!("{e}\n")),
    };
    let mut entries = Vec::with_capacity(hashes.len());
    let mut named = HashSet::with_capacity(hashes.len());
    for (at, sha256) in hashes.iter().enumerate() {
        if !named.insert(*sha256) {
            return text(
                StatusCode::BAD_REQUEST,
                format!("line {}: hash {sha256} is named twice\n", at + 1),
            )
            .map(whole);
        }
        // Only a hash the verified manifest lists reaches the filesystem.
        let Some(entry) = snapshot.bundle.blob_entry(sha256) else {
            return text(
                StatusCode::NOT_FOUND,
                format!(
                    "line {}: no file of the served manifest has hash {sha256}\n",
                    at + 1
                ),
            )
            .map(whole);
        };
        entries.push(entry.clone());
    }
    stream_blobs(shared, &snapshot, entries, "no-store").await
}

/// The answer of `GET /v1/blob` and `POST /v1/blobs`: the blobs of `entries`,
/// concatenated and streamed from the blob store in chunks of at most [`CHUNK`] bytes.
///
/// Before the answer starts, every blob is opened and found to be a regular file of its
/// signed size (else 500, nothing sent). As it streams, each blob is hashed again, and
/// its last chunk is sent only once the whole blob matched; on a mismatch the answer is
/// cut (the connection is closed short of its `Content-Length`), so a blob that changed
/// since it was verified never reaches a client whole. Each chunk holds its bytes of
/// [`BlobMemory`](crate::shared::blob_memory::BlobMemory) until hyper has written it out.
async fn stream_blobs(
    shared: &Shared,
    s: &Snapshot,
    entries: Vec<FileEntry>,
    cache: &'static str,
) -> Response<Reply> {
    let bundle = s.bundle.clone();
    let listed = entries.clone();
    let opened = tokio::task::spawn_blocking(move || {
        for entry in &listed {
            if let Err(e) = bundle.open_blob(entry) {
                return Err(Box::new((entry.clone(), e)));
            }
        }
        Ok(())
    })
    .await;
    match opened {
        Ok(Ok(())) => {}
        Ok(Err(failed)) => return store_mismatch(&failed.0, &failed.1).map(whole),
        Err(e) => {
            error!(error = %e, "opening blobs failed");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the blobs failed\n".to_string(),
            )
            .map(whole);
        }
    }
    let length: u64 = entries.iter().map(|e| e.size).sum();
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(produce(
        s.bundle.clone(),
        entries,
        shared.blob_memory.0.clone(),
        shared.metrics.clone(),
        tx,
    ));
    let mut r = Response::new(Streamed { rx, length }.boxed());
    let headers = r.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// Largest chunk of a blob read and held at once.
const CHUNK: u64 = 64 * 1024;

/// Reads `entries` chunk by chunk into `tx` (see [`stream_blobs`]); stops when the
/// answer is dropped.
async fn produce(
    bundle: Arc<LoadedBundle>,
    entries: Vec<FileEntry>,
    memory: Arc<Semaphore>,
    metrics: Metrics,
    tx: mpsc::Sender<Result<Bytes, Cut>>,
) {
    for entry in entries {
        metrics.blob_read();
        let b = bundle.clone();
        let e = entry.clone();
        let mut file = match tokio::task::spawn_blocking(move || b.open_blob(&e)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return cut(&tx, &entry, &e).await,
            Err(_) => return,
        };
        let mut check = BlobCheck::new();
        let mut sent: u64 = 0;
        loop {
            let want = (entry.size - sent).min(CHUNK);
            let last = sent + want == entry.size;
            // `want` is at most CHUNK, which fits a u32.
            let Ok(permit) = memory
                .clone()
                .acquire_many_owned(u32::try_from(want).unwrap_or(u32::MAX))
                .await
            else {
                return;
            };
            let read = tokio::task::spawn_blocking(move || read_chunk(file, want, last)).await;
            let (f, chunk) = match read {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    let e = VerifyError::BlobIo {
                        path: entry.path.clone(),
                        source: e,
                    };
                    return cut(&tx, &entry, &e).await;
                }
                Err(_) => return,
            };
            file = f;
            if !last && (chunk.len() as u64) < want {
                // The file ended early: it shrank since it was opened.
                let e = VerifyError::BlobTooSmall {
                    path: entry.path.clone(),
                    declared: entry.size,
                    found: sent + chunk.len() as u64,
                };
                return cut(&tx, &entry, &e).await;
            }
            check.update(&chunk);
            sent += chunk.len() as u64;
            if last {
                // The blob's last bytes go out only if the whole blob matched.
                if let Err(e) = std::mem::replace(&mut check, BlobCheck::new()).finish(&entry) {
                    return cut(&tx, &entry, &e).await;
                }
            }
            if !chunk.is_empty()
                && tx
                    .send(Ok(Bytes::from_owner(Held {
                        bytes: chunk,
                        _permit: permit,
                    })))
                    .await
                    .is_err()
            {
                return; // The client left.
            }
            if last {
                break;
            }
        }
    }
}

/// Reads exactly `want` bytes of `file` (fewer only at its end); if `last`, also makes
/// sure nothing follows (a byte more is kept, so the size check fails).
fn read_chunk(mut file: File, want: u64, last: bool) -> io::Result<(File, Vec<u8>)> {
    let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0) + usize::from(last));
    (&mut file)
        .take(want + u64::from(last))
        .read_to_end(&mut buf)?;
    Ok((file, buf))
}

/// Logs why a streamed answer is cut and cuts it.
async fn cut(tx: &mpsc::Sender<Result<Bytes, Cut>>, entry: &FileEntry, e: &VerifyError) {
    error!(
        path = %entry.path,
        sha256 = %entry.sha256,
        error = %tenet_keys::error_chain(e),
        "a blob no longer matches the served manifest; the answer is cut"
    );
    let _ = tx.send(Err(Cut)).await;
}

/// A streamed answer was cut short: a blob changed since it was verified.
#[derive(Debug, thiserror::Error)]
#[error("the blob store no longer matches the served manifest; the answer was cut")]
pub(crate) struct Cut;

/// A chunk of a blob and its share of
/// [`BlobMemory`](crate::shared::blob_memory::BlobMemory), given back when hyper
/// drops it.
struct Held {
    bytes: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A streamed answer's body: the chunks [`produce`] sends, `length` bytes in all.
struct Streamed {
    rx: mpsc::Receiver<Result<Bytes, Cut>>,
    length: u64,
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|chunk| chunk.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.length)
    }
}

/// Reads a `POST /v1/blobs` body: at most [`MAX_BATCH_BODY`] bytes (413 beyond), within
/// `header_read_timeout` (400 after).
async fn read_batch_body(shared: &Shared, mut body: Incoming) -> Result<Vec<u8>, Refused> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a request names at most {MAX_BATCH_BLOBS} blobs ({MAX_BATCH_BODY} bytes of body)\n"
            ),
        )
    };
    if body.size_hint().lower() > MAX_BATCH_BODY {
        return Err(too_large());
    }
    let read = async {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body: {e}\n"),
                )
            })?;
            if let Ok(data) = frame.into_data() {
                if (out.len() + data.len()) as u64 > MAX_BATCH_BODY {
                    return Err(too_large());
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    };
    tokio::time::timeout(shared.config.limits.header_read_timeout, read)
        .await
        .map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                "the request body did not arrive in time\n".to_string(),
            )
        })?
}

/// Why a `POST /v1/blobs` body names no blobs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BatchError {
    /// The body is empty.
    #[error("the request names no blob: send one hash per line")]
    Empty,
    /// More than [`MAX_BATCH_BLOBS`] lines.
    #[error("the request names {0} blobs; at most {MAX_BATCH_BLOBS} per request")]
    TooMany(usize),
    /// A line that is not 64 lower-case hex digits.
    #[error("line {0}: not a blob hash (64 lower-case hex digits)")]
    Malformed(usize),
}

impl BatchError {
    fn status(&self) -> StatusCode {
        match self {
            BatchError::TooMany(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BatchError::Empty | BatchError::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The hashes of a `POST /v1/blobs` body, in order: one per line, each line ending in
/// `\n` (optional after the last).
fn parse_batch(body: &[u8]) -> Result<Vec<Sha256Sum>, BatchError> {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    if body.is_empty() {
        return Err(BatchError::Empty);
    }
    let lines = body.split(|&c| c == b'\n');
    let count = lines.clone().count();
    if count > MAX_BATCH_BLOBS {
        return Err(BatchError::TooMany(count));
    }
    lines
        .enumerate()
        .map(|(at, line)| {
            std::str::from_utf8(line)
                .ok()
                .and_then(sha256)
                .ok_or(BatchError::Malformed(at + 1))
        })
        .collect()
}

/// The 500 of a blob that no longer matches the served manifest, logged.
fn store_mismatch(entry: &FileEntry, e: &VerifyError) -> Response<Full<Bytes>> {
    error!(
        path = %entry.path,
        sha256 = %entry.sha256,
        error = %tenet_keys::error_chain(e),
        "a blob no longer matches the served manifest"
    );
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the blob store no longer matches the served manifest\n".to_string(),
    )
}

fn health(shared: &Shared) -> Response<Full<Bytes>> {
    let mut body = String::new();
    match shared.promotion.state() {
        State::Listening => body.push_str("state = \"listening\"\n"),
        State::Serving { serial } => {
            let _ = write!(body, "state = \"serving\"\nserial = {serial}\n");
        }
    }
    toml(Bytes::from(body))
}

fn toml(bytes: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(bytes));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/toml; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(message)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A root version in a path: decimal, no sign, no leading zero.
fn version(text: &str) -> Option<u64> {
    if text.is_empty()
        || text.len() > 20
        || text.starts_with('0')
        || !text.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    text.parse().ok()
}

/// A blob hash in a path: exactly 64 lower-case hex digits.
fn sha256(text: &str) -> Option<Sha256Sum> {
    if text.len() != 64
        || !text
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(site: Site, path: &str, expected: Option<Route>) {
        assert_eq!(Route::parse(site, path), expected, "{path}");
    }

    #[test]
    fn the_serving_table() {
        let hex = "ab".repeat(32);
        let sum: Sha256Sum = hex.parse().unwrap();
        check(Site::Serving, "/v1/root/1", Some(Route::Root(1)));
        check(Site::Serving, "/v1/root/12/sig", Some(Route::RootSig(12)));
        check(Site::Serving, "/v1/timestamp", Some(Route::Timestamp));
        check(
            Site::Serving,
            "/v1/timestamp/sig",
            Some(Route::TimestampSig),
        );
        check(Site::Serving, "/v1/manifest", Some(Route::Manifest));
        check(Site::Serving, "/v1/manifest/sig", Some(Route::ManifestSig));
        check(
            Site::Serving,
            &format!("/v1/blob/sha256/{hex}"),
            Some(Route::Blob(sum)),
        );
        // The listener's route is not served here, and the reverse.
        check(Site::Serving, "/v1/health", None);
        check(Site::Listener, "/v1/manifest", None);
        check(Site::Listener, "/v1/health", Some(Route::Health));
        check(Site::Listener, "/v1/run", Some(Route::Run));
        check(Site::Serving, "/v1/run", None);
        check(Site::Listener, "/v1/run/", None);
        check(Site::Serving, "/v1/blobs", Some(Route::Blobs));
        check(Site::Serving, "/v1/blobs/", None);
        check(Site::Listener, "/v1/blobs", None);
    }

    #[test]
    fn a_batch_is_one_hash_per_line() {
        let a = "ab".repeat(32);
        let b = "0f".repeat(32);
        let (sa, sb): (Sha256Sum, Sha256Sum) = (a.parse().unwrap(), b.parse().unwrap());
        assert_eq!(
            parse_batch(format!("{a}\n{b}\n").as_bytes()),
            Ok(vec![sa, sb])
        );
        assert_eq!(
            parse_batch(format!("{a}\n{b}").as_bytes()),
            Ok(vec![sa, sb])
        );
        assert_eq!(parse_batch(b""), Err(BatchError::Empty));
        assert_eq!(parse_batch(b"\n"), Err(BatchError::Empty));
        for (body, line) in [
            (format!("{a}\n\n{b}\n"), 2),
            (format!("{a}\n\n"), 2),
            (format!("{a}\r\n{b}\n"), 1),
            (format!("{a}\n{}\n", b.to_uppercase()), 2),
            (format!("{a}\n{}\n", &b[..63]), 2),
            (format!("{a}\n{b}0\n"), 2),
            (format!("{a} {b}\n"), 1),
            ("../../etc/passwd\n".to_string(), 1),
        ] {
            assert_eq!(
                parse_batch(body.as_bytes()),
                Err(BatchError::Malformed(line)),
                "{body:?}"
            );
        }
        let most = format!("{a}\n").repeat(MAX_BATCH_BLOBS);
        assert_eq!(most.len() as u64, MAX_BATCH_BODY);
        assert_eq!(
            parse_batch(most.as_bytes()).map(|h| h.len()),
            Ok(MAX_BATCH_BLOBS)
        );
        let over = "x\n".repeat(MAX_BATCH_BLOBS + 1);
        assert_eq!(
            parse_batch(over.as_bytes()),
            Err(BatchError::TooMany(MAX_BATCH_BLOBS + 1))
        );
    }

    #[test]
    fn everything_else_is_no_route() {
        let hex = "ab".repeat(32);
        for path in [
            "/",
            "",
            "/v1",
            "/v1/",
            "/v2/manifest",
            "/v1/manifest/",
            "/v1//manifest",
            "/v1/manifest/sig/x",
            "/v1/root/0",
            "/v1/root/01",
            "/v1/root/-1",
            "/v1/root/+1",
            "/v1/root/1.root.toml",
            "/v1/root/99999999999999999999999",
            "/v1/blob/sha256/../../etc/passwd",
            "/v1/blob/sha256/%2e%2e%2fetc%2fpasswd",
            &format!("/v1/blob/sha256/{}", hex.to_uppercase()),
            &format!("/v1/blob/sha256/{}", &hex[..63]),
            &format!("/v1/blob/sha256/{hex}0"),
            &format!("/v1/blob/sha256/{hex}/"),
            &format!("/v1/blob/sha512/{hex}"),
            &format!("/v1/blob/sha256/{}g", &hex[..63]),
        ] {
            check(Site::Serving, path, None);
        }
    }
}
