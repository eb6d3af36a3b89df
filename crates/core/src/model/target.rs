//! `--target` patterns: `device`, `device/module`, with `*` and `?` globs.
//!
//! A pattern without `/` selects matching devices with their twins and all their modules; a pattern with
//! `/` selects matching modules only.

/// A set of target patterns; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    patterns: Vec<(String, Option<String>)>,
}

/// Whether `text` matches `pattern` where `*` is any run of characters and `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Targets {
    pub fn new(patterns: &[String]) -> Targets {
        Targets {
            patterns: patterns
                .iter()
                .map(|p| match p.split_once('/') {
                    Some((d, m)) => (d.to_string(), Some(m.to_string())),
                    None => (p.clone(), None),
                })
                .collect(),
        }
    }

    fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the device itself (identity and twin) is selected.
    pub fn device(&self, device: &str) -> bool {
        self.is_all()
            || self
                .patterns
                .iter()
                .any(|(d, m)| m.is_none() && glob(d, device))
    }

    /// Whether the module (identity and twin) is selected.
    pub fn module(&self, device: &str, module: &str) -> bool {
        self.is_all()
            || self
                .patterns
                .iter()
                .any(|(d, m)| glob(d, device) && m.as_deref().is_none_or(|m| glob(m, module)))
    }

    /// Whether anything on this device is selected.
    pub fn touches(&self, device: &str) -> bool {
        self.is_all() || self.patterns.iter().any(|(d, _)| glob(d, device))
    }

    /// The first pattern that selects none of these identities (`(device, None)` for a device,
    /// `(device, Some(module))` for a module), if any: a `--target` typo is an error, not an
    /// empty plan.
    pub fn unmatched<'a>(
        &self,
        identities: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Option<String> {
        let ids: Vec<(&str, Option<&str>)> = identities.into_iter().collect();
        self.patterns
            .iter()
            .find(|(d, m)| {
                !ids.iter().any(|(id, mid)| match (m, mid) {
                    (None, _) => glob(d, id),
                    (Some(mp), Some(mid)) => glob(d, id) && glob(mp, mid),
                    (Some(_), None) => false,
                })
            })
            .map(|(d, m)| super::address(d, m.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob("therm-*", "therm-001"));
        assert!(glob("therm-00?", "therm-001"));
        assert!(!glob("therm-00?", "therm-0010"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b", "ac"));
    }

    #[test]
    fn device_pattern_selects_its_modules() {
        let t = Targets::new(&["gw".to_string()]);
        assert!(t.device("gw") && t.module("gw", "m"));
        assert!(!t.device("other"));
    }

    #[test]
    fn module_pattern_selects_only_modules() {
        let t = Targets::new(&["therm-*/sensor".to_string()]);
        assert!(!t.device("therm-1"));
        assert!(t.module("therm-1", "sensor"));
        assert!(!t.module("therm-1", "other"));
        assert!(t.touches("therm-1"));
    }
}
