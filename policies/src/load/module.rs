//! Modules: a directory `modules/NAME/` of promises with declared parameters,
//! instantiated by each `[[use]]` with its own arguments.
//!
//! A module's files are read when the tree is read (they are policy files, carried
//! by the bundle like any other) but are not promises of their own: each `[[use]]`
//! parses them again, writes its arguments in place of every `${param.NAME}`, and
//! reads the result as promises whose ids start with the use's name (`site_a/ID`)
//! and whose `when` is the use's `when` and their own. Diagnostics keep pointing at
//! the module's file, with the use named; conflict detection sees the instances like
//! any other promises.
//!
//! A field read as a template is the exception to writing arguments in as text: it
//! reads its string as written, each `${param.NAME}` the argument as a unit
//! ([`Modules::as_written`], `Template::parse_in`), so that in a `shell` script an
//! argument is one shell word, placed by the rules of any reference, and cannot
//! join the text around it into a reference of its own.
//!
//! This module must not change how top-level files are read: its hooks in the
//! loader are the `[[use]]` table, [`Loader::instantiate_modules`] after every file
//! is read, and [`sort_promises`].

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use crate::cond::Condition;
use crate::diag::{Diagnostics, Origin, SourceText};
use crate::model::Promise;
use crate::read::{Cx, Table, Val, closest};
use crate::template::Params;

use super::{Loader, MAX_PROMISES, PROMISE_TYPES, check_name};

/// The directory under a tree that holds modules, one directory each.
pub const MODULES_DIR: &str = "modules";

/// The file that makes `modules/NAME/` a module and declares its parameters.
pub const MODULE_FILE: &str = "module.toml";

/// How deep uses may nest (a module using a module using ...); a cycle is reported
/// on its own, this bounds what a tree without cycles can ask for.
const MAX_DEPTH: usize = 16;

/// How many instances a tree may make in all: uses nested with a fan-out multiply,
/// so depth alone does not bound the work.
const MAX_INSTANCES: usize = 10_000;

/// What the loader keeps about modules while a tree is read.
#[derive(Default)]
pub(super) struct Modules {
    /// Every file beneath `modules/`, by module name, in path order.
    files: BTreeMap<String, Vec<SourceText>>,
    /// Files beneath `modules/` outside any `modules/NAME/` directory.
    strays: Vec<PathBuf>,
    /// Uses read and not yet instantiated.
    pub(super) uses: Vec<Use>,
    /// The instance being read, if any (`None` while top-level files are read).
    scope: Option<Scope>,
    /// Whether the top-level file being read mentions `${param.`.
    pub(super) scan_params: bool,
    /// For each promise read from a module (by index), the origins that order it:
    /// the uses from the top level down, then the promise's own.
    placed: Vec<(usize, Vec<Origin>)>,
    /// While an instance's file is read: the use's arguments, and each string of
    /// the file that held `${param.NAME}` as written, by its span.
    bound: Option<(Params, HashMap<Range<usize>, String>)>,
}

impl Modules {
    /// Keeps a file beneath `modules/` (see [`is_module_file`]) to read per use.
    pub(super) fn keep(&mut self, rel: &Path, text: String) {
        match module_name(rel) {
            Some(name) => self
                .files
                .entry(name)
                .or_default()
                .push(SourceText::new(rel, text)),
            None => self.strays.push(rel.to_path_buf()),
        }
    }

    /// The string at `span` of the instance file being read as written, with the
    /// use's arguments, if it held `${param.NAME}`: a template reads it so rather
    /// than with the arguments written in as text.
    pub(super) fn as_written(&self, span: &Range<usize>) -> Option<(&str, &Params)> {
        let (values, written) = self.bound.as_ref()?;
        written.get(span).map(|text| (text.as_str(), values))
    }
}

/// Whether `rel` (relative to the tree) is a module's file rather than top-level policy.
pub(super) fn is_module_file(rel: &Path) -> bool {
    rel.components()
        .next()
        .is_some_and(|c| c.as_os_str() == MODULES_DIR)
}

/// `NAME` of `modules/NAME/...`.
fn module_name(rel: &Path) -> Option<String> {
    let mut c = rel.components();
    c.next()?;
    let name = c.next()?.as_os_str().to_str()?.to_string();
    c.next().map(|_| name)
}

/// One `[[use]]`, as read.
pub(super) struct Use {
    /// Its field path, such as `use[1]`.
    path: String,
    name: String,
    module: String,
    module_at: Origin,
    /// Each argument: name, value, where.
    args: Vec<(String, String, Origin)>,
    when: Option<Condition>,
    origin: Origin,
    /// The instance it was read in, if any.
    parent: Option<Scope>,
}

/// The instance of a module whose files are being read.
#[derive(Clone)]
struct Scope {
    /// `site_a/` (`outer/inner/` when nested).
    prefix: String,
    /// The conjunction of the `when` of every use on the way.
    when: Option<Condition>,
    /// Modules being instantiated, outermost first (to find cycles).
    stack: Vec<String>,
    /// Origins of the uses, outermost first (the promises' place in the run).
    chain: Vec<Origin>,
    /// `use `site_a` at site.toml:3:1`, for diagnostics.
    label: String,
}

/// A module's declaration, read once.
struct Def {
    /// Each parameter: name, default, where it is declared.
    params: Vec<(String, Option<String>, Origin)>,
    /// Whether its files read without errors (else no use instantiates it).
    ok: bool,
}

/// Orders `promises` by declaration, a module's promises at the place of their use.
///
/// Stable, so a `for_each` promise's instances stay in the order of its items. The
/// sort is of indices, and the promises are then moved into that order in place: a
/// stable sort of the promises themselves allocates scratch space for as many
/// promises as there are (about 2.9 MB for 10,000), which was the peak of a no-op
/// `apply` of a 10,000-promise policy.
pub(super) fn sort_promises(promises: &mut [Promise], modules: &Modules) {
    let chains: HashMap<usize, &[Origin]> = modules
        .placed
        .iter()
        .map(|(i, chain)| (*i, chain.as_slice()))
        .collect();
    let key = |i: usize| -> &[Origin] {
        chains
            .get(&i)
            .copied()
            .unwrap_or_else(|| std::slice::from_ref(&promises[i].origin))
    };
    let mut order: Vec<usize> = (0..promises.len()).collect();
    order.sort_by(|&a, &b| key(a).cmp(key(b)));
    permute(promises, order);
}

/// Reorders `items` in place so that position `i` holds what was at `order[i]`.
/// `order` must be a permutation of `0..items.len()`.
fn permute<T>(items: &mut [T], mut order: Vec<usize>) {
    for start in 0..items.len() {
        // Follow the cycle through `start`: each swap puts one item in its place,
        // and `order` marks each visited position as placed (`order[i] == i`).
        let mut at = start;
        loop {
            let from = order[at];
            order[at] = at;
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

impl Loader<'_> {
    /// Whether a module instance is being read (not a top-level file).
    pub(super) fn in_module(&self) -> bool {
        self.mods.scope.is_some()
    }

    /// `[[use]]`: `name`, `module`, `with = { PARAM = "value" }`, `when`.
    pub(super) fn read_use(&mut self, cx: &mut Cx<'_>, mut t: Table<'_, '_>) {
        let origin = cx.origin(&t.span);
        let name = t.req_str(cx, "name");
        if let Some(n) = &name {
            check_name(cx, n, &t.field("name"));
        }
        let module = t.req_str(cx, "module");
        let _comment = t.str(cx, "comment");
        let when = t
            .str(cx, "when")
            .and_then(|w| self.condition(cx, &w, &t.field("when")));
        let mut args = Vec::new();
        let mut ok = true;
        if let Some(with) = t.table(cx, "with") {
            for (k, v) in with.entries() {
                let field = with.field(k.value);
                match scalar(v.value) {
                    Some(s) => args.push((k.value.to_string(), s, cx.origin(&k.span))),
                    None => {
                        cx.error(
                            &v.span,
                            &field,
                            format!(
                                "expected a string, integer or boolean argument, found {}",
                                v.value.type_str()
                            ),
                        );
                        ok = false;
                    }
                }
            }
        }
        let t_path = t.path.clone();
        t.finish(cx);
        let (Some(name), Some(module)) = (name, module) else {
            return;
        };
        if !ok {
            return;
        }
        self.mods.uses.push(Use {
            path: t_path,
            name: name.value.to_string(),
            module: module.value.to_string(),
            module_at: cx.origin(&module.span),
            args,
            when,
            origin,
            parent: self.mods.scope.clone(),
        });
    }

    /// Reports `${param.NAME}` anywhere in a top-level file: parameters exist only
    /// inside a module's files.
    pub(super) fn reject_param_refs(&self, cx: &mut Cx<'_>, doc: &DeTable<'_>) {
        if self.mods.scope.is_some() || !self.mods.scan_params {
            return;
        }
        for (k, v) in doc.iter() {
            reject_in(cx, k.get_ref(), v.get_ref(), v.span());
        }
    }

    /// Reads every module's declaration and instantiates every use, nested uses
    /// included; called once every top-level file is read.
    pub(super) fn instantiate_modules(&mut self, diags: &mut Diagnostics) {
        let files = std::mem::take(&mut self.mods.files);
        for rel in std::mem::take(&mut self.mods.strays) {
            diags.error(
                Origin {
                    file: rel,
                    line: 0,
                    col: 0,
                },
                "",
                format!(
                    "a module's files belong in `{MODULES_DIR}/NAME/`, beside its {MODULE_FILE}"
                ),
            );
        }
        let defs: BTreeMap<&str, Def> = files
            .iter()
            .filter_map(|(name, srcs)| declare(name, srcs, diags).map(|d| (name.as_str(), d)))
            .collect();
        let mut seen: HashMap<String, Origin> = HashMap::new();
        let mut queue: Vec<Use> = std::mem::take(&mut self.mods.uses);
        queue.reverse();
        while let Some(u) = queue.pop() {
            if seen.len() >= MAX_INSTANCES {
                diags.error(
                    u.origin.clone(),
                    u.path.clone(),
                    format!(
                        "more than {MAX_INSTANCES} module instances in the tree; not instantiated"
                    ),
                );
                break;
            }
            if self.promises.len() >= MAX_PROMISES {
                diags.error(
                    u.origin.clone(),
                    u.path.clone(),
                    format!(
                        "more than {MAX_PROMISES} promises once modules are instantiated; not instantiated"
                    ),
                );
                break;
            }
            self.instantiate(&u, &defs, &files, &mut seen, diags);
            let nested = std::mem::take(&mut self.mods.uses);
            queue.extend(nested.into_iter().rev());
        }
    }

    fn instantiate(
        &mut self,
        u: &Use,
        defs: &BTreeMap<&str, Def>,
        files: &BTreeMap<String, Vec<SourceText>>,
        seen: &mut HashMap<String, Origin>,
        diags: &mut Diagnostics,
    ) {
        let parent_prefix = u.parent.as_ref().map_or("", |s| s.prefix.as_str());
        let prefix = format!("{parent_prefix}{}/", u.name);
        if let Some(first) = seen.get(&prefix) {
            diags.error(
                u.origin.clone(),
                format!("{}.name", u.path),
                format!("use `{}` is already defined at {first}", u.name),
            );
            return;
        }
        seen.insert(prefix.clone(), u.origin.clone());
        let (Some(def), Some(srcs)) = (defs.get(u.module.as_str()), files.get(&u.module)) else {
            let known: Vec<&str> = files.keys().map(String::as_str).collect();
            let hint = closest(&u.module, &known)
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_else(|| {
                    format!("; a module is a directory `{MODULES_DIR}/NAME/` with a {MODULE_FILE}")
                });
            diags.error(
                u.module_at.clone(),
                format!("{}.module", u.path),
                format!("unknown module `{}`{hint}", u.module),
            );
            return;
        };
        let mut stack = u.parent.as_ref().map_or_else(Vec::new, |s| s.stack.clone());
        if stack.contains(&u.module) {
            stack.push(u.module.clone());
            diags.error(
                u.module_at.clone(),
                format!("{}.module", u.path),
                format!("module `{}` uses itself: {}", u.module, stack.join(" → ")),
            );
            return;
        }
        if stack.len() >= MAX_DEPTH {
            diags.error(
                u.module_at.clone(),
                format!("{}.module", u.path),
                format!("uses nest more than {MAX_DEPTH} deep"),
            );
            return;
        }
        stack.push(u.module.clone());
        let Some(values) = arguments(u, def, diags) else {
            return;
        };
        if !def.ok {
            return;
        }
        let mut chain = u.parent.as_ref().map_or_else(Vec::new, |s| s.chain.clone());
        chain.push(u.origin.clone());
        let when = both(
            u.parent.as_ref().and_then(|s| s.when.clone()),
            u.when.clone(),
        );
        let scope = Scope {
            prefix,
            when,
            stack,
            chain,
            label: format!("use `{}` at {}", u.name, u.origin),
        };
        let previous = self.mods.scope.replace(scope.clone());
        for src in srcs {
            let (doc, errors) = DeTable::parse_recoverable(&src.text);
            if !errors.is_empty() {
                continue; // reported once, by `declare`
            }
            let mut doc = doc.into_inner();
            strip(&mut doc, is_declaration(&src.rel));
            let mut written = HashMap::new();
            substitute_table(&mut doc, &values, &mut written);
            self.mods.bound = Some((values.clone(), written));
            let start = self.promises.len();
            let mut local = Diagnostics::default();
            let mut cx = Cx {
                src,
                diags: &mut local,
                base: 0,
            };
            self.counts.clear();
            self.read_file(&mut cx, &doc);
            self.mods.bound = None;
            diags.append_noted(local, &format!("in {}", scope.label));
            for i in start..self.promises.len() {
                let p = &mut self.promises[i];
                p.id = format!("{}{}", scope.prefix, p.id);
                p.when = both(scope.when.clone(), p.when.take().map(|w| *w)).map(Box::new);
                let mut key = scope.chain.clone();
                key.push(p.origin.clone());
                self.mods.placed.push((i, key));
            }
        }
        self.mods.scope = previous;
    }
}

/// A use's value for each of its module's parameters, or `None` after reporting
/// a missing or unknown one.
fn arguments(u: &Use, def: &Def, diags: &mut Diagnostics) -> Option<Params> {
    let mut ok = true;
    let names: Vec<&str> = def.params.iter().map(|(n, _, _)| n.as_str()).collect();
    for (name, _, at) in &u.args {
        if !names.contains(&name.as_str()) {
            let hint = closest(name, &names).map_or_else(
                || format!("; it declares {}", list(&names)),
                |c| format!("; did you mean `{c}`?"),
            );
            diags.error(
                at.clone(),
                format!("{}.with.{name}", u.path),
                format!("module `{}` has no parameter `{name}`{hint}", u.module),
            );
            ok = false;
        }
    }
    let mut values = HashMap::new();
    for (name, default, declared) in &def.params {
        match u.args.iter().find(|(n, _, _)| n == name) {
            Some((_, v, _)) => {
                values.insert(name.clone(), v.clone());
            }
            None => match default {
                Some(d) => {
                    values.insert(name.clone(), d.clone());
                }
                None => {
                    diags.error(
                        u.origin.clone(),
                        format!("{}.with", u.path),
                        format!(
                            "missing parameter `{name}` of module `{}` (declared at {declared} without a default)",
                            u.module
                        ),
                    );
                    ok = false;
                }
            },
        }
    }
    ok.then_some(values)
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "no parameters".to_string()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Reads a module's declaration (its `module.toml`'s `[[param]]`) and checks its
/// files once: syntax, what they may hold, and that each `${param.NAME}` is declared.
fn declare(name: &str, srcs: &[SourceText], diags: &mut Diagnostics) -> Option<Def> {
    let Some(decl) = srcs.iter().find(|s| is_declaration(&s.rel)) else {
        for s in srcs {
            diags.error(
                Origin {
                    file: s.rel.clone(),
                    line: 0,
                    col: 0,
                },
                "",
                format!("module `{name}` has no {MODULES_DIR}/{name}/{MODULE_FILE} declaring it"),
            );
        }
        return None;
    };
    let mut def = Def {
        params: Vec::new(),
        ok: true,
    };
    let mut declared = Diagnostics::default();
    {
        let mut cx = Cx {
            src: decl,
            diags: &mut declared,
            base: 0,
        };
        let (doc, errors) = DeTable::parse_recoverable(&decl.text);
        if errors.is_empty() {
            let doc = doc.into_inner();
            if let Some(v) = doc.get("param") {
                let v = Val {
                    value: v.get_ref(),
                    span: v.span(),
                };
                for (_, mut t) in super::tables(&mut cx, v, "param", 0) {
                    let origin = cx.origin(&t.span);
                    let n = t.req_str(&mut cx, "name");
                    let default = t.str(&mut cx, "default").map(|d| d.value.to_string());
                    let _comment = t.str(&mut cx, "comment");
                    let path = t.path.clone();
                    t.finish(&mut cx);
                    let Some(n) = n else { continue };
                    check_name(&mut cx, &n, &format!("{path}.name"));
                    if let Some((_, _, first)) = def.params.iter().find(|(p, _, _)| p == n.value) {
                        cx.error(
                            &n.span,
                            &format!("{path}.name"),
                            format!("parameter `{}` is already declared at {first}", n.value),
                        );
                    }
                    def.params.push((n.value.to_string(), default, origin));
                }
            }
        }
    }
    let names: Vec<&str> = def.params.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut used: Vec<String> = Vec::new();
    for src in srcs {
        let mut cx = Cx {
            src,
            diags: &mut declared,
            base: 0,
        };
        let (doc, errors) = DeTable::parse_recoverable(&src.text);
        if !errors.is_empty() {
            for e in errors {
                let span = e.span().unwrap_or(0..0);
                cx.error(
                    &span,
                    "",
                    e.message().trim_end_matches('\n').replace('\n', "; "),
                );
            }
            continue;
        }
        let doc = doc.into_inner();
        let declaration = is_declaration(&src.rel);
        for (k, v) in doc.iter() {
            let key: &str = k.get_ref();
            if key == "param" && declaration {
                check_refs(&mut cx, key, v.get_ref(), v.span(), &[], &mut used);
            } else if allowed(key, declaration) {
                check_refs(&mut cx, key, v.get_ref(), v.span(), &names, &mut used);
            } else {
                let more = if declaration { ", `[[param]]`" } else { "" };
                cx.error(
                    &k.span(),
                    key,
                    format!(
                        "a module holds promises and `[[use]]`{more} only; `{key}` belongs in the tree's top level"
                    ),
                );
            }
        }
    }
    for (n, _, at) in &def.params {
        if !used.contains(n) {
            declared.warning(
                at.clone(),
                "param",
                format!("parameter `{n}` is declared but no `${{param.{n}}}` uses it"),
            );
        }
    }
    def.ok = !declared.has_errors();
    diags.append_noted(declared, "");
    Some(def)
}

fn is_declaration(rel: &Path) -> bool {
    rel.components().count() == 3 && rel.file_name().is_some_and(|f| f == MODULE_FILE)
}

fn allowed(key: &str, declaration: bool) -> bool {
    key == "use" || PROMISE_TYPES.contains(&key) || (declaration && key == "param")
}

/// Removes what a module's file declares rather than promises (reported by `declare`).
fn strip(doc: &mut DeTable<'_>, declaration: bool) {
    let drop: Vec<String> = doc
        .iter()
        .map(|(k, _)| k.get_ref().to_string())
        .filter(|k| k == "param" || !allowed(k, declaration))
        .collect();
    for k in drop {
        doc.remove(k.as_str());
    }
}

/// `a` and `b`, when both are conditions.
fn both(a: Option<Condition>, b: Option<Condition>) -> Option<Condition> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Condition::And(Box::new(a), Box::new(b))),
        (a, b) => a.or(b),
    }
}

/// An argument's text: a string as is, an integer or boolean as written in TOML.
fn scalar(v: &DeValue<'_>) -> Option<String> {
    match v {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => Some(i.to_string()),
        DeValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One `${param.NAME}` in a string: byte range and the name.
struct ParamRef<'s> {
    at: std::ops::Range<usize>,
    name: &'s str,
}

/// Every `${param.NAME}` of `s`, skipping `$${` (a literal `${`).
fn param_refs(s: &str) -> Vec<ParamRef<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(j) = s[i..].find('$') {
        let at = i + j;
        let rest = &s[at..];
        if rest.starts_with("$${") {
            i = at + 3;
        } else if let Some(body) = rest.strip_prefix("${") {
            match body.find('}') {
                Some(end) => {
                    if let Some(name) = body[..end].trim().strip_prefix("param.") {
                        out.push(ParamRef {
                            at: at..at + 2 + end + 1,
                            name: name.trim(),
                        });
                    }
                    i = at + 2 + end + 1;
                }
                None => break,
            }
        } else {
            i = at + 1;
        }
    }
    out
}

/// `s` with each `${param.NAME}` replaced by its value (every name is known: checked
/// by `declare`).
fn substitute(s: &str, values: &Params) -> Option<String> {
    let refs = param_refs(s);
    if refs.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for r in refs {
        out.push_str(&s[last..r.at.start]);
        out.push_str(values.get(r.name).map_or("", String::as_str));
        last = r.at.end;
    }
    out.push_str(&s[last..]);
    Some(out)
}

/// Substitutes every string under `t`, keeping each one changed as written in
/// `written`, by span.
fn substitute_table(
    t: &mut DeTable<'_>,
    values: &Params,
    written: &mut HashMap<Range<usize>, String>,
) {
    for (_, v) in t.iter_mut() {
        substitute_value(v, values, written);
    }
}

fn substitute_value(
    v: &mut Spanned<DeValue<'_>>,
    values: &Params,
    written: &mut HashMap<Range<usize>, String>,
) {
    let span = v.span();
    match v.get_mut() {
        DeValue::String(s) => {
            if let Some(new) = substitute(s, values) {
                written.insert(span, s.to_string());
                *s = new.into();
            }
        }
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                substitute_value(item, values, written);
            }
        }
        DeValue::Table(t) => substitute_table(t, values, written),
        _ => {}
    }
}

/// Reports each `${param.NAME}` under `v` whose name is not in `names` (a
/// parameter's default may name none), and records the others in `used`.
fn check_refs(
    cx: &mut Cx<'_>,
    field: &str,
    v: &DeValue<'_>,
    span: std::ops::Range<usize>,
    names: &[&str],
    used: &mut Vec<String>,
) {
    walk_strings(field, v, span, &mut |field, s, span| {
        for r in param_refs(s) {
            if field.starts_with("param[") {
                cx.error(
                    &span,
                    field,
                    "a parameter's default cannot refer to parameters",
                );
            } else if names.contains(&r.name) {
                if !used.iter().any(|u| u == r.name) {
                    used.push(r.name.to_string());
                }
            } else {
                let hint = closest(r.name, names).map_or_else(
                    || format!("; the module declares {}", list(names)),
                    |c| format!("; did you mean `{c}`?"),
                );
                cx.error(
                    &span,
                    field,
                    format!("unknown parameter `{}`{hint}", r.name),
                );
            }
        }
    });
}

fn reject_in(cx: &mut Cx<'_>, field: &str, v: &DeValue<'_>, span: std::ops::Range<usize>) {
    walk_strings(field, v, span, &mut |field, s, span| {
        if let Some(r) = param_refs(s).first() {
            cx.error(
                &span,
                field,
                format!(
                    "`${{param.{}}}` is a module parameter; it can be used only in a module's files ({MODULES_DIR}/NAME/)",
                    r.name
                ),
            );
        }
    });
}

/// Calls `f(field, text, span)` for each string under `v`.
fn walk_strings(
    field: &str,
    v: &DeValue<'_>,
    span: std::ops::Range<usize>,
    f: &mut dyn FnMut(&str, &str, std::ops::Range<usize>),
) {
    match v {
        DeValue::String(s) => f(field, s, span),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_strings(&format!("{field}[{i}]"), item.get_ref(), item.span(), f);
            }
        }
        DeValue::Table(t) => {
            for (k, item) in t.iter() {
                let key: &str = k.get_ref();
                walk_strings(&format!("{field}.{key}"), item.get_ref(), item.span(), f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `permute` puts `order[i]` at `i` for every shape of permutation: the identity,
    /// one long cycle, fixed points between swapped pairs, and a reversal.
    #[test]
    fn permute_moves_each_item_to_its_place() {
        let orders: [Vec<usize>; 5] = [
            vec![],
            vec![0, 1, 2, 3],
            vec![1, 2, 3, 4, 0],
            vec![0, 3, 2, 1, 5, 4],
            (0..9).rev().collect(),
        ];
        for order in orders {
            let mut items: Vec<String> = (0..order.len()).map(|i| format!("p{i}")).collect();
            let expected: Vec<String> = order.iter().map(|i| format!("p{i}")).collect();
            permute(&mut items, order.clone());
            assert_eq!(items, expected, "order {order:?}");
        }
    }

    #[test]
    fn param_refs_skip_escapes_and_other_references() {
        let names: Vec<&str> =
            param_refs("a ${param.port} $${param.x} ${hostname} ${ param.root }")
                .iter()
                .map(|r| r.name)
                .collect();
        assert_eq!(names, ["port", "root"]);
    }

    #[test]
    fn substitute_replaces_each_reference() {
        let values = HashMap::from([("port".to_string(), "8080".to_string())]);
        assert_eq!(
            substitute("listen ${param.port}; $${param.port}", &values).as_deref(),
            Some("listen 8080; $${param.port}")
        );
        assert_eq!(substitute("no refs ${member}", &values), None);
    }

    #[test]
    fn module_names_come_from_the_directory() {
        assert_eq!(
            module_name(Path::new("modules/web/a.toml")).as_deref(),
            Some("web")
        );
        assert_eq!(module_name(Path::new("modules/a.toml")), None);
        assert!(is_module_file(Path::new("modules/a.toml")));
        assert!(!is_module_file(Path::new("site.toml")));
    }
}
