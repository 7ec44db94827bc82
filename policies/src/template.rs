//! Templates: text with `${...}` references, expanded per member.
//!
//! `$${` is a literal `${`. References are checked when the tree is loaded (an
//! unknown package or value is a diagnostic); only facts can be missing at run time.
//!
//! A `shell` script is a template of its own kind ([`Template::parse_shell`]): each
//! reference expands to exactly one shell word, single-quoted when it holds anything
//! but plain characters, so a value (a hostname from DHCP, a fact, a package name)
//! is never read as shell syntax. A reference inside quotes there is refused at load,
//! since the quoting it gets would become part of the text.

use std::borrow::Cow;
use std::fmt;

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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Text(String),
    Ref { r: Ref, offset: usize },
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

    /// Parses a script for `/bin/sh -c`: like [`Template::parse`], but each reference
    /// renders as one shell word ([`shell_quote`]), and a reference inside `'...'` or
    /// `"..."` is an error (the quotes it gets would be part of the string; pass such a
    /// value through the command's `env` and write `"$NAME"`).
    pub fn parse_shell(s: &str) -> Result<Self, TemplateError> {
        let mut t = Self::parse(s)?;
        check_unquoted(&t.parts)?;
        t.quoting = Quoting::Shell;
        Ok(t)
    }

    /// Parses `${...}` references.
    pub fn parse(s: &str) -> Result<Self, TemplateError> {
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
                let r = parse_ref(body[..end].trim()).map_err(|message| TemplateError {
                    offset: offset + i,
                    message,
                })?;
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Ref {
                    r,
                    offset: offset + i,
                });
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
        Ok(Self {
            parts,
            quoting: Quoting::Raw,
        })
    }

    /// Every reference with its byte offset in the template text.
    pub fn refs(&self) -> impl Iterator<Item = (&Ref, usize)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref { r, offset } => Some((r, *offset)),
            Part::Text(_) => None,
        })
    }

    /// Expands the template, asking `lookup` for each reference (in a `shell` script,
    /// each value is quoted as one shell word).
    pub fn render<E>(
        &self,
        lookup: &mut impl FnMut(&Ref) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Ref { r, .. } => {
                    let value = lookup(r)?;
                    match self.quoting {
                        Quoting::Raw => out.push_str(&value),
                        Quoting::Shell => out.push_str(&shell_quote(&value)),
                    }
                }
            }
        }
        Ok(out)
    }

    /// The template as written, each reference shown as `${...}` (unquoted).
    pub fn source(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Ref { r, .. } => out.push_str(&r.to_string()),
            }
        }
        out
    }
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

/// Refuses a reference that a POSIX shell would read inside quotes. Tracks quotes,
/// backslash escapes and comments; here-documents are not recognised (a reference in
/// one would show its quotes).
fn check_unquoted(parts: &[Part]) -> Result<(), TemplateError> {
    #[derive(PartialEq)]
    enum State {
        Plain,
        Single,
        Double,
        Comment,
    }
    let mut state = State::Plain;
    let mut escaped = false;
    // Whether the last character ended a word, so a `#` starts a comment.
    let mut word_start = true;
    for part in parts {
        let text = match part {
            Part::Text(t) => t,
            Part::Ref { r, offset } => {
                let quote = match state {
                    State::Single => "'...'",
                    State::Double => "\"...\"",
                    State::Plain | State::Comment => {
                        word_start = false;
                        continue;
                    }
                };
                return Err(TemplateError {
                    offset: *offset,
                    message: format!(
                        "`{r}` inside {quote} in a shell script: a reference expands to one shell word, already quoted; write it outside quotes, or pass it through `env` and write \"$NAME\""
                    ),
                });
            }
        };
        for c in text.chars() {
            if escaped {
                escaped = false;
                word_start = false;
                continue;
            }
            match state {
                State::Plain => match c {
                    '\\' => escaped = true,
                    '\'' => state = State::Single,
                    '"' => state = State::Double,
                    '#' if word_start => state = State::Comment,
                    _ => {}
                },
                State::Single => {
                    if c == '\'' {
                        state = State::Plain;
                    }
                }
                State::Double => match c {
                    '\\' => escaped = true,
                    '"' => state = State::Plain,
                    _ => {}
                },
                State::Comment => {
                    if c == '\n' {
                        state = State::Plain;
                    }
                }
            }
            word_start = c.is_whitespace() || ";&|()<>".contains(c);
        }
    }
    Ok(())
}

fn parse_ref(body: &str) -> Result<Ref, String> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    };
    let bad = || {
        format!(
            "`${{{body}}}` is not a reference; expected member, hostname, cluster, package.NAME.hostname, package.NAME.ip, fact.KEY or a value's name"
        )
    };
    match body {
        "member" => return Ok(Ref::Member),
        "hostname" => return Ok(Ref::Hostname),
        "cluster" => return Ok(Ref::Cluster),
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
        Ok(Ref::Value(body.to_string()))
    } else {
        Err(bad())
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
}
