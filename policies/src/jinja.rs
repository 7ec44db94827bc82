//! File content rendered by the Jinja engine (`engine = "jinja"` on a `[[file]]`),
//! through `minijinja`: conditionals, loops over lists and maps, filters.
//!
//! Sandboxed: a template sees only what [`crate::Policy::resolve`] hands it (the
//! policy's values, `member`, `hostname`, `cluster`, `package`, `fact`); it has no
//! loader, so `include`, `import` and `extends` find nothing, and it cannot read
//! files or run anything. Strict: a name that is not defined is an error, never an
//! empty string. Top-level names are checked at load ([`Jinja::names`]); an entry
//! missing at run time (a fact the member lacks) fails that promise alone.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

/// The work one render may do, in the engine's instructions: far more than any
/// configuration file needs, and a bound on a template that loops without end.
const FUEL: u64 = 50_000_000;

/// Most bytes one render may produce. Fuel counts instructions, not bytes: one
/// `{{ "x" * 100000000 }}` is a few instructions and 100 MB, so the text a file's
/// content is rendered into is bounded of its own.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// A parsed Jinja template: its name (`files/...`, for messages) and its text.
#[derive(Debug)]
pub struct Jinja {
    name: String,
    source: String,
    item: Option<JinjaItem>,
}

/// The item of a `for_each` instance, as a template sees it: `item` is the list's
/// item, or a map entry with `item.key` and `item.value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JinjaItem {
    /// An item of a list.
    Text(String),
    /// An entry of a map.
    Entry {
        /// Its key.
        key: String,
        /// Its value.
        value: String,
    },
}

/// A Jinja template that does not parse, or does not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct JinjaError {
    /// The template's name.
    pub name: String,
    /// The line of the template, when the engine knows it.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl Jinja {
    /// Parses `source`; a syntax error is returned with its line.
    pub fn parse(name: &str, source: String) -> Result<Self, JinjaError> {
        let j = Self {
            name: name.to_string(),
            source,
            item: None,
        };
        let env = environment();
        env.template_from_named_str(&j.name, &j.source)
            .map_err(|e| j.error(&e))?;
        Ok(j)
    }

    /// Makes `item` part of its context (one instance of a `for_each` promise).
    pub fn bind_item(&mut self, item: JinjaItem) {
        self.item = Some(item);
    }

    /// The item bound by [`Jinja::bind_item`].
    pub fn item(&self) -> Option<&JinjaItem> {
        self.item.as_ref()
    }

    /// Its name, as given to [`Jinja::parse`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names the template takes from its context (not those it defines itself,
    /// such as loop variables, nor the engine's functions `range`, `dict` and
    /// `namespace`), sorted.
    pub fn names(&self) -> Vec<String> {
        let env = environment();
        let Ok(t) = env.template_from_named_str(&self.name, &self.source) else {
            return Vec::new();
        };
        let globals: Vec<&str> = env.globals().map(|(n, _)| n).collect();
        let mut names: Vec<String> = t
            .undeclared_variables(false)
            .into_iter()
            .filter(|n| !globals.contains(&n.as_str()))
            .collect();
        names.sort();
        names
    }

    /// The dotted paths the template reads from its context (`ports.ssh`,
    /// `package.dce.ip`), as far as the engine can tell without rendering, sorted.
    pub fn paths(&self) -> Vec<String> {
        let env = environment();
        let Ok(t) = env.template_from_named_str(&self.name, &self.source) else {
            return Vec::new();
        };
        let mut paths: Vec<String> = t
            .undeclared_variables(true)
            .into_iter()
            .filter(|n| n.contains('.'))
            .collect();
        paths.sort();
        paths
    }

    /// Renders the template with `context` (the names it may use) and its item.
    pub(crate) fn render(
        &self,
        mut context: BTreeMap<String, Value>,
    ) -> Result<String, JinjaError> {
        match &self.item {
            Some(JinjaItem::Text(t)) => {
                context.insert("item".into(), Value::from(t.as_str()));
            }
            Some(JinjaItem::Entry { key, value }) => {
                let mut m = BTreeMap::new();
                m.insert("key", key.clone());
                m.insert("value", value.clone());
                context.insert("item".into(), Value::from(m));
            }
            None => {}
        }
        let env = environment();
        let t = env
            .template_from_named_str(&self.name, &self.source)
            .map_err(|e| self.error(&e))?;
        let mut out = Bounded::default();
        let rendered = t.render_captured_to(Value::from(context), &mut out);
        if out.over {
            return Err(JinjaError {
                name: self.name.clone(),
                line: None,
                message: format!(
                    "renders more than {MAX_OUTPUT_BYTES} bytes, the most a template may produce"
                ),
            });
        }
        rendered.map_err(|e| self.error(&e))?;
        String::from_utf8(out.out).map_err(|_| JinjaError {
            name: self.name.clone(),
            line: None,
            message: "rendered text is not UTF-8".to_string(),
        })
    }

    fn error(&self, e: &minijinja::Error) -> JinjaError {
        let mut message = e.kind().to_string();
        if let Some(d) = e.detail() {
            message.push_str(": ");
            message.push_str(d);
        }
        JinjaError {
            name: self.name.clone(),
            line: e.line(),
            message,
        }
    }
}

/// A render's output, refused once past [`MAX_OUTPUT_BYTES`] (`over` tells this
/// refusal from the template's own errors).
#[derive(Default)]
struct Bounded {
    out: Vec<u8>,
    over: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > MAX_OUTPUT_BYTES {
            self.over = true;
            return Err(std::io::Error::other("template output too large"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The engine as tenet configures it: strict about undefined names, no escaping
/// (configuration files are not HTML), no loader, the final newline kept, and a
/// block tag's own newline dropped (`trim_blocks`, as Ansible does) so `{% for %}`
/// lines leave no blank lines behind.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.set_trim_blocks(true);
    env.set_fuel(Some(FUEL));
    env.remove_global("debug");
    env
}

impl PartialEq for Jinja {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.source == other.source && self.item == other.item
    }
}

impl Eq for Jinja {}

impl Hash for Jinja {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.source.hash(state);
        self.item.hash(state);
    }
}

impl fmt::Display for Jinja {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, ctx: BTreeMap<String, Value>) -> Result<String, JinjaError> {
        Jinja::parse("files/t.j2", src.to_string())?.render(ctx)
    }

    #[test]
    fn loops_and_conditionals_render() {
        let mut ctx = BTreeMap::new();
        ctx.insert("admins".into(), Value::from(vec!["alice", "bob"]));
        ctx.insert("member".into(), Value::from("m1"));
        let out = render(
            "{% for a in admins %}\nAllowUsers {{ a }}\n{% endfor %}\n{% if member == \"m1\" %}\nfirst\n{% endif %}\n",
            ctx,
        )
        .unwrap();
        assert_eq!(out, "AllowUsers alice\nAllowUsers bob\nfirst\n");
    }

    #[test]
    fn output_past_the_bound_is_an_error_not_a_file() {
        // 17 MB of output from a one-line template, in a few instructions of fuel.
        let e = render("{{ \"x\" * 17000000 }}\n", BTreeMap::new()).unwrap_err();
        assert!(e.message.contains("more than 16777216 bytes"), "{e}");
        let out = render("{{ \"x\" * 1000000 }}\n", BTreeMap::new()).unwrap();
        assert_eq!(out.len(), 1_000_001);
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = Jinja::parse("files/t.j2", "a\n{% if x %}\nb\n".to_string()).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(
            e.to_string().starts_with("files/t.j2 line 3: syntax error"),
            "{e}"
        );
    }

    #[test]
    fn undefined_names_are_errors_not_empty_text() {
        let e = render("x={{ nope }}\n", BTreeMap::new()).unwrap_err();
        assert!(e.message.contains("undefined"), "{e}");
        let mut ctx = BTreeMap::new();
        ctx.insert(
            "fact".into(),
            Value::from(BTreeMap::<String, String>::new()),
        );
        let e = render("{{ fact.rack }}", ctx).unwrap_err();
        assert!(e.message.contains("undefined"), "{e}");
    }

    #[test]
    fn no_file_is_reachable() {
        // Built without multi-template support, the engine does not know the tags.
        for tag in ["include", "import", "extends"] {
            let e = Jinja::parse("t", format!("{{% {tag} \"/etc/passwd\" %}}")).unwrap_err();
            assert!(e.message.contains("unknown statement"), "{e}");
        }
        assert!(render("{{ debug() }}", BTreeMap::new()).is_err());
    }

    #[test]
    fn names_lists_what_the_context_must_hold() {
        let j = Jinja::parse(
            "t",
            "{% for u in admins %}{{ u }}{{ loop.index }}{% endfor %}{{ range(3)|join }}{{ fact.os }}{% set x = 1 %}{{ x }}".into(),
        )
        .unwrap();
        assert_eq!(j.names(), vec!["admins".to_string(), "fact".to_string()]);
        assert_eq!(j.paths(), vec!["fact.os".to_string()]);
    }
}
