//! The checks every plain setting goes through, shared by both services so that
//! an operator's typo reads the same in either: empty means unset, white space
//! alone is an error, a number is parsed and range-checked, and no message ever
//! shows the value (a secret pasted into the wrong variable must not reach a log).

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

/// A setting's value without surrounding white space; `None` when unset or empty
/// (how compose passes a `${NAME:-}` that is not set).
pub fn setting<'a>(value: Option<&'a str>, variable: &str) -> Result<Option<&'a str>, Error> {
    let Some(value) = value.filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    match value.trim() {
        "" => Err(Error::Blank {
            variable: variable.to_owned(),
        }),
        trimmed => Ok(Some(trimmed)),
    }
}

/// A whole number in `range`; `default` when unset.
pub fn whole_number<T>(
    value: Option<&str>,
    variable: &str,
    default: T,
    range: RangeInclusive<T>,
) -> Result<T, Error>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let expected = || format!("a whole number from {} to {}", range.start(), range.end());
    let Some(text) = setting(value, variable)? else {
        return Ok(default);
    };
    match text.parse::<T>() {
        Ok(parsed) if range.contains(&parsed) => Ok(parsed),
        Ok(_) => Err(out_of_range(variable, expected())),
        // Digits that overflow the type, or a sign the type has not: a number,
        // just not one in range.
        Err(_) if is_integer(text) => Err(out_of_range(variable, expected())),
        Err(_) => Err(Error::NotANumber {
            variable: variable.to_owned(),
            expected: expected(),
        }),
    }
}

/// Seconds, fractions allowed, in `range`; `default` when unset.
pub fn seconds(
    value: Option<&str>,
    variable: &str,
    default: f64,
    range: RangeInclusive<f64>,
) -> Result<Duration, Error> {
    let expected = || format!("seconds from {} to {}", range.start(), range.end());
    let Some(text) = setting(value, variable)? else {
        return Ok(Duration::from_secs_f64(default));
    };
    match text.parse::<f64>() {
        // Infinity is in none of our ranges.
        Ok(parsed) if range.contains(&parsed) => Ok(Duration::from_secs_f64(parsed)),
        Ok(parsed) if !parsed.is_nan() => Err(out_of_range(variable, expected())),
        _ => Err(Error::NotANumber {
            variable: variable.to_owned(),
            expected: expected(),
        }),
    }
}

fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
}

fn out_of_range(variable: &str, expected: String) -> Error {
    Error::OutOfRange {
        variable: variable.to_owned(),
        expected,
    }
}
