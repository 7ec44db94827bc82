//! Evaluates a policy for one member: which promises apply, with every template
//! expanded; `plans` does the same for failover plans and a cluster event.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::Policy;
use crate::cond::{Atom, Condition};
use crate::facts::Facts;
use crate::jinja::Jinja;
use crate::model::{
    AddressRole, AddressSelect, Family, Member, Network, Promise, Unresolved, ValueKind,
};
use crate::template::Ref;

mod plans;

/// What a policy asks of one member.
#[derive(Debug)]
pub struct Resolution {
    /// The member the facts identify, if any.
    pub member: Option<String>,
    /// Promises whose condition holds, in declaration order: expanded, or why not.
    pub promises: Vec<Result<Promise<String>, Unresolved>>,
    /// How many promises do not apply to this member.
    pub skipped: usize,
    /// Things worth telling the administrator (an unknown member, dropped addresses).
    pub warnings: Vec<String>,
}

/// The facts and cluster config seen from one member: who it is, its classes, the
/// computed values; answers conditions and template references for promises and
/// plans alike.
struct Scope<'a> {
    policy: &'a Policy,
    facts: &'a Facts,
    member: Option<&'a Member>,
    classes: BTreeSet<&'a str>,
    values: HashMap<&'a str, Result<String, String>>,
    /// A package arriving here (a plan's event): `holds(it)` is true whatever the facts say.
    arriving: Option<&'a str>,
}

impl Policy {
    /// Evaluates this policy for the member described by `facts`.
    ///
    /// Consumes the policy: each promise that applies moves into the resolution, so
    /// a large policy is never held twice.
    pub fn resolve(mut self, facts: &Facts) -> Resolution {
        let owned = std::mem::take(&mut self.promises);
        let mut warnings = Vec::new();
        let scope = Scope::new(&self, facts, &mut warnings);
        let mut skipped = 0;
        // Collected in place: the policy's allocation holds the resolution (a
        // resolved promise is no larger than a loaded one, the test below checks),
        // so the 10,000 promises of a large policy are never in two buffers at once.
        let promises = owned
            .into_iter()
            .filter_map(|p| {
                if !scope.eval(p.when.as_deref()) {
                    skipped += 1;
                    return None;
                }
                // Kept aside only to name the promise if a fact is missing.
                let (id, type_name, origin) = (p.id.clone(), p.kind.type_name(), p.origin.clone());
                let expanded =
                    p.try_map(|t| t.render(&mut |r| scope.lookup(r)))
                        .map_err(|reason| Unresolved {
                            id,
                            type_name,
                            origin,
                            reason,
                        });
                Some(expanded)
            })
            .collect();
        Resolution {
            member: scope.member.map(|m| m.name.clone()),
            promises,
            skipped,
            warnings,
        }
    }
}

/// The facts name a member (`member` in `agent.toml`, `--fact member=`) that the
/// policy's cluster does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "member {member:?} is not in the policy's cluster (its members: {})",
    if known.is_empty() { "none".to_string() } else { known.join(", ") }
)]
pub struct UnknownMember {
    /// The name given.
    pub member: String,
    /// The policy's members, in declaration order.
    pub known: Vec<String>,
}

impl Policy {
    /// Refuses facts that name a member the policy does not have: converging only
    /// the promises that hold for any member would look like success.
    ///
    /// # Errors
    /// [`UnknownMember`] when `facts.member` is set and not a member's name.
    pub fn check_member(&self, facts: &Facts) -> Result<(), UnknownMember> {
        match &facts.member {
            Some(name) if self.cluster.member(name).is_none() => Err(UnknownMember {
                member: name.clone(),
                known: self
                    .cluster
                    .members
                    .iter()
                    .map(|m| m.name.clone())
                    .collect(),
            }),
            _ => Ok(()),
        }
    }

    /// The member the facts describe: `facts.member`, else the one whose name or
    /// hostname is the hostname (or its first label).
    pub fn member_of(&self, facts: &Facts) -> Option<&Member> {
        match &facts.member {
            Some(name) => self.cluster.member(name),
            None => self.member_by_hostname(&facts.hostname),
        }
    }

    fn member_by_hostname(&self, hostname: &str) -> Option<&Member> {
        let short = hostname.split('.').next().unwrap_or_default();
        self.cluster.members.iter().find(|m| {
            m.name == hostname || m.hostname == hostname || (!short.is_empty() && m.name == short)
        })
    }
}

impl<'a> Scope<'a> {
    /// Finds the member the facts describe and computes every value; anything
    /// worth telling the administrator goes to `warnings`.
    fn new(policy: &'a Policy, facts: &'a Facts, warnings: &mut Vec<String>) -> Self {
        let cluster = &policy.cluster;
        let member = match &facts.member {
            Some(name) => {
                let m = cluster.member(name);
                if m.is_none() {
                    warnings.push(format!("member `{name}` is not in the cluster config"));
                }
                m
            }
            None => {
                let m = policy.member_by_hostname(&facts.hostname);
                if m.is_none() && !cluster.members.is_empty() {
                    warnings.push(format!(
                        "host `{}` is not a member of cluster `{}`; pass --fact member=NAME to say which it is",
                        facts.hostname, cluster.name
                    ));
                }
                m
            }
        };
        let mut classes: BTreeSet<&str> = facts.classes.iter().map(String::as_str).collect();
        if let Some(m) = member {
            classes.extend(m.classes.iter().map(String::as_str));
        }
        let mut scope = Scope {
            policy,
            facts,
            member,
            classes,
            values: HashMap::new(),
            arriving: None,
        };
        for v in &policy.values {
            let computed = scope.compute(&v.kind, &v.name, warnings);
            scope.values.insert(&v.name, computed);
        }
        scope
    }

    /// Whether this member holds `package` now, per the facts (or because it is arriving).
    fn holds(&self, package: &str) -> bool {
        self.atom(&Atom::Holds(package.to_string()))
    }

    /// Whether a condition (`None` is always) holds here.
    fn eval(&self, c: Option<&Condition>) -> bool {
        c.is_none_or(|c| c.eval(&|a| self.atom(a)))
    }

    fn atom(&self, a: &Atom) -> bool {
        let me = self.member.map(|m| m.name.as_str());
        let package = |p: &str| self.policy.cluster.package(p);
        match a {
            Atom::Member(m) => me == Some(m.as_str()),
            Atom::Class(c) => self.classes.contains(c.as_str()),
            Atom::Holds(p) if self.arriving == Some(p.as_str()) => true,
            Atom::Holds(p) => match &self.facts.holds {
                Some(held) => held.contains(p),
                None => package(p).is_some_and(|p| self.facts.addresses.contains(&p.ip)),
            },
            Atom::Owner(p) => package(p)
                .is_some_and(|p| p.members.first().map(String::as_str) == me && me.is_some()),
            Atom::Standby(p) => package(p)
                .is_some_and(|p| me.is_some_and(|me| p.members.iter().skip(1).any(|m| m == me))),
        }
    }

    fn lookup(&self, r: &Ref) -> Result<String, String> {
        let cluster = &self.policy.cluster;
        match r {
            Ref::Member => self.member.map(|m| m.name.clone()).ok_or_else(|| {
                "this host is not a member of the cluster, so ${member} has no value".to_string()
            }),
            Ref::Hostname => Ok(self.facts.hostname.clone()),
            Ref::Cluster => Ok(cluster.name.clone()),
            Ref::PackageHostname(p) => cluster
                .package(p)
                .map(|p| p.hostname.clone())
                .ok_or_else(|| unknown("package", p)),
            Ref::PackageIp(p) => cluster
                .package(p)
                .map(|p| p.ip.to_string())
                .ok_or_else(|| unknown("package", p)),
            Ref::Fact(k) => self
                .facts
                .get(k)
                .ok_or_else(|| format!("fact `{k}` is not known on this member")),
            Ref::Value(v) => match self.values.get(v.as_str()) {
                Some(r) => r.clone(),
                None => Err(format!("value `{v}` is used before it is declared")),
            },
            Ref::Entry { map, key } => match self.kind(map) {
                Some(ValueKind::Map(entries)) => entries
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("map `{map}` has no entry `{key}`")),
                _ => Err(format!("`{map}` is not a map")),
            },
            Ref::Item(part) => Err(format!(
                "`{}` is only defined in a promise with `for_each`",
                part.as_ref_str()
            )),
            Ref::Jinja(j) => self.render_jinja(j),
        }
    }

    /// The value declared as `name`.
    fn kind(&self, name: &str) -> Option<&'a ValueKind> {
        self.policy
            .values
            .iter()
            .find(|v| v.name == name)
            .map(|v| &v.kind)
    }

    /// Renders a Jinja template with the names it uses: values (text as strings,
    /// lists as sequences, maps as mappings), `member` (when this host is one),
    /// `hostname`, `cluster`, `package.NAME.{hostname,ip,members,configuration}`
    /// and `fact.KEY`. Nothing else is in its context.
    fn render_jinja(&self, j: &Jinja) -> Result<String, String> {
        use minijinja::Value as J;
        let cluster = &self.policy.cluster;
        let mut cx: BTreeMap<String, J> = BTreeMap::new();
        for name in j.names() {
            let v = match name.as_str() {
                "member" => match self.member {
                    Some(m) => J::from(m.name.as_str()),
                    None => {
                        return Err(format!(
                            "{}: this host is not a member of the cluster, so `member` has no value",
                            j.name()
                        ));
                    }
                },
                "hostname" => J::from(self.facts.hostname.as_str()),
                "cluster" => J::from(cluster.name.as_str()),
                "package" => J::from_iter(cluster.packages.iter().map(|p| {
                    let mut m = BTreeMap::new();
                    m.insert("hostname", J::from(p.hostname.as_str()));
                    m.insert("ip", J::from(p.ip.to_string()));
                    m.insert("members", J::from(p.members.clone()));
                    m.insert("configuration", J::from(p.configuration.name()));
                    (p.name.clone(), J::from(m))
                })),
                "fact" => {
                    let mut m: BTreeMap<String, String> = self.facts.extra.clone();
                    for k in ["hostname", "os", "addresses"] {
                        if let Some(v) = self.facts.get(k) {
                            m.insert(k.to_string(), v);
                        }
                    }
                    J::from(m)
                }
                other => match self.kind(other) {
                    Some(ValueKind::List(items)) => J::from(items.clone()),
                    Some(ValueKind::Map(entries)) => J::from_iter(entries.iter().cloned()),
                    Some(_) => match self.values.get(other) {
                        Some(Ok(s)) => J::from(s.as_str()),
                        Some(Err(e)) => return Err(e.clone()),
                        None => continue,
                    },
                    // Checked at load: only a name the template defines for itself
                    // in a branch not taken gets here; strict rendering decides.
                    None => continue,
                },
            };
            cx.insert(name, v);
        }
        j.render(cx).map_err(|e| e.to_string())
    }

    fn compute(
        &self,
        kind: &ValueKind,
        name: &str,
        warnings: &mut Vec<String>,
    ) -> Result<String, String> {
        match kind {
            ValueKind::Text(t) => t.render(&mut |r| self.lookup(r)),
            ValueKind::List(_) | ValueKind::Map(_) => Err(format!(
                "value `{name}` is {}, not text; use it in `for_each` or a Jinja template",
                kind.describe()
            )),
            ValueKind::Addresses {
                select,
                separator,
                max_items,
                family,
                networks,
            } => {
                let mut picked = self.addresses(*select, *family, networks);
                if let Some(max) = max_items {
                    let max = *max as usize;
                    if picked.len() > max {
                        let dropped: Vec<String> = picked
                            .split_off(max)
                            .iter()
                            .map(ToString::to_string)
                            .collect();
                        warnings.push(format!(
                            "value `{name}` keeps at most {max} addresses; left out: {}",
                            dropped.join(", ")
                        ));
                    }
                }
                Ok(picked
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(separator))
            }
        }
    }

    /// This member's addresses of `family`: those the cluster config lists for it,
    /// then the machine's that lie in one of `networks`, filtered by `select`.
    fn addresses(
        &self,
        select: AddressSelect,
        family: Family,
        networks: &[Network],
    ) -> Vec<IpAddr> {
        let configured = self
            .member
            .map(|m| m.addresses.as_slice())
            .unwrap_or_default();
        let by_role = |role: AddressRole| {
            configured
                .iter()
                .filter(|a| a.role == role && family.admits(&a.ip))
                .map(|a| a.ip)
                .collect()
        };
        match select {
            AddressSelect::Boot => return by_role(AddressRole::Boot),
            AddressSelect::Standby => return by_role(AddressRole::Standby),
            _ => {}
        }
        let service = self.policy.cluster.service_addresses();
        let mut all: Vec<IpAddr> = Vec::new();
        for ip in configured.iter().map(|a| a.ip).chain(
            self.facts
                .addresses
                .iter()
                .filter(|ip| networks.iter().any(|n| n.contains(ip)))
                .copied(),
        ) {
            if family.admits(&ip) && !all.contains(&ip) {
                all.push(ip);
            }
        }
        all.retain(|ip| match select {
            AddressSelect::NonService => !service.contains(ip),
            AddressSelect::Service => service.contains(ip),
            _ => true,
        });
        all
    }
}

fn unknown(what: &str, name: &str) -> String {
    format!("unknown {what} `{name}`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    /// `resolve` collects into the loaded promises' own buffer only while a resolved
    /// promise (or the reason it is not) fits in a loaded one's place: otherwise a
    /// large policy is held twice at its peak, as before.
    #[test]
    fn a_resolved_promise_fits_in_a_loaded_ones_place() {
        type Loaded = Promise<Template>;
        type Resolved = Result<Promise<String>, Unresolved>;
        assert!(
            size_of::<Resolved>() <= size_of::<Loaded>(),
            "resolved {} bytes, loaded {}",
            size_of::<Resolved>(),
            size_of::<Loaded>()
        );
        assert_eq!(align_of::<Resolved>(), align_of::<Loaded>());
    }
}
