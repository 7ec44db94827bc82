//! The promoted daemon over real TLS on loopback: what an enrolled member fetches and
//! verifies, who is refused at the handshake, the route table's refusals, and the
//! limits.

use std::path::Path;

use http_body_util::Full;
use hyper::StatusCode;
use hyper::body::Bytes;
use tenet_keys::tls::Refusal;
use tenet_keys::{
    Clock, Manifest, TimestampOutcome, TrustState, check_blob, check_manifest, check_timestamp,
};

use crate::util::{Client, Daemon, Fixture, metric, now, refusal};

/// Fetches and verifies everything a member needs, as an agent would: timestamp, then
/// the manifest it names, then every blob.
async fn fetch_and_verify(fx: &Fixture, client: &Client, daemon: &Daemon) -> Manifest {
    let addr = daemon.serving();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let (status, body) = client.get(addr, path).await.unwrap();
            assert_eq!(
                status,
                StatusCode::OK,
                "{path}: {}",
                String::from_utf8_lossy(&body)
            );
            body
        }
    };
    let state = TrustState::new(fx.trusted_root());
    let clock = Clock::new(now());
    let ts = get("/v1/timestamp").await;
    let ts_sig = get("/v1/timestamp/sig").await;
    let expected = match check_timestamp(&state, &ts, &ts_sig, &clock).unwrap() {
        TimestampOutcome::Newer(e) => e,
        other => panic!("{other:?}"),
    };
    let manifest = get("/v1/manifest").await;
    let manifest_sig = get("/v1/manifest/sig").await;
    let (state, m) =
        check_manifest(&state, &manifest, &manifest_sig, Some(&expected), &clock).unwrap();
    assert_eq!(state.serial(), m.serial);
    for entry in &m.files {
        let (status, body) = client
            .get(addr, &format!("/v1/blob/sha256/{}", entry.sha256))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{}", entry.path);
        check_blob(entry, &body).unwrap();
    }
    // The root history is served byte for byte.
    assert_eq!(
        get("/v1/root/1").await,
        std::fs::read(fx.root_path()).unwrap()
    );
    get("/v1/root/1/sig").await;
    m
}

fn promoted(fx: &Fixture, limits: &str) -> (Daemon, std::path::PathBuf) {
    let daemon = Daemon::start(&fx.config(limits));
    let bundle = fx.sign(1);
    let status = daemon.promote(&bundle);
    assert_eq!(status.serial, Some(1));
    (daemon, bundle)
}

#[tokio::test]
async fn an_enrolled_member_fetches_the_bundle_and_it_verifies() {
    let fx = Fixture::new();
    let (daemon, _) = promoted(&fx, "");
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    let m = fetch_and_verify(&fx, &beta, &daemon).await;
    assert_eq!(m.serial, 1);
    assert_eq!(
        m.members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["alpha", "beta"]
    );
    // A client offering HTTP/1.1 only is served the same bytes.
    let (status, body) = beta
        .http1()
        .get(daemon.serving(), "/v1/manifest")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("serial = 1"));

    // The listener says what this member serves.
    let listener = daemon.status().unwrap().listener;
    let alpha_as_client = Client::new(&fx.node_key("beta"), vec![fx.node_key("alpha").key_id()]);
    let (status, body) = alpha_as_client.get(listener, "/v1/health").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Bytes::from("state = \"serving\"\nserial = 1\n"));

    let text = daemon.metrics().await;
    assert!(
        metric(
            &text,
            "tenet_policyd_requests_total{socket=\"serve\",route=\"blob\",status=\"200\"}"
        ) >= 1,
        "{text}"
    );
    assert_eq!(metric(&text, "tenet_policyd_serving_serial"), 1);
    assert_eq!(metric(&text, "tenet_policyd_promoted"), 1);
    assert!(metric(&text, "tenet_policyd_timestamp_version") > 0);
}

#[tokio::test]
async fn an_unenrolled_member_is_refused_at_the_handshake() {
    let fx = Fixture::new();
    let (daemon, _) = promoted(&fx, "");
    // gamma has a node key but is not enrolled; a stranger has never been seen.
    for key in [
        fx.node_key("gamma"),
        tenet_keys::SecretKey::generate().unwrap(),
    ] {
        let client = Client::new(&key, fx.server_pins());
        let err = client
            .get(daemon.serving(), "/v1/manifest")
            .await
            .expect_err("an unenrolled key must not be served");
        assert_eq!(refusal(&err), Some(Refusal::ClientNotAdmitted), "{err}");
    }
    let text = daemon.metrics().await;
    assert_eq!(
        metric(
            &text,
            "tenet_policyd_handshakes_refused_total{socket=\"serve\",reason=\"not_admitted\"}"
        ),
        2,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "tenet_policyd_requests_total{socket=\"serve\",route=\"manifest\",status=\"200\"}"
        ),
        0
    );
    // The listener refuses gamma too: neither an admin key nor an enrolled member.
    let listener = daemon.status().unwrap().listener;
    let gamma = Client::new(&fx.node_key("gamma"), vec![fx.node_key("alpha").key_id()]);
    let err = gamma
        .get(listener, "/v1/health")
        .await
        .expect_err("an unenrolled key must not reach the listener");
    assert_eq!(refusal(&err), Some(Refusal::ClientNotAdmitted), "{err}");
    // An enrolled member gets no bundle route there.
    let beta = Client::new(&fx.node_key("beta"), vec![fx.node_key("alpha").key_id()]);
    let (status, _) = beta.get(listener, "/v1/manifest").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_impostor_server_is_refused_by_the_member() {
    let fx = Fixture::new();
    let (daemon, bundle) = promoted(&fx, "");
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    // The listener presents alpha's node key, which the root does not pin: a member
    // pointed at it refuses it, exactly as it would an impostor on the relocatable IP.
    let listener = daemon.status().unwrap().listener;
    let err = beta
        .get(listener, "/v1/health")
        .await
        .expect_err("not pinned");
    assert_eq!(refusal(&err), Some(Refusal::ServerNotPinned), "{err}");

    // A server key the root does not pin is refused at promotion.
    let impostor = fx.path("impostor.key");
    tenet_keys::SecretKey::generate()
        .unwrap()
        .write(&impostor)
        .unwrap();
    let out = daemon.command(&[
        "promote",
        "--bundle",
        bundle.to_str().unwrap(),
        "--server-key",
        impostor.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not pinned in root version 1"),
        "{stderr}"
    );
    assert!(stderr.contains("still serving serial 1"), "{stderr}");
    // The pinned key keeps serving.
    let (status, _) = beta.get(daemon.serving(), "/v1/timestamp").await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn path_tricks_are_404_without_touching_the_filesystem() {
    let fx = Fixture::new();
    let (daemon, _) = promoted(&fx, "");
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins()).http1();
    let addr = daemon.serving();
    let before = metric(&daemon.metrics().await, "tenet_policyd_blob_reads_total");
    let hex = "ab".repeat(32);
    for path in [
        "/v1/blob/sha256/../../etc/passwd".to_string(),
        "/v1/blob/sha256/..%2f..%2fetc%2fpasswd".to_string(),
        "/v1/blob/sha256/not-hex".to_string(),
        format!("/v1/blob/sha256/{}", &hex[..62]),
        format!("/v1/blob/sha256/{hex}00"),
        format!("/v1/blob/sha256/{}", hex.to_uppercase()),
        // Well formed, but no file of the manifest has this hash.
        format!("/v1/blob/sha256/{hex}"),
        "/v1/root/0".to_string(),
        "/v1/root/2".to_string(),
        "/etc/passwd".to_string(),
        "/v1/manifest/../timestamp".to_string(),
    ] {
        let (status, _) = beta.get(addr, &path).await.unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let after = metric(&daemon.metrics().await, "tenet_policyd_blob_reads_total");
    assert_eq!(before, after, "a refused path reached the blob store");

    // GET only, and no request bodies.
    let (status, _) = beta
        .send(
            addr,
            hyper::Request::post("/v1/manifest"),
            Full::new(Bytes::new()),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = beta
        .send(
            addr,
            hyper::Request::get("/v1/manifest"),
            Full::new(Bytes::from_static(b"a body")),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let fx = Fixture::new();
    let (daemon, _) = promoted(&fx, "");
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    let big = "x".repeat(16 * 1024);
    let (status, _) = beta
        .http1()
        .send(
            daemon.serving(),
            hyper::Request::get("/v1/manifest").header("x-filler", big.as_str()),
            Full::new(Bytes::new()),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // A normal request on a new connection still works.
    let (status, _) = beta.get(daemon.serving(), "/v1/manifest").await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt as _;
    let fx = Fixture::new();
    let (daemon, _) = promoted(&fx, "handshake_timeout = \"300ms\"\n");
    let mut tcp = tokio::net::TcpStream::connect(daemon.serving())
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    // The server closes the connection: the read ends (EOF or reset) well before the
    // test deadline.
    let read = tokio::time::timeout(crate::util::DEADLINE, tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the server kept a silent connection: {read:?}"
    );
    let text = daemon.metrics().await;
    assert_eq!(
        metric(
            &text,
            "tenet_policyd_handshakes_refused_total{socket=\"serve\",reason=\"timeout\"}"
        ),
        1,
        "{text}"
    );
}

/// A request head as an agent sends it.
fn get_head(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: tenet-policyd\r\n\r\n")
}

/// Reads one HTTP/1.1 response (every route answers with a `content-length`) from
/// `tls`, keeping the bytes that follow it in `buf`.
async fn read_response(
    tls: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> (u16, Vec<u8>) {
    use tokio::io::AsyncReadExt as _;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            let status = head[9..12].parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .expect("a content-length");
            let start = end + 4;
            if buf.len() >= start + len {
                let body = buf[start..start + len].to_vec();
                buf.drain(..start + len);
                return (status, body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(crate::util::DEADLINE, tls.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Waits until the server closes `tls` and returns how long that took.
async fn closed_after(tls: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::time::Duration {
    use tokio::io::AsyncReadExt as _;
    let start = std::time::Instant::now();
    let mut chunk = [0u8; 64];
    let read = tokio::time::timeout(crate::util::DEADLINE, tls.read(&mut chunk)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the server kept the connection: {read:?}"
    );
    start.elapsed()
}

/// A promotion between two requests of one connection does not mix bundles: the
/// connection keeps answering from the snapshot its first request saw (the timestamp's
/// signatures, the manifest it names and that manifest's blobs), and the next
/// connection sees the new bundle.
#[tokio::test]
async fn one_connection_answers_from_one_bundle_across_a_promotion() {
    use tokio::io::AsyncWriteExt as _;
    let fx = Fixture::new();
    let (daemon, _) = promoted(&fx, "");
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    let mut tls = beta.connect_http1(daemon.serving()).await;
    let mut buf = Vec::new();
    async fn get(
        tls: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
        buf: &mut Vec<u8>,
        path: &str,
    ) -> Vec<u8> {
        tls.write_all(get_head(path).as_bytes()).await.unwrap();
        let (status, body) = read_response(tls, buf).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        body
    }
    let ts = get(&mut tls, &mut buf, "/v1/timestamp").await;
    assert_eq!(daemon.promote(&fx.sign(2)).serial, Some(2));
    let ts_sig = get(&mut tls, &mut buf, "/v1/timestamp/sig").await;
    let manifest = get(&mut tls, &mut buf, "/v1/manifest").await;
    let manifest_sig = get(&mut tls, &mut buf, "/v1/manifest/sig").await;
    let state = TrustState::new(fx.trusted_root());
    let clock = Clock::new(now());
    let expected = match check_timestamp(&state, &ts, &ts_sig, &clock).unwrap() {
        TimestampOutcome::Newer(e) => e,
        other => panic!("{other:?}"),
    };
    let (_, m) = check_manifest(&state, &manifest, &manifest_sig, Some(&expected), &clock).unwrap();
    assert_eq!(m.serial, 1);
    let (status, _) = beta.get(daemon.serving(), "/v1/timestamp").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (_, fresh) = beta.get(daemon.serving(), "/v1/manifest").await.unwrap();
    let fresh = Manifest::parse(&fresh).unwrap();
    assert_eq!(fresh.serial, 2);
}

#[tokio::test]
async fn keep_alive_serves_after_pauses_split_heads_and_pipelining() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt as _;
    let fx = Fixture::new();
    let (daemon, _) = promoted(&fx, "header_read_timeout = \"1s\"\nidle_timeout = \"3s\"\n");
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    let (_, timestamp) = beta.get(daemon.serving(), "/v1/timestamp").await.unwrap();
    let (_, manifest) = beta.get(daemon.serving(), "/v1/manifest").await.unwrap();
    let mut tls = beta.connect_http1(daemon.serving()).await;
    let mut buf = Vec::new();
    let ok = |got: (u16, Vec<u8>), body: &[u8]| {
        assert_eq!(got.0, 200, "{}", String::from_utf8_lossy(&got.1));
        assert_eq!(got.1, body);
    };

    tls.write_all(get_head("/v1/timestamp").as_bytes())
        .await
        .unwrap();
    ok(read_response(&mut tls, &mut buf).await, &timestamp);
    // Idle for longer than the header timeout, shorter than the idle timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tls.write_all(get_head("/v1/manifest").as_bytes())
        .await
        .unwrap();
    ok(read_response(&mut tls, &mut buf).await, &manifest);
    // A head in two pieces.
    let head = get_head("/v1/timestamp");
    tls.write_all(&head.as_bytes()[..20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tls.write_all(&head.as_bytes()[20..]).await.unwrap();
    ok(read_response(&mut tls, &mut buf).await, &timestamp);
    // Two pipelined requests, then one and the start of another.
    let two = get_head("/v1/manifest") + &get_head("/v1/timestamp");
    tls.write_all(two.as_bytes()).await.unwrap();
    ok(read_response(&mut tls, &mut buf).await, &manifest);
    ok(read_response(&mut tls, &mut buf).await, &timestamp);
    let next = get_head("/v1/manifest");
    let first = get_head("/v1/timestamp") + &next[..10];
    tls.write_all(first.as_bytes()).await.unwrap();
    ok(read_response(&mut tls, &mut buf).await, &timestamp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tls.write_all(&next.as_bytes()[10..]).await.unwrap();
    ok(read_response(&mut tls, &mut buf).await, &manifest);
    // Unknown routes are answered on the same connection too.
    tls.write_all(get_head("/v1/nothing").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut tls, &mut buf).await.0, 404);
    // Left idle, the connection is closed after the idle timeout.
    let idle = closed_after(&mut tls).await;
    assert!(idle >= Duration::from_millis(2500), "closed after {idle:?}");
    assert!(buf.is_empty());

    // A request head that starts but never ends is cut after the header timeout.
    let mut tls = beta.connect_http1(daemon.serving()).await;
    tls.write_all(get_head("/v1/timestamp").as_bytes())
        .await
        .unwrap();
    ok(read_response(&mut tls, &mut buf).await, &timestamp);
    tls.write_all(b"GET /v1/manifest HTTP/1.1\r\n")
        .await
        .unwrap();
    let cut = closed_after(&mut tls).await;
    assert!(cut < Duration::from_millis(2500), "closed after {cut:?}");

    // Demotion closes an idle keep-alive connection at once.
    let mut tls = beta.connect_http1(daemon.serving()).await;
    tls.write_all(get_head("/v1/timestamp").as_bytes())
        .await
        .unwrap();
    ok(read_response(&mut tls, &mut buf).await, &timestamp);
    assert_eq!(daemon.command(&["demote"]).status.code(), Some(0));
    let demoted = closed_after(&mut tls).await;
    assert!(
        demoted < Duration::from_millis(1500),
        "closed after {demoted:?}"
    );
}

/// Writes `bytes` over a file of a bundle (tests tamper with signed bundles).
pub(crate) fn tamper(path: &Path, bytes: &[u8]) {
    #[expect(
        clippy::disallowed_methods,
        reason = "the test corrupts a bundle file directly"
    )]
    std::fs::write(path, bytes).unwrap();
}
