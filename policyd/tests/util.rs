//! Fixtures: the shared deployment (`tenet_tests::fixture`, made with `tenet-keys`
//! library calls: keys, enrolled members, the shipped example tree signed into bundles),
//! the shared `tenet-policyd serve` process killed by PID on drop, one-shot commands, and an HTTP client over the keys TLS client
//! configuration.
//!
//! Waits poll a condition against a deadline and report the last thing seen.
#![expect(
    clippy::disallowed_methods,
    reason = "fixtures start the binary under test and write starting files directly"
)]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tenet_keys::tls::{self, Identity, Subject};
use tenet_keys::{Clock, KeyId, SecretKey, TrustState};
use tenet_policyd::control::{self, Command as ControlCommand, Request as ControlRequest, Status};
use tenet_tests::fixture::{self, BUNDLE_EXPIRY};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The binary under test.
pub(crate) const POLICYD: &str = env!("CARGO_BIN_EXE_tenet-policyd");

pub(crate) use tenet_tests::fixture::{DEADLINE, example, now};

/// A deployment in a temp directory: root 1 of 1, policy, timestamp and server keys;
/// members alpha and beta enrolled, gamma with a node key but not enrolled.
pub(crate) struct Fixture {
    fixture: fixture::Deployment,
    pub(crate) deployment: PathBuf,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let fixture = fixture::Deployment::new(&["alpha", "beta"], &["gamma"]);
        let deployment = fixture.deployment();
        Fixture {
            fixture,
            deployment,
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.fixture.path(rel)
    }

    /// A member's node key (alpha, beta or gamma).
    pub(crate) fn node_key(&self, member: &str) -> SecretKey {
        self.fixture.node_key(member)
    }

    pub(crate) fn node_key_path(&self, member: &str) -> PathBuf {
        self.fixture.node_key_path(member)
    }

    pub(crate) fn root_path(&self) -> PathBuf {
        self.fixture.root_path()
    }

    /// The trusted root, as a member holds it.
    pub(crate) fn trusted_root(&self) -> tenet_keys::TrustedRoot {
        self.fixture.trusted_root()
    }

    /// The server pins of the root (what an agent pins).
    pub(crate) fn server_pins(&self) -> Vec<KeyId> {
        self.trusted_root().root().transport.server_spki.clone()
    }

    /// Signs the example tree into `bundles/<serial>` and returns it.
    pub(crate) fn sign(&self, serial: u64) -> PathBuf {
        self.sign_tree(&example(), serial)
    }

    pub(crate) fn sign_tree(&self, tree: &Path, serial: u64) -> PathBuf {
        self.fixture.sign_tree(tree, serial, BUNDLE_EXPIRY)
    }

    /// A copy of the example tree in `trees/<name>` with `motd` appended to a file, so
    /// that a new serial has new content.
    pub(crate) fn edited_tree(&self, name: &str, extra: &str) -> PathBuf {
        let out = self.path(&format!("trees/{name}"));
        copy_dir(&example(), &out);
        let cluster = out.join("cluster.toml");
        let mut text = fs::read_to_string(&cluster).unwrap();
        text.push_str(&format!("\n# {extra}\n"));
        fs::write(&cluster, text).unwrap();
        out
    }

    /// Makes `agent-state/` (the configuration's `[run] agent_state`) hold what the
    /// member's agent keeps after verifying `bundle`: `trust.toml` and the manifest in
    /// force behind `current`. The listener admits that manifest's members.
    pub(crate) fn agent_cache(&self, bundle: &Path) {
        self.agent_cache_for(&self.root_path(), bundle);
    }

    /// [`Fixture::agent_cache`] for an agent that trusts the root at `root` (its `.sig`
    /// beside it).
    pub(crate) fn agent_cache_for(&self, root: &Path, bundle: &Path) {
        let bytes = fs::read(root).unwrap();
        let sig = fs::read(format!("{}.sig", root.display())).unwrap();
        let root = tenet_keys::TrustedRoot::bootstrap(&bytes, &sig, None).unwrap();
        let state = TrustState::new(root);
        let manifest = fs::read(bundle.join("manifest.toml")).unwrap();
        let sig = fs::read(bundle.join("manifest.toml.sig")).unwrap();
        let (state, m) =
            tenet_keys::check_manifest(&state, &manifest, &sig, None, &Clock::new(now())).unwrap();
        let dir = self.path("agent-state");
        let stored = dir.join(format!("bundles/{}", m.serial));
        fs::create_dir_all(&stored).unwrap();
        fs::write(stored.join("manifest.toml"), &manifest).unwrap();
        let _ = fs::remove_file(dir.join("current"));
        std::os::unix::fs::symlink(format!("bundles/{}", m.serial), dir.join("current")).unwrap();
        fs::write(dir.join("trust.toml"), state.to_toml().unwrap()).unwrap();
    }

    /// Writes the daemon's configuration (every socket on 127.0.0.1, port 0) with
    /// `extra` appended to its `[limits]` table, and returns its path.
    pub(crate) fn config(&self, extra_limits: &str) -> PathBuf {
        self.fixture
            .policyd_config("alpha")
            .run("agent_state", "agent-state")
            .run("start", "direct")
            .limits("max_header_bytes = 8192\ndrain_timeout = \"2s\"\n")
            .limits(extra_limits)
            .write(&self.path("policyd.toml"))
    }
}

/// Copies a directory tree of regular files.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Points the symlink `link` at `target`, replacing it atomically.
pub(crate) fn flip(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    fs::rename(&tmp, link).unwrap();
}

/// A running `tenet-policyd serve` (the shared fixture, killed by PID when dropped),
/// asked for its status over the control socket.
pub(crate) struct Daemon {
    policyd: fixture::Policyd,
    pub(crate) config: PathBuf,
}

impl Daemon {
    /// Starts the daemon and waits until its control socket answers.
    pub(crate) fn start(config: &Path) -> Daemon {
        let policyd =
            fixture::Policyd::spawn(Path::new(POLICYD), config, "tenet_policyd=debug,info");
        let mut d = Daemon {
            policyd,
            config: config.to_path_buf(),
        };
        d.wait_for("the control socket to answer", |d| d.status().ok());
        d
    }

    pub(crate) fn pid(&self) -> u32 {
        self.policyd.pid()
    }

    /// The daemon's log so far.
    pub(crate) fn log(&self) -> String {
        self.policyd.log()
    }

    /// The status over the control socket.
    pub(crate) fn status(&self) -> Result<Status, String> {
        let socket = self.config.parent().unwrap().join("state/control.sock");
        control::request(
            &socket,
            &ControlRequest {
                command: ControlCommand::Status,
                bundle: None,
                timestamp_key: None,
                server_key: None,
            },
            Duration::from_secs(5),
        )
        .map(|r| r.status)
        .map_err(|e| tenet_keys::error_chain(&e))
    }

    /// Polls `check` until it gives a value; fails with the daemon's log after
    /// [`DEADLINE`], or at once if the daemon exited.
    pub(crate) fn wait_for<T>(
        &mut self,
        what: &str,
        mut check: impl FnMut(&Daemon) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if let Some(exit) = self.policyd.exited() {
                panic!(
                    "tenet-policyd exited ({exit}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; last status {:?}\n{}",
                self.status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a one-shot command against this daemon.
    pub(crate) fn command(&self, args: &[&str]) -> Output {
        run(&[args, &["--config", self.config.to_str().unwrap()]].concat())
    }

    /// Promotes with `bundle` (and the configuration's keys); panics unless it worked.
    pub(crate) fn promote(&self, bundle: &Path) -> Status {
        let out = self.command(&["promote", "--bundle", bundle.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "promote failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.status().unwrap()
    }

    /// The serving socket's address (panics if not serving).
    pub(crate) fn serving(&self) -> SocketAddr {
        self.status().unwrap().serving.expect("serving")
    }

    /// Fetches the metrics text.
    pub(crate) async fn metrics(&self) -> String {
        let addr = self.status().unwrap().metrics.expect("metrics on");
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/metrics")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let mut child = self.policyd.take_child().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tenet-policyd did not stop on SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `tenet-policyd ARGS`.
pub(crate) fn run(args: &[&str]) -> Output {
    Command::new(POLICYD)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The value of a metric line (`name{labels} value`), or 0 if absent.
pub(crate) fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// An HTTP client over the keys TLS client configuration.
#[derive(Clone)]
pub(crate) struct Client {
    config: Arc<rustls::ClientConfig>,
}

/// A response: status and body.
pub(crate) type Answer = (StatusCode, Bytes);

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Client {
    /// Sends a request over HTTP/1.1 and returns the status and the body as it streams
    /// (call inside the runtime that will read the body).
    pub(crate) async fn open<B>(
        &self,
        addr: SocketAddr,
        builder: hyper::http::request::Builder,
        body: B,
    ) -> Result<(StatusCode, hyper::body::Incoming), BoxError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(tls::server_name(), tcp)
            .await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let req = builder.header("host", tls::SERVER_NAME).body(body)?;
        let resp = sender.send_request(req).await?;
        Ok((resp.status(), resp.into_body()))
    }

    /// A member with `key`, pinning `pins`; offers h2 and HTTP/1.1.
    pub(crate) fn new(key: &SecretKey, pins: Vec<KeyId>) -> Client {
        let id = Identity::new(key, Subject::Member("test".to_string())).unwrap();
        Client {
            config: Arc::new(tls::client_config(&id, pins).unwrap()),
        }
    }

    /// The same client, offering HTTP/1.1 only.
    pub(crate) fn http1(&self) -> Client {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Client {
            config: Arc::new(config),
        }
    }

    /// A mutual-TLS connection offering HTTP/1.1 only, for speaking HTTP by hand.
    pub(crate) async fn connect_http1(
        &self,
        addr: SocketAddr,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await.unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(tls::server_name(), tcp)
            .await
            .unwrap()
    }

    /// `GET path` with no extra headers.
    pub(crate) async fn get(&self, addr: SocketAddr, path: &str) -> Result<Answer, BoxError> {
        self.send(addr, Request::get(path), Empty::<Bytes>::new())
            .await
    }

    /// Sends a request built on `builder` (method, path, headers) with `body`.
    pub(crate) async fn send<B>(
        &self,
        addr: SocketAddr,
        builder: hyper::http::request::Builder,
        body: B,
    ) -> Result<Answer, BoxError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let tcp = TcpStream::connect(addr).await?;
        let tls = TlsConnector::from(self.config.clone())
            .connect(tls::server_name(), tcp)
            .await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let seen = Arc::new(Mutex::new(None));
        let io = TokioIo::new(Recorded {
            inner: tls,
            seen: seen.clone(),
        });
        let resp = if h2 {
            let path = builder.uri_ref().map(|u| u.to_string()).unwrap_or_default();
            let req = builder
                .uri(format!("https://{}{path}", tls::SERVER_NAME))
                .body(body)?;
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            let conn = tokio::spawn(conn);
            match sender.send_request(req).await {
                Ok(r) => r,
                // With h2 a TLS alert ends the connection task; its error says why.
                Err(e) => return Err(connection_error(conn, e, &seen).await),
            }
        } else {
            let req = builder.header("host", tls::SERVER_NAME).body(body)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            let conn = tokio::spawn(conn);
            match sender.send_request(req).await {
                Ok(r) => r,
                Err(e) => return Err(connection_error(conn, e, &seen).await),
            }
        };
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// The TLS error the stream saw, else the connection task's error, else the
/// request's. hyper's h2 errors do not expose the I/O error beneath them, so the
/// stream records TLS failures (such as the server's alert refusing this key) itself.
async fn connection_error(
    conn: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    request: hyper::Error,
    seen: &Mutex<Option<rustls::Error>>,
) -> BoxError {
    let task = conn.await;
    if let Some(tls) = seen.lock().unwrap().take() {
        return Box::new(tls);
    }
    match task {
        Ok(Err(e)) => Box::new(e),
        _ => Box::new(request),
    }
}

/// A stream that keeps the first TLS error its reads or writes return.
struct Recorded<T> {
    inner: T,
    seen: Arc<Mutex<Option<rustls::Error>>>,
}

impl<T> Recorded<T> {
    fn record<R>(&self, result: &Poll<std::io::Result<R>>) {
        if let Poll::Ready(Err(e)) = result
            && let Some(tls) = tls::tls_error_in(e)
        {
            self.seen.lock().unwrap().get_or_insert_with(|| tls.clone());
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Recorded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.record(&result);
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Recorded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.record(&result);
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.record(&result);
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The TLS refusal in a client error, if any.
pub(crate) fn refusal(e: &BoxError) -> Option<tls::Refusal> {
    tls::refusal(e.as_ref())
}
