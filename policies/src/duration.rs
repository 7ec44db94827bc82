//! The one duration grammar of every tenet file and flag (policy, `agent.toml`,
//! `policyd.toml`, command-line options): whole numbers each followed by a unit, largest
//! unit first, each unit at most once: `500ms`, `90s`, `5m`, `1h30m`, `1d`, `2d12h`.
//! Units: `d` (86,400 s), `h`, `m`, `s`, `ms`. Spaces around the text are ignored;
//! none may stand inside it. Documented in `docs/policy.md` (Durations).

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was given.
    #[error("an empty text is not a duration (write e.g. 500ms, 90s, 1h30m or 1d)")]
    Empty,
    /// A unit with no number before it, or a number with no unit after it.
    #[error(
        "{text:?} is not a duration: each number needs a unit (ms, s, m, h or d), as in 90s or 1h30m"
    )]
    Malformed {
        /// The text as given.
        text: String,
    },
    /// A unit other than `ms`, `s`, `m`, `h`, `d`.
    #[error("{text:?} is not a duration: unknown unit {unit:?} (use ms, s, m, h or d)")]
    UnknownUnit {
        /// The text as given.
        text: String,
        /// The unit found.
        unit: String,
    },
    /// Units repeated, or a smaller one before a larger one (`30m1h`).
    #[error("{text:?} is not a duration: units go largest first, each once (as in 1h30m)")]
    Order {
        /// The text as given.
        text: String,
    },
    /// More than this program can count.
    #[error("{text:?} is too long a duration")]
    TooLong {
        /// The text as given.
        text: String,
    },
}

/// Parses a duration in the grammar of this module.
///
/// # Errors
/// A [`DurationError`] saying what is wrong with `text`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed {
        text: text.to_string(),
    };
    let mut total = Duration::ZERO;
    // Rank of the last unit read: each next one must be strictly smaller.
    let mut last_rank = u8::MAX;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(malformed)?;
        if digits == 0 {
            return Err(malformed());
        }
        let (num, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let (rank, millis_per): (u8, u64) = match unit {
            "d" => (4, 86_400_000),
            "h" => (3, 3_600_000),
            "m" => (2, 60_000),
            "s" => (1, 1_000),
            "ms" => (0, 1),
            _ => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_string(),
                    unit: unit.to_string(),
                });
            }
        };
        if rank >= last_rank {
            return Err(DurationError::Order {
                text: text.to_string(),
            });
        }
        last_rank = rank;
        let too_long = || DurationError::TooLong {
            text: text.to_string(),
        };
        let n: u64 = num.parse().map_err(|_| too_long())?;
        let part = n.checked_mul(millis_per).ok_or_else(too_long)?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(too_long)?;
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_forms_parse() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("90s", Duration::from_secs(90)),
            ("5m", Duration::from_secs(300)),
            ("6h", Duration::from_secs(21_600)),
            ("1d", Duration::from_secs(86_400)),
            ("14d", Duration::from_secs(14 * 86_400)),
            ("1h30m", Duration::from_secs(5_400)),
            ("2d12h", Duration::from_secs(216_000)),
            ("1m30s250ms", Duration::from_millis(90_250)),
            ("0s", Duration::ZERO),
            (" 30s ", Duration::from_secs(30)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_its_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        for bad in ["5", "m", "s5", "-5s", "h1"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Malformed { .. })),
                "{bad:?}: {:?}",
                parse_duration(bad)
            );
        }
        for bad in ["5 days", "5x", "3w", "10us", "1h 30m", "1.5h"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::UnknownUnit { .. })),
                "{bad:?}: {:?}",
                parse_duration(bad)
            );
        }
        for bad in ["30m1h", "1h1h", "5ms1s"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Order { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::TooLong { .. })
        ));
        assert!(matches!(
            parse_duration("18446744073709551615d"),
            Err(DurationError::TooLong { .. })
        ));
    }
}
