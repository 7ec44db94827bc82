//! Points in time as unix seconds, written as RFC 3339 UTC (`2027-11-21T00:00:00Z`).
//!
//! Signed documents carry their times as TOML datetimes; this module converts them by
//! hand (days from the civil calendar) so the crate needs no time library. Nothing here
//! reads the clock: callers pass `now` explicitly, which keeps verification pure.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tenet_policies::duration::DurationError;
use toml::value::{Date, Datetime, Offset};

/// Seconds of one day.
const DAY: u64 = 86_400;

/// A point in time, in whole seconds since 1970-01-01T00:00:00Z, no later than
/// 9999-12-31T23:59:59Z (so it always has a four-digit RFC 3339 form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

/// Why a time or a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// Not of the form `YYYY-MM-DDTHH:MM:SSZ`.
    #[error("{text:?} is not an RFC 3339 UTC time such as 2027-11-21T00:00:00Z")]
    Format {
        /// The text as given.
        text: String,
    },
    /// A field is out of range (month 13, February 30, hour 24...).
    #[error("{text:?} is not a valid date and time")]
    Range {
        /// The text as given.
        text: String,
    },
    /// A datetime with an offset other than UTC, or without date, time or offset.
    #[error("{text} must be a UTC date and time (ending in Z)")]
    NotUtc {
        /// The datetime as written.
        text: String,
    },
    /// Before 1970 or after 9999.
    #[error("{text} is outside 1970..9999")]
    OutOfRange {
        /// The datetime as written.
        text: String,
    },
    /// Not a duration in tenet's grammar (`500ms`, `90s`, `1h30m`, `14d`).
    #[error(transparent)]
    Duration(#[from] DurationError),
}

impl Time {
    /// The latest representable time, 9999-12-31T23:59:59Z.
    pub const MAX: Time = Time(253_402_300_799);

    /// The time `secs` seconds after the epoch; `None` beyond [`Time::MAX`].
    pub fn from_unix(secs: u64) -> Option<Time> {
        (secs <= Self::MAX.0).then_some(Time(secs))
    }

    /// The system time, truncated to seconds (a time before 1970 is the epoch).
    pub fn from_system(t: SystemTime) -> Time {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Time(secs.min(Self::MAX.0))
    }

    /// Seconds since the epoch.
    pub fn unix(self) -> u64 {
        self.0
    }

    /// This time plus `d` (whole seconds); `None` beyond [`Time::MAX`].
    pub fn checked_add(self, d: Duration) -> Option<Time> {
        self.0.checked_add(d.as_secs()).and_then(Time::from_unix)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SSZ` (fractions of a second are accepted and dropped).
    pub fn parse_rfc3339(text: &str) -> Result<Time, TimeError> {
        let format = || TimeError::Format {
            text: text.to_string(),
        };
        let b = text.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
            return Err(format());
        }
        if b[16] != b':' {
            return Err(format());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, TimeError> {
            let s = &b[r];
            if !s.iter().all(u8::is_ascii_digit) {
                return Err(format());
            }
            Ok(s.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut rest = &b[19..];
        if let Some(frac) = rest.strip_prefix(b".") {
            let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(format());
            }
            rest = &frac[digits..];
        }
        if rest != b"Z" && rest != b"z" && rest != b"+00:00" {
            return Err(format());
        }
        civil_to_time(year, month, day, hour, minute, second).ok_or_else(|| TimeError::Range {
            text: text.to_string(),
        })
    }

    /// The TOML datetime that [`Time`]'s serde form uses.
    pub fn to_datetime(self) -> Datetime {
        let (year, month, day) = civil_from_days(self.0 / DAY);
        let secs = self.0 % DAY;
        Datetime {
            date: Some(Date {
                // Time::MAX keeps the year at or below 9999.
                year: u16::try_from(year).unwrap_or(9999),
                month,
                day,
            }),
            time: Some(toml::value::Time {
                hour: (secs / 3600) as u8,
                minute: (secs / 60 % 60) as u8,
                second: Some((secs % 60) as u8),
                nanosecond: None,
            }),
            offset: Some(Offset::Z),
        }
    }

    /// Converts a TOML datetime; it must have a date, a time and a UTC offset.
    pub fn from_datetime(dt: &Datetime) -> Result<Time, TimeError> {
        let text = || dt.to_string();
        let (Some(date), Some(time), Some(offset)) = (dt.date, dt.time, dt.offset) else {
            return Err(TimeError::NotUtc { text: text() });
        };
        if !matches!(offset, Offset::Z | Offset::Custom { minutes: 0 }) {
            return Err(TimeError::NotUtc { text: text() });
        }
        civil_to_time(
            u32::from(date.year),
            u32::from(date.month),
            u32::from(date.day),
            u32::from(time.hour),
            u32::from(time.minute),
            u32::from(time.second.unwrap_or(0)),
        )
        .ok_or_else(|| TimeError::OutOfRange { text: text() })
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.0 / DAY);
        let s = self.0 % DAY;
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_datetime().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let dt = Datetime::deserialize(d)?;
        Time::from_datetime(&dt).map_err(serde::de::Error::custom)
    }
}

/// Parses a duration in tenet's one grammar ([`tenet_policies::duration`]: `500ms`,
/// `90s`, `1h30m`, `14d`), no longer than the latest [`Time`].
pub fn parse_duration(text: &str) -> Result<Duration, TimeError> {
    let d = tenet_policies::duration::parse_duration(text).map_err(TimeError::Duration)?;
    if d.as_secs() > Time::MAX.0 {
        return Err(TimeError::Duration(DurationError::TooLong {
            text: text.to_string(),
        }));
    }
    Ok(d)
}

/// Seconds since the epoch for a civil UTC date and time, if valid and in 1970..=9999.
fn civil_to_time(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<Time> {
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(Time(
        days * DAY + u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second),
    ))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm, restricted to years >= 1970).
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let y = u64::from(if month <= 2 { year - 1 } else { year });
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = u64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + u64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `days` days after 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u8, u8) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(text: &str, unix: u64) {
        let t = Time::parse_rfc3339(text).unwrap();
        assert_eq!(t.unix(), unix, "{text}");
        assert_eq!(t.to_string(), text, "{text}");
    }

    #[test]
    fn known_instants() {
        check("1970-01-01T00:00:00Z", 0);
        check("2000-02-29T12:34:56Z", 951_827_696);
        check("2026-11-21T22:00:00Z", 1_795_298_400);
        check("2027-11-21T00:00:00Z", 1_826_755_200);
        check("9999-12-31T23:59:59Z", Time::MAX.unix());
    }

    #[test]
    fn refuses_bad_text() {
        for bad in [
            "",
            "2027-11-21",
            "2027-11-21T00:00:00",
            "2027-11-21T00:00:00+01:00",
            "2027-11-21 00:00:00Z",
            "2027-13-01T00:00:00Z",
            "2027-02-29T00:00:00Z",
            "2027-11-21T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "2027-11-21T00:00:00.Z",
            "+027-11-21T00:00:00Z",
        ] {
            assert!(Time::parse_rfc3339(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Time::parse_rfc3339("2027-11-21T00:00:00.999Z").unwrap(),
            Time::parse_rfc3339("2027-11-21T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(1_209_600)));
        for bad in [
            "",
            "d",
            "14",
            "1.5h",
            "-1d",
            "14w",
            "99999999999999999999d",
            "1 d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toml_datetimes_must_be_utc() {
        let dt: Datetime = "2027-11-21T00:00:00+02:00".parse().unwrap();
        assert!(matches!(
            Time::from_datetime(&dt),
            Err(TimeError::NotUtc { .. })
        ));
        let dt: Datetime = "2027-11-21".parse().unwrap();
        assert!(Time::from_datetime(&dt).is_err());
        let dt: Datetime = "2027-11-21T00:00:00Z".parse().unwrap();
        let t = Time::from_datetime(&dt).unwrap();
        assert_eq!(t.to_datetime(), dt);
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(secs in 0..=Time::MAX.unix()) {
            let t = Time::from_unix(secs).unwrap();
            prop_assert_eq!(Time::parse_rfc3339(&t.to_string()).unwrap(), t);
            prop_assert_eq!(Time::from_datetime(&t.to_datetime()).unwrap(), t);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Time::parse_rfc3339(&s);
        }
    }
}
