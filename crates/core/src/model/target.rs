//! `--target` patterns: `device`, `device/module`, with `*` and `?` globs.
//!
//! A pattern without `/` selects matching devices with their twins and all their modules; a pattern with
//! `/` selects matching modules only. A plan scoped to a change (`--changed-from`) narrows the
//! selection further to an exact set of twins ([`Targets::within`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{DeviceId, ModuleId, TwinAddress};

/// An exact set of twins, by device: what a change-scoped plan reads and plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    devices: BTreeMap<DeviceId, ScopedDevice>,
}

/// The twins of one device in a [`Scope`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopedDevice {
    /// The device's own identity and twin.
    pub twin: bool,
    pub modules: BTreeSet<ModuleId>,
}

impl Scope {
    pub fn insert(&mut self, address: TwinAddress) {
        let d = self.devices.entry(address.device).or_default();
        match address.module {
            Some(m) => {
                d.modules.insert(m);
            }
            None => d.twin = true,
        }
    }

    pub fn contains(&self, device: &str, module: Option<&str>) -> bool {
        self.devices.get(device).is_some_and(|d| match module {
            Some(m) => d.modules.contains(m),
            None => d.twin,
        })
    }

    /// The scoped twins of one device.
    pub fn device(&self, device: &str) -> Option<&ScopedDevice> {
        self.devices.get(device)
    }

    /// Whether any twin of this device is in the scope.
    pub fn touches(&self, device: &str) -> bool {
        self.devices.contains_key(device)
    }

    /// How many twins (device twins plus module twins).
    pub fn twins(&self) -> usize {
        self.devices
            .values()
            .map(|d| usize::from(d.twin) + d.modules.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    pub fn devices(&self) -> impl Iterator<Item = (&DeviceId, &ScopedDevice)> {
        self.devices.iter()
    }

    /// Every twin, sorted by address.
    pub fn addresses(&self) -> impl Iterator<Item = TwinAddress> + '_ {
        self.devices.iter().flat_map(|(id, d)| {
            d.twin
                .then(|| TwinAddress::device(id.clone()))
                .into_iter()
                .chain(
                    d.modules
                        .iter()
                        .map(move |m| TwinAddress::module(id.clone(), m.clone())),
                )
        })
    }
}

impl FromIterator<TwinAddress> for Scope {
    fn from_iter<I: IntoIterator<Item = TwinAddress>>(iter: I) -> Scope {
        let mut s = Scope::default();
        for a in iter {
            s.insert(a);
        }
        s
    }
}

/// A set of target patterns; empty selects everything. With a scope, only the twins that are both
/// matched and in the scope are selected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    patterns: Vec<(String, Option<String>)>,
    scope: Option<Arc<Scope>>,
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
            scope: None,
        }
    }

    /// These targets narrowed to exactly these twins: a device address selects the device's
    /// identity and twin, a module address that module; nothing outside the set is selected.
    pub fn within(self, scope: Scope) -> Targets {
        Targets {
            scope: Some(Arc::new(scope)),
            ..self
        }
    }

    /// The twins a change-scoped plan is narrowed to, if it is.
    pub fn scope(&self) -> Option<&Scope> {
        self.scope.as_deref()
    }

    /// Whether no `--target` pattern narrows the selection.
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    fn in_scope(&self, device: &str, module: Option<&str>) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|s| s.contains(device, module))
    }

    fn scope_touches(&self, device: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.touches(device))
    }

    /// Whether the device itself (identity and twin) is selected.
    pub fn device(&self, device: &str) -> bool {
        (self.is_all()
            || self
                .patterns
                .iter()
                .any(|(d, m)| m.is_none() && glob(d, device)))
            && self.in_scope(device, None)
    }

    /// Whether the module (identity and twin) is selected.
    pub fn module(&self, device: &str, module: &str) -> bool {
        (self.is_all()
            || self
                .patterns
                .iter()
                .any(|(d, m)| glob(d, device) && m.as_deref().is_none_or(|m| glob(m, module))))
            && self.in_scope(device, Some(module))
    }

    /// Whether anything on this device is selected.
    pub fn touches(&self, device: &str) -> bool {
        (self.is_all() || self.patterns.iter().any(|(d, _)| glob(d, device)))
            && self.scope_touches(device)
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
    fn a_scope_narrows_the_patterns_to_exactly_its_twins() {
        let scope: Scope = [
            TwinAddress::device("a".into()),
            TwinAddress::module("b".into(), "m".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(scope.twins(), 2);
        let t = Targets::new(&[]).within(scope.clone());
        assert!(t.device("a") && !t.module("a", "m") && t.touches("a"));
        assert!(!t.device("b") && t.module("b", "m") && t.touches("b"));
        assert!(!t.touches("c"));
        let t = Targets::new(&["a*".to_string()]).within(scope);
        assert!(t.device("a") && !t.touches("b"));
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
