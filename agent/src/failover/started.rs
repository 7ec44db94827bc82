//! Which packages this member has started: `STATE/packages/<package>.toml`.
//!
//! After an event whose `package-start` plans for a package all finished ok, the
//! agent records it here (the event id, the time, the kernel's boot id); after the
//! package's `package-stop` plans ran ok, the record is removed. Selection reads the
//! records as [`Facts::started`](tenet_policies::Facts), so a takeover reported twice
//! (`node-down` from the event scripts and `package-start` from the OCF agent, with
//! different ids) or a `node-down` for a package already here does not run the
//! start plans again.
//!
//! A record whose boot id differs from the current one is stale: the member
//! rebooted since, so the package is not running here; it is ignored. Beneath a
//! root other than `/`, the boot id is the file `/proc/sys/kernel/random/boot_id`
//! in the root, and without that file boot ids are not compared.
//!
//! Records are written atomically (a temp file beside, fsync, rename, fsync the
//! directory), in the state directory outside the managed root, like the journal.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use std::path::{Path, PathBuf};
use tenet_keys::fsio::{Overwrite, write_atomic};

use serde::{Deserialize, Serialize};
use tenet_policies::facts::Started;
use tenet_policies::model::AbsPath;

use crate::fsops::{Follow, Root};
use crate::statefs::sync_dir;

/// The records' directory in the state directory.
pub const PACKAGES_DIR: &str = "packages";

/// Where the kernel's boot id is (beneath a root other than `/`: in the root).
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// One record: which event started the package here, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    /// The event's id.
    pub event_id: String,
    /// The event, as `package-start:dce`.
    pub event: String,
    /// When its start plans finished (RFC 3339).
    pub time: String,
    /// The kernel's boot id then, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// Why a record cannot be written or removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarkerError {
    /// The package name cannot name a file.
    #[error("package name {0:?} cannot name a file in {PACKAGES_DIR}/")]
    BadName(String),
    /// Writing or removing failed.
    #[error("cannot update {}", path.display())]
    Io {
        /// The record.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The kernel's boot id: `/proc/sys/kernel/random/boot_id` of this machine, or the
/// file beneath a root other than `/`; `None` when it cannot be read.
pub fn boot_id(root: &Root) -> Option<String> {
    let id = if root.is_host_root() {
        fs::read_to_string(BOOT_ID).ok()?
    } else {
        let p = AbsPath::parse(BOOT_ID).ok()?;
        let bytes = root.read_file(&root.resolve(&p, Follow::All).ok()?).ok()?;
        String::from_utf8(bytes).ok()?
    };
    let id = id.trim().to_string();
    (!id.is_empty()).then_some(id)
}

/// The record of `package`.
fn path(state_dir: &Path, package: &str) -> Result<PathBuf, MarkerError> {
    // Package names are checked by the loader; this keeps any other name out of the path.
    crate::failover::journal::check_id(package)
        .map_err(|_| MarkerError::BadName(package.to_string()))?;
    Ok(state_dir.join(PACKAGES_DIR).join(format!("{package}.toml")))
}

/// Records that `package` was started here.
pub fn record(state_dir: &Path, package: &str, marker: &Marker) -> Result<(), MarkerError> {
    let path = path(state_dir, package)?;
    let io_err = |source| MarkerError::Io {
        path: path.clone(),
        source,
    };
    let dir = state_dir.join(PACKAGES_DIR);
    let made = !dir.is_dir();
    fs::create_dir_all(&dir).map_err(io_err)?;
    if made {
        sync_dir(state_dir).map_err(io_err)?;
    }
    let text = toml::to_string(marker).map_err(|e| io_err(io::Error::other(e)))?;
    write_atomic(&path, text.as_bytes(), 0o644, Overwrite::Replace).map_err(io_err)
}

/// Removes the record of `package` (none is fine).
pub fn remove(state_dir: &Path, package: &str) -> Result<(), MarkerError> {
    let path = path(state_dir, package)?;
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(&state_dir.join(PACKAGES_DIR))
            .map_err(|source| MarkerError::Io { path, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MarkerError::Io { path, source }),
    }
}

/// The packages started here since this boot (`boot`: the current boot id), by
/// name. Stale records (another boot id) are left out; unreadable ones too, with a
/// warning in `notes`.
pub fn read_all(
    state_dir: &Path,
    boot: Option<&str>,
    notes: &mut Vec<String>,
) -> BTreeMap<String, Started> {
    let mut out = BTreeMap::new();
    let dir = state_dir.join(PACKAGES_DIR);
    let Ok(entries) = fs::read_dir(&dir) else {
        return out;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(package) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".toml"))
            .filter(|n| !n.starts_with('.'))
        else {
            continue;
        };
        let file = entry.path();
        let marker = fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|t| toml::from_str::<Marker>(&t).map_err(|e| e.to_string()));
        match marker {
            Ok(m) => {
                if let (Some(then), Some(now)) = (m.boot_id.as_deref(), boot)
                    && then != now
                {
                    tracing::debug!(package, "started before the last boot: ignored");
                    continue;
                }
                out.insert(
                    package.to_string(),
                    Started {
                        event_id: m.event_id,
                        time: m.time,
                    },
                );
            }
            Err(e) => notes.push(format!(
                "warning: ignoring {}: {e}; its package counts as not started here",
                file.display()
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(id: &str, boot: Option<&str>) -> Marker {
        Marker {
            event_id: id.to_string(),
            event: "package-start:dce".to_string(),
            time: "2026-11-22T01:00:00Z".to_string(),
            boot_id: boot.map(String::from),
        }
    }

    #[test]
    fn records_are_read_back_and_removed_and_stale_ones_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut notes = Vec::new();
        assert!(read_all(dir.path(), Some("b1"), &mut notes).is_empty());
        record(dir.path(), "dce", &marker("e1", Some("b1"))).unwrap();
        record(dir.path(), "nfs", &marker("e2", Some("b0"))).unwrap();
        record(dir.path(), "web", &marker("e3", None)).unwrap();
        let got = read_all(dir.path(), Some("b1"), &mut notes);
        assert_eq!(
            got.keys().map(String::as_str).collect::<Vec<_>>(),
            ["dce", "web"],
            "nfs was started before the last boot"
        );
        assert_eq!(got["dce"].event_id, "e1");
        // Without a current boot id, nothing is stale.
        assert_eq!(read_all(dir.path(), None, &mut notes).len(), 3);
        remove(dir.path(), "dce").unwrap();
        remove(dir.path(), "dce").unwrap();
        assert!(!read_all(dir.path(), Some("b1"), &mut notes).contains_key("dce"));
        assert!(notes.is_empty(), "{notes:?}");
        crate::statefs::write_file(&dir.path().join("packages/bad.toml"), b"nonsense").unwrap();
        read_all(dir.path(), None, &mut notes);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(matches!(
            record(dir.path(), "../x", &marker("e", None)),
            Err(MarkerError::BadName(_))
        ));
    }
}
