//! Located diagnostics: every problem in a policy tree, reported at once.
//!
//! A diagnostic names the file (relative to the tree), the line and column, the
//! field path and a message, and prints as `file:line:col: field: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a problem is. Errors make the tree invalid; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The tree is invalid and will not be applied or signed.
    Error,
    /// Worth reading; the tree is still valid.
    Warning,
}

/// Where in the policy tree something was written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// Path relative to the policy tree's root.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0 means the whole file or tree (it cannot be read at all).
        if self.line == 0 {
            return write!(f, "{}", self.file.display());
        }
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// One problem found in a policy tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is.
    pub origin: Origin,
    /// The field path, such as `file[3].mode`; empty for whole-file problems.
    pub field: String,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found while loading a tree, sorted by location.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Records an error.
    pub(crate) fn error(
        &mut self,
        origin: Origin,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(origin, field.into(), message.into(), Severity::Error);
    }

    /// Records a warning.
    pub(crate) fn warning(
        &mut self,
        origin: Origin,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(origin, field.into(), message.into(), Severity::Warning);
    }

    fn push(&mut self, origin: Origin, field: String, message: String, severity: Severity) {
        self.items.push(Diagnostic {
            origin,
            field,
            message,
            severity,
        });
    }

    /// Drops every diagnostic after the first `len`.
    /// Moves `other`'s diagnostics here, adding ` (NOTE)` to each message when
    /// `note` is not empty.
    pub(crate) fn append_noted(&mut self, other: Self, note: &str) {
        self.items.extend(other.items.into_iter().map(|mut d| {
            if !note.is_empty() {
                d.message = format!("{} ({note})", d.message);
            }
            d
        }));
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.items.truncate(len);
    }

    /// Drops each diagnostic after the first `start` that repeats an earlier one
    /// of those at the same place with the same message (each copy of a repeated
    /// table says the same).
    pub(crate) fn dedup_from(&mut self, start: usize) {
        let mut seen: Vec<(Origin, String)> = Vec::new();
        let mut i = start;
        while i < self.items.len() {
            let d = &self.items[i];
            let key = (d.origin.clone(), d.message.clone());
            if seen.contains(&key) {
                self.items.remove(i);
            } else {
                seen.push(key);
                i += 1;
            }
        }
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// All diagnostics, sorted by file, line and column.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// How many diagnostics there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub(crate) fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            (&a.origin, a.severity, &a.field, &a.message)
                .cmp(&(&b.origin, b.severity, &b.field, &b.message))
        });
        self.items.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A file's text with a line index, to turn byte offsets into `line:col`.
#[derive(Debug)]
pub(crate) struct SourceText {
    pub(crate) rel: PathBuf,
    pub(crate) text: String,
    line_starts: Vec<usize>,
}

impl SourceText {
    pub(crate) fn new(rel: &Path, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            rel: rel.to_path_buf(),
            text,
            line_starts,
        }
    }

    /// The origin of a byte offset; offsets past the end point at the last line.
    pub(crate) fn origin(&self, offset: usize) -> Origin {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Origin {
            file: self.rel.clone(),
            line: to_u32(line),
            col: to_u32(col),
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_counts_lines_and_characters() {
        let s = SourceText::new(Path::new("a.toml"), "x = 1\nyé = 2\n".to_string());
        assert_eq!(s.origin(0).to_string(), "a.toml:1:1");
        assert_eq!(s.origin(6).to_string(), "a.toml:2:1");
        // "yé = " : the '=' after a two-byte character is column 4.
        assert_eq!(s.origin(10).to_string(), "a.toml:2:4");
        assert_eq!(s.origin(999).line, 3);
    }
}
