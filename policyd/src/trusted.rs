//! The keys the listener admits at its TLS handshake, and the root pushed runs are
//! checked against, both held in memory.
//!
//! Admitted: the admin keys of this member's newest verified root, the enrolled members
//! of the manifest this member's agent runs (its verified cache), and, while promoted,
//! the enrolled members of the served manifest. A key that is none of these never
//! reaches HTTP, so a self-made key cannot hold a connection, read `/v1/health`, or make
//! the daemon read anything.
//!
//! The newest verified root is the agent's `trust.toml` in `[run] agent_state` if it is
//! this deployment's and not older than `trusted_root`, else `trusted_root`. It is read
//! and its signatures checked only when the file changes: [`ListenerKeys::refresh`]
//! compares the file's `stat` (and the agent's `current` link) with what it last read,
//! and the daemon calls it every [`REFRESH_EVERY`], before each run request, and in the
//! handshake of a key not admitted so far (so an admin added by a root the agent has
//! just verified is admitted at once). The
//! agent's manifest is taken only if its SHA-256 is the one that verified trust state
//! records (the agent writes it after every check passed), so no unverified inventory
//! is ever admitted.
//!
//! [`read_trusted_root`] reads the configuration's trusted root itself, for start-up and
//! `validate`.

use std::collections::HashSet;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tenet_keys::key::Role;
use tenet_keys::tls::{ClientPolicy, MemberPins};
use tenet_keys::{KeyId, Manifest, Root, Sha256Sum, TrustState, TrustedRoot, bundle};
use tracing::{debug, info, warn};

use crate::error::DaemonError;

/// How often the daemon looks for a changed `trust.toml`.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// The agent's trust state file in its state directory.
const TRUST_FILE: &str = "trust.toml";
/// The agent's link to the bundle in force.
const CURRENT: &str = "current";
/// Largest `trust.toml` read (a root and its signatures, and a few numbers).
const MAX_TRUST_BYTES: u64 = 1024 * 1024;
/// At most one "refused a client key" line per socket this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The listener's admitted keys and the newest verified root.
#[derive(Debug)]
pub(crate) struct ListenerKeys {
    anchor: Arc<Root>,
    agent_state: PathBuf,
    served: MemberPins,
    view: RwLock<Arc<View>>,
    /// What the view was read from; held while refreshing, so one refresh runs at once.
    seen: Mutex<Option<Fingerprint>>,
    log: LogLimit,
}

#[derive(Debug)]
struct View {
    root: Arc<Root>,
    admins: HashSet<KeyId>,
    members: HashSet<KeyId>,
}

/// What identifies the files a view was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    trust: Option<[i64; 6]>,
    current: Option<PathBuf>,
}

impl ListenerKeys {
    /// Admits the admin keys of `anchor` and the members in `served` until the first
    /// [`refresh`](Self::refresh).
    pub(crate) fn new(anchor: Root, agent_state: PathBuf, served: MemberPins) -> ListenerKeys {
        let anchor = Arc::new(anchor);
        ListenerKeys {
            view: RwLock::new(Arc::new(View::of(anchor.clone(), HashSet::new()))),
            anchor,
            agent_state,
            served,
            seen: Mutex::new(None),
            log: LogLimit::default(),
        }
    }

    /// The newest verified root, as last read.
    pub(crate) fn root(&self) -> Arc<Root> {
        self.view().root.clone()
    }

    /// Whether `keyid` is admitted now (without logging).
    pub(crate) fn admitted(&self, keyid: &KeyId) -> bool {
        let view = self.view();
        view.admins.contains(keyid) || view.members.contains(keyid) || self.served.contains(keyid)
    }

    fn view(&self) -> Arc<View> {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the agent's trust state and inventory again if they changed since last
    /// read (blocking: call from a blocking task). A file that cannot be read or
    /// verified leaves the previous view in place, logged once per change.
    pub(crate) fn refresh(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.fingerprint();
        if seen.as_ref() == Some(&now) {
            return;
        }
        *seen = Some(now.clone());
        let state = match now.trust {
            None => None,
            Some(_) => match read_state(&self.agent_state.join(TRUST_FILE)) {
                Ok(s) => Some(s),
                Err(message) => {
                    warn!(%message, "cannot use the agent's trust state; keeping the keys admitted so far");
                    return;
                }
            },
        };
        let (root, manifest) = match &state {
            Some(s) => {
                let root = s.root().root();
                if root.deployment != self.anchor.deployment || root.version < self.anchor.version {
                    warn!(
                        version = root.version,
                        "the agent's trust state is another deployment's or older than trusted_root; using trusted_root"
                    );
                    (self.anchor.clone(), None)
                } else {
                    (Arc::new(root.clone()), s.manifest_sha256())
                }
            }
            None => (self.anchor.clone(), None),
        };
        let members = match manifest {
            Some(sha256) => self.members(&root, sha256),
            None => HashSet::new(),
        };
        info!(
            root_version = root.version,
            admins = root.role(Role::Admin).keyids.len(),
            members = members.len(),
            "listener admits the admin keys of the newest verified root and the agent's enrolled members"
        );
        *self.view.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(View::of(root, members));
    }

    /// The enrolled members of the agent's bundle in force, if its manifest is the one
    /// the verified trust state names.
    fn members(&self, root: &Root, sha256: Sha256Sum) -> HashSet<KeyId> {
        let path = self.agent_state.join(CURRENT).join(bundle::MANIFEST);
        let bytes = match read_capped(&path, tenet_keys::document::MAX_MANIFEST_BYTES) {
            Ok(b) => b,
            Err(message) => {
                debug!(%message, "no enrolled members from the agent's cache");
                return HashSet::new();
            }
        };
        if Sha256Sum::of(&bytes) != sha256 {
            // The agent records a new manifest before it flips `current`; the next
            // refresh sees the flip.
            debug!(path = %path.display(), "the agent's manifest in force is not the one its trust state names");
            return HashSet::new();
        }
        match Manifest::parse(&bytes) {
            Ok(m) if m.deployment == root.deployment => m.members.iter().map(|m| m.keyid).collect(),
            Ok(_) => HashSet::new(),
            Err(e) => {
                debug!(error = %tenet_keys::error_chain(&e), "the agent's manifest does not parse");
                HashSet::new()
            }
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        let trust = std::fs::metadata(self.agent_state.join(TRUST_FILE))
            .ok()
            .map(|m| {
                let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                [
                    n(m.dev()),
                    n(m.ino()),
                    n(m.size()),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime_nsec() ^ m.ctime(),
                ]
            });
        let current = std::fs::read_link(self.agent_state.join(CURRENT)).ok();
        Fingerprint { trust, current }
    }
}

impl View {
    fn of(root: Arc<Root>, members: HashSet<KeyId>) -> View {
        View {
            admins: root.role(Role::Admin).keyids.iter().copied().collect(),
            root,
            members,
        }
    }
}

impl ClientPolicy for ListenerKeys {
    fn admits(&self, keyid: &KeyId) -> bool {
        if self.admitted(keyid) {
            return true;
        }
        // A key not admitted yet may be in a root or inventory the agent verified a
        // moment ago: look (a `stat` when nothing changed) before refusing.
        self.refresh();
        let admitted = self.admitted(keyid);
        if !admitted && let Some(suppressed) = self.log.allow() {
            info!(keyid = %keyid, suppressed, "listener refused a client key that is neither an admin key nor an enrolled member");
        }
        admitted
    }
}

/// Lets a log line through at most once every [`REFUSAL_LOG_EVERY`], counting the
/// ones held back, so that a flood of refused handshakes cannot flood the log.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogLimit {
    /// `Some(lines held back since the last one)` if a line may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(t) if t.elapsed() < REFUSAL_LOG_EVERY => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(Instant::now());
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

fn read_state(path: &Path) -> Result<TrustState, String> {
    let bytes = read_capped(path, MAX_TRUST_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    TrustState::from_toml(&text)
        .map_err(|e| format!("{}: {}", path.display(), tenet_keys::error_chain(&e)))
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if out.len() as u64 > max {
        return Err(format!("{} is over {max} bytes", path.display()));
    }
    Ok(out)
}

/// Reads and verifies the trusted root of the configuration (`trusted_root`, and its
/// `.sig` beside it), at start-up and for `validate`.
pub(crate) fn read_trusted_root(path: &Path) -> Result<TrustedRoot, DaemonError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| DaemonError::ReadRoot {
            path: p.to_path_buf(),
            source,
        })
    };
    let bytes = read(path)?;
    let sigs = read(&bundle::sig_path(path))?;
    TrustedRoot::bootstrap(&bytes, &sigs, None).map_err(|source| DaemonError::Root {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_log_is_rate_limited() {
        let l = LogLimit::default();
        assert_eq!(l.allow(), Some(0));
        for _ in 0..100 {
            assert_eq!(l.allow(), None);
        }
        *l.last.lock().unwrap() = Some(Instant::now() - REFUSAL_LOG_EVERY);
        assert_eq!(l.allow(), Some(100));
    }
}
