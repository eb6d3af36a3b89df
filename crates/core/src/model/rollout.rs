//! The `rollout` block as a validated value (SPEC §11): how `apply` delivers desired changes in waves.
//!
//! Owns the settings and their invariants (shares in basis points, strictly increasing steps that end
//! at every twin), so that the planner and the executor never re-check them. It knows nothing of twins:
//! which twins form which wave is `plan::rollout`'s business.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{JsonMap, Location};

/// A share of a wave's or a rollout's twins, `0%`..`100%` with up to two decimals, held exactly as
/// basis points (hundredths of a percent) so that `ceil(share × N)` needs no float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Share(u16);

impl Share {
    /// Basis points in a whole.
    pub const WHOLE: u16 = 10_000;
    pub const ZERO: Share = Share(0);
    pub const ALL: Share = Share(Share::WHOLE);

    /// A share of `basis_points` hundredths of a percent; `None` past 100%.
    pub fn from_basis_points(basis_points: u16) -> Option<Share> {
        (basis_points <= Share::WHOLE).then_some(Share(basis_points))
    }

    pub fn basis_points(self) -> u16 {
        self.0
    }

    /// Parses `5%`, `12.5%`, `0.25%`: digits, at most two decimals, then `%`; `None` otherwise or past 100%.
    pub fn parse(text: &str) -> Option<Share> {
        let number = text.strip_suffix('%')?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || whole.len() > 3
            || !digits(whole)
            || !digits(fraction)
            || fraction.len() > 2
            || (number.contains('.') && fraction.is_empty())
        {
            return None;
        }
        let whole: u16 = whole.parse().ok()?;
        let fraction: u16 = format!("{fraction:0<2}").parse().ok()?;
        Share::from_basis_points(whole.checked_mul(100)?.checked_add(fraction)?)
    }

    /// `ceil(self × n)`: how many of `n` twins this share covers.
    pub fn of(self, n: usize) -> usize {
        let whole = u128::from(Share::WHOLE);
        let covered = (u128::from(self.0) * n as u128).div_ceil(whole);
        // At most `n`, since the share is at most 100%.
        usize::try_from(covered).unwrap_or(n)
    }

    /// Whether `part` of `total` is more than this share (`part / total > share`, exactly).
    pub fn is_exceeded_by(self, part: usize, total: usize) -> bool {
        part as u128 * u128::from(Share::WHOLE) > u128::from(self.0) * total as u128
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / 100, self.0 % 100);
        match fraction {
            0 => write!(f, "{whole}%"),
            f10 if f10 % 10 == 0 => write!(f, "{whole}.{}%", f10 / 10),
            _ => write!(f, "{whole}.{fraction:02}%"),
        }
    }
}

/// Written as the manifest writes it: `"5%"`.
impl Serialize for Share {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Share, D::Error> {
        let text = String::deserialize(d)?;
        Share::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a share; write 0% to 100% with at most two decimals, e.g. 5% or 12.5%"
            ))
        })
    }
}

/// How far one wave reaches, cumulatively over the rollout's twins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Up to `ceil(share × N)` twins.
    Share(Share),
    /// Up to this many twins (at least 1).
    Count(u64),
    /// Every twin (`all`).
    All,
}

impl Step {
    /// How many of `n` twins the waves up to and including this one hold.
    pub fn upto(self, n: usize) -> usize {
        match self {
            Step::Share(s) => s.of(n),
            Step::Count(c) => usize::try_from(c).map_or(n, |c| c.min(n)),
            Step::All => n,
        }
    }

    /// Whether this step holds every twin, whatever their number.
    pub fn covers_all(self) -> bool {
        matches!(self, Step::All | Step::Share(Share::ALL))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Share(s) => write!(f, "{s}"),
            Step::Count(c) => write!(f, "{c}"),
            Step::All => f.write_str("all"),
        }
    }
}

/// When a wave fails its gate: more than these shares of its twins rejected, or pending at timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Halt {
    pub rejected: Share,
    pub pending: Share,
}

/// What a halted rollout does before it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnHalt {
    /// Write no further wave.
    #[default]
    Stop,
    /// Write every twin this run changed back to its plan `base` values, then stop.
    Revert,
}

impl OnHalt {
    pub fn as_str(self) -> &'static str {
        match self {
            OnHalt::Stop => "stop",
            OnHalt::Revert => "revert",
        }
    }
}

/// The validated `rollout` block.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSpec {
    /// Strictly increasing, all shares or all counts (`all` may end either), the last one covering
    /// every twin ([`Step::covers_all`]).
    pub waves: Vec<Step>,
    /// `first.tags`: twins of devices whose tags equal all of these form wave 0; never empty when set.
    pub first: Option<JsonMap>,
    /// Wait after a wave passes, before the next is written.
    pub bake: Duration,
    /// How long a wave may take to pass its gate; more than zero.
    pub timeout: Duration,
    pub halt: Halt,
    pub on_halt: OnHalt,
    /// Where the block was written.
    pub location: Location,
}

/// `bake` when the block names none.
pub const DEFAULT_BAKE: Duration = Duration::ZERO;
/// `timeout` when the block names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_exactly_to_basis_points() {
        assert_eq!(Share::parse("5%").map(Share::basis_points), Some(500));
        assert_eq!(Share::parse("12.5%").map(Share::basis_points), Some(1250));
        assert_eq!(Share::parse("0.25%").map(Share::basis_points), Some(25));
        assert_eq!(Share::parse("100%"), Some(Share::ALL));
        assert_eq!(Share::parse("0%"), Some(Share::ZERO));
        for bad in [
            "", "%", "5", "5 %", "-5%", "100.01%", "101%", "1.%", ".5%", "0.125%", "1e2%", "1000%",
        ] {
            assert_eq!(Share::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn shares_display_as_written() {
        for text in ["5%", "12.5%", "0.25%", "100%", "0%", "33.33%"] {
            assert_eq!(Share::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn a_share_of_n_rounds_up() {
        let s = |t| Share::parse(t).unwrap();
        assert_eq!(s("5%").of(100), 5);
        assert_eq!(s("5%").of(101), 6);
        assert_eq!(s("5%").of(1), 1);
        assert_eq!(s("5%").of(0), 0);
        assert_eq!(s("0.01%").of(1_000_000), 100);
        assert_eq!(s("100%").of(7), 7);
        assert_eq!(s("0%").of(7), 0);
    }

    #[test]
    fn exceeding_a_share_is_strictly_more_than_it() {
        let s = |t| Share::parse(t).unwrap();
        assert!(!s("10%").is_exceeded_by(1, 10));
        assert!(s("10%").is_exceeded_by(2, 10));
        assert!(!s("0%").is_exceeded_by(0, 10));
        assert!(s("0%").is_exceeded_by(1, 10));
        assert!(!s("100%").is_exceeded_by(10, 10));
        assert!(!s("0%").is_exceeded_by(0, 0));
    }
}
