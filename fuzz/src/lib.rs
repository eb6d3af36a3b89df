//! The fuzz checks, one function per target: bytes in, a panic on any bug (a panic in the code
//! under test, or a violated property asserted here). The `fuzz_targets/` binaries hand libFuzzer's
//! inputs to these; `tests/fuzz_regressions.rs` in the main package includes this file with
//! `#[path]` and replays every saved crashing input, so the two cannot drift apart.
//!
//! Depends only on `twinops` and `serde_json`, which the main package's tests also have.

use serde_json::{Value, json};
use twinops_core::manifest::{self, Source};
use twinops_emulator::query;
use twinops_iothub::connection_string::{DeviceConnectionString, Secret, ServiceConnectionString};
use twinops_iothub::sas::{self, Token};

/// Any bytes as one manifest file: `load` must answer (a fleet or diagnostics), never panic, and
/// every diagnostic names the file.
pub fn manifest_load(data: &[u8]) {
    let sources = [Source {
        path: "f.yaml".to_string(),
        bytes: data.to_vec(),
    }];
    match manifest::load(&sources, &manifest::NoEnv) {
        Ok(fleet) => {
            let _ = fleet.identity_count();
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without diagnostics");
            for d in &errors.0 {
                assert_eq!(&*d.location.file, "f.yaml", "{d}");
            }
            let _ = errors.to_string();
        }
    }
}

/// `input` with every value that follows `SharedAccessKey=` (anywhere, also where a missing `;`
/// glued the pair onto another value; up to the next `;`) replaced by `marker`.
fn taint_keys(input: &str, marker: &str) -> String {
    const NEEDLE: &str = "SharedAccessKey=";
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find(NEEDLE) {
        out.push_str(&rest[..i + NEEDLE.len()]);
        rest = &rest[i + NEEDLE.len()..];
        out.push_str(marker);
        rest = &rest[rest.find(';').unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// Taint tracking for keys: with every key replaced by a marker (one valid base64, one not), an
/// error message must not show the marker. (Comparing messages with the keys themselves gives
/// false alarms: a fuzzed "key" can be a piece of the message's own wording.)
fn assert_keys_not_echoed(input: &str, parse: fn(&str) -> Option<String>) {
    for marker in ["VEFJTlRFRA==", "TAINTED!"] {
        if input.contains(marker) || !input.contains("SharedAccessKey=") {
            continue;
        }
        if let Some(message) = parse(&taint_keys(input, marker)) {
            assert!(
                !message.contains(marker),
                "an error message shows the SharedAccessKey value: {message:?}"
            );
        }
    }
}

/// Connection strings: parsing never panics, errors never show the key, and what parses prints
/// back (`to_secret_string`) to a string that parses to the same value.
pub fn connection_string(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match ServiceConnectionString::parse(s) {
        Ok(cs) => {
            let again = ServiceConnectionString::parse(cs.to_secret_string().expose())
                .expect("a printed service connection string parses");
            assert_eq!(again, cs);
            assert!(!format!("{cs:?}").contains("SharedAccessKey="));
        }
        Err(_) => assert_keys_not_echoed(s, |t| {
            ServiceConnectionString::parse(t)
                .err()
                .map(|e| e.to_string())
        }),
    }
    match DeviceConnectionString::parse(s) {
        Ok(cs) => {
            let again = DeviceConnectionString::parse(cs.to_secret_string().expose())
                .expect("a printed device connection string parses");
            assert_eq!(again, cs);
        }
        Err(_) => assert_keys_not_echoed(s, |t| {
            DeviceConnectionString::parse(t)
                .err()
                .map(|e| e.to_string())
        }),
    }
}

/// A valid 32-byte key, so that random signatures are checked against a real HMAC.
const KEY: &str = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";

/// SAS tokens. The input is up to three lines: a token text, a resource URI and a request path.
/// The token is parsed and validated (signature, expiry at the edges of time, scope against the
/// path); a token signed for the resource must verify and give the resource back; a scope always
/// covers its own host.
pub fn sas_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let token_text = lines.next().unwrap_or("");
    let resource = lines.next().unwrap_or("localhost:8443");
    let path = lines.next().unwrap_or("devices/d1");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();

    if let Ok(t) = Token::parse(token_text) {
        let _ = t.signed_with(KEY);
        let _ = t.signed_with(token_text);
        for now in [0, t.expiry, t.expiry.saturating_add(301), u64::MAX] {
            let _ = t.expired(now);
        }
        assert!(!t.expired(t.expiry), "a token is valid at its own expiry");
        // Only a token whose expiry plus the skew reaches the end of time never expires.
        assert!(t.expired(u64::MAX) || t.expiry >= u64::MAX - sas::MAX_CLOCK_SKEW_SECS);
        let res = t.resource();
        let _ = sas::scope_covers(&res, "localhost:8443", &segments);
        let _ = sas::scope_covers(&res, resource, &segments);
    }

    // Sign, then parse and verify: the round trip holds for any resource and policy name.
    let policy = segments.first().copied();
    let expiry = u64::try_from(data.len()).unwrap_or(0).wrapping_mul(7919);
    let signed = sas::sign(resource, &Secret::new(KEY), policy, expiry).expect("a valid key signs");
    let t = Token::parse(signed.expose()).expect("a signed token parses");
    assert!(t.signed_with(KEY), "a signed token verifies");
    assert_eq!(t.resource(), resource, "the resource survives encoding");
    assert_eq!(t.expiry, expiry);
    assert_eq!(t.key_name.as_deref(), policy.filter(|p| !p.is_empty()));
    let host = resource.split('/').next().unwrap_or("");
    if !host.is_empty() && !resource.ends_with('/') && resource.split('/').all(|s| !s.is_empty()) {
        let own: Vec<&str> = resource.split('/').skip(1).collect();
        assert!(
            sas::scope_covers(resource, host, &own),
            "a resource covers itself"
        );
    }
}

/// The twin the query target evaluates against: every JSON type, nesting, arrays, `$` members.
fn twin() -> Value {
    json!({
        "deviceId": "sensor-01",
        "moduleId": "m1",
        "etag": "AAAAAAAAAAE=",
        "version": 4,
        "status": "enabled",
        "statusReason": null,
        "capabilities": {"iotEdge": false},
        "tags": {
            "environment": "prod",
            "location": {"region": "US", "plant": "Redmond43", "floor": 3},
            "weight": 2.5,
            "big": 4503599627370495_i64,
            "neg": -1,
            "retired": false,
            "list": [1, "two", {"three": 3}, null],
            "empty": {},
            "unicode": "ü€😀"
        },
        "properties": {
            "desired": {"telemetry": {"interval": 30}, "$version": 3},
            "reported": {"firmware": "1.4.2", "battery": 81, "$version": 7}
        },
        "configurations": {"fw-rollout.v2": {"status": "Applied"}}
    })
}

/// Query text: parsing never panics or overflows the stack, and a parsed query evaluates,
/// projects and counts on a twin without panicking. Targeting conditions share the grammar.
pub fn query(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let twin = twin();
    match query::parse(sql) {
        Ok(q) => {
            let matched = q.matches(&twin);
            let row = q.project(&twin);
            if q.is_count() {
                assert!(q.count_row(u64::from(matched)).is_some());
            } else {
                assert!(q.count_row(0).is_none());
                assert!(row.is_object(), "a row is an object: {row}");
            }
            let _ = q.matches(&json!({}));
            let _ = q.project(&json!({"deviceId": "x"}));
        }
        Err(e) => {
            if let Some(offset) = e.offset() {
                assert!(offset <= sql.len(), "error offset {offset} past the end");
            }
            let _ = e.to_string();
        }
    }
    if let Ok(c) = query::parse_condition(sql) {
        let _ = c.matches(&twin);
    }
}
