//! Splits a TOML document into parts that parse alone, at top-level array-of-tables
//! headers such as `[[file]]`.
//!
//! The `toml` parser tokenises a whole document before building it, about 15 bytes
//! of memory per byte of input; a generated policy of 10,000 promises in one file
//! would hold 20 MB at once. Each part starts at an undotted `[[name]]` header and
//! runs to the next one, so dotted headers (`[command.env]`) stay with the table they
//! extend and no part changes the meaning of another. The scanner knows strings
//! (basic, literal, multi-line), comments and brackets of multi-line arrays, so a
//! header-like line inside a value is never a split point. If a part still fails to
//! parse, the loader parses the whole document instead, so diagnostics are exact.
//!
//! Public for `tenet-keys`, which parses a signed manifest of 10,000 `[[file]]`
//! entries the same way (`Manifest::parse`).

/// Below this size a document is parsed whole: splitting saves nothing.
const SPLIT_MIN_BYTES: usize = 64 * 1024;

/// Whether a document of `len` bytes is parsed in parts. Unit tests split every
/// document, so the split path is the one they exercise.
pub(crate) fn worth_splitting(len: usize) -> bool {
    cfg!(test) || len >= SPLIT_MIN_BYTES
}

/// Parts of `text` as `(byte offset, part)`; one part when there is nothing to split.
pub fn split(text: &str) -> Vec<(usize, &str)> {
    let bytes = text.as_bytes();
    let mut starts = vec![0];
    let mut depth: usize = 0;
    let mut i = 0;
    let mut line_start = true;
    while i < bytes.len() {
        let b = bytes[i];
        if line_start && depth == 0 {
            // Skip indentation, then look for a header.
            let mut j = i;
            while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'[' {
                let end = text[j..].find('\n').map_or(bytes.len(), |e| j + e);
                let header = &text[j..end];
                if let Some(name) = header.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
                    let name = name.trim();
                    let plain = !name.is_empty()
                        && name
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
                    if plain && i > 0 {
                        starts.push(i);
                    }
                }
                // A header line holds no value: go on after it.
                i = end;
                continue;
            }
        }
        line_start = false;
        match b {
            b'\n' => line_start = true,
            b'#' => {
                i = text[i..].find('\n').map_or(bytes.len(), |e| i + e);
                continue;
            }
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b'"' | b'\'' => {
                i = skip_string(bytes, i);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    starts.push(bytes.len());
    starts
        .windows(2)
        .map(|w| (w[0], &text[w[0]..w[1]]))
        .collect()
}

/// The index just past the string that starts at `i` (which holds a quote).
fn skip_string(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let triple = b.get(i..i + 3).is_some_and(|t| t == [q, q, q]);
    let mut j = if triple { i + 3 } else { i + 1 };
    while j < b.len() {
        match b[j] {
            b'\\' if q == b'"' => j += 2,
            b'\n' if !triple => return j,
            c if c == q => {
                if !triple {
                    return j + 1;
                }
                if b.get(j..j + 3).is_some_and(|t| t == [q, q, q]) {
                    // Up to two more quotes belong to the content.
                    let mut k = j + 3;
                    while k < b.len() && k < j + 5 && b[k] == q {
                        k += 1;
                    }
                    return k;
                }
                j += 1;
            }
            _ => j += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> Vec<&str> {
        split(text).into_iter().map(|(_, p)| p).collect()
    }

    #[test]
    fn splits_at_top_level_array_headers_only() {
        let doc = "[cluster]\nname = \"c\"\n\n[[file]]\npath = \"/a\"\n[[file]]\npath = \"/b\"\n[[command]]\nargv = [\"x\"]\n[command.env]\nA = \"1\"\n[[command.steps]]\nx = 1\n";
        assert_eq!(
            parts(doc),
            [
                "[cluster]\nname = \"c\"\n\n",
                "[[file]]\npath = \"/a\"\n",
                "[[file]]\npath = \"/b\"\n",
                "[[command]]\nargv = [\"x\"]\n[command.env]\nA = \"1\"\n[[command.steps]]\nx = 1\n",
            ]
        );
    }

    #[test]
    fn header_lines_inside_values_are_not_split_points() {
        let doc = concat!(
            "[[file]]\ncontent = \"\"\"\n[[file]]\nnot a header\n\"\"\"\n",
            "[[file]]\ncontent = '''\n[[file]]\n'''\n",
            "[[file]]\nx = [\n[[1], [2]],\n]\n",
            "[[file]]\ns = \"[[file]] # not a comment\"\n# [[file]] in a comment\n",
            "[[file]]\nq = \"\"\"ends with quotes\"\"\"\"\"\n",
            "[[file]]\n",
        );
        let p = parts(doc);
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(p.iter().all(|s| s.starts_with("[[file]]")));
        assert_eq!(p.concat(), doc);
    }

    #[test]
    fn offsets_point_into_the_document() {
        let doc = "a = 1\n[[file]]\nx = 1\n";
        let s = split(doc);
        assert_eq!(s, vec![(0, "a = 1\n"), (6, "[[file]]\nx = 1\n")]);
    }
}
