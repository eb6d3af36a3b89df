//! Durations as the emulator's flags write them: `500ms`, `5s`, `1m`, `2h` (an integer and a unit,
//! humantime style). Pure; errors name the text that is wrong.

use std::time::Duration;

/// Parses `N` followed by `ms`, `s`, `m` or `h`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "`{text}` is not a duration: expected a whole number and a unit, e.g. 500ms, 5s, 1m"
        ));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{number}` in `{text}` is too large"))?;
    let ms_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("`{text}` has no unit: write ms, s, m or h")),
        other => {
            return Err(format!(
                "`{other}` in `{text}` is not a unit: use ms, s, m or h"
            ));
        }
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_scale_the_number() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse(" 1m "), Ok(Duration::from_secs(60)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn errors_name_the_bad_part() {
        assert!(parse("5").unwrap_err().contains("no unit"));
        assert!(parse("5sec").unwrap_err().contains("`sec`"));
        assert!(parse("s").unwrap_err().contains("`s` is not a duration"));
        assert!(parse("1.5s").unwrap_err().contains("`.5s`"));
        assert!(parse("").is_err());
    }
}
