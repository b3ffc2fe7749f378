//! UTC timestamps in the one textual form polstore reads and writes: `YYYY-MM-DDTHH:MM:SSZ`.
//!
//! The format is fixed (no offsets, no fractions) so that a manifest has exactly one
//! encoding and a shell script can produce it with `date -u +%Y-%m-%dT%H:%M:%SZ`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, UTC. Always within years 1970..=9999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(i64);

const SECONDS_PER_DAY: i64 = 86_400;
/// 9999-12-31T23:59:59Z: the largest time the four-digit year field can spell.
const TIMESTAMP_SECS_MAX: i64 = 253_402_300_799;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid time {text:?}: expected YYYY-MM-DDTHH:MM:SSZ")]
pub struct TimestampError {
    text: String,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        Timestamp::from_unix_secs(i64::try_from(secs).unwrap_or(TIMESTAMP_SECS_MAX))
    }

    /// Clamps to the representable range, so arithmetic never produces an unprintable time.
    pub fn from_unix_secs(secs: i64) -> Timestamp {
        Timestamp(secs.clamp(0, TIMESTAMP_SECS_MAX))
    }

    pub fn unix_secs(self) -> i64 {
        self.0
    }

    pub fn plus_secs(self, secs: u64) -> Timestamp {
        let secs = i64::try_from(secs).unwrap_or(TIMESTAMP_SECS_MAX);
        Timestamp::from_unix_secs(self.0.saturating_add(secs))
    }

    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        let error = || TimestampError {
            text: text.chars().take(64).collect(),
        };
        let bytes = text.as_bytes();
        if bytes.len() != 20 {
            return Err(error());
        }
        let separators_ok = bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes[10] == b'T'
            && bytes[13] == b':'
            && bytes[16] == b':'
            && bytes[19] == b'Z';
        if !separators_ok {
            return Err(error());
        }
        let number = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let digits = &bytes[range];
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(error());
            }
            Ok(digits
                .iter()
                .fold(0, |acc, digit| acc * 10 + i64::from(digit - b'0')))
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        let month_ok = (1..=12).contains(&month);
        if year < 1970 || !month_ok || day < 1 || day > days_in_month(year, month) {
            return Err(error());
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(error());
        }
        let days = days_from_civil(year, month, day);
        Ok(Timestamp(
            days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second,
        ))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(SECONDS_PER_DAY);
        let secs = self.0.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_round_trip() {
        for (text, secs) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:34:56Z", 951_827_696),
            ("2026-11-24T23:39:00Z", 1_795_563_540),
            ("9999-12-31T23:59:59Z", TIMESTAMP_SECS_MAX),
        ] {
            let parsed = Timestamp::parse(text).unwrap();
            assert_eq!(parsed.unix_secs(), secs, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn every_day_of_a_leap_cycle_round_trips() {
        let start = Timestamp::parse("2096-01-01T00:00:00Z")
            .unwrap()
            .unix_secs();
        for day in 0..(4 * 366) {
            let stamp = Timestamp::from_unix_secs(start + day * SECONDS_PER_DAY + 3_723);
            assert_eq!(Timestamp::parse(&stamp.to_string()).unwrap(), stamp);
        }
    }

    #[test]
    fn malformed_times_are_refused() {
        for text in [
            "",
            "2026-11-24 23:39:00Z",
            "2026-11-24T23:39:00+01:00",
            "2026-11-24T23:39:00.5Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "+026-01-01T00:00:00Z",
            "2026-01-01T00:00:0\u{663}",
        ] {
            assert!(Timestamp::parse(text).is_err(), "{text:?} was accepted");
        }
    }
}
