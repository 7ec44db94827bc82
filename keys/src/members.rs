//! Cluster membership: the HA engine's nodes against the policy's cluster members and
//! the enrolled inventory, and the proposed cluster config an administrator reviews
//! and signs (`tenet-keys members`).
//!
//! The engines' own commands give the configured nodes (not the ones up: a node that is
//! down is still a member): Pacemaker's `cibadmin --query --scope nodes` (the CIB's
//! `<node uname="…">` entries), Serviceguard's `cmviewcl -f line -l node`
//! (`node:NAME|name=NAME` lines) and PowerHA's `cllsnode` (`Node NAME` or
//! `NODE NAME:` lines). A cluster member that is in no `[[package]]` is a tenet member
//! outside the HA cluster (a client) and is never proposed for removal.
//!
//! Nothing here signs: the result is a new text of the cluster config file (comments
//! and layout kept) and the list of what differs, for the administrator.

use std::collections::BTreeSet;

use crate::error::MembersError;
use crate::manifest::is_valid_name;

/// A cluster engine whose membership `tenet-keys members` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// Pacemaker/Corosync: the CIB's nodes section (`cibadmin --query --scope nodes`).
    Pacemaker,
    /// HPE Serviceguard: `cmviewcl -f line -l node`.
    Serviceguard,
    /// IBM PowerHA SystemMirror: `cllsnode`.
    Powerha,
}

/// PowerHA's utilities directory, tried after PATH (it is not on root's PATH by default).
pub const POWERHA_UTILITIES: &str = "/usr/es/sbin/cluster/utilities";

impl Engine {
    /// The engine's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Pacemaker => "pacemaker",
            Engine::Serviceguard => "serviceguard",
            Engine::Powerha => "powerha",
        }
    }

    /// The program and arguments that print the configured nodes.
    pub fn command(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Engine::Pacemaker => ("cibadmin", &["--query", "--scope", "nodes"]),
            Engine::Serviceguard => ("cmviewcl", &["-f", "line", "-l", "node"]),
            Engine::Powerha => ("cllsnode", &[]),
        }
    }

    /// The node names in the command's output, in order, each once.
    pub fn parse(self, text: &str) -> Vec<String> {
        let mut names = match self {
            Engine::Pacemaker => pacemaker_nodes(text),
            Engine::Serviceguard => text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("node:"))
                .filter_map(|l| l.split_once('|').map(|(n, _)| n.trim().to_string()))
                .collect(),
            Engine::Powerha => text
                .lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    match (w.next(), w.next()) {
                        (Some("Node" | "NODE"), Some(n)) => {
                            Some(n.trim_end_matches(':').to_string())
                        }
                        _ => None,
                    }
                })
                .collect(),
        };
        let mut seen = BTreeSet::new();
        names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
        names
    }
}

/// The `uname` of every `<node …>` element of a CIB (nodes section) text.
fn pacemaker_nodes(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("<node") {
        rest = &rest[i + "<node".len()..];
        if !rest.starts_with(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>') {
            continue; // <nodes>, <node_state>
        }
        let tag = rest.split('>').next().unwrap_or_default();
        if let Some(name) = xml_attr(tag, "uname") {
            out.push(name);
        }
    }
    out
}

/// The value of attribute `name` in an XML start tag's text, entities decoded.
fn xml_attr(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    loop {
        let i = rest.find(name)?;
        let before = rest[..i].chars().last();
        rest = &rest[i + name.len()..];
        if !before.is_some_and(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let after = rest.trim_start();
        let Some(after) = after.strip_prefix('=') else {
            continue;
        };
        let after = after.trim_start();
        let quote = after.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let value = after[1..].split(quote).next()?;
        return Some(
            value
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
    }
}

/// A member of the cluster config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMember {
    /// Its name.
    pub name: String,
    /// Its hostname (the name when not given).
    pub hostname: String,
}

/// A package of the cluster config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPackage {
    /// Its name.
    pub name: String,
    /// The members that may run it.
    pub members: Vec<String>,
}

/// The cluster config file of a policy tree: its text and what it declares.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The file's path in the tree (`/`-separated).
    pub path: String,
    /// Its text.
    pub text: String,
    /// `[cluster] policy_server`.
    pub policy_server: Option<String>,
    /// `[[member]]` in order.
    pub members: Vec<ConfigMember>,
    /// `[[package]]` in order.
    pub packages: Vec<ConfigPackage>,
}

fn string(t: &toml::Table, key: &str) -> Option<String> {
    t.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

fn tables<'a>(t: &'a toml::Table, key: &str) -> impl Iterator<Item = &'a toml::Table> {
    t.get(key)
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_table())
}

impl ClusterConfig {
    /// Reads `text` (the file at `path`); `None` if it declares no `[cluster]`.
    pub fn parse(path: &str, text: &str) -> Result<Option<ClusterConfig>, MembersError> {
        let t: toml::Table = toml::from_str(text).map_err(|e| MembersError::Toml {
            path: path.to_string(),
            source: Box::new(e),
        })?;
        let Some(cluster) = t.get("cluster").and_then(|v| v.as_table()) else {
            return Ok(None);
        };
        let members = tables(&t, "member")
            .filter_map(|m| {
                let name = string(m, "name")?;
                let hostname = string(m, "hostname").unwrap_or_else(|| name.clone());
                Some(ConfigMember { name, hostname })
            })
            .collect();
        let packages = tables(&t, "package")
            .filter_map(|p| {
                Some(ConfigPackage {
                    name: string(p, "name")?,
                    members: p
                        .get("members")
                        .and_then(|v| v.as_array())
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                })
            })
            .collect();
        Ok(Some(ClusterConfig {
            path: path.to_string(),
            text: text.to_string(),
            policy_server: string(cluster, "policy_server"),
            members,
            packages,
        }))
    }

    /// Whether member `m` is in some package (an HA node, not a client).
    fn in_a_package(&self, m: &str) -> bool {
        self.packages
            .iter()
            .any(|p| p.members.iter().any(|x| x == m))
    }
}

/// Whether engine node `node` is member `m` (by name, hostname or its first label).
fn same(node: &str, m: &ConfigMember) -> bool {
    let short = |s: &str| s.split('.').next().unwrap_or(s).to_string();
    node == m.name
        || node == m.hostname
        || short(node) == short(&m.hostname)
        || short(node) == m.name
}

/// How the engine's membership and the policy differ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Engine nodes that are no cluster member: proposed as new members (by node name).
    pub added: Vec<String>,
    /// Members in a package that are no engine node: proposed for removal.
    pub removed: Vec<String>,
    /// Members that are engine nodes but have no enrolled key (they need to join).
    pub unenrolled: Vec<String>,
    /// Removed members whose key is still enrolled (to revoke).
    pub revoke: Vec<String>,
    /// Engine node names that cannot be member names (reported, never proposed).
    pub unusable: Vec<String>,
}

impl Comparison {
    /// Whether the policy follows the engine already.
    pub fn in_sync(&self) -> bool {
        *self == Comparison::default()
    }
}

/// Compares the engine's `nodes` with `config` and, when known, the `enrolled` member
/// names.
pub fn compare(
    nodes: &[String],
    config: &ClusterConfig,
    enrolled: Option<&[String]>,
) -> Comparison {
    let mut c = Comparison::default();
    for n in nodes {
        if config.members.iter().any(|m| same(n, m)) {
            continue;
        }
        if is_valid_name(n) {
            c.added.push(n.clone());
        } else {
            c.unusable.push(n.clone());
        }
    }
    for m in &config.members {
        let node = nodes.iter().any(|n| same(n, m));
        let has_key = enrolled.map(|e| e.contains(&m.name));
        if !node && config.in_a_package(&m.name) {
            c.removed.push(m.name.clone());
            if has_key == Some(true) {
                c.revoke.push(m.name.clone());
            }
        } else if node && has_key == Some(false) {
            c.unenrolled.push(m.name.clone());
        }
    }
    if let Some(e) = enrolled {
        c.unenrolled
            .extend(c.added.iter().filter(|a| !e.contains(a)).cloned());
    }
    c
}

/// Whether a line opens a table (`[x]` or `[[x]]`), not a line of a multi-line value.
fn is_header(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('[')
        && t.chars()
            .nth(1)
            .is_some_and(|c| c == '[' || c.is_ascii_alphabetic() || c == '"')
        && t.split('#')
            .next()
            .is_some_and(|h| h.trim_end().ends_with(']'))
}

/// The text split into sections: the lines before the first header, then one section
/// per header up to the next.
fn sections(text: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = vec![Vec::new()];
    for line in text.split_inclusive('\n') {
        if is_header(line) {
            out.push(Vec::new());
        }
        if let Some(last) = out.last_mut() {
            last.push(line);
        }
    }
    out
}

fn header(section: &[&str]) -> String {
    section
        .first()
        .map(|l| l.split('#').next().unwrap_or_default().trim().to_string())
        .unwrap_or_default()
}

fn section_name(section: &[&str]) -> Option<String> {
    let t: toml::Table = toml::from_str(&section.concat()).ok()?;
    t.values()
        .filter_map(|v| v.as_array())
        .flatten()
        .filter_map(|v| v.as_table())
        .find_map(|t| string(t, "name"))
}

fn quoted(list: &[String]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|m| toml::Value::from(m.as_str()).to_string())
        .collect();
    format!("[{}]", items.join(", "))
}

/// The section with its `members = […]` (possibly over several lines) replaced by
/// `list`.
fn replace_members(section: &[&str], list: &[String]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < section.len() {
        let line = section[i];
        let t = line.trim_start();
        let key = t.strip_prefix("members").map(str::trim_start);
        if key.is_some_and(|k| k.starts_with('=')) {
            let indent = &line[..line.len() - t.len()];
            // The value ends on the line where the brackets balance.
            let mut depth = 0i32;
            let mut j = i;
            loop {
                let code = section[j].split('#').next().unwrap_or_default();
                depth += code.matches('[').count() as i32 - code.matches(']').count() as i32;
                if depth <= 0 || j + 1 == section.len() {
                    break;
                }
                j += 1;
            }
            out.push_str(&format!("{indent}members = {}\n", quoted(list)));
            i = j + 1;
            continue;
        }
        out.push_str(line);
        i += 1;
    }
    out
}

/// The new text of the cluster config: removed members' `[[member]]` tables gone and
/// their names out of every package, added nodes as new `[[member]]` tables after the
/// last one (and in the policy server's package). Everything else is kept as written.
pub fn propose(config: &ClusterConfig, c: &Comparison, engine: Engine) -> String {
    let secs = sections(&config.text);
    let removed = |s: &[&str]| {
        header(s) == "[[member]]" && section_name(s).is_some_and(|n| c.removed.contains(&n))
    };
    // New members go after the last member that stays.
    let last_member = secs
        .iter()
        .rposition(|s| header(s) == "[[member]]" && !removed(s));
    let mut out = String::new();
    for (i, s) in secs.iter().enumerate() {
        let h = header(s);
        let name = section_name(s);
        // Trailing blank and comment lines: they introduce the next section.
        let body = s
            .iter()
            .rposition(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map_or(s.len(), |p| p + 1);
        if removed(s) {
            out.push_str(&s[body..].concat());
            continue;
        }
        if h == "[[package]]"
            && let Some(p) = config
                .packages
                .iter()
                .find(|p| Some(&p.name) == name.as_ref())
        {
            let mut list: Vec<String> = p
                .members
                .iter()
                .filter(|m| !c.removed.contains(m))
                .cloned()
                .collect();
            if config.policy_server.as_ref() == Some(&p.name) {
                for a in &c.added {
                    if !list.contains(a) {
                        list.push(a.clone());
                    }
                }
            }
            if list != p.members {
                out.push_str(&replace_members(s, &list));
                continue;
            }
        }
        if Some(i) == last_member || (last_member.is_none() && i + 1 == secs.len()) {
            out.push_str(&s[..body].concat());
            if !out.ends_with('\n') && !out.is_empty() {
                out.push('\n');
            }
            for a in &c.added {
                out.push_str(&format!(
                    "\n[[member]]\n# joined the {} cluster; add its classes and addresses\nname = \"{a}\"\nhostname = \"{a}\"\n",
                    engine.name()
                ));
            }
            out.push_str(&s[body..].concat());
            continue;
        }
        out.push_str(&s.concat());
    }
    out
}

#[cfg(test)]
mod tests;
