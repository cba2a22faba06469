//! `BACKUP_SCHEDULE`: cron expressions in UTC, 5 fields (`min hour dom month dow`)
//! or 6 with seconds first.
//!
//! Fields take `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`,
//! and names (`JAN`–`DEC`, `SUN`–`SAT`; `7` is Sunday too). As in Vixie cron, when
//! both day-of-month and day-of-week are restricted, a day matching either counts.
//! Hand-written because the cron crates pull in a date library and macro stacks for
//! what is a page of code. It is checked against one (`cron-parser`, a
//! dev-dependency) by a property test over minutes, hours, days and months; that
//! test found `*/2` in a day field running every day, fixed since.

use manifest::UtcTime;

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    day_of_month_restricted: bool,
    day_of_week_restricted: bool,
}

/// Why an expression is not a schedule. Shows the offending field, which is not
/// secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression: {0}")]
pub struct ScheduleError(String);

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

/// How far ahead a tick is looked for: the Gregorian calendar repeats every 400
/// years, so a day that does not come within them never comes. Shorter windows
/// end real schedules: February 29 skips 2100 (2096, then 2104), and February 29 on
/// a Sunday (`0 0 29 2 */7`) comes in 2088 and next in 2128. The search stops at
/// the first matching day, so only a schedule that never matches walks the whole
/// window (about 146,000 days, a few milliseconds, once at start-up).
pub const SEARCH_YEARS: u32 = 400;

impl Schedule {
    /// Parses a 5- or 6-field expression.
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            count => {
                return Err(ScheduleError(format!(
                    "expected 5 or 6 fields, found {count}"
                )));
            }
        };
        let mut days_of_week = parse_field(rest[4], &DAY_OF_WEEK)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & !(1 << 7);
        }
        Ok(Schedule {
            seconds: parse_field(seconds, &SECOND)?,
            minutes: parse_field(rest[0], &MINUTE)?,
            hours: parse_field(rest[1], &HOUR)?,
            days_of_month: parse_field(rest[2], &DAY_OF_MONTH)?,
            months: parse_field(rest[3], &MONTH)?,
            days_of_week,
            day_of_month_restricted: !rest[2].starts_with('*'),
            day_of_week_restricted: !rest[4].starts_with('*'),
        })
    }

    /// The first matching second strictly after `after`, within the next
    /// [`SEARCH_YEARS`] (`None` for expressions such as `0 0 31 2 *` that never
    /// match).
    pub fn next_after(&self, after: UtcTime) -> Option<UtcTime> {
        let start = after.unix_seconds() + 1;
        let first_day = start.div_euclid(86_400);
        for day in first_day..first_day + i64::from(SEARCH_YEARS) * 366 {
            let (_, month, day_of_month, ..) = UtcTime::from_unix_seconds(day * 86_400).civil();
            // 1970-01-01 was a Thursday (4).
            let day_of_week = (day + 4).rem_euclid(7) as u32;
            if !self.day_matches(month, day_of_month, day_of_week) {
                continue;
            }
            let earliest = if day == first_day {
                start.rem_euclid(86_400)
            } else {
                0
            };
            if let Some(second_of_day) = self.first_time_of_day_from(earliest) {
                return Some(UtcTime::from_unix_seconds(day * 86_400 + second_of_day));
            }
        }
        None
    }

    fn day_matches(&self, month: u32, day_of_month: u32, day_of_week: u32) -> bool {
        if !bit(self.months, month) {
            return false;
        }
        let by_month_day = bit(self.days_of_month, day_of_month);
        let by_week_day = bit(self.days_of_week, day_of_week);
        // Vixie cron's rule: either day field counts only when both are restricted
        // (neither starts with `*`); otherwise both sets must match. A `*/2` is
        // "unrestricted" by that test but still only holds every other day, so
        // its set is checked, not skipped.
        if self.day_of_month_restricted && self.day_of_week_restricted {
            by_month_day || by_week_day
        } else {
            by_month_day && by_week_day
        }
    }

    fn first_time_of_day_from(&self, earliest: i64) -> Option<i64> {
        for hour in 0..24 {
            if !bit(self.hours, hour) || i64::from(hour + 1) * 3600 <= earliest {
                continue;
            }
            for minute in 0..60 {
                let minute_start = i64::from(hour) * 3600 + i64::from(minute) * 60;
                if !bit(self.minutes, minute) || minute_start + 60 <= earliest {
                    continue;
                }
                for second in 0..60 {
                    let at = minute_start + i64::from(second);
                    if bit(self.seconds, second) && at >= earliest {
                        return Some(at);
                    }
                }
            }
        }
        None
    }
}

fn bit(set: u64, value: u32) -> bool {
    set & (1 << value) != 0
}

fn parse_field(text: &str, field: &Field) -> Result<u64, ScheduleError> {
    // The field is named, not shown: configuration errors never echo a value.
    let invalid = || {
        ScheduleError(format!(
            "the {} field is not a value, list, range or step within {}-{}",
            field.name, field.min, field.max
        ))
    };
    let mut set = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (
                range,
                step.parse::<u32>()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(invalid)?,
            ),
            None => (item, 1),
        };
        let (low, high) = if range == "*" {
            (field.min, field.max)
        } else if let Some((low, high)) = range.split_once('-') {
            (
                value(low, field).ok_or_else(invalid)?,
                value(high, field).ok_or_else(invalid)?,
            )
        } else {
            let low = value(range, field).ok_or_else(invalid)?;
            // `a/n` means from a to the end, every n.
            (low, if item.contains('/') { field.max } else { low })
        };
        if low > high {
            return Err(invalid());
        }
        for value in (low..=high).step_by(step as usize) {
            set |= 1 << value;
        }
    }
    Ok(set)
}

fn value(text: &str, field: &Field) -> Option<u32> {
    let upper = text.to_ascii_uppercase();
    let offset = if field.name == "month" { 1 } else { 0 };
    let named = field
        .names
        .iter()
        .position(|name| *name == upper)
        .map(|index| index as u32 + offset);
    let number = named.or_else(|| text.parse().ok())?;
    (field.min..=field.max).contains(&number).then_some(number)
}
