//! `POST /v1/blobs` over real TLS on loopback: the named blobs concatenated in request
//! order; refusals (unknown hash, malformed line, too many hashes, a hash named twice,
//! wrong method, unenrolled key) before any blob is read; a blob store that no longer
//! matches the manifest is a 500, or a cut answer, never wrong bytes.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt as _, Full};
use hyper::StatusCode;
use hyper::body::{Body as _, Bytes};
use tenet_keys::bundle;
use tenet_keys::tls::Refusal;

use crate::serving::tamper;
use crate::util::{Answer, Client, Daemon, Fixture, example, metric, refusal};

/// The blobs of a bundle: (hex, bytes), sorted by hash.
fn blobs_of(bundle_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut blobs: Vec<(String, Vec<u8>)> = std::fs::read_dir(bundle_dir.join(bundle::BLOB_DIR))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_str().unwrap().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    blobs.sort();
    blobs
}

fn promoted(fx: &Fixture, tree: &Path) -> (Daemon, PathBuf) {
    let daemon = Daemon::start(&fx.config(""));
    let bundle = fx.sign_tree(tree, 1);
    assert_eq!(daemon.promote(&bundle).serial, Some(1));
    (daemon, bundle)
}

async fn post(client: &Client, daemon: &Daemon, body: impl Into<Bytes>) -> Answer {
    client
        .send(
            daemon.serving(),
            hyper::Request::post("/v1/blobs"),
            Full::new(body.into()),
        )
        .await
        .unwrap()
}

async fn blob_reads(daemon: &Daemon) -> u64 {
    metric(&daemon.metrics().await, "tenet_policyd_blob_reads_total")
}

#[tokio::test]
async fn a_batch_answers_the_blobs_concatenated_in_request_order() {
    let fx = Fixture::new();
    let (daemon, bundle) = promoted(&fx, &example());
    let blobs = blobs_of(&bundle);
    assert!(blobs.len() >= 3, "{}", blobs.len());
    // Reverse order.
    let order: Vec<&(String, Vec<u8>)> = blobs.iter().rev().collect();
    let request: String = order.iter().map(|(hex, _)| format!("{hex}\n")).collect();
    let expected: Vec<u8> = order.iter().flat_map(|(_, b)| b.clone()).collect();
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());

    // With and without the last newline.
    for body in [request.clone(), request.trim_end().to_string()] {
        let (status, got) = post(&beta, &daemon, body).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&got));
        assert_eq!(got, expected);
    }
    // HTTP/1.1: the declared length is the sum of the sizes.
    let (status, body) = beta
        .http1()
        .open(
            daemon.serving(),
            hyper::Request::post("/v1/blobs"),
            Full::new(Bytes::from(request.clone())),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.size_hint().exact(), Some(expected.len() as u64));
    assert_eq!(body.collect().await.unwrap().to_bytes(), expected);

    let text = daemon.metrics().await;
    assert_eq!(
        metric(
            &text,
            "tenet_policyd_requests_total{socket=\"serve\",route=\"blobs\",status=\"200\"}"
        ),
        3,
        "{text}"
    );
    assert_eq!(
        metric(&text, "tenet_policyd_blob_reads_total"),
        3 * order.len() as u64,
        "{text}"
    );
}

#[tokio::test]
async fn a_refused_batch_reads_no_blob() {
    let fx = Fixture::new();
    let (daemon, bundle) = promoted(&fx, &example());
    let blobs = blobs_of(&bundle);
    let known = &blobs[0].0;
    let unknown = "ab".repeat(32);
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    let before = blob_reads(&daemon).await;

    // A hash no file of the manifest has: 404 naming it, after a known one.
    let (status, body) = post(&beta, &daemon, format!("{known}\n{unknown}\n{known}\n")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let message = String::from_utf8_lossy(&body);
    assert!(message.contains(&unknown), "{message}");
    assert!(message.contains("line 2"), "{message}");

    // Malformed lines: 400 naming the line.
    for (body, line) in [
        (format!("{known}\n{}\n", known.to_uppercase()), "line 2"),
        (format!("{known}\n\n{known}\n"), "line 2"),
        (format!("{known}\r\n"), "line 1"),
        ("../../etc/passwd\n".to_string(), "line 1"),
        (format!("{known}\n{known}\n{}\n", &known[..63]), "line 3"),
    ] {
        let (status, answer) = post(&beta, &daemon, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        let message = String::from_utf8_lossy(&answer);
        assert!(message.contains(line), "{body:?}: {message}");
    }
    let (status, _) = post(&beta, &daemon, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // 4096 hashes are looked up (here: none is in the manifest); 4097 are too many.
    let most: String = (0..4096u32)
        .map(|i| format!("{}\n", tenet_keys::Sha256Sum::of(&i.to_le_bytes())))
        .collect();
    let (status, body) = post(&beta, &daemon, most.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("line 1:"));
    // The answer comes as soon as the declared length is seen, and the connection
    // closes under the rest of the body, so the client may fail writing it instead of
    // reading the 413.
    let over = format!("{most}{known}\n");
    if let Ok((status, body)) = beta
        .send(
            daemon.serving(),
            hyper::Request::post("/v1/blobs"),
            Full::new(Bytes::from(over)),
        )
        .await
    {
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            String::from_utf8_lossy(&body).contains("at most 4096"),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }

    // POST only.
    let (status, _) = beta.get(daemon.serving(), "/v1/blobs").await.unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // No blob was read.
    assert_eq!(blob_reads(&daemon).await, before);
}

/// The amplification of one small request into a large answer: a hash named many
/// times. Refused (400) before any blob is read.
#[tokio::test]
async fn finding_04_a_hash_named_twice_is_refused_before_reading() {
    let fx = Fixture::new();
    let (daemon, bundle) = promoted(&fx, &example());
    let blobs = blobs_of(&bundle);
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    let before = blob_reads(&daemon).await;
    let (a, b) = (&blobs[0].0, &blobs[1].0);
    let (status, body) = post(&beta, &daemon, format!("{a}\n{b}\n{a}\n")).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let message = String::from_utf8_lossy(&body);
    assert!(
        message.contains("line 3") && message.contains("twice"),
        "{message}"
    );
    let (status, _) = post(&beta, &daemon, format!("{a}\n").repeat(767)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(blob_reads(&daemon).await, before);
    // Each once is served.
    let (status, body) = post(&beta, &daemon, format!("{a}\n{b}\n")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, [blobs[0].1.clone(), blobs[1].1.clone()].concat());
}

#[tokio::test]
async fn an_unenrolled_key_is_refused_as_for_every_route() {
    let fx = Fixture::new();
    let (daemon, bundle) = promoted(&fx, &example());
    let known = blobs_of(&bundle)[0].0.clone();
    for key in [
        fx.node_key("gamma"),
        tenet_keys::SecretKey::generate().unwrap(),
    ] {
        let client = Client::new(&key, fx.server_pins());
        let err = client
            .send(
                daemon.serving(),
                hyper::Request::post("/v1/blobs"),
                Full::new(Bytes::from(format!("{known}\n"))),
            )
            .await
            .expect_err("an unenrolled key must not be served");
        assert_eq!(refusal(&err), Some(Refusal::ClientNotAdmitted), "{err}");
    }
    // The listener has no such route, even for a proved key.
    let listener = daemon.status().unwrap().listener;
    let beta = Client::new(&fx.node_key("beta"), vec![fx.node_key("alpha").key_id()]);
    let (status, _) = beta
        .send(
            listener,
            hyper::Request::post("/v1/blobs"),
            Full::new(Bytes::from(format!("{known}\n"))),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(blob_reads(&daemon).await, 0);
}

#[tokio::test]
async fn a_blob_store_that_no_longer_matches_is_a_500_not_wrong_bytes() {
    let fx = Fixture::new();
    let (daemon, bundle) = promoted(&fx, &example());
    let blobs = blobs_of(&bundle);
    let (good, bad) = (&blobs[0], &blobs[1]);
    tamper(
        &bundle.join(bundle::BLOB_DIR).join(&bad.0),
        b"changed after verification\n",
    );
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    let (status, body) = post(&beta, &daemon, format!("{}\n{}\n", good.0, bad.0)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !body.windows(good.1.len()).any(|w| w == good.1.as_slice()),
        "a good blob was sent beside a bad one"
    );
    // The good blob alone is still served.
    let (status, body) = post(&beta, &daemon, format!("{}\n", good.0)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, good.1);
}

/// Blob answers are streamed, so a blob changed in place (same size) after the answer's
/// first checks cannot turn into a 500 any more: its bytes are hashed as they go and
/// the answer is cut before the blob's last chunk, so the member never gets it whole.
#[tokio::test]
async fn a_blob_changed_in_place_is_cut_short_never_served_whole() {
    let fx = Fixture::new();
    let (daemon, bundle) = promoted(&fx, &example());
    let blobs = blobs_of(&bundle);
    let (good, bad) = (&blobs[0], &blobs[1]);
    let mut same_size = bad.1.clone();
    same_size[0] ^= 0x20;
    tamper(&bundle.join(bundle::BLOB_DIR).join(&bad.0), &same_size);
    let beta = Client::new(&fx.node_key("beta"), fx.server_pins());
    for request in [
        hyper::Request::post("/v1/blobs"),
        hyper::Request::get(format!("/v1/blob/sha256/{}", bad.0)),
    ] {
        let body = if request.method_ref() == Some(&hyper::Method::POST) {
            format!("{}\n{}\n", good.0, bad.0)
        } else {
            String::new()
        };
        let got = beta
            .send(daemon.serving(), request, Full::new(Bytes::from(body)))
            .await;
        assert!(got.is_err(), "a changed blob was served whole: {got:?}");
    }
    assert!(
        daemon.log().contains("the answer is cut"),
        "{}",
        daemon.log()
    );
    // The good blob alone is still served.
    let (status, body) = post(&beta, &daemon, format!("{}\n", good.0)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, good.1);
}
