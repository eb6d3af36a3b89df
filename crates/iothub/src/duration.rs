//! The one duration grammar of twinops' flags (`--config-interval`, `--simulate-devices all:1h`,
//! fault latencies, `apply --wait`): a number, decimals allowed, and a unit `ms`, `s`, `m` or
//! `min`, `h`; a bare number is seconds (`90`, `1.5`).
//!
//! Pure text to [`Duration`]: no clock. The arithmetic is exact (decimal digits, not floats), so
//! `0.1s` is 100 ms to the nanosecond.

use std::time::Duration;

/// The units the grammar knows, for messages.
const UNITS: &str = "ms, s, m or min, h";

/// Text that is no duration. Each message names the text and says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "`{0}` is not a duration: write a number and a unit ({UNITS}), e.g. 500ms, 1.5s, 2min, 1h, or a bare number of seconds such as 90"
    )]
    NotADuration(String),
    #[error("`{unit}` in `{text}` is not a unit of time: use {UNITS}, or none for seconds")]
    UnknownUnit { unit: String, text: String },
    #[error("`{0}` is too long a duration")]
    TooLong(String),
}

/// A duration in the grammar's largest whole unit that reads back to it: `2h`, `5m`, `90s`,
/// `500ms` (`1h30m` is `90m`); one that is no whole number of milliseconds in exact decimal
/// milliseconds (`2.5ms`).
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if !nanos.is_multiple_of(1_000_000) {
        let fraction = format!("{:06}", nanos % 1_000_000);
        return format!("{}.{}ms", nanos / 1_000_000, fraction.trim_end_matches('0'));
    }
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_string(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// Parses `500ms`, `30s`, `5m`, `2min`, `1h`, `1.5s` or a bare number of seconds (`90`).
/// Surrounding white space, and white space between the number and its unit, are allowed.
pub fn parse(text: &str) -> Result<Duration, Error> {
    let t = text.trim();
    let number_len = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !is_digits(fraction) || (number.contains('.') && fraction.is_empty()) {
        return Err(Error::NotADuration(text.to_string()));
    }
    let nanos_per_unit: u128 = match unit.trim() {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        other => {
            return Err(Error::UnknownUnit {
                unit: other.to_string(),
                text: text.to_string(),
            });
        }
    };
    let too_long = || Error::TooLong(text.to_string());
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    // Digits past the nanosecond of the largest unit change nothing; keeping 18 keeps the
    // products below u128's range.
    let fraction = &fraction[..fraction.len().min(18)];
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| too_long())?;
        let exp = u32::try_from(fraction.len()).map_err(|_| too_long())?;
        digits * nanos_per_unit / 10u128.pow(exp)
    };
    let nanos = whole
        .checked_mul(nanos_per_unit)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(too_long)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    let subsec = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, subsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Result<Duration, Error> {
        Ok(Duration::from_millis(n))
    }

    #[test]
    fn every_unit_scales_the_number() {
        assert_eq!(parse("500ms"), ms(500));
        assert_eq!(parse("30s"), ms(30_000));
        assert_eq!(parse("5m"), ms(300_000));
        assert_eq!(parse("2min"), ms(120_000));
        assert_eq!(parse("1h"), ms(3_600_000));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn a_bare_number_is_seconds() {
        assert_eq!(parse("90"), ms(90_000));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("1.5"), ms(1_500));
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse("1.5s"), ms(1_500));
        assert_eq!(parse("0.1s"), ms(100));
        assert_eq!(parse("2.5ms"), Ok(Duration::from_micros(2_500)));
        assert_eq!(parse("0.5h"), ms(1_800_000));
        assert_eq!(parse("1.25min"), ms(75_000));
        assert_eq!(parse("0.0000000001s"), Ok(Duration::ZERO));
    }

    #[test]
    fn white_space_around_and_before_the_unit_is_allowed() {
        assert_eq!(parse(" 1m "), ms(60_000));
        assert_eq!(parse("5 s"), ms(5_000));
    }

    #[test]
    fn text_that_is_no_number_is_refused_with_the_grammar() {
        for text in ["", "s", "ms", ".5s", "1.s", "1.2.3s", "-5s", "+5s", "five"] {
            let e = parse(text).unwrap_err();
            assert_eq!(e, Error::NotADuration(text.to_string()));
            let message = e.to_string();
            assert!(message.contains(&format!("`{text}`")), "{message}");
            assert!(message.contains("(ms, s, m or min, h)"), "{message}");
            assert!(message.contains("bare number of seconds"), "{message}");
        }
    }

    #[test]
    fn unknown_units_are_named_in_the_message() {
        let e = parse("5sec").unwrap_err();
        assert_eq!(
            e,
            Error::UnknownUnit {
                unit: "sec".into(),
                text: "5sec".into()
            }
        );
        let message = e.to_string();
        assert!(message.contains("`sec` in `5sec`"), "{message}");
        assert!(message.contains("ms, s, m or min, h, or none"), "{message}");
        assert!(matches!(parse("2d"), Err(Error::UnknownUnit { .. })));
        assert!(matches!(parse("1S"), Err(Error::UnknownUnit { .. })));
        assert!(matches!(parse("1e3s"), Err(Error::UnknownUnit { .. })));
    }

    #[test]
    fn durations_beyond_u64_seconds_are_too_long() {
        let huge = format!("{}h", u64::MAX);
        assert_eq!(parse(&huge), Err(Error::TooLong(huge.clone())));
        assert!(parse(&huge).unwrap_err().to_string().contains(&huge));
        let digits = "9".repeat(60);
        assert_eq!(parse(&digits), Err(Error::TooLong(digits.clone())));
        assert_eq!(
            parse(&format!("{}s", u64::MAX)),
            Ok(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn durations_below_a_millisecond_format_exactly_and_parse_back() {
        for (d, text) in [
            (Duration::from_micros(2_500), "2.5ms"),
            (Duration::from_micros(500), "0.5ms"),
            (Duration::from_nanos(1), "0.000001ms"),
            (Duration::new(1, 500_000_001), "1500.000001ms"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d));
        }
    }

    #[test]
    fn formatted_durations_parse_back() {
        for (d, text) in [
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d));
        }
    }
}
