//! Where in a configuration file (`agent.toml`, `policyd.toml`) a problem lies, as an
//! [`Origin`] (`file:line:col`), so a configuration error reads like a policy
//! diagnostic: `file:line:col: field: message`.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::diag::{Origin, SourceText};

/// The origin of byte `offset` of `text` (the text of `file`).
pub fn at_offset(file: &Path, text: &str, offset: usize) -> Origin {
    SourceText::new(file, text.to_string()).origin(offset)
}

/// Where the value of the dotted `field` (`limits.idle_timeout`) is written in `text`;
/// the start of the file when it is not written there (a required field left out).
pub fn at_field(file: &Path, text: &str, field: &str) -> Origin {
    let offset = DeTable::parse(text)
        .ok()
        .and_then(|doc| {
            let mut table = doc.get_ref();
            let mut parts = field.split('.').peekable();
            while let Some(part) = parts.next() {
                let value = table.get(part)?;
                if parts.peek().is_none() {
                    return Some(value.span().start);
                }
                match value.get_ref() {
                    DeValue::Table(t) => table = t,
                    _ => return Some(value.span().start),
                }
            }
            None
        })
        .unwrap_or(0);
    at_offset(file, text, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_at_their_values() {
        let text = "member = \"a\"\n\n[limits]\nidle_timeout = \"5x\"\n";
        let p = Path::new("p.toml");
        assert_eq!(at_field(p, text, "member").to_string(), "p.toml:1:10");
        assert_eq!(
            at_field(p, text, "limits.idle_timeout").to_string(),
            "p.toml:4:16"
        );
        assert_eq!(at_field(p, text, "limits.absent").to_string(), "p.toml:1:1");
        assert_eq!(at_field(p, "= broken", "member").to_string(), "p.toml:1:1");
        assert_eq!(at_offset(p, text, 14).to_string(), "p.toml:3:1");
    }
}
