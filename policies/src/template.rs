//! Templates: text with `${...}` references, expanded per member.
//!
//! `$${` is a literal `${`. References are checked when the tree is loaded (an
//! unknown package or value is a diagnostic); only facts can be missing at run time.

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

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    parts: Vec<Part>,
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
        }
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
        Ok(Self { parts })
    }

    /// Every reference with its byte offset in the template text.
    pub fn refs(&self) -> impl Iterator<Item = (&Ref, usize)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref { r, offset } => Some((r, *offset)),
            Part::Text(_) => None,
        })
    }

    /// Expands the template, asking `lookup` for each reference.
    pub fn render<E>(
        &self,
        lookup: &mut impl FnMut(&Ref) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Ref { r, .. } => out.push_str(&lookup(r)?),
            }
        }
        Ok(out)
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

    #[test]
    fn lists_references() {
        let t = Template::parse("${member}-${x}").unwrap();
        let refs: Vec<_> = t.refs().map(|(r, o)| (r.clone(), o)).collect();
        assert_eq!(refs, vec![(Ref::Member, 0), (Ref::Value("x".into()), 10)]);
    }
}
