//! `policyd.toml` → [`Config`]: read, parse with unknown fields refused, fill defaults,
//! check every value. Loading has no side effects: nothing is created, bound or opened
//! but the file itself.
//!
//! ```toml
//! member = "alpha"                                   # this member's name (certificate CN)
//! state_dir = "/var/lib/tenet/policyd"               # control socket (0700 directory)
//! node_key = "/var/lib/tenet/ppkeys/localhost.key"   # this member's identity key
//! trusted_root = "/var/lib/tenet/trust/root.toml"    # + root.toml.sig beside it
//!
//! [listener]
//! listen = "0.0.0.0:8740"
//!
//! [serve]
//! listen = "0.0.0.0:8741"
//! timestamp_key = "/srv/tenet/keys/timestamp.key"    # on the package filesystem
//! server_key = "/srv/tenet/keys/server-tls.key"      # on the package filesystem
//! timestamp_ttl = "6h"
//! watch_interval = "10s"
//! join_dir = "/srv/tenet/join"                       # opt-in: accept join requests
//!
//! [metrics]
//! listen = "127.0.0.1:8742"                          # or "off"
//!
//! [limits]
//! max_connections = 256
//! max_connections_per_address = 32
//! max_handshakes = 64
//! max_handshakes_per_address = 4
//! handshake_timeout = "3s"
//! header_read_timeout = "10s"
//! idle_timeout = "60s"
//! max_connection_age = "5m"
//! max_header_bytes = 16384
//! blob_memory = 33554432
//! drain_timeout = "10s"
//!
//! [run]
//! start = "auto"                                     # or "systemd-run", "direct"
//!
//! [reports]
//! database = "/srv/tenet/reports.db"                 # on the package filesystem
//! page = "127.0.0.1:8743"                            # or "off"
//! ```
//!
//! Relative paths are taken relative to the directory of the configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;
use tenet_policies::located;

/// Where `tenet-policyd` looks for its configuration by default.
pub const DEFAULT_CONFIG: &str = "/etc/tenet/policyd.toml";
/// The listener's default address: every member answers here.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8740";
/// The serving socket's default address, bound only while promoted.
pub const DEFAULT_SERVE_LISTEN: &str = "0.0.0.0:8741";
/// The metrics endpoint's default address (plain HTTP, loopback only by default).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:8742";
/// The status page's default address (plain HTTP, loopback only by default).
pub const DEFAULT_PAGE_LISTEN: &str = "127.0.0.1:8743";
/// The report database's default file name inside the state directory.
pub const DEFAULT_REPORTS_DB: &str = "reports.db";
/// The control socket's file name inside the state directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// Every field of `policyd.toml`, for `tenet-policyd serve --help`.
pub const FIELDS_HELP: &str = "\
Configuration file (TOML; relative paths are relative to the file's directory; a
DURATION/DUR is written as in policies: 500ms, 90s, 1h30m, 1d, see docs/policy.md):

  member = NAME              required. This member's name in the cluster config; it only
                             names the listener's certificate (CN \"tenet-member NAME\").
  state_dir = DIR            required. Holds the control socket DIR/control.sock that
                             promote, demote and status talk to. Created with mode 0700.
  node_key = FILE            required. This member's identity key (tenet-keys node-key),
                             mode 0600. The listener presents it.
  trusted_root = FILE        required. The deployment root this member trusts (FILE.sig
                             beside it). Every bundle is verified against it before it is
                             served; the served root history must lead to it.

  [listener]                 runs on every member, promoted or not
  listen = ADDR:PORT         default 0.0.0.0:8740. Mutual TLS with the node key; only the
                             admin keys of the newest verified root and enrolled members
                             get past the handshake; each route says whom it answers.

  [serve]                    bound only while promoted; agents fetch the bundle here
  listen = ADDR:PORT         default 0.0.0.0:8741. Mutual TLS with the policy server key
                             (pinned in the root); only enrolled members of the served
                             manifest get past the handshake (see join_dir).
  timestamp_key = FILE       the online timestamp key, used when promote has no
                             --timestamp-key (on the package filesystem).
  server_key = FILE          the policy server TLS key, used when promote has no
                             --server-key (on the package filesystem).
  timestamp_ttl = DURATION   default 6h (at least 2s). Each timestamp is valid this long
                             and is signed again every half of it.
  watch_interval = DURATION  default 10s. How often the promoted bundle directory is checked
                             for a new manifest (publish into a new directory and flip a
                             symlink; a newer serial is verified and served without restart).
  join_dir = DIR             off by default. Accept `tenet-agent join` (POST /v1/join): any
                             key that proves itself gets past the handshake, but a key that
                             is no enrolled member reaches only the join route. A join
                             token (tenet-keys join-token) is checked and its id recorded
                             in DIR/used-tokens.log; the request is stored in
                             DIR/requests/MEMBER.toml for `tenet-keys approve`.

  [run]                      pushed runs: POST /v1/run on the listener (tenet-agent push)
  agent = FILE               default /usr/sbin/tenet-agent. Started as
                             `tenet-agent run --json --config AGENT_CONFIG` for a pushed run.
  agent_config = FILE        default /etc/tenet/agent.toml.
  agent_state = DIR          default /var/lib/tenet. The agent's state directory: its
                             trust.toml holds the newest root it verified (admin keys and
                             scopes come from there, else from trusted_root) and run.lock
                             is the one-run-at-a-time lock pushed runs share.
  timeout = DURATION         default 10m. A pushed run still going after this is killed.
  start = MODE               default \"auto\": \"systemd-run\" when /run/systemd/system exists,
                             else \"direct\". \"systemd-run\" starts the agent as a transient
                             unit (systemd-run --unit=tenet-agent-push-ID --wait --collect
                             --pipe), outside this daemon's sandbox; \"direct\" starts it as
                             a child of this daemon, inside whatever sandbox it runs in.
  systemd_run = FILE         default /usr/bin/systemd-run.
  max_skew = DURATION        default 2m. How far in the future a request's issue time may
                             be (clock skew between the admin and this member).

  [metrics]
  listen = ADDR:PORT|\"off\"   default 127.0.0.1:8742. Plain-HTTP Prometheus endpoint
                             GET /metrics; keep it on loopback.

  [reports]                  members' run reports (POST /v1/report on the serving socket)
  database = FILE            default STATE_DIR/reports.db. The SQLite database of reports;
                             put it on the package filesystem so the history follows the
                             package on failover. Opened at the first report after
                             promotion, closed at demotion.
  max_age = DURATION         default 30d. Older reports are deleted.
  max_bytes = BYTES          default 1073741824 (1 GiB). Past it, the oldest are deleted.
  max_body = BYTES           default 1048576. Largest report accepted (413 beyond).
  burst = N                  default 100. Reports one member may send at once...
  per_minute = N             default 12. ...refilled at this rate; past it, 429.
  page = ADDR:PORT|\"off\"     default 127.0.0.1:8743. The read-only status page (plain
                             HTTP, no authentication): keep it on loopback.

  [limits]                   per TLS socket; a client over a limit is closed at once
  max_connections = N        default 256. Connections past their handshake.
  max_connections_per_address = N   default 32. Open connections (handshaking or not)
                             from one address (IPv6: one /64).
  max_handshakes = N         default 64. TLS handshakes in progress, from all addresses.
  max_handshakes_per_address = N    default 4. Handshakes in progress from one address.
                             Past either, a new connection ends the oldest handshake.
  handshake_timeout = DUR    default 3s. A TLS handshake must finish within this.
  header_read_timeout = DUR  default 10s. An HTTP/1.1 request head must arrive within this:
                             the first one after the handshake, a later one once it began.
  idle_timeout = DUR         default 60s. A connection with no bytes in either direction
                             for this long is closed (slow or stalled clients, and
                             keep-alive connections idle between requests).
  max_connection_age = DUR   default 5m. A connection this old is closed between
                             requests (keep-alive cannot hold a slot for ever).
  max_header_bytes = N       default 16384 (8192..=1048576). Largest request head;
                             larger ones get 431.
  blob_memory = BYTES        default 33554432 (32 MiB; at least 1048576). Blob bytes all
                             answers in flight together hold in memory; an answer waits
                             for room rather than go over.
  h2_max_concurrent_streams = N   accepted and ignored: both sockets speak HTTP/1.1 only.
  drain_timeout = DUR        default 10s. On SIGTERM or demotion, open connections get this
                             long to finish before they are closed.

Durations are a whole number and a unit: 500ms, 30s, 5m, 6h, 1d.";

/// The daemon's configuration, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// This member's name (the listener certificate's CN).
    pub member: String,
    /// Where the control socket lives.
    pub state_dir: PathBuf,
    /// This member's identity key.
    pub node_key: PathBuf,
    /// The trusted root (with `.sig` beside it).
    pub trusted_root: PathBuf,
    /// The always-on listener.
    pub listener: ListenerConfig,
    /// Serving the bundle while promoted.
    pub serve: ServeConfig,
    /// The metrics endpoint.
    pub metrics: MetricsConfig,
    /// Connection and request limits.
    pub limits: Limits,
    /// Pushed runs.
    pub run: RunConfig,
    /// Members' run reports and the status page.
    pub reports: ReportsConfig,
}

/// `[reports]`: members' run reports, where they are kept, and the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportsConfig {
    /// The SQLite database file.
    pub database: PathBuf,
    /// Reports older than this are deleted.
    pub max_age: Duration,
    /// Past this many bytes the oldest reports are deleted.
    pub max_bytes: u64,
    /// Largest report body accepted.
    pub max_body: u64,
    /// Reports one member may send at once.
    pub burst: u32,
    /// The rate the burst refills at, per minute.
    pub per_minute: u32,
    /// The status page's address, or `None` when turned off.
    pub page: Option<SocketAddr>,
}

/// `[run]`: how a pushed run is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// The agent binary.
    pub agent: PathBuf,
    /// The agent's configuration file.
    pub agent_config: PathBuf,
    /// The agent's state directory (trust state, run lock).
    pub agent_state: PathBuf,
    /// A pushed run is killed after this long.
    pub timeout: Duration,
    /// How far in the future a request's issue time may be.
    pub max_skew: Duration,
    /// How the agent is started.
    pub start: RunStart,
    /// The `systemd-run` binary, for [`RunStart::SystemdRun`].
    pub systemd_run: PathBuf,
}

/// `[run] start`: how a pushed run's agent is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStart {
    /// `systemd-run` when `/run/systemd/system` exists (decided at start-up), else
    /// `direct`.
    Auto,
    /// A transient systemd unit, outside policyd's own sandbox.
    SystemdRun,
    /// A child process of policyd.
    Direct,
}

/// The `systemd-run` binary's default path.
pub const DEFAULT_SYSTEMD_RUN: &str = "/usr/bin/systemd-run";

/// The agent binary's default path.
pub const DEFAULT_AGENT: &str = "/usr/sbin/tenet-agent";
/// The agent's default configuration.
pub const DEFAULT_AGENT_CONFIG: &str = "/etc/tenet/agent.toml";
/// The agent's default state directory.
pub const DEFAULT_AGENT_STATE: &str = "/var/lib/tenet";

/// `[listener]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The listener's address.
    pub listen: SocketAddr,
}

/// `[serve]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// The serving socket's address.
    pub listen: SocketAddr,
    /// The timestamp key when `promote` names none.
    pub timestamp_key: Option<PathBuf>,
    /// The policy server TLS key when `promote` names none.
    pub server_key: Option<PathBuf>,
    /// Lifetime of each timestamp; re-signed every half of it.
    pub timestamp_ttl: Duration,
    /// How often the bundle directory is checked for a new manifest.
    pub watch_interval: Duration,
    /// Where join requests and used token ids are kept; `None`: joins are refused.
    pub join_dir: Option<PathBuf>,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The endpoint's address, or `None` when turned off.
    pub listen: Option<SocketAddr>,
}

/// `[limits]`, each per TLS socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections past their handshake.
    pub max_connections: usize,
    /// Open connections (handshaking or past it) from one address (IPv6: one /64).
    pub max_connections_per_address: usize,
    /// TLS handshakes in progress.
    pub max_handshakes: usize,
    /// TLS handshakes in progress from one address.
    pub max_handshakes_per_address: usize,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for an HTTP/1.1 request head: the first from the end of the
    /// handshake, a later one from its first byte.
    pub header_read_timeout: Duration,
    /// A connection silent for this long is closed (also an idle keep-alive one).
    pub idle_timeout: Duration,
    /// A connection this old is closed between requests.
    pub max_connection_age: Duration,
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
    /// Blob bytes held in memory by all answers in flight together.
    pub blob_memory: u64,
    /// Time open connections get to finish on shutdown or demotion.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_connections_per_address: 32,
            max_handshakes: 64,
            max_handshakes_per_address: 4,
            handshake_timeout: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connection_age: Duration::from_secs(300),
            max_header_bytes: 16 * 1024,
            blob_memory: 32 * 1024 * 1024,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Smallest head limit hyper accepts for HTTP/1.1.
const MIN_HEADER_BYTES: usize = 8192;
/// Largest head limit allowed.
const MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Smallest blob memory budget: one chunk of every kind of answer must fit.
const MIN_BLOB_MEMORY: u64 = 1024 * 1024;
/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_capped(path)?;
        Config::parse(path, &text)
    }

    /// Parses and checks the text of `path` (relative paths resolve against its
    /// directory).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            at: located::at_offset(path, text, source.span().map_or(0, |s| s.start)),
            source: Box::new(source),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let invalid = |field: &'static str, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            at: located::at_field(path, text, field),
            field,
            problem,
        };
        let required = |field: &'static str, value: Option<PathBuf>| {
            value
                .map(|p| base.join(p))
                .ok_or_else(|| invalid(field, "is required".to_string()))
        };
        let member = raw
            .member
            .ok_or_else(|| invalid("member", "is required".to_string()))?;
        if !is_valid_name(&member) {
            return Err(invalid(
                "member",
                format!(
                    "{member:?} is not a member name (letters, digits, '-', '_', '.'; at most 128)"
                ),
            ));
        }
        let state_dir = required("state_dir", raw.state_dir)?;
        let node_key = required("node_key", raw.node_key)?;
        let trusted_root = required("trusted_root", raw.trusted_root)?;

        let listener = ListenerConfig {
            listen: address(
                raw.listener.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
                "listener.listen",
                &invalid,
            )?,
        };
        let duration_or = |field: &'static str, value: Option<&str>, default: Duration| {
            value.map_or(Ok(default), |text| {
                parse_duration(text).map_err(|problem| invalid(field, problem))
            })
        };
        let serve = ServeConfig {
            listen: address(
                raw.serve.listen.as_deref().unwrap_or(DEFAULT_SERVE_LISTEN),
                "serve.listen",
                &invalid,
            )?,
            timestamp_key: raw.serve.timestamp_key.map(|p| base.join(p)),
            server_key: raw.serve.server_key.map(|p| base.join(p)),
            timestamp_ttl: duration_or(
                "serve.timestamp_ttl",
                raw.serve.timestamp_ttl.as_deref(),
                Duration::from_secs(6 * 3600),
            )?,
            watch_interval: duration_or(
                "serve.watch_interval",
                raw.serve.watch_interval.as_deref(),
                Duration::from_secs(10),
            )?,
            join_dir: raw.serve.join_dir.map(|p| base.join(p)),
        };
        if serve.timestamp_ttl < Duration::from_secs(2) {
            return Err(invalid(
                "serve.timestamp_ttl",
                "must be at least 2s (the timestamp is signed again every half of it)".to_string(),
            ));
        }
        if serve.listen == listener.listen && serve.listen.port() != 0 {
            return Err(invalid(
                "serve.listen",
                format!(
                    "{} is also listener.listen; the serving socket needs its own port",
                    serve.listen
                ),
            ));
        }
        let metrics = MetricsConfig {
            listen: match raw.metrics.listen.as_deref() {
                Some("off") => None,
                other => Some(address(
                    other.unwrap_or(DEFAULT_METRICS_LISTEN),
                    "metrics.listen",
                    &invalid,
                )?),
            },
        };
        let d = Limits::default();
        let l = raw.limits;
        let limits = Limits {
            max_connections: l.max_connections.unwrap_or(d.max_connections),
            max_connections_per_address: l
                .max_connections_per_address
                .unwrap_or(d.max_connections_per_address),
            max_handshakes: l.max_handshakes.unwrap_or(d.max_handshakes),
            max_handshakes_per_address: l
                .max_handshakes_per_address
                .unwrap_or(d.max_handshakes_per_address),
            handshake_timeout: duration_or(
                "limits.handshake_timeout",
                l.handshake_timeout.as_deref(),
                d.handshake_timeout,
            )?,
            header_read_timeout: duration_or(
                "limits.header_read_timeout",
                l.header_read_timeout.as_deref(),
                d.header_read_timeout,
            )?,
            idle_timeout: duration_or(
                "limits.idle_timeout",
                l.idle_timeout.as_deref(),
                d.idle_timeout,
            )?,
            max_connection_age: duration_or(
                "limits.max_connection_age",
                l.max_connection_age.as_deref(),
                d.max_connection_age,
            )?,
            max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes),
            blob_memory: l.blob_memory.unwrap_or(d.blob_memory),
            drain_timeout: duration_or(
                "limits.drain_timeout",
                l.drain_timeout.as_deref(),
                d.drain_timeout,
            )?,
        };
        let r = raw.run;
        let run = RunConfig {
            agent: base.join(r.agent.unwrap_or_else(|| PathBuf::from(DEFAULT_AGENT))),
            agent_config: base.join(
                r.agent_config
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_AGENT_CONFIG)),
            ),
            agent_state: base.join(
                r.agent_state
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_AGENT_STATE)),
            ),
            timeout: duration_or(
                "run.timeout",
                r.timeout.as_deref(),
                Duration::from_secs(600),
            )?,
            max_skew: duration_or(
                "run.max_skew",
                r.max_skew.as_deref(),
                tenet_keys::runreq::DEFAULT_MAX_SKEW,
            )?,
            start: match r.start.as_deref() {
                None | Some("auto") => RunStart::Auto,
                Some("systemd-run") => RunStart::SystemdRun,
                Some("direct") => RunStart::Direct,
                Some(other) => {
                    return Err(invalid(
                        "run.start",
                        format!("{other:?} is not \"auto\", \"systemd-run\" or \"direct\""),
                    ));
                }
            },
            systemd_run: base.join(
                r.systemd_run
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_SYSTEMD_RUN)),
            ),
        };
        let rp = raw.reports;
        let reports = ReportsConfig {
            database: rp
                .database
                .map_or_else(|| state_dir.join(DEFAULT_REPORTS_DB), |p| base.join(p)),
            max_age: duration_or(
                "reports.max_age",
                rp.max_age.as_deref(),
                Duration::from_secs(30 * 86400),
            )?,
            max_bytes: rp.max_bytes.unwrap_or(1 << 30),
            max_body: rp.max_body.unwrap_or(1 << 20),
            burst: rp.burst.unwrap_or(100),
            per_minute: rp.per_minute.unwrap_or(12),
            page: match rp.page.as_deref() {
                Some("off") => None,
                other => Some(address(
                    other.unwrap_or(DEFAULT_PAGE_LISTEN),
                    "reports.page",
                    &invalid,
                )?),
            },
        };
        for (field, value) in [
            ("reports.burst", u64::from(reports.burst)),
            ("reports.per_minute", u64::from(reports.per_minute)),
            ("reports.max_body", reports.max_body),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1".to_string()));
            }
        }
        if run.timeout.is_zero() {
            return Err(invalid("run.timeout", "must be more than zero".to_string()));
        }
        for (field, value) in [
            ("limits.max_connections", limits.max_connections),
            (
                "limits.max_connections_per_address",
                limits.max_connections_per_address,
            ),
            ("limits.max_handshakes", limits.max_handshakes),
            (
                "limits.max_handshakes_per_address",
                limits.max_handshakes_per_address,
            ),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1".to_string()));
            }
        }
        if limits.blob_memory < MIN_BLOB_MEMORY {
            return Err(invalid(
                "limits.blob_memory",
                format!("must be at least {MIN_BLOB_MEMORY}"),
            ));
        }
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&limits.max_header_bytes) {
            return Err(invalid(
                "limits.max_header_bytes",
                format!(
                    "{} is outside {MIN_HEADER_BYTES}..={MAX_HEADER_BYTES}",
                    limits.max_header_bytes
                ),
            ));
        }
        for (field, value) in [
            ("limits.handshake_timeout", limits.handshake_timeout),
            ("limits.header_read_timeout", limits.header_read_timeout),
            ("limits.idle_timeout", limits.idle_timeout),
            ("limits.max_connection_age", limits.max_connection_age),
            ("serve.watch_interval", serve.watch_interval),
        ] {
            if value.is_zero() {
                return Err(invalid(field, "must be more than zero".to_string()));
            }
        }
        Ok(Config {
            path: path.to_path_buf(),
            member,
            state_dir,
            node_key,
            trusted_root,
            listener,
            serve,
            metrics,
            limits,
            run,
            reports,
        })
    }

    /// The control socket: `state_dir/control.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.state_dir.join(CONTROL_SOCKET)
    }
}

/// Parses a duration in tenet's one grammar ([`tenet_keys::time::parse_duration`]:
/// `500ms`, `90s`, `1h30m`, `1d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    tenet_keys::time::parse_duration(text).map_err(|e| e.to_string())
}

fn address(
    text: &str,
    field: &'static str,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        invalid(
            field,
            format!("{text:?} is not an address and port like 0.0.0.0:8740 or [::]:8740"),
        )
    })
}

/// The naming rule of members (the policy language's).
fn is_valid_name(name: &str) -> bool {
    name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn read_capped(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_CONFIG_BYTES,
        });
    }
    Ok(text)
}

/// The file as written: every field optional here, so that a missing field is
/// reported by name with the others checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    member: Option<String>,
    state_dir: Option<PathBuf>,
    node_key: Option<PathBuf>,
    trusted_root: Option<PathBuf>,
    #[serde(default)]
    listener: RawListener,
    #[serde(default)]
    serve: RawServe,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    run: RawRun,
    #[serde(default)]
    reports: RawReports,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReports {
    database: Option<PathBuf>,
    max_age: Option<String>,
    max_bytes: Option<u64>,
    max_body: Option<u64>,
    burst: Option<u32>,
    per_minute: Option<u32>,
    page: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    agent: Option<PathBuf>,
    agent_config: Option<PathBuf>,
    agent_state: Option<PathBuf>,
    timeout: Option<String>,
    max_skew: Option<String>,
    start: Option<String>,
    systemd_run: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    listen: Option<String>,
    timestamp_key: Option<PathBuf>,
    server_key: Option<PathBuf>,
    timestamp_ttl: Option<String>,
    watch_interval: Option<String>,
    join_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    max_handshakes: Option<usize>,
    max_handshakes_per_address: Option<usize>,
    handshake_timeout: Option<String>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connection_age: Option<String>,
    max_header_bytes: Option<usize>,
    blob_memory: Option<u64>,
    /// Accepted so that older files load; both sockets speak HTTP/1.1 only.
    #[expect(dead_code, reason = "read only so that older files still load")]
    h2_max_concurrent_streams: Option<u32>,
    drain_timeout: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "member = \"alpha\"\nstate_dir = \"state\"\nnode_key = \"node.key\"\ntrusted_root = \"/etc/tenet/root.toml\"\n";

    fn check(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            Path::new("/etc/tenet/policyd.toml"),
            &format!("{MINIMAL}{extra}"),
        )
    }

    fn invalid_field(extra: &str) -> &'static str {
        match check(extra) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn reports_defaults_and_checks() {
        let c = check("").unwrap();
        assert_eq!(
            c.reports.database,
            PathBuf::from("/etc/tenet/state/reports.db")
        );
        assert_eq!(c.reports.page, Some(DEFAULT_PAGE_LISTEN.parse().unwrap()));
        assert_eq!((c.reports.burst, c.reports.per_minute), (100, 12));
        let c =
            check("[reports]\ndatabase = \"../../srv/r.db\"\npage = \"off\"\nmax_age = \"7d\"\n")
                .unwrap();
        assert_eq!(
            c.reports.database,
            PathBuf::from("/etc/tenet/../../srv/r.db")
        );
        assert_eq!(c.reports.page, None);
        assert_eq!(c.reports.max_age, Duration::from_secs(7 * 86_400));
        assert_eq!(invalid_field("[reports]\nburst = 0\n"), "reports.burst");
        assert_eq!(
            invalid_field("[reports]\npage = \"nowhere\"\n"),
            "reports.page"
        );
        assert_eq!(
            invalid_field("[reports]\nmax_age = \"soon\"\n"),
            "reports.max_age"
        );
        assert!(matches!(
            check("[reports]\nunknown = 1\n"),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = check("").unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/etc/tenet/state"));
        assert_eq!(c.trusted_root, PathBuf::from("/etc/tenet/root.toml"));
        assert_eq!(c.listener.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.serve.listen, DEFAULT_SERVE_LISTEN.parse().unwrap());
        assert_eq!(
            c.metrics.listen,
            Some(DEFAULT_METRICS_LISTEN.parse().unwrap())
        );
        assert_eq!(c.serve.timestamp_ttl, Duration::from_secs(6 * 3600));
        assert_eq!(c.limits, Limits::default());
        assert_eq!(
            c.control_socket(),
            PathBuf::from("/etc/tenet/state/control.sock")
        );
    }

    #[test]
    fn every_section_parses() {
        let c = check(
            "[listener]\nlisten = \"127.0.0.1:0\"\n[serve]\nlisten = \"[::1]:9\"\ntimestamp_ttl = \"4s\"\nwatch_interval = \"250ms\"\ntimestamp_key = \"k/ts.key\"\n[metrics]\nlisten = \"off\"\n[limits]\nmax_connections = 3\nmax_header_bytes = 8192\nidle_timeout = \"2m\"\n",
        )
        .unwrap();
        assert_eq!(c.serve.watch_interval, Duration::from_millis(250));
        assert_eq!(
            c.serve.timestamp_key,
            Some(PathBuf::from("/etc/tenet/k/ts.key"))
        );
        assert_eq!(c.metrics.listen, None);
        assert_eq!(c.limits.max_connections, 3);
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.run.start, RunStart::Auto);
        let c = check(
            "[run]\nstart = \"systemd-run\"\nsystemd_run = \"bin/sr\"\n[limits]\nh2_max_concurrent_streams = 8\n",
        )
        .unwrap();
        assert_eq!(c.run.start, RunStart::SystemdRun);
        assert_eq!(c.run.systemd_run, PathBuf::from("/etc/tenet/bin/sr"));
    }

    #[test]
    fn bad_values_name_their_field() {
        assert_eq!(
            invalid_field("[listener]\nlisten = \"localhost:80\"\n"),
            "listener.listen"
        );
        assert_eq!(
            invalid_field("[serve]\ntimestamp_ttl = \"1s\"\n"),
            "serve.timestamp_ttl"
        );
        assert_eq!(
            invalid_field("[serve]\nwatch_interval = \"10 s\"\n"),
            "serve.watch_interval"
        );
        assert_eq!(
            invalid_field("[limits]\nmax_header_bytes = 100\n"),
            "limits.max_header_bytes"
        );
        assert_eq!(
            invalid_field("[limits]\nmax_connections = 0\n"),
            "limits.max_connections"
        );
        assert_eq!(
            invalid_field("[limits]\nidle_timeout = \"0s\"\n"),
            "limits.idle_timeout"
        );
        assert_eq!(
            invalid_field("[serve]\nlisten = \"0.0.0.0:8740\"\n"),
            "serve.listen"
        );
        assert_eq!(
            invalid_field("[limits]\nmax_handshakes_per_address = 0\n"),
            "limits.max_handshakes_per_address"
        );
        assert_eq!(
            invalid_field("[limits]\nblob_memory = 65536\n"),
            "limits.blob_memory"
        );
        assert_eq!(
            invalid_field("[limits]\nmax_connection_age = \"0s\"\n"),
            "limits.max_connection_age"
        );
        assert_eq!(invalid_field("[run]\nstart = \"sometimes\"\n"), "run.start");
        let missing = Config::parse(Path::new("p.toml"), "member = \"a\"\n");
        assert!(matches!(
            missing,
            Err(ConfigError::Invalid {
                field: "state_dir",
                ..
            })
        ));
        assert!(matches!(
            Config::parse(Path::new("p.toml"), "state_dir = \"s\"\n"),
            Err(ConfigError::Invalid {
                field: "member",
                ..
            })
        ));
    }

    #[test]
    fn unknown_fields_are_refused_with_their_location() {
        let err = check("[limits]\nmax_conections = 3\n").unwrap_err();
        let ConfigError::Parse { source, .. } = &err else {
            panic!("{err:?}")
        };
        let text = source.to_string();
        assert!(text.contains("max_conections"), "{text}");
        assert!(text.contains("line 6"), "{text}");
    }
}
