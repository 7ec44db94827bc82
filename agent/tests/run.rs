//! `tenet-agent run` against a real `tenet-policyd serve` over mutual TLS on loopback:
//! members converge, follow a new serial, fall back on their cache when the master is
//! gone, and refuse an impostor or a tampered manifest while keeping the last good
//! bundle.
#![expect(
    clippy::disallowed_methods,
    reason = "fixtures start the binaries under test and write starting files directly"
)]
#![expect(
    clippy::unwrap_used,
    reason = "fixtures fail the test on any setup error"
)]

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tenet_keys::deployment::{self, Deployment};
use tenet_keys::publish::{self, SignOptions, Signing};
use tenet_keys::tls::{ClientPolicy, Identity, Subject};
use tenet_keys::{KeyId, SecretKey, Time};

use tenet_tests::fixture::{self, DEADLINE, now};

use crate::util::agent;

const MEMBERS: [&str; 3] = ["alpha", "beta", "gamma"];

/// `tenet-policyd`, built beside the agent by `cargo build --workspace`.
fn policyd_binary() -> PathBuf {
    let agent = Path::new(env!("CARGO_BIN_EXE_tenet-agent"));
    let path = agent.with_file_name("tenet-policyd");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` before these tests",
        path.display()
    );
    path
}

/// A deployment (root 1 of 1, all three members enrolled) and everything the members
/// and the master need, in one temp directory.
pub(crate) struct World {
    fixture: fixture::Deployment,
    deployment: PathBuf,
}

impl World {
    pub(crate) fn new() -> World {
        World::with_root_expiry(Duration::from_secs(30 * 86_400))
    }

    /// A world whose root expires `expires_in` from now.
    fn with_root_expiry(expires_in: Duration) -> World {
        let fixture = fixture::Deployment::with_root_expiry(&MEMBERS, &[], expires_in);
        let deployment = fixture.deployment();
        World {
            fixture,
            deployment,
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.fixture.path(rel)
    }

    /// A policy tree whose files say which serial wrote them.
    fn tree(&self, serial: u64) -> PathBuf {
        let tree = self.path(&format!("trees/{serial}"));
        fs::create_dir_all(&tree).unwrap();
        let mut cluster = "[cluster]\nname = \"test\"\n".to_string();
        for (i, (name, class)) in [("alpha", "web"), ("beta", "web"), ("gamma", "db")]
            .iter()
            .enumerate()
        {
            cluster.push_str(&format!(
                "\n[[member]]\nname = \"{name}\"\nhostname = \"{name}.example.com\"\nclasses = [\"{class}\"]\naddresses = [{{ ip = \"10.0.0.{}\", role = \"boot\" }}]\n",
                i + 1
            ));
        }
        fs::write(tree.join("cluster.toml"), cluster).unwrap();
        fs::write(
            tree.join("files.toml"),
            format!(
                "[[file]]\npath = \"/etc/tenet-serial\"\ncontent = \"serial {serial} on ${{member}}\\n\"\ntemplate = true\nmode = \"0644\"\n\n[[file]]\nwhen = \"class(web)\"\npath = \"/etc/web.conf\"\ncontent = \"web\\n\"\nmode = \"0644\"\n"
            ),
        )
        .unwrap();
        fs::write(
            tree.join("motd.toml"),
            "[[file]]\npath = \"/etc/motd\"\nsource = \"motd\"\nmode = \"0644\"\n",
        )
        .unwrap();
        fs::create_dir_all(tree.join("files")).unwrap();
        fs::write(
            tree.join("files/motd"),
            format!("motd of serial {serial}\n"),
        )
        .unwrap();
        tree
    }

    /// Member `name` with serial 1 (signed into `bundles/1`) converged and cached, and
    /// its master gone.
    pub(crate) fn cached_member(&self, name: &str) -> PathBuf {
        let mut policyd = Policyd::start(&self.policyd_config());
        let addr = policyd.promote(&self.sign(1), 1);
        let config = self.member(name, name, addr);
        assert_code(&run_agent(&config), 0);
        policyd.kill();
        config
    }

    /// Signs serial `serial` into `bundles/<serial>`.
    pub(crate) fn sign(&self, serial: u64) -> PathBuf {
        self.sign_tree(&self.tree(serial), serial, Duration::from_secs(14 * 86_400))
    }

    /// Signs `tree` as serial `serial`, expiring `expires_in` from now, into
    /// `bundles/<serial>`.
    pub(crate) fn sign_tree(&self, tree: &Path, serial: u64, expires_in: Duration) -> PathBuf {
        self.fixture.sign_tree(tree, serial, expires_in)
    }

    fn root_file(&self) -> PathBuf {
        self.fixture.root_path()
    }

    fn server_key(&self) -> SecretKey {
        self.fixture.server_key()
    }

    /// Writes `members/<name>/agent.toml` pointing at `master` and returns its path.
    /// Each member has its own state directory and sandbox root.
    pub(crate) fn member(&self, name: &str, instance: &str, master: SocketAddr) -> PathBuf {
        let dir = self.path(&format!("members/{instance}"));
        fs::create_dir_all(dir.join("root")).unwrap();
        let config = dir.join("agent.toml");
        fs::write(
            &config,
            format!(
                "member = \"{name}\"\nmaster = \"{master}\"\nstate_dir = \"state\"\nnode_key = \"{}\"\ntrusted_root = \"{}\"\nroot = \"root\"\nconnect_timeout = \"5s\"\n",
                self.path(&format!("nodes/{name}/localhost.key")).display(),
                self.root_file().display(),
            ),
        )
        .unwrap();
        config
    }

    pub(crate) fn policyd_config(&self) -> PathBuf {
        self.fixture
            .policyd_config("alpha")
            .state_dir("policyd-state")
            .limits("max_header_bytes = 8192\ndrain_timeout = \"2s\"\n")
            .write(&self.path("policyd.toml"))
    }
}

/// The shared `tenet-policyd serve` fixture, started with this crate's binary; its
/// `promote` checks the serial and gives the serving address.
pub(crate) struct Policyd(fixture::Policyd);

impl Policyd {
    pub(crate) fn start(config: &Path) -> Policyd {
        Policyd(fixture::Policyd::start(&policyd_binary(), config, "info"))
    }

    /// Promotes (or re-promotes) with `bundle` and returns the serving address.
    pub(crate) fn promote(&self, bundle: &Path, serial: u64) -> SocketAddr {
        let status = self.0.promote(bundle);
        assert!(status.contains(&format!("serial: {serial}\n")), "{status}");
        status
            .lines()
            .find_map(|l| l.strip_prefix("serving: "))
            .expect("serving address")
            .parse()
            .unwrap()
    }
}

impl std::ops::Deref for Policyd {
    type Target = fixture::Policyd;

    fn deref(&self) -> &fixture::Policyd {
        &self.0
    }
}

impl std::ops::DerefMut for Policyd {
    fn deref_mut(&mut self) -> &mut fixture::Policyd {
        &mut self.0
    }
}

/// A finished `tenet-agent run`.
pub(crate) struct Ran {
    pub(crate) code: Option<i32>,
    pub(crate) out: String,
}

pub(crate) fn run_agent(config: &Path) -> Ran {
    let out = agent()
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Ran {
        code: out.status.code(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

pub(crate) fn assert_code(r: &Ran, code: i32) {
    assert_eq!(r.code, Some(code), "{}", r.out);
}

pub(crate) fn read(config: &Path, rel: &str) -> Option<String> {
    fs::read_to_string(config.with_file_name("root").join(rel)).ok()
}

/// Members converge to serial 1, then to serial 2, then live on their cache when the
/// master dies; a member with no cache then has nothing to enforce.
#[test]
fn members_converge_follow_new_serials_and_survive_the_master() {
    let world = World::new();
    let mut policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&world.sign(1), 1);

    // (a) three members converge into their own roots.
    let configs: Vec<PathBuf> = MEMBERS.iter().map(|m| world.member(m, m, addr)).collect();
    for (name, config) in MEMBERS.iter().zip(&configs) {
        let r = run_agent(config);
        assert_code(&r, 0);
        assert_eq!(
            read(config, "etc/tenet-serial").as_deref(),
            Some(format!("serial 1 on {name}\n").as_str())
        );
        assert_eq!(
            read(config, "etc/web.conf").is_some(),
            *name != "gamma",
            "{name}: classes come from the manifest inventory"
        );
        assert!(config.with_file_name("state/trust.toml").is_file());
    }
    // A second run changes nothing.
    let r = run_agent(&configs[0]);
    assert_code(&r, 0);
    assert!(r.out.contains("nothing to do"), "{}", r.out);

    // (b) serial 2 is published and re-promoted; members follow.
    let addr2 = policyd.promote(&world.sign(2), 2);
    assert_eq!(addr, addr2);
    // A dry run fetches and verifies serial 2 but changes nothing, cache included.
    let trust = configs[0].with_file_name("state/trust.toml");
    let trust_before = fs::read_to_string(&trust).unwrap();
    let out = agent()
        .args(["run", "--dry-run", "--config"])
        .arg(&configs[0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("dry run: serial 2 verified"), "{text}");
    assert_eq!(
        read(&configs[0], "etc/tenet-serial").as_deref(),
        Some("serial 1 on alpha\n")
    );
    assert_eq!(fs::read_to_string(&trust).unwrap(), trust_before);
    assert!(
        fs::read_link(configs[0].with_file_name("state/current"))
            .unwrap()
            .ends_with("1")
    );
    for (name, config) in MEMBERS.iter().zip(&configs) {
        let r = run_agent(config);
        assert_code(&r, 0);
        assert_eq!(
            read(config, "etc/tenet-serial").as_deref(),
            Some(format!("serial 2 on {name}\n").as_str())
        );
        let link = fs::read_link(config.with_file_name("state/current")).unwrap();
        assert!(link.ends_with("2"), "{}", link.display());
    }

    // (c) the master dies: members converge from their cache and say so (exit 10).
    policyd.kill();
    for config in &configs {
        fs::remove_file(config.with_file_name("root/etc/tenet-serial")).unwrap();
        let r = run_agent(config);
        assert_code(&r, 10);
        assert!(
            r.out.contains("master unreachable (")
                && r.out.contains("converging from cached bundle serial 2"),
            "{}",
            r.out
        );
        assert!(
            read(config, "etc/tenet-serial")
                .unwrap()
                .starts_with("serial 2 on")
        );
    }
    // A fresh member with no cache has nothing to enforce.
    let fresh = world.member("alpha", "alpha-fresh", addr);
    let r = run_agent(&fresh);
    assert_code(&r, 5);
    assert!(r.out.contains("no cached bundle"), "{}", r.out);
    assert_eq!(read(&fresh, "etc/tenet-serial"), None);
}

/// A configuration with an unknown field is refused before anything else happens.
#[test]
fn an_unknown_configuration_field_is_refused() {
    let world = World::new();
    let config = world.member("alpha", "alpha", "127.0.0.1:1".parse().unwrap());
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str("prot = 8741\n");
    fs::write(&config, text).unwrap();
    let r = run_agent(&config);
    assert_code(&r, 3);
    assert!(r.out.contains("unknown field `prot`"), "{}", r.out);
    assert!(!config.with_file_name("state").exists());
}

#[test]
fn a_member_the_policy_lacks_is_refused_not_converged_silently() {
    let world = World::new();
    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&world.sign(1), 1);
    // alpha's enrolled key gets past the master; the configuration names a member the
    // policy does not have (a typo, a renamed member).
    let config = world.member("alpha", "alpha", addr);
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("member = \"alpha\"", "member = \"alhpa\""),
    )
    .unwrap();
    let r = run_agent(&config);
    assert_code(&r, 3);
    assert!(
        r.out.contains(
            "member \"alhpa\" is not in the policy's cluster (its members: alpha, beta, gamma)"
        ),
        "{}",
        r.out
    );
    // Not even the promises that hold for every member were applied.
    assert_eq!(read(&config, "etc/tenet-serial"), None);
    assert_eq!(read(&config, "etc/motd"), None);
}

/// Admits every client key: the test's stand-in servers check nothing.
#[derive(Debug)]
struct AdmitAll;

impl ClientPolicy for AdmitAll {
    fn admits(&self, _: &KeyId) -> bool {
        true
    }
}

/// A stand-in master over real TLS serving fixed bytes by path, on its own runtime
/// thread; it stops when dropped.
struct FakeMaster {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

/// What a [`FakeMaster`] makes of the concatenated blobs a `POST /v1/blobs` asks for.
type Tweak = fn(Vec<u8>) -> Vec<u8>;

impl FakeMaster {
    /// Serves `routes` by path, whatever the method: `POST /v1/blobs` is a 404, as from
    /// an older policyd.
    fn start(key: &SecretKey, routes: HashMap<String, Vec<u8>>) -> FakeMaster {
        FakeMaster::serve(key, routes, None)
    }

    /// Serves `routes`, and `POST /v1/blobs` as policyd does from the blob routes, its
    /// answer passed through `tweak`.
    fn batched(key: &SecretKey, routes: HashMap<String, Vec<u8>>, tweak: Tweak) -> FakeMaster {
        FakeMaster::serve(key, routes, Some(tweak))
    }

    fn serve(
        key: &SecretKey,
        routes: HashMap<String, Vec<u8>>,
        batch: Option<Tweak>,
    ) -> FakeMaster {
        let id = Identity::new(key, Subject::PolicyServer).unwrap();
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
        let routes = Arc::new(routes);
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let routes = routes.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let routes = routes.clone();
                            async move {
                                let body = match batch {
                                    Some(tweak) if req.uri().path() == "/v1/blobs" => {
                                        let asked =
                                            req.into_body().collect().await.unwrap().to_bytes();
                                        concatenated(&routes, &asked).map(tweak)
                                    }
                                    _ => routes.get(req.uri().path()).cloned(),
                                };
                                let resp = match body {
                                    Some(b) => Response::new(Full::new(Bytes::from(b))),
                                    None => {
                                        let mut r = Response::new(Full::new(Bytes::new()));
                                        *r.status_mut() = StatusCode::NOT_FOUND;
                                        r
                                    }
                                };
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeMaster {
            addr,
            _runtime: runtime,
        }
    }
}

/// The blobs of `routes` that a `POST /v1/blobs` body names, concatenated; `None` if
/// one is missing.
fn concatenated(routes: &HashMap<String, Vec<u8>>, asked: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for hex in String::from_utf8_lossy(asked).lines() {
        out.extend_from_slice(routes.get(&format!("/v1/blob/sha256/{hex}"))?);
    }
    Some(out)
}

/// The routes of a bundle directory, as policyd serves them.
fn routes_of(bundle: &Path) -> HashMap<String, Vec<u8>> {
    let mut routes = HashMap::new();
    let mut add = |route: String, file: PathBuf| {
        routes.insert(route, fs::read(file).unwrap());
    };
    add("/v1/root/1".into(), bundle.join("root/1.root.toml"));
    add("/v1/root/1/sig".into(), bundle.join("root/1.root.toml.sig"));
    add("/v1/manifest".into(), bundle.join("manifest.toml"));
    add("/v1/manifest/sig".into(), bundle.join("manifest.toml.sig"));
    for entry in fs::read_dir(bundle.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        add(
            format!("/v1/blob/sha256/{}", entry.file_name().to_str().unwrap()),
            entry.path(),
        );
    }
    routes
}

/// A fresh timestamp naming `manifest`, newer than any the real master signed.
/// What a master serves for `bundle`: its routes and a fresh timestamp naming it.
fn served(world: &World, bundle: &Path) -> HashMap<String, Vec<u8>> {
    let mut routes = routes_of(bundle);
    let (ts, ts_sig) = timestamp_for(world, &routes["/v1/manifest"]);
    routes.insert("/v1/timestamp".into(), ts);
    routes.insert("/v1/timestamp/sig".into(), ts_sig);
    routes
}

fn timestamp_for(world: &World, manifest: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let now = now();
    timestamp_at(world, manifest, now, Some(now.unix() + 1000))
}

/// A timestamp signed at `at` (its version is `at`, or `previous + 1` if that is later).
fn timestamp_at(
    world: &World,
    manifest: &[u8],
    at: Time,
    previous: Option<u64>,
) -> (Vec<u8>, Vec<u8>) {
    let d = Deployment::open(&world.deployment).unwrap();
    let key = SecretKey::read(&world.deployment.join("keys/timestamp.key")).unwrap();
    let (_, text, sig) = publish::make_timestamp(
        d.id(),
        manifest,
        &key,
        at,
        Duration::from_secs(4 * 3600),
        previous,
    )
    .unwrap();
    (text.into_bytes(), sig.into_bytes())
}

/// A member with serial 1 cached meets an impostor (a server key the root does not
/// pin), then a master serving a tampered manifest: both runs exit 4, say why, enforce
/// the last good bundle and keep it. An older timestamp naming the serial in force is
/// then ignored quietly.
#[test]
fn an_impostor_or_a_tampered_manifest_is_refused_and_the_last_good_bundle_kept() {
    let world = World::new();
    let config = world.cached_member("beta");
    let trust = config.with_file_name("state/trust.toml");
    let trust_before = fs::read_to_string(&trust).unwrap();

    // (d) an impostor with its own key serves a newer, validly signed bundle.
    let bundle2 = world.sign(2);
    let mut routes = routes_of(&bundle2);
    let manifest2 = routes["/v1/manifest"].clone();
    let (ts, ts_sig) = timestamp_for(&world, &manifest2);
    routes.insert("/v1/timestamp".into(), ts);
    routes.insert("/v1/timestamp/sig".into(), ts_sig);
    let impostor = FakeMaster::start(&SecretKey::generate().unwrap(), routes.clone());
    point_at(&config, impostor.addr);
    let r = run_agent(&config);
    assert_code(&r, 4);
    assert!(r.out.contains("not pinned"), "{}", r.out);
    assert!(r.out.contains("cached bundle serial 1"), "{}", r.out);
    assert!(r.out.contains("nothing to do"), "{}", r.out);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 1 on beta\n")
    );
    assert_eq!(fs::read_to_string(&trust).unwrap(), trust_before);
    drop(impostor);

    // (e) the pinned key serves a manifest changed after signing (its timestamp names
    // the changed bytes, so only the manifest signature can catch it).
    let mut tampered = manifest2.clone();
    tampered.extend_from_slice(b"\n# changed after signing\n");
    let (ts, ts_sig) = timestamp_for(&world, &tampered);
    routes.insert("/v1/manifest".into(), tampered);
    routes.insert("/v1/timestamp".into(), ts);
    routes.insert("/v1/timestamp/sig".into(), ts_sig);
    let takeover = FakeMaster::start(&world.server_key(), routes);
    point_at(&config, takeover.addr);
    let r = run_agent(&config);
    assert_code(&r, 4);
    assert!(r.out.contains("trust refused"), "{}", r.out);
    assert!(r.out.contains("manifest"), "{}", r.out);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 1 on beta\n")
    );
    assert_eq!(fs::read_to_string(&trust).unwrap(), trust_before);
    let link = fs::read_link(config.with_file_name("state/current")).unwrap();
    assert!(link.ends_with("1"), "{}", link.display());
    drop(takeover);

    // (f) a validly signed but older timestamp (the other half of a split brain)
    // naming serial 1 is ignored without alarm: serial 1 stays in force.
    let bundle1 = world.path("bundles/1");
    let mut routes = routes_of(&bundle1);
    let hour_ago = Time::from_unix(now().unix() - 3600).unwrap();
    let (ts, ts_sig) = timestamp_at(&world, &routes["/v1/manifest"], hour_ago, None);
    routes.insert("/v1/timestamp".into(), ts);
    routes.insert("/v1/timestamp/sig".into(), ts_sig);
    let stale = FakeMaster::start(&world.server_key(), routes);
    point_at(&config, stale.addr);
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert!(!r.out.contains("warning"), "{}", r.out);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 1 on beta\n")
    );
    assert_eq!(fs::read_to_string(&trust).unwrap(), trust_before);
}

/// The daemon runs at once, runs again on SIGHUP (its interval is an hour, so only
/// the signal can start the second run), and exits 0 on SIGTERM.
#[test]
fn the_daemon_runs_on_start_and_on_sighup_and_stops_on_sigterm() {
    use std::io::BufRead;
    use std::sync::mpsc;

    let world = World::new();
    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&world.sign(1), 1);
    let config = world.member("alpha", "alpha", addr);
    let mut child = agent()
        .args(["daemon", "--interval", "1h", "--splay", "0s", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Waits for the next summary line ("alpha: ... promises ..."), up to the deadline.
    let next_summary = |seen: &mut Vec<String>| -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("alpha: ") => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!("no summary line ({e}); output so far: {seen:#?}"),
            }
        }
    };
    let mut seen = Vec::new();
    let first = next_summary(&mut seen);
    assert!(first.contains("repaired"), "{first}");
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 1 on alpha\n")
    );

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let second = next_summary(&mut seen);
    assert!(second.contains("nothing to do"), "{second}");

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "the daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    drop(policyd);
}

/// Root rotation end to end: the administrators replace the root and policy keys
/// (root 2, policy epoch raised), sign root 2 with the old and the new root keys,
/// and publish serial 2 signed by the new policy key. Members learn root 2 from the
/// master, accept it because both key sets signed it, and converge serial 2; their
/// persisted trust moves to root 2 and the new epoch.
#[test]
fn a_rotated_root_and_policy_key_reach_members_through_the_master() {
    use tenet_keys::deployment::{NextRootOptions, Rotate};
    use tenet_keys::verify::TrustState;

    let world = World::new();
    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&world.sign(1), 1);
    let config = world.member("alpha", "alpha", addr);
    assert_code(&run_agent(&config), 0);
    let trust = |config: &Path| {
        let text = fs::read_to_string(config.with_file_name("state/trust.toml")).unwrap();
        TrustState::from_toml(&text).unwrap()
    };
    let before = trust(&config);
    assert_eq!(before.root().root().version, 1);

    let mut d = Deployment::open(&world.deployment).unwrap();
    let next = deployment::next_root(
        &d,
        &NextRootOptions {
            expires_in: Duration::from_secs(30 * 86_400),
            now: now(),
            rotate: vec![Rotate::Root, Rotate::Policy],
            bump_epoch: false,
            drop_pins: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(next.version, 2);
    let new_key = |prefix: &str| {
        next.keys
            .iter()
            .find(|(name, _, _)| name.starts_with(prefix))
            .map(|(_, file, _)| file.clone())
            .unwrap()
    };
    let old_root = SecretKey::read(&world.deployment.join("keys/root-1.key")).unwrap();
    let new_root = SecretKey::read(&new_key("root")).unwrap();
    let trusted = d.root_history().unwrap();
    for key in [&old_root, &new_root] {
        publish::attest(&next.path, key, Some(trusted.state.root().root())).unwrap();
    }

    let out = world.path("bundles/2");
    publish::sign(
        &mut d,
        &SignOptions {
            tree: world.tree(2),
            out: out.clone(),
            serial: Some(2),
            expires_in: Duration::from_secs(14 * 86_400),
            now: now(),
            signing: Signing::WithKey(new_key("policy")),
        },
    )
    .unwrap();
    policyd.promote(&out, 2);

    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 2 on alpha\n"),
        "{}",
        r.out
    );
    let after = trust(&config);
    assert_eq!(after.root().root().version, 2, "{}", r.out);
    assert_eq!(after.epoch(), before.epoch() + 1);
    assert!(after.root().root().has_role_key(
        tenet_keys::Role::Policy,
        &SecretKey::read(&new_key("policy")).unwrap().key_id()
    ));
}

/// Points `config` at `addr`.
fn point_at(config: &Path, addr: SocketAddr) {
    let text = fs::read_to_string(config).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("master = ") {
                format!("master = \"{addr}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(config, text + "\n").unwrap();
}

/// The blob names (hashes) of a bundle directory.
fn blob_names(bundle: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(bundle.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// A member with serial 1 cached meets the pinned master serving serial 2 whose new
/// blob does not match the signed manifest, batched or one request per blob (an
/// older master), or a batch answer longer or shorter than the declared sizes: each
/// run exits 4 on trust, applies nothing, and keeps serial 1 and its trust state.
/// The untouched answers then converge, batched and (for a fresh member) one by one.
#[test]
fn a_tampered_or_misframed_blob_is_refused_on_trust_batched_or_not() {
    tampered_or_misframed_blobs(0);
}

/// The same when serial 2 adds enough blobs to be stored as a pack: a refused blob
/// leaves no byte in it, and the blobs checked before it are kept.
#[test]
fn a_tampered_or_misframed_blob_is_refused_on_trust_into_a_pack() {
    tampered_or_misframed_blobs(100);
}

fn tampered_or_misframed_blobs(extra: usize) {
    let world = World::new();
    let config = world.cached_member("beta");
    let trust = config.with_file_name("state/trust.toml");
    let trust_before = fs::read_to_string(&trust).unwrap();

    let more = world.tree(2).join("files/more");
    fs::create_dir_all(&more).unwrap();
    for i in 0..extra {
        fs::write(more.join(format!("{i:03}")), format!("serial 2 blob {i}\n")).unwrap();
    }
    let bundle2 = world.sign(2);
    let routes = served(&world, &bundle2);
    // The blobs serial 2 adds: the member's store lacks them, so they are fetched.
    let old = blob_names(&world.path("bundles/1"));
    let new: Vec<String> = blob_names(&bundle2)
        .into_iter()
        .filter(|h| !old.contains(h))
        .collect();
    assert!(!new.is_empty());
    let mut tampered = routes.clone();
    for hex in &new {
        let blob = tampered.get_mut(&format!("/v1/blob/sha256/{hex}")).unwrap();
        blob[0] ^= 0x20;
    }
    let mut longer = routes.clone();
    for hex in &new {
        let blob = longer.get_mut(&format!("/v1/blob/sha256/{hex}")).unwrap();
        blob.push(b'\n');
    }

    let key = world.server_key();
    let keep = |b: Vec<u8>| b;
    let masters = [
        (
            "tampered, batched",
            FakeMaster::batched(&key, tampered.clone(), keep),
        ),
        ("tampered, one by one", FakeMaster::start(&key, tampered)),
        ("too long, one by one", FakeMaster::start(&key, longer)),
        (
            "a byte short",
            FakeMaster::batched(&key, routes.clone(), |mut b| {
                b.pop();
                b
            }),
        ),
        // Last: the blobs before the extra byte verify, and stay in the store by hash.
        (
            "a byte after the batch",
            FakeMaster::batched(&key, routes.clone(), |mut b| {
                b.push(b'x');
                b
            }),
        ),
    ];
    for (case, master) in masters {
        point_at(&config, master.addr);
        let r = run_agent(&config);
        assert_eq!(r.code, Some(4), "{case}: {}", r.out);
        assert!(r.out.contains("trust refused"), "{case}: {}", r.out);
        assert!(r.out.contains("blob for"), "{case}: {}", r.out);
        assert_eq!(
            read(&config, "etc/tenet-serial").as_deref(),
            Some("serial 1 on beta\n"),
            "{case}"
        );
        assert_eq!(fs::read_to_string(&trust).unwrap(), trust_before, "{case}");
        let link = fs::read_link(config.with_file_name("state/current")).unwrap();
        assert!(link.ends_with("1"), "{case}: {}", link.display());
    }
    if extra > 0 {
        // The batch a byte short kept every blob but its last, back to back in one
        // pack (the tampered ones failed on their first blob and kept nothing).
        let packs: Vec<PathBuf> = fs::read_dir(config.with_file_name("state/blobs/packs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .collect();
        assert_eq!(packs.len(), 1, "{packs:?}");
        let len = fs::metadata(&packs[0]).unwrap().len();
        let sizes: Vec<u64> = new
            .iter()
            .map(|h| {
                fs::metadata(bundle2.join("blobs/sha256").join(h))
                    .unwrap()
                    .len()
            })
            .collect();
        let all: u64 = sizes.iter().sum();
        assert!(
            len < all && len >= all - sizes.iter().max().unwrap(),
            "{len} of {all}"
        );
    }

    // The same bundle, answered faithfully, converges.
    let batched = FakeMaster::batched(&key, routes.clone(), keep);
    point_at(&config, batched.addr);
    assert_code(&run_agent(&config), 0);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 2 on beta\n")
    );
    let older = FakeMaster::start(&key, routes);
    let fresh = world.member("gamma", "gamma-fresh", older.addr);
    assert_code(&run_agent(&fresh), 0);
    assert_eq!(
        read(&fresh, "etc/tenet-serial").as_deref(),
        Some("serial 2 on gamma\n")
    );
}

/// `GET /metrics` from policyd's plain-HTTP metrics endpoint.
fn metrics_of(policyd: &Policyd) -> String {
    use std::io::{Read as _, Write as _};
    let status = policyd.status();
    let addr = status
        .lines()
        .find_map(|l| l.strip_prefix("metrics: "))
        .expect("metrics address");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    text
}

/// The value of one series in a metrics text (0 when absent).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// A full sync of more blobs than one request may name (4096) takes two batched
/// requests and no per-blob ones, and converges; the next run fetches nothing. From a
/// master without the batched route, the same sync falls back on per-blob requests.
#[test]
fn a_full_sync_of_more_blobs_than_one_batch_converges_in_two_requests() {
    const EXTRA: usize = 4200;
    let world = World::new();
    let many = world.tree(1).join("files/many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..EXTRA {
        fs::write(many.join(format!("{i:04}")), format!("blob {i}\n")).unwrap();
    }
    let bundle = world.sign(1);
    let blobs = blob_names(&bundle).len();
    assert!(blobs > EXTRA, "{blobs}");
    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&bundle, 1);
    let config = world.member("alpha", "alpha", addr);
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 1 on alpha\n")
    );
    // Stored as one pack (one sequential file and its index), not one file each.
    assert_one_pack_of(&config, &bundle);

    let series = |route: &str, status: u16| {
        format!(
            "tenet_policyd_requests_total{{socket=\"serve\",route=\"{route}\",status=\"{status}\"}}"
        )
    };
    let text = metrics_of(&policyd);
    assert_eq!(metric(&text, &series("blobs", 200)), 2, "{text}");
    assert_eq!(metric(&text, &series("blob", 200)), 0, "{text}");
    assert_eq!(
        metric(&text, "tenet_policyd_blob_reads_total"),
        blobs as u64,
        "{text}"
    );

    let r = run_agent(&config);
    assert_code(&r, 0);
    assert!(r.out.contains("nothing to do"), "{}", r.out);
    let text = metrics_of(&policyd);
    assert_eq!(metric(&text, &series("blobs", 200)), 2, "{text}");

    // A master without the batched route refuses the first batch (4096 hashes, more
    // than it reads before answering) and the member falls back on one GET per blob.
    let routes = served(&world, &bundle);
    let older = FakeMaster::start(&world.server_key(), routes);
    let fresh = world.member("beta", "beta", older.addr);
    assert_code(&run_agent(&fresh), 0);
    assert_eq!(
        read(&fresh, "etc/tenet-serial").as_deref(),
        Some("serial 1 on beta\n")
    );
    assert_one_pack_of(&fresh, &bundle);
}

/// The member's store holds every blob of `bundle` in one pack, and nothing loose.
fn assert_one_pack_of(config: &Path, bundle: &Path) {
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|l| {
                l.map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(
        names(&config.with_file_name("state/blobs/sha256")),
        Vec::<String>::new(),
        "no loose blob"
    );
    let packs = names(&config.with_file_name("state/blobs/packs"));
    assert_eq!(packs.len(), 2, "one pack and its index: {packs:?}");
    let pack = packs.iter().find(|n| n.ends_with(".pack")).unwrap();
    let total: u64 = blob_names(bundle)
        .iter()
        .map(|n| {
            fs::metadata(bundle.join("blobs/sha256").join(n))
                .unwrap()
                .len()
        })
        .sum();
    let len = fs::metadata(config.with_file_name("state/blobs/packs").join(pack))
        .unwrap()
        .len();
    assert_eq!(len, total, "every blob once, back to back");
}

/// A `source` file is compared by its signed hash and read from the blob store only
/// to be written: a stored blob changed after it was verified fails that promise (and
/// only that one), no byte of it reaches the root, and the next run fetches it again.
#[test]
fn a_stored_blob_changed_after_verification_is_never_written() {
    let world = World::new();
    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&world.sign(1), 1);
    let config = world.member("alpha", "alpha", addr);
    assert_code(&run_agent(&config), 0);
    assert_eq!(
        read(&config, "etc/motd").as_deref(),
        Some("motd of serial 1\n")
    );

    // Unchanged destination: kept by its hash, the blob is not even read.
    let blob = config
        .with_file_name("state/blobs/sha256")
        .join(tenet_keys::Sha256Sum::of(b"motd of serial 1\n").to_string());
    fs::write(&blob, "MOTD OF SERIAL 1\n").unwrap();
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert!(r.out.contains("nothing to do"), "{}", r.out);

    // The destination must be written: the blob is read, refused, and nothing written.
    fs::remove_file(config.with_file_name("root/etc/motd")).unwrap();
    let r = run_agent(&config);
    assert_code(&r, 1);
    assert!(r.out.contains("sha256"), "{}", r.out);
    assert!(r.out.contains("1 failed"), "{}", r.out);
    assert_eq!(read(&config, "etc/motd"), None);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 1 on alpha\n")
    );

    // The damaged blob was set aside; the next run fetches the bundle in force again
    // (same serial) for the blob the store now lacks, and converges.
    assert!(!blob.exists(), "the damaged blob is removed from the store");
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(
        read(&config, "etc/motd").as_deref(),
        Some("motd of serial 1\n")
    );
    assert_eq!(fs::read(&blob).unwrap(), b"motd of serial 1\n");
    // Healed: later runs talk to the master only for the timestamp again.
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert!(r.out.contains("nothing to do"), "{}", r.out);
    assert!(!config.with_file_name("state/blobs/.damaged").exists());
    // The bundle in force stayed in place throughout.
    let current = fs::read_link(config.with_file_name("state/current")).unwrap();
    assert!(current.ends_with("1"), "{}", current.display());
    assert!(
        config
            .with_file_name("state/bundles/1/manifest.toml")
            .is_file()
    );
}

/// The same for a blob in a pack (a sync of many blobs stores them as one): a packed
/// blob changed in place fails the promise that must write it, its entry is dropped
/// from the pack's index, and the next run fetches it again. A pack index that no
/// longer matches its checksum is removed with its pack, and the same run fetches
/// what it held again before loading the policy.
#[test]
fn a_damaged_pack_or_pack_index_is_set_aside_and_fetched_again() {
    let world = World::new();
    let many = world.tree(1).join("files/many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..100 {
        fs::write(many.join(format!("{i:03}")), format!("blob {i}\n")).unwrap();
    }
    let bundle = world.sign(1);
    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&bundle, 1);
    let config = world.member("alpha", "alpha", addr);
    assert_code(&run_agent(&config), 0);
    assert_one_pack_of(&config, &bundle);
    let packs = config.with_file_name("state/blobs/packs");
    let named = |ext: &str| {
        fs::read_dir(&packs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == ext))
            .unwrap()
    };
    let pack = named("pack");
    let mut bytes = fs::read(&pack).unwrap();
    let motd = b"motd of serial 1\n";
    let at = bytes
        .windows(motd.len())
        .position(|w| w == motd)
        .expect("motd is packed");
    bytes[at..at + 4].copy_from_slice(b"MOTD");
    fs::write(&pack, &bytes).unwrap();

    fs::remove_file(config.with_file_name("root/etc/motd")).unwrap();
    let r = run_agent(&config);
    assert_code(&r, 1);
    assert!(r.out.contains("but the manifest declares"), "{}", r.out);
    assert_eq!(read(&config, "etc/motd"), None);
    assert!(config.with_file_name("state/blobs/.damaged").exists());

    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(
        read(&config, "etc/motd").as_deref(),
        Some("motd of serial 1\n")
    );
    // One blob was missing: it came back loose, beside the pack.
    let loose = config
        .with_file_name("state/blobs/sha256")
        .join(tenet_keys::Sha256Sum::of(motd).to_string());
    assert_eq!(fs::read(&loose).unwrap(), motd);
    assert!(!config.with_file_name("state/blobs/.damaged").exists());

    // A damaged index: its pack is removed, and the run fetches it again (the policy
    // files themselves are blobs).
    let idx = named("idx");
    let mut bytes = fs::read(&idx).unwrap();
    bytes[20] ^= 1;
    fs::write(&idx, &bytes).unwrap();
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert!(r.out.contains("nothing to do"), "{}", r.out);
    assert!(r.out.contains("checksum mismatch"), "{}", r.out);
    // The new pack lacks motd (stored loose), so it has another name.
    assert!(!idx.exists() && !pack.exists());
    assert!(!config.with_file_name("state/blobs/.damaged").exists());
    assert!(named("idx").is_file());
    // Everything reads from the new pack.
    fs::remove_dir_all(config.with_file_name("root/etc")).unwrap();
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(
        read(&config, "etc/motd").as_deref(),
        Some("motd of serial 1\n")
    );
}

// ---------------------------------------------------------------------------
// Freeze, staleness, degraded exit codes, a stalled master, an edited cache.

/// 2100-01-01: the version a timestamp signed to freeze members carries.
const YEAR_2100: u64 = 4_102_444_800;

/// `tenet-agent run --config CONFIG` with extra arguments.
fn run_agent_with(config: &Path, extra: &[&str]) -> Ran {
    let out = agent()
        .args(["run", "--config"])
        .arg(config)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Ran {
        code: out.status.code(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The member's `STATE/last-run.json`.
fn last_run(config: &Path) -> serde_json::Value {
    let text = fs::read_to_string(config.with_file_name("state/last-run.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The reasons listed in `last-run.json`'s `degraded`.
fn degraded_reasons(config: &Path) -> Vec<String> {
    last_run(config)["degraded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_string())
        .collect()
}

/// The trusted timestamp version in the member's `trust.toml`.
fn trusted_timestamp_version(config: &Path) -> u64 {
    let text = fs::read_to_string(config.with_file_name("state/trust.toml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("timestamp_version = "))
        .unwrap()
        .parse()
        .unwrap()
}

/// A timestamp signed at `at` that expires `ttl` later.
fn timestamp_lasting(
    world: &World,
    manifest: &[u8],
    at: Time,
    ttl: Duration,
) -> (Vec<u8>, Vec<u8>) {
    let d = Deployment::open(&world.deployment).unwrap();
    let key = SecretKey::read(&world.deployment.join("keys/timestamp.key")).unwrap();
    let (_, text, sig) = publish::make_timestamp(d.id(), manifest, &key, at, ttl, None).unwrap();
    (text.into_bytes(), sig.into_bytes())
}

/// Waits (bounded) until this machine's clock has passed `t`.
fn wait_until_past(t: Time) {
    let start = Instant::now();
    while now() <= t {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the clock did not pass {t}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A master holding the package filesystem's keys (the pinned server key and the
/// online timestamp key) signs one timestamp for the year 2100. The member refuses it
/// (exit 4), its trusted version does not move, and when the real master publishes
/// serial 2 the member follows at once.
#[test]
fn finding_02_a_far_future_timestamp_is_refused_and_does_not_freeze_the_member() {
    let world = World::new();
    let config = world.cached_member("alpha");
    let trusted = trusted_timestamp_version(&config);
    let mut routes = routes_of(&world.path("bundles/1"));
    let far = Time::from_unix(YEAR_2100).unwrap();
    let (ts, ts_sig) = timestamp_at(&world, &routes["/v1/manifest"], far, None);
    routes.insert("/v1/timestamp".into(), ts);
    routes.insert("/v1/timestamp/sig".into(), ts_sig);
    let freezer = FakeMaster::start(&world.server_key(), routes);
    point_at(&config, freezer.addr);
    let r = run_agent(&config);
    assert_code(&r, 4);
    assert!(
        r.out.contains(&format!(
            "timestamp version {YEAR_2100} is more than 300 s ahead"
        )),
        "{}",
        r.out
    );
    assert_eq!(trusted_timestamp_version(&config), trusted);
    drop(freezer);

    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&world.sign(2), 2);
    point_at(&config, addr);
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 2 on alpha\n")
    );
}

/// A member whose ratchet an earlier agent (that bounded nothing) left at the year
/// 2100 takes the real master's next timestamp and follows serial 2.
#[test]
fn finding_02_a_member_already_pinned_by_a_far_future_timestamp_recovers() {
    let world = World::new();
    let config = world.cached_member("alpha");
    let trust = config.with_file_name("state/trust.toml");
    let text = fs::read_to_string(&trust).unwrap();
    let pinned: String = text
        .lines()
        .map(|l| {
            if l.starts_with("timestamp_version = ") {
                format!("timestamp_version = {YEAR_2100}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(pinned, text);
    fs::write(&trust, pinned).unwrap();

    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&world.sign(2), 2);
    point_at(&config, addr);
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 2 on alpha\n")
    );
    let version = trusted_timestamp_version(&config);
    assert!(version <= now().unix() + 300, "still pinned: {version}");
}

/// A validly signed timestamp older than the trusted one that names a newer serial
/// (the other master of a split brain, which has it): the manifest is fetched and
/// checked, and converged; the trusted version does not go back.
#[test]
fn finding_02_an_older_timestamp_naming_a_newer_serial_is_followed() {
    let world = World::new();
    let config = world.cached_member("beta");
    let trusted = trusted_timestamp_version(&config);
    let mut routes = routes_of(&world.sign(2));
    let hour_ago = Time::from_unix(now().unix() - 3600).unwrap();
    let (ts, ts_sig) = timestamp_at(&world, &routes["/v1/manifest"], hour_ago, None);
    routes.insert("/v1/timestamp".into(), ts);
    routes.insert("/v1/timestamp/sig".into(), ts_sig);
    let other = FakeMaster::start(&world.server_key(), routes);
    point_at(&config, other.addr);
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 2 on beta\n")
    );
    assert_eq!(trusted_timestamp_version(&config), trusted);
}

/// A member whose last fresh timestamp has expired meets a master that only serves an
/// older one (frozen): exit 12, a STALE warning, and `timestamp_stale` in
/// `last-run.json`; with `--degraded-ok`, exit 0 and the same reason recorded.
#[test]
fn finding_02_no_fresh_timestamp_past_its_lifetime_exits_12_and_says_why() {
    let world = World::new();
    let bundle = world.sign(1);
    let mut routes = routes_of(&bundle);
    let manifest = routes["/v1/manifest"].clone();
    // A fresh timestamp that lives two more seconds.
    let signed = Time::from_unix(now().unix() - 60).unwrap();
    let (ts, ts_sig) = timestamp_lasting(&world, &manifest, signed, Duration::from_secs(62));
    let expires = Time::from_unix(signed.unix() + 62).unwrap();
    routes.insert("/v1/timestamp".into(), ts);
    routes.insert("/v1/timestamp/sig".into(), ts_sig);
    let master = FakeMaster::start(&world.server_key(), routes.clone());
    let config = world.member("alpha", "alpha", master.addr);
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(degraded_reasons(&config), Vec::<String>::new());
    drop(master);

    // Frozen: the master now serves only an older timestamp for the same serial.
    wait_until_past(expires);
    let hour_ago = Time::from_unix(now().unix() - 3600).unwrap();
    let (ts, ts_sig) = timestamp_at(&world, &manifest, hour_ago, None);
    routes.insert("/v1/timestamp".into(), ts);
    routes.insert("/v1/timestamp/sig".into(), ts_sig);
    let frozen = FakeMaster::start(&world.server_key(), routes);
    point_at(&config, frozen.addr);
    let r = run_agent(&config);
    assert_code(&r, 12);
    assert!(r.out.contains("STALE: no fresh timestamp"), "{}", r.out);
    let last = last_run(&config);
    assert_eq!(last["exit_code"], 12, "{last}");
    assert_eq!(degraded_reasons(&config), ["timestamp_stale"]);
    assert_eq!(last["degraded"][0]["exit_code"], 12, "{last}");

    let r = run_agent_with(&config, &["--degraded-ok"]);
    assert_code(&r, 0);
    assert_eq!(last_run(&config)["exit_code"], 0);
    assert_eq!(degraded_reasons(&config), ["timestamp_stale"]);
}

/// Master unreachable: exit 10. A manifest that expired while the master still serves
/// it: exit 11. Each reason is in `last-run.json`; `--degraded-ok` exits 0.
#[test]
fn finding_06_unreachable_and_expired_each_exit_with_their_own_code_and_reason() {
    let world = World::new();
    let config = world.cached_member("gamma");
    let r = run_agent(&config);
    assert_code(&r, 10);
    assert!(r.out.contains("master unreachable ("), "{}", r.out);
    assert_eq!(degraded_reasons(&config), ["master_unreachable"]);
    assert_eq!(last_run(&config)["exit_code"], 10);
    let r = run_agent_with(&config, &["--degraded-ok"]);
    assert_code(&r, 0);
    assert_eq!(degraded_reasons(&config), ["master_unreachable"]);

    // A bundle that expires in a few seconds, served by a real master throughout.
    let lifetime = Duration::from_secs(5);
    let expires = Time::from_unix(now().unix() + lifetime.as_secs()).unwrap();
    let bundle = world.sign_tree(&world.tree(2), 2, lifetime);
    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&bundle, 2);
    point_at(&config, addr);
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 2 on gamma\n")
    );
    wait_until_past(expires);
    let r = run_agent(&config);
    assert_code(&r, 11);
    assert!(r.out.contains("EXPIRED"), "{}", r.out);
    assert_eq!(degraded_reasons(&config), ["bundle_expired"]);
    assert_eq!(last_run(&config)["exit_code"], 11);
    assert_eq!(last_run(&config)["serial"], 2);
    let r = run_agent_with(&config, &["--degraded-ok"]);
    assert_code(&r, 0);
    assert_eq!(degraded_reasons(&config), ["bundle_expired"]);
}

/// A child process killed (by its pid) and reaped when dropped, if still held.
struct Stopped(Option<Child>);

impl Stopped {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl FakeMaster {
    /// A master that completes the TLS handshake, reads each request, reports its
    /// path on the channel, and never answers.
    fn stalling(key: &SecretKey) -> (FakeMaster, std::sync::mpsc::Receiver<String>) {
        let id = Identity::new(key, Subject::PolicyServer).unwrap();
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
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let _ = tx.send(req.uri().path().to_string());
                            async move {
                                std::future::pending::<()>().await;
                                Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                    Bytes::new(),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (
            FakeMaster {
                addr,
                _runtime: runtime,
            },
            rx,
        )
    }
}

/// A run is stalled by a master that accepted its connection and never answers. A
/// takeover's `event package-start` (not allowed to wait for the run lock at all)
/// runs its plan and finishes while that run is still alive; the run then gives up
/// on the master at its deadline and converges from its cache (exit 10).
#[test]
fn finding_05_a_stalled_master_does_not_make_a_takeover_event_wait() {
    let world = World::new();
    let tree = world.tree(1);
    let mut cluster = fs::read_to_string(tree.join("cluster.toml")).unwrap();
    cluster.push_str(
        "\n[[package]]\nname = \"app\"\nhostname = \"app\"\nip = \"10.0.0.9\"\nmembers = [\"alpha\", \"beta\"]\nconfiguration = \"cascading\"\n",
    );
    fs::write(tree.join("cluster.toml"), cluster).unwrap();
    fs::write(
        tree.join("plans.toml"),
        "[[plan]]\nname = \"app-takeover\"\non = \"package-start\"\npackage = \"app\"\n\n[[plan.step]]\ntype = \"command\"\nname = \"take over\"\nshell = \"echo taken > $TENET_ROOT/taken-over\"\ntimeout = \"30s\"\n",
    )
    .unwrap();
    let bundle = world.sign_tree(&tree, 1, Duration::from_secs(86_400));
    let mut policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&bundle, 1);
    let config = world.member("alpha", "alpha", addr);
    assert_code(&run_agent(&config), 0);
    policyd.kill();

    let (stalled, asked) = FakeMaster::stalling(&world.server_key());
    point_at(&config, stalled.addr);
    let mut run = Stopped(Some(
        agent()
            .args(["run", "--deadline", "15s", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    // The run is talking to the master, and the master does not answer.
    let path = asked.recv_timeout(DEADLINE).unwrap();
    assert!(path.starts_with("/v1/"), "{path}");

    let event = agent()
        .args([
            "event",
            "package-start",
            "app",
            "--id",
            "takeover-1",
            "--lock-timeout",
            "0s",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let still_running = run.child().try_wait().unwrap().is_none();
    let event_out = format!(
        "{}{}",
        String::from_utf8_lossy(&event.stdout),
        String::from_utf8_lossy(&event.stderr)
    );
    assert_eq!(event.status.code(), Some(0), "{event_out}");
    assert!(still_running, "the run ended before the event did");
    assert_eq!(
        fs::read_to_string(config.with_file_name("root/taken-over")).unwrap(),
        "taken\n"
    );

    // The stalled run gives up at its deadline and enforces its cache.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = run.child().try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run outlived its deadline"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = run.0.take().unwrap().wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status.code(), Some(10), "{text}");
    assert!(text.contains("deadline"), "{text}");
    drop(stalled);
}

/// The root expires while the member is cut off from its master. The cached bundle,
/// still signed, is enforced with exit 11; the cached manifest edited to add a policy
/// file (its blob dropped into the store) is refused (exit 4, by `run` and by
/// `event`), and nothing of it is applied.
#[test]
fn finding_07_an_edited_cache_is_refused_after_the_root_expired() {
    let lifetime = Duration::from_secs(8);
    let root_expires = Time::from_unix(now().unix() + lifetime.as_secs()).unwrap();
    let world = World::with_root_expiry(lifetime);
    let config = world.cached_member("alpha");
    wait_until_past(root_expires);

    let r = run_agent(&config);
    assert_code(&r, 11);
    assert!(r.out.contains("root expired"), "{}", r.out);
    assert!(degraded_reasons(&config).contains(&"bundle_expired".to_string()));

    // The cached manifest gains a policy file whose blob is dropped into the store.
    let evil = b"[[file]]\npath = \"/etc/evil\"\ncontent = \"pwned\\n\"\nmode = \"0644\"\n";
    let sha = tenet_keys::Sha256Sum::of(evil).to_string();
    let state = config.with_file_name("state");
    fs::write(state.join("blobs/sha256").join(&sha), evil).unwrap();
    let manifest = state.join("bundles/1/manifest.toml");
    let mut text = fs::read_to_string(&manifest).unwrap();
    let at = text.find("[[member]]").unwrap();
    text.insert_str(
        at,
        &format!(
            "[[file]]\npath = \"evil.toml\"\nsha256 = \"{sha}\"\nsize = {}\n\n",
            evil.len()
        ),
    );
    fs::write(&manifest, text).unwrap();

    let r = run_agent(&config);
    assert_code(&r, 4);
    assert!(r.out.contains("does not verify"), "{}", r.out);
    assert!(read(&config, "etc/evil").is_none(), "{}", r.out);
    let event = agent()
        .args(["event", "package-start", "app", "--id", "e1", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        event.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&event.stderr)
    );
    assert!(read(&config, "etc/evil").is_none());
}

/// Copies the file, link or directory tree at `from` to `to` (links as links).
fn copy_tree(from: &Path, to: &Path) {
    let meta = fs::symlink_metadata(from).unwrap();
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from).unwrap(), to).unwrap();
    } else if meta.is_dir() {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        fs::copy(from, to).unwrap();
    }
}

fn trusted_serial(config: &Path) -> u64 {
    let text = fs::read_to_string(config.with_file_name("state/trust.toml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("serial = "))
        .unwrap()
        .parse()
        .unwrap()
}

/// While a run talks to the master (holding no run lock), another process that holds
/// only the run lock commits a newer serial: an agent of the previous version, still
/// running as the daemon while policyd starts the upgraded binary for a pushed run.
/// The run re-checks the ratchet under the run lock: it does not switch back to the
/// older serial it fetched, nor persist a trust state older than the one on disk.
#[test]
fn finding_05_a_serial_committed_while_a_run_synced_is_not_rolled_back() {
    let world = World::new();
    let config = world.cached_member("alpha");
    let b2 = world.sign(2);
    let b3 = world.sign(3);
    // The other process's result: the state a run of serial 3 leaves.
    let mut policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&b3, 3);
    let other = world.member("alpha", "alpha-other", addr);
    assert_code(&run_agent(&other), 0);
    policyd.kill();

    // This run's master serves serial 2; the run lock is held meanwhile.
    let master = FakeMaster::start(&world.server_key(), served(&world, &b2));
    point_at(&config, master.addr);
    let state = config.with_file_name("state");
    let held = fs::OpenOptions::new()
        .write(true)
        .open(state.join("run.lock"))
        .unwrap();
    held.try_lock().unwrap();
    let mut run = Stopped(Some(
        agent()
            .args(["run", "--lock-timeout", "60s", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    // The run has read its trust state and verified serial 2's manifest into staging.
    let staged = state.join("bundles/.staging/manifest.toml");
    let start = Instant::now();
    while !staged.is_file() {
        assert!(
            run.child().try_wait().unwrap().is_none(),
            "the run ended early"
        );
        assert!(start.elapsed() < DEADLINE, "nothing staged");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The other process commits serial 3 under the run lock: its bundle, blobs, trust
    // state and `current`, as it leaves them.
    let from = other.with_file_name("state");
    copy_tree(&from.join("bundles/3"), &state.join("bundles/3"));
    for e in fs::read_dir(from.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let to = state.join("blobs/sha256").join(e.file_name());
        if !to.exists() {
            fs::copy(e.path(), to).unwrap();
        }
    }
    fs::copy(from.join("trust.toml"), state.join("trust.toml")).unwrap();
    std::os::unix::fs::symlink("bundles/3", state.join("current.other")).unwrap();
    fs::rename(state.join("current.other"), state.join("current")).unwrap();
    assert_eq!(trusted_serial(&config), 3);
    drop(held);

    let out = run.0.take().unwrap().wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(trusted_serial(&config), 3, "ratchet rolled back:\n{text}");
    assert_eq!(
        fs::read_link(state.join("current")).unwrap(),
        Path::new("bundles/3"),
        "{text}"
    );
    assert_eq!(
        read(&config, "etc/tenet-serial").as_deref(),
        Some("serial 3 on alpha\n"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("changed while this run"), "{text}");
    drop(master);
}

/// The `expiring` entries of `last-run.json`, as `document` names.
fn expiring_documents(config: &Path) -> Vec<String> {
    last_run(config)["expiring"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["document"].as_str().unwrap().to_string())
        .collect()
}

/// A run from a master serving a root that expires in 3 days and a bundle that expires
/// in a day warns of both (default thresholds: 7 days, 2 days) in its output and in
/// `last-run.json`, and still exits 0; with `[expiry_warning]` thresholds shorter than
/// what is left, it does not. policyd's `/metrics` shows the same expiries, and the
/// member's last timestamp fetch, labelled by name, for the inventory's members only.
#[test]
fn a_run_warns_before_its_root_or_bundle_expires_and_policyd_shows_both() {
    let world = World::with_root_expiry(Duration::from_secs(3 * 86_400));
    let bundle = world.sign_tree(&world.tree(1), 1, Duration::from_secs(86_400));
    let policyd = Policyd::start(&world.policyd_config());
    let addr = policyd.promote(&bundle, 1);
    let config = world.member("beta", "beta", addr);

    let text = metrics_of(&policyd);
    let manifest =
        tenet_keys::Manifest::parse(&fs::read(bundle.join("manifest.toml")).unwrap()).unwrap();
    assert_eq!(
        metric(&text, "tenet_policyd_manifest_expiry_seconds"),
        manifest.expires.unix(),
        "{text}"
    );
    let root = world.fixture.trusted_root();
    assert_eq!(
        metric(&text, "tenet_policyd_root_expiry_seconds"),
        root.root().expires.unix(),
        "{text}"
    );
    for name in ["alpha", "beta", "gamma"] {
        let series = format!("tenet_policyd_member_last_fetch_seconds{{member=\"{name}\"}}");
        assert!(text.lines().any(|l| l == format!("{series} 0")), "{text}");
    }

    let before = now().unix();
    let r = run_agent(&config);
    let after = now().unix();
    assert_code(&r, 0);
    assert!(
        r.out
            .contains("EXPIRING SOON: the trusted root (version 1) expires at"),
        "{}",
        r.out
    );
    assert!(
        r.out
            .contains("EXPIRING SOON: the bundle in force (manifest serial 1) expires at"),
        "{}",
        r.out
    );
    assert_eq!(expiring_documents(&config), ["root", "manifest"]);
    let run = last_run(&config);
    assert_eq!(run["expiring"][1]["expires"], manifest.expires.unix());
    assert_eq!(run["exit_code"], 0);

    let text = metrics_of(&policyd);
    let fetched = metric(
        &text,
        "tenet_policyd_member_last_fetch_seconds{member=\"beta\"}",
    );
    assert!(
        (before..=after).contains(&fetched),
        "{before}..{after}: {text}"
    );
    assert_eq!(
        metric(
            &text,
            "tenet_policyd_member_last_fetch_seconds{member=\"alpha\"}"
        ),
        0
    );
    let members = text
        .lines()
        .filter(|l| l.starts_with("tenet_policyd_member_last_fetch_seconds{"))
        .count();
    assert_eq!(members, 3, "{text}");

    // Thresholds shorter than what is left: no warning.
    let mut toml = fs::read_to_string(&config).unwrap();
    toml.push_str("\n[expiry_warning]\nroot = \"2d\"\nmanifest = \"12h\"\n");
    fs::write(&config, toml).unwrap();
    let r = run_agent(&config);
    assert_code(&r, 0);
    assert!(!r.out.contains("EXPIRING SOON"), "{}", r.out);
    assert!(expiring_documents(&config).is_empty());
}
