//! Conditions: `when = "holds(dce) && !member(gamma)"`.
//!
//! A small boolean language over predicates about this member. Parsing reports the
//! byte offset of a problem inside the string, so diagnostics point at it.

use std::collections::BTreeSet;
use std::fmt;

/// A predicate about this member.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Atom {
    /// This member is the named one.
    Member(String),
    /// This member has the class.
    Class(String),
    /// This member holds the package now.
    Holds(String),
    /// This member is the package's first member.
    Owner(String),
    /// This member is one of the package's other members.
    Standby(String),
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Member(n) => write!(f, "member({n})"),
            Self::Class(n) => write!(f, "class({n})"),
            Self::Holds(n) => write!(f, "holds({n})"),
            Self::Owner(n) => write!(f, "owner({n})"),
            Self::Standby(n) => write!(f, "standby({n})"),
        }
    }
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// A constant.
    Const(bool),
    /// A predicate.
    Atom(Atom),
    /// Negation.
    Not(Box<Condition>),
    /// Both hold.
    And(Box<Condition>, Box<Condition>),
    /// Either holds.
    Or(Box<Condition>, Box<Condition>),
}

/// A syntax error in a condition, at a byte offset of the condition string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the condition string.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl Condition {
    /// Parses a condition.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let mut p = Parser { s, pos: 0 };
        let c = p.or()?;
        p.skip_ws();
        if p.pos < s.len() {
            return Err(p.error("expected `&&`, `||` or the end of the condition"));
        }
        Ok(c)
    }

    /// Evaluates the condition, asking `atom` about each predicate.
    pub fn eval(&self, atom: &impl Fn(&Atom) -> bool) -> bool {
        match self {
            Self::Const(b) => *b,
            Self::Atom(a) => atom(a),
            Self::Not(c) => !c.eval(atom),
            Self::And(a, b) => a.eval(atom) && b.eval(atom),
            Self::Or(a, b) => a.eval(atom) || b.eval(atom),
        }
    }

    /// Every predicate the condition mentions.
    pub fn atoms(&self) -> BTreeSet<&Atom> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut BTreeSet<&'a Atom>) {
        match self {
            Self::Const(_) => {}
            Self::Atom(a) => {
                out.insert(a);
            }
            Self::Not(c) => c.collect(out),
            Self::And(a, b) | Self::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
        }
    }
}

/// Whether two conditions (`None` is always true) can hold on the same member at once.
///
/// Tries every assignment of the predicates they mention, where at most one
/// `member(...)` is true. With more than 16 distinct predicates it answers `true`
/// (assume they can), so a conflict check stays cheap and errs towards reporting.
pub fn can_overlap(a: Option<&Condition>, b: Option<&Condition>) -> bool {
    let mut atoms: BTreeSet<&Atom> = BTreeSet::new();
    for c in [a, b].into_iter().flatten() {
        atoms.extend(c.atoms());
    }
    let atoms: Vec<&Atom> = atoms.into_iter().collect();
    if atoms.len() > 16 {
        return true;
    }
    let holds = |c: Option<&Condition>, set: u32| {
        c.is_none_or(|c| {
            c.eval(&|x| {
                atoms
                    .iter()
                    .position(|y| *y == x)
                    .is_some_and(|i| set & (1 << i) != 0)
            })
        })
    };
    (0..1u32 << atoms.len()).any(|set| {
        let members = atoms
            .iter()
            .enumerate()
            .filter(|(i, a)| matches!(a, Atom::Member(_)) && set & (1 << i) != 0);
        members.count() <= 1 && holds(a, set) && holds(b, set)
    })
}

struct Parser<'s> {
    s: &'s str,
    pos: usize,
}

impl<'s> Parser<'s> {
    fn error(&self, message: &str) -> ParseError {
        ParseError {
            offset: self.pos,
            message: message.to_string(),
        }
    }

    fn skip_ws(&mut self) {
        while self.rest().starts_with([' ', '\t', '\n', '\r']) {
            self.pos += 1;
        }
    }

    fn rest(&self) -> &'s str {
        &self.s[self.pos..]
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Condition, ParseError> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, ParseError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            let right = self.unary()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, ParseError> {
        if self.eat("!") {
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("expected `)`"));
            }
            return Ok(inner);
        }
        self.skip_ws();
        let start = self.pos;
        let word = self.ident();
        match word {
            "true" => return Ok(Condition::Const(true)),
            "false" => return Ok(Condition::Const(false)),
            "" => {
                return Err(self.error("expected a predicate such as `member(NAME)`, `!`, or `(`"));
            }
            _ => {}
        }
        let make: fn(String) -> Atom = match word {
            "member" => Atom::Member,
            "class" => Atom::Class,
            "holds" => Atom::Holds,
            "owner" => Atom::Owner,
            "standby" => Atom::Standby,
            _ => {
                self.pos = start;
                return Err(self.error(&format!(
                    "unknown predicate `{word}`; expected member, class, holds, owner, standby, true or false"
                )));
            }
        };
        if !self.eat("(") {
            return Err(self.error(&format!("expected `(` after `{word}`")));
        }
        self.skip_ws();
        let arg = self.ident();
        if arg.is_empty() {
            return Err(self.error(&format!("expected a name inside `{word}(...)`")));
        }
        let arg = arg.to_string();
        if !self.eat(")") {
            return Err(self.error("expected `)`"));
        }
        Ok(Condition::Atom(make(arg)))
    }

    fn ident(&mut self) -> &'s str {
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            .unwrap_or(self.rest().len());
        self.pos += len;
        &self.s[start..self.pos]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(cond: &str, true_atoms: &[&str]) -> bool {
        let c = Condition::parse(cond).unwrap();
        c.eval(&|a| true_atoms.contains(&a.to_string().as_str()))
    }

    #[test]
    fn evaluates_with_precedence() {
        assert!(eval("member(a)", &["member(a)"]));
        assert!(!eval("member(a)", &["member(b)"]));
        assert!(eval("holds(dce) && !member(gamma)", &["holds(dce)"]));
        assert!(!eval(
            "holds(dce) && !member(gamma)",
            &["holds(dce)", "member(gamma)"]
        ));
        // && binds tighter than ||.
        assert!(eval("class(x) || class(y) && false", &["class(x)"]));
        assert!(!eval("(class(x) || class(y)) && false", &["class(x)"]));
        assert!(eval("  true ", &[]));
        assert!(eval("standby(p) && !holds(p)", &["standby(p)"]));
    }

    fn error_at(cond: &str) -> (usize, String) {
        let e = Condition::parse(cond).unwrap_err();
        (e.offset, e.message)
    }

    #[test]
    fn errors_point_at_the_problem() {
        assert_eq!(error_at("membr(a)").0, 0);
        assert!(error_at("membr(a)").1.contains("unknown predicate `membr`"));
        assert_eq!(error_at("member(a) &&").0, 12);
        assert_eq!(error_at("member(a) & class(b)").0, 10);
        assert_eq!(error_at("(member(a)").0, 10);
        assert_eq!(error_at("member()").0, 7);
        assert_eq!(error_at("").0, 0);
    }

    #[test]
    fn overlap_knows_a_member_is_one_member() {
        let c = |s: &str| Condition::parse(s).unwrap();
        assert!(!can_overlap(Some(&c("member(a)")), Some(&c("member(b)"))));
        assert!(can_overlap(Some(&c("member(a)")), Some(&c("class(x)"))));
        assert!(can_overlap(None, Some(&c("member(b)"))));
        assert!(!can_overlap(Some(&c("holds(p)")), Some(&c("!holds(p)"))));
        assert!(can_overlap(None, None));
        assert!(!can_overlap(Some(&c("false")), None));
    }
}
