//! Lower-case hex encoding and decoding for key ids, hashes, public keys and signatures.
//!
//! Documents carry lower-case hex only, so one value has one spelling; decoding refuses
//! upper case rather than normalising it.

use std::fmt;

/// Why a hex string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HexError {
    /// The string has the wrong number of characters.
    Length {
        /// Characters expected.
        expected: usize,
        /// Characters found.
        found: usize,
    },
    /// A character is not one of `0-9a-f`.
    Char {
        /// Byte offset of the first bad character.
        at: usize,
    },
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { expected, found } => {
                write!(f, "expected {expected} hex characters, found {found}")
            }
            Self::Char { at } => write!(
                f,
                "character {} is not lower-case hex (0-9, a-f)",
                at.saturating_add(1)
            ),
        }
    }
}

impl std::error::Error for HexError {}

/// `bytes` as lower-case hex.
pub(crate) fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Exactly `N` bytes from `2 * N` lower-case hex characters.
pub(crate) fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let raw = s.as_bytes();
    if raw.len() != N * 2 {
        return Err(HexError::Length {
            expected: N * 2,
            found: s.chars().count(),
        });
    }
    let mut out = [0u8; N];
    for (i, slot) in out.iter_mut().enumerate() {
        let hi = nibble(raw[2 * i]).ok_or(HexError::Char { at: 2 * i })?;
        let lo = nibble(raw[2 * i + 1]).ok_or(HexError::Char { at: 2 * i + 1 })?;
        *slot = (hi << 4) | lo;
    }
    Ok(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = [0x00, 0x01, 0x7f, 0x80, 0xab, 0xff];
        let s = encode(&bytes);
        assert_eq!(s, "00017f80abff");
        assert_eq!(decode_array::<6>(&s), Ok(bytes));
    }

    #[test]
    fn refuses_upper_case_and_other_characters() {
        assert_eq!(decode_array::<1>("AB"), Err(HexError::Char { at: 0 }));
        assert_eq!(decode_array::<1>("0g"), Err(HexError::Char { at: 1 }));
        assert_eq!(
            decode_array::<2>("abc"),
            Err(HexError::Length {
                expected: 4,
                found: 3
            })
        );
        // A multi-byte character never panics on slicing.
        assert!(decode_array::<1>("é").is_err());
    }
}
