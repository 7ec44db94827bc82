//! A blocking mutual-TLS client of policyd's serving socket for tests and the report
//! benchmark: a member's node key, the server pinned from the root file, HTTP/1.1
//! written by hand on one keep-alive connection. It sends what it is told (bad
//! reports too), so tests can see each refusal's status.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tenet_keys::SecretKey;
use tenet_keys::root::Root;
use tenet_keys::tls::{self, Identity, Subject};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The TLS configuration of a member with the key at `key`, pinning the policy server
/// keys of the root file `root`.
///
/// # Errors
/// If the key or root cannot be read.
pub fn tls_config(key: &Path, root: &Path) -> Result<Arc<rustls::ClientConfig>, Error> {
    let key = SecretKey::read(key)?;
    let root = Root::parse(&std::fs::read(root)?)?;
    let identity = Identity::new(&key, Subject::Member("report-client".into()))?;
    let mut config = tls::client_config(&identity, root.transport.server_spki.clone())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One connection to a policyd's serving socket.
#[derive(Debug)]
pub struct ReportClient {
    stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

/// An answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl ReportClient {
    /// Connects to `addr` and completes the handshake.
    ///
    /// # Errors
    /// If the connection or the handshake fails (a key not admitted, a server not pinned).
    pub fn connect(config: Arc<rustls::ClientConfig>, addr: &str) -> Result<ReportClient, Error> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        tcp.set_nodelay(true)?;
        let conn = rustls::ClientConnection::new(config, tls::server_name())?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        // Finish the handshake now, so a refused key fails here.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        // TLS 1.3: the server's verdict on the client certificate arrives after the
        // client's Finished; a zero-length request brings it in.
        stream.flush()?;
        Ok(ReportClient {
            stream: BufReader::new(stream),
        })
    }

    /// `POST path` with `body`; the answer. A body over 16 KiB is sent with
    /// `Expect: 100-continue`, so a server that refuses it by its length answers
    /// before any of it is sent.
    ///
    /// # Errors
    /// If the connection breaks or the answer is not HTTP/1.1.
    pub fn post(&mut self, path: &str, body: &[u8]) -> Result<Answer, Error> {
        let expect = body.len() > 16 * 1024;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
            tls::SERVER_NAME,
            body.len(),
            if expect {
                "expect: 100-continue\r\n"
            } else {
                ""
            }
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes())?;
        if expect {
            s.flush()?;
            let (status, length) = self.head()?;
            if status != 100 {
                return self.body(status, length);
            }
        }
        let s = self.stream.get_mut();
        s.write_all(body)?;
        s.flush()?;
        let (status, length) = self.head()?;
        self.body(status, length)
    }

    /// A status line and headers: the status and `content-length`.
    fn head(&mut self) -> Result<(u16, usize), Error> {
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err("the connection closed before an answer".into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .ok_or("no status line")?
            .parse()?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line)? == 0 {
                return Err("the connection closed in the answer's head".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        Ok((status, length))
    }

    fn body(&mut self, status: u16, length: usize) -> Result<Answer, Error> {
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body)?;
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// A well-formed report body of `member` whose `started` is `started` (unique per
/// report in a test, to find it again), `failed` promises failing with `reason`.
pub fn report_body(member: &str, started: u64, serial: u64, failed: u64, reason: &str) -> String {
    let mut promises = vec![serde_json::json!({
        "id": "kept-one", "promise": "file", "status": "kept", "reason": null
    })];
    for i in 0..failed {
        promises.push(serde_json::json!({
            "id": format!("failing-{i}"), "promise": "command", "status": "failed", "reason": reason
        }));
    }
    serde_json::json!({
        "schema": "tenet.agent.report/1",
        "member": member,
        "kind": "run",
        "started": started,
        "ended": started + 1,
        "serial": serial,
        "exit_code": i32::from(failed > 0),
        "duration_ms": 12,
        "kept": 1,
        "repaired": 0,
        "would_repair": 0,
        "failed": failed,
        "blocked": 0,
        "skipped": 0,
        "dry_run": false,
        "errors": [],
        "promises": promises,
    })
    .to_string()
}
