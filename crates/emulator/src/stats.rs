//! Request accounting for `GET /_emulator/stats`: every request to an IoT Hub route is counted once,
//! in exactly one operation class, whatever its outcome (rejected requests too: a client that
//! gets 401s or 412s still spent the request). `/_emulator/` requests are not counted.
//!
//! The classes are IoT Hub's throttling classes, shared with `throttle`. `faults` counts injected
//! faults by kind (additive to the SPEC's shape).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::faults::Fault;

pub(crate) use twinops_iothub::quota::OpClass;

/// Counters since start.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    total: AtomicU64,
    by_class: [AtomicU64; OpClass::ALL.len()],
    throttled: AtomicU64,
    faults: [AtomicU64; 6],
    delayed: AtomicU64,
}

impl Stats {
    pub(crate) fn count(&self, class: OpClass) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.by_class[class.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A request answered with 429 by throttling or fault injection (already counted in its class).
    pub(crate) fn count_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// A request that fault injection failed or dropped (a 429 is also counted as throttled).
    pub(crate) fn count_fault(&self, fault: Fault) {
        self.faults[fault.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A request that fault injection delayed.
    pub(crate) fn count_delayed(&self) {
        self.delayed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut faults = serde_json::Map::new();
        for f in Fault::ALL {
            faults.insert(
                f.name().into(),
                json!(self.faults[f.index()].load(Ordering::Relaxed)),
            );
        }
        faults.insert(
            "latency".into(),
            json!(self.delayed.load(Ordering::Relaxed)),
        );
        let mut by_class = serde_json::Map::new();
        for c in OpClass::ALL {
            by_class.insert(
                c.name().into(),
                json!(self.by_class[c.index()].load(Ordering::Relaxed)),
            );
        }
        json!({
            "total": self.total.load(Ordering::Relaxed),
            "by_class": by_class,
            "throttled": self.throttled.load(Ordering::Relaxed),
            "faults": faults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up() {
        let s = Stats::default();
        s.count(OpClass::Bulk);
        s.count(OpClass::TwinRead);
        s.count(OpClass::TwinRead);
        let j = s.to_json();
        assert_eq!(j["total"], 3);
        assert_eq!(j["by_class"]["twin_read"], 2);
        assert_eq!(j["by_class"]["configuration"], 0);
        assert_eq!(j["by_class"]["jobs"], 0);
        assert_eq!(j["throttled"], 0);
        s.count_fault(Fault::Reset);
        s.count_delayed();
        let j = s.to_json();
        assert_eq!(j["faults"]["reset"], 1);
        assert_eq!(j["faults"]["latency"], 1);
        assert_eq!(j["faults"]["429"], 0);
        assert_eq!(j["total"], 3, "faults are not extra requests");
    }
}
