//! Loads a policy tree: reads every TOML file, builds the model, checks references
//! and conflicts, and returns every problem at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use toml::de::{DeTable, DeValue};

use crate::Policy;
use crate::cond::{Atom, Condition};
use crate::conflict;
use crate::diag::{Diagnostics, Origin, SourceText};
use crate::model::*;
use crate::read::{Cx, Str, Table, Val};
use crate::split;
use crate::template::{Params, Ref, Template, TemplateError};

mod module;
mod plan;
mod value;

pub use module::{MODULE_FILE, MODULES_DIR};

/// The directory under a tree that holds content for `file` promises; never read as policy.
pub const FILES_DIR: &str = "files";

/// The promise types, as their TOML array names.
pub const PROMISE_TYPES: [&str; 15] = [
    "file", "line", "setting", "link", "dir", "absent", "command", "hostname", "copy", "service",
    "group", "user", "pkg", "process", "tree",
];

const TOP_LEVEL: [&str; 7] = [
    "cluster", "member", "package", "value", "plan", "handler", "use",
];

/// Loads and validates the policy tree at `tree`.
///
/// Returns the policy (with any warnings in [`Policy::warnings`]), or every
/// diagnostic, errors and warnings, sorted by location.
pub fn load(tree: &Path) -> Result<Policy, Diagnostics> {
    load_with(tree, &Dir, Parse::InParts)
}

/// Where a policy tree's files come from: a directory ([`load`]), or anything else
/// that can list and read them by their path relative to the tree (the agent reads a
/// cached bundle's blobs by hash, checking each as it is read).
pub trait TreeFiles: Sync {
    /// Every `*.toml` policy file, relative to the tree, sorted by path; none beneath
    /// `files/` and no hidden entries (a name starting with `.`).
    fn policy_files(&self, tree: &Path) -> Result<Vec<PathBuf>, String>;
    /// The bytes of the file at `rel` (relative to the tree: `x.toml`, `files/a/b`).
    fn read(&self, tree: &Path, rel: &Path) -> std::io::Result<Vec<u8>>;
    /// The size and SHA-256 of the file at `rel`, when this source knows them without
    /// reading it (a signed manifest). A non-template `source` is then loaded as
    /// [`Content::Stored`](crate::model::Content::Stored) and read only when a file must
    /// be written; `None` (the default) reads it at load.
    fn digest(&self, tree: &Path, rel: &Path) -> Option<(u64, [u8; 32])> {
        let _ = (tree, rel);
        None
    }
    /// Every file beneath the directory `rel` of the tree (`files/...`), relative to
    /// the tree, sorted; no hidden entries. The default walks the directory
    /// `tree/rel` and refuses a symlink, as publishing a bundle does.
    fn files_under(&self, tree: &Path, rel: &Path) -> Result<Vec<PathBuf>, String> {
        files_under_dir(tree, rel)
    }
}

/// [`TreeFiles::files_under`] for a tree on disk.
fn files_under_dir(tree: &Path, rel: &Path) -> Result<Vec<PathBuf>, String> {
    let top = tree.join(rel);
    match std::fs::symlink_metadata(&top) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err("is not a directory".to_string()),
        Err(e) => return Err(e.to_string()),
    }
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(&top)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = entry.map_err(|e| e.to_string())?;
        let ft = entry.file_type();
        if ft.is_symlink() {
            return Err(format!(
                "{} is a symlink; a tree's source holds files and directories only",
                entry.path().display()
            ));
        }
        if ft.is_file() {
            let inner = entry.path().strip_prefix(tree).map_err(|e| e.to_string())?;
            out.push(inner.to_path_buf());
        }
    }
    out.sort();
    Ok(out)
}

/// The policy tree as a directory.
struct Dir;

impl TreeFiles for Dir {
    fn policy_files(&self, tree: &Path) -> Result<Vec<PathBuf>, String> {
        policy_files(tree)
    }
    fn read(&self, tree: &Path, rel: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(tree.join(rel))
    }
}

/// [`load`] reading every file through `files`; `tree` names the tree in diagnostics.
pub fn load_from(tree: &Path, files: &dyn TreeFiles) -> Result<Policy, Diagnostics> {
    load_with(tree, files, Parse::InParts)
}

/// Whether a relative path is one [`load`] reads as a policy file: `*.toml`, not
/// beneath `files/`, no hidden component (the rules of the directory walk). Files
/// beneath [`MODULES_DIR`] are policy files too, read as modules' files rather
/// than as top-level policy.
pub fn is_policy_file(rel: &Path) -> bool {
    let mut components = rel.components();
    if components
        .next()
        .is_some_and(|c| c.as_os_str() == FILES_DIR)
        && components.next().is_some()
    {
        return false;
    }
    rel.extension().is_some_and(|x| x == "toml")
        && rel.components().all(|c| match c {
            Component::Normal(n) => !n.to_string_lossy().starts_with('.'),
            _ => false,
        })
}

/// [`load`], choosing how documents are parsed.
pub(crate) fn load_with(
    tree: &Path,
    source: &dyn TreeFiles,
    parse: Parse,
) -> Result<Policy, Diagnostics> {
    let mut loader = Loader {
        tree: tree.to_path_buf(),
        source: Some(source),
        ..Loader::default()
    };
    let mut diags = Diagnostics::default();
    let files = match source.policy_files(tree) {
        Ok(f) => f,
        Err(e) => {
            diags.error(
                Origin {
                    file: tree.to_path_buf(),
                    line: 0,
                    col: 0,
                },
                "",
                e,
            );
            return Err(diags);
        }
    };
    if files.is_empty() {
        diags.error(
            Origin {
                file: tree.to_path_buf(),
                line: 0,
                col: 0,
            },
            "",
            "no *.toml files in the policy tree",
        );
        return Err(diags);
    }
    // One file at a time: its text is dropped as soon as it has been read.
    for rel in files {
        match source.read(tree, &rel) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) if module::is_module_file(&rel) => loader.mods.keep(&rel, text),
                Ok(text) => {
                    // Roughly one promise per `[[` header: no doubling slack on large files.
                    loader.promises.reserve(text.matches("[[").count());
                    loader.mods.scan_params = text.contains("${param.");
                    loader.read_source(&SourceText::new(&rel, text), &mut diags, parse);
                }
                Err(e) => diags.error(
                    Origin {
                        file: rel,
                        line: 1,
                        col: 1,
                    },
                    "",
                    format!(
                        "not UTF-8 text (invalid byte at offset {})",
                        e.utf8_error().valid_up_to()
                    ),
                ),
            },
            Err(e) => diags.error(
                Origin {
                    file: rel,
                    line: 1,
                    col: 1,
                },
                "",
                format!("cannot read: {e}"),
            ),
        }
    }
    loader.instantiate_modules(&mut diags);
    loader.expand(&mut diags);
    loader.check(&mut diags);
    diags.sort();
    // Declaration order, whatever order the TOML parser grouped the tables in; a
    // module's promises take the place of their `[[use]]`. Stable, so a `for_each`
    // promise's instances stay in the order of its items.
    module::sort_promises(&mut loader.promises, &loader.mods);
    loader.plans.sort_by(|a, b| a.origin.cmp(&b.origin));
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(Policy {
        tree: tree.to_path_buf(),
        cluster: loader.cluster,
        values: loader.values,
        promises: loader.promises,
        plans: loader.plans,
        warnings: diags,
    })
}

/// Every `*.toml` under `tree`, relative, sorted; skips `files/` and hidden entries.
fn policy_files(tree: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(tree).map_err(|e| format!("cannot read the policy tree: {e}"))?;
    if !meta.is_dir() {
        return Err("the policy tree must be a directory".to_string());
    }
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(tree)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let hidden = e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
            let files = e.depth() == 1 && e.file_name() == FILES_DIR && e.file_type().is_dir();
            !hidden && !files
        });
    for entry in walk {
        let entry = entry.map_err(|e| format!("cannot walk the policy tree: {e}"))?;
        // Every `*.toml` entry counts, links and oddities included: one that cannot be
        // read is reported, never silently left out.
        if entry.depth() > 0 && entry.path().extension().is_some_and(|x| x == "toml") {
            let rel = entry.path().strip_prefix(tree).unwrap_or(entry.path());
            out.push(rel.to_path_buf());
        }
    }
    Ok(out)
}

/// The lengths of everything a [`Loader`] has read (see `Loader::mark`).
struct Mark {
    cluster: (String, Option<String>, Option<Origin>),
    members: usize,
    packages: usize,
    values: usize,
    promises: usize,
    refs: usize,
    package_member_refs: usize,
    unguarded: usize,
    named: usize,
    plans: usize,
    plan_names: usize,
    uses: usize,
    lang: value::LangMark,
}

/// A name reference to check once every file is read.
struct NameRef {
    kind: NameKind,
    name: String,
    origin: Origin,
    field: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NameKind {
    Member,
    Package,
    Value,
    Handler,
}

#[derive(Default)]
struct Loader<'s> {
    tree: PathBuf,
    /// Where files are read from (always set; `Option` only for `Default`).
    source: Option<&'s dyn TreeFiles>,
    cluster: Cluster,
    cluster_origin: Option<Origin>,
    values: Vec<Value>,
    promises: Vec<Promise>,
    refs: Vec<NameRef>,
    member_origins: Vec<Origin>,
    package_origins: Vec<Origin>,
    package_member_refs: Vec<(usize, Vec<(String, Origin)>)>,
    /// Which promise (by index) needs a guard warning.
    unguarded: Vec<usize>,
    /// Promises (by index) with an explicit `name`.
    named: Vec<usize>,
    /// Failover plans, in reading order.
    plans: Vec<crate::plan::Plan>,
    /// What `check_plans` needs per plan, parallel to `plans`.
    plan_checks: Vec<plan::PlanCheck>,
    /// Every plan name read, with where, for duplicates (even of invalid plans).
    plan_names: Vec<(String, Origin)>,
    /// Tables read so far per top-level array of the current file, for `file[N]` paths.
    counts: HashMap<String, usize>,
    /// Modules and their uses (see `module`).
    mods: module::Modules,
    /// Lists, maps, `for_each` and Jinja templates (`load/value.rs`).
    lang: value::Lang,
}

/// How a document is handed to the TOML parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parse {
    /// Large documents in parts (see `split`), to bound the parser's memory.
    InParts,
    /// Always whole (the reference the split path is tested against).
    #[cfg_attr(not(test), expect(dead_code, reason = "the tests' reference path"))]
    Whole,
}

impl Loader<'_> {
    /// Parses one file and reads what it declares; a syntax error anywhere in it
    /// reports the parser's errors for the whole file and nothing else of it.
    fn read_source(&mut self, src: &SourceText, diags: &mut Diagnostics, parse: Parse) {
        let before = diags.len();
        let mark = self.mark();
        self.counts.clear();
        if parse == Parse::InParts && split::worth_splitting(src.text.len()) {
            let mut ok = true;
            for (base, part) in split::split(&src.text) {
                match DeTable::parse(part) {
                    Ok(doc) => {
                        let mut cx = Cx {
                            src,
                            diags: &mut *diags,
                            base,
                        };
                        self.read_file(&mut cx, doc.get_ref());
                    }
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                return;
            }
            diags.truncate(before);
            self.rollback(mark);
            self.counts.clear();
        }
        let mut cx = Cx {
            src,
            diags,
            base: 0,
        };
        let (doc, errors) = DeTable::parse_recoverable(&src.text);
        if errors.is_empty() {
            self.read_file(&mut cx, doc.get_ref());
            return;
        }
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            cx.error(
                &span,
                "",
                e.message().trim_end_matches('\n').replace('\n', "; "),
            );
        }
    }

    /// How much has been read, so a file whose later part fails can be forgotten.
    fn mark(&self) -> Mark {
        Mark {
            cluster: (
                self.cluster.name.clone(),
                self.cluster.policy_server.clone(),
                self.cluster_origin.clone(),
            ),
            members: self.cluster.members.len(),
            packages: self.cluster.packages.len(),
            values: self.values.len(),
            promises: self.promises.len(),
            refs: self.refs.len(),
            package_member_refs: self.package_member_refs.len(),
            unguarded: self.unguarded.len(),
            named: self.named.len(),
            plans: self.plans.len(),
            plan_names: self.plan_names.len(),
            uses: self.mods.uses.len(),
            lang: self.lang.mark(),
        }
    }

    fn rollback(&mut self, m: Mark) {
        (
            self.cluster.name,
            self.cluster.policy_server,
            self.cluster_origin,
        ) = m.cluster;
        self.cluster.members.truncate(m.members);
        self.member_origins.truncate(m.members);
        self.cluster.packages.truncate(m.packages);
        self.package_origins.truncate(m.packages);
        self.values.truncate(m.values);
        self.promises.truncate(m.promises);
        self.refs.truncate(m.refs);
        self.package_member_refs.truncate(m.package_member_refs);
        self.unguarded.truncate(m.unguarded);
        self.named.truncate(m.named);
        self.plans.truncate(m.plans);
        self.plan_checks.truncate(m.plans);
        self.plan_names.truncate(m.plan_names);
        self.mods.uses.truncate(m.uses);
        self.lang.rollback(m.lang);
    }

    fn read_file(&mut self, cx: &mut Cx<'_>, doc: &DeTable<'_>) {
        self.reject_param_refs(cx, doc);
        for (key, value) in doc.iter() {
            let name: &str = key.get_ref();
            let v = Val {
                value: value.get_ref(),
                span: value.span(),
            };
            match name {
                "cluster" => self.read_cluster(cx, v),
                "member" | "package" | "value" | "plan" | "handler" => {
                    for (i, t) in self.tables(cx, v, name) {
                        match name {
                            "member" => self.read_member(cx, t, i),
                            "package" => self.read_package(cx, t, i),
                            "plan" => self.read_plan(cx, t, i),
                            "handler" => self.read_handler(cx, t),
                            _ => self.read_value(cx, t, i),
                        }
                    }
                }
                "use" => {
                    for (_, t) in self.tables(cx, v, name) {
                        self.read_use(cx, t);
                    }
                }
                t if PROMISE_TYPES.contains(&t) => {
                    for (i, table) in self.tables(cx, v, name) {
                        self.read_promise(cx, name, table, i);
                    }
                }
                other => {
                    let mut known: Vec<&str> = TOP_LEVEL.to_vec();
                    known.extend(PROMISE_TYPES);
                    cx.error(
                        &key.span(),
                        other,
                        format!(
                            "unknown promise type or table `{other}`; expected one of {}",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
    }

    fn read_cluster(&mut self, cx: &mut Cx<'_>, v: Val<'_, '_>) {
        let DeValue::Table(t) = v.value else {
            cx.error(
                &v.span,
                "cluster",
                format!("expected a table `[cluster]`, found {}", v.value.type_str()),
            );
            return;
        };
        let origin = cx.origin(&v.span);
        if let Some(first) = &self.cluster_origin {
            cx.error(
                &v.span,
                "cluster",
                format!("`[cluster]` is already defined at {first}"),
            );
            return;
        }
        self.cluster_origin = Some(origin);
        let mut t = Table::new(t, v.span, "cluster".into());
        if let Some(n) = t.req_str(cx, "name") {
            check_name(cx, &n, &t.field("name"));
            self.cluster.name = n.value.to_string();
        }
        if let Some(p) = t.str(cx, "policy_server") {
            self.refs.push(NameRef {
                kind: NameKind::Package,
                name: p.value.to_string(),
                origin: cx.origin(&p.span),
                field: t.field("policy_server"),
            });
            self.cluster.policy_server = Some(p.value.to_string());
        }
        t.finish(cx);
    }

    fn read_member(&mut self, cx: &mut Cx<'_>, mut t: Table<'_, '_>, _i: usize) {
        let origin = cx.origin(&t.span);
        let name = t.req_str(cx, "name");
        if let Some(n) = &name {
            check_name(cx, n, &t.field("name"));
            if let Some(i) = self.cluster.members.iter().position(|m| m.name == n.value) {
                let first = &self.member_origins[i];
                cx.error(
                    &n.span,
                    &t.field("name"),
                    format!("member `{}` is already defined at {first}", n.value),
                );
            }
        }
        let hostname = t.str(cx, "hostname");
        let classes = t.str_list(cx, "classes").unwrap_or_default();
        for c in &classes {
            check_name(cx, c, &t.field("classes"));
        }
        let mut addresses = Vec::new();
        if let Some(v) = t.value("addresses") {
            let field = t.field("addresses");
            for (i, a) in tables(cx, v, &field, 0) {
                let mut a = a;
                let ip = a
                    .req_str(cx, "ip")
                    .and_then(|s| parse_ip(cx, &s, &a.field("ip")));
                let role = a.req_str(cx, "role").and_then(|s| {
                    one_of(
                        cx,
                        &s,
                        &a.field("role"),
                        &[
                            ("boot", AddressRole::Boot),
                            ("standby", AddressRole::Standby),
                            ("service", AddressRole::Service),
                        ],
                    )
                });
                a.finish(cx);
                let _ = i;
                if let (Some(ip), Some(role)) = (ip, role) {
                    addresses.push(Address { ip, role });
                }
            }
        }
        t.finish(cx);
        if let Some(n) = name {
            self.member_origins.push(origin);
            self.cluster.members.push(Member {
                name: n.value.to_string(),
                hostname: hostname.map_or_else(|| n.value.to_string(), |h| h.value.to_string()),
                classes: classes.iter().map(|c| c.value.to_string()).collect(),
                addresses,
            });
        }
    }

    fn read_package(&mut self, cx: &mut Cx<'_>, mut t: Table<'_, '_>, _i: usize) {
        let origin = cx.origin(&t.span);
        let name = t.req_str(cx, "name");
        if let Some(n) = &name {
            check_name(cx, n, &t.field("name"));
            if let Some(i) = self.cluster.packages.iter().position(|p| p.name == n.value) {
                let first = &self.package_origins[i];
                cx.error(
                    &n.span,
                    &t.field("name"),
                    format!("package `{}` is already defined at {first}", n.value),
                );
            }
        }
        let hostname = t.req_str(cx, "hostname");
        let ip = t
            .req_str(cx, "ip")
            .and_then(|s| parse_ip(cx, &s, &t.field("ip")));
        if !t.has("members") {
            t.missing(cx, "members");
        }
        let members = t.str_list(cx, "members");
        if let Some(m) = &members
            && m.is_empty()
        {
            cx.error(
                &t.span,
                &t.field("members"),
                "a package needs at least one member",
            );
        }
        let configuration = t
            .req_str(cx, "configuration")
            .and_then(|s| one_of(cx, &s, &t.field("configuration"), &Configuration::ALL));
        let members_field = t.field("members");
        t.finish(cx);
        let (Some(n), Some(hostname), Some(ip), Some(members), Some(configuration)) =
            (name, hostname, ip, members, configuration)
        else {
            return;
        };
        let mut seen = HashSet::new();
        let mut refs = Vec::new();
        for m in &members {
            if !seen.insert(m.value) {
                cx.error(
                    &m.span,
                    &members_field,
                    format!("member `{}` is listed twice", m.value),
                );
            }
            refs.push((m.value.to_string(), cx.origin(&m.span)));
        }
        self.package_member_refs
            .push((self.cluster.packages.len(), refs));
        self.package_origins.push(origin);
        self.cluster.packages.push(Package {
            name: n.value.to_string(),
            hostname: hostname.value.to_string(),
            ip,
            members: members.iter().map(|m| m.value.to_string()).collect(),
            configuration,
        });
    }

    fn read_value(&mut self, cx: &mut Cx<'_>, mut t: Table<'_, '_>, _i: usize) {
        let origin = cx.origin(&t.span);
        let name = t.req_str(cx, "name");
        if let Some(n) = &name {
            check_name(cx, n, &t.field("name"));
            if ["member", "hostname", "cluster", "fact", "package", "item"].contains(&n.value) {
                cx.error(
                    &n.span,
                    &t.field("name"),
                    format!("`{}` is a built-in reference; choose another name", n.value),
                );
            }
            if let Some(v) = self.values.iter().find(|v| v.name == n.value) {
                cx.error(
                    &n.span,
                    &t.field("name"),
                    format!("value `{}` is already defined at {}", n.value, v.origin),
                );
            }
        }
        let collection = t.has("list") || t.has("map");
        let kind = match (t.has("addresses"), t.has("text"), collection) {
            (true, false, false) => {
                let select = t.str(cx, "addresses").and_then(|s| {
                    one_of(
                        cx,
                        &s,
                        &t.field("addresses"),
                        &[
                            ("all", AddressSelect::All),
                            ("non-service", AddressSelect::NonService),
                            ("service", AddressSelect::Service),
                            ("boot", AddressSelect::Boot),
                            ("standby", AddressSelect::Standby),
                        ],
                    )
                });
                let separator = t
                    .str(cx, "separator")
                    .map_or_else(|| ":".to_string(), |s| s.value.to_string());
                let max_items = t.u32(cx, "max_items");
                let family = match t.str(cx, "family") {
                    None => Some(Family::Ipv4),
                    Some(s) => {
                        let f = one_of(
                            cx,
                            &s,
                            &t.field("family"),
                            &[
                                ("ipv4", Family::Ipv4),
                                ("ipv6", Family::Ipv6),
                                ("any", Family::Any),
                            ],
                        );
                        if f.is_some_and(|f| f != Family::Ipv4) && separator.contains(':') {
                            cx.error(
                                &s.span,
                                &t.field("family"),
                                format!(
                                    "IPv6 addresses joined with `{separator}` cannot be told apart; \
                                     use family = \"ipv4\" or another separator"
                                ),
                            );
                        }
                        f
                    }
                };
                let mut networks = Some(Vec::new());
                for (i, n) in t.str_list(cx, "networks").into_iter().flatten().enumerate() {
                    match Network::parse(n.value) {
                        Ok(net) => {
                            if let Some(v) = networks.as_mut() {
                                v.push(net);
                            }
                        }
                        Err(e) => {
                            cx.error(&n.span, &format!("{}[{i}]", t.field("networks")), e);
                            networks = None;
                        }
                    }
                }
                match (select, family, networks) {
                    (Some(select), Some(family), Some(networks)) => Some(ValueKind::Addresses {
                        select,
                        separator,
                        max_items,
                        family,
                        networks,
                    }),
                    _ => None,
                }
            }
            (false, true, false) => self.template(cx, &mut t, "text").map(ValueKind::Text),
            (false, false, true) => self.collection(cx, &mut t),
            _ => {
                cx.error(
                    &t.span,
                    &t.path,
                    "a value needs exactly one of `addresses`, `text`, `list` or `map`",
                );
                t.value("addresses");
                t.value("text");
                t.value("list");
                t.value("map");
                None
            }
        };
        t.finish(cx);
        if let (Some(n), Some(kind)) = (name, kind) {
            self.values.push(Value {
                name: n.value.to_string(),
                kind,
                origin,
            });
        }
    }

    fn read_promise(&mut self, cx: &mut Cx<'_>, ty: &str, t: Table<'_, '_>, i: usize) {
        if t.has("for_each") {
            if self.in_module() {
                // An instance is read from its module's text with the use's arguments
                // in place; a deferred re-read would see the text without them.
                cx.error(
                    &t.span,
                    &t.field("for_each"),
                    "`for_each` is not available inside a module; put it on the `[[use]]`'s promises at top level, or pass one use per item",
                );
                return;
            }
            // Read once per item when every value is known (`load/value.rs`).
            self.defer(cx, ty, i);
            return;
        }
        self.search_items(cx, &t);
        self.read_promise_table(cx, ty, t);
        self.lang.item = value::ItemScope::Outside;
    }

    fn read_promise_table(&mut self, cx: &mut Cx<'_>, ty: &str, mut t: Table<'_, '_>) {
        let origin = cx.origin(&t.span);
        t.value("for_each");
        let name = t.str(cx, "name");
        let _comment = t.str(cx, "comment");
        let when = t
            .str(cx, "when")
            .and_then(|w| self.condition(cx, &w, &t.field("when")));
        let kind = self.promise_kind(cx, ty, &mut t);
        let notify = self.notify(cx, &mut t);
        let table_path = t.path.clone();
        t.finish(cx);
        let Some(kind) = kind else { return };
        let explicit_name = name.is_some();
        let id = match name {
            Some(n) => {
                check_not_empty(cx, &n, &table_path, "a promise's name must not be empty");
                n.value.to_string()
            }
            None => default_id(&kind),
        };
        if explicit_name {
            self.named.push(self.promises.len());
        }
        if let PromiseKind::Command(c) = &kind
            && !c.is_guarded()
        {
            self.unguarded.push(self.promises.len());
        }
        self.promises.push(Promise {
            id,
            origin,
            when: when.map(Box::new),
            kind,
            notify,
        });
    }

    /// `[[handler]]`: a command (the fields of `[[command]]`) that runs only when a
    /// repaired promise's `notify` names it (`command:NAME`); its `name` is its id.
    fn read_handler(&mut self, cx: &mut Cx<'_>, mut t: Table<'_, '_>) {
        let origin = cx.origin(&t.span);
        let name = t.req_str(cx, "name");
        if let Some(n) = &name {
            check_name(cx, n, &t.field("name"));
        }
        let _comment = t.str(cx, "comment");
        let when = t
            .str(cx, "when")
            .and_then(|w| self.condition(cx, &w, &t.field("when")));
        let command = self.command(cx, &mut t);
        t.finish(cx);
        let (Some(name), Some(command)) = (name, command) else {
            return;
        };
        self.named.push(self.promises.len());
        self.promises.push(Promise {
            id: name.value.to_string(),
            origin,
            when: when.map(Box::new),
            kind: PromiseKind::Handler(command),
            notify: Vec::new(),
        });
    }

    /// `notify = ["service:UNIT:VERB", "command:NAME"]`, each checked; a handler's
    /// name is checked against the tree's handlers once every file is read.
    fn notify(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Vec<Notify> {
        let field = t.field("notify");
        let mut out = Vec::new();
        for (i, s) in t.str_list(cx, "notify").into_iter().flatten().enumerate() {
            let at = format!("{field}[{i}]");
            let parsed = match s.value.split_once(':') {
                Some(("command", name)) if !name.is_empty() => {
                    self.refs.push(NameRef {
                        kind: NameKind::Handler,
                        name: name.to_string(),
                        origin: cx.origin(&s.span),
                        field: at.clone(),
                    });
                    Ok(Notify::Handler(name.to_string()))
                }
                Some(("service", rest)) => match rest.rsplit_once(':') {
                    Some((unit, verb)) => unit_name(unit).and_then(|unit| {
                        Reaction::ALL
                            .iter()
                            .find(|(n, _)| *n == verb)
                            .map(|(_, verb)| Notify::Service { unit, verb: *verb })
                            .ok_or_else(|| {
                                let names: Vec<&str> =
                                    Reaction::ALL.iter().map(|(n, _)| *n).collect();
                                format!("`{verb}` is not one of {}", names.join(", "))
                            })
                    }),
                    None => Err("write `service:UNIT:VERB`, such as `service:nginx:reload`".into()),
                },
                _ => Err(format!(
                    "`{}` is neither `service:UNIT:VERB` nor `command:NAME`",
                    s.value
                )),
            };
            match parsed {
                Ok(n) if out.contains(&n) => cx.error(&s.span, &at, "listed twice"),
                Ok(n) => out.push(n),
                Err(e) => cx.error(&s.span, &at, e),
            }
        }
        out
    }

    /// The fields of a promise of type `ty` (one of [`PROMISE_TYPES`]), read from
    /// `t`: the one reader of top-level promises and of plan steps.
    fn promise_kind(
        &mut self,
        cx: &mut Cx<'_>,
        ty: &str,
        t: &mut Table<'_, '_>,
    ) -> Option<PromiseKind> {
        match ty {
            "file" => self.file(cx, t).map(PromiseKind::File),
            "line" => self.line(cx, t).map(PromiseKind::Line),
            "setting" => self.setting(cx, t).map(PromiseKind::Setting),
            "link" => self.link(cx, t).map(PromiseKind::Link),
            "dir" => self.dir(cx, t).map(PromiseKind::Dir),
            "absent" => self.absent(cx, t).map(PromiseKind::Absent),
            "command" => self.command(cx, t).map(PromiseKind::Command),
            "hostname" => self.hostname(cx, t).map(PromiseKind::Hostname),
            "service" => service(cx, t).map(PromiseKind::Service),
            "group" => group(cx, t).map(PromiseKind::Group),
            "user" => user(cx, t).map(PromiseKind::User),
            "pkg" => pkg(cx, t).map(PromiseKind::Pkg),
            "process" => self.process(cx, t).map(PromiseKind::Process),
            "tree" => self.tree(cx, t).map(PromiseKind::Tree),
            _ => self.copy(cx, t).map(PromiseKind::Copy),
        }
    }

    fn file(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<FilePromise> {
        let path = req_path(cx, t, "path");
        if t.has("engine") {
            let content = self.jinja_content(cx, t);
            let perms = perms(cx, t);
            return Some(FilePromise {
                path: path?,
                content: content?,
                perms: perms?,
            });
        }
        let template = t.bool(cx, "template").unwrap_or(false);
        let content = match (t.has("content"), t.has("source")) {
            (true, false) => {
                let c = t.str(cx, "content")?;
                if template {
                    self.template_str(cx, &c, &t.field("content"))
                        .map(Content::Text)
                } else {
                    Some(Content::Bytes(c.value.as_bytes().to_vec()))
                }
            }
            (false, true) => {
                let s = t.str(cx, "source")?;
                let rel = self.source_rel(cx, &s, &t.field("source"))?;
                let digest = match self.source {
                    Some(source) if !template => source.digest(&self.tree, &rel),
                    _ => None,
                };
                if let Some((size, sha256)) = digest {
                    Some(Content::Stored(StoredFile { rel, size, sha256 }))
                } else {
                    let bytes = self.source_file(cx, &s, &rel, &t.field("source"))?;
                    if template {
                        match String::from_utf8(bytes) {
                            Ok(text) => match Template::parse(&text) {
                                Ok(mut tpl) => {
                                    self.bind_file_items(cx, &mut tpl, &s.span, &t.field("source"));
                                    self.template_refs(cx, &tpl, &s.span, &t.field("source"));
                                    Some(Content::Text(tpl))
                                }
                                Err(e) => {
                                    cx.error(
                                        &s.span,
                                        &t.field("source"),
                                        format!("in {}: {}", s.value, e.message),
                                    );
                                    None
                                }
                            },
                            Err(_) => {
                                cx.error(
                                    &s.span,
                                    &t.field("source"),
                                    "a template source must be UTF-8 text",
                                );
                                None
                            }
                        }
                    } else {
                        Some(Content::Bytes(bytes))
                    }
                }
            }
            _ => {
                t.value("content");
                t.value("source");
                cx.error(
                    &t.span,
                    &t.path,
                    "a file promise needs exactly one of `content` or `source`",
                );
                None
            }
        };
        let perms = perms(cx, t);
        Some(FilePromise {
            path: path?,
            content: content?,
            perms: perms?,
        })
    }

    fn line(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<LinePromise> {
        let file = req_path(cx, t, "file");
        let line = self.template(cx, t, "line");
        if let Some(l) = t.str(cx, "line").filter(|l| l.value.contains('\n')) {
            cx.error(
                &l.span,
                &t.field("line"),
                "a line must not contain a newline",
            );
        }
        let matches = t.str(cx, "match").and_then(|m| match Regex::new(m.value) {
            Ok(r) => Some(r),
            Err(e) => {
                cx.error(
                    &m.span,
                    &t.field("match"),
                    format!("invalid regular expression: {}", first_line(&e.to_string())),
                );
                None
            }
        });
        let state = t
            .str(cx, "state")
            .map(|s| {
                one_of(
                    cx,
                    &s,
                    &t.field("state"),
                    &[
                        ("present", LineState::Present),
                        ("absent", LineState::Absent),
                    ],
                )
            })
            .unwrap_or(Some(LineState::Present));
        let create = t.bool(cx, "create").unwrap_or(true);
        Some(LinePromise {
            file: file?,
            line: line?,
            matches,
            state: state?,
            create,
        })
    }

    fn setting(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<SettingPromise> {
        let file = req_path(cx, t, "file");
        let key = t.req_str(cx, "key").and_then(|k| {
            let ok = !k.value.is_empty()
                && !k.value.starts_with(|c: char| c.is_ascii_digit())
                && k.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if ok {
                Some(k.value.to_string())
            } else {
                cx.error(
                    &k.span,
                    &t.field("key"),
                    "a key is letters, digits and `_`, not starting with a digit",
                );
                None
            }
        });
        let value = self.template(cx, t, "value");
        if let Some(v) = t.str(cx, "value").filter(|v| v.value.contains('\n')) {
            cx.error(
                &v.span,
                &t.field("value"),
                "a value must not contain a newline",
            );
        }
        let style = t
            .str(cx, "style")
            .map(|s| {
                one_of(
                    cx,
                    &s,
                    &t.field("style"),
                    &[("env", SettingStyle::Env), ("shell", SettingStyle::Shell)],
                )
            })
            .unwrap_or(Some(SettingStyle::Env));
        let create = t.bool(cx, "create").unwrap_or(true);
        Some(SettingPromise {
            file: file?,
            key: key?,
            value: value?,
            style: style?,
            create,
        })
    }

    fn link(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<LinkPromise> {
        let path = req_path(cx, t, "path");
        let target = self.template(cx, t, "target");
        if let Some(s) = t
            .str(cx, "target")
            .filter(|s| s.value.is_empty() || s.value.contains('\0'))
        {
            cx.error(
                &s.span,
                &t.field("target"),
                "a link target must be non-empty and contain no NUL",
            );
        }
        let force = t.bool(cx, "force").unwrap_or(false);
        if path.as_ref().is_some_and(|p| p.as_path() == Path::new("/")) {
            cx.error(&t.span, &t.field("path"), "`/` cannot be a link");
            return None;
        }
        Some(LinkPromise {
            path: path?,
            target: target?,
            force,
        })
    }

    fn dir(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<DirPromise> {
        let path = req_path(cx, t, "path");
        let perms = perms(cx, t);
        Some(DirPromise {
            path: path?,
            perms: perms?,
        })
    }

    fn absent(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<AbsentPromise> {
        if !t.has("paths") {
            t.missing(cx, "paths");
        }
        let list = t.str_list(cx, "paths")?;
        let field = t.field("paths");
        if list.is_empty() {
            cx.error(&t.span, &field, "list at least one path");
        }
        let mut paths = Vec::new();
        let mut ok = true;
        for s in &list {
            match AbsPath::parse(s.value) {
                Ok(p) if is_reserved(&p) => {
                    cx.error(&s.span, &field, format!("`{p}`: {RESERVED}"));
                    ok = false;
                }
                Ok(p) if p.as_path() == Path::new("/") => {
                    cx.error(&s.span, &field, "`/` can never be absent");
                    ok = false;
                }
                Ok(p) => {
                    if let Err(e) = glob::Pattern::new(s.value) {
                        cx.error(&s.span, &field, format!("invalid glob: {}", e.msg));
                        ok = false;
                    }
                    paths.push(p);
                }
                Err(e) => {
                    cx.error(&s.span, &field, e);
                    ok = false;
                }
            }
        }
        let recursive = t.bool(cx, "recursive").unwrap_or(false);
        ok.then_some(AbsentPromise { paths, recursive })
    }

    fn command(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<CommandPromise> {
        let program = match (t.has("argv"), t.has("shell")) {
            (true, false) => self.argv(cx, t, "argv").map(Program::Argv),
            (false, true) => {
                let s = t.req_str(cx, "shell")?;
                self.parsed_template(cx, &s, &t.field("shell"), Template::parse_shell_in)
                    .map(Program::Shell)
            }
            _ => {
                t.value("argv");
                t.value("shell");
                cx.error(
                    &t.span,
                    &t.path,
                    "a command needs exactly one of `argv` or `shell`",
                );
                None
            }
        };
        let timeout = match t.str(cx, "timeout") {
            Some(s) => match parse_duration(s.value) {
                Some(d) if !d.is_zero() => Some(d),
                _ => {
                    cx.error(
                        &s.span,
                        &t.field("timeout"),
                        "expected a duration such as \"30s\", \"5m\", \"1h\" or \"500ms\"",
                    );
                    None
                }
            },
            None => Some(Duration::from_secs(60)),
        };
        let mut env = BTreeMap::new();
        if let Some(e) = t.table(cx, "env") {
            for (k, v) in e.entries() {
                let field = e.field(k.value);
                if k.value.is_empty() || k.value.contains(['=', '\0']) {
                    cx.error(
                        &k.span,
                        &field,
                        "an environment name must be non-empty, without `=` or NUL",
                    );
                    continue;
                }
                match v.value {
                    DeValue::String(s) => {
                        if let Some(tpl) = self.template_str(
                            cx,
                            &Str {
                                value: s.as_ref(),
                                span: v.span.clone(),
                            },
                            &field,
                        ) {
                            env.insert(k.value.to_string(), tpl);
                        }
                    }
                    other => cx.error(
                        &v.span,
                        &field,
                        format!("expected a string, found {}", other.type_str()),
                    ),
                }
            }
        }
        let cwd = opt_path(cx, t, "cwd");
        let unless = if t.has("unless") {
            Some(self.argv(cx, t, "unless")?)
        } else {
            None
        };
        let onlyif = if t.has("onlyif") {
            Some(self.argv(cx, t, "onlyif")?)
        } else {
            None
        };
        let creates = opt_path(cx, t, "creates");
        Some(CommandPromise {
            program: program?,
            timeout: timeout?,
            env,
            cwd: cwd?,
            unless,
            onlyif,
            creates: creates?,
        })
    }

    fn process(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<ProcessPromise> {
        let matches = t.req_str(cx, "match").and_then(|m| {
            if m.value.is_empty() {
                cx.error(
                    &m.span,
                    &t.field("match"),
                    "an empty pattern matches every process",
                );
                return None;
            }
            match Regex::new(m.value) {
                Ok(r) => Some(r),
                Err(e) => {
                    cx.error(
                        &m.span,
                        &t.field("match"),
                        format!("invalid regular expression: {}", first_line(&e.to_string())),
                    );
                    None
                }
            }
        });
        let state = t
            .str(cx, "state")
            .map(|s| one_of(cx, &s, &t.field("state"), &RunState::ALL))
            .unwrap_or(Some(RunState::Running));
        let start = if t.has("start") {
            Some(self.argv(cx, t, "start"))
        } else {
            None
        };
        let signal = match t.str(cx, "signal") {
            Some(s) => one_of(cx, &s, &t.field("signal"), &SIGNALS),
            None => Some(15),
        };
        let timeout = match t.str(cx, "timeout") {
            Some(s) => match parse_duration(s.value) {
                Some(d) if !d.is_zero() => Some(d),
                _ => {
                    cx.error(
                        &s.span,
                        &t.field("timeout"),
                        "expected a duration such as \"30s\", \"5m\", \"1h\" or \"500ms\"",
                    );
                    None
                }
            },
            None => Some(Duration::from_secs(30)),
        };
        let state = state?;
        if state == RunState::Running && start.is_none() {
            t.missing(cx, "start");
            return None;
        }
        Some(ProcessPromise {
            matches: matches?,
            state,
            start: start.map(|s| s.ok_or(())).transpose().ok()?,
            signal: signal?,
            timeout: timeout?,
        })
    }

    fn hostname(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<HostnamePromise> {
        let name = self.template(cx, t, "hostname");
        let persist = t.bool(cx, "persist").unwrap_or(true);
        Some(HostnamePromise {
            name: name?,
            persist,
        })
    }

    fn copy(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<CopyPromise> {
        let from = req_path(cx, t, "from");
        let to = req_path(cx, t, "to");
        let purge = t.bool(cx, "purge").unwrap_or(false);
        let (from, to) = (from?, to?);
        if from.starts_with(&to) || to.starts_with(&from) {
            cx.error(
                &t.span,
                &t.field("to"),
                "`from` and `to` must not contain each other",
            );
            return None;
        }
        Some(CopyPromise { from, to, purge })
    }

    /// `[[tree]]`: reads the source directory's file list (and each file's digest, or
    /// its bytes) now, so the promise is a list of file promises.
    fn tree(&mut self, cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<TreePromise> {
        let path = req_path(cx, t, "path");
        let purge = t.bool(cx, "purge").unwrap_or(false);
        let perms = perms(cx, t);
        let mut dir_mode_ok = true;
        let dir_mode = match t.value("dir_mode") {
            Some(v) if v.value.is_integer() => {
                cx.error(
                    &v.span,
                    &t.field("dir_mode"),
                    "write the mode as a string, such as \"0755\" (a TOML integer is decimal)",
                );
                dir_mode_ok = false;
                None
            }
            _ => match t.str(cx, "dir_mode").map(|m| (Mode::parse(m.value), m)) {
                Some((Ok(m), _)) => Some(m),
                Some((Err(e), m)) => {
                    cx.error(&m.span, &t.field("dir_mode"), e);
                    dir_mode_ok = false;
                    None
                }
                None => None,
            },
        };
        let s = t.req_str(cx, "source")?;
        let field = t.field("source");
        let source = self.source_rel(cx, &s, &field)?;
        let listed = match self.source {
            Some(src) => src.files_under(&self.tree, &source),
            None => files_under_dir(&self.tree, &source),
        };
        let rels = match listed {
            Ok(r) if r.is_empty() => {
                cx.error(
                    &s.span,
                    &field,
                    format!("{FILES_DIR}/{} holds no files to distribute", s.value),
                );
                return None;
            }
            Ok(r) => r,
            Err(e) => {
                cx.error(
                    &s.span,
                    &field,
                    format!(
                        "{FILES_DIR}/{} must be a directory of the tree: {e}",
                        s.value
                    ),
                );
                return None;
            }
        };
        let (path, perms) = (path?, perms?);
        if !dir_mode_ok {
            return None;
        }
        if path.relative().as_os_str().is_empty() {
            cx.error(&t.span, &t.field("path"), "a tree cannot be `/` itself");
            return None;
        }
        let mut files = Vec::with_capacity(rels.len());
        for rel in rels {
            let Ok(inner) = rel.strip_prefix(&source) else {
                continue;
            };
            let Some(dest) = inner
                .to_str()
                .and_then(|i| AbsPath::parse(&format!("{}/{i}", path.as_path().display())).ok())
            else {
                cx.error(
                    &s.span,
                    &field,
                    format!("{} is not a name a member's path can have", rel.display()),
                );
                return None;
            };
            if is_reserved(&dest) {
                cx.error(
                    &s.span,
                    &field,
                    format!(
                        "{} ends with `{TEMP_SUFFIX}`, which the agent's own temporary files use",
                        rel.display()
                    ),
                );
                return None;
            }
            let digest = self.source.and_then(|src| src.digest(&self.tree, &rel));
            let content = match digest {
                Some((size, sha256)) => Content::Stored(StoredFile { rel, size, sha256 }),
                None => {
                    let shown = Str {
                        value: s.value,
                        span: s.span.clone(),
                    };
                    Content::Bytes(self.source_file(cx, &shown, &rel, &field)?)
                }
            };
            files.push(FilePromise {
                path: dest,
                content,
                perms: perms.clone(),
            });
        }
        Some(TreePromise {
            path,
            source,
            files,
            dirs: Perms {
                mode: dir_mode,
                owner: perms.owner,
                group: perms.group,
            },
            purge,
        })
    }

    fn argv(
        &mut self,
        cx: &mut Cx<'_>,
        t: &mut Table<'_, '_>,
        key: &'static str,
    ) -> Option<Vec<Template>> {
        let list = t.str_list(cx, key)?;
        let field = t.field(key);
        if list.is_empty() {
            cx.error(
                &t.span,
                &field,
                "an argument vector needs at least the program",
            );
            return None;
        }
        let mut out = Vec::with_capacity(list.len());
        for s in &list {
            out.push(self.template_str(cx, s, &field)?);
        }
        Some(out)
    }

    /// A required template field.
    fn template(
        &mut self,
        cx: &mut Cx<'_>,
        t: &mut Table<'_, '_>,
        key: &'static str,
    ) -> Option<Template> {
        let s = t.req_str(cx, key)?;
        self.template_str(cx, &s, &t.field(key))
    }

    fn template_str(&mut self, cx: &mut Cx<'_>, s: &Str<'_>, field: &str) -> Option<Template> {
        self.parsed_template(cx, s, field, Template::parse_in)
    }

    fn parsed_template(
        &mut self,
        cx: &mut Cx<'_>,
        s: &Str<'_>,
        field: &str,
        parse: fn(&str, Option<&Params>) -> Result<Template, TemplateError>,
    ) -> Option<Template> {
        // In a module's instance, a string that held `${param.NAME}` is read as written,
        // each argument a unit (one shell word in a `shell` script); see `module`.
        let parsed = match self.mods.as_written(&s.span) {
            Some((text, params)) => parse(text, Some(params)),
            None => parse(s.value, None),
        };
        match parsed {
            Ok(mut t) => {
                self.bind_items(cx, &mut t, &s.span, field);
                self.template_refs(cx, &t, &s.span, field);
                Some(t)
            }
            Err(e) => {
                cx.error(&inner_span(&s.span, e.offset), field, e.message);
                None
            }
        }
    }

    fn template_refs(
        &mut self,
        cx: &mut Cx<'_>,
        t: &Template,
        span: &std::ops::Range<usize>,
        field: &str,
    ) {
        for (r, offset) in t.refs() {
            let (kind, name) = match r {
                Ref::PackageHostname(p) | Ref::PackageIp(p) => (NameKind::Package, p),
                Ref::Value(v) => (NameKind::Value, v),
                _ => continue,
            };
            self.refs.push(NameRef {
                kind,
                name: name.clone(),
                origin: cx.origin(&inner_span(span, offset)),
                field: field.to_string(),
            });
        }
    }

    fn condition(&mut self, cx: &mut Cx<'_>, w: &Str<'_>, field: &str) -> Option<Condition> {
        match Condition::parse(w.value) {
            Ok(c) => {
                for a in c.atoms() {
                    let (kind, name) = match a {
                        Atom::Member(m) => (NameKind::Member, m),
                        Atom::Holds(p) | Atom::Owner(p) | Atom::Standby(p) => {
                            (NameKind::Package, p)
                        }
                        Atom::Class(_) => continue,
                    };
                    self.refs.push(NameRef {
                        kind,
                        name: name.clone(),
                        origin: cx.origin(&w.span),
                        field: field.to_string(),
                    });
                }
                Some(c)
            }
            Err(e) => {
                cx.error(&inner_span(&w.span, e.offset), field, e.message);
                None
            }
        }
    }

    /// A `source` as a path relative to the tree (`files/...`), if it stays inside `files/`.
    fn source_rel(&mut self, cx: &mut Cx<'_>, s: &Str<'_>, field: &str) -> Option<PathBuf> {
        let rel = Path::new(s.value);
        let safe =
            !s.value.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            cx.error(
                &s.span,
                field,
                format!(
                    "`{}` must be a relative path inside `{FILES_DIR}/`, without `..`",
                    s.value
                ),
            );
            return None;
        }
        Some(Path::new(FILES_DIR).join(rel))
    }

    fn source_file(
        &mut self,
        cx: &mut Cx<'_>,
        s: &Str<'_>,
        rel: &Path,
        field: &str,
    ) -> Option<Vec<u8>> {
        let read = match self.source {
            Some(source) => source.read(&self.tree, rel),
            None => std::fs::read(self.tree.join(rel)),
        };
        match read {
            Ok(b) => Some(b),
            Err(e) => {
                cx.error(
                    &s.span,
                    field,
                    format!("cannot read {FILES_DIR}/{}: {e}", s.value),
                );
                None
            }
        }
    }

    /// Cross-file checks: names that refer to members, packages and values; conflicts; warnings.
    fn check(&mut self, diags: &mut Diagnostics) {
        let members: HashSet<&str> = self
            .cluster
            .members
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        let packages: HashSet<&str> = self
            .cluster
            .packages
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let values: HashSet<&str> = self.values.iter().map(|v| v.name.as_str()).collect();
        let handlers: HashSet<&str> = self
            .promises
            .iter()
            .filter(|p| matches!(p.kind, PromiseKind::Handler(_)))
            .map(|p| p.id.as_str())
            .collect();
        for r in &self.refs {
            let (set, what) = match r.kind {
                NameKind::Member => (&members, "member"),
                NameKind::Package => (&packages, "package"),
                NameKind::Value => (&values, "value"),
                NameKind::Handler => (&handlers, "handler"),
            };
            if !set.contains(r.name.as_str()) {
                diags.error(
                    r.origin.clone(),
                    &r.field,
                    format!("unknown {what} `{}`", r.name),
                );
            }
        }
        for (_, refs) in &self.package_member_refs {
            for (m, origin) in refs {
                if !members.contains(m.as_str()) {
                    diags.error(
                        origin.clone(),
                        "package.members",
                        format!("unknown member `{m}`"),
                    );
                }
            }
        }
        // Explicit names must be unique; default ids repeat only where the conflict
        // check below already has something to say (or where conditions keep them apart).
        let mut seen_ids: HashMap<&str, &Origin> = HashMap::new();
        for &i in &self.named {
            let p = &self.promises[i];
            if let Some(first) = seen_ids.insert(&p.id, &p.origin) {
                diags.error(
                    p.origin.clone(),
                    "name",
                    format!("promise `{}` is already defined at {first}", p.id),
                );
            }
        }
        // Once per written promise: the instances of a `for_each` share its origin.
        let mut warned: HashSet<&Origin> = HashSet::new();
        for &i in &self.unguarded {
            let p = &self.promises[i];
            if !warned.insert(&p.origin) {
                continue;
            }
            diags.warning(
                p.origin.clone(),
                "command",
                "no `unless`, `onlyif` or `creates`: it runs, and counts as repaired, on every run",
            );
        }
        self.check_lang(diags);
        conflict::check(&self.promises, diags);
        self.check_plans(diags);
    }
}

/// Each table of an array of tables, with its field path; reports anything else.
impl Loader<'_> {
    /// Each table of a top-level array, numbered on from the same array in earlier
    /// parts of the file.
    fn tables<'a, 'i>(
        &mut self,
        cx: &mut Cx<'_>,
        v: Val<'a, 'i>,
        name: &str,
    ) -> Vec<(usize, Table<'a, 'i>)> {
        let first = self.counts.get(name).copied().unwrap_or(0);
        let len = v.value.as_array().map_or(0, |a| a.len());
        *self.counts.entry(name.to_string()).or_default() += len;
        tables(cx, v, name, first)
    }
}

fn tables<'a, 'i>(
    cx: &mut Cx<'_>,
    v: Val<'a, 'i>,
    name: &str,
    first: usize,
) -> Vec<(usize, Table<'a, 'i>)> {
    let DeValue::Array(items) = v.value else {
        let hint = if v.value.is_table() {
            format!("; write `[[{name}]]` for each entry")
        } else {
            String::new()
        };
        cx.error(
            &v.span,
            name,
            format!(
                "expected an array of tables, found {}{hint}",
                v.value.type_str()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let i = first + i;
        match item.get_ref() {
            DeValue::Table(t) => out.push((i, Table::new(t, item.span(), format!("{name}[{i}]")))),
            other => cx.error(
                &item.span(),
                &format!("{name}[{i}]"),
                format!("expected a table, found {}", other.type_str()),
            ),
        }
    }
    out
}

fn req_path(cx: &mut Cx<'_>, t: &mut Table<'_, '_>, key: &'static str) -> Option<AbsPath> {
    let s = t.req_str(cx, key)?;
    match AbsPath::parse(s.value) {
        Ok(p) if is_reserved(&p) => {
            cx.error(&s.span, &t.field(key), format!("`{p}`: {RESERVED}"));
            None
        }
        Ok(p) => Some(p),
        Err(e) => {
            cx.error(&s.span, &t.field(key), e);
            None
        }
    }
}

/// `Some(None)` when absent, `None` when present but invalid.
fn opt_path(cx: &mut Cx<'_>, t: &mut Table<'_, '_>, key: &'static str) -> Option<Option<AbsPath>> {
    if !t.has(key) {
        t.value(key);
        return Some(None);
    }
    req_path(cx, t, key).map(Some)
}

fn perms(cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<Perms> {
    let mut ok = true;
    let mode = match t.value("mode") {
        Some(v) if v.value.is_integer() => {
            cx.error(
                &v.span,
                &t.field("mode"),
                "write the mode as a string, such as \"0644\" (a TOML integer is decimal)",
            );
            ok = false;
            None
        }
        _ => t.str(cx, "mode").and_then(|m| match Mode::parse(m.value) {
            Ok(m) => Some(m),
            Err(e) => {
                cx.error(&m.span, &t.field("mode"), e);
                ok = false;
                None
            }
        }),
    };
    let owner = t.str(cx, "owner").map(|o| Owner::parse(o.value));
    let group = t.str(cx, "group").map(|g| Owner::parse(g.value));
    ok.then_some(Perms { mode, owner, group })
}

/// The signals a `[[process]]` may be stopped with, by name and number.
const SIGNALS: [(&str, i32); 7] = [
    ("TERM", 15),
    ("KILL", 9),
    ("INT", 2),
    ("HUP", 1),
    ("QUIT", 3),
    ("USR1", 10),
    ("USR2", 12),
];

/// The unit types `[[service]]` accepts, as the name's suffix.
const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "timer",
    "path",
    "mount",
    "automount",
    "swap",
    "slice",
    "scope",
    "device",
];

fn service(cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<ServicePromise> {
    let unit = t
        .req_str(cx, "unit")
        .and_then(|u| match unit_name(u.value) {
            Ok(n) => Some(n),
            Err(e) => {
                cx.error(&u.span, &t.field("unit"), e);
                None
            }
        });
    // Each is `Some(None)` when left out and `None` when wrong, so both are read
    // (and checked) before either error returns.
    let enablement = t.str(cx, "enablement").map_or(Some(None), |s| {
        one_of(cx, &s, &t.field("enablement"), &Enablement::ALL).map(Some)
    });
    let state = t.str(cx, "state").map_or(Some(None), |s| {
        one_of(cx, &s, &t.field("state"), &RunState::ALL).map(Some)
    });
    if !t.has("enablement") && !t.has("state") {
        cx.error(
            &t.span,
            &t.path,
            "a service promise needs `enablement`, `state` or both",
        );
        return None;
    }
    if let (Some(Some(Enablement::Masked)), Some(Some(RunState::Running))) = (enablement, state) {
        cx.error(
            &t.span,
            &t.field("state"),
            "a masked unit cannot be running; nothing can start it",
        );
        return None;
    }
    Some(ServicePromise {
        unit: unit?,
        enablement: enablement?,
        state: state?,
    })
}

/// A unit name as systemd spells it (`[A-Za-z0-9:_.@\\-]`, at most 255 bytes), with
/// `.service` added when it names no unit type.
fn unit_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 255 || s.starts_with(['-', '.']) {
        return Err(
            "a unit name is 1 to 255 characters and starts with neither `-` nor `.`".into(),
        );
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":_.@\\-".contains(c))
    {
        return Err(format!(
            "`{s}` is not a unit name: letters, digits and `:_.@\\-` only"
        ));
    }
    match s.rsplit_once('.') {
        None => Ok(format!("{s}.service")),
        Some((_, ty)) if UNIT_TYPES.contains(&ty) => Ok(s.to_string()),
        Some((_, ty)) => Err(format!(
            "`.{ty}` is not a unit type; expected one of {}",
            UNIT_TYPES.join(", ")
        )),
    }
}

fn pkg(cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<PkgPromise> {
    let name = t.req_str(cx, "pkg").and_then(|n| {
        // Debian's rule (policy 5.6.1: lowercase letters, digits, `+`, `-`, `.`, at
        // least two, starting alphanumeric) widened to RPM names, which also have
        // capitals and `_` (`NetworkManager`, `mod_ssl`); the member's tool judges the rest.
        let ok = n.value.len() >= 2
            && n.value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c));
        if ok {
            Some(n.value.to_string())
        } else {
            cx.error(
                &n.span,
                &t.field("pkg"),
                format!(
                    "`{}` is not a package name: letters, digits, `+`, `-`, `.` and `_`, starting with a letter or digit",
                    n.value
                ),
            );
            None
        }
    });
    let installed = t
        .str(cx, "state")
        .map(|s| {
            one_of(
                cx,
                &s,
                &t.field("state"),
                &[("installed", true), ("absent", false)],
            )
        })
        .unwrap_or(Some(true));
    let version = t.str(cx, "version").and_then(|v| {
        let ok = !v.value.is_empty()
            && v.value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+-~:".contains(c));
        if ok {
            Some(v.value.to_string())
        } else {
            cx.error(
                &v.span,
                &t.field("version"),
                "a version is letters, digits and `.+-~:`",
            );
            None
        }
    });
    let source = opt_path(cx, t, "source");
    let installed = installed?;
    if !installed {
        only_name_when_absent(cx, t, "package", &["version", "source"]);
    }
    Some(PkgPromise {
        pkg: name?,
        state: if installed {
            PkgState::Installed(version)
        } else {
            PkgState::Absent
        },
        source: source?,
    })
}

fn group(cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<GroupPromise> {
    let name = account(cx, t, "group");
    let state = presence(cx, t);
    let gid = t.u32(cx, "gid");
    if state == Some(Presence::Absent) {
        only_name_when_absent(cx, t, "group", &["gid"]);
    }
    Some(GroupPromise {
        group: name?,
        state: state?,
        gid,
    })
}

fn user(cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<UserPromise> {
    let name = account(cx, t, "user");
    let state = presence(cx, t);
    let uid = t.u32(cx, "uid");
    let group = match t.value("group") {
        None => Some(None),
        Some(v) => match v.value {
            DeValue::Integer(_) => t.u32(cx, "group").map(|n| Some(Owner::Id(n))),
            _ => t.str(cx, "group").and_then(|g| {
                account_name(g.value)
                    .map_err(|e| cx.error(&g.span, &t.field("group"), e))
                    .ok()
                    .map(|()| Some(Owner::Name(g.value.to_string())))
            }),
        },
    };
    let groups = match t.str_list(cx, "groups") {
        None => Some(None),
        Some(list) => {
            let field = t.field("groups");
            let mut names = Vec::new();
            let mut ok = true;
            for (i, g) in list.iter().enumerate() {
                match account_name(g.value) {
                    Ok(()) if names.contains(&g.value.to_string()) => {
                        cx.error(&g.span, &format!("{field}[{i}]"), "listed twice");
                        ok = false;
                    }
                    Ok(()) => names.push(g.value.to_string()),
                    Err(e) => {
                        cx.error(&g.span, &format!("{field}[{i}]"), e);
                        ok = false;
                    }
                }
            }
            names.sort();
            ok.then_some(Some(names))
        }
    };
    let home = opt_path(cx, t, "home");
    let shell = opt_path(cx, t, "shell");
    let locked = t.bool(cx, "locked");
    if state == Some(Presence::Absent) {
        only_name_when_absent(
            cx,
            t,
            "user",
            &["uid", "group", "groups", "home", "shell", "locked"],
        );
    }
    Some(UserPromise {
        user: name?,
        state: state?,
        uid,
        group: group?,
        groups: groups?,
        home: home?,
        shell: shell?,
        locked,
    })
}

/// The required name field of a `user` or `group` promise, checked.
fn account(cx: &mut Cx<'_>, t: &mut Table<'_, '_>, key: &'static str) -> Option<String> {
    let s = t.req_str(cx, key)?;
    match account_name(s.value) {
        Ok(()) => Some(s.value.to_string()),
        Err(e) => {
            cx.error(&s.span, &t.field(key), e);
            None
        }
    }
}

/// `state = "present"` (the default) or `"absent"`.
fn presence(cx: &mut Cx<'_>, t: &mut Table<'_, '_>) -> Option<Presence> {
    match t.str(cx, "state") {
        Some(s) => one_of(cx, &s, &t.field("state"), &Presence::ALL),
        None => Some(Presence::Present),
    }
}

/// An absent user or group has no attributes to converge; naming one is a mistake.
fn only_name_when_absent(
    cx: &mut Cx<'_>,
    t: &mut Table<'_, '_>,
    what: &str,
    keys: &[&'static str],
) {
    for key in keys {
        let Some(v) = t.value(key) else { continue };
        cx.error(
            &v.span,
            &t.field(key),
            format!("an absent {what} has no `{key}`; remove it or make the {what} present"),
        );
    }
}

/// A user or group name as `useradd` accepts it everywhere: a lowercase letter or
/// `_`, then lowercase letters, digits, `_`, `.` or `-`, and an optional final `$`;
/// at most 32 characters.
fn account_name(s: &str) -> Result<(), String> {
    let body = s.strip_suffix('$').unwrap_or(s);
    let ok = !body.is_empty()
        && s.len() <= 32
        && body.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a user or group name: a lowercase letter or `_`, then lowercase letters, digits, `_`, `.` or `-`, at most 32"
        ))
    }
}

fn parse_ip(cx: &mut Cx<'_>, s: &Str<'_>, field: &str) -> Option<IpAddr> {
    match s.value.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            cx.error(
                &s.span,
                field,
                format!("`{}` is not an IP address", s.value),
            );
            None
        }
    }
}

fn one_of<T: Copy>(cx: &mut Cx<'_>, s: &Str<'_>, field: &str, choices: &[(&str, T)]) -> Option<T> {
    if let Some((_, v)) = choices.iter().find(|(n, _)| *n == s.value) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    cx.error(
        &s.span,
        field,
        format!("`{}` is not one of {}", s.value, names.join(", ")),
    );
    None
}

fn check_name(cx: &mut Cx<'_>, s: &Str<'_>, field: &str) {
    let ok = s
        .value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && s.value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        cx.error(
            &s.span,
            field,
            format!(
                "`{}` is not a valid name: use letters, digits, `-`, `_` and `.`",
                s.value
            ),
        );
    }
}

/// Reports `message` when a name is empty or only blanks.
fn check_not_empty(cx: &mut Cx<'_>, n: &Str<'_>, table_path: &str, message: &str) {
    if n.value.trim().is_empty() {
        cx.error(&n.span, &format!("{table_path}.name"), message);
    }
}

/// The span of a byte offset inside a basic string value (after its opening quote).
/// Escapes before the offset shift it slightly; the line is always right.
fn inner_span(span: &std::ops::Range<usize>, offset: usize) -> std::ops::Range<usize> {
    let start = span.start + 1 + offset;
    start..start
}

/// The suffix of the agent's temp files; no managed path may end with it.
pub const TEMP_SUFFIX: &str = ".tenet-new";

/// Most promises a tree may hold once modules and `for_each` are expanded: both
/// multiply what is written (a use brings its module's promises, an item the
/// promise naming it), so a few kilobytes could otherwise ask every member for
/// millions of promises on every run. Ten times the largest tree measured (bench).
pub(crate) const MAX_PROMISES: usize = 100_000;

const RESERVED: &str = "names ending in `.tenet-new` are reserved for tenet's temp files";

fn is_reserved(p: &AbsPath) -> bool {
    p.as_path()
        .file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(TEMP_SUFFIX))
}

/// Parses a duration ([`crate::duration`]: `500ms`, `90s`, `1h30m`, `1d`).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    crate::duration::parse_duration(s).ok()
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

fn default_id(kind: &PromiseKind) -> String {
    let ty = kind.type_name();
    match kind {
        PromiseKind::File(p) => format!("{ty}:{}", p.path),
        PromiseKind::Line(p) => format!(
            "{ty}:{}:{}",
            p.file,
            p.line
                .render(&mut |r| Ok::<_, ()>(r.to_string()))
                .unwrap_or_default()
        ),
        PromiseKind::Setting(p) => format!("{ty}:{}:{}", p.file, p.key),
        PromiseKind::Link(p) => format!("{ty}:{}", p.path),
        PromiseKind::Dir(p) => format!("{ty}:{}", p.path),
        PromiseKind::Absent(p) => match p.paths.as_slice() {
            [one] => format!("{ty}:{one}"),
            [first, rest @ ..] => format!("{ty}:{first} (+{} more)", rest.len()),
            [] => ty.to_string(),
        },
        PromiseKind::Command(p) => {
            let prog = match &p.program {
                Program::Argv(a) => a
                    .first()
                    .and_then(|t| t.render(&mut |r| Ok::<_, ()>(r.to_string())).ok())
                    .unwrap_or_default(),
                Program::Shell(s) => s.source(),
            };
            format!("{ty}:{prog}")
        }
        PromiseKind::Hostname(_) => ty.to_string(),
        PromiseKind::Copy(p) => format!("{ty}:{}", p.to),
        PromiseKind::Service(p) => format!("{ty}:{}", p.unit),
        PromiseKind::Group(p) => format!("{ty}:{}", p.group),
        PromiseKind::User(p) => format!("{ty}:{}", p.user),
        PromiseKind::Handler(_) => ty.to_string(),
        PromiseKind::Pkg(p) => format!("{ty}:{}", p.pkg),
        PromiseKind::Process(p) => format!("{ty}:{}", p.matches.as_str()),
        PromiseKind::Tree(p) => format!("{ty}:{}", p.path),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5 days"), None);
    }

    /// What a load produced, comparable across parse modes.
    fn outcome(tree: &Path, parse: Parse) -> String {
        match load_with(tree, &Dir, parse) {
            Ok(p) => {
                let ids: Vec<String> = p
                    .promises
                    .iter()
                    .map(|p| format!("{} {}", p.id, p.origin))
                    .collect();
                let plans: Vec<String> = p
                    .plans
                    .iter()
                    .map(|p| format!("{} {} {}", p.name, p.origin, p.steps.len()))
                    .collect();
                format!(
                    "ok {}\n{}\n{}\n{}",
                    p.cluster.members.len(),
                    ids.join("\n"),
                    plans.join("\n"),
                    p.warnings
                )
            }
            Err(d) => format!("err\n{d}"),
        }
    }

    const FRAGMENTS: &[&str] = &[
        "[[file]]\npath = \"/a\"\ncontent = \"x\"\n",
        "[[file]]\npath = \"/b\"\ncontent = \"\"\"\n[[file]]\npath = \"/fake\"\n\"\"\"\n",
        "[[file]]\npath = \"/c\"\ncontent = '''\n[[line]]\n'''\n",
        "[[line]]\nfile = \"/etc/x\"\nline = \"[[file]] # not a comment\"\n",
        "# [[file]]\n",
        "[[command]]\nargv = [\n  \"/bin/true\",\n]\ncreates = \"/x\"\n[command.env]\nA = \"1\"\n",
        "[[member]]\nname = \"m1\"\naddresses = [\n  { ip = \"10.0.0.1\", role = \"boot\" },\n]\n",
        "[[link]]\npath = \"/l\"\ntarget = \"/a\"\nbogus = 1\n",
        "[[dir]]\npath = \"/d\"\nmode = 7\n",
        "[[absent]]\npaths = [\"/j/*\"]\n",
        "[[file]]\npath = \"/a\"\ncontent = \"again\"\n",
        "[[setting]]\nfile = \"/etc/environment\"\nkey = \"K\"\nvalue = \"\"\"v\"\"\"\"\"\n",
        "[[file]]\npath = \"/broken\ncontent = 1\n",
        "[[value]]\nname = \"v\"\ntext = \"${member}\"\n",
        "[[plan]]\nname = \"p\"\non = \"master-move\"\npackage = \"tenet\"\n[[plan.step]]\ntype = \"command\"\nargv = [\"/bin/true\"]\n[plan.step.env]\nA = \"1\"\n[[plan.step]]\ntype = \"hostname-save\"\n",
        "[[package]]\nname = \"tenet\"\nhostname = \"t\"\nip = \"10.0.0.1\"\nmembers = [\"m1\"]\nconfiguration = \"rotating\"\n",
        "[[value]]\nname = \"l\"\nlist = [\"a\", \"b\"]\n",
        "[[dir]]\nfor_each = \"${l}\"\npath = \"/f/${item}\"\n",
        "[[command]]\nname = \"c\"\nfor_each = [\"x\"]\nshell = \"echo ${item}\"\ncreates = \"/c\"\n",
    ];

    /// A tree on disk whose files are known by a (made-up) digest, as a signed
    /// bundle knows them.
    struct Digested;

    impl TreeFiles for Digested {
        fn policy_files(&self, tree: &Path) -> Result<Vec<PathBuf>, String> {
            policy_files(tree)
        }
        fn read(&self, tree: &Path, rel: &Path) -> std::io::Result<Vec<u8>> {
            std::fs::read(tree.join(rel))
        }
        fn digest(&self, tree: &Path, rel: &Path) -> Option<(u64, [u8; 32])> {
            let len = std::fs::metadata(tree.join(rel)).ok()?.len();
            Some((len, [7; 32]))
        }
    }

    #[test]
    #[expect(clippy::disallowed_methods, reason = "the test writes a policy tree")]
    fn a_tree_is_one_file_promise_per_source_file() {
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        std::fs::write(
            t.join("p.toml"),
            "[[tree]]\npath = \"/etc/t\"\nsource = \"t\"\nmode = \"0600\"\nowner = \"0\"\ndir_mode = \"0700\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(t.join("files/t/sub")).unwrap();
        std::fs::write(t.join("files/t/b"), "B").unwrap();
        std::fs::write(t.join("files/t/sub/a"), "AA").unwrap();
        std::fs::write(t.join("files/t/.hidden"), "no").unwrap();
        let kind = |p: &Policy| match &p.promises[0].kind {
            PromiseKind::Tree(tp) => tp.clone(),
            other => panic!("{other:?}"),
        };
        let tp = kind(&load(t).unwrap());
        let paths: Vec<String> = tp.files.iter().map(|f| f.path.to_string()).collect();
        assert_eq!(
            paths,
            ["/etc/t/b", "/etc/t/sub/a"],
            "hidden files are skipped"
        );
        assert!(matches!(&tp.files[1].content, Content::Bytes(b) if b == b"AA"));
        assert_eq!(tp.files[0].perms.mode, Some(Mode(0o600)));
        assert_eq!(tp.dirs.mode, Some(Mode(0o700)));
        assert_eq!(tp.dirs.owner, Some(Owner::Id(0)));
        assert_eq!(tp.dir_paths(), [PathBuf::new(), PathBuf::from("sub")]);

        let stored = kind(&load_from(t, &Digested).unwrap());
        assert!(matches!(
            &stored.files[1].content,
            Content::Stored(s) if s.rel == Path::new("files/t/sub/a") && s.size == 2
        ));

        std::os::unix::fs::symlink("/etc/passwd", t.join("files/t/link")).unwrap();
        let err = load(t).unwrap_err().to_string();
        assert!(err.contains("is a symlink"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Loading in parts is loading whole: same promises, origins and diagnostics.
        #[test]
        fn split_loading_equals_whole_loading(
            picks in proptest::collection::vec(0..FRAGMENTS.len(), 1..12)
        ) {
            let tree = tempfile::tempdir().unwrap();
            let text: String = picks.iter().map(|&i| FRAGMENTS[i]).collect();
            #[expect(clippy::disallowed_methods, reason = "the test writes a policy tree")]
            std::fs::write(tree.path().join("p.toml"), &text).unwrap();
            prop_assert_eq!(
                outcome(tree.path(), Parse::InParts),
                outcome(tree.path(), Parse::Whole),
                "{}",
                text
            );
        }
    }
}
