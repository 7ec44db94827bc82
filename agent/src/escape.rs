//! Text from elsewhere made safe to print on a terminal.
//!
//! A member's answers to `push` (refusal reasons, busy messages, promise ids and
//! reasons, the agent's stderr tail) and the master's documents (quoted in parse
//! errors) are written by someone else. Printed raw, an escape sequence in them could
//! retitle the terminal, move the cursor, erase lines and draw a fake "ok". Every such
//! string goes through [`printable`] before a human printer writes it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character shown escaped: C0 and DEL as `\x1b`, C1 as
/// `\u{9b}`, and the bidirectional overrides and isolates (which reorder what is
/// shown) as `\u{202e}`. A backslash stays as it is. Newlines are escaped too: use
/// [`printable_lines`] for text whose lines are meant.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_char(&mut out, c);
    }
    Cow::Owned(out)
}

/// Like [`printable`], but keeps line breaks (`\n`) and tabs: for multi-line text such
/// as a parse error that quotes the offending line, or a diff.
pub fn printable_lines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && c != '\t' && unsafe_char(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\n' || c == '\t' {
            out.push(c);
        } else {
            push_char(&mut out, c);
        }
    }
    Cow::Owned(out)
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_char(out: &mut String, c: char) {
    if !unsafe_char(c) {
        out.push(c);
    } else if u32::from(c) < 0x80 {
        let _ = write!(out, "\\x{:02x}", u32::from(c));
    } else {
        let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_escaped() {
        assert!(matches!(printable("alpha ok, 3 changed"), Cow::Borrowed(_)));
        assert_eq!(
            printable("\x1b]2;pwned\x07\x1b[2K\x1b[1A\x1b[32malpha ok"),
            r"\x1b]2;pwned\x07\x1b[2K\x1b[1A\x1b[32malpha ok"
        );
        assert_eq!(printable("a\u{9b}31mb\u{7f}"), r"a\u{9b}31mb\x7f");
        assert_eq!(printable("x\r\ny\tz"), r"x\x0d\x0ay\x09z");
        assert_eq!(printable("\u{202e}cod.exe"), r"\u{202e}cod.exe");
        assert_eq!(printable("üñí ✓ \\x1b"), "üñí ✓ \\x1b");
        assert_eq!(
            printable_lines("line 1\n\x1b[2Kline 2\n"),
            "line 1\n\\x1b[2Kline 2\n"
        );
        assert!(matches!(printable_lines("a\nb\tc"), Cow::Borrowed(_)));
    }
}
