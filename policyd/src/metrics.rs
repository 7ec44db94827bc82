//! Counters and gauges, rendered by hand in the Prometheus text exposition format
//! (version 0.0.4) for `GET /metrics` on the metrics endpoint.
//!
//! Label values come from closed sets (the route table, the two TLS sockets, the
//! refusal reasons, a pushed run's exit codes) or from the served manifest's inventory
//! (member names), never from request text, so a client cannot grow the label space.
//! `docs/metrics.md` lists every metric.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tenet_keys::{KeyId, MemberEntry};

/// The two TLS sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Site {
    /// The always-on listener (node key).
    Listener,
    /// The serving socket, bound while promoted (policy server key).
    Serving,
}

impl Site {
    /// The label value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Site::Listener => "listener",
            Site::Serving => "serve",
        }
    }
}

/// Why a TLS connection did not get to HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum HandshakeRefusal {
    /// The client's key is not admitted (not an enrolled member).
    NotAdmitted,
    /// The client sent no certificate.
    NoCertificate,
    /// The handshake did not finish in time.
    Timeout,
    /// Any other TLS failure (protocol, version, malformed certificate).
    Failed,
    /// Closed on accept: its address already holds as many connections, all past their
    /// handshake, as one address may.
    AddressLimit,
    /// Closed during its handshake: the oldest in progress, its slot taken by a newer
    /// connection.
    Evicted,
    /// Closed after the handshake: as many connections as the socket allows are open.
    ConnectionLimit,
}

impl HandshakeRefusal {
    /// The label value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HandshakeRefusal::NotAdmitted => "not_admitted",
            HandshakeRefusal::NoCertificate => "no_certificate",
            HandshakeRefusal::Timeout => "timeout",
            HandshakeRefusal::Failed => "failed",
            HandshakeRefusal::AddressLimit => "address_limit",
            HandshakeRefusal::Evicted => "evicted",
            HandshakeRefusal::ConnectionLimit => "connection_limit",
        }
    }
}

/// The daemon's metrics; clones share them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    requests: Mutex<BTreeMap<(Site, &'static str, u16), u64>>,
    refusals: Mutex<BTreeMap<(Site, HandshakeRefusal), u64>>,
    open_listener: AtomicU64,
    open_serving: AtomicU64,
    handshaking_listener: AtomicU64,
    handshaking_serving: AtomicU64,
    blob_reads: AtomicU64,
    bundles_refused: AtomicU64,
    runs_accepted: AtomicU64,
    runs_refused: Mutex<BTreeMap<&'static str, u64>>,
    runs_finished: Mutex<BTreeMap<RunEnd, u64>>,
    reports_stored: AtomicU64,
    reports_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Unix time of each member's last timestamp fetch, by key id; only enrolled
    /// members' keys are ever entered, and keys no longer enrolled are dropped.
    last_fetch: Mutex<HashMap<KeyId, u64>>,
}

/// How a pushed run's agent ended: the `code` label of `tenet_policyd_runs_finished_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RunEnd {
    /// It exited with this code (0–255).
    Exit(u8),
    /// A signal ended it (the run timeout's kill included).
    Signal,
}

impl RunEnd {
    /// From the exit status's code: `None` when a signal ended the process.
    pub(crate) fn from_code(code: Option<i32>) -> RunEnd {
        code.and_then(|c| u8::try_from(c).ok())
            .map_or(RunEnd::Signal, RunEnd::Exit)
    }

    fn label(self) -> String {
        match self {
            RunEnd::Exit(c) => c.to_string(),
            RunEnd::Signal => "signal".to_string(),
        }
    }
}

/// Values read from the daemon's state when rendering.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gauges<'a> {
    /// The served manifest's serial; `None` while only listening. (A serial rather than
    /// [`crate::promotion::State`], so that counting does not depend on promotion.)
    pub(crate) serving: Option<u64>,
    /// The served timestamp's version (0 when not serving).
    pub(crate) timestamp_version: u64,
    /// The served timestamp's expiry, unix seconds (0 when not serving).
    pub(crate) timestamp_expires: u64,
    /// The served manifest's expiry, unix seconds (0 when not serving).
    pub(crate) manifest_expires: u64,
    /// The served bundle's newest root's expiry, unix seconds (0 when not serving).
    pub(crate) root_expires: u64,
    /// The served manifest's inventory (empty when not serving): whose last fetch is shown.
    pub(crate) members: &'a [MemberEntry],
    /// Each reporting member's last report in the report database (empty when it is
    /// not open): its name, when it arrived (unix seconds) and its failed and blocked
    /// promises.
    pub(crate) reports: &'a [LastReport],
    /// The clock, unix seconds (for report ages).
    pub(crate) now: u64,
}

/// A member's last report, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastReport {
    /// The member.
    pub(crate) member: String,
    /// When the report arrived, unix seconds.
    pub(crate) received: u64,
    /// Its failed and blocked promises.
    pub(crate) failures: u64,
}

impl Metrics {
    /// Counts an answered request.
    pub(crate) fn request(&self, site: Site, route: &'static str, status: u16) {
        *lock(&self.0.requests)
            .entry((site, route, status))
            .or_default() += 1;
    }

    /// Counts a TLS connection that did not reach HTTP.
    pub(crate) fn handshake_refused(&self, site: Site, why: HandshakeRefusal) {
        *lock(&self.0.refusals).entry((site, why)).or_default() += 1;
    }

    /// Counts a blob read from the blob store.
    pub(crate) fn blob_read(&self) {
        self.0.blob_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a bundle refused at promotion or pick-up.
    pub(crate) fn bundle_refused(&self) {
        self.0.bundles_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a report stored.
    pub(crate) fn report_stored(&self) {
        self.0.reports_stored.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a report refused, by reason.
    pub(crate) fn report_refused(&self, reason: &'static str) {
        *lock(&self.0.reports_refused).entry(reason).or_default() += 1;
    }

    /// Counts a run request that passed every check (a second one attached to the run
    /// in progress included).
    pub(crate) fn run_accepted(&self) {
        self.0.runs_accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused run request; `reason` is the `reason` of its `refused` line.
    pub(crate) fn run_refused(&self, reason: &'static str) {
        *lock(&self.0.runs_refused).entry(reason).or_default() += 1;
    }

    /// Counts a pushed run's agent that ended.
    pub(crate) fn run_finished(&self, end: RunEnd) {
        *lock(&self.0.runs_finished).entry(end).or_default() += 1;
    }

    /// Records that `member`, an enrolled member of `enrolled`, fetched the timestamp
    /// at `now` (unix seconds). Keys no longer enrolled are dropped, so the map never
    /// holds more than the inventory.
    pub(crate) fn timestamp_fetched(&self, member: KeyId, enrolled: &HashSet<KeyId>, now: u64) {
        if !enrolled.contains(&member) {
            return;
        }
        let mut map = lock(&self.0.last_fetch);
        map.insert(member, now);
        if map.len() > enrolled.len() {
            map.retain(|k, _| enrolled.contains(k));
        }
    }

    /// Marks a connection open until the guard drops.
    pub(crate) fn connection(&self, site: Site) -> OpenConnection {
        self.gauge(site).fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            metrics: self.clone(),
            site,
        }
    }

    /// Connections open now on `site`.
    pub(crate) fn open_connections(&self, site: Site) -> u64 {
        self.gauge(site).load(Ordering::Relaxed)
    }

    /// Sets the number of TLS handshakes in progress on `site`.
    pub(crate) fn handshakes_in_progress(&self, site: Site, n: usize) {
        let gauge = match site {
            Site::Listener => &self.0.handshaking_listener,
            Site::Serving => &self.0.handshaking_serving,
        };
        gauge.store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Blobs read from the blob store so far.
    pub(crate) fn blob_reads(&self) -> u64 {
        self.0.blob_reads.load(Ordering::Relaxed)
    }

    /// The exposition text.
    pub(crate) fn render(&self, gauges: &Gauges<'_>) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "tenet_policyd_build_info",
            "gauge",
            "Always 1; the version of tenet-policyd running.",
        );
        let _ = writeln!(
            out,
            "tenet_policyd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        header(
            &mut out,
            "tenet_policyd_requests_total",
            "counter",
            "HTTP requests answered, by socket, route and status.",
        );
        for ((site, route, status), n) in lock(&self.0.requests).iter() {
            let _ = writeln!(
                out,
                "tenet_policyd_requests_total{{socket=\"{}\",route=\"{route}\",status=\"{status}\"}} {n}",
                site.name()
            );
        }
        header(
            &mut out,
            "tenet_policyd_handshakes_refused_total",
            "counter",
            "TLS connections that did not reach HTTP, by socket and reason.",
        );
        for ((site, why), n) in lock(&self.0.refusals).iter() {
            let _ = writeln!(
                out,
                "tenet_policyd_handshakes_refused_total{{socket=\"{}\",reason=\"{}\"}} {n}",
                site.name(),
                why.name()
            );
        }
        header(
            &mut out,
            "tenet_policyd_connections_open",
            "gauge",
            "TLS connections open now, by socket.",
        );
        for site in [Site::Listener, Site::Serving] {
            let _ = writeln!(
                out,
                "tenet_policyd_connections_open{{socket=\"{}\"}} {}",
                site.name(),
                self.open_connections(site)
            );
        }
        header(
            &mut out,
            "tenet_policyd_handshakes_in_progress",
            "gauge",
            "TLS handshakes in progress now, by socket.",
        );
        for (site, gauge) in [
            (Site::Listener, &self.0.handshaking_listener),
            (Site::Serving, &self.0.handshaking_serving),
        ] {
            let _ = writeln!(
                out,
                "tenet_policyd_handshakes_in_progress{{socket=\"{}\"}} {}",
                site.name(),
                gauge.load(Ordering::Relaxed)
            );
        }
        let (promoted, serial) = match gauges.serving {
            None => (0, 0),
            Some(serial) => (1, serial),
        };
        let single = [
            (
                "tenet_policyd_promoted",
                "gauge",
                "1 while this member serves the bundle, else 0.",
                promoted,
            ),
            (
                "tenet_policyd_serving_serial",
                "gauge",
                "Serial of the manifest served (0 when not serving).",
                serial,
            ),
            (
                "tenet_policyd_timestamp_version",
                "gauge",
                "Version (unix seconds) of the timestamp served (0 when not serving).",
                gauges.timestamp_version,
            ),
            (
                "tenet_policyd_timestamp_expiry_seconds",
                "gauge",
                "Expiry of the timestamp served, unix seconds (0 when not serving).",
                gauges.timestamp_expires,
            ),
            (
                "tenet_policyd_manifest_expiry_seconds",
                "gauge",
                "Expiry of the manifest served, unix seconds (0 when not serving).",
                gauges.manifest_expires,
            ),
            (
                "tenet_policyd_root_expiry_seconds",
                "gauge",
                "Expiry of the newest root of the bundle served, unix seconds (0 when not serving).",
                gauges.root_expires,
            ),
            (
                "tenet_policyd_runs_accepted_total",
                "counter",
                "Pushed-run requests accepted (attached to a run in progress included).",
                self.0.runs_accepted.load(Ordering::Relaxed),
            ),
            (
                "tenet_policyd_blob_reads_total",
                "counter",
                "Blobs read from the bundle's blob store.",
                self.blob_reads(),
            ),
            (
                "tenet_policyd_bundles_refused_total",
                "counter",
                "Bundles refused at promotion or when picking up a new manifest.",
                self.0.bundles_refused.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in single {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            &mut out,
            "tenet_policyd_runs_refused_total",
            "counter",
            "Pushed-run requests refused, by the reason of their refused line.",
        );
        for (reason, n) in lock(&self.0.runs_refused).iter() {
            let _ = writeln!(
                out,
                "tenet_policyd_runs_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        header(
            &mut out,
            "tenet_policyd_runs_finished_total",
            "counter",
            "Pushed runs whose agent ended, by exit code (\"signal\" when killed).",
        );
        for (end, n) in lock(&self.0.runs_finished).iter() {
            let _ = writeln!(
                out,
                "tenet_policyd_runs_finished_total{{code=\"{}\"}} {n}",
                end.label()
            );
        }
        header(
            &mut out,
            "tenet_policyd_member_last_fetch_seconds",
            "gauge",
            "Unix time of each enrolled member's last timestamp fetch from this member (0: none since start-up).",
        );
        let fetched = lock(&self.0.last_fetch);
        let mut members: Vec<&MemberEntry> = gauges.members.iter().collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        for m in members {
            let at = fetched.get(&m.keyid).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "tenet_policyd_member_last_fetch_seconds{{member=\"{}\"}} {at}",
                escape_label(&m.name)
            );
        }
        header(
            &mut out,
            "tenet_policyd_reports_stored_total",
            "counter",
            "Members' run reports stored in the report database.",
        );
        let _ = writeln!(
            out,
            "tenet_policyd_reports_stored_total {}",
            self.0.reports_stored.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "tenet_policyd_reports_refused_total",
            "counter",
            "Members' run reports refused, by reason.",
        );
        for (reason, n) in lock(&self.0.reports_refused).iter() {
            let _ = writeln!(
                out,
                "tenet_policyd_reports_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        header(
            &mut out,
            "tenet_policyd_member_last_report_age_seconds",
            "gauge",
            "Seconds since each member's last run report arrived (members in the report database).",
        );
        for r in gauges.reports {
            let _ = writeln!(
                out,
                "tenet_policyd_member_last_report_age_seconds{{member=\"{}\"}} {}",
                escape_label(&r.member),
                gauges.now.saturating_sub(r.received)
            );
        }
        header(
            &mut out,
            "tenet_policyd_member_failed_promises",
            "gauge",
            "Failed and blocked promises in each member's last run report.",
        );
        for r in gauges.reports {
            let _ = writeln!(
                out,
                "tenet_policyd_member_failed_promises{{member=\"{}\"}} {}",
                escape_label(&r.member),
                r.failures
            );
        }
        out
    }

    fn gauge(&self, site: Site) -> &AtomicU64 {
        match site {
            Site::Listener => &self.0.open_listener,
            Site::Serving => &self.0.open_serving,
        }
    }
}

/// Keeps a connection counted as open; dropping it closes the count.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    metrics: Metrics,
    site: Site,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics
            .gauge(self.site)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A label value as the exposition format quotes it (member names are already plain
/// names; this keeps the text well-formed whatever a manifest says).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Counters stay meaningful after a panic elsewhere: each update is one map write.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_exposition_format() {
        let m = Metrics::default();
        m.request(Site::Serving, "blob", 200);
        m.request(Site::Serving, "blob", 200);
        m.request(Site::Listener, "unknown", 404);
        m.handshake_refused(Site::Serving, HandshakeRefusal::NotAdmitted);
        let open = m.connection(Site::Serving);
        let text = m.render(&Gauges {
            serving: Some(7),
            timestamp_version: 1_795_298_400,
            timestamp_expires: 1_795_320_000,
            manifest_expires: 1_795_900_000,
            root_expires: 1_826_834_400,
            members: &[],
            reports: &[LastReport {
                member: "alpha".into(),
                received: 1_795_298_000,
                failures: 2,
            }],
            now: 1_795_298_400,
        });
        for line in [
            "tenet_policyd_requests_total{socket=\"serve\",route=\"blob\",status=\"200\"} 2",
            "tenet_policyd_requests_total{socket=\"listener\",route=\"unknown\",status=\"404\"} 1",
            "tenet_policyd_handshakes_refused_total{socket=\"serve\",reason=\"not_admitted\"} 1",
            "tenet_policyd_connections_open{socket=\"serve\"} 1",
            "tenet_policyd_serving_serial 7",
            "tenet_policyd_promoted 1",
            "tenet_policyd_timestamp_version 1795298400",
            "tenet_policyd_manifest_expiry_seconds 1795900000",
            "tenet_policyd_root_expiry_seconds 1826834400",
            "# TYPE tenet_policyd_requests_total counter",
            "tenet_policyd_member_last_report_age_seconds{member=\"alpha\"} 400",
            "tenet_policyd_member_failed_promises{member=\"alpha\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        drop(open);
        assert_eq!(m.open_connections(Site::Serving), 0);
    }
}
