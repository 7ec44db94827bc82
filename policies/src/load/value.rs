//! The language's reach beyond single promises: list and map values, `for_each`
//! iteration, and file content rendered by the Jinja engine.
//!
//! A promise with `for_each` is read once per item, after every file is read (its
//! list may be declared in any file): its file is parsed again, every `${item}`,
//! `${item.key}` and `${item.value}` in its strings is replaced by the item's text,
//! and the result is read as an ordinary promise. Each instance is a promise of its
//! own, with its own id, so the conflict check sees every one of them. A `shell`
//! script is the exception to the text replacement: there the item is bound as a
//! reference, so it is quoted as one shell word like any other.

use std::borrow::Cow;
use std::ops::Range;
use std::rc::Rc;

use toml::de::{DeTable, DeValue};

use super::{Loader, MAX_PROMISES, NameKind, NameRef, PROMISE_TYPES};
use crate::diag::{Diagnostics, Origin, SourceText};
use crate::jinja::{Jinja, JinjaItem};
use crate::model::{Content, ValueKind};
use crate::read::{Cx, Table};
use crate::template::{ItemPart, Ref, Template};

/// What the loader keeps for the language features until every file is read.
#[derive(Default)]
pub(super) struct Lang {
    /// The texts of files that hold `for_each` promises, to read them again.
    sources: Vec<Rc<SourceText>>,
    /// Each `for_each` promise: which file (in `sources`), its type, its index.
    deferred: Vec<(usize, &'static str, usize)>,
    /// `${MAP.KEY}` references, checked once every value is known.
    entries: Vec<EntryRef>,
    /// The names Jinja templates take from their context (values may be lists).
    jinja: Vec<NameRef>,
    /// Where `${item}` means something while a promise is read.
    pub(super) item: ItemScope,
}

/// How much of [`Lang`] has been read, so a file that fails can be forgotten.
pub(super) struct LangMark {
    sources: usize,
    deferred: usize,
    entries: usize,
    jinja: usize,
}

struct EntryRef {
    map: String,
    key: String,
    origin: Origin,
    field: String,
    unknown: Unknown,
}

/// Whether an entry of an unknown value is reported as such.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// Yes: nothing else names the value.
    Report,
    /// No: the template's own name check says it.
    Reported,
}

/// What `${item...}` refers to while a table is read.
#[derive(Debug, Clone, Default)]
pub(super) enum ItemScope {
    /// Nothing: a reference is an error (a value, a plan step, a handler).
    #[default]
    Outside,
    /// A promise without `for_each`: its strings were searched already.
    Searched,
    /// One instance of a `for_each` promise.
    Bound(Item),
}

/// One item of a `for_each`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Item {
    /// An item of a list.
    Text(String),
    /// An entry of a map.
    Entry(String, String),
}

impl Item {
    /// The text `part` stands for, or why this item has no such part.
    fn part(&self, part: ItemPart) -> Result<&str, &'static str> {
        match (self, part) {
            (Self::Text(t), ItemPart::Whole) => Ok(t),
            (Self::Entry(k, _), ItemPart::Key) => Ok(k),
            (Self::Entry(_, v), ItemPart::Value) => Ok(v),
            (Self::Text(_), _) => {
                Err("a list's item is `${item}`; `.key` and `.value` are for maps")
            }
            (Self::Entry(..), _) => Err("a map's item is `${item.key}` or `${item.value}`"),
        }
    }

    /// How the instance is named in its id and field paths: the item, or the key.
    fn label(&self) -> &str {
        match self {
            Self::Text(t) | Self::Entry(t, _) => t,
        }
    }
}

impl Lang {
    pub(super) fn mark(&self) -> LangMark {
        LangMark {
            sources: self.sources.len(),
            deferred: self.deferred.len(),
            entries: self.entries.len(),
            jinja: self.jinja.len(),
        }
    }

    pub(super) fn rollback(&mut self, m: LangMark) {
        self.sources.truncate(m.sources);
        self.deferred.truncate(m.deferred);
        self.entries.truncate(m.entries);
        self.jinja.truncate(m.jinja);
    }
}

impl Loader<'_> {
    /// `list = [...]` or `map = { ... }` of a `[[value]]` that has neither
    /// `addresses` nor `text`.
    pub(super) fn collection(
        &mut self,
        cx: &mut Cx<'_>,
        t: &mut Table<'_, '_>,
    ) -> Option<ValueKind> {
        if t.has("list") && t.has("map") {
            t.value("list");
            t.value("map");
            cx.error(&t.span, &t.path, EXACTLY_ONE);
            return None;
        }
        if t.has("list") {
            let field = t.field("list");
            let items = t.str_list(cx, "list")?;
            let mut out: Vec<String> = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, s) in items.iter().enumerate() {
                let at = format!("{field}[{i}]");
                if out.iter().any(|o| o == s.value) {
                    cx.error(&s.span, &at, format!("`{}` is listed twice", s.value));
                    ok = false;
                } else if let Err(e) = literal(s.value) {
                    cx.error(&s.span, &at, e);
                    ok = false;
                }
                out.push(s.value.to_string());
            }
            return ok.then_some(ValueKind::List(out));
        }
        let m = t.table(cx, "map")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (k, v) in m.entries() {
            let at = m.field(k.value);
            match v.value {
                DeValue::String(s) => {
                    if let Err(e) = literal(k.value).and_then(|()| literal(s)) {
                        cx.error(&v.span, &at, e);
                        ok = false;
                    }
                    out.push((k.value.to_string(), s.to_string()));
                }
                other => {
                    cx.error(
                        &v.span,
                        &at,
                        format!("expected a string, found {}", other.type_str()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(ValueKind::Map(out))
    }

    /// Reads a `for_each` promise later, once every value is known; the table is
    /// read again from its file then.
    pub(super) fn defer(&mut self, cx: &Cx<'_>, ty: &str, index: usize) {
        let Some(ty) = PROMISE_TYPES.iter().find(|t| **t == ty) else {
            return;
        };
        let same = self
            .lang
            .sources
            .last()
            .is_some_and(|s| s.rel == cx.src.rel);
        if !same {
            self.lang
                .sources
                .push(Rc::new(SourceText::new(&cx.src.rel, cx.src.text.clone())));
        }
        let file = self.lang.sources.len() - 1;
        self.lang.deferred.push((file, ty, index));
    }

    /// Reports every `${item...}` in a promise without `for_each`; its templates
    /// then leave them to this report.
    pub(super) fn search_items(&mut self, cx: &mut Cx<'_>, t: &Table<'_, '_>) {
        for (k, v) in t.entries() {
            let field = t.field(k.value);
            search_value(v.value, &v.span, &mut |span, offset, message| {
                cx.error(&inner(span, offset), &field, message);
            });
        }
        self.lang.item = ItemScope::Searched;
    }

    /// Reads every deferred `for_each` promise once per item.
    pub(super) fn expand(&mut self, diags: &mut Diagnostics) {
        let deferred = std::mem::take(&mut self.lang.deferred);
        let sources = std::mem::take(&mut self.lang.sources);
        let mut current: Option<(usize, toml::Spanned<DeTable<'_>>)> = None;
        for (file, ty, index) in deferred {
            let src = &sources[file];
            if current.as_ref().is_none_or(|(f, _)| *f != file) {
                // It parsed in parts before; whole, it parses the same (a part that
                // clashes with another is an error reported already).
                match DeTable::parse(&src.text) {
                    Ok(doc) => current = Some((file, doc)),
                    Err(e) => {
                        diags.error(
                            src.origin(e.span().map_or(0, |s| s.start)),
                            format!("{ty}[{index}].for_each"),
                            "the file does not parse whole, so this promise cannot be expanded",
                        );
                        current = None;
                        continue;
                    }
                }
            }
            let Some((_, doc)) = &current else {
                continue;
            };
            let Some(item) = doc
                .get_ref()
                .get(ty)
                .and_then(|a| a.get_ref().as_array())
                .and_then(|a| a.get(index))
            else {
                continue;
            };
            let DeValue::Table(table) = item.get_ref() else {
                continue;
            };
            let mut cx = Cx {
                src,
                diags: &mut *diags,
                base: 0,
            };
            if !self.expand_one(&mut cx, ty, index, table, item.span()) {
                break;
            }
        }
        self.lang.item = ItemScope::Outside;
    }

    /// Reads one `for_each` promise once per item; false once the tree reached
    /// [`MAX_PROMISES`] (reported here), after which nothing more is expanded.
    fn expand_one(
        &mut self,
        cx: &mut Cx<'_>,
        ty: &'static str,
        index: usize,
        table: &DeTable<'_>,
        span: Range<usize>,
    ) -> bool {
        let path = format!("{ty}[{index}]");
        let field = format!("{path}.for_each");
        let Some(v) = table.get("for_each") else {
            return true;
        };
        let Some(items) = self.items(cx, v.get_ref(), &v.span(), &field) else {
            return true;
        };
        let first = self.promises.len();
        let named_from = self.named.len();
        let diags_from = cx.diags.len();
        let mut labels = Vec::with_capacity(items.len());
        let mut within = true;
        for item in items {
            if self.promises.len() >= MAX_PROMISES {
                cx.error(
                    &v.span(),
                    &field,
                    format!(
                        "more than {MAX_PROMISES} promises once `for_each` is expanded; its other items and later `for_each` promises are not read"
                    ),
                );
                within = false;
                break;
            }
            let mut copy = table.clone();
            let mut ok = true;
            substitute_table(&mut copy, &item, &mut |key, span, offset, message| {
                cx.error(&inner(span, offset), &format!("{path}.{key}"), message);
                ok = false;
            });
            if !ok {
                continue;
            }
            let t = Table::new(&copy, span.clone(), format!("{path}[{}]", item.label()));
            let before = self.promises.len();
            self.lang.item = ItemScope::Bound(item.clone());
            self.read_promise_table(cx, ty, t);
            if self.promises.len() > before {
                labels.push(item.label().to_string());
            }
        }
        // A mistake that does not depend on the item is told once, not per item.
        cx.diags.dedup_from(diags_from);
        // A `name` gets the item's label unless it names the item itself; default
        // ids name the target, and get the label only when the item does not change it.
        let named = &self.named[named_from..];
        let name_has_item = table
            .get("name")
            .and_then(|n| n.get_ref().as_str())
            .is_some_and(|n| n.contains("${item"));
        let instances = &mut self.promises[first..];
        let mut ids: Vec<&str> = instances.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        let repeated = ids.windows(2).any(|w| w[0] == w[1]);
        for (i, (p, label)) in instances.iter_mut().zip(&labels).enumerate() {
            let is_named = named.contains(&(first + i));
            if (is_named && !name_has_item) || (!is_named && repeated) {
                p.id = format!("{}[{label}]", p.id);
            }
        }
        within
    }

    /// The items a `for_each` names: a literal list or map, or `"${NAME}"` of a
    /// list or map value.
    fn items(
        &mut self,
        cx: &mut Cx<'_>,
        v: &DeValue<'_>,
        span: &Range<usize>,
        field: &str,
    ) -> Option<Vec<Item>> {
        let items = match v {
            DeValue::String(s) => {
                let name = s
                    .strip_prefix("${")
                    .and_then(|n| n.strip_suffix('}'))
                    .map(str::trim);
                let Some(name) = name else {
                    cx.error(
                        span,
                        field,
                        "write `for_each = \"${NAME}\"` (a list or map value) or a literal list or map",
                    );
                    return None;
                };
                match self.values.iter().find(|v| v.name == name).map(|v| &v.kind) {
                    Some(ValueKind::List(l)) => l.iter().cloned().map(Item::Text).collect(),
                    Some(ValueKind::Map(m)) => m
                        .iter()
                        .map(|(k, v)| Item::Entry(k.clone(), v.clone()))
                        .collect(),
                    Some(other) => {
                        cx.error(
                            span,
                            field,
                            format!(
                                "value `{name}` is {}; `for_each` needs a list or a map",
                                other.describe()
                            ),
                        );
                        return None;
                    }
                    None => {
                        cx.error(span, field, format!("unknown value `{name}`"));
                        return None;
                    }
                }
            }
            DeValue::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, x) in a.iter().enumerate() {
                    let at = format!("{field}[{i}]");
                    match x.get_ref() {
                        DeValue::String(s) => out.push(Item::Text(s.to_string())),
                        other => {
                            cx.error(
                                &x.span(),
                                &at,
                                format!("expected a string, found {}", other.type_str()),
                            );
                            return None;
                        }
                    }
                }
                out
            }
            DeValue::Table(m) => {
                let mut out = Vec::with_capacity(m.len());
                for (k, x) in m.iter() {
                    match x.get_ref() {
                        DeValue::String(s) => {
                            out.push(Item::Entry(k.get_ref().to_string(), s.to_string()));
                        }
                        other => {
                            cx.error(
                                &x.span(),
                                &format!("{field}.{}", k.get_ref()),
                                format!("expected a string, found {}", other.type_str()),
                            );
                            return None;
                        }
                    }
                }
                out
            }
            other => {
                cx.error(
                    span,
                    field,
                    format!(
                        "expected \"${{NAME}}\", a list or a map, found {}",
                        other.type_str()
                    ),
                );
                return None;
            }
        };
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let (a, b) = match item {
                Item::Text(t) => (t.as_str(), ""),
                Item::Entry(k, v) => (k.as_str(), v.as_str()),
            };
            if let Err(e) = literal(a).and_then(|()| literal(b)) {
                cx.error(span, field, e);
                ok = false;
            } else if items[..i].iter().any(|o| o.label() == item.label()) {
                cx.error(span, field, format!("`{}` is listed twice", item.label()));
                ok = false;
            }
        }
        ok.then_some(items)
    }

    /// A template just parsed: binds `${item...}` in a `for_each` instance, reports
    /// what is left that cannot be bound, and notes each `${MAP.KEY}` to check.
    pub(super) fn bind_items(
        &mut self,
        cx: &mut Cx<'_>,
        t: &mut Template,
        span: &Range<usize>,
        field: &str,
    ) {
        if let ItemScope::Bound(item) = &self.lang.item {
            t.bind_item(&mut |part| item.part(part).ok().map(str::to_string));
        }
        for (r, offset) in t.refs() {
            let message = match (r, &self.lang.item) {
                (Ref::Item(part), ItemScope::Bound(item)) => match item.part(*part) {
                    Ok(_) => continue,
                    Err(e) => e.to_string(),
                },
                (Ref::Item(_), ItemScope::Outside) => OUTSIDE.to_string(),
                (Ref::Entry { map, key }, _) => {
                    self.lang.entries.push(EntryRef {
                        map: map.clone(),
                        key: key.clone(),
                        origin: cx.origin(&inner(span, offset)),
                        field: field.to_string(),
                        unknown: Unknown::Report,
                    });
                    continue;
                }
                _ => continue,
            };
            cx.error(&inner(span, offset), field, message);
        }
    }

    /// [`Loader::bind_items`] for a template read from `files/`, whose references
    /// the search of the promise's own strings did not see.
    pub(super) fn bind_file_items(
        &mut self,
        cx: &mut Cx<'_>,
        t: &mut Template,
        span: &Range<usize>,
        field: &str,
    ) {
        let saved = self.lang.item.clone();
        if matches!(saved, ItemScope::Searched) {
            self.lang.item = ItemScope::Outside;
        }
        self.bind_items(cx, t, span, field);
        self.lang.item = saved;
    }

    /// A `[[file]]` with `engine = "jinja"`: its `content` or `source` parsed as a
    /// Jinja template; the names it uses are checked once every value is known.
    pub(super) fn jinja_content(
        &mut self,
        cx: &mut Cx<'_>,
        t: &mut Table<'_, '_>,
    ) -> Option<Content<Template>> {
        // Asked for first, so an error below does not make them unknown fields too.
        t.value("content");
        t.value("source");
        let engine = t.str(cx, "engine")?;
        if engine.value != "jinja" {
            cx.error(
                &engine.span,
                &t.field("engine"),
                format!("`{}` is not one of jinja", engine.value),
            );
            return None;
        }
        if let Some(v) = t.value("template") {
            cx.error(
                &v.span,
                &t.field("template"),
                "`template` is for `${...}` text; a Jinja template needs only `engine`",
            );
            return None;
        }
        let (field, s, name, text) = match (t.has("content"), t.has("source")) {
            (true, false) => {
                let s = t.str(cx, "content")?;
                let name = format!("{}:{}", cx.src.rel.display(), cx.origin(&s.span).line);
                let text = s.value.to_string();
                (t.field("content"), s, name, text)
            }
            (false, true) => {
                let s = t.str(cx, "source")?;
                let field = t.field("source");
                let rel = self.source_rel(cx, &s, &field)?;
                let bytes = self.source_file(cx, &s, &rel, &field)?;
                let Ok(text) = String::from_utf8(bytes) else {
                    cx.error(&s.span, &field, "a template source must be UTF-8 text");
                    return None;
                };
                (field, s, rel.display().to_string(), text)
            }
            _ => {
                t.value("content");
                t.value("source");
                cx.error(
                    &t.span,
                    &t.path,
                    "a file promise needs exactly one of `content` or `source`",
                );
                return None;
            }
        };
        let mut j = match Jinja::parse(&name, text) {
            Ok(j) => j,
            Err(e) => {
                cx.error(&s.span, &field, e.to_string());
                return None;
            }
        };
        match &self.lang.item {
            ItemScope::Bound(Item::Text(t)) => j.bind_item(JinjaItem::Text(t.clone())),
            ItemScope::Bound(Item::Entry(k, v)) => j.bind_item(JinjaItem::Entry {
                key: k.clone(),
                value: v.clone(),
            }),
            ItemScope::Outside | ItemScope::Searched => {}
        }
        for n in j.names() {
            let kind = match n.as_str() {
                "member" | "hostname" | "cluster" | "fact" | "package" => continue,
                "item" if j.item().is_some() => continue,
                "item" => {
                    cx.error(&s.span, &field, "the template uses `item`, which is only defined in a promise with `for_each`");
                    continue;
                }
                _ => NameKind::Value,
            };
            self.lang.jinja.push(NameRef {
                kind,
                name: n,
                origin: cx.origin(&s.span),
                field: field.clone(),
            });
        }
        // A literal map's entries and the cluster's packages are known: name them
        // wrongly and it is a load error, not a surprise on some member.
        for path in j.paths() {
            let mut parts = path.split('.');
            let (Some(head), Some(key)) = (parts.next(), parts.next()) else {
                continue;
            };
            let origin = cx.origin(&s.span);
            if head == "package" {
                self.refs.push(NameRef {
                    kind: NameKind::Package,
                    name: key.to_string(),
                    origin,
                    field: field.clone(),
                });
            } else if !matches!(head, "member" | "hostname" | "cluster" | "fact" | "item")
                // `ports.items()` reads like an entry; a mapping's methods are not checked.
                && !matches!(key, "items" | "keys" | "values" | "get")
            {
                self.lang.entries.push(EntryRef {
                    map: head.to_string(),
                    key: key.to_string(),
                    origin,
                    field: field.clone(),
                    unknown: Unknown::Reported,
                });
            }
        }
        Some(Content::Text(Template::jinja(j)))
    }

    /// Checks made once every file is read: each `${NAME}` names text (not a list
    /// or map), each `${MAP.KEY}` an entry of a map, each name a Jinja template
    /// uses a value.
    pub(super) fn check_lang(&self, diags: &mut Diagnostics) {
        let kind = |name: &str| self.values.iter().find(|v| v.name == name).map(|v| &v.kind);
        for r in self.refs.iter().filter(|r| r.kind == NameKind::Value) {
            if let Some(k @ (ValueKind::List(_) | ValueKind::Map(_))) = kind(&r.name) {
                diags.error(
                    r.origin.clone(),
                    &r.field,
                    format!(
                        "value `{}` is {}, not text: iterate over it with `for_each`{}, or use it in a Jinja template",
                        r.name,
                        k.describe(),
                        if matches!(k, ValueKind::Map(_)) {
                            format!(", name one entry as ${{{}.KEY}}", r.name)
                        } else {
                            String::new()
                        }
                    ),
                );
            }
        }
        for e in &self.lang.entries {
            let message = match kind(&e.map) {
                Some(ValueKind::Map(m)) if m.iter().any(|(k, _)| *k == e.key) => continue,
                Some(ValueKind::Map(_)) => format!("map `{}` has no entry `{}`", e.map, e.key),
                Some(k) => format!("value `{}` is {}, not a map", e.map, k.describe()),
                None if e.unknown == Unknown::Reported => continue,
                None => format!("unknown value `{}`", e.map),
            };
            diags.error(e.origin.clone(), &e.field, message);
        }
        for r in &self.lang.jinja {
            if kind(&r.name).is_none() {
                diags.error(
                    r.origin.clone(),
                    &r.field,
                    format!(
                        "the template uses `{}`, which is no value, nor member, hostname, cluster, package or fact",
                        r.name
                    ),
                );
            }
        }
    }
}

const EXACTLY_ONE: &str = "a value needs exactly one of `addresses`, `text`, `list` or `map`";

const OUTSIDE: &str = "`${item}` is only defined in a promise with `for_each`";

/// List items, map keys and entries are literal text: a `$` in one would become
/// part of a `${...}` once an item is put in place.
fn literal(s: &str) -> Result<(), String> {
    if s.contains('$') {
        Err(format!(
            "`{s}`: items of lists and maps are literal text and must not contain `$`"
        ))
    } else {
        Ok(())
    }
}

/// Puts `item` in place of each `${item...}` in every string of `t` (but a
/// top-level `shell`, which binds it as a quoted reference when parsed), telling
/// `report` of each that cannot be; with no item, reports every one.
fn substitute_table(
    t: &mut DeTable<'_>,
    item: &Item,
    report: &mut impl FnMut(&str, &Range<usize>, usize, String),
) {
    for (k, v) in t.iter_mut() {
        let key = k.get_ref();
        if key == "shell" || key == "for_each" {
            continue;
        }
        substitute_value(v, item, &mut |span, offset, m| report(key, span, offset, m));
    }
}

fn search_value(
    v: &DeValue<'_>,
    span: &Range<usize>,
    report: &mut impl FnMut(&Range<usize>, usize, String),
) {
    match v {
        DeValue::String(s) => {
            substitute(s, None, &mut |offset, m| report(span, offset, m));
        }
        DeValue::Array(a) => {
            for x in a.iter() {
                search_value(x.get_ref(), &x.span(), report);
            }
        }
        DeValue::Table(t) => {
            for (_, x) in t.iter() {
                search_value(x.get_ref(), &x.span(), report);
            }
        }
        _ => {}
    }
}

fn substitute_value(
    v: &mut toml::Spanned<DeValue<'_>>,
    item: &Item,
    report: &mut impl FnMut(&Range<usize>, usize, String),
) {
    let span = v.span();
    match v.get_mut() {
        DeValue::String(s) => {
            if let Some(new) = substitute(s, Some(item), &mut |offset, m| report(&span, offset, m))
            {
                *s = Cow::Owned(new);
            }
        }
        DeValue::Array(a) => {
            for x in a.iter_mut() {
                substitute_value(x, item, report);
            }
        }
        DeValue::Table(t) => {
            for (_, x) in t.iter_mut() {
                substitute_value(x, item, report);
            }
        }
        _ => {}
    }
}

/// `s` with each `${item}`, `${item.key}`, `${item.value}` replaced (`$${` stays an
/// escape); `None` when it has none.
fn substitute(
    s: &str,
    item: Option<&Item>,
    report: &mut impl FnMut(usize, String),
) -> Option<String> {
    if !s.contains("${") {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut i = 0;
    while let Some(at) = s[i..].find('$').map(|d| i + d) {
        let rest = &s[at..];
        if rest.starts_with("$${") {
            out.push_str(&s[i..at + 3]);
            i = at + 3;
            continue;
        }
        let body = rest
            .strip_prefix("${")
            .and_then(|b| b.find('}').map(|end| (b[..end].trim(), end + 3)));
        let part = body.and_then(|(b, len)| {
            let part = match b {
                "item" => ItemPart::Whole,
                "item.key" => ItemPart::Key,
                "item.value" => ItemPart::Value,
                _ => return None,
            };
            Some((part, len))
        });
        out.push_str(&s[i..at]);
        match part {
            Some((part, len)) => {
                match item.map(|it| it.part(part)) {
                    Some(Ok(text)) => {
                        out.push_str(text);
                        changed = true;
                    }
                    Some(Err(e)) => report(at, e.to_string()),
                    None => report(at, OUTSIDE.to_string()),
                }
                if !matches!(item.map(|it| it.part(part)), Some(Ok(_))) {
                    out.push_str(&rest[..len]);
                }
                i = at + len;
            }
            None => {
                out.push('$');
                i = at + 1;
            }
        }
    }
    out.push_str(&s[i..]);
    changed.then_some(out)
}

/// The span of a byte offset inside a basic string value (see `super::inner_span`).
fn inner(span: &Range<usize>, offset: usize) -> Range<usize> {
    super::inner_span(span, offset)
}

#[cfg(test)]
mod tests;
