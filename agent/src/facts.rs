//! Gathers this member's facts from the machine: hostname, addresses, OS,
//! distribution and architecture.
//!
//! Loopback and IPv6 link-local addresses are left out: they are never a member's
//! cluster address. `--fact` overrides are applied by the caller.
//!
//! The distribution is read from the managed root's `os-release` (`/etc/os-release`,
//! else `/usr/lib/os-release`, resolved inside the root), so a policy checked against a
//! sandbox sees the sandbox's distribution, not the host's. It becomes classes:
//! `linux`, the `ID` (`debian`), the `ID` with the major `VERSION_ID` (`debian12`),
//! the same for each `ID_LIKE` entry (`rhel`, `rhel9` on Rocky 9) and the
//! architecture (`x86_64`, `aarch64`); and the facts `${fact.os_id}`,
//! `${fact.os_version}` and `${fact.arch}`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use tenet_policies::Facts;
use tenet_policies::model::AbsPath;

use crate::fsops::{Follow, Root};

/// Facts read from this machine and the distribution installed beneath `root`.
/// Never fails: what cannot be read is left empty.
pub fn gather(root: &Root) -> Facts {
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let mut addresses: Vec<IpAddr> = Vec::new();
    if let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() {
        for a in ifaddrs {
            let Some(addr) = a.address else { continue };
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            let link_local = matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            if !ip.is_loopback() && !link_local && !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
    }
    let mut facts = Facts {
        hostname,
        addresses,
        os: std::env::consts::OS.to_string(),
        ..Facts::default()
    };
    let release = os_release(root);
    let arch = std::env::consts::ARCH;
    facts.classes = os_classes(&facts.os, arch, release.as_deref().unwrap_or(""));
    facts.extra.insert("arch".into(), arch.into());
    if let Some(text) = &release {
        for (key, fact) in [("ID", "os_id"), ("VERSION_ID", "os_version")] {
            if let Some(v) = os_release_field(text, key) {
                facts.extra.insert(fact.into(), v);
            }
        }
    }
    facts
}

/// The text of the root's `os-release`, if it has one.
fn os_release(root: &Root) -> Option<String> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| {
            let path = AbsPath::parse(p).ok()?;
            let resolved = root.resolve(&path, Follow::All).ok()?;
            root.read_file(&resolved).ok()
        })
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// One `KEY=value` of an `os-release` file, unquoted (os-release(5)).
fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        if k != key {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        Some(v.to_string())
    })
}

/// The classes an OS, architecture and `os-release` text give a member. Names are
/// lowercased and anything outside `[a-z0-9_.-]` becomes `_`, so every one can be
/// written in `class(NAME)`.
fn os_classes(os: &str, arch: &str, release: &str) -> BTreeSet<String> {
    let clean = |s: &str| -> String {
        s.to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut classes = BTreeSet::new();
    for c in [os, arch] {
        if !c.is_empty() {
            classes.insert(clean(c));
        }
    }
    let major = os_release_field(release, "VERSION_ID")
        .and_then(|v| v.split('.').next().map(clean))
        .filter(|m| !m.is_empty());
    let ids = os_release_field(release, "ID").into_iter().chain(
        os_release_field(release, "ID_LIKE")
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    for id in ids {
        let id = clean(&id);
        if id.is_empty() {
            continue;
        }
        if let Some(m) = &major {
            classes.insert(format!("{id}{m}"));
        }
        classes.insert(id);
    }
    classes
}

/// Applies `KEY=VALUE` overrides in order.
pub fn apply_overrides(
    facts: &mut Facts,
    overrides: &[String],
) -> Result<(), tenet_policies::facts::FactError> {
    for f in overrides {
        facts.set(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{symlink, write};

    const ROCKY: &str = "NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n";
    const DEBIAN: &str =
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n";

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rocky_is_rhel9_and_its_relatives() {
        assert_eq!(
            os_classes("linux", "x86_64", ROCKY),
            set(&[
                "centos", "centos9", "fedora", "fedora9", "linux", "rhel", "rhel9", "rocky",
                "rocky9", "x86_64"
            ])
        );
    }

    #[test]
    fn debian_unquoted_and_without_a_release() {
        assert_eq!(
            os_classes("linux", "aarch64", DEBIAN),
            set(&["aarch64", "debian", "debian12", "linux"])
        );
        // Debian testing has no VERSION_ID: the ID alone.
        assert_eq!(
            os_classes("linux", "x86_64", "ID=debian\n"),
            set(&["debian", "linux", "x86_64"])
        );
        assert_eq!(os_classes("linux", "x86_64", ""), set(&["linux", "x86_64"]));
    }

    #[test]
    fn odd_ids_still_make_writable_class_names() {
        assert_eq!(
            os_classes("linux", "x86_64", "ID='Open SUSE'\nVERSION_ID=15.5\n"),
            set(&["linux", "open_suse", "open_suse15", "x86_64"])
        );
    }

    #[test]
    fn the_distribution_is_the_roots_through_its_relative_link() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("usr/lib/os-release"), ROCKY);
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        symlink("../usr/lib/os-release", &dir.path().join("etc/os-release"));
        let root = Root::new(dir.path()).unwrap();
        let facts = gather(&root);
        assert!(facts.classes.contains("rhel9"), "{:?}", facts.classes);
        assert_eq!(facts.get("os_id").as_deref(), Some("rocky"));
        assert_eq!(facts.get("os_version").as_deref(), Some("9.3"));
        assert_eq!(facts.get("arch").as_deref(), Some(std::env::consts::ARCH));
    }

    #[test]
    fn a_link_out_of_the_root_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("os-release"), ROCKY);
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let target = outside.path().join("os-release");
        symlink(target.to_str().unwrap(), &dir.path().join("etc/os-release"));
        let facts = gather(&Root::new(dir.path()).unwrap());
        assert!(!facts.classes.contains("rocky"), "{:?}", facts.classes);
        assert_eq!(facts.get("os_id"), None);
    }
}
