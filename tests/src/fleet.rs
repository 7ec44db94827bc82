//! The fleet benchmark's members: N simulated members polling one real `tenet-policyd`
//! on a splayed interval, each doing on the wire what `tenet-agent run` does (see
//! `agent/src/sync/pull.rs`): a new pinned mutual-TLS connection with its own node key,
//! `GET /v1/root/{next}`, the timestamp and its signatures, and only when they name a
//! newer manifest, the manifest, its signatures and the blobs it lacks in
//! `POST /v1/blobs` batches, each blob hashed against the manifest.
//!
//! What it does not do: write a state directory or converge anything (a member's disk
//! is not the master's load), or send run reports. Each member keeps its trust state and
//! the set of blobs it holds in memory. Each source address is its own (127.x.y.z, one
//! per member), so policyd's per-address admission caps see a fleet, not one client.
//!
//! The tool must not be the bottleneck on a small machine, so one check is shared: a
//! manifest is verified with `check_manifest` once per (trusted manifest, timestamp
//! version, hash the timestamp names); every other member's download of it is compared
//! byte for byte with those checked bytes as it streams (nothing buffered), and takes
//! the same result. Timestamps and every blob are checked by each member.
//!
//! [`setup`] makes the deployment (the real `tenet-keys` library: `init`, node keys, the
//! inventory written in `enroll`'s format at once, as 10,000 `enroll` calls would take
//! minutes) and [`run`] runs the fleet and returns a [`Report`].
#![expect(
    clippy::disallowed_methods,
    reason = "benchmark setup writes its own files in its own directory"
)]

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tenet_keys::deployment::{self, InitOptions};
use tenet_keys::document::{Document, MAX_SIGNATURE_BYTES};
use tenet_keys::tls::{self, Identity, Subject};
use tenet_keys::{
    Clock, ExpectedManifest, FileEntry, SecretKey, Sha256Sum, Time, TimestampOutcome, TrustState,
    TrustedRoot, VerifyError,
};
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsConnector;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A member's name: `m00000`, `m00001`, …
pub fn member_name(i: usize) -> String {
    format!("m{i:05}")
}

/// The name of the member whose policyd serves the fleet (in the cluster, not enrolled).
pub const SERVER_MEMBER: &str = "srv";

/// Makes, in `dir`: the deployment `deploy/` (one root key), `members` node keys
/// `nodes/mNNNNN.key` all enrolled, the policyd member's key `srv/localhost.key`, and
/// `tree/cluster.toml` naming every member. Returns how long the keys took.
///
/// # Errors
/// If the deployment cannot be made or a file written.
pub fn setup(dir: &Path, members: usize) -> Result<Duration, Error> {
    let deploy = dir.join("deploy");
    deployment::init(
        &deploy,
        &InitOptions {
            root_keys: 1,
            root_threshold: 1,
            expires_in: Duration::from_secs(30 * 86_400),
            now: Time::from_system(SystemTime::now()),
        },
    )?;
    let d = deployment::Deployment::open(&deploy)?;
    deployment::node_key(&dir.join("srv"))?;
    let nodes = dir.join("nodes");
    std::fs::create_dir_all(&nodes)?;
    let t0 = Instant::now();
    let mut blocks = String::new();
    for i in 0..members {
        let key = SecretKey::generate()?;
        key.write(&nodes.join(format!("{}.key", member_name(i))))?;
        if i == 0 {
            d.enroll(&member_name(i), key.key_id())?;
        } else {
            blocks.push_str(&format!(
                "\n[[member]]\nname = \"{}\"\nkeyid = \"{}\"\n",
                member_name(i),
                key.key_id()
            ));
        }
    }
    // The rest appended at once, in the format `enroll` just wrote for the first.
    let inventory = deploy.join(deployment::INVENTORY_FILE);
    let mut text = std::fs::read_to_string(&inventory)?;
    if members > 0 && !text.contains(&format!("name = \"{}\"", member_name(0))) {
        return Err("the inventory does not look as `enroll` writes it".into());
    }
    text.push_str(&blocks);
    std::fs::write(&inventory, text)?;
    let keys = t0.elapsed();
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree)?;
    let mut cluster = String::from("[cluster]\nname = \"fleet\"\n");
    for (i, name) in (0..members)
        .map(member_name)
        .chain([SERVER_MEMBER.to_string()])
        .enumerate()
    {
        cluster.push_str(&format!(
            "\n[[member]]\nname = \"{name}\"\nhostname = \"{name}.example.com\"\naddresses = [{{ ip = \"10.{}.{}.{}\", role = \"boot\" }}]\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        ));
    }
    std::fs::write(tree.join("cluster.toml"), cluster)?;
    Ok(keys)
}

/// The source address of member `i`: 127.1.0.0 + i (each member its own address).
pub fn source_address(i: usize) -> Ipv4Addr {
    let base = u32::from(Ipv4Addr::new(127, 1, 0, 0));
    Ipv4Addr::from(base.wrapping_add(u32::try_from(i).unwrap_or(0)))
}

/// What [`run`] is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory [`setup`] made.
    pub dir: PathBuf,
    /// How many members (the first `members` keys of the setup).
    pub members: usize,
    /// policyd's serving socket.
    pub server: SocketAddr,
    /// Each member's poll interval; member i first polls at `interval * i / members`.
    pub interval: Duration,
    /// Most polls in flight at once.
    pub concurrency: usize,
    /// The serial promoted before the run.
    pub first_serial: u64,
    /// A bundle of the first serial (as `tenet-keys sign` wrote it) that every member
    /// holds at the start, verified once here, as if they had synced it before; `None`:
    /// every member starts empty and fetches the first serial over the wire.
    pub seed: Option<PathBuf>,
    /// policyd's process, for its CPU time and peak memory.
    pub server_pid: Option<u32>,
    /// The least time the fleet polls the first serial before the new one is published.
    pub warmup: Duration,
    /// How long after publishing to wait for every member before giving up.
    pub deadline: Duration,
}

/// Publishes the new serial (promotes it on policyd); called once, off the runtime.
pub type Publish = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// One process's figures over the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcFigures {
    /// CPU time (utime + stime) over the whole run.
    pub cpu: Duration,
    /// CPU time from publishing to the last member holding the new serial.
    pub cpu_pickup: Duration,
    /// Peak resident memory (`VmHWM`), KB.
    pub hwm_kb: u64,
}

/// What the run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Members simulated.
    pub members: usize,
    /// Their poll interval.
    pub interval: Duration,
    /// Whether members started holding the first serial (`Options::seed`).
    pub seeded: bool,
    /// From the start until every member held the first serial (`None`: some never did).
    pub first_all: Option<Duration>,
    /// The serial published during the run.
    pub new_serial: Option<u64>,
    /// From the start of the run to publishing.
    pub published_at: Duration,
    /// From publishing until every member held the new serial (`None`: some never did).
    pub new_all: Option<Duration>,
    /// Pick-up times of the new serial after publishing: median and 90th percentile.
    pub new_p50_p90: (Duration, Duration),
    /// Members that never held the new serial.
    pub members_without_new: usize,
    /// Polls completed (each one connection).
    pub polls: u64,
    /// Polls that failed.
    pub failed_polls: u64,
    /// Members with at least one failed poll.
    pub members_failed: usize,
    /// Failed polls by kind, with one message of each.
    pub failures: BTreeMap<String, (u64, String)>,
    /// Manifests downloaded.
    pub manifests: u64,
    /// Blobs downloaded (each hashed).
    pub blobs: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Most polls in flight at once.
    pub max_in_flight: usize,
    /// Longest wait for a poll slot (the tool's own queue; near zero unless the tool
    /// is the bottleneck).
    pub max_slot_wait: Duration,
    /// policyd's figures.
    pub server: Option<ProcFigures>,
    /// This process's figures (the tool's own cost).
    pub tool: ProcFigures,
    /// Wall time of the whole run.
    pub wall: Duration,
}

impl Report {
    /// Every member holds the new serial, and no poll failed.
    pub fn is_clean(&self) -> bool {
        self.new_all.is_some() && self.members_without_new == 0 && self.failed_polls == 0
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "members {}  interval {}  start {}",
            self.members,
            secs(self.interval),
            if self.seeded {
                "holding the first serial (seeded)"
            } else {
                "empty (first serial fetched over the wire)"
            }
        )?;
        let opt = |d: Option<Duration>| d.map_or_else(|| "never".to_string(), secs);
        writeln!(
            f,
            "every member held the first serial after {}",
            opt(self.first_all)
        )?;
        writeln!(
            f,
            "new serial {} published at {}; every member held it {} after (p50 {}, p90 {}); without it: {}",
            self.new_serial
                .map_or_else(|| "-".to_string(), |s| s.to_string()),
            secs(self.published_at),
            opt(self.new_all),
            secs(self.new_p50_p90.0),
            secs(self.new_p50_p90.1),
            self.members_without_new
        )?;
        writeln!(
            f,
            "polls {}  failed {} (members with a failure: {})  manifests {}  blobs {}  received {:.1} MB",
            self.polls,
            self.failed_polls,
            self.members_failed,
            self.manifests,
            self.blobs,
            self.bytes as f64 / 1e6
        )?;
        for (kind, (count, example)) in &self.failures {
            writeln!(f, "  failure {kind}: {count} (e.g. {example})")?;
        }
        writeln!(
            f,
            "most polls in flight {}; longest wait for a slot {} ms",
            self.max_in_flight,
            self.max_slot_wait.as_millis()
        )?;
        let proc_line = |f: &mut fmt::Formatter<'_>, who: &str, p: &ProcFigures| {
            writeln!(
                f,
                "{who}: CPU {} over {} ({:.2} cores), {} from publishing to the last pick-up; VmHWM {} KB",
                secs(p.cpu),
                secs(self.wall),
                p.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9),
                secs(p.cpu_pickup),
                p.hwm_kb
            )
        };
        if let Some(server) = &self.server {
            proc_line(f, "policyd", server)?;
        }
        proc_line(f, "fleet tool", &self.tool)?;
        write!(
            f,
            "result: {}",
            if self.is_clean() { "PASS" } else { "FAIL" }
        )
    }
}

/// Runs the fleet: every member polls from the start; once every member holds the
/// first serial and `warmup` has passed, `publish` promotes the new one; the run ends
/// when every member holds a serial above the first, or `deadline` after publishing.
///
/// # Errors
/// If the setup cannot be read (keys, root, seed bundle) or the runtime not started;
/// failed polls are counted in the report, not errors.
pub fn run(opts: &Options, publish: Publish) -> Result<Report, Error> {
    let deploy = opts.dir.join("deploy");
    let root = TrustedRoot::bootstrap(
        &std::fs::read(deploy.join("root/1.root.toml"))?,
        &std::fs::read(deploy.join("root/1.root.toml.sig"))?,
        None,
    )?;
    let pins = root.root().transport.server_spki.clone();
    let mut start_state = TrustState::new(root);
    let mut start_held = Arc::new(HashSet::new());
    if let Some(seed) = &opts.seed {
        let clock = Clock::new(Time::from_system(SystemTime::now()));
        let verified = tenet_keys::verify_bundle(&start_state, seed, &clock)?;
        start_held = Arc::new(verified.files().iter().map(|e| e.sha256).collect());
        start_state = verified.into_state();
        if start_state.serial() != opts.first_serial {
            return Err(format!(
                "the seed bundle is serial {}, not the first serial {}",
                start_state.serial(),
                opts.first_serial
            )
            .into());
        }
    }
    let mut members = Vec::with_capacity(opts.members);
    for i in 0..opts.members {
        let name = member_name(i);
        let key = SecretKey::read(&opts.dir.join("nodes").join(format!("{name}.key")))?;
        let identity = Identity::new(&key, Subject::Member(name))?;
        // As `tenet-agent`'s fetch::client_config: the root's pins, HTTP/1.1, no resumption.
        let mut config = tls::client_config(&identity, pins.clone())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        members.push(Sim {
            index: i,
            source: source_address(i),
            tls: TlsConnector::from(Arc::new(config)),
            state: start_state.clone(),
            held: start_held.clone(),
        });
    }
    raise_open_files(opts.concurrency);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(drive(opts, members, publish))
}

/// Raises the soft open-file limit to the hard one when `concurrency` needs more.
fn raise_open_files(concurrency: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < (concurrency as u64).saturating_mul(2).saturating_add(256)
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// One simulated member.
struct Sim {
    index: usize,
    source: Ipv4Addr,
    tls: TlsConnector,
    state: TrustState,
    held: Arc<HashSet<Sha256Sum>>,
}

/// What every member task shares.
struct Shared {
    server: SocketAddr,
    start: Instant,
    first_serial: u64,
    slots: Semaphore,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    max_slot_wait_us: AtomicU64,
    polls: AtomicU64,
    failed: AtomicU64,
    manifests: AtomicU64,
    blobs: AtomicU64,
    bytes: AtomicU64,
    holding_first: AtomicUsize,
    holding_new: AtomicUsize,
    /// Per member: ms after the start at which it first held a serial above the first
    /// (0: not yet), and its failed polls.
    picked_ms: Vec<AtomicU64>,
    failures_of: Vec<AtomicU64>,
    new_serial: AtomicU64,
    failures: Mutex<BTreeMap<String, (u64, String)>>,
    verified: tokio::sync::Mutex<Vec<Arc<Verified>>>,
}

/// A manifest checked once, for every member whose download is the same bytes.
struct Verified {
    prior: Option<Sha256Sum>,
    timestamp_version: u64,
    /// The SHA-256 the timestamp named (the bytes hash to it: `check_manifest` said so).
    sha256: Sha256Sum,
    bytes: Vec<u8>,
    sig: Vec<u8>,
    state: TrustState,
    /// Its blobs, one entry per hash.
    unique: Arc<Vec<FileEntry>>,
    held: Arc<HashSet<Sha256Sum>>,
}

/// Most [`Verified`] entries kept.
const VERIFIED_KEPT: usize = 32;

async fn drive(opts: &Options, members: Vec<Sim>, publish: Publish) -> Result<Report, Error> {
    let n = members.len();
    let seeded = opts.seed.is_some();
    let shared = Arc::new(Shared {
        server: opts.server,
        start: Instant::now(),
        first_serial: opts.first_serial,
        slots: Semaphore::new(opts.concurrency.max(1)),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        max_slot_wait_us: AtomicU64::new(0),
        polls: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        manifests: AtomicU64::new(0),
        blobs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        holding_first: AtomicUsize::new(if seeded { n } else { 0 }),
        holding_new: AtomicUsize::new(0),
        picked_ms: (0..n).map(|_| AtomicU64::new(0)).collect(),
        failures_of: (0..n).map(|_| AtomicU64::new(0)).collect(),
        new_serial: AtomicU64::new(0),
        failures: Mutex::new(BTreeMap::new()),
        verified: tokio::sync::Mutex::new(Vec::new()),
    });
    let server0 = opts.server_pid.and_then(proc_cpu);
    let tool0 = proc_cpu(std::process::id());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(n);
    for m in members {
        let offset = opts.interval.mul_f64(m.index as f64 / n.max(1) as f64);
        tasks.push(tokio::spawn(member(
            m,
            shared.clone(),
            opts.interval,
            offset,
            stop_rx.clone(),
        )));
    }
    // Wait for the first serial everywhere, and the warm-up.
    let mut first_all = seeded.then_some(Duration::ZERO);
    loop {
        if first_all.is_none() && shared.holding_first.load(Ordering::Relaxed) >= n {
            first_all = Some(shared.start.elapsed());
        }
        if first_all.is_some() && shared.start.elapsed() >= opts.warmup {
            break;
        }
        if shared.start.elapsed() > opts.warmup + opts.deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published_at = shared.start.elapsed();
    let server_at_publish = opts.server_pid.and_then(proc_cpu);
    let tool_at_publish = proc_cpu(std::process::id());
    let published = if first_all.is_some() {
        match tokio::task::spawn_blocking(publish).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                note(&shared, "publish".to_string(), e);
                false
            }
            Err(e) => {
                note(&shared, "publish".to_string(), e.to_string());
                false
            }
        }
    } else {
        false
    };
    let mut new_all = None;
    if published {
        loop {
            if shared.holding_new.load(Ordering::Relaxed) >= n {
                new_all = Some(shared.start.elapsed().saturating_sub(published_at));
                break;
            }
            if shared.start.elapsed().saturating_sub(published_at) > opts.deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let server_at_end = opts.server_pid.and_then(proc_cpu);
    let tool_at_end = proc_cpu(std::process::id());
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let wall = shared.start.elapsed();
    let published_ms = u64::try_from(published_at.as_millis()).unwrap_or(u64::MAX);
    let mut picks: Vec<u64> = shared
        .picked_ms
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .filter(|&p| p > 0)
        .map(|p| p.saturating_sub(published_ms))
        .collect();
    picks.sort_unstable();
    let pct = |q: f64| {
        let i = ((picks.len() as f64 - 1.0) * q).round().max(0.0) as usize;
        Duration::from_millis(picks.get(i).copied().unwrap_or(0))
    };
    let figures = |pid: u32, at0: Option<Duration>, at_pub: Option<Duration>, at_end| {
        let d = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => Duration::ZERO,
        };
        ProcFigures {
            cpu: d(at0, at_end),
            cpu_pickup: d(at_pub, at_end),
            hwm_kb: proc_hwm_kb(pid).unwrap_or(0),
        }
    };
    let failures = shared
        .failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Ok(Report {
        members: n,
        interval: opts.interval,
        seeded,
        first_all,
        new_serial: match shared.new_serial.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        },
        published_at,
        new_all,
        new_p50_p90: (pct(0.5), pct(0.9)),
        members_without_new: n - picks.len(),
        polls: shared.polls.load(Ordering::Relaxed),
        failed_polls: shared.failed.load(Ordering::Relaxed),
        members_failed: shared
            .failures_of
            .iter()
            .filter(|f| f.load(Ordering::Relaxed) > 0)
            .count(),
        failures,
        manifests: shared.manifests.load(Ordering::Relaxed),
        blobs: shared.blobs.load(Ordering::Relaxed),
        bytes: shared.bytes.load(Ordering::Relaxed),
        max_in_flight: shared.max_in_flight.load(Ordering::Relaxed),
        max_slot_wait: Duration::from_micros(shared.max_slot_wait_us.load(Ordering::Relaxed)),
        server: opts
            .server_pid
            .map(|pid| figures(pid, server0, server_at_publish, server_at_end)),
        tool: figures(std::process::id(), tool0, tool_at_publish, tool_at_end),
        wall,
    })
}

/// One member's life: its first poll at `offset`, then one every `interval` (from
/// the start of the previous one, as a timer fires) until stopped.
async fn member(
    mut m: Sim,
    shared: Arc<Shared>,
    interval: Duration,
    offset: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = tokio::time::Instant::now() + offset;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        next += interval;
        let asked = Instant::now();
        let Ok(_slot) = shared.slots.acquire().await else {
            return;
        };
        let waited = u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX);
        shared.max_slot_wait_us.fetch_max(waited, Ordering::Relaxed);
        let now = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::Relaxed);
        let before = m.state.serial();
        let outcome = tokio::time::timeout(POLL_LIMIT, poll(&mut m, &shared)).await;
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        shared.polls.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed(&shared, m.index, e.kind(), e.to_string()),
            Err(_) => failed(
                &shared,
                m.index,
                "poll timeout".to_string(),
                format!("no end within {POLL_LIMIT:?}"),
            ),
        }
        let after = m.state.serial();
        if after != before {
            if before < shared.first_serial && after >= shared.first_serial {
                shared.holding_first.fetch_add(1, Ordering::Relaxed);
            }
            if after > shared.first_serial && shared.picked_ms[m.index].load(Ordering::Relaxed) == 0
            {
                let ms = u64::try_from(shared.start.elapsed().as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                shared.picked_ms[m.index].store(ms, Ordering::Relaxed);
                shared.new_serial.fetch_max(after, Ordering::Relaxed);
                shared.holding_new.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn failed(shared: &Shared, index: usize, kind: String, message: String) {
    shared.failed.fetch_add(1, Ordering::Relaxed);
    shared.failures_of[index].fetch_add(1, Ordering::Relaxed);
    note(shared, kind, message);
}

fn note(shared: &Shared, kind: String, message: String) {
    let mut f = shared
        .failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let e = f.entry(kind).or_insert((0, message));
    e.0 += 1;
}

/// The limit on one whole poll (the agent's per-request limit is 60 s).
const POLL_LIMIT: Duration = Duration::from_secs(120);
/// The limit on connecting (TCP and TLS), as the agent's default `connect_timeout`.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// What one `POST /v1/blobs` asks for at most (the agent's batch limits).
const BATCH_BLOBS: usize = 4096;
const BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The TCP connection was not made.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    /// Connecting took longer than the limit.
    #[error("no connection within {CONNECT_LIMIT:?}")]
    ConnectTimeout,
    /// The HTTP exchange broke.
    #[error("{what}: {source}")]
    Http {
        /// The request.
        what: String,
        /// The error.
        #[source]
        source: hyper::Error,
    },
    /// A status other than expected.
    #[error("{what}: status {status}")]
    Status {
        /// The request (route, without a hash).
        what: String,
        /// The status.
        status: StatusCode,
    },
    /// A body over its cap.
    #[error("{what}: body over {max} bytes")]
    TooLarge {
        /// The request.
        what: String,
        /// The cap.
        max: u64,
    },
    /// A document differs from the one its hash named (checked for another member).
    #[error("{what}: not the document the timestamp names")]
    Differs {
        /// The request.
        what: String,
    },
    /// A signed document or blob failed a check.
    #[error("verify: {0}")]
    Verify(#[from] VerifyError),
    /// Something the tool does not simulate (a root update).
    #[error("{0}")]
    Unsupported(String),
}

impl Failure {
    /// The kind, for counting.
    fn kind(&self) -> String {
        match self {
            Failure::Connect(e) => format!("connect {:?}", e.kind()),
            Failure::Tls(e) => format!("tls {:?}", e.kind()),
            Failure::ConnectTimeout => "connect timeout".to_string(),
            Failure::Http { what, .. } => format!("http {what}"),
            Failure::Status { what, status } => format!("{what} {}", status.as_u16()),
            Failure::TooLarge { what, .. } => format!("too large {what}"),
            Failure::Differs { what } => format!("differs {what}"),
            Failure::Verify(_) => "verify".to_string(),
            Failure::Unsupported(_) => "unsupported".to_string(),
        }
    }
}

/// One poll, as `tenet-agent run`'s sync: new connection, roots, timestamp, and when it
/// names a newer manifest, the manifest and the missing blobs.
async fn poll(m: &mut Sim, shared: &Shared) -> Result<(), Failure> {
    let mut sender = tokio::time::timeout(CONNECT_LIMIT, connect(m, shared.server))
        .await
        .map_err(|_| Failure::ConnectTimeout)??;
    let next = m.state.root().root().version.saturating_add(1);
    if get(
        &mut sender,
        shared,
        &format!("/v1/root/{next}"),
        Document::Root.max_bytes(),
    )
    .await?
    .is_some()
    {
        return Err(Failure::Unsupported(format!(
            "the master offers root {next}; the tool does not walk roots"
        )));
    }
    let ts = need(
        &mut sender,
        shared,
        "/v1/timestamp",
        Document::Timestamp.max_bytes(),
    )
    .await?;
    let ts_sig = need(
        &mut sender,
        shared,
        "/v1/timestamp/sig",
        MAX_SIGNATURE_BYTES,
    )
    .await?;
    let clock = Clock::new(Time::from_system(SystemTime::now()));
    let expected = match tenet_keys::check_timestamp(&m.state, &ts, &ts_sig, &clock)? {
        TimestampOutcome::Ignored { .. } if m.state.manifest_sha256().is_some() => return Ok(()),
        TimestampOutcome::Current { state, .. } => {
            m.state = *state;
            return Ok(());
        }
        TimestampOutcome::Newer(expected) => expected,
        other => {
            return Err(Failure::Unsupported(format!("timestamp outcome {other:?}")));
        }
    };
    let cap = expected.manifest().size.min(Document::Manifest.max_bytes());
    let v = match checked(shared, &m.state, &expected).await {
        // The same document was checked for a member in the same state: this download
        // must be it, byte for byte (compared as it streams, nothing held).
        Some(v) => {
            same(&mut sender, shared, "/v1/manifest", &v.bytes).await?;
            let sig = need(&mut sender, shared, "/v1/manifest/sig", MAX_SIGNATURE_BYTES).await?;
            if sig == v.sig {
                v
            } else {
                verify(shared, &m.state, v.bytes.clone(), sig, &expected, clock).await?
            }
        }
        None => {
            let manifest = need(&mut sender, shared, "/v1/manifest", cap).await?;
            let sig = need(&mut sender, shared, "/v1/manifest/sig", MAX_SIGNATURE_BYTES).await?;
            verify(shared, &m.state, manifest, sig, &expected, clock).await?
        }
    };
    shared.manifests.fetch_add(1, Ordering::Relaxed);
    let (state, unique, held) = (v.state.clone(), v.unique.clone(), v.held.clone());
    let missing: Vec<&FileEntry> = unique
        .iter()
        .filter(|e| !m.held.contains(&e.sha256))
        .collect();
    for batch in batches(&missing) {
        fetch_batch(&mut sender, shared, batch).await?;
    }
    m.state = state;
    m.held = held;
    Ok(())
}

/// A new TCP connection from the member's own address, the pinned TLS handshake with
/// its key, and HTTP/1.1 on it.
async fn connect(m: &Sim, server: SocketAddr) -> Result<SendRequest<Full<Bytes>>, Failure> {
    let socket = TcpSocket::new_v4().map_err(Failure::Connect)?;
    socket
        .bind(SocketAddr::new(IpAddr::V4(m.source), 0))
        .map_err(Failure::Connect)?;
    let tcp = socket.connect(server).await.map_err(Failure::Connect)?;
    let _ = tcp.set_nodelay(true);
    let tls = m
        .tls
        .connect(tls::server_name(), tcp)
        .await
        .map_err(Failure::Tls)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|source| Failure::Http {
            what: "handshake".to_string(),
            source,
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// `GET path`: the body of a 200 (at most `max` bytes), `None` on 404.
async fn get(
    sender: &mut SendRequest<Full<Bytes>>,
    shared: &Shared,
    path: &str,
    max: u64,
) -> Result<Option<Vec<u8>>, Failure> {
    let what = format!("GET {}", route(path));
    let http = |source| Failure::Http {
        what: what.clone(),
        source,
    };
    sender.ready().await.map_err(http)?;
    let req = Request::get(path)
        .header("host", tls::SERVER_NAME)
        .body(Full::new(Bytes::new()))
        .map_err(|e| Failure::Unsupported(format!("{what}: {e}")))?;
    let resp = sender.send_request(req).await.map_err(http)?;
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => {
            // Read the (small) body so the connection stays usable.
            let _ = resp.into_body().collect().await;
            return Ok(None);
        }
        status => return Err(Failure::Status { what, status }),
    }
    let mut body = resp.into_body();
    let mut out = Vec::with_capacity(usize::try_from(max.min(1 << 22)).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(http)?;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
            if out.len() as u64 > max {
                return Err(Failure::TooLarge { what, max });
            }
        }
    }
    shared.bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
    Ok(Some(out))
}

/// `GET path`, whose body must be `expected` byte for byte; compared as it streams.
async fn same(
    sender: &mut SendRequest<Full<Bytes>>,
    shared: &Shared,
    path: &str,
    expected: &[u8],
) -> Result<(), Failure> {
    let what = format!("GET {}", route(path));
    let http = |source| Failure::Http {
        what: what.clone(),
        source,
    };
    sender.ready().await.map_err(http)?;
    let req = Request::get(path)
        .header("host", tls::SERVER_NAME)
        .body(Full::new(Bytes::new()))
        .map_err(|e| Failure::Unsupported(format!("{what}: {e}")))?;
    let resp = sender.send_request(req).await.map_err(http)?;
    if resp.status() != StatusCode::OK {
        return Err(Failure::Status {
            what,
            status: resp.status(),
        });
    }
    let mut body = resp.into_body();
    let mut at = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(http)?;
        if let Ok(data) = frame.into_data() {
            let end = at + data.len();
            if expected.get(at..end) != Some(&data[..]) {
                return Err(Failure::Differs { what });
            }
            at = end;
        }
    }
    shared.bytes.fetch_add(at as u64, Ordering::Relaxed);
    if at == expected.len() {
        Ok(())
    } else {
        Err(Failure::Differs { what })
    }
}

/// `GET path`, which must be there.
async fn need(
    sender: &mut SendRequest<Full<Bytes>>,
    shared: &Shared,
    path: &str,
    max: u64,
) -> Result<Vec<u8>, Failure> {
    get(sender, shared, path, max)
        .await?
        .ok_or(Failure::Status {
            what: format!("GET {}", route(path)),
            status: StatusCode::NOT_FOUND,
        })
}

/// A path without its hash or version, for counting failures by kind.
fn route(path: &str) -> &str {
    if path.starts_with("/v1/root/") {
        "/v1/root/N"
    } else if path.starts_with("/v1/blob/") {
        "/v1/blob/H"
    } else {
        path
    }
}

/// The manifest the timestamp in `expected` names, already checked for a member in
/// `state` (same trusted manifest, same timestamp version), if any.
async fn checked(
    shared: &Shared,
    state: &TrustState,
    expected: &ExpectedManifest,
) -> Option<Arc<Verified>> {
    let prior = state.manifest_sha256();
    let cache = shared.verified.lock().await;
    cache
        .iter()
        .find(|v| {
            v.prior == prior
                && v.timestamp_version == expected.timestamp_version()
                && v.sha256 == expected.manifest().sha256
        })
        .cloned()
}

/// `check_manifest` of `bytes` for a member in `state`, its result kept for the
/// members that download the same document ([`checked`]). Checks run one at a time,
/// so members that ask together wait for the first and take its result.
async fn verify(
    shared: &Shared,
    state: &TrustState,
    bytes: Vec<u8>,
    sig: Vec<u8>,
    expected: &ExpectedManifest,
    clock: Clock,
) -> Result<Arc<Verified>, Failure> {
    let prior = state.manifest_sha256();
    let version = expected.timestamp_version();
    let sha256 = expected.manifest().sha256;
    let mut cache = shared.verified.lock().await;
    if let Some(v) = cache.iter().find(|v| {
        v.prior == prior && v.timestamp_version == version && v.bytes == bytes && v.sig == sig
    }) {
        return Ok(v.clone());
    }
    let (state, expected) = (state.clone(), expected.clone());
    let checked = tokio::task::spawn_blocking(move || {
        tenet_keys::check_manifest(&state, &bytes, &sig, Some(&expected), &clock)
            .map(|(state, manifest)| (state, manifest, bytes, sig))
    })
    .await
    .map_err(|e| Failure::Unsupported(format!("manifest check: {e}")))?;
    let (state, manifest, bytes, sig) = checked?;
    let mut seen = HashSet::new();
    let unique: Vec<FileEntry> = manifest
        .files
        .into_iter()
        .filter(|e| seen.insert(e.sha256))
        .collect();
    let v = Arc::new(Verified {
        prior,
        timestamp_version: version,
        sha256,
        bytes,
        sig,
        state,
        unique: Arc::new(unique),
        held: Arc::new(seen),
    });
    if cache.len() >= VERIFIED_KEPT {
        cache.remove(0);
    }
    cache.push(v.clone());
    Ok(v)
}

/// The missing blobs in batches within the agent's limits (a blob over the byte limit
/// goes alone).
fn batches<'a>(missing: &'a [&'a FileEntry]) -> Vec<&'a [&'a FileEntry]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, e) in missing.iter().enumerate() {
        if i > start && (i - start >= BATCH_BLOBS || bytes + e.size > BATCH_BYTES) {
            out.push(&missing[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += e.size;
    }
    if start < missing.len() {
        out.push(&missing[start..]);
    }
    out
}

/// One `POST /v1/blobs`: the answer split by the manifest's sizes, each blob checked
/// against its size and hash; bytes after the last blob fail it as too large.
async fn fetch_batch(
    sender: &mut SendRequest<Full<Bytes>>,
    shared: &Shared,
    batch: &[&FileEntry],
) -> Result<(), Failure> {
    let what = "POST /v1/blobs".to_string();
    let http = |source| Failure::Http {
        what: what.clone(),
        source,
    };
    let mut request = String::with_capacity(batch.len() * 65);
    for e in batch {
        request.push_str(&e.sha256.to_string());
        request.push('\n');
    }
    sender.ready().await.map_err(http)?;
    let req = Request::post("/v1/blobs")
        .header("host", tls::SERVER_NAME)
        .header("content-type", "application/octet-stream")
        .body(Full::new(Bytes::from(request)))
        .map_err(|e| Failure::Unsupported(format!("{what}: {e}")))?;
    let resp = sender.send_request(req).await.map_err(http)?;
    if resp.status() != StatusCode::OK {
        return Err(Failure::Status {
            what,
            status: resp.status(),
        });
    }
    let mut body: Incoming = resp.into_body();
    let mut entries = batch.iter();
    let mut current = entries.next();
    let mut buf: Vec<u8> = Vec::new();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(http)?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        received += data.len() as u64;
        while !data.is_empty() {
            let Some(entry) = current else {
                // Bytes after the last blob: it was longer than declared.
                let last = batch.last().map_or_else(String::new, |e| e.path.clone());
                return Err(VerifyError::BlobTooLarge {
                    path: last,
                    declared: batch.last().map_or(0, |e| e.size),
                }
                .into());
            };
            let want = usize::try_from(entry.size)
                .unwrap_or(usize::MAX)
                .saturating_sub(buf.len());
            let take = want.min(data.len());
            buf.extend_from_slice(&data.split_to(take));
            if buf.len() as u64 == entry.size {
                tenet_keys::check_blob(entry, &buf)?;
                shared.blobs.fetch_add(1, Ordering::Relaxed);
                buf.clear();
                current = entries.next();
            }
        }
    }
    shared.bytes.fetch_add(received, Ordering::Relaxed);
    match current {
        None => Ok(()),
        Some(entry) => {
            // An empty blob is complete without bytes.
            if entry.size == 0 && buf.is_empty() && entries.len() == 0 {
                return tenet_keys::check_blob(entry, &buf).map_err(Failure::from);
            }
            Err(VerifyError::BlobTooSmall {
                path: entry.path.clone(),
                declared: entry.size,
                found: buf.len() as u64,
            }
            .into())
        }
    }
}

/// utime + stime of process `pid` (`/proc/PID/stat`).
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Some(Duration::from_micros((utime + stime) * 1_000_000 / tick))
}

/// Peak resident memory of process `pid` in KB (`VmHWM` in `/proc/PID/status`).
pub fn proc_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
