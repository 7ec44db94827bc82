//! `agent.toml`: who this member is, where the master is and where state lives.
//!
//! ```toml
//! member = "alpha"
//! master = "tenet-master.example.com:8741"
//! state_dir = "/var/lib/tenet"                 # default
//! node_key = "/var/lib/tenet/localhost.key"    # default: STATE/localhost.key
//! trusted_root = "/etc/tenet/root.toml"        # with root.toml.sig beside it
//! root = "/"                                   # default
//! connect_timeout = "5s"                       # default
//! mirrors = [                                  # tried in order when the master fails
//!   { url = "https://mirror.example.com/tenet", ca = "/etc/tenet/mirror-ca.pem" },
//! ]
//!
//! [expiry_warning]                             # `run` warns this long before expiry
//! root = "7d"                                  # the trusted root; default 7d
//! manifest = "2d"                              # the bundle's manifest; default 2d
//!
//! [push]                                       # only for `tenet-agent push`
//! key = "/etc/tenet/admin.key"                 # the administrator's key (else --key)
//! port = 8740                                  # members' listener port; default 8740
//! addresses = { alpha = "127.0.0.1:18740" }    # per-member host:port overrides
//! ```
//!
//! Relative paths are taken from the directory of the configuration file. Unknown
//! fields are refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/tenet/agent.toml";
/// The policy server's serving port when `master` names none.
pub const DEFAULT_PORT: u16 = 8741;
/// The state directory when none is configured.
pub const DEFAULT_STATE: &str = "/var/lib/tenet";
/// How long a connection to the master may take when not configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long before the trusted root expires `run` warns, when not configured.
pub const DEFAULT_ROOT_EXPIRY_WARNING: Duration = Duration::from_secs(7 * 86_400);
/// How long before the bundle's manifest expires `run` warns, when not configured.
pub const DEFAULT_MANIFEST_EXPIRY_WARNING: Duration = Duration::from_secs(2 * 86_400);

/// A validated configuration, every path absolute or relative to the working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This member's name in the cluster.
    pub member: String,
    /// The master's host (the relocatable name or address).
    pub host: String,
    /// The master's serving port.
    pub port: u16,
    /// The state directory: lock, trust state, cached bundles.
    pub state_dir: PathBuf,
    /// This member's node key (its TLS client identity).
    pub node_key: PathBuf,
    /// The root obtained at enrolment; its signatures are in `<file>.sig`.
    pub trusted_root: PathBuf,
    /// The root every policy path resolves beneath.
    pub root: PathBuf,
    /// The limit on connecting (TCP and TLS) to the master.
    pub connect_timeout: Duration,
    /// `[push]`: how `tenet-agent push` reaches members.
    pub push: PushConfig,
    /// `[expiry_warning]`: how early `run` warns of an expiry.
    pub expiry_warning: ExpiryWarning,
    /// Static HTTPS mirrors, tried in order after the master (docs/mirrors.md).
    pub mirrors: Vec<MirrorConfig>,
}

/// One of `mirrors`: a plain HTTPS server holding a bundle as `tenet-keys publish
/// --to` lays it out. It is authenticated as ordinary HTTPS by `ca` only; nothing it
/// serves is trusted until the signatures verify, as from the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    /// The URL as written (`https://host[:port][/path]`), for messages.
    pub url: String,
    /// The host: TLS server name, `Host` header and the address connected to.
    pub host: String,
    /// The port (443 unless given).
    pub port: u16,
    /// The path below which the bundle lies, without a trailing `/` (may be empty).
    pub prefix: String,
    /// The PEM file of the CA certificates the mirror's certificate must chain to.
    pub ca: PathBuf,
}

impl MirrorConfig {
    /// `host:port` to connect to.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `[expiry_warning]`: a run whose root or manifest in force expires within this
/// long warns (`expiring` in `last-run.json`); 0 turns the warning off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryWarning {
    /// Before the trusted root expires.
    pub root: Duration,
    /// Before the bundle's manifest expires.
    pub manifest: Duration,
}

/// `[push]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// The administrator's key, when `--key` is not given.
    pub key: Option<PathBuf>,
    /// The members' listener port.
    pub port: u16,
    /// `host:port` per member name, instead of its boot address and `port`.
    pub addresses: std::collections::BTreeMap<String, String>,
}

/// The members' listener port when `[push] port` is not set.
pub const DEFAULT_LISTENER_PORT: u16 = 8740;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{at}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where in it (`file:line:col`).
        at: tenet_policies::Origin,
        /// What is wrong, after the field it is about (`master: ...`).
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    member: String,
    master: String,
    state_dir: Option<PathBuf>,
    node_key: Option<PathBuf>,
    trusted_root: PathBuf,
    root: Option<PathBuf>,
    connect_timeout: Option<String>,
    #[serde(default)]
    push: PushFile,
    #[serde(default)]
    expiry_warning: ExpiryWarningFile,
    #[serde(default)]
    mirrors: Vec<MirrorFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorFile {
    url: String,
    ca: PathBuf,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpiryWarningFile {
    root: Option<String>,
    manifest: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushFile {
    key: Option<PathBuf>,
    port: Option<u16>,
    #[serde(default)]
    addresses: std::collections::BTreeMap<String, String>,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse_located(&text, base).map_err(|p| {
            let at = match p.at {
                At::Offset(o) => tenet_policies::located::at_offset(path, &text, o),
                At::Field(f) => tenet_policies::located::at_field(path, &text, f),
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                at,
                message: p.message,
            }
        })
    }

    /// Parses a configuration whose relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, String> {
        Config::parse_located(text, base).map_err(|p| p.message)
    }

    fn parse_located(text: &str, base: &Path) -> Result<Config, Problem> {
        let f: File = toml::from_str(text).map_err(|e| Problem {
            at: At::Offset(e.span().map_or(0, |s| s.start)),
            message: e.message().trim_end().to_string(),
        })?;
        let field = |name: &'static str| {
            move |message: String| Problem {
                at: At::Field(name),
                message,
            }
        };
        Config::check(f, base).map_err(|(name, message)| field(name)(message))
    }

    fn check(f: File, base: &Path) -> Result<Config, (&'static str, String)> {
        if f.member.is_empty()
            || !f
                .member
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        {
            return Err((
                "member",
                format!("member: {:?} is not a member name", f.member),
            ));
        }
        let (host, port) = parse_master(&f.master).map_err(|m| ("master", m))?;
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let state_dir = abs(f.state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE)));
        let node_key = f
            .node_key
            .map(abs)
            .unwrap_or_else(|| state_dir.join("localhost.key"));
        let connect_timeout = match f.connect_timeout {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(t) => tenet_keys::time::parse_duration(&t)
                .map_err(|e| ("connect_timeout", format!("connect_timeout: {e}")))?,
        };
        if connect_timeout.is_zero() {
            return Err((
                "connect_timeout",
                "connect_timeout: must be more than 0".to_string(),
            ));
        }
        let push_port = f.push.port.unwrap_or(DEFAULT_LISTENER_PORT);
        if push_port == 0 {
            return Err(("push.port", "push.port: must not be 0".to_string()));
        }
        let push = PushConfig {
            key: f.push.key.map(abs),
            port: push_port,
            addresses: f.push.addresses,
        };
        let warn_within =
            |text: Option<String>, default: Duration, field: &'static str| match text {
                None => Ok(default),
                Some(t) => tenet_keys::time::parse_duration(&t)
                    .map_err(|e| (field, format!("{field}: {e}"))),
            };
        let expiry_warning = ExpiryWarning {
            root: warn_within(
                f.expiry_warning.root,
                DEFAULT_ROOT_EXPIRY_WARNING,
                "expiry_warning.root",
            )?,
            manifest: warn_within(
                f.expiry_warning.manifest,
                DEFAULT_MANIFEST_EXPIRY_WARNING,
                "expiry_warning.manifest",
            )?,
        };
        let mirrors = f
            .mirrors
            .into_iter()
            .map(|m| {
                let (host, port, prefix) = parse_mirror_url(&m.url).map_err(|e| ("mirrors", e))?;
                Ok(MirrorConfig {
                    url: m.url,
                    host,
                    port,
                    prefix,
                    ca: abs(m.ca),
                })
            })
            .collect::<Result<Vec<_>, (&'static str, String)>>()?;
        Ok(Config {
            mirrors,
            push,
            expiry_warning,
            member: f.member,
            host,
            port,
            state_dir,
            node_key,
            trusted_root: abs(f.trusted_root),
            root: abs(f.root.unwrap_or_else(|| PathBuf::from("/"))),
            connect_timeout,
        })
    }

    /// `host:port` of the master.
    pub fn master(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A problem in a configuration's text: where, and what.
struct Problem {
    at: At,
    message: String,
}

/// Where a [`Problem`] lies.
enum At {
    /// A byte offset (a TOML error's span).
    Offset(usize),
    /// The value of a dotted field.
    Field(&'static str),
}

/// `host`, `host:port` or `[v6]:port`.
fn parse_master(text: &str) -> Result<(String, u16), String> {
    let bad = || format!("master: {text:?} is not host or host:port");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(bad()),
            None => (text, None),
        }
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    Ok((host.to_string(), port))
}

/// `https://host[:port][/path]`: host, port (443 by default) and path without a
/// trailing `/`. Only `https` is accepted: a mirror is authenticated as HTTPS.
fn parse_mirror_url(text: &str) -> Result<(String, u16, String), String> {
    let bad =
        |why: &str| format!("mirrors: {text:?} is not an https://host[:port][/path] URL: {why}");
    let rest = text
        .strip_prefix("https://")
        .ok_or_else(|| bad("only https is accepted"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the path may hold no query, fragment or space"));
    }
    if authority.contains('@') {
        return Err(bad("no user information"));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 443,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("bad port"))?,
    };
    Ok((
        host.to_string(),
        port,
        path.trim_end_matches('/').to_string(),
    ))
}

/// The state directory beneath the root when none is given.
pub const DEFAULT_STATE_DIR: &str = "var/lib/tenet";

/// The state directory `apply`, `event` and `watch` use for `root` when none is given.
pub fn default_state_dir(root: &Path) -> PathBuf {
    root.join(DEFAULT_STATE_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_paths() {
        let c = Config::parse(
            "member = \"alpha\"\nmaster = \"tenet-master\"\ntrusted_root = \"root.toml\"\n",
            Path::new("/etc/tenet"),
        )
        .unwrap();
        assert_eq!(c.master(), "tenet-master:8741");
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/tenet"));
        assert_eq!(c.node_key, PathBuf::from("/var/lib/tenet/localhost.key"));
        assert_eq!(c.trusted_root, PathBuf::from("/etc/tenet/root.toml"));
        assert_eq!(c.root, PathBuf::from("/"));
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(
            c.expiry_warning,
            ExpiryWarning {
                root: DEFAULT_ROOT_EXPIRY_WARNING,
                manifest: DEFAULT_MANIFEST_EXPIRY_WARNING,
            }
        );
    }

    #[test]
    fn expiry_warning_thresholds() {
        let ok = "member = \"a\"\nmaster = \"m\"\ntrusted_root = \"r\"\n";
        let c = Config::parse(
            &format!("{ok}[expiry_warning]\nroot = \"30d\"\nmanifest = \"0s\"\n"),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.expiry_warning.root, Duration::from_secs(30 * 86_400));
        assert_eq!(c.expiry_warning.manifest, Duration::ZERO);
        let e = Config::parse(
            &format!("{ok}[expiry_warning]\nroot = \"soon\"\n"),
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("expiry_warning.root"), "{e}");
        let e = Config::parse(
            &format!("{ok}[expiry_warning]\nbundle = \"2d\"\n"),
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("unknown field `bundle`"), "{e}");
    }

    #[test]
    fn refusals() {
        let base = Path::new("/");
        let ok = "member = \"a\"\ntrusted_root = \"r\"\n";
        let e = Config::parse(&format!("{ok}master = \"m\"\nport = 3\n"), base).unwrap_err();
        assert!(e.contains("unknown field `port`"), "{e}");
        for bad in ["m:0", "m:x", "a:b:c", "", "[::1"] {
            let e = Config::parse(&format!("{ok}master = \"{bad}\"\n"), base).unwrap_err();
            assert!(e.contains("master"), "{bad}: {e}");
        }
        let c = Config::parse(&format!("{ok}master = \"[::1]:9\"\n"), base).unwrap();
        assert_eq!(c.master(), "[::1]:9");
    }

    fn mirror(url: &str) -> Result<(String, u16, String), String> {
        let text = format!(
            "member = \"a\"\nmaster = \"m\"\ntrusted_root = \"r\"\nmirrors = [{{ url = \"{url}\", ca = \"ca.pem\" }}]\n"
        );
        Config::parse(&text, Path::new("/etc/tenet")).map(|c| {
            assert_eq!(c.mirrors[0].ca, PathBuf::from("/etc/tenet/ca.pem"));
            let m = c.mirrors[0].clone();
            (m.address(), m.port, m.prefix)
        })
    }

    #[test]
    fn mirrors_are_https_urls() {
        let ok = |url: &str, address: &str, port: u16, prefix: &str| {
            assert_eq!(
                mirror(url).unwrap(),
                (address.to_string(), port, prefix.to_string()),
                "{url}"
            );
        };
        ok("https://m.example.com", "m.example.com:443", 443, "");
        ok("https://m.example.com/", "m.example.com:443", 443, "");
        ok(
            "https://127.0.0.1:8443/tenet/",
            "127.0.0.1:8443",
            8443,
            "/tenet",
        );
        ok("https://[::1]:9/a/b", "[::1]:9", 9, "/a/b");
        for bad in [
            "http://m.example.com",
            "m.example.com",
            "https://",
            "https://m:0",
            "https://m:x/",
            "https://u@m/",
            "https://m/a?b",
            "https://[::1/",
        ] {
            let e = mirror(bad).unwrap_err();
            assert!(e.starts_with("mirrors: "), "{bad}: {e}");
        }
        let e = Config::parse(
            "member = \"a\"\nmaster = \"m\"\ntrusted_root = \"r\"\nmirrors = [{ url = \"https://m\" }]\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("missing field `ca`"), "{e}");
    }
}
