//! The raw layer: walks a parsed TOML table with spans and collects every problem.
//!
//! serde's derive stops at the first error in a document; an administrator fixing a
//! tree wants every problem at once, each with its line and column. So the loader
//! reads TOML through [`Table`], which records a diagnostic for each missing field,
//! wrong type and unknown field, and keeps going. This is the only module that looks
//! at TOML values.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostics, Origin, SourceText};

/// Where diagnostics go while one file is read.
pub(crate) struct Cx<'a> {
    pub(crate) src: &'a SourceText,
    pub(crate) diags: &'a mut Diagnostics,
    /// Where the text being read starts in the file (a part of a split document).
    pub(crate) base: usize,
}

impl Cx<'_> {
    pub(crate) fn origin(&self, span: &Range<usize>) -> Origin {
        self.src.origin(self.base + span.start)
    }

    pub(crate) fn error(&mut self, span: &Range<usize>, field: &str, message: impl Into<String>) {
        let origin = self.origin(span);
        self.diags.error(origin, field, message);
    }

    pub(crate) fn warning(&mut self, span: &Range<usize>, field: &str, message: impl Into<String>) {
        let origin = self.origin(span);
        self.diags.warning(origin, field, message);
    }
}

/// A string with the span of its TOML value.
#[derive(Debug, Clone)]
pub(crate) struct Str<'a> {
    pub(crate) value: &'a str,
    pub(crate) span: Range<usize>,
}

/// A TOML value with its span, as handed out by [`Table::value`].
#[derive(Clone)]
pub(crate) struct Val<'a, 'i> {
    pub(crate) value: &'a DeValue<'i>,
    pub(crate) span: Range<usize>,
}

/// One TOML table being read: remembers which keys were asked for, so
/// [`Table::finish`] can report the rest as unknown.
pub(crate) struct Table<'a, 'i> {
    table: &'a DeTable<'i>,
    pub(crate) span: Range<usize>,
    /// The field path of this table, such as `file[2]`.
    pub(crate) path: String,
    known: Vec<&'static str>,
}

impl<'a, 'i> Table<'a, 'i> {
    pub(crate) fn new(table: &'a DeTable<'i>, span: Range<usize>, path: String) -> Self {
        Self {
            table,
            span,
            path,
            known: Vec::new(),
        }
    }

    /// The field path of `key` inside this table.
    pub(crate) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value of `key`, if present.
    pub(crate) fn value(&mut self, key: &'static str) -> Option<Val<'a, 'i>> {
        self.known.push(key);
        self.table.get(key).map(|v| Val {
            value: v.get_ref(),
            span: v.span(),
        })
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// An optional string field.
    pub(crate) fn str(&mut self, cx: &mut Cx<'_>, key: &'static str) -> Option<Str<'a>> {
        let v = self.value(key)?;
        match v.value {
            DeValue::String(s) => Some(Str {
                value: s.as_ref(),
                span: v.span,
            }),
            other => {
                cx.error(
                    &v.span,
                    &self.field(key),
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A required string field.
    pub(crate) fn req_str(&mut self, cx: &mut Cx<'_>, key: &'static str) -> Option<Str<'a>> {
        if !self.has(key) {
            self.missing(cx, key);
        }
        self.str(cx, key)
    }

    /// Records that a required field is missing.
    pub(crate) fn missing(&self, cx: &mut Cx<'_>, key: &str) {
        cx.error(&self.span, &self.field(key), "missing required field");
    }

    /// An optional boolean field.
    pub(crate) fn bool(&mut self, cx: &mut Cx<'_>, key: &'static str) -> Option<bool> {
        let v = self.value(key)?;
        match v.value {
            DeValue::Boolean(b) => Some(*b),
            other => {
                cx.error(
                    &v.span,
                    &self.field(key),
                    format!("expected true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// An optional non-negative integer field.
    pub(crate) fn u32(&mut self, cx: &mut Cx<'_>, key: &'static str) -> Option<u32> {
        let v = self.value(key)?;
        let parsed = match v.value {
            DeValue::Integer(i) => {
                i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            _ => None,
        };
        match parsed.and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                cx.error(
                    &v.span,
                    &self.field(key),
                    format!(
                        "expected a whole number from 0 to {}, found {}",
                        u32::MAX,
                        describe(v.value)
                    ),
                );
                None
            }
        }
    }

    /// An optional array of strings.
    pub(crate) fn str_list(&mut self, cx: &mut Cx<'_>, key: &'static str) -> Option<Vec<Str<'a>>> {
        let v = self.value(key)?;
        let field = self.field(key);
        str_list(cx, v, &field)
    }

    /// An optional sub-table.
    pub(crate) fn table(&mut self, cx: &mut Cx<'_>, key: &'static str) -> Option<Table<'a, 'i>> {
        let v = self.value(key)?;
        let field = self.field(key);
        match v.value {
            DeValue::Table(t) => Some(Table::new(t, v.span, field)),
            other => {
                cx.error(
                    &v.span,
                    &field,
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// Every entry of the table, in order, for tables whose keys are data (such as `env`).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Str<'a>, Val<'a, 'i>)> + 'a {
        self.table.iter().map(|(k, v)| {
            (
                Str {
                    value: k.get_ref().as_ref(),
                    span: k.span(),
                },
                Val {
                    value: v.get_ref(),
                    span: v.span(),
                },
            )
        })
    }

    /// Reports every key that no reader asked for, with a suggestion when one is close.
    pub(crate) fn finish(self, cx: &mut Cx<'_>) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref();
            if self.known.contains(&name) {
                continue;
            }
            let mut message = format!("unknown field `{name}`");
            if let Some(close) = closest(name, &self.known) {
                message.push_str(&format!("; did you mean `{close}`?"));
            } else if !self.known.is_empty() {
                let mut known = self.known.clone();
                known.sort_unstable();
                known.dedup();
                message.push_str(&format!("; expected one of {}", known.join(", ")));
            }
            cx.error(&k.span(), &self.field(name), message);
        }
    }
}

/// Reads an array of strings, reporting each element of the wrong type.
pub(crate) fn str_list<'a>(cx: &mut Cx<'_>, v: Val<'a, '_>, field: &str) -> Option<Vec<Str<'a>>> {
    let DeValue::Array(items) = v.value else {
        cx.error(
            &v.span,
            field,
            format!("expected an array of strings, found {}", v.value.type_str()),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match item.get_ref() {
            DeValue::String(s) => out.push(Str {
                value: s.as_ref(),
                span: item.span(),
            }),
            other => {
                cx.error(
                    &item.span(),
                    &format!("{field}[{i}]"),
                    format!("expected a string, found {}", other.type_str()),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::Integer(i) => format!("integer {}", i.as_str()),
        other => other.type_str().to_string(),
    }
}

/// The known name within edit distance 2 of `name`, if any.
pub(crate) fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
