//! The daemon's life, in the workspace's start-up order:
//!
//! 1. the configuration is loaded and checked ([`crate::config::Config::load`], no side
//!    effects);
//! 2. [`Daemon::build`] reads the node key and the trusted root, prepares the state
//!    directory and binds the listener, the metrics endpoint and the control socket;
//! 3. [`Daemon::log_addresses`] logs what was bound;
//! 4. [`Daemon::run`] spawns the accept loops;
//! 5. and waits for SIGTERM or SIGINT;
//! 6. then stops accepting, demotes, and gives open connections `drain_timeout` to
//!    finish.
//!
//! **Invariant:** the listener runs from start-up to shutdown whatever the promotion
//! state; promotion binds and closes only the serving socket.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, RwLock};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tenet_keys::tls::{Identity, Subject};
use tenet_keys::{SecretKey, TrustState, TrustedRoot};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::config::RunStart;
use crate::control;
use crate::error::DaemonError;
use crate::http;
use crate::metrics::{Gauges, LastReport, Metrics, Site};
use crate::promotion;
use crate::reportdb::{ReportDb, Retention};
use crate::shared::Shared;
use crate::shared::promotion_state::Promotion;
use crate::shared::report_limit::ReportLimit;
use crate::shutdown::{Stop, Tracker};
use crate::trusted::ListenerKeys;
use crate::trusted::read_trusted_root;

pub use crate::shared::Addresses;

/// Concurrent connections to the metrics endpoint.
const MAX_METRICS_CONNECTIONS: usize = 8;

/// A daemon whose sockets are bound and keys loaded, not yet running.
#[derive(Debug)]
pub struct Daemon {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    listener: TcpListener,
    listener_tls: Arc<rustls::ServerConfig>,
    metrics: Option<TcpListener>,
    page: Option<TcpListener>,
    control: UnixListener,
}

/// Runs the daemon from a checked configuration until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<(), DaemonError> {
    let daemon = Daemon::build(config).await?;
    daemon.log_addresses();
    let signals = shutdown_signals()?;
    daemon.run(signals).await;
    Ok(())
}

impl Daemon {
    /// Reads the keys and trust, prepares the state directory and binds every socket.
    pub async fn build(config: Config) -> Result<Daemon, DaemonError> {
        let node_key =
            SecretKey::read(&config.node_key).map_err(|source| DaemonError::NodeKey {
                path: config.node_key.clone(),
                source,
            })?;
        let trusted = read_trusted_root(&config.trusted_root)?;
        let identity = Identity::new(&node_key, Subject::Member(config.member.clone()))
            .map_err(|source| DaemonError::Tls { source })?;

        prepare_state_dir(&config.state_dir)?;
        let ratchet = load_ratchet(&config.state_dir, trusted.clone())?;
        let promotion = Promotion::new(ratchet);
        let keys = Arc::new(ListenerKeys::new(
            trusted.root().clone(),
            config.run.agent_state.clone(),
            promotion.pins(),
        ));
        keys.refresh();
        let listener_tls = http::server_config(&identity, keys.clone())
            .map_err(|source| DaemonError::Tls { source })?;
        let socket_path = config.control_socket();
        let control = bind_control(&socket_path)?;

        let bind = |what: &'static str, address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| DaemonError::Bind {
                    what,
                    address: address.to_string(),
                    source,
                })
        };
        let listener = bind("listener", config.listener.listen).await?;
        let metrics = match config.metrics.listen {
            Some(a) => Some(bind("metrics endpoint", a).await?),
            None => None,
        };
        let page = match config.reports.page {
            Some(a) => Some(bind("status page", a).await?),
            None => None,
        };
        let addresses = Addresses {
            listener: listener.local_addr().unwrap_or(config.listener.listen),
            metrics: metrics.as_ref().and_then(|m| m.local_addr().ok()),
            page: page.as_ref().and_then(|p| p.local_addr().ok()),
            control: socket_path,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let run_start = resolve_run_start(config.run.start);
        let shared = Arc::new(Shared {
            keys,
            run_start,
            blob_memory: crate::shared::blob_memory::BlobMemory::new(config.limits.blob_memory),
            runs: crate::shared::runs::Runs::default(),
            reports: ReportDb::new(
                config.reports.database.clone(),
                Retention {
                    max_age: config.reports.max_age,
                    max_bytes: config.reports.max_bytes,
                },
            ),
            report_limit: ReportLimit::default(),
            promotion,
            metrics: Metrics::default(),
            connections: Tracker::default(),
            shutdown: shutdown_rx,
            addresses,
            config,
        });
        Ok(Daemon {
            shared,
            shutdown,
            listener,
            listener_tls: Arc::new(listener_tls),
            metrics,
            page,
            control,
        })
    }

    /// What was bound.
    pub fn addresses(&self) -> &Addresses {
        &self.shared.addresses
    }

    /// Logs the bound addresses.
    pub fn log_addresses(&self) {
        let a = &self.shared.addresses;
        info!(
            listener = %a.listener,
            metrics = %a.metrics.map_or_else(|| "off".to_string(), |m| m.to_string()),
            page = %a.page.map_or_else(|| "off".to_string(), |m| m.to_string()),
            control = %a.control.display(),
            serve = %self.shared.config.serve.listen,
            "tenet-policyd listening; the serving socket is bound on promotion"
        );
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shared = self.shared;
        let stop = Stop::global(shared.shutdown.clone());
        let listener = tokio::spawn(http::serve_tls(
            shared.clone(),
            Site::Listener,
            self.listener,
            Arc::new(RwLock::new(self.listener_tls)),
            stop.clone(),
        ));
        let control = tokio::spawn(control::serve(shared.clone(), self.control, stop.clone()));
        let refresh = tokio::spawn(refresh_keys(shared.clone(), stop.clone()));
        let metrics = self
            .metrics
            .map(|m| tokio::spawn(serve_metrics(shared.clone(), m, stop.clone())));
        let page = self
            .page
            .map(|p| tokio::spawn(crate::page::serve(shared.clone(), p, stop.clone())));

        shutdown.await;
        info!(
            open = shared.connections.open(),
            "shutting down: no new connections"
        );
        let _ = self.shutdown.send(true);
        promotion::demote(&shared).await;
        let _ = listener.await;
        let _ = control.await;
        let _ = refresh.await;
        if let Some(m) = metrics {
            let _ = m.await;
        }
        if let Some(p) = page {
            let _ = p.await;
        }
        let deadline = Instant::now() + shared.config.limits.drain_timeout;
        let left = shared.connections.wait_idle(deadline).await;
        if left > 0 {
            warn!(
                open = left,
                "closing connections still open after the drain deadline"
            );
        }
        if let Err(e) = std::fs::remove_file(&shared.addresses.control) {
            debug!(error = %e, "cannot remove the control socket");
        }
        info!("stopped");
    }
}

/// Reads the agent's trust state again whenever it changes (see [`crate::trusted`]).
async fn refresh_keys(shared: Arc<Shared>, mut stop: Stop) {
    let mut every = tokio::time::interval(crate::trusted::REFRESH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.wait() => return,
            _ = every.tick() => {
                let keys = shared.keys.clone();
                let _ = tokio::task::spawn_blocking(move || keys.refresh()).await;
            }
        }
    }
}

/// `[run] start = "auto"` made definite: `systemd-run` under systemd, else `direct`.
fn resolve_run_start(start: RunStart) -> RunStart {
    let resolved = match start {
        RunStart::Auto if Path::new("/run/systemd/system").is_dir() => RunStart::SystemdRun,
        RunStart::Auto => RunStart::Direct,
        other => other,
    };
    info!(start = ?resolved, "pushed runs start this way");
    resolved
}

/// Resolves on the first SIGTERM or SIGINT. Installed before the daemon runs, so a
/// failure is reported at start-up.
pub fn shutdown_signals() -> Result<impl Future<Output = ()>, DaemonError> {
    let signals_err = |source| DaemonError::Signals { source };
    let mut term = signal(SignalKind::terminate()).map_err(signals_err)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signals_err)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM"),
            _ = int.recv() => info!("SIGINT"),
        }
    })
}

/// Creates the state directory if needed and makes it owner-only.
fn prepare_state_dir(dir: &Path) -> Result<(), DaemonError> {
    let err = |source| DaemonError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// Binds the control socket (mode 0600), replacing a stale one that nobody answers.
fn bind_control(path: &Path) -> Result<UnixListener, DaemonError> {
    let bind_err = |source| DaemonError::Bind {
        what: "control socket",
        address: path.display().to_string(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(DaemonError::AlreadyRunning {
                    socket: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        Ok(_) => {
            return Err(bind_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// The plain-HTTP metrics endpoint: `GET /metrics` and nothing else.
async fn serve_metrics(shared: Arc<Shared>, tcp: TcpListener, stop: Stop) {
    crate::http::serve_plain(
        shared,
        tcp,
        stop,
        MAX_METRICS_CONNECTIONS,
        "metrics",
        |shared, req| async move { metrics_response(&shared, &req) },
    )
    .await;
}

fn metrics_response(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"GET /metrics only\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let snapshot = shared.promotion.snapshot();
    // Only while serving: the database is on the package filesystem.
    let reports = if snapshot.is_some() {
        last_reports(shared)
    } else {
        Vec::new()
    };
    let gauges = Gauges {
        serving: snapshot.as_ref().map(|s| s.bundle.serial()),
        timestamp_version: snapshot.as_ref().map_or(0, |s| s.timestamp.version),
        timestamp_expires: snapshot.as_ref().map_or(0, |s| s.timestamp.expires.unix()),
        manifest_expires: snapshot
            .as_ref()
            .map_or(0, |s| s.bundle.manifest().expires.unix()),
        root_expires: snapshot
            .as_ref()
            .map_or(0, |s| s.bundle.state().root().root().expires.unix()),
        members: snapshot
            .as_ref()
            .map_or(&[][..], |s| &s.bundle.manifest().members),
        reports: &reports,
        now: crate::shared::now().unix(),
    };
    let mut r = Response::new(Full::new(Bytes::from(shared.metrics.render(&gauges))));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Each member's last report, from the report database (none if it cannot be read).
fn last_reports(shared: &Shared) -> Vec<LastReport> {
    let path = shared.reports.path();
    if !path.exists() {
        return Vec::new();
    }
    let read = crate::reportdb::open_read(path).and_then(|conn| {
        crate::reportdb::latest(&conn).map_err(|source| crate::reportdb::StoreError::Sqlite {
            path: path.to_path_buf(),
            what: "read the last reports",
            source,
        })
    });
    match read {
        Ok(latest) => latest
            .into_iter()
            .map(|s| LastReport {
                failures: s.report.failed + s.report.blocked,
                received: s.report.received,
                member: s.report.member,
            })
            .collect(),
        Err(e) => {
            warn!(error = %tenet_keys::error_chain(&e), "metrics: report database unreadable");
            Vec::new()
        }
    }
}

/// The trust state this member last served from (so a restart never serves an older
/// serial), or a fresh one anchored at the configured root.
fn load_ratchet(state_dir: &Path, trusted: TrustedRoot) -> Result<TrustState, DaemonError> {
    let path = state_dir.join(crate::promotion::RATCHET_FILE);
    let fail = |reason: String| DaemonError::Ratchet {
        path: path.clone(),
        reason,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TrustState::new(trusted));
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let state = TrustState::from_toml(&text).map_err(|e| fail(tenet_keys::error_chain(&e)))?;
    let (persisted, configured) = (state.root().root(), trusted.root());
    if persisted.deployment != configured.deployment {
        return Err(fail(format!(
            "it belongs to deployment {}, the trusted root to {}",
            persisted.deployment, configured.deployment
        )));
    }
    if persisted.version < configured.version {
        warn!(
            path = %path.display(),
            persisted = persisted.version,
            configured = configured.version,
            "the configured root is newer than the persisted ratchet's; starting from the configured root"
        );
        return Ok(TrustState::new(trusted));
    }
    info!(serial = state.serial(), path = %path.display(), "ratchet restored: never serving an older serial");
    Ok(state)
}
