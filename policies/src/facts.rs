//! Facts about the member a policy is evaluated for.
//!
//! The agent gathers them from the machine; `--fact KEY=VALUE` overrides any of them.
//! This crate only holds and interprets them: it never looks at the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What is known about this member when a policy is resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The hostname.
    pub hostname: String,
    /// Every address on the machine.
    pub addresses: Vec<IpAddr>,
    /// The operating system (`linux`).
    pub os: String,
    /// Which member this is; `None` means: find it by hostname.
    pub member: Option<String>,
    /// Classes besides those the cluster config gives the member.
    pub classes: BTreeSet<String>,
    /// Packages held now; `None` means: a member holds a package when it has the package's address.
    pub holds: Option<BTreeSet<String>>,
    /// Any other fact, as `${fact.KEY}`.
    pub extra: BTreeMap<String, String>,
    /// Packages this member has started since it booted (the agent's records of
    /// `package-start` plans that finished ok, not yet undone by a stop): a
    /// takeover of one of them does not run its start plans again.
    pub started: BTreeMap<String, Started>,
}

/// Which event started a package on this member, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// The event's id.
    pub event_id: String,
    /// When its start plans finished (RFC 3339).
    pub time: String,
}

/// A `--fact` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FactError {
    /// Not `KEY=VALUE`.
    #[error("`{0}` is not KEY=VALUE")]
    Syntax(String),
    /// An address that does not parse.
    #[error("fact addresses: `{0}` is not an IP address")]
    Address(String),
}

impl Facts {
    /// Applies one `KEY=VALUE` override.
    ///
    /// `hostname`, `member`, `os` replace; `addresses` and `holds` replace with a
    /// comma-separated list; `classes` adds; any other key sets `${fact.KEY}`.
    pub fn set(&mut self, assignment: &str) -> Result<(), FactError> {
        let Some((key, value)) = assignment.split_once('=') else {
            return Err(FactError::Syntax(assignment.to_string()));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(FactError::Syntax(assignment.to_string()));
        }
        let list = || {
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        match key {
            "hostname" => self.hostname = value.to_string(),
            "member" => self.member = Some(value.to_string()),
            "os" => self.os = value.to_string(),
            "addresses" => {
                self.addresses = list()
                    .map(|a| a.parse().map_err(|_| FactError::Address(a.clone())))
                    .collect::<Result<_, _>>()?;
            }
            "classes" => self.classes.extend(list()),
            "holds" => self.holds = Some(list().collect()),
            _ => {
                self.extra.insert(key.to_string(), value.to_string());
            }
        }
        Ok(())
    }

    /// A fact by name, as `${fact.KEY}` sees it.
    pub fn get(&self, key: &str) -> Option<String> {
        match key {
            "hostname" => Some(self.hostname.clone()),
            "os" => Some(self.os.clone()),
            "addresses" => Some(
                self.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => self.extra.get(key).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides() {
        let mut f = Facts::default();
        f.set("hostname=alpha").unwrap();
        f.set("addresses=10.0.0.1, ::1").unwrap();
        f.set("classes=a,b").unwrap();
        f.set("classes=c").unwrap();
        f.set("holds=").unwrap();
        f.set("rack=r12=x").unwrap();
        assert_eq!(f.hostname, "alpha");
        assert_eq!(f.addresses.len(), 2);
        assert_eq!(f.classes.len(), 3);
        assert_eq!(f.holds, Some(BTreeSet::new()));
        assert_eq!(f.get("rack").as_deref(), Some("r12=x"));
        assert_eq!(f.set("nonsense"), Err(FactError::Syntax("nonsense".into())));
        assert!(matches!(
            f.set("addresses=1.2.3"),
            Err(FactError::Address(_))
        ));
    }
}
