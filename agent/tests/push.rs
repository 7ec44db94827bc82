//! Hostile text from peers never reaches the terminal raw: `tenet-agent push` against
//! stand-in member listeners, and `tenet-agent run` against a stand-in master, over
//! real mutual TLS on loopback, each holding the real key (a member's node key, pinned
//! in the inventory; the pinned server key).
#![expect(
    clippy::unwrap_used,
    reason = "fixtures fail the test on any setup error"
)]

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tenet_keys::tls::{ClientPolicy, Identity, Subject};
use tenet_keys::{KeyId, SecretKey};

use crate::run::World;
use crate::util::agent;

/// Admits every client key: the stand-in listener checks nothing.
#[derive(Debug)]
struct AdmitAll;

impl ClientPolicy for AdmitAll {
    fn admits(&self, _: &KeyId) -> bool {
        true
    }
}

/// A stand-in member listener: real TLS with `key`, answering every request with
/// `status` and `body`, on its own runtime thread; it stops when dropped.
struct FakeListener {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl FakeListener {
    fn start(key: &SecretKey, status: StatusCode, body: String) -> FakeListener {
        let id = Identity::new(key, Subject::Member("stand-in".into())).unwrap();
        let mut config = tenet_keys::tls::server_config(&id, Arc::new(AdmitAll)).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Bytes::from(body);
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |_req| {
                        let mut resp = Response::new(Full::new(body.clone()));
                        *resp.status_mut() = status;
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeListener {
            addr,
            _runtime: runtime,
        }
    }
}

/// Escape sequences that retitle the terminal, erase and move up a line, recolour,
/// and the 8-bit CSI and a bidi override.
const HOSTILE: &str =
    "\u{1b}]2;owned\u{7} \u{1b}[2K\u{1b}[1A\u{1b}[32mbeta ok\u{1b}[0m \u{9b}31m \u{202e}x";

/// A member (or whoever holds its node key) answers `push` with escape sequences in
/// every field that is printed: a refusal's reason and message, a busy message, a
/// failed promise's id and reason, and the agent's stderr tail. None reaches the
/// terminal raw; each is shown escaped.
#[test]
fn finding_08_escape_sequences_from_members_are_shown_escaped() {
    let world = World::new();
    let config = world.cached_member("alpha");
    let node =
        |name: &str| SecretKey::read(&world.path(&format!("nodes/{name}/localhost.key"))).unwrap();
    let line = |v: serde_json::Value| format!("{v}\n");
    // beta refuses, with a hostile reason code and message.
    let beta = FakeListener::start(
        &node("beta"),
        StatusCode::FORBIDDEN,
        line(serde_json::json!({"type": "refused", "reason": HOSTILE, "message": HOSTILE})),
    );
    // gamma "runs": busy, then a failed promise, then an end with a hostile stderr.
    let gamma = FakeListener::start(
        &node("gamma"),
        StatusCode::OK,
        [
            serde_json::json!({"type": "accepted", "pid": 7}),
            serde_json::json!({"type": "busy", "attached": true, "message": HOSTILE}),
            serde_json::json!({"type": "promise", "status": "failed", "id": HOSTILE, "reason": HOSTILE}),
            serde_json::json!({"type": "end", "exit_code": 4, "stderr": format!("error: {HOSTILE}")}),
        ]
        .into_iter()
        .map(line)
        .collect(),
    );
    // Any key will do as the administrator's: the stand-ins check nothing.
    let admin = world.path("admin.key");
    SecretKey::from_seed(&[7; 32]).write(&admin).unwrap();
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[push]\nkey = \"{}\"\naddresses = {{ beta = \"{}\", gamma = \"{}\" }}\n",
        admin.display(),
        beta.addr,
        gamma.addr
    ));
    fs::File::create(&config)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();

    let out = agent()
        .args(["push", "beta", "gamma", "--timeout", "20s", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(9), "{shown}");
    for bytes in [&out.stdout, &out.stderr] {
        for bad in [
            &b"\x1b"[..],
            b"\x07",
            "\u{9b}".as_bytes(),
            "\u{202e}".as_bytes(),
        ] {
            assert!(
                !bytes.windows(bad.len()).any(|w| w == bad),
                "{bad:?} reached the terminal:\n{}",
                String::from_utf8_lossy(bytes).escape_debug()
            );
        }
    }
    // Shown, escaped: beta's refusal (its line and the table), gamma's busy message,
    // failed promise and stderr tail.
    let escaped = r"\x1b]2;owned\x07 \x1b[2K\x1b[1A\x1b[32mbeta ok\x1b[0m \u{9b}31m \u{202e}x";
    assert!(
        shown.matches(escaped).count() >= 6,
        "{}",
        shown.escape_debug()
    );
    assert!(shown.contains(&format!("error: {escaped}")), "{shown}");
}

/// A master (or whoever holds the server key) that answers with TOML holding escape
/// sequences: the parse error quotes the offending line, and `run` shows it escaped
/// (as a warning and in the error line).
#[test]
fn finding_08_a_master_document_that_does_not_parse_is_quoted_escaped() {
    let world = World::new();
    let config = world.cached_member("alpha");
    let server = SecretKey::read(&world.path("deploy/keys/server-tls.key")).unwrap();
    let master = FakeListener::start(&server, StatusCode::OK, format!("{HOSTILE} = [[\n"));
    let text = fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("master = ") {
                format!("master = \"{}\"\n", master.addr)
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::File::create(&config)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = agent()
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for bytes in [&out.stdout, &out.stderr] {
        assert!(
            !bytes.contains(&0x1b),
            "ESC reached the terminal:\n{}",
            String::from_utf8_lossy(bytes).escape_debug()
        );
    }
    // The offending line is still shown, escaped, where the parse error quotes it.
    assert!(
        shown.contains("TOML parse error") && shown.contains(r"1 | \x1b]2;owned\x07 \x1b[2K"),
        "{shown}"
    );
}
