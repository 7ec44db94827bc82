//! `POST /v1/join` on the serving socket: a new member asks to be enrolled.
//!
//! Opt-in (`[serve] join_dir`). The serving socket then lets any key that proves itself
//! in the TLS handshake reach HTTP, but every route other than this one still answers
//! only enrolled members of the served manifest (the routes check the peer on every
//! request), so such a key can reach nothing but this handler.
//!
//! The body (TOML, at most 4 KiB) is `member = "NAME"` and `token = "..."`. In order:
//! the token is verified against this member's newest verified root
//! ([`tenet_keys::join::verify`]: an admin key in scope, the signature, the deployment,
//! not yet valid, expired); its member must be the name asked for; the peer's key must
//! not be enrolled already; then its id is recorded in `join_dir/used-tokens.log`
//! (fdatasynced, so a replay is refused after a restart too), and only then the request
//! is stored in `join_dir/requests/MEMBER.toml` with the peer's key id. Nothing is
//! enrolled here: the daemon holds no key that could sign an inventory, and
//! `tenet-keys approve` (an administrator, with the deployment) enrols.
//!
//! Answers are one JSON line: `{"type":"join_pending",...}` (200) or
//! `{"type":"refused","reason":CODE,"message":...}` with 400 (malformed), 403 (a trust
//! refusal), 404 (joins are off), 409 (a used token, an enrolled key), 413, or 503.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tenet_keys::KeyId;
use tenet_keys::join::{self, JoinError, JoinRequest, UsedTokens};
use tracing::{info, warn};

use crate::body::Body;
use crate::shared::{Shared, now};

/// Largest join request body.
pub(crate) const MAX_JOIN_BYTES: u64 = 4096;

/// One join checked and recorded at a time: the used-token file is read, checked and
/// appended under this lock.
static RECORDING: Mutex<()> = Mutex::new(());

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    member: String,
    token: String,
}

/// Answers `POST /v1/join` from `peer`.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    peer: KeyId,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(dir) = shared.config.serve.join_dir.clone() else {
        return refused(
            StatusCode::NOT_FOUND,
            "joins_off",
            "this master does not accept joins ([serve] join_dir is not set)",
        );
    };
    let bytes = match read_body(shared, req.into_body()).await {
        Ok(b) => b,
        Err((status, message)) => return refused(status, "body", &message),
    };
    let body: JoinBody = match std::str::from_utf8(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|t| toml::from_str(t).map_err(|e| e.message().to_string()))
    {
        Ok(b) => b,
        Err(message) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "malformed",
                &format!("the join request is not `member = ...` and `token = ...`: {message}"),
            );
        }
    };
    let shared2 = shared.clone();
    let checked =
        tokio::task::spawn_blocking(move || check_and_store(&shared2, &dir, peer, &body)).await;
    match checked {
        Ok(Ok(request)) => {
            info!(member = %request.member, keyid = %peer, approval = request.approval.name(), "join request stored");
            line_response(
                StatusCode::OK,
                &json!({
                    "type": "join_pending",
                    "member": request.member,
                    "keyid": peer.to_string(),
                    "approval": request.approval.name(),
                    "classes": request.classes,
                }),
            )
        }
        Ok(Err(e)) => {
            info!(keyid = %peer, reason = e.code(), error = %tenet_keys::error_chain(&e), "join refused");
            let status = match &e {
                JoinError::Malformed { .. } => StatusCode::BAD_REQUEST,
                JoinError::Used { .. } | JoinError::AlreadyEnrolled { .. } => StatusCode::CONFLICT,
                JoinError::Io { .. } => {
                    warn!(error = %tenet_keys::error_chain(&e), "join directory unusable");
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::FORBIDDEN,
            };
            refused(status, e.code(), &tenet_keys::error_chain(&e))
        }
        Err(e) => refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("checking the join failed: {e}"),
        ),
    }
}

fn check_and_store(
    shared: &Shared,
    dir: &PathBuf,
    peer: KeyId,
    body: &JoinBody,
) -> Result<JoinRequest, JoinError> {
    shared.keys.refresh();
    let root = shared.keys.root();
    let received = now();
    let token = join::verify(&root, &body.token, received, join::DEFAULT_MAX_SKEW)?;
    if token.member != body.member {
        return Err(JoinError::WrongMember {
            token: token.member,
            asked: body.member.clone(),
        });
    }
    if let Some(s) = shared.promotion.snapshot()
        && s.bundle.members().contains(&peer)
    {
        return Err(JoinError::AlreadyEnrolled {
            keyid: peer,
            member: body.member.clone(),
        });
    }
    let _one = RECORDING.lock().unwrap_or_else(PoisonError::into_inner);
    std::fs::create_dir_all(dir).map_err(|source| JoinError::Io {
        what: "create",
        path: dir.clone(),
        source,
    })?;
    // Recorded before the request is stored: a crash between the two burns the token
    // rather than ever accepting it twice.
    UsedTokens::open(&dir.join(join::USED_FILE))?.record(&token)?;
    let request = JoinRequest {
        member: token.member.clone(),
        keyid: peer,
        received,
        approval: token.approval,
        classes: token.classes.clone(),
        token: body.token.trim().to_string(),
    };
    request.store(dir)?;
    Ok(request)
}

async fn read_body(shared: &Shared, mut body: Incoming) -> Result<Vec<u8>, (StatusCode, String)> {
    let read = async {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| (StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if (out.len() + data.len()) as u64 > MAX_JOIN_BYTES {
                    return Err((
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("a join request is at most {MAX_JOIN_BYTES} bytes"),
                    ));
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
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time".to_string(),
            )
        })?
}

fn refused(status: StatusCode, reason: &'static str, message: &str) -> Response<Body> {
    line_response(
        status,
        &json!({"type": "refused", "reason": reason, "message": message}),
    )
}

fn line_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut text = value.to_string();
    text.push('\n');
    let mut r = Response::new(Body::new(http_body_util::Full::new(Bytes::from(text))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/jsonl"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
