//! Identity IDs: IoT Hub's ID rules and device ID range patterns such as `therm-{001..250}`.
//!
//! A pattern is counted without being expanded, so huge ranges cost nothing until they are known to fit.

use twinops_iothub::ids::{ID_SYMBOLS, is_id_char};

/// Longest device or module ID (IoT Hub's rule, shared with the client and the emulator).
pub(super) const MAX_ID_CHARS: usize = twinops_iothub::ids::MAX_ID_LEN;
/// Widest range bound, in digits (keeps arithmetic in `u64`).
const MAX_BOUND_DIGITS: usize = 18;

/// What is wrong with a device or module ID (`what` is "device" or "module"), if anything.
pub(super) fn id_problem(id: &str, what: &str) -> Option<String> {
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_ID_CHARS {
        return Some(format!(
            "{what} ID `{}` is {chars} characters long; IoT Hub allows 1..{MAX_ID_CHARS}",
            super::twin::shorten(id)
        ));
    }
    let bad = id.chars().find(|c| !is_id_char(*c))?;
    let hint = if matches!(bad, '{' | '}') && what == "device" {
        "; braces are only allowed as one range pattern such as `therm-{001..250}`"
    } else {
        ""
    };
    Some(format!(
        "{what} ID `{}` contains `{}`; IoT Hub allows ASCII letters, digits and `{ID_SYMBOLS}`{hint}",
        super::twin::shorten(id),
        bad.escape_debug()
    ))
}

/// A device ID as written: a plain ID, or a prefix, a numeric range and a suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern {
    prefix: String,
    range: Option<Range>,
    suffix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u64,
    end: u64,
    /// Digits to zero-pad to; 0 for no padding.
    width: usize,
}

impl Pattern {
    /// Parses and validates a device ID pattern; the error is a complete message.
    pub(super) fn parse(text: &str) -> Result<Pattern, String> {
        let Some(open) = text.find('{') else {
            return match id_problem(text, "device") {
                Some(problem) => Err(problem),
                None => Ok(Pattern {
                    prefix: text.to_string(),
                    range: None,
                    suffix: String::new(),
                }),
            };
        };
        let close = text[open..].find('}').map(|i| open + i);
        let Some(close) = close else {
            return Err(format!(
                "device ID `{}` has an unclosed `{{`; a range pattern is written `prefix-{{001..250}}`",
                super::twin::shorten(text)
            ));
        };
        let (prefix, inner, suffix) = (&text[..open], &text[open + 1..close], &text[close + 1..]);
        if prefix.contains('}') || suffix.contains(['{', '}']) {
            return Err(format!(
                "device ID `{}` has more than one range or a stray brace; at most one range `{{START..END}}` is allowed per ID",
                super::twin::shorten(text)
            ));
        }
        let range = parse_range(inner)?;
        let pattern = Pattern {
            prefix: prefix.to_string(),
            range: Some(range),
            suffix: suffix.to_string(),
        };
        // The last ID is the longest one, so checking it checks the length of them all.
        if let Some(problem) = id_problem(&pattern.id(range.end), "device") {
            return Err(format!(
                "range `{}` expands to an invalid ID: {problem}",
                super::twin::shorten(text)
            ));
        }
        Ok(pattern)
    }

    /// How many IDs the pattern stands for.
    pub(super) fn len(&self) -> u64 {
        self.range.map_or(1, |r| r.end - r.start + 1)
    }

    pub(super) fn is_range(&self) -> bool {
        self.range.is_some()
    }

    /// Every ID, in order.
    pub(super) fn ids(&self) -> impl Iterator<Item = String> + '_ {
        let (start, end) = self.range.map_or((0, 0), |r| (r.start, r.end));
        (start..=end).map(move |n| self.id(n))
    }

    fn id(&self, n: u64) -> String {
        match self.range {
            None => self.prefix.clone(),
            Some(r) => format!(
                "{}{:0width$}{}",
                self.prefix,
                n,
                self.suffix,
                width = r.width
            ),
        }
    }
}

fn parse_range(inner: &str) -> Result<Range, String> {
    let shape = || {
        format!(
            "range `{{{}}}` must be `{{START..END}}` with decimal numbers, such as `{{001..250}}` or `{{1..20}}`",
            super::twin::shorten(inner)
        )
    };
    let (a, b) = inner.split_once("..").ok_or_else(shape)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return Err(shape());
    }
    if a.len() > MAX_BOUND_DIGITS || b.len() > MAX_BOUND_DIGITS {
        return Err(format!(
            "range `{{{inner}}}` has a bound longer than {MAX_BOUND_DIGITS} digits"
        ));
    }
    let padded = |s: &str| s.len() > 1 && s.starts_with('0');
    if (padded(a) || padded(b)) && a.len() != b.len() {
        return Err(format!(
            "range `{{{inner}}}` mixes widths; zero-padded bounds must have the same number of digits, such as `{{001..250}}`"
        ));
    }
    let (start, end) = (
        a.parse::<u64>().map_err(|_| shape())?,
        b.parse::<u64>().map_err(|_| shape())?,
    );
    if start > end {
        return Err(format!(
            "range `{{{inner}}}` runs backwards; the start must not be greater than the end"
        ));
    }
    Ok(Range {
        start,
        end,
        width: if padded(a) { a.len() } else { 0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<String> {
        Pattern::parse(text)
            .map(|p| p.ids().collect())
            .unwrap_or_default()
    }

    #[test]
    fn range_keeps_zero_padding() {
        assert_eq!(ids("t-{008..011}"), ["t-008", "t-009", "t-010", "t-011"]);
    }

    #[test]
    fn range_without_padding_counts_naturally() {
        assert_eq!(ids("{9..11}x"), ["9x", "10x", "11x"]);
    }

    #[test]
    fn range_is_counted_without_expanding() {
        assert_eq!(
            Pattern::parse("d{0..999999999999}").map(|p| p.len()),
            Ok(1_000_000_000_000)
        );
    }

    #[test]
    fn bad_ranges_are_rejected() {
        for bad in [
            "t-{5..1}",
            "t-{a..z}",
            "t-{001..20}",
            "t-{1..020}",
            "t-{1..2}-{3..4}",
            "t-{1..2",
            "t-}",
            "t-{..3}",
            "t-{1-3}",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn id_rules_follow_iot_hub() {
        assert!(id_problem("a-b:c.d+e%f_g#h*i?j!k(l)m,n=o@p;q$r's", "device").is_none());
        assert!(id_problem("a b", "device").is_some());
        assert!(id_problem(&"x".repeat(129), "module").is_some());
        assert!(id_problem("", "module").is_some());
    }
}
