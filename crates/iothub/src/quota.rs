//! IoT Hub's operation classes and published throttles (reference §9), shared by the client's pacing
//! (`hub::pace`) and the emulator's quota simulation and stats, so both count the same way.

/// IoT Hub's operation classes, as it throttles them and as the emulator counts them. Written by
/// [`OpClass::name`] in documents and ordered by it, so maps keyed by class list them by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    RegistryRead,
    RegistryWrite,
    Bulk,
    TwinRead,
    TwinWrite,
    Query,
    Configuration,
    /// Import and export jobs (`/jobs/...`): a quota of their own on IoT Hub.
    Jobs,
}

impl OpClass {
    /// The class of a request to an IoT Hub REST route, by HTTP method and (decoded) path
    /// segments; `None` for paths that are no IoT Hub route family.
    pub fn classify(method: &str, segments: &[&str]) -> Option<OpClass> {
        let read = method == "GET" || method == "HEAD";
        let post = method == "POST";
        match segments {
            ["devices", "query"] if post => Some(OpClass::Query),
            ["devices"] if post => Some(OpClass::Bulk),
            // Applying deployment content is a configuration operation on IoT Hub's quota table.
            ["devices", _, "applyConfigurationContent"] if post => Some(OpClass::Configuration),
            ["devices", ..] | ["statistics", ..] if read => Some(OpClass::RegistryRead),
            ["devices", ..] | ["statistics", ..] => Some(OpClass::RegistryWrite),
            ["twins", ..] if read => Some(OpClass::TwinRead),
            ["twins", ..] => Some(OpClass::TwinWrite),
            ["configurations", ..] => Some(OpClass::Configuration),
            ["jobs", ..] => Some(OpClass::Jobs),
            _ => None,
        }
    }

    pub const ALL: [OpClass; 8] = [
        OpClass::RegistryRead,
        OpClass::RegistryWrite,
        OpClass::Bulk,
        OpClass::TwinRead,
        OpClass::TwinWrite,
        OpClass::Query,
        OpClass::Configuration,
        OpClass::Jobs,
    ];

    /// The class name used in flags and in `/_emulator/stats`.
    pub fn name(self) -> &'static str {
        match self {
            OpClass::RegistryRead => "registry_read",
            OpClass::RegistryWrite => "registry_write",
            OpClass::Bulk => "bulk",
            OpClass::TwinRead => "twin_read",
            OpClass::TwinWrite => "twin_write",
            OpClass::Query => "query",
            OpClass::Configuration => "configuration",
            OpClass::Jobs => "jobs",
        }
    }

    pub fn parse(name: &str) -> Option<OpClass> {
        OpClass::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Position in [`OpClass::ALL`], for per-class counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The class names, comma-separated, for messages.
    pub fn names() -> String {
        OpClass::ALL.map(OpClass::name).join(", ")
    }
}

impl Ord for OpClass {
    fn cmp(&self, other: &OpClass) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for OpClass {
    fn partial_cmp(&self, other: &OpClass) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for OpClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for OpClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for OpClass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OpClass, D::Error> {
        let name = String::deserialize(d)?;
        OpClass::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{name}` is no operation class; classes: {}",
                OpClass::names()
            ))
        })
    }
}

/// Parses `N/s`, `N/sec`, `N/min` (or `N/m`) and `N/h` with N > 0 into operations per second.
pub fn parse_rate(text: &str) -> Option<f64> {
    let (n, per) = text.trim().split_once('/')?;
    let n: f64 = n.trim().parse().ok()?;
    if !n.is_finite() || n <= 0.0 {
        return None;
    }
    let seconds = match per.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(n / seconds)
}

/// IoT Hub's published throttles for a tier (`S1`, `S2`, `S3`, `F1`) and unit count, per second.
/// Bulk rows count against `registry_write`; `bulk` itself has no quota of its own.
pub fn tier_rates(tier: &str, units: u32) -> Result<Vec<(OpClass, f64)>, String> {
    let u = f64::from(units.max(1));
    let (registry_min, query_min, twin_read, twin_write, jobs_min) =
        match tier.trim().to_ascii_uppercase().as_str() {
            "S1" | "F1" => (100.0 * u, 20.0 * u, 100.0, 50.0, 100.0 * u),
            "S2" => (
                100.0 * u,
                20.0 * u,
                (10.0 * u).max(100.0),
                (5.0 * u).max(50.0),
                100.0 * u,
            ),
            "S3" => (5000.0 * u, 1000.0 * u, 500.0 * u, 250.0 * u, 5000.0 * u),
            other => return Err(format!("unknown tier `{other}`; tiers: S1, S2, S3, F1")),
        };
    Ok(vec![
        (OpClass::RegistryRead, registry_min / 60.0),
        (OpClass::RegistryWrite, registry_min / 60.0),
        (OpClass::Query, query_min / 60.0),
        (OpClass::TwinRead, twin_read),
        (OpClass::TwinWrite, twin_write),
        (OpClass::Configuration, 20.0 * u / 60.0),
        (OpClass::Jobs, jobs_min / 60.0),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_family_has_one_class() {
        let c = |m: &str, p: &[&str]| OpClass::classify(m, p);
        assert_eq!(c("POST", &["devices", "query"]), Some(OpClass::Query));
        assert_eq!(c("POST", &["devices"]), Some(OpClass::Bulk));
        assert_eq!(c("GET", &["devices", "d"]), Some(OpClass::RegistryRead));
        assert_eq!(c("GET", &["devices", "query"]), Some(OpClass::RegistryRead));
        assert_eq!(
            c("PUT", &["devices", "d", "modules", "m"]),
            Some(OpClass::RegistryWrite)
        );
        assert_eq!(c("DELETE", &["devices", "d"]), Some(OpClass::RegistryWrite));
        assert_eq!(c("GET", &["twins", "d"]), Some(OpClass::TwinRead));
        assert_eq!(
            c("PATCH", &["twins", "d", "modules", "m"]),
            Some(OpClass::TwinWrite)
        );
        assert_eq!(
            c("PUT", &["configurations", "x"]),
            Some(OpClass::Configuration)
        );
        assert_eq!(c("POST", &["jobs", "create"]), Some(OpClass::Jobs));
        assert_eq!(c("DELETE", &["jobs", "j"]), Some(OpClass::Jobs));
        assert_eq!(c("GET", &["_emulator", "stats"]), None);
    }

    #[test]
    fn rates_parse_per_second_minute_and_hour() {
        assert_eq!(parse_rate("50/s"), Some(50.0));
        assert_eq!(parse_rate("6000/min"), Some(100.0));
        assert_eq!(parse_rate("3600/h"), Some(1.0));
        assert_eq!(parse_rate("0/s"), None);
        assert_eq!(parse_rate("x/s"), None);
        assert_eq!(parse_rate("5/fortnight"), None);
    }

    #[test]
    fn s1_one_unit_matches_the_published_quotas() {
        let r = tier_rates("S1", 1).unwrap();
        let get = |c| r.iter().find(|(k, _)| *k == c).map(|(_, r)| *r);
        assert_eq!(get(OpClass::RegistryWrite), Some(100.0 / 60.0));
        assert_eq!(get(OpClass::TwinWrite), Some(50.0));
        assert_eq!(get(OpClass::Query), Some(20.0 / 60.0));
        assert_eq!(get(OpClass::Jobs), Some(100.0 / 60.0));
        assert!(tier_rates("B9", 1).is_err());
    }

    #[test]
    fn class_names_round_trip() {
        for c in OpClass::ALL {
            assert_eq!(OpClass::parse(c.name()), Some(c));
            assert_eq!(OpClass::ALL[c.index()], c);
        }
    }
}
