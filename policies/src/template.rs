//! Templates: text with `${...}` references, expanded per member.
//!
//! `$${` is a literal `${`. References are checked when the tree is loaded (an
//! unknown package or value is a diagnostic); only facts can be missing at run time.
//!
//! A `shell` script is a template of its own kind ([`Template::parse_shell`]): each
//! reference expands to exactly one shell word, single-quoted when it holds anything
//! but plain characters, so a value (a hostname from DHCP, a fact, a package name)
//! is never read as shell syntax. A reference the shell would not read as an unquoted
//! word there (inside quotes, backquotes or arithmetic, in a comment or a
//! here-document, after a `\`) is refused at load, since its quoting would become part of the text or be
//! undone.
//!
//! In a module's file, `${param.NAME}` is the use's argument (see `load::module`),
//! read as a template of its own (its references expand; `$${` is a literal `${`)
//! and written as one unit: as is in a plain template, and as one shell word, placed
//! by the same rules as any reference, in a `shell` script.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::jinja::Jinja;

/// What a `${...}` refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ref {
    /// `${member}`: this member's name.
    Member,
    /// `${hostname}`: the hostname fact.
    Hostname,
    /// `${cluster}`: the cluster's name.
    Cluster,
    /// `${package.NAME.hostname}`.
    PackageHostname(String),
    /// `${package.NAME.ip}`.
    PackageIp(String),
    /// `${fact.KEY}`.
    Fact(String),
    /// `${NAME}`: a `[[value]]`.
    Value(String),
    /// `${NAME.KEY}`: the entry `KEY` of the map value `NAME`.
    Entry {
        /// The map's name.
        map: String,
        /// The entry's key.
        key: String,
    },
    /// `${item}`, `${item.key}`, `${item.value}`: the current item of a promise's
    /// `for_each`, bound when the promise is expanded at load.
    Item(ItemPart),
    /// A whole file's content rendered by the Jinja engine (`engine = "jinja"`).
    Jinja(Arc<Jinja>),
}

/// Which part of a `for_each` item a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemPart {
    /// `${item}`: a list's item.
    Whole,
    /// `${item.key}`: a map entry's key.
    Key,
    /// `${item.value}`: a map entry's value.
    Value,
}

impl ItemPart {
    /// The reference as written.
    pub fn as_ref_str(self) -> &'static str {
        match self {
            Self::Whole => "${item}",
            Self::Key => "${item.key}",
            Self::Value => "${item.value}",
        }
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Member => f.write_str("${member}"),
            Self::Hostname => f.write_str("${hostname}"),
            Self::Cluster => f.write_str("${cluster}"),
            Self::PackageHostname(p) => write!(f, "${{package.{p}.hostname}}"),
            Self::PackageIp(p) => write!(f, "${{package.{p}.ip}}"),
            Self::Fact(k) => write!(f, "${{fact.{k}}}"),
            Self::Value(v) => write!(f, "${{{v}}}"),
            Self::Entry { map, key } => write!(f, "${{{map}.{key}}}"),
            Self::Item(part) => f.write_str(part.as_ref_str()),
            Self::Jinja(j) => write!(f, "{{# jinja {} #}}", j.name()),
        }
    }
}

/// A module instance's arguments: each parameter's name and the argument's text.
pub(crate) type Params = HashMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Text(String),
    Ref {
        r: Ref,
        offset: usize,
    },
    /// `${param.NAME}` in a `shell` script: the argument (text and references) as one
    /// word. In a plain template an argument's parts are written in place instead.
    Param {
        name: String,
        value: Vec<Part>,
        offset: usize,
    },
}

/// How a template writes a reference's value into its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Quoting {
    /// As is.
    Raw,
    /// As one shell word ([`shell_quote`]).
    Shell,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    parts: Vec<Part>,
    quoting: Quoting,
}

/// A syntax error in a template, at a byte offset of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset in the template text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl Template {
    /// A template with no references: `text` as is.
    pub fn literal(text: &str) -> Self {
        Self {
            parts: vec![Part::Text(text.to_string())],
            quoting: Quoting::Raw,
        }
    }

    /// A whole content rendered by the Jinja engine when the promise is resolved.
    pub fn jinja(j: Jinja) -> Self {
        Self {
            parts: vec![Part::Ref {
                r: Ref::Jinja(Arc::new(j)),
                offset: 0,
            }],
            quoting: Quoting::Raw,
        }
    }

    /// Replaces each `${item...}` reference with the text `item` gives for it (quoted
    /// as one shell word in a `shell` script), so the template no longer names the item.
    pub fn bind_item(&mut self, item: &mut impl FnMut(ItemPart) -> Option<String>) {
        for p in &mut self.parts {
            if let Part::Ref {
                r: Ref::Item(part), ..
            } = p
                && let Some(v) = item(*part)
            {
                let text = match self.quoting {
                    Quoting::Raw => v,
                    Quoting::Shell => shell_quote(&v).into_owned(),
                };
                *p = Part::Text(text);
            }
        }
    }

    /// Parses a script for `/bin/sh -c`: like [`Template::parse`], but each reference
    /// renders as one shell word ([`shell_quote`]), and a reference where the shell
    /// would not read an unquoted word (see the module documentation) is an error (pass such a
    /// value through the command's `env` and write `"$NAME"`).
    pub fn parse_shell(s: &str) -> Result<Self, TemplateError> {
        Self::parse_shell_in(s, None)
    }

    /// Parses `${...}` references.
    pub fn parse(s: &str) -> Result<Self, TemplateError> {
        Self::parse_in(s, None)
    }

    /// [`Template::parse`] in a module's file, each `${param.NAME}` being `params`'
    /// argument, its parts written in place.
    pub(crate) fn parse_in(s: &str, params: Option<&Params>) -> Result<Self, TemplateError> {
        Ok(Self {
            parts: parse_parts(s, params, Quoting::Raw)?,
            quoting: Quoting::Raw,
        })
    }

    /// [`Template::parse_shell`] in a module's file, each `${param.NAME}` being
    /// `params`' argument as one shell word, refused where any reference would be.
    pub(crate) fn parse_shell_in(s: &str, params: Option<&Params>) -> Result<Self, TemplateError> {
        let parts = parse_parts(s, params, Quoting::Shell)?;
        check_unquoted(&parts)?;
        Ok(Self {
            parts,
            quoting: Quoting::Shell,
        })
    }

    /// Every reference with its byte offset in the template text (a reference in a
    /// module's argument at the offset of its `${param.NAME}`).
    pub fn refs(&self) -> impl Iterator<Item = (&Ref, usize)> {
        self.parts.iter().flat_map(|p| match p {
            Part::Ref { r, offset } => vec![(r, *offset)],
            Part::Param { value, offset, .. } => value
                .iter()
                .filter_map(|v| match v {
                    Part::Ref { r, .. } => Some((r, *offset)),
                    Part::Text(_) | Part::Param { .. } => None,
                })
                .collect(),
            Part::Text(_) => Vec::new(),
        })
    }

    /// Expands the template, asking `lookup` for each reference (in a `shell` script,
    /// each value, and each module argument as a whole, is quoted as one shell word).
    pub fn render<E>(
        &self,
        lookup: &mut impl FnMut(&Ref) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for p in &self.parts {
            match (p, self.quoting) {
                (Part::Text(t), _) => out.push_str(t),
                (Part::Ref { r, .. }, Quoting::Raw) => out.push_str(&lookup(r)?),
                (Part::Ref { r, .. }, Quoting::Shell) => out.push_str(&shell_quote(&lookup(r)?)),
                (Part::Param { value, .. }, Quoting::Raw) => {
                    out.push_str(&render_raw(value, lookup)?);
                }
                (Part::Param { value, .. }, Quoting::Shell) => {
                    out.push_str(&shell_quote(&render_raw(value, lookup)?));
                }
            }
        }
        Ok(out)
    }

    /// The template as written, each reference shown as `${...}` (unquoted), a module's
    /// argument as its own text.
    pub fn source(&self) -> String {
        source(&self.parts)
    }
}

fn source(parts: &[Part]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Ref { r, .. } => out.push_str(&r.to_string()),
            Part::Param { value, .. } => out.push_str(&source(value)),
        }
    }
    out
}

/// `parts` expanded, every value as is.
fn render_raw<E>(
    parts: &[Part],
    lookup: &mut impl FnMut(&Ref) -> Result<String, E>,
) -> Result<String, E> {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Ref { r, .. } => out.push_str(&lookup(r)?),
            Part::Param { value, .. } => out.push_str(&render_raw(value, lookup)?),
        }
    }
    Ok(out)
}

/// Reads the `${...}` references of `s`; with `params`, `${param.NAME}` is that
/// argument, parsed as a template of its own: written in place when `quoting` is
/// `Raw`, kept as one [`Part::Param`] when it is `Shell`.
fn parse_parts(
    s: &str,
    params: Option<&Params>,
    quoting: Quoting,
) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    let mut offset = 0;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(after_escape) = after.strip_prefix("$${") {
            text.push_str("${");
            rest = after_escape;
            offset += i + 3;
        } else if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                return Err(TemplateError {
                    offset: offset + i,
                    message: "`${` without a closing `}`".into(),
                });
            };
            let at = offset + i;
            let inner = body[..end].trim();
            match (params, inner.strip_prefix("param.")) {
                (Some(params), Some(name)) => {
                    let value = argument(params, name.trim(), at)?;
                    match quoting {
                        Quoting::Raw => {
                            for v in value {
                                match v {
                                    Part::Text(t) => text.push_str(&t),
                                    Part::Ref { r, .. } => {
                                        if !text.is_empty() {
                                            parts.push(Part::Text(std::mem::take(&mut text)));
                                        }
                                        parts.push(Part::Ref { r, offset: at });
                                    }
                                    // An argument has no parameters of its own.
                                    Part::Param { .. } => {}
                                }
                            }
                        }
                        Quoting::Shell => {
                            if !text.is_empty() {
                                parts.push(Part::Text(std::mem::take(&mut text)));
                            }
                            parts.push(Part::Param {
                                name: name.trim().to_string(),
                                value,
                                offset: at,
                            });
                        }
                    }
                }
                _ => {
                    let r = parse_ref(inner).map_err(|message| TemplateError {
                        offset: at,
                        message,
                    })?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Ref { r, offset: at });
                }
            }
            rest = &body[end + 1..];
            offset += i + 3 + end;
        } else {
            text.push('$');
            rest = &after[1..];
            offset += i + 1;
        }
    }
    text.push_str(rest);
    if !text.is_empty() || parts.is_empty() {
        parts.push(Part::Text(text));
    }
    // Most templates are one part, which a growing vector holds in room for four:
    // 192 bytes spare in each of a large policy's thousands of templates.
    parts.shrink_to_fit();
    Ok(parts)
}

/// The argument for parameter `name`, read as a template (with no parameters of its
/// own: a module's `with` has its parameters written in already); errors at `at`.
fn argument(params: &Params, name: &str, at: usize) -> Result<Vec<Part>, TemplateError> {
    let Some(text) = params.get(name) else {
        return Err(TemplateError {
            offset: at,
            message: format!("`${{param.{name}}}` is not a parameter of this module"),
        });
    };
    parse_parts(text, None, Quoting::Raw).map_err(|e| TemplateError {
        offset: at,
        message: format!("in the argument for `${{param.{name}}}`: {}", e.message),
    })
}

/// `s` as one POSIX shell word: as is when it is non-empty and holds only letters,
/// digits and `_ @ % + = : , . / -`; otherwise in single quotes, each `'` written
/// `'\''`.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// Refuses a reference that a POSIX shell (dash, or bash as `sh`) would not read as a
/// word of its own, unquoted: one inside `'...'`, `"..."`, `$'...'`, backquotes,
/// `${...}` or arithmetic (`$((...))`, `((...))`), in a comment (a newline in the value would end it), in a here-document or
/// as its delimiter (expanded there, a value's `$(...)` would run), or right after a
/// `\` (which would take the value's opening quote). `$(...)` is followed as the
/// unquoted context it is. Where the shells differ, or where this reading could lose
/// its place (`$'...'` with a backslash, quotes inside `${...}` inside `"..."`, a `case`
/// inside a command substitution inside quotes), every later reference is refused.
fn check_unquoted(parts: &[Part]) -> Result<(), TemplateError> {
    let mut sh = ShellReader {
        word_start: true,
        ..ShellReader::default()
    };
    let mut first: Option<(String, usize)> = None;
    for part in parts {
        let (shown, offset) = match part {
            Part::Text(t) => {
                t.chars().for_each(|c| sh.read(c));
                continue;
            }
            Part::Ref { r, offset } => (r.to_string(), *offset),
            Part::Param { name, offset, .. } => (format!("${{param.{name}}}"), *offset),
        };
        if matches!(sh.mode, Mode::Script) && !sh.quoted() {
            sh.end_token();
        }
        if let Some(place) = sh.refuses_reference() {
            return Err(TemplateError {
                offset,
                message: format!(
                    "`{shown}` {place} in a shell script: a reference expands to one shell word, already quoted, and only where the shell reads a word unquoted; write it outside quotes, or pass it through `env` and write \"$NAME\""
                ),
            });
        }
        first.get_or_insert((shown, offset));
        sh.escaped = false;
        sh.dollar = false;
        sh.less = 0;
        sh.paren = false;
        sh.word_start = false;
        sh.word.clear();
    }
    sh.end_token();
    if (sh.arith || (sh.double_bracket && sh.int_compare))
        && let Some((shown, offset)) = first
    {
        return Err(TemplateError {
            offset,
            message: format!(
                "`{shown}` is in a shell script that evaluates arithmetic (`[[ ... -eq ... ]]`, `let`, `declare -i`, an array subscript, or a variable in `$((...))`): bash and ksh, /bin/sh on some systems, run a value's `a[$(...)]` there, quoted or not; keep values out of such a script"
            ),
        });
    }
    Ok(())
}

/// Where a shell is within a script, as far as quoting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// `$(...)` or `$((...))`: unquoted again; the `(` open inside it.
    CmdSub(u32),
    Single,
    Double,
    /// bash's `$'...'`.
    AnsiC,
    Backquote,
    /// `${...}`, with the `{` open inside it.
    Param(u32),
    /// `$((...))` or `((...))`: arithmetic, read as if in double quotes, and evaluated
    /// (a value's `$(...)` would run); the `(` open inside it.
    Arith(u32),
    Comment,
}

/// A here-document whose operator was read.
#[derive(Debug, Clone, Default)]
struct HereDoc {
    delimiter: String,
    strip_tabs: bool,
}

#[derive(Debug, Clone, Default)]
enum Mode {
    #[default]
    Script,
    /// Reading a here-document operator's delimiter word.
    Delimiter {
        doc: HereDoc,
        quote: Option<char>,
        escaped: bool,
        started: bool,
    },
    /// In the bodies of the here-documents pending, the current line so far.
    Body(String),
}

#[derive(Debug, Default)]
struct ShellReader {
    frames: Vec<Frame>,
    mode: Mode,
    /// Here-documents whose bodies start at the next newline.
    pending: std::collections::VecDeque<HereDoc>,
    escaped: bool,
    /// The last character was an unescaped `$` where it expands.
    dollar: bool,
    /// `<` read in a row, unquoted.
    less: u8,
    /// The last character was an unescaped, unquoted `(`.
    paren: bool,
    word_start: bool,
    /// The unquoted word read so far (letters only), to see `case`.
    word: String,
    /// This reading can no longer tell where the shell is.
    lost: bool,
    /// The unquoted token read so far (to see `[[`, `let`, `declare -i`, `a[`).
    tok: String,
    /// In a `declare`, `typeset` or `local` command: an option with `i` follows.
    decl: bool,
    /// The script has a place where bash or ksh evaluate a word, or a variable, as
    /// arithmetic (see [`ShellReader::end_token`]).
    arith: bool,
    /// The script has a `[[` ...
    double_bracket: bool,
    /// ... and an integer comparison (`-eq` and the like), which inside `[[`
    /// evaluates both operands as arithmetic. Outside `[[` (`test`, `[`) it does not.
    int_compare: bool,
}

impl ShellReader {
    fn quoted(&self) -> bool {
        self.frames.iter().any(|f| !matches!(f, Frame::CmdSub(_)))
    }

    fn refuses_reference(&self) -> Option<&'static str> {
        match self.mode {
            Mode::Delimiter { .. } => return Some("as a here-document's delimiter"),
            Mode::Body(_) => return Some("in a here-document"),
            Mode::Script => {}
        }
        if self.less == 2 {
            return Some("as a here-document's delimiter");
        }
        if self.escaped {
            return Some("after a `\\`");
        }
        if let Some(f) = self
            .frames
            .iter()
            .rev()
            .find(|f| !matches!(f, Frame::CmdSub(_)))
        {
            return Some(match f {
                Frame::Single => "inside '...'",
                Frame::Double => "inside \"...\"",
                Frame::AnsiC => "inside $'...'",
                Frame::Backquote => "inside `...`",
                Frame::Param(_) => "inside ${...}",
                Frame::Arith(_) => "inside $((...))",
                Frame::Comment | Frame::CmdSub(_) => "in a comment",
            });
        }
        if self.lost {
            return Some("after quoting this check cannot follow");
        }
        None
    }

    /// Ends the unquoted token read so far and notes whether it makes the script one
    /// that evaluates arithmetic under bash or ksh: `[[` with `-eq` and the like,
    /// `let`, ksh's `integer`, `declare`/`typeset`/`local` with `-i`, and an array
    /// element `NAME[...]` (an indexed array's subscript is arithmetic). A value
    /// there, or in a variable arithmetic reads later, runs its `a[$(...)]`.
    fn end_token(&mut self) {
        let t = std::mem::take(&mut self.tok);
        match t.as_str() {
            "let" | "integer" => self.arith = true,
            "[[" => self.double_bracket = true,
            "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge" => self.int_compare = true,
            "declare" | "typeset" | "local" => self.decl = true,
            _ if self.decl && t.starts_with('-') && t.contains('i') => self.arith = true,
            _ => {
                if let Some((name, _)) = t.split_once('[')
                    && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.arith = true;
                }
            }
        }
    }

    fn read(&mut self, c: char) {
        match &mut self.mode {
            Mode::Script => self.script(c),
            Mode::Delimiter {
                doc,
                quote,
                escaped,
                started,
            } => {
                if *escaped {
                    *escaped = false;
                    doc.delimiter.push(c);
                } else if let Some(q) = *quote {
                    if c == q {
                        *quote = None;
                    } else if c == '\\' && q == '"' {
                        *escaped = true;
                    } else {
                        doc.delimiter.push(c);
                    }
                } else if c == '\\' {
                    *escaped = true;
                    *started = true;
                } else if c == '\'' || c == '"' {
                    *quote = Some(c);
                    *started = true;
                } else if c == '-' && !*started && !doc.strip_tabs && doc.delimiter.is_empty() {
                    doc.strip_tabs = true;
                } else if (c == ' ' || c == '\t') && !*started {
                } else if c.is_whitespace() || ";&|()<>".contains(c) {
                    let doc = std::mem::take(doc);
                    self.pending.push_back(doc);
                    self.mode = Mode::Script;
                    self.script(c);
                } else {
                    doc.delimiter.push(c);
                    *started = true;
                }
            }
            Mode::Body(line) => {
                if c != '\n' {
                    line.push(c);
                    return;
                }
                let ends = self.pending.front().is_some_and(|d| {
                    let l = if d.strip_tabs {
                        line.trim_start_matches('\t')
                    } else {
                        line.as_str()
                    };
                    l == d.delimiter
                });
                line.clear();
                if ends {
                    self.pending.pop_front();
                    if self.pending.is_empty() {
                        self.mode = Mode::Script;
                        self.word_start = true;
                    }
                }
            }
        }
    }

    fn script(&mut self, c: char) {
        let dollar = std::mem::take(&mut self.dollar);
        let less = std::mem::take(&mut self.less);
        let paren = std::mem::take(&mut self.paren);
        if self.escaped {
            self.escaped = false;
            self.word_start = false;
            return;
        }
        match self.frames.last().copied() {
            None | Some(Frame::CmdSub(_)) => {
                if less == 2 && c != '<' {
                    // `<<` (not bash's `<<<`): a here-document's delimiter follows.
                    self.mode = Mode::Delimiter {
                        doc: HereDoc::default(),
                        quote: None,
                        escaped: false,
                        started: false,
                    };
                    self.read(c);
                    return;
                }
                if c.is_whitespace() || ";&|()<>".contains(c) {
                    self.end_token();
                    if c == '\n' || ";&|".contains(c) {
                        self.decl = false;
                    }
                } else if !matches!(c, '\'' | '"' | '`' | '\\') {
                    self.tok.push(c);
                }
                if c.is_ascii_alphabetic() {
                    self.word.push(c);
                } else {
                    if self.word == "case" && self.quoted() {
                        self.lost = true;
                    }
                    self.word.clear();
                }
                match c {
                    '\\' => self.escaped = true,
                    '\'' if dollar => self.frames.push(Frame::AnsiC),
                    '\'' => self.frames.push(Frame::Single),
                    '"' => self.frames.push(Frame::Double),
                    '`' => self.frames.push(Frame::Backquote),
                    '$' => self.dollar = true,
                    '(' if paren => self.frames.push(Frame::Arith(0)),
                    '(' if dollar => {
                        self.frames.push(Frame::CmdSub(0));
                        self.paren = true;
                    }
                    '[' if dollar => {
                        // bash's old `$[...]` arithmetic; dash reads it as text.
                        self.lost = true;
                    }
                    '{' if dollar => self.frames.push(Frame::Param(0)),
                    '(' => {
                        if let Some(Frame::CmdSub(n)) = self.frames.last_mut() {
                            *n += 1;
                        }
                        self.paren = true;
                    }
                    ')' => match self.frames.last_mut() {
                        Some(Frame::CmdSub(0)) => {
                            self.frames.pop();
                        }
                        Some(Frame::CmdSub(n)) => *n -= 1,
                        _ => {}
                    },
                    '#' if self.word_start => self.frames.push(Frame::Comment),
                    '<' => self.less = less.saturating_add(1),
                    '\n' if !self.pending.is_empty() => self.mode = Mode::Body(String::new()),
                    _ => {}
                }
            }
            Some(Frame::Single) => {
                if c == '\'' {
                    self.frames.pop();
                }
            }
            Some(Frame::AnsiC) => match c {
                // dash reads `$'` as `$` and a plain '...', which a `\'` would end.
                '\\' => {
                    self.lost = true;
                    self.escaped = true;
                }
                '\'' => {
                    self.frames.pop();
                }
                _ => {}
            },
            Some(Frame::Double) => match c {
                '\\' => self.escaped = true,
                '"' => {
                    self.frames.pop();
                }
                '`' => self.frames.push(Frame::Backquote),
                '$' => self.dollar = true,
                '(' if dollar => self.frames.push(Frame::CmdSub(0)),
                '{' if dollar => self.frames.push(Frame::Param(0)),
                _ => {}
            },
            Some(Frame::Backquote) => match c {
                '\\' => self.escaped = true,
                '`' => {
                    self.frames.pop();
                }
                _ => {}
            },
            Some(Frame::Param(n)) => match c {
                '\\' => self.escaped = true,
                '\'' | '"' => {
                    if self.frames.contains(&Frame::Double) {
                        // Shells differ on quotes in `"${x:-"..."}"`.
                        self.lost = true;
                    }
                    self.frames.push(if c == '"' {
                        Frame::Double
                    } else {
                        Frame::Single
                    });
                }
                '`' => self.frames.push(Frame::Backquote),
                '$' => self.dollar = true,
                '(' if dollar => self.frames.push(Frame::CmdSub(0)),
                '{' if dollar => self.frames.push(Frame::Param(0)),
                '{' => {
                    if let Some(Frame::Param(n)) = self.frames.last_mut() {
                        *n += 1;
                    }
                }
                '}' => {
                    if n == 0 {
                        self.frames.pop();
                    } else if let Some(Frame::Param(n)) = self.frames.last_mut() {
                        *n -= 1;
                    }
                }
                _ => {}
            },
            Some(Frame::Arith(n)) => match c {
                // A variable read as arithmetic evaluates its value.
                c if c.is_ascii_alphabetic() || c == '_' || c == '$' => self.arith = true,
                '\\' => self.escaped = true,
                '(' => {
                    if let Some(Frame::Arith(n)) = self.frames.last_mut() {
                        *n += 1;
                    }
                }
                ')' => {
                    if n == 0 {
                        self.frames.pop();
                    } else if let Some(Frame::Arith(n)) = self.frames.last_mut() {
                        *n -= 1;
                    }
                }
                _ => {}
            },
            Some(Frame::Comment) => {
                if c == '\n' {
                    self.frames.pop();
                    self.word_start = true;
                    self.script(c);
                    return;
                }
            }
        }
        self.word_start = c.is_whitespace() || ";&|()<>".contains(c);
    }
}

fn parse_ref(body: &str) -> Result<Ref, String> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    };
    let bad = || {
        format!(
            "`${{{body}}}` is not a reference; expected member, hostname, cluster, package.NAME.hostname, package.NAME.ip, fact.KEY, item, item.key, item.value, a value's name or MAP.KEY"
        )
    };
    match body {
        "member" => return Ok(Ref::Member),
        "hostname" => return Ok(Ref::Hostname),
        "cluster" => return Ok(Ref::Cluster),
        "item" => return Ok(Ref::Item(ItemPart::Whole)),
        "item.key" => return Ok(Ref::Item(ItemPart::Key)),
        "item.value" => return Ok(Ref::Item(ItemPart::Value)),
        _ => {}
    }
    if let Some(key) = body.strip_prefix("fact.") {
        return if valid(key) {
            Ok(Ref::Fact(key.to_string()))
        } else {
            Err(bad())
        };
    }
    if let Some(rest) = body.strip_prefix("package.") {
        return match rest.rsplit_once('.') {
            Some((p, "hostname")) if valid(p) => Ok(Ref::PackageHostname(p.to_string())),
            Some((p, "ip")) if valid(p) => Ok(Ref::PackageIp(p.to_string())),
            _ => Err(bad()),
        };
    }
    if valid(body) {
        return Ok(Ref::Value(body.to_string()));
    }
    match body.split_once('.') {
        Some((map, key)) if valid(map) && valid(key) && map != "item" => Ok(Ref::Entry {
            map: map.to_string(),
            key: key.to_string(),
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(s: &str) -> String {
        let t = Template::parse(s).unwrap();
        t.render(&mut |r| Ok::<_, ()>(format!("<{r}>"))).unwrap()
    }

    #[test]
    fn expands_references_and_escapes() {
        assert_eq!(render("plain"), "plain");
        assert_eq!(render(""), "");
        assert_eq!(render("a ${member} b"), "a <${member}> b");
        assert_eq!(
            render("${package.dce.ip}:${fact.os}"),
            "<${package.dce.ip}>:<${fact.os}>"
        );
        assert_eq!(render("$${member} costs $5"), "${member} costs $5");
        assert_eq!(render("${ rpc }"), "<${rpc}>");
    }

    #[test]
    fn reports_bad_references_with_offsets() {
        let e = Template::parse("abc ${oops").unwrap_err();
        assert_eq!(e.offset, 4);
        let e = Template::parse("x ${package.dce.mtu}").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("package.NAME.ip"));
        let e = Template::parse("$${ok} ${a b}").unwrap_err();
        assert_eq!(e.offset, 7);
    }

    fn shell(s: &str, value: &str) -> String {
        let t = Template::parse_shell(s).unwrap();
        t.render(&mut |_| Ok::<_, ()>(value.to_string())).unwrap()
    }

    #[test]
    fn shell_scripts_get_each_value_as_one_word() {
        assert_eq!(shell("echo ${member}", "alpha"), "echo alpha");
        assert_eq!(shell("echo ${member}", "10.0.0.1"), "echo 10.0.0.1");
        assert_eq!(shell("echo ${member}", ""), "echo ''");
        assert_eq!(
            shell("echo ${hostname} > /x", "h; touch PWNED"),
            "echo 'h; touch PWNED' > /x"
        );
        assert_eq!(shell("echo ${x}", "it's $(id)"), r"echo 'it'\''s $(id)'");
        assert_eq!(shell("cp /a/${x}.conf /b", "a b"), "cp /a/'a b'.conf /b");
        // Quotes and comments that do not hold a reference are left alone.
        assert_eq!(
            shell("echo 'a' \"b\" \\' ${x} # it's", "v w"),
            "echo 'a' \"b\" \\' 'v w' # it's"
        );
        assert_eq!(shell("# don't\necho ${x}", "v"), "# don't\necho v");
    }

    #[test]
    fn shell_scripts_refuse_references_inside_quotes() {
        for (s, offset) in [
            ("echo \"${member}\"", 6),
            ("echo 'a ${member}'", 8),
            ("echo \"a \\\" ${x}\"", 11),
            ("echo a#'${x}'", 8),
        ] {
            let e = Template::parse_shell(s).unwrap_err();
            assert_eq!(e.offset, offset, "{s}");
            assert!(e.message.contains("env"), "{}", e.message);
        }
        // Plain templates are not shell scripts.
        assert!(Template::parse("echo \"${member}\"").is_ok());
    }

    #[test]
    fn shell_scripts_refuse_references_the_shell_would_not_read_as_a_word() {
        for (s, place) in [
            ("echo \\${x}", "after a `\\`"),
            ("true # ${x}\ntrue", "in a comment"),
            ("cat <<EOF\n${x}\nEOF", "in a here-document"),
            ("cat <<-'E'\n\t${x}\nE", "in a here-document"),
            ("cat <<EOF; echo a\nb\nEOF\ncat << ${x}", "delimiter"),
            ("cat <<${x}", "delimiter"),
            ("echo `echo ${x}`", "inside `...`"),
            ("echo \"$(echo \"${x}\")\"", "inside \"...\""),
            ("echo $'a ${x}'", "inside $'...'"),
            ("echo $${y:-${x}}", "inside ${...}"),
            ("echo $((${x} + 1))", "inside $((...))"),
            ("(( n = ${x} ))", "inside $((...))"),
            ("echo $(( (1 + ${x}) ))", "inside $((...))"),
            ("echo $[1] ${x}", "cannot follow"),
            (
                "echo \"$(case a in a) echo \"${x}\";; esac)\"",
                "cannot follow",
            ),
        ] {
            let e = Template::parse_shell(s).unwrap_err();
            assert!(e.message.contains(place), "{s:?}: {}", e.message);
        }
        // Where the shell reads a word unquoted, a reference is fine.
        for s in [
            "echo $(echo ${x})",
            "d=\"$(date +%F)\"; echo ${x}-$d",
            "echo \"$(echo \"a\")\" ${x}",
            "cat <<EOF\n$HOME `id`\nEOF\necho ${x}",
            "cat <<-'E O'\n\tb\n\tE O\necho ${x} <<<here",
            "echo `date` ${x} $${HOME} $((1+2)) ${x}",
            "case a in a) echo ${x};; esac",
            "echo $((1 + (2))) ${x} $( (echo a) ) ${x}",
        ] {
            assert!(Template::parse_shell(s).is_ok(), "{s:?}");
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn a_module_argument_is_one_shell_word_whatever_it_holds() {
        let nasty = "x; rm -rf / 'q' \"d\" $(id) `id` a\nb ${member}";
        let p = params(&[("name", nasty)]);
        let t = Template::parse_shell_in("useradd ${param.name} -m", Some(&p)).unwrap();
        let out = t.render(&mut |r| Ok::<_, ()>(format!("<{r}>"))).unwrap();
        // The argument's own `${member}` expands, and the whole is one quoted word.
        assert_eq!(
            out,
            "useradd 'x; rm -rf / '\\''q'\\'' \"d\" $(id) `id` a\nb <${member}>' -m"
        );
        assert_eq!(
            t.refs().map(|(r, o)| (r.clone(), o)).collect::<Vec<_>>(),
            [(Ref::Member, 8)]
        );
        // `$${` in an argument is a literal `${`, never a reference.
        let p = params(&[("name", "$${member}")]);
        let t = Template::parse_shell_in("echo ${param.name}", Some(&p)).unwrap();
        assert_eq!(
            t.render(&mut |_| Err::<String, _>(())).unwrap(),
            "echo '${member}'"
        );
        // A plain argument stays plain; an empty one is still a word.
        let p = params(&[("a", "alice"), ("b", "")]);
        let t = Template::parse_shell_in("id ${param.a} ${param.b}", Some(&p)).unwrap();
        assert_eq!(
            t.render(&mut |_| Err::<String, _>(())).unwrap(),
            "id alice ''"
        );
        assert_eq!(t.source(), "id alice ");
    }

    /// bash and ksh (`/bin/sh` on RHEL-family systems) evaluate a quoted word as
    /// arithmetic in these places, and arithmetic runs `a[$(...)]`: `[[ 'a[$(id)]'
    /// -eq 3 ]]` runs `id`. A value there, or in a script that does arithmetic on a
    /// variable (which a value may have been put in), is refused.
    #[test]
    fn shell_scripts_refuse_references_where_bash_evaluates_arithmetic() {
        for s in [
            "[[ ${x} -eq 3 ]] && echo three",
            "if [[ -n ${x} ]]; then [[ $n -gt 2 ]]; fi",
            "n=${x}; [[ $n -ge 2 ]] && echo big",
            "let n=${x}+1",
            "declare -i n=${x}",
            "f() { local -ri n=${x}; }; f",
            "typeset -i n; n=${x}",
            "integer n=${x}",
            "a[${x}]=1",
            "n=${x}; echo $((n + 1))",
            "n=${x}; (( n > 2 )) && echo big",
            "echo ${x}; echo $(( $n * 2 ))",
        ] {
            let e = Template::parse_shell(s).unwrap_err();
            assert!(e.message.contains("arithmetic"), "{s:?}: {}", e.message);
            let p = params(&[("v", "a[$(id)]")]);
            let e =
                Template::parse_shell_in(&s.replace("${x}", "${param.v}"), Some(&p)).unwrap_err();
            assert!(e.message.contains("arithmetic"), "{s:?}: {}", e.message);
        }
        // Arithmetic on numbers alone, and words that only look alike, are fine.
        for s in [
            "echo $((1 + 2)) ${x}",
            "echo ${x} [ -n a ]",
            "test ${x} -eq 3",
            "ls /var/log/[ab].log ${x}",
            "echo 'let' \"[[\" ${x}",
            "localize ${x}; declared ${x}",
            "declare -r n=${x}",
            "[[ -n ${x} && ${x} == web* ]] && echo named",
            "[ ${x} -eq 3 ] && echo three",
        ] {
            assert!(Template::parse_shell(s).is_ok(), "{s:?}");
        }
        // Without a reference, anything goes.
        assert!(Template::parse_shell("let n=1; [[ $n -eq 1 ]]").is_ok());
    }

    #[test]
    fn a_module_argument_where_the_shell_reads_no_word_is_refused() {
        let p = params(&[("name", "alice")]);
        for (s, offset, place) in [
            ("echo \"${param.name}\"", 6, "inside \"...\""),
            ("echo 'a ${param.name}'", 8, "inside '...'"),
            ("echo \\${param.name}", 6, "after a `\\`"),
            ("cat <<EOF\n${param.name}\nEOF", 10, "in a here-document"),
            ("true # ${ param.name }", 7, "in a comment"),
        ] {
            let e = Template::parse_shell_in(s, Some(&p)).unwrap_err();
            assert_eq!(e.offset, offset, "{s}");
            assert!(
                e.message
                    .starts_with(&format!("`${{param.name}}` {place} in a shell script")),
                "{s}: {}",
                e.message
            );
        }
        // The argument's own references are checked, located at its parameter.
        let p = params(&[("name", "a ${oops")]);
        let e = Template::parse_shell_in("echo ${param.name}", Some(&p)).unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(
            e.message.contains("argument for `${param.name}`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_module_argument_in_a_plain_template_is_written_in_place() {
        let p = params(&[("port", "80${member}")]);
        let t = Template::parse_in("listen \"${param.port}\" $${param.port}", Some(&p)).unwrap();
        assert_eq!(
            t.render(&mut |r| Ok::<_, ()>(format!("<{r}>"))).unwrap(),
            "listen \"80<${member}>\" ${param.port}"
        );
        // Without arguments (outside a module) `${param.NAME}` is no argument: it reads
        // as an entry of a map named `param`, which the loader refuses outside a module.
        let t = Template::parse("${param.port}").unwrap();
        let refs: Vec<_> = t.refs().map(|(r, _)| r.clone()).collect();
        assert_eq!(
            refs,
            vec![Ref::Entry {
                map: "param".into(),
                key: "port".into()
            }]
        );
    }

    #[test]
    fn source_shows_references_as_written() {
        let t = Template::parse_shell("echo ${member} $${x}").unwrap();
        assert_eq!(t.source(), "echo ${member} ${x}");
    }

    #[test]
    fn lists_references() {
        let t = Template::parse("${member}-${x}").unwrap();
        let refs: Vec<_> = t.refs().map(|(r, o)| (r.clone(), o)).collect();
        assert_eq!(refs, vec![(Ref::Member, 0), (Ref::Value("x".into()), 10)]);
    }

    #[test]
    fn map_entries_and_items_are_references() {
        let t = Template::parse("${ports.ssh} ${item} ${item.key} ${item.value}").unwrap();
        let refs: Vec<_> = t.refs().map(|(r, _)| r.clone()).collect();
        assert_eq!(
            refs,
            vec![
                Ref::Entry {
                    map: "ports".into(),
                    key: "ssh".into()
                },
                Ref::Item(ItemPart::Whole),
                Ref::Item(ItemPart::Key),
                Ref::Item(ItemPart::Value),
            ]
        );
        assert!(Template::parse("${item.other}").is_err());
        assert!(Template::parse("${a.b.c}").is_err());
        assert_eq!(t.source(), "${ports.ssh} ${item} ${item.key} ${item.value}");
    }

    #[test]
    fn a_bound_item_is_text_and_one_shell_word_in_a_script() {
        let mut t = Template::parse_shell("useradd ${item} # done").unwrap();
        t.bind_item(&mut |_| Some("bob; rm -rf /".into()));
        assert_eq!(t.refs().count(), 0);
        assert_eq!(
            t.render(&mut |_| Err::<String, ()>(())).unwrap(),
            "useradd 'bob; rm -rf /' # done"
        );
        let mut t = Template::parse("${item.key}=${item.value}").unwrap();
        t.bind_item(&mut |p| (p == ItemPart::Key).then(|| "K".to_string()));
        // An item without that part leaves the reference for the loader to report.
        assert_eq!(t.refs().count(), 1);
    }
}
