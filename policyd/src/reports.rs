//! `POST /v1/report` on the serving socket: a member's report of one run or event,
//! checked and stored in the report database ([`crate::reportdb`]).
//!
//! Who sends it is the connection's client key, as for every other route of the
//! serving socket: the handshake admits only the served manifest's inventory, and the
//! key is looked up again here, giving the member's name. The body is one JSON object
//! (`schema` `tenet.agent.report/1`, written by the agent's `sync::upload`); its
//! `member` must be that name. In order, each refusal a plain-text line:
//!
//! | status | when |
//! |--------|------|
//! | 503 | this policyd serves no bundle, or the database cannot be opened |
//! | 403 | the key is not (or no longer) in the served inventory, or `member` names another member |
//! | 429 | the member sent more than `[reports] burst` reports, refilled at `per_minute` (`Retry-After`) |
//! | 413 | the body is larger than `[reports] max_body` |
//! | 400 | the body is not a report (its line and column, or the field) |
//!
//! Nothing is stored before every check passed, and 200 is answered only once the
//! report is committed to disk. The limit is per member, so one member's flood
//! refuses only its own reports.

use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use tenet_keys::KeyId;

use crate::body::Body;
use crate::reportdb::{Outcome, Report};
use crate::shared::Shared;

/// The `schema` of a report body.
pub(crate) const REPORT_SCHEMA: &str = "tenet.agent.report/1";

/// Most promise outcomes one report may carry.
const MAX_PROMISES: usize = 100_000;
/// Most errors one report may carry.
const MAX_ERRORS: usize = 64;
/// Longest text field kept (longer ones are cut, on a character boundary).
const MAX_TEXT: usize = 4096;

/// Answers `POST /v1/report` from `peer`.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    peer: KeyId,
    req: Request<Incoming>,
) -> Response<Body> {
    match accept(shared, peer, req).await {
        Ok(id) => {
            shared.metrics.report_stored();
            text(StatusCode::OK, format!("stored report {id}\n"))
        }
        Err(refusal) => {
            shared.metrics.report_refused(refusal.reason);
            let mut r = text(refusal.status, format!("{}\n", refusal.message));
            if let Some(after) = refusal.retry_after {
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(after));
            }
            r
        }
    }
}

/// A refused report.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
    retry_after: Option<u64>,
}

fn refuse(status: StatusCode, reason: &'static str, message: String) -> Refusal {
    Refusal {
        status,
        reason,
        message,
        retry_after: None,
    }
}

async fn accept(shared: &Arc<Shared>, peer: KeyId, req: Request<Incoming>) -> Result<i64, Refusal> {
    let Some(snapshot) = shared.promotion.snapshot() else {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_serving",
            "this member is not serving a bundle".to_string(),
        ));
    };
    let Some(member) = snapshot.bundle.member_name(&peer).map(str::to_string) else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "not_enrolled",
            format!(
                "key id {peer} is not an enrolled member of manifest serial {}",
                snapshot.bundle.serial()
            ),
        ));
    };
    drop(snapshot);
    let config = &shared.config.reports;
    if let Err(wait) = shared
        .report_limit
        .take(&member, config.burst, config.per_minute)
    {
        return Err(Refusal {
            retry_after: Some(wait),
            ..refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "rate",
                format!(
                    "member {member} sent more than {} reports at a rate over {} a minute; retry in {wait}s",
                    config.burst, config.per_minute
                ),
            )
        });
    }
    let body = read_body(shared, req.into_body()).await?;
    let mut report =
        parse(&body).map_err(|message| refuse(StatusCode::BAD_REQUEST, "malformed", message))?;
    if report.member != member {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "other_member",
            format!(
                "the report names member {:?}, but key id {peer} is member {member}",
                report.member
            ),
        ));
    }
    report.keyid = peer.to_string();
    report.received = crate::shared::now().unix();
    let store = match shared.reports.open_store() {
        Some(store) => Ok(store),
        None => {
            let db = shared.clone();
            tokio::task::spawn_blocking(move || db.reports.store())
                .await
                .map_err(|_| unavailable("the report database could not be opened".to_string()))?
        }
    }
    .map_err(|e| {
        tracing::error!(error = %tenet_keys::error_chain(&e), "report database unusable");
        unavailable(format!(
            "the report database cannot be used: {}",
            tenet_keys::error_chain(&e)
        ))
    })?;
    store.insert(report).await.map_err(|e| {
        unavailable(format!(
            "the report was not stored: {}",
            tenet_keys::error_chain(&e)
        ))
    })
}

fn unavailable(message: String) -> Refusal {
    refuse(StatusCode::SERVICE_UNAVAILABLE, "database", message)
}

async fn read_body(shared: &Shared, mut body: Incoming) -> Result<Vec<u8>, Refusal> {
    let max = shared.config.reports.max_body;
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a report is at most {max} bytes"),
        )
    };
    if body.size_hint().lower() > max {
        return Err(too_large());
    }
    let read = async {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    "body",
                    format!("reading the request body: {e}"),
                )
            })?;
            if let Ok(data) = frame.into_data() {
                if (out.len() + data.len()) as u64 > max {
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
            refuse(
                StatusCode::BAD_REQUEST,
                "body",
                "the request body did not arrive in time".to_string(),
            )
        })?
}

/// The report body as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sent {
    schema: String,
    member: String,
    kind: Kind,
    started: u64,
    ended: u64,
    serial: Option<u64>,
    exit_code: i64,
    duration_ms: u64,
    kept: u64,
    repaired: u64,
    would_repair: u64,
    failed: u64,
    blocked: u64,
    skipped: u64,
    dry_run: bool,
    #[serde(default)]
    errors: Vec<String>,
    #[serde(default)]
    promises: Vec<PromiseLine>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Run,
    Event,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromiseLine {
    id: String,
    promise: String,
    status: Status,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Kept,
    Repaired,
    WouldRepair,
    Blocked,
    Failed,
    DidNotConverge,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Kept => "kept",
            Status::Repaired => "repaired",
            Status::WouldRepair => "would_repair",
            Status::Blocked => "blocked",
            Status::Failed => "failed",
            Status::DidNotConverge => "did_not_converge",
        }
    }
}

/// Parses and checks a report body; the error says what is wrong with it.
fn parse(body: &[u8]) -> Result<Report, String> {
    let raw: Sent = serde_json::from_slice(body).map_err(|e| format!("not a report: {e}"))?;
    if raw.schema != REPORT_SCHEMA {
        return Err(format!(
            "schema {:?} is not {REPORT_SCHEMA:?}",
            cut(&raw.schema, 64)
        ));
    }
    if raw.promises.len() > MAX_PROMISES {
        return Err(format!(
            "{} promise outcomes; at most {MAX_PROMISES}",
            raw.promises.len()
        ));
    }
    if raw.errors.len() > MAX_ERRORS {
        return Err(format!("{} errors; at most {MAX_ERRORS}", raw.errors.len()));
    }
    Ok(Report {
        member: raw.member,
        keyid: String::new(),
        kind: match raw.kind {
            Kind::Run => "run",
            Kind::Event => "event",
        }
        .to_string(),
        received: 0,
        started: raw.started,
        ended: raw.ended,
        serial: raw.serial,
        exit_code: raw.exit_code,
        duration_ms: raw.duration_ms,
        kept: raw.kept,
        repaired: raw.repaired,
        would_repair: raw.would_repair,
        failed: raw.failed,
        blocked: raw.blocked,
        skipped: raw.skipped,
        dry_run: raw.dry_run,
        errors: raw.errors.iter().map(|e| cut(e, MAX_TEXT)).collect(),
        outcomes: raw
            .promises
            .into_iter()
            .filter(|p| p.status != Status::Kept)
            .map(|p| Outcome {
                promise: cut(&p.id, MAX_TEXT),
                kind: cut(&p.promise, 64),
                status: p.status.word().to_string(),
                reason: p.reason.map(|r| cut(&r, MAX_TEXT)),
            })
            .collect(),
    })
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(message))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(member: &str) -> String {
        format!(
            r#"{{"schema":"{REPORT_SCHEMA}","member":"{member}","kind":"run","started":1,"ended":2,
            "serial":3,"exit_code":1,"duration_ms":4,"kept":1,"repaired":0,"would_repair":0,
            "failed":1,"blocked":0,"skipped":0,"dry_run":false,"errors":[],
            "promises":[{{"id":"a","promise":"file","status":"kept"}},
                        {{"id":"b","promise":"file","status":"failed","reason":"no"}}]}}"#
        )
    }

    #[test]
    fn parses_a_report_and_keeps_only_outcomes_not_kept() {
        let r = parse(body("alpha").as_bytes()).expect("parses");
        assert_eq!(r.member, "alpha");
        assert_eq!(r.outcomes.len(), 1);
        assert_eq!(r.outcomes[0].status, "failed");
    }

    #[test]
    fn refuses_what_is_not_a_report() {
        for bad in [
            "".to_string(),
            "{}".to_string(),
            "[1,2]".to_string(),
            body("alpha").replace("tenet.agent.report/1", "other/1"),
            body("alpha").replace("\"kind\":\"run\"", "\"kind\":\"walk\""),
            body("alpha").replace("\"failed\",", "\"exploded\","),
            body("alpha").replace("\"dry_run\"", "\"extra\":1,\"dry_run\""),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("abc", 10), "abc");
    }
}
