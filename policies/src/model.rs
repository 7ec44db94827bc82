//! The validated policy: what the agent converges. Built only by [`crate::load`].
//!
//! Promise types are generic over `S`, the type of their text fields: a loaded
//! policy holds [`Template`]s, and [`crate::Policy::resolve`] turns them into the
//! `String`s a member converges to, so the engine never sees an unexpanded `${...}`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use crate::cond::Condition;
use crate::diag::Origin;
use crate::template::Template;

/// The cluster this policy tree describes.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// The cluster's name (`${cluster}`); empty when the tree has no `[cluster]`.
    pub name: String,
    /// The package that hosts the policy server, if named.
    pub policy_server: Option<String>,
    /// Members in declaration order.
    pub members: Vec<Member>,
    /// Packages in declaration order.
    pub packages: Vec<Package>,
}

impl Cluster {
    /// The member with this name.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The package with this name.
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// Every service address of the cluster: package addresses and member addresses with role `service`.
    pub fn service_addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self.packages.iter().map(|p| p.ip).collect();
        for m in &self.members {
            out.extend(
                m.addresses
                    .iter()
                    .filter(|a| a.role == AddressRole::Service)
                    .map(|a| a.ip),
            );
        }
        out
    }
}

/// A member of the cluster.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member's name.
    pub name: String,
    /// Its hostname (defaults to the name).
    pub hostname: String,
    /// Classes it belongs to.
    pub classes: Vec<String>,
    /// Its addresses with their role.
    pub addresses: Vec<Address>,
}

/// An address of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The address.
    pub ip: IpAddr,
    /// What it is for.
    pub role: AddressRole,
}

/// The role of a member's address, in HACMP's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRole {
    /// The address the member boots with.
    Boot,
    /// A standby adapter's address.
    Standby,
    /// A service address (one that moves with a package).
    Service,
}

/// A package: a relocatable name and address and the members that may run it.
#[derive(Debug, Clone)]
pub struct Package {
    /// The package's name.
    pub name: String,
    /// The relocatable hostname.
    pub hostname: String,
    /// The relocatable address.
    pub ip: IpAddr,
    /// Members in priority order; the first is the owner.
    pub members: Vec<String>,
    /// How the cluster moves it.
    pub configuration: Configuration,
}

/// The cluster configuration of a package (HACMP's terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Configuration {
    /// Hot standby with cascading resources: the owner takes the package back when it returns.
    Cascading,
    /// Hot standby with rotating resources: no reintegration.
    Rotating,
    /// One-sided takeover.
    OneSided,
    /// Mutual takeover: each member runs its own package and takes over the other's.
    Mutual,
}

impl Configuration {
    /// Every configuration with its name as written in the policy.
    pub const ALL: [(&'static str, Configuration); 4] = [
        ("cascading", Configuration::Cascading),
        ("rotating", Configuration::Rotating),
        ("one-sided", Configuration::OneSided),
        ("mutual", Configuration::Mutual),
    ];

    /// The name as written in the policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cascading => "cascading",
            Self::Rotating => "rotating",
            Self::OneSided => "one-sided",
            Self::Mutual => "mutual",
        }
    }
}

impl fmt::Display for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A computed value, declared with `[[value]]` and referenced as `${name}`.
#[derive(Debug, Clone)]
pub struct Value {
    /// The name used in `${...}`.
    pub name: String,
    /// How it is computed.
    pub kind: ValueKind,
    /// Where it was declared.
    pub origin: Origin,
}

/// How a value is computed.
#[derive(Debug, Clone)]
pub enum ValueKind {
    /// A list of this member's addresses, joined.
    Addresses {
        /// Which addresses.
        select: AddressSelect,
        /// What goes between two addresses.
        separator: String,
        /// At most this many; the rest are dropped with a warning.
        max_items: Option<u32>,
        /// Which address family (IPv4 unless the value says otherwise).
        family: Family,
        /// The networks from which the machine's own addresses are taken; the
        /// member's addresses in the cluster config are always considered.
        networks: Vec<Network>,
    },
    /// A template.
    Text(Template),
    /// A list of literal items (`list = [...]`): what a `for_each` iterates over, and
    /// a sequence in a Jinja template; never a `${...}` text.
    List(Vec<String>),
    /// Literal entries in declaration order (`map = { KEY = "VALUE" }`): `${NAME.KEY}`
    /// is one entry's value; a `for_each` iterates over the entries, a Jinja
    /// template sees a mapping.
    Map(Vec<(String, String)>),
}

impl ValueKind {
    /// What it is, for messages: `text`, `addresses`, `list` or `map`.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Addresses { .. } => "an address list joined into text",
            Self::Text(_) => "text",
            Self::List(_) => "a list",
            Self::Map(_) => "a map",
        }
    }
}

/// Which address family a value lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 addresses only (the default).
    Ipv4,
    /// IPv6 addresses only.
    Ipv6,
    /// Both.
    Any,
}

impl Family {
    /// Whether `ip` is of this family.
    pub fn admits(self, ip: &IpAddr) -> bool {
        match self {
            Self::Ipv4 => ip.is_ipv4(),
            Self::Ipv6 => ip.is_ipv6(),
            Self::Any => true,
        }
    }
}

/// A network written `ADDRESS/PREFIX` (`9.3.240.0/24`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDRESS/PREFIX`; host bits must be zero.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not ADDRESS/PREFIX (such as 9.3.240.0/24)"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("`{p}` is not a prefix length from 0 to {max}"))?;
        let net = Self { addr, prefix };
        if net.bits(&addr) != Some(Self::raw(&addr)) {
            return Err(format!(
                "`{s}` has host bits set; the network is {}",
                Self {
                    addr: net.network_addr(),
                    prefix
                }
            ));
        }
        Ok(net)
    }

    fn raw(ip: &IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v) => u128::from(u32::from(*v)),
            IpAddr::V6(v) => u128::from(*v),
        }
    }

    fn mask(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        let host = width - u32::from(self.prefix);
        let all = if width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        all.checked_shl(host).map_or(0, |m| m & all)
    }

    /// `ip` masked to this network's prefix, if it is of the same family.
    fn bits(&self, ip: &IpAddr) -> Option<u128> {
        (ip.is_ipv4() == self.addr.is_ipv4()).then(|| Self::raw(ip) & self.mask())
    }

    fn network_addr(&self) -> IpAddr {
        let bits = Self::raw(&self.addr) & self.mask();
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(u32::try_from(bits).unwrap_or_default().into()),
            IpAddr::V6(_) => IpAddr::V6(bits.into()),
        }
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.bits(ip) == Some(Self::raw(&self.addr))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Which of this member's addresses a value lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSelect {
    /// Every address.
    All,
    /// Those that are no package's service address (the seed's `RPC_UNSUPPORTED_NETADDRS`).
    NonService,
    /// Service addresses only.
    Service,
    /// Boot addresses from the cluster config.
    Boot,
    /// Standby addresses from the cluster config.
    Standby,
}

/// An absolute, normalised path as written in the policy (no `.`, `..`, `//`, NUL).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbsPath(PathBuf);

impl AbsPath {
    /// Checks that `s` is absolute and normalised.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.contains('\0') {
            return Err("path contains a NUL byte");
        }
        if !s.starts_with('/') {
            return Err("path must be absolute");
        }
        if s.len() > 1 && s.ends_with('/') {
            return Err("path must not end with `/`");
        }
        if s.contains("//") {
            return Err("path must not contain `//`");
        }
        for c in Path::new(s).components() {
            match c {
                Component::ParentDir => return Err("path must not contain `..`"),
                Component::CurDir => return Err("path must not contain `.`"),
                _ => {}
            }
        }
        if s.split('/').any(|c| c == ".") {
            return Err("path must not contain `.`");
        }
        Ok(Self(PathBuf::from(s)))
    }

    /// The path as written.
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The path without its leading `/`, for joining beneath a root.
    pub fn relative(&self) -> &Path {
        self.0.strip_prefix("/").unwrap_or(&self.0)
    }

    /// Whether `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &AbsPath) -> bool {
        self.0.starts_with(&other.0)
    }
}

impl fmt::Display for AbsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

/// A file mode's permission bits (at most `0o7777`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl Mode {
    /// Parses an octal string such as `"0644"` or `"755"`.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        if digits.is_empty() || digits.len() > 5 {
            return Err("mode must be octal, such as \"0644\"");
        }
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o7777 => Ok(Self(m)),
            Ok(_) => Err("mode must be at most 07777"),
            Err(_) => Err("mode must be octal, such as \"0644\""),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// An owner or group: a name looked up on the member, or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Looked up in the member's user or group database.
    Name(String),
    /// Used as is.
    Id(u32),
}

impl Owner {
    pub(crate) fn parse(s: &str) -> Self {
        s.parse()
            .map_or_else(|_| Self::Name(s.to_string()), Self::Id)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Id(i) => write!(f, "{i}"),
        }
    }
}

/// Mode, owner and group a promise asks for; `None` leaves that attribute alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Perms {
    /// Permission bits.
    pub mode: Option<Mode>,
    /// Owning user.
    pub owner: Option<Owner>,
    /// Owning group.
    pub group: Option<Owner>,
}

/// One promise about one target.
#[derive(Debug, Clone)]
pub struct Promise<S = Template> {
    /// Its id in reports: the `name` field, or `TYPE:TARGET`.
    pub id: String,
    /// Where it was written.
    pub origin: Origin,
    /// Where it applies; `None` is everywhere. Boxed: most promises have none, and
    /// a large policy holds thousands of promises in one vector.
    pub when: Option<Box<Condition>>,
    /// What it promises.
    pub kind: PromiseKind<S>,
    /// What runs once, at the end of the run, when this promise is repaired.
    pub notify: Vec<Notify>,
}

/// An action a repaired promise asks for (`notify = [...]`): each runs at most
/// once per run, after every phase, however many promises name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Notify {
    /// `service:UNIT:VERB`: `systemctl VERB UNIT`.
    Service {
        /// The unit's full name.
        unit: String,
        /// What is done to it.
        verb: Reaction,
    },
    /// `command:NAME`: the `[[handler]]` called NAME.
    Handler(String),
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service { unit, verb } => write!(f, "service:{unit}:{}", verb.name()),
            Self::Handler(n) => write!(f, "command:{n}"),
        }
    }
}

/// What a `service:` notification does to a running unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reaction {
    /// `systemctl reload`: re-read configuration without a restart.
    Reload,
    /// `systemctl restart`: stop (if running) and start.
    Restart,
    /// `systemctl try-restart`: restart only if running.
    TryRestart,
    /// `systemctl reload-or-restart`: reload when the unit can, else restart.
    ReloadOrRestart,
}

impl Reaction {
    /// Every reaction with its `systemctl` verb.
    pub const ALL: [(&'static str, Reaction); 4] = [
        ("reload", Reaction::Reload),
        ("restart", Reaction::Restart),
        ("try-restart", Reaction::TryRestart),
        ("reload-or-restart", Reaction::ReloadOrRestart),
    ];

    /// The `systemctl` verb, as written in the policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reload => "reload",
            Self::Restart => "restart",
            Self::TryRestart => "try-restart",
            Self::ReloadOrRestart => "reload-or-restart",
        }
    }
}

/// The closed set of promise types.
#[derive(Debug, Clone)]
pub enum PromiseKind<S = Template> {
    /// Exact content.
    File(FilePromise<S>),
    /// A line present or absent.
    Line(LinePromise<S>),
    /// A `KEY=VALUE` setting.
    Setting(SettingPromise<S>),
    /// A symlink.
    Link(LinkPromise<S>),
    /// A directory.
    Dir(DirPromise),
    /// Paths that must not exist.
    Absent(AbsentPromise),
    /// A guarded command.
    Command(CommandPromise<S>),
    /// The member's hostname.
    Hostname(HostnamePromise<S>),
    /// A local copy.
    Copy(CopyPromise),
    /// A systemd unit's enablement and running state.
    Service(ServicePromise),
    /// A group in the member's group database.
    Group(GroupPromise),
    /// A user in the member's user database.
    User(UserPromise),
    /// A command that runs only when a repaired promise notifies it (`[[handler]]`).
    Handler(CommandPromise<S>),
    /// A software package installed or absent.
    Pkg(PkgPromise),
    /// Processes matching a pattern running (started) or not (signalled).
    Process(ProcessPromise<S>),
    /// A directory of the tree's `files/` distributed as a whole.
    Tree(TreePromise),
}

impl<S> PromiseKind<S> {
    /// The promise type's name as written in TOML.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Line(_) => "line",
            Self::Setting(_) => "setting",
            Self::Link(_) => "link",
            Self::Dir(_) => "dir",
            Self::Absent(_) => "absent",
            Self::Command(_) => "command",
            Self::Hostname(_) => "hostname",
            Self::Copy(_) => "copy",
            Self::Service(_) => "service",
            Self::Group(_) => "group",
            Self::User(_) => "user",
            Self::Handler(_) => "handler",
            Self::Pkg(_) => "pkg",
            Self::Process(_) => "process",
            Self::Tree(_) => "tree",
        }
    }
}

/// Where a file's content comes from.
#[derive(Debug, Clone)]
pub enum Content<S> {
    /// Given as is (inline, or read from `files/` without templating).
    Bytes(Vec<u8>),
    /// A template, expanded per member.
    Text(S),
    /// A `files/` file known by its size and SHA-256, not read at load: the tree's
    /// source vouches for both (a signed manifest) and reads the bytes on demand.
    Stored(StoredFile),
}

/// A file of the tree's `files/` known by its digest, read only when needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its path relative to the tree (`files/...`), as [`crate::TreeFiles::read`] takes it.
    pub rel: std::path::PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes.
    pub sha256: [u8; 32],
}

/// `[[file]]`: exact content, mode, owner, group.
#[derive(Debug, Clone)]
pub struct FilePromise<S = Template> {
    /// The file.
    pub path: AbsPath,
    /// What it must contain.
    pub content: Content<S>,
    /// Attributes.
    pub perms: Perms,
}

/// Whether a line must be there or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineState {
    /// The line (or an equivalent one, per `match`) is in the file.
    Present,
    /// No line equal to it (or matching `match`) is in the file.
    Absent,
}

/// `[[line]]`: one line present or absent in a file.
#[derive(Debug, Clone)]
pub struct LinePromise<S = Template> {
    /// The edited file.
    pub file: AbsPath,
    /// The line, without its newline.
    pub line: S,
    /// A line matching this counts as the line.
    pub matches: Option<Regex>,
    /// Present or absent.
    pub state: LineState,
    /// Create the file when missing.
    pub create: bool,
}

/// How a setting is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingStyle {
    /// `KEY=VALUE`, as in /etc/environment.
    Env,
    /// `KEY="value"`, as in a shell rc file.
    Shell,
}

/// `[[setting]]`: `KEY=VALUE` in a file.
#[derive(Debug, Clone)]
pub struct SettingPromise<S = Template> {
    /// The edited file.
    pub file: AbsPath,
    /// The key.
    pub key: String,
    /// The value.
    pub value: S,
    /// How the line is written.
    pub style: SettingStyle,
    /// Create the file when missing.
    pub create: bool,
}

/// `[[link]]`: a symlink and its target.
#[derive(Debug, Clone)]
pub struct LinkPromise<S = Template> {
    /// The link.
    pub path: AbsPath,
    /// Where it points, as written (absolute targets are re-rooted beneath the root).
    pub target: S,
    /// Replace a file or an empty directory in the way.
    pub force: bool,
}

/// `[[dir]]`: a directory with mode and owner.
#[derive(Debug, Clone)]
pub struct DirPromise {
    /// The directory.
    pub path: AbsPath,
    /// Attributes.
    pub perms: Perms,
}

/// `[[absent]]`: paths or globs that must not exist.
#[derive(Debug, Clone)]
pub struct AbsentPromise {
    /// Paths or glob patterns.
    pub paths: Vec<AbsPath>,
    /// Remove non-empty directories.
    pub recursive: bool,
}

/// What a command runs.
#[derive(Debug, Clone)]
pub enum Program<S> {
    /// An argument vector, run directly.
    Argv(Vec<S>),
    /// A script for `/bin/sh -c`.
    Shell(S),
}

/// `[[command]]`: a guarded command.
#[derive(Debug, Clone)]
pub struct CommandPromise<S = Template> {
    /// What runs.
    pub program: Program<S>,
    /// How long it may run.
    pub timeout: Duration,
    /// Extra environment.
    pub env: BTreeMap<String, S>,
    /// Working directory.
    pub cwd: Option<AbsPath>,
    /// Skip when this exits 0.
    pub unless: Option<Vec<S>>,
    /// Run only when this exits 0.
    pub onlyif: Option<Vec<S>>,
    /// Skip when this path exists.
    pub creates: Option<AbsPath>,
}

impl<S> CommandPromise<S> {
    /// Whether any guard makes the command idempotent.
    pub fn is_guarded(&self) -> bool {
        self.unless.is_some() || self.onlyif.is_some() || self.creates.is_some()
    }
}

/// `[[hostname]]`: the member's hostname.
#[derive(Debug, Clone)]
pub struct HostnamePromise<S = Template> {
    /// The hostname.
    pub name: S,
    /// Also write `/etc/hostname`.
    pub persist: bool,
}

/// `[[copy]]`: a file or tree copied locally.
#[derive(Debug, Clone)]
pub struct CopyPromise {
    /// Source.
    pub from: AbsPath,
    /// Destination.
    pub to: AbsPath,
    /// Remove files under `to` that `from` lacks.
    pub purge: bool,
}

/// `[[tree]]`: a directory of the tree's `files/` distributed as a whole: every file
/// of the source is a file beneath `path` (its directories, directories beneath it),
/// and with `purge` nothing else is.
#[derive(Debug, Clone)]
pub struct TreePromise {
    /// The directory on the member.
    pub path: AbsPath,
    /// The source directory, relative to the policy tree (`files/...`).
    pub source: PathBuf,
    /// One file promise per file of the source, sorted by path, each beneath `path`
    /// with the tree's file attributes (its content is never a template).
    pub files: Vec<FilePromise<String>>,
    /// Attributes of `path` and of every directory beneath it that holds a file.
    pub dirs: Perms,
    /// Remove what lies beneath `path` that the source lacks.
    pub purge: bool,
}

impl TreePromise {
    /// Every directory the tree makes: `path`, then the directories holding the
    /// files beneath it, each after its parent, relative to `path` (`path` itself is
    /// the empty path).
    pub fn dir_paths(&self) -> Vec<PathBuf> {
        let mut out = std::collections::BTreeSet::new();
        out.insert(PathBuf::new());
        for f in &self.files {
            if let Ok(rel) = f.path.as_path().strip_prefix(self.path.as_path()) {
                let mut up = rel.parent();
                while let Some(d) = up.filter(|d| !d.as_os_str().is_empty()) {
                    out.insert(d.to_path_buf());
                    up = d.parent();
                }
            }
        }
        out.into_iter().collect()
    }
}

/// Whether a unit starts at boot, as `systemctl is-enabled` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enablement {
    /// `systemctl enable`: the links its `[Install]` section asks for exist.
    Enabled,
    /// `systemctl disable`: no such links.
    Disabled,
    /// `systemctl mask`: linked to `/dev/null`, so nothing can start it.
    Masked,
}

impl Enablement {
    /// Every enablement with its name as written in the policy.
    pub const ALL: [(&'static str, Enablement); 3] = [
        ("enabled", Enablement::Enabled),
        ("disabled", Enablement::Disabled),
        ("masked", Enablement::Masked),
    ];

    /// The name as written in the policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Masked => "masked",
        }
    }
}

/// Whether a unit runs now, as `systemctl is-active` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Active (started).
    Running,
    /// Inactive or failed.
    Stopped,
}

impl RunState {
    /// Every running state with its name as written in the policy.
    pub const ALL: [(&'static str, RunState); 2] = [
        ("running", RunState::Running),
        ("stopped", RunState::Stopped),
    ];

    /// The name as written in the policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }
}

/// `[[service]]`: a systemd unit enabled, disabled or masked, and running or stopped.
#[derive(Debug, Clone)]
pub struct ServicePromise {
    /// The unit's full name (`nginx.service`; a name without a type gets `.service`).
    pub unit: String,
    /// Whether it starts at boot; `None` leaves that alone.
    pub enablement: Option<Enablement>,
    /// Whether it runs now; `None` leaves that alone.
    pub state: Option<RunState>,
}

/// Whether a user or group must exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// It exists, with the attributes the promise names.
    Present,
    /// It does not exist.
    Absent,
}

impl Presence {
    /// Every presence with its name as written in the policy.
    pub const ALL: [(&'static str, Presence); 2] =
        [("present", Presence::Present), ("absent", Presence::Absent)];
}

/// `[[process]]`: processes whose command line matches a pattern, running (the
/// `start` command runs when none does) or stopped (each gets `signal`).
#[derive(Debug, Clone)]
pub struct ProcessPromise<S = Template> {
    /// Matched against each process's command line, its arguments joined by spaces.
    pub matches: Regex,
    /// Running or stopped.
    pub state: RunState,
    /// What starts it (required when running); it may daemonize.
    pub start: Option<Vec<S>>,
    /// The signal that stops it, by number (`SIGTERM` unless the promise says).
    pub signal: i32,
    /// How long `start` may run, and how long stopped processes have to exit.
    pub timeout: Duration,
}

/// Whether a package must be installed, and which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PkgState {
    /// Installed; with a version, exactly that version (as the package manager
    /// writes it, such as `1.2.3-1`).
    Installed(Option<String>),
    /// Not installed (configuration files a removal keeps may remain).
    Absent,
}

/// `[[pkg]]`: a package installed (from the member's repositories, or from a local
/// package file) or absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkgPromise {
    /// The package's name.
    pub pkg: String,
    /// Installed (which version) or absent.
    pub state: PkgState,
    /// A package file on the member (`.deb`) to install from, instead of the
    /// repositories.
    pub source: Option<AbsPath>,
}

/// `[[group]]`: a group present (optionally with a gid) or absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPromise {
    /// The group's name.
    pub group: String,
    /// Present or absent.
    pub state: Presence,
    /// Its numeric id; `None` leaves it to `groupadd` (and alone afterwards).
    pub gid: Option<u32>,
}

/// `[[user]]`: a user present with the attributes named, or absent. Every
/// attribute left `None` is left as `useradd` made it, or as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPromise {
    /// The user's name.
    pub user: String,
    /// Present or absent.
    pub state: Presence,
    /// Its numeric id.
    pub uid: Option<u32>,
    /// Its primary group, by name or number.
    pub group: Option<Owner>,
    /// Its supplementary groups, exactly (an empty list: none).
    pub groups: Option<Vec<String>>,
    /// Its home directory (the passwd field; the directory is not created).
    pub home: Option<AbsPath>,
    /// Its login shell.
    pub shell: Option<AbsPath>,
    /// Whether its password is locked (`!` before the hash in `shadow`).
    pub locked: Option<bool>,
}

impl<S> Promise<S> {
    /// Turns every text field into another type, consuming the promise (nothing is
    /// copied), stopping at the first error.
    pub fn try_map<T, E>(self, f: impl FnMut(S) -> Result<T, E>) -> Result<Promise<T>, E> {
        Ok(Promise {
            id: self.id,
            origin: self.origin,
            when: self.when,
            kind: self.kind.try_map(f)?,
            notify: self.notify,
        })
    }
}

impl<S> PromiseKind<S> {
    /// Turns every text field into another type, consuming the kind, stopping at
    /// the first error (shared by promises and plan steps).
    pub fn try_map<T, E>(self, mut f: impl FnMut(S) -> Result<T, E>) -> Result<PromiseKind<T>, E> {
        Ok(match self {
            PromiseKind::File(p) => PromiseKind::File(FilePromise {
                path: p.path,
                content: match p.content {
                    Content::Bytes(b) => Content::Bytes(b),
                    Content::Text(t) => Content::Text(f(t)?),
                    Content::Stored(d) => Content::Stored(d),
                },
                perms: p.perms,
            }),
            PromiseKind::Line(p) => PromiseKind::Line(LinePromise {
                file: p.file,
                line: f(p.line)?,
                matches: p.matches,
                state: p.state,
                create: p.create,
            }),
            PromiseKind::Setting(p) => PromiseKind::Setting(SettingPromise {
                file: p.file,
                key: p.key,
                value: f(p.value)?,
                style: p.style,
                create: p.create,
            }),
            PromiseKind::Link(p) => PromiseKind::Link(LinkPromise {
                path: p.path,
                target: f(p.target)?,
                force: p.force,
            }),
            PromiseKind::Dir(p) => PromiseKind::Dir(p),
            PromiseKind::Absent(p) => PromiseKind::Absent(p),
            PromiseKind::Command(p) => PromiseKind::Command(map_command(p, &mut f)?),
            PromiseKind::Handler(p) => PromiseKind::Handler(map_command(p, &mut f)?),
            PromiseKind::Hostname(p) => PromiseKind::Hostname(HostnamePromise {
                name: f(p.name)?,
                persist: p.persist,
            }),
            PromiseKind::Copy(p) => PromiseKind::Copy(p),
            PromiseKind::Tree(p) => PromiseKind::Tree(p),
            PromiseKind::Service(p) => PromiseKind::Service(p),
            PromiseKind::Group(p) => PromiseKind::Group(p),
            PromiseKind::User(p) => PromiseKind::User(p),
            PromiseKind::Pkg(p) => PromiseKind::Pkg(p),
            PromiseKind::Process(p) => PromiseKind::Process(ProcessPromise {
                matches: p.matches,
                state: p.state,
                start: p.start.map(|a| map_all(a, &mut f)).transpose()?,
                signal: p.signal,
                timeout: p.timeout,
            }),
        })
    }
}

fn map_command<S, T, E>(
    p: CommandPromise<S>,
    f: &mut impl FnMut(S) -> Result<T, E>,
) -> Result<CommandPromise<T>, E> {
    let program = match p.program {
        Program::Argv(a) => Program::Argv(map_all(a, f)?),
        Program::Shell(s) => Program::Shell(f(s)?),
    };
    let unless = p.unless.map(|a| map_all(a, f)).transpose()?;
    let onlyif = p.onlyif.map(|a| map_all(a, f)).transpose()?;
    let env = p
        .env
        .into_iter()
        .map(|(k, v)| Ok((k, f(v)?)))
        .collect::<Result<_, E>>()?;
    Ok(CommandPromise {
        program,
        timeout: p.timeout,
        env,
        cwd: p.cwd,
        unless,
        onlyif,
        creates: p.creates,
    })
}

fn map_all<S, T, E>(v: Vec<S>, f: &mut impl FnMut(S) -> Result<T, E>) -> Result<Vec<T>, E> {
    v.into_iter().map(f).collect()
}

/// A promise (or a plan step) that applies but cannot be expanded here (a fact is
/// missing); it is reported as blocked. Made by [`crate::Policy::resolve`] and
/// [`crate::Policy::plans_for`].
#[derive(Debug, Clone)]
pub struct Unresolved {
    /// The promise's id.
    pub id: String,
    /// Its type name.
    pub type_name: &'static str,
    /// Where it was written.
    pub origin: Origin,
    /// Why it cannot be expanded.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Result<String, &'static str> {
        AbsPath::parse(s).map(|p| p.to_string())
    }

    #[test]
    fn paths_must_be_absolute_and_normalised() {
        assert_eq!(path("/etc/services"), Ok("/etc/services".to_string()));
        assert_eq!(path("/"), Ok("/".to_string()));
        assert_eq!(
            path("/..."),
            Ok("/...".to_string()),
            "DCE's /... is a name, not a parent"
        );
        assert_eq!(path("/:"), Ok("/:".to_string()));
        assert!(path("etc/x").is_err());
        assert!(path("/etc/../x").is_err());
        assert!(path("/etc/./x").is_err());
        assert!(path("/etc//x").is_err());
        assert!(path("/etc/").is_err());
        assert!(path("/etc/\0").is_err());
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(Mode::parse("0644"), Ok(Mode(0o644)));
        assert_eq!(Mode::parse("755"), Ok(Mode(0o755)));
        assert_eq!(Mode::parse("4755"), Ok(Mode(0o4755)));
        assert!(Mode::parse("0988").is_err());
        assert!(Mode::parse("17777").is_err());
        assert!(Mode::parse("").is_err());
        assert_eq!(Mode(0o644).to_string(), "0644");
    }
}
