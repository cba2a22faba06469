//! UTC wall-clock time at one-second resolution: RFC 3339 for the manifest and
//! `YYYY-MM-DD_HHMMSS` for backup directory names.
//!
//! Hand-written (Howard Hinnant's days-from-civil algorithm) because these two
//! formats are all we need, and a date library (`jiff`, `chrono`) would be the
//! largest dependency of a crate that other programs read manifests with. chrono
//! is the reference in a property test (dev-dependency only): civil dates from
//! year -9999 to 9999, and which dates exist.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, always UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTime(i64);

impl UtcTime {
    /// The current time.
    pub fn now() -> UtcTime {
        UtcTime::from_system_time(SystemTime::now())
    }

    /// Converts, truncating to whole seconds.
    pub fn from_system_time(time: SystemTime) -> UtcTime {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => UtcTime(i64::try_from(after.as_secs()).unwrap_or(i64::MAX)),
            Err(before) => UtcTime(-i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX)),
        }
    }

    /// From seconds since the epoch.
    pub fn from_unix_seconds(seconds: i64) -> UtcTime {
        UtcTime(seconds)
    }

    /// Seconds since the epoch.
    pub fn unix_seconds(self) -> i64 {
        self.0
    }

    /// This time plus a duration (saturating).
    pub fn plus(self, duration: Duration) -> UtcTime {
        UtcTime(
            self.0
                .saturating_add(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)),
        )
    }

    /// Year, month, day, hour, minute, second.
    pub fn civil(self) -> (i64, u32, u32, u32, u32, u32) {
        let days = self.0.div_euclid(86_400);
        let second_of_day = self.0.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let hour = (second_of_day / 3600) as u32;
        let minute = (second_of_day % 3600 / 60) as u32;
        let second = (second_of_day % 60) as u32;
        (year, month, day, hour, minute, second)
    }

    /// From a civil date and time; `None` when a field is out of range.
    pub fn from_civil(
        year: i64,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    ) -> Option<UtcTime> {
        let valid = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60;
        valid.then(|| {
            let days = days_from_civil(year, month, day);
            UtcTime(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
        })
    }

    /// `2026-11-29T02:00:07Z`.
    pub fn rfc3339(self) -> String {
        let (year, month, day, hour, minute, second) = self.civil();
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
    }

    /// Parses what [`rfc3339`](Self::rfc3339) writes.
    pub fn parse_rfc3339(text: &str) -> Option<UtcTime> {
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 20
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes[10] == b'T'
            && bytes[13] == b':'
            && bytes[16] == b':'
            && bytes[19] == b'Z';
        if !shape_ok {
            return None;
        }
        UtcTime::from_civil(
            number(&text[0..4])?.into(),
            number(&text[5..7])?,
            number(&text[8..10])?,
            number(&text[11..13])?,
            number(&text[14..16])?,
            number(&text[17..19])?,
        )
    }

    /// `2026-11-29_020000`, the name of a backup directory.
    pub fn stamp(self) -> String {
        let (year, month, day, hour, minute, second) = self.civil();
        format!("{year:04}-{month:02}-{day:02}_{hour:02}{minute:02}{second:02}")
    }

    /// Parses a directory name written by [`stamp`](Self::stamp), optionally with a
    /// `-N` suffix; returns the time and the suffix (1 without one).
    pub fn parse_stamp(name: &str) -> Option<(UtcTime, u32)> {
        let (stamp, suffix) = match (name.get(..17), name.get(17..)) {
            (Some(stamp), Some("")) => (stamp, 1),
            (Some(stamp), Some(rest)) => {
                let digits = rest.strip_prefix('-')?;
                if digits.starts_with('0') {
                    return None;
                }
                (stamp, number(digits)?)
            }
            _ => return None,
        };
        let bytes = stamp.as_bytes();
        let shape_ok =
            bytes.len() == 17 && bytes[4] == b'-' && bytes[7] == b'-' && bytes[10] == b'_';
        if !shape_ok {
            return None;
        }
        let time = UtcTime::from_civil(
            number(&stamp[0..4])?.into(),
            number(&stamp[5..7])?,
            number(&stamp[8..10])?,
            number(&stamp[11..13])?,
            number(&stamp[13..15])?,
            number(&stamp[15..17])?,
        )?;
        Some((time, suffix))
    }
}

/// Digits only (no sign, no spaces), as `u32`.
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
