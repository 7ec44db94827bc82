//! The read-only status page on `[reports] page` (plain HTTP, loopback by default):
//! server-rendered HTML from the report database, plus a small script.
//!
//! | route              | shows |
//! |--------------------|-------|
//! | `GET /`            | each member's serial, last report (its age), kept, repaired, failed; the failing promises with their messages |
//! | `GET /member/NAME` | one member's reports, newest first, with a time chart (inline SVG) of failed and repaired promises |
//!
//! The page reads the database only while this member serves (it lives on the
//! package filesystem); otherwise it says so. Every text from a report is
//! HTML-escaped. The script turns each time into an age ("42s ago"), lets the member
//! table show only failing members, reloads the page every 30 s, and marks the body
//! `data-script="done"` once it ran. Nothing here writes.

use std::fmt::Write as _;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tracing::warn;

use crate::history::{is_failure, rfc3339};
use crate::reportdb::{self, Outcome, StoreError, Stored};
use crate::shared::Shared;
use crate::shutdown::Stop;

/// Connections the page serves at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 16;
/// Reports listed (and charted) on a member's page.
const HISTORY: u32 = 200;

/// Serves the page on `tcp` until `stop`.
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpListener, stop: Stop) {
    crate::http::serve_plain(shared, tcp, stop, MAX_CONNECTIONS, "status page", respond).await;
}

/// What a path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum View {
    Overview,
    Member(String),
}

fn view(path: &str) -> Option<View> {
    if path == "/" {
        return Some(View::Overview);
    }
    let name = path.strip_prefix("/member/")?;
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    valid.then(|| View::Member(name.to_string()))
}

async fn respond(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    let Some(view) = view(req.uri().path()) else {
        return plain(StatusCode::NOT_FOUND, "no such page\n");
    };
    let serving = shared.promotion.snapshot().map(|s| s.bundle.serial());
    let Some(serial) = serving else {
        return html(
            StatusCode::OK,
            document(
                "tenet",
                "<p id=\"not-serving\">This member is not the master: it serves no bundle, \
                 and the report database is on the master's package filesystem.</p>",
            ),
        );
    };
    let path = shared.reports.path().to_path_buf();
    let rendered = tokio::task::spawn_blocking(move || {
        if !path.exists() {
            return Ok(None);
        }
        let conn = reportdb::open_read(&path)?;
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            what: "read reports",
            source,
        };
        Ok(Some(match &view {
            View::Overview => overview(
                &reportdb::latest(&conn).map_err(sql)?,
                &reportdb::latest_failures(&conn).map_err(sql)?,
                serial,
            ),
            View::Member(name) => {
                let history = reportdb::history(&conn, name, HISTORY).map_err(sql)?;
                let last = match history.first() {
                    Some(r) => reportdb::outcomes(&conn, r.id).map_err(sql)?,
                    None => Vec::new(),
                };
                member(name, &history, &last)
            }
        }))
    })
    .await;
    match rendered {
        Ok(Ok(Some(page))) => html(StatusCode::OK, page),
        Ok(Ok(None)) => html(
            StatusCode::OK,
            document(
                "tenet",
                "<p id=\"no-reports\">No member has reported yet.</p>",
            ),
        ),
        Ok(Err(e)) => {
            let e: StoreError = e;
            warn!(error = %tenet_keys::error_chain(&e), "status page: report database unreadable");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the report database cannot be read\n",
            )
        }
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n"),
    }
}

fn overview(latest: &[Stored], failures: &[(String, Outcome)], serial: u64) -> String {
    let failing = latest
        .iter()
        .filter(|s| s.report.failed + s.report.blocked > 0 || s.report.exit_code != 0)
        .count();
    let mut b = String::new();
    let _ = write!(
        b,
        "<p id=\"summary\">Serving serial {serial}. {} members reported; {} ok, {failing} failing.</p>\
         <p><label><input type=\"checkbox\" id=\"failing-only\"> failing members only</label></p>\
         <table id=\"members\"><thead><tr><th>member</th><th>serial</th><th>last report</th>\
         <th>exit</th><th>kept</th><th>repaired</th><th>failed</th></tr></thead><tbody>",
        latest.len(),
        latest.len() - failing,
    );
    for s in latest {
        let r = &s.report;
        let bad = r.failed + r.blocked > 0 || r.exit_code != 0;
        let _ = write!(
            b,
            "<tr class=\"member {}\" data-member=\"{m}\"><td><a href=\"/member/{m}\">{m}</a></td>\
             <td class=\"serial\">{}</td><td class=\"age\" data-unix=\"{}\">{}</td><td>{}</td>\
             <td class=\"kept\">{}</td><td class=\"repaired\">{}</td><td class=\"failed\">{}</td></tr>",
            if bad { "failing" } else { "ok" },
            r.serial.map_or_else(|| "-".to_string(), |n| n.to_string()),
            r.received,
            rfc3339(r.received),
            r.exit_code,
            r.kept,
            r.repaired,
            r.failed + r.blocked,
            m = escape(&r.member),
        );
    }
    b.push_str("</tbody></table><h2>Failing promises</h2><ul id=\"failures\">");
    for (member, o) in failures {
        let _ = write!(
            b,
            "<li class=\"failure\" data-member=\"{m}\"><a href=\"/member/{m}\">{m}</a>: {}</li>",
            outcome(o),
            m = escape(member),
        );
    }
    if failures.is_empty() {
        b.push_str("<li class=\"none\">none</li>");
    }
    b.push_str("</ul>");
    document("tenet: members", &b)
}

fn member(name: &str, history: &[Stored], last: &[Outcome]) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<p><a href=\"/\">all members</a></p><h2>{}</h2>",
        escape(name)
    );
    if history.is_empty() {
        b.push_str("<p id=\"no-reports\">No report from this member.</p>");
        return document("tenet: member", &b);
    }
    b.push_str(&chart(history));
    b.push_str("<h3>Last report: promises not kept</h3><ul id=\"outcomes\">");
    for o in last {
        let _ = write!(
            b,
            "<li class=\"outcome {}\">{}</li>",
            if is_failure(o) { "failure" } else { "change" },
            outcome(o)
        );
    }
    if last.is_empty() {
        b.push_str("<li class=\"none\">none</li>");
    }
    b.push_str(
        "</ul><h3>Reports</h3><table id=\"history\"><thead><tr><th>received</th><th>kind</th>\
         <th>serial</th><th>exit</th><th>kept</th><th>repaired</th><th>failed</th>\
         <th>duration</th><th>errors</th></tr></thead><tbody>",
    );
    for s in history {
        let r = &s.report;
        let errors: Vec<String> = r.errors.iter().map(|e| escape(e)).collect();
        let _ = write!(
            b,
            "<tr class=\"report\"><td class=\"age\" data-unix=\"{}\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
            r.received,
            rfc3339(r.received),
            escape(&r.kind),
            r.serial.map_or_else(|| "-".to_string(), |n| n.to_string()),
            r.exit_code,
            r.kept,
            r.repaired + r.would_repair,
            r.failed + r.blocked,
            r.duration_ms,
            errors.join("<br>"),
        );
    }
    b.push_str("</tbody></table>");
    document("tenet: member", &b)
}

/// Failed (red) and repaired (orange) promises of each report, over time: one point
/// per report at its arrival time.
fn chart(history: &[Stored]) -> String {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    const PAD: f64 = 10.0;
    let first = history.iter().map(|s| s.report.received).min().unwrap_or(0);
    let last = history.iter().map(|s| s.report.received).max().unwrap_or(0);
    let top = history
        .iter()
        .map(|s| {
            (s.report.failed + s.report.blocked).max(s.report.repaired + s.report.would_repair)
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let span = (last - first).max(1) as f64;
    let x = |t: u64| PAD + (t - first) as f64 / span * (W - 2.0 * PAD);
    let y = |v: u64| H - PAD - v as f64 / top as f64 * (H - 2.0 * PAD);
    let series = |count: &dyn Fn(&Stored) -> u64| {
        history
            .iter()
            .rev()
            .map(|s| format!("{:.1},{:.1}", x(s.report.received), y(count(s))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let failed = series(&|s| s.report.failed + s.report.blocked);
    let repaired = series(&|s| s.report.repaired + s.report.would_repair);
    let mut dots = String::new();
    for s in history {
        let n = s.report.failed + s.report.blocked;
        let _ = write!(
            dots,
            "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"><title>{}: {} failed, {} repaired</title></circle>",
            x(s.report.received),
            y(n),
            if n > 0 { "#c0392b" } else { "#27ae60" },
            rfc3339(s.report.received),
            n,
            s.report.repaired + s.report.would_repair,
        );
    }
    format!(
        "<svg id=\"chart\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"failed and repaired promises per report\">\
         <line x1=\"{PAD}\" y1=\"{b:.1}\" x2=\"{r:.1}\" y2=\"{b:.1}\" stroke=\"#999\"/>\
         <polyline class=\"repaired\" fill=\"none\" stroke=\"#e67e22\" points=\"{repaired}\"/>\
         <polyline class=\"failed\" fill=\"none\" stroke=\"#c0392b\" points=\"{failed}\"/>{dots}\
         <text x=\"{PAD}\" y=\"12\" font-size=\"10\">max {top}</text></svg>\
         <p class=\"legend\"><span style=\"color:#c0392b\">failed</span> and \
         <span style=\"color:#e67e22\">repaired</span> promises per report, {} to {}</p>",
        rfc3339(first),
        rfc3339(last),
        b = H - PAD,
        r = W - PAD,
    )
}

fn outcome(o: &Outcome) -> String {
    let reason = o
        .reason
        .as_deref()
        .map(|r| format!(": <span class=\"reason\">{}</span>", escape(r)))
        .unwrap_or_default();
    format!(
        "<code class=\"promise\">{}</code> ({}) <span class=\"status\">{}</span>{reason}",
        escape(&o.promise),
        escape(&o.kind),
        escape(&o.status),
    )
}

/// The script: ages, the failing-only filter, a reload every 30 s.
const SCRIPT: &str = r#"(function () {
  function age(s) {
    s = Math.max(0, Math.round(s));
    if (s < 120) return s + "s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  var now = Date.now() / 1000;
  document.querySelectorAll("[data-unix]").forEach(function (e) {
    e.title = e.textContent;
    e.textContent = age(now - Number(e.getAttribute("data-unix")));
  });
  var box = document.getElementById("failing-only");
  if (box) {
    box.addEventListener("change", function () {
      document.querySelectorAll("tr.member.ok").forEach(function (r) { r.hidden = box.checked; });
    });
  }
  setTimeout(function () { location.reload(); }, 30000);
  document.body.setAttribute("data-script", "done");
})();"#;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}\
td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}\
tr.failing td{background:#fdecea}.reason{color:#c0392b}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1>{body}<script>{SCRIPT}</script></body></html>"
    )
}

/// `text` safe in HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, page: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(page)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'",
        ),
    );
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_views_and_nothing_else() {
        assert_eq!(view("/"), Some(View::Overview));
        assert_eq!(view("/member/db-1"), Some(View::Member("db-1".into())));
        for bad in [
            "/member/",
            "/member/a/b",
            "/member/<x>",
            "/x",
            "/member/%2e%2e",
        ] {
            assert_eq!(view(bad), None, "{bad}");
        }
    }

    #[test]
    fn report_text_is_escaped() {
        assert_eq!(
            escape("<script>\"a\" & 'b'\u{1b}"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;\\u{1b}"
        );
    }
}
