//! Units of the scenario language: durations, request rates and ratios, parsed from text.
//!
//! Everything a user types as a quantity ("300ms", "200/s", "1%") goes through this module and comes
//! out as a typed value, so nothing past the parser handles a bare `f64` or string. Durations are
//! parsed exactly, digit by digit into whole nanoseconds (never through `f64`), with checked
//! arithmetic, so "0.1s" is exactly 100,000,000 ns and no input can overflow or panic.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use thiserror::Error;

/// The longest duration any scenario quantity may have: 30 days.
///
/// A limit on everything that input controls: durations past it are rejected, not saturated.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The highest request rate a scenario may ask for, per second.
pub const MAX_RATE_PER_SECOND: f64 = 1_000_000.0;

/// The forms a duration may take, quoted in error messages.
const DURATION_EXPECTED: &str =
    "a duration such as \"300ms\" or \"20s\" (units ns, us, ms, s, m, h)";
/// The forms a rate may take, quoted in error messages.
const RATE_EXPECTED: &str = "a rate such as \"200/s\" or \"12000/m\" (per s, m, min or h)";
/// The forms a ratio may take, quoted in error messages.
const RATIO_EXPECTED: &str = "a ratio such as 0.01 or \"1%\", between 0 and 1";

/// Why a quantity could not be parsed: what was found, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    /// The text is not a duration at all.
    #[error("expected {DURATION_EXPECTED}, found {found}")]
    Duration {
        /// The offending input, quoted as the user wrote it.
        found: String,
    },
    /// The duration has more precision than a nanosecond.
    #[error("expected a whole number of nanoseconds, found {found}")]
    DurationPrecision {
        /// The offending input, quoted.
        found: String,
    },
    /// The duration is longer than [`MAX_DURATION`].
    #[error("expected a duration of at most 30 days, found {found}")]
    DurationTooLong {
        /// The offending input, quoted.
        found: String,
    },
    /// The text is not a rate.
    #[error("expected {RATE_EXPECTED}, found {found}")]
    Rate {
        /// The offending input, quoted.
        found: String,
    },
    /// The rate is above [`MAX_RATE_PER_SECOND`].
    #[error("expected a rate of at most 1000000/s, found {found}")]
    RateTooHigh {
        /// The offending input, quoted.
        found: String,
    },
    /// The value is not a ratio, or lies outside [0, 1].
    #[error("expected {RATIO_EXPECTED}, found {found}")]
    Ratio {
        /// The offending input, quoted.
        found: String,
    },
}

/// Parses a duration such as "300ms", "1.5s", "2m", "250us", "1h" or "10ns" into exact nanoseconds.
///
/// The number is decimal digits with an optional fraction and no sign; the unit is one of `ns`,
/// `us` (or `µs`), `ms`, `s`, `m` (or `min`) and `h`. Fractions finer than a nanosecond and durations
/// over [`MAX_DURATION`] are errors.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let found = || quote(text);
    let (number, unit) = split_number(text.trim());
    let unit_nanos =
        duration_unit_nanos(unit).ok_or_else(|| UnitError::Duration { found: found() })?;
    let decimal = Decimal::parse(number).ok_or_else(|| UnitError::Duration { found: found() })?;
    let nanos = decimal.times(unit_nanos).map_err(|fault| match fault {
        DecimalFault::Inexact => UnitError::DurationPrecision { found: found() },
        DecimalFault::Overflow => UnitError::DurationTooLong { found: found() },
    })?;
    let max_nanos = MAX_DURATION.as_nanos();
    if nanos > max_nanos {
        return Err(UnitError::DurationTooLong { found: found() });
    }
    let nanos = u64::try_from(nanos).map_err(|_| UnitError::DurationTooLong { found: found() })?;
    Ok(Duration::from_nanos(nanos))
}

/// Reads a duration from a TOML value, which must be a string such as "300ms".
pub fn duration_from_toml(value: &toml::Value) -> Result<Duration, UnitError> {
    match value {
        toml::Value::String(text) => parse_duration(text),
        other => Err(UnitError::Duration {
            found: describe_value(other),
        }),
    }
}

/// Formats a duration in the form [`parse_duration`] reads back exactly: "300ms", "1.5s", "2m".
///
/// Whole hours are written as such; anything else uses the largest of s, ms, us and ns not larger
/// than the duration, with as many decimals as needed and no trailing zeros ("90s", "120s").
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    const NANOS_PER_HOUR: u128 = 3600 * 1_000_000_000;
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos.is_multiple_of(NANOS_PER_HOUR) {
        return format!("{}h", nanos / NANOS_PER_HOUR);
    }
    let (unit_nanos, unit) = [
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ]
    .into_iter()
    .find(|(unit_nanos, _)| nanos >= *unit_nanos)
    .unwrap_or((1, "ns"));
    format!("{}{unit}", format_decimal(nanos, unit_nanos))
}

/// Writes `value / scale` in decimal with no trailing zeros; `scale` is a power of ten.
fn format_decimal(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Deserializes a duration from a string such as "300ms", for `#[serde(deserialize_with)]`.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    struct DurationVisitor;
    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str(DURATION_EXPECTED)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            parse_duration(text).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(DurationVisitor)
}

/// A request rate: how many events per second, finite and not negative.
///
/// Written "200/s", "12000/m" (or "/min") or "3/h". Zero parses (a stage may ramp down to it); a load's
/// starting rate must be positive, which validation checks where it matters.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rate {
    per_second: f64,
}

impl Rate {
    /// A rate of `per_second` events per second; `None` unless finite, >= 0 and within the limit.
    pub fn per_second(per_second: f64) -> Option<Rate> {
        let valid = per_second.is_finite() && (0.0..=MAX_RATE_PER_SECOND).contains(&per_second);
        valid.then_some(Rate { per_second })
    }

    /// Events per second.
    pub fn as_per_second(self) -> f64 {
        self.per_second
    }

    /// Whether the rate is above zero.
    pub fn is_positive(self) -> bool {
        self.per_second > 0.0
    }

    /// The mean time between two events, or `None` for a zero rate.
    pub fn mean_interval(self) -> Option<Duration> {
        if !self.is_positive() {
            return None;
        }
        Duration::try_from_secs_f64(1.0 / self.per_second).ok()
    }

    /// Parses "200/s", "12000/m", "12000/min", "0.5/s" or "3/h".
    pub fn parse(text: &str) -> Result<Rate, UnitError> {
        let found = || quote(text);
        let (count, per) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| UnitError::Rate { found: found() })?;
        let seconds = match per.trim() {
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(UnitError::Rate { found: found() }),
        };
        let count =
            parse_plain_number(count.trim()).ok_or_else(|| UnitError::Rate { found: found() })?;
        Rate::per_second(count / seconds).ok_or_else(|| UnitError::RateTooHigh { found: found() })
    }

    /// Reads a rate from a TOML value, which must be a string such as "200/s".
    pub fn from_toml(value: &toml::Value) -> Result<Rate, UnitError> {
        match value {
            toml::Value::String(text) => Rate::parse(text),
            other => Err(UnitError::Rate {
                found: describe_value(other),
            }),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/s", trim_float(self.per_second, 6))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        let value = toml::Value::deserialize(deserializer)?;
        Rate::from_toml(&value).map_err(de::Error::custom)
    }
}

/// A probability or fraction, between 0 and 1 inclusive.
///
/// Written as a number (0.01) or a percentage string ("1%", "0.5%").
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Ratio {
    value: f64,
}

impl Ratio {
    /// No chance at all.
    pub const ZERO: Ratio = Ratio { value: 0.0 };
    /// Certainty.
    pub const ONE: Ratio = Ratio { value: 1.0 };

    /// The ratio `value`; `None` unless it lies in [0, 1].
    pub fn new(value: f64) -> Option<Ratio> {
        // Adding zero turns -0.0 into 0.0, so a ratio never displays as "-0%".
        (0.0..=1.0)
            .contains(&value)
            .then_some(Ratio { value: value + 0.0 })
    }

    /// The ratio as a fraction in [0, 1].
    pub fn value(self) -> f64 {
        self.value
    }

    /// Parses "1%" or "0.5%" (a percentage), or a plain fraction such as "0.01".
    pub fn parse(text: &str) -> Result<Ratio, UnitError> {
        let found = || quote(text);
        let trimmed = text.trim();
        let fraction = match trimmed.strip_suffix('%') {
            Some(percent) => parse_plain_number(percent.trim()).map(|p| p / 100.0),
            None => parse_plain_number(trimmed),
        };
        fraction
            .and_then(Ratio::new)
            .ok_or_else(|| UnitError::Ratio { found: found() })
    }

    /// Reads a ratio from a TOML number (0.01, 0, 1) or a string ("1%").
    pub fn from_toml(value: &toml::Value) -> Result<Ratio, UnitError> {
        let found = || describe_value(value);
        match value {
            toml::Value::String(text) => Ratio::parse(text),
            toml::Value::Float(number) => {
                Ratio::new(*number).ok_or_else(|| UnitError::Ratio { found: found() })
            }
            toml::Value::Integer(number) => {
                let exact = match number {
                    0 => Some(Ratio::ZERO),
                    1 => Some(Ratio::ONE),
                    _ => None,
                };
                exact.ok_or_else(|| UnitError::Ratio { found: found() })
            }
            _ => Err(UnitError::Ratio { found: found() }),
        }
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}%", trim_float(self.value * 100.0, 4))
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Ratio, D::Error> {
        let value = toml::Value::deserialize(deserializer)?;
        Ratio::from_toml(&value).map_err(de::Error::custom)
    }
}

/// Describes a TOML value for an error message: strings quoted, numbers as written, else its kind.
pub fn describe_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => quote(text),
        toml::Value::Integer(number) => format!("the integer {number}"),
        toml::Value::Float(number) => format!("the number {number}"),
        toml::Value::Boolean(flag) => format!("the boolean {flag}"),
        toml::Value::Datetime(datetime) => format!("the date-time {datetime}"),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

/// Quotes user text for an error message, escaping what needs it and cutting very long input.
pub fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    let mut shown: String = text.chars().take(MAX_CHARS).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

/// Parses a plain non-negative decimal ("12", "0.5"): digits, an optional fraction, no sign or exponent.
pub fn parse_plain_number(text: &str) -> Option<f64> {
    Decimal::parse(text)?;
    text.parse::<f64>().ok().filter(|number| number.is_finite())
}

/// Formats a float with at most `decimals` decimals and no trailing zeros.
fn trim_float(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if !text.contains('.') {
        return text;
    }
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Splits "1.5ms" into ("1.5", "ms"): the number is the leading digits and dots.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Nanoseconds in one of the duration units, or `None` for an unknown unit.
fn duration_unit_nanos(unit: &str) -> Option<u128> {
    match unit {
        "ns" => Some(1),
        "us" | "µs" => Some(1_000),
        "ms" => Some(1_000_000),
        "s" => Some(1_000_000_000),
        "m" | "min" => Some(60_000_000_000),
        "h" => Some(3_600_000_000_000),
        _ => None,
    }
}

/// A non-negative decimal number kept as digits, so it can be scaled without rounding.
struct Decimal<'a> {
    whole: &'a str,
    fraction: &'a str,
}

/// Why a decimal could not be scaled to a whole number.
enum DecimalFault {
    /// The result has a fractional part.
    Inexact,
    /// The result does not fit.
    Overflow,
}

impl<'a> Decimal<'a> {
    /// Reads "12", "1.5" or "0.25"; rejects signs, exponents, an empty part and stray characters.
    fn parse(text: &'a str) -> Option<Decimal<'a>> {
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || !fraction.is_none_or(all_digits) {
            return None;
        }
        Some(Decimal {
            whole,
            fraction: fraction.unwrap_or(""),
        })
    }

    /// The exact product with `scale`, if it is a whole number that fits in a `u128`.
    fn times(&self, scale: u128) -> Result<u128, DecimalFault> {
        let whole = digits_value(self.whole.trim_start_matches('0'))?;
        let fraction_digits = self.fraction.trim_end_matches('0');
        let fraction = digits_value(fraction_digits).map_err(|_| DecimalFault::Inexact)?;
        let denominator = u32::try_from(fraction_digits.len())
            .ok()
            .and_then(|len| 10u128.checked_pow(len))
            .ok_or(DecimalFault::Inexact)?;
        let scaled_fraction = fraction.checked_mul(scale).ok_or(DecimalFault::Inexact)?;
        if !scaled_fraction.is_multiple_of(denominator) {
            return Err(DecimalFault::Inexact);
        }
        whole
            .checked_mul(scale)
            .and_then(|product| product.checked_add(scaled_fraction / denominator))
            .ok_or(DecimalFault::Overflow)
    }
}

/// The value of a string of ASCII digits, "" being zero.
fn digits_value(digits: &str) -> Result<u128, DecimalFault> {
    digits.bytes().try_fold(0u128, |acc, digit| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u128::from(digit - b'0')))
            .ok_or(DecimalFault::Overflow)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_exactly_in_every_unit() {
        let cases = [
            ("300ms", Duration::from_millis(300)),
            ("20s", Duration::from_secs(20)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("2min", Duration::from_secs(120)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
            ("10ns", Duration::from_nanos(10)),
            ("0.1s", Duration::from_nanos(100_000_000)),
            ("1.000000001s", Duration::from_nanos(1_000_000_001)),
            ("0.0010ms", Duration::from_nanos(1_000)),
            ("720h", Duration::from_secs(720 * 3600)),
            (" 5ms ", Duration::from_millis(5)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn durations_reject_garbage_signs_missing_units_and_overflow() {
        for text in [
            "", "ms", "5", "-5ms", "+5ms", "5 ms", "5ms5", "1e3ms", "1.ms", ".5s", "5parsecs",
            "1..2s", "NaNs", "infs",
        ] {
            assert!(
                matches!(parse_duration(text), Err(UnitError::Duration { .. })),
                "{text}"
            );
        }
        assert!(matches!(
            parse_duration("0.5ns"),
            Err(UnitError::DurationPrecision { .. })
        ));
        assert!(matches!(
            parse_duration("721h"),
            Err(UnitError::DurationTooLong { .. })
        ));
        let huge = format!("{}h", "9".repeat(80));
        assert!(matches!(
            parse_duration(&huge),
            Err(UnitError::DurationTooLong { .. })
        ));
        let fine = format!("1.{}s", "0".repeat(200));
        assert_eq!(parse_duration(&fine), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn duration_error_says_what_was_expected_and_found() {
        let message = parse_duration("20 parsecs").map_err(|e| e.to_string());
        assert_eq!(
            message,
            Err("expected a duration such as \"300ms\" or \"20s\" (units ns, us, ms, s, m, h), found \"20 parsecs\"".into())
        );
    }

    #[test]
    fn formatted_durations_read_back_exactly() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(120), "120s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_nanos(1_234_567), "1.234567ms"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_nanos(1_001), "1.001us"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
    }

    #[test]
    fn rates_parse_per_second_minute_and_hour() {
        let per_second = |text: &str| Rate::parse(text).map(Rate::as_per_second);
        assert_eq!(per_second("200/s"), Ok(200.0));
        assert_eq!(per_second("12000/m"), Ok(200.0));
        assert_eq!(per_second("12000/min"), Ok(200.0));
        assert_eq!(per_second("0.5/s"), Ok(0.5));
        assert_eq!(per_second("7200/h"), Ok(2.0));
        assert_eq!(per_second("0/s"), Ok(0.0));
        for text in [
            "200", "/s", "-1/s", "1/ms", "abc/s", "1e3/s", "inf/s", "NaN/s",
        ] {
            assert!(
                matches!(Rate::parse(text), Err(UnitError::Rate { .. })),
                "{text}"
            );
        }
        assert!(matches!(
            Rate::parse("2000000/s"),
            Err(UnitError::RateTooHigh { .. })
        ));
        assert_eq!(
            Rate::parse("12000/m").map(|r| r.to_string()),
            Ok("200/s".into())
        );
        assert_eq!(
            Rate::parse("4/s").ok().and_then(Rate::mean_interval),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn ratios_accept_fractions_and_percentages_within_zero_and_one() {
        let value = |v: toml::Value| Ratio::from_toml(&v).map(Ratio::value);
        assert_eq!(value(toml::Value::Float(0.01)), Ok(0.01));
        assert_eq!(value(toml::Value::Integer(1)), Ok(1.0));
        assert_eq!(value(toml::Value::String("1%".into())), Ok(0.01));
        assert_eq!(value(toml::Value::String("0.5%".into())), Ok(0.005));
        assert_eq!(value(toml::Value::String("100%".into())), Ok(1.0));
        for bad in [
            toml::Value::Float(1.5),
            toml::Value::Float(-0.1),
            toml::Value::Float(f64::NAN),
            toml::Value::Integer(2),
            toml::Value::String("101%".into()),
            toml::Value::String("-1%".into()),
            toml::Value::Boolean(true),
        ] {
            assert!(
                matches!(Ratio::from_toml(&bad), Err(UnitError::Ratio { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(Ratio::parse("5%").map(|r| r.to_string()), Ok("5%".into()));
        assert_eq!(Ratio::new(0.07).map(|r| r.to_string()), Some("7%".into()));
    }

    #[test]
    fn serde_helpers_read_units_from_toml() {
        #[derive(Deserialize)]
        struct Row {
            #[serde(deserialize_with = "deserialize_duration")]
            wait: Duration,
            rate: Rate,
            loss: Ratio,
        }
        let row: Row =
            toml::from_str("wait = \"5ms\"\nrate = \"10/s\"\nloss = \"2%\"").expect("valid row");
        assert_eq!(row.wait, Duration::from_millis(5));
        assert_eq!(row.rate.as_per_second(), 10.0);
        assert_eq!(row.loss.value(), 0.02);
        let bad = toml::from_str::<Row>("wait = \"5\"\nrate = \"10/s\"\nloss = 0");
        assert!(bad.is_err());
    }
}
