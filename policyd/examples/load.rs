//! Load generator for the policy server's serving port (`bench/policyd_load.sh`).
//!
//! `load poll KEY ROOT ADDR SECONDS CONCURRENCY`: for SECONDS, CONCURRENCY tasks
//! each open a new mutual-TLS connection (TLS 1.3, the member key KEY, the server
//! pinned from the trusted root file ROOT), GET `/v1/timestamp` over HTTP/1.1,
//! read the body and close; prints completed polls per second and errors.
//!
//! `load seq KEY ROOT ADDR COUNT`: COUNT requests (`GET /v1/timestamp`) one after
//! another on one HTTP/1.1 keep-alive connection, as an agent fetches a bundle; prints
//! requests per second.
//!
//! `load idle KEY ROOT ADDR COUNT`: opens COUNT mutual-TLS connections, each with one
//! completed request so the server holds it as an idle keep-alive connection, prints
//! `idle COUNT ready` and holds them until stdin closes.
#![expect(clippy::print_stdout, reason = "a benchmark tool prints its figures")]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tenet_keys::SecretKey;
use tenet_keys::root::Root;
use tenet_keys::tls::{self, Identity, Subject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: load poll KEY ROOT ADDR SECONDS CONCURRENCY | load seq KEY ROOT ADDR COUNT | load idle KEY ROOT ADDR COUNT";
    let (mode, key, root, addr) = match args.as_slice() {
        [mode, key, root, addr, ..] => (mode.as_str(), key, root, addr),
        _ => return Err(usage.into()),
    };
    let connector = connector(Path::new(key), Path::new(root))?;
    let addr: SocketAddr = addr.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let number = |i: usize| -> Result<u64, Error> { Ok(args.get(i).ok_or(usage)?.parse()?) };
    match mode {
        "poll" => rt.block_on(poll(
            connector,
            addr,
            Duration::from_secs(number(4)?),
            number(5)?,
        )),
        "seq" => rt.block_on(seq(connector, addr, number(4)?)),
        "idle" => rt.block_on(idle(connector, addr, number(4)?)),
        _ => Err(usage.into()),
    }
}

fn connector(key: &Path, root: &Path) -> Result<TlsConnector, Error> {
    let key = SecretKey::read(key)?;
    let root = Root::parse(&std::fs::read(root)?)?;
    let identity = Identity::new(&key, Subject::Member("load".into()))?;
    let mut config = tls::client_config(&identity, root.transport.server_spki.clone())?;
    // One request per connection: HTTP/1.1, as a polling agent would.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// One request on a new connection; returns the sender to keep the connection open.
async fn request(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, Error> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = connector.connect(tls::server_name(), tcp).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/v1/timestamp")
        .header("host", "tenet-policyd")
        .body(Empty::new())?;
    let resp = send.send_request(req).await?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()).into());
    }
    resp.into_body().collect().await?;
    Ok(send)
}

async fn poll(
    connector: TlsConnector,
    addr: SocketAddr,
    secs: Duration,
    tasks: u64,
) -> Result<(), Error> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (connector, done, failed) = (connector.clone(), done.clone(), failed.clone());
        handles.push(tokio::spawn(async move {
            while start.elapsed() < secs {
                match request(&connector, addr).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            println!("first failure: {e} ({e:?})");
                        }
                        0
                    }
                };
            }
        }));
    }
    for h in handles {
        h.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (d, f) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "polls {d} failed {f} seconds {elapsed:.2} per_second {:.0}",
        d as f64 / elapsed
    );
    if f > 0 {
        Err(format!("{f} polls failed").into())
    } else {
        Ok(())
    }
}

async fn seq(connector: TlsConnector, addr: SocketAddr, count: u64) -> Result<(), Error> {
    let mut send = request(&connector, addr).await?;
    let start = Instant::now();
    for _ in 0..count {
        send.ready().await?;
        let req = hyper::Request::get("/v1/timestamp")
            .header("host", "tenet-policyd")
            .body(Empty::new())?;
        let resp = send.send_request(req).await?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()).into());
        }
        resp.into_body().collect().await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "requests {count} seconds {elapsed:.2} per_second {:.0}",
        count as f64 / elapsed
    );
    Ok(())
}

async fn idle(connector: TlsConnector, addr: SocketAddr, count: u64) -> Result<(), Error> {
    let mut held = Vec::new();
    for i in 0..count {
        match request(&connector, addr).await {
            Ok(send) => held.push(send),
            Err(e) => return Err(format!("connection {i}: {e}").into()),
        }
    }
    println!("idle {count} ready");
    // Hold until the driver closes stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut buf = [0u8; 1];
        std::io::Read::read(&mut std::io::stdin(), &mut buf)
    })
    .await;
    drop(held);
    Ok(())
}
