//! Hostile HTTP against the emulator binary: malformed and mistyped JSON, oversize bodies, strange
//! and percent-encoded IDs, path traversal, bad api-versions, garbage headers, bogus continuation
//! tokens, unknown routes and wrong methods. Each answer is IoT Hub's error (status,
//! `iothub-errorcode`, legacy body), never a 500, a hang or a crash; after each group a normal
//! request still succeeds.
//!
//! Requests whose bytes reqwest would normalise or refuse (`..` segments, raw non-UTF-8 header
//! values, lying `Content-Length`s) go through [`send_raw`], a minimal HTTP/1.1 client over TLS.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{API, Emulator, Resp, seg};

/// Asserts an IoT Hub error answer: status, `iothub-errorcode` and the legacy body naming the code.
#[track_caller]
fn assert_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!((r.status, r.code()), (status, Some(code)), "{what}: {r:?}");
    let message = r.body["Message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("ErrorCode:{code};")),
        "{what}: {r:?}"
    );
    let exception = r.body["ExceptionMessage"].as_str().unwrap_or_default();
    assert!(exception.starts_with("Tracking ID:"), "{what}: {r:?}");
}

/// The emulator still serves: a device write and read succeed.
async fn assert_still_serving(hub: &Emulator) {
    let id = format!("alive-{}", rand_suffix());
    hub.create_device(&id).await;
    let r = hub.get(&format!("/devices/{id}")).await;
    assert_eq!(r.status, 200, "the emulator stopped serving: {r:?}");
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A raw HTTP/1.1 exchange over TLS: what was answered, as status, lower-cased headers and body.
struct RawResp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    #[track_caller]
    fn assert_error(&self, status: u16, code: &str, what: &str) {
        let body = self.json();
        assert_eq!(
            (self.status, self.header("iothub-errorcode")),
            (status, Some(code)),
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            body["Message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("ErrorCode:{code};"))),
            "{what}: {body}"
        );
    }
}

/// Sends `head` (request line and headers, without the final blank line; `Host` and
/// `Connection: close` are added) and `body` exactly as given, and reads the answer until the
/// server closes. Ten seconds at most: a hang fails the test.
async fn send_raw(hub: &Emulator, head: &[u8], body: &[u8]) -> Option<RawResp> {
    tokio::time::timeout(Duration::from_secs(10), exchange(hub, head, body, false))
        .await
        .expect("the emulator answered within 10 s")
}

/// As [`send_raw`], but closes the sending side after the body (a client that gives up).
async fn send_raw_and_close(hub: &Emulator, head: &[u8], body: &[u8]) -> Option<RawResp> {
    tokio::time::timeout(Duration::from_secs(10), exchange(hub, head, body, true))
        .await
        .expect("the emulator answered within 10 s")
}

async fn exchange(hub: &Emulator, head: &[u8], body: &[u8], close: bool) -> Option<RawResp> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&hub.ca_path).expect("CA file") {
        roots.add(cert.expect("certificate")).expect("trusting");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let port = hub.host.rsplit(':').next().expect("port");
    let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .expect("connecting");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").expect("server name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let mut request = head.to_vec();
    request.extend_from_slice(
        format!("\r\nHost: {}\r\nConnection: close\r\n\r\n", hub.host).as_bytes(),
    );
    request.extend_from_slice(body);
    // The server may answer (and close) before reading everything, as it does for oversize
    // bodies: a failed write is fine as long as an answer can be read.
    let _ = tls.write_all(&request).await;
    let _ = tls.flush().await;
    if close {
        let _ = tls.shutdown().await;
    }
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    parse_response(&answer)
}

fn parse_response(bytes: &[u8]) -> Option<RawResp> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Some(RawResp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// A request line plus the owner's Authorization header.
fn head(hub: &Emulator, method: &str, target: &str, extra: &[&str]) -> Vec<u8> {
    let mut h = format!(
        "{method} {target} HTTP/1.1\r\nAuthorization: {}",
        hub.owner_token()
    );
    for e in extra {
        h.push_str("\r\n");
        h.push_str(e);
    }
    h.into_bytes()
}

async fn send_body(hub: &Emulator, method: Method, path: &str, body: &[u8]) -> Resp {
    let sep = if path.contains('?') { '&' } else { '?' };
    hub.raw(
        method,
        &format!("{path}{sep}{API}"),
        Some(body.to_vec()),
        &[("authorization", hub.owner_token())],
    )
    .await
}

#[tokio::test]
async fn malformed_and_mistyped_json_is_a_400_deserialization_error() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(Method, &str, Vec<u8>)> = vec![
        (Method::PUT, "/devices/d2", b"{not json".to_vec()),
        (Method::PUT, "/devices/d2", b"".to_vec()),
        (Method::PUT, "/devices/d2", b"null".to_vec()),
        (Method::PUT, "/devices/d2", br#"{"deviceId": 5}"#.to_vec()),
        (
            Method::PUT,
            "/devices/d2",
            br#"{"status": ["enabled"]}"#.to_vec(),
        ),
        (
            Method::PUT,
            "/devices/d2",
            br#"{"authentication": "sas"}"#.to_vec(),
        ),
        (
            Method::PUT,
            "/devices/d2",
            b"{\"deviceId\": \"d\xff\"}".to_vec(),
        ),
        (Method::PUT, "/devices/d2", deep.clone().into_bytes()),
        (Method::PUT, "/devices/d1/modules/m", b"[1,2".to_vec()),
        (
            Method::PUT,
            "/devices/d1/modules/m",
            br#"{"moduleId": {}}"#.to_vec(),
        ),
        (
            Method::PATCH,
            "/twins/d1",
            b"{\"tags\": {\"a\": 1}".to_vec(),
        ),
        (Method::PATCH, "/twins/d1", b"[1]".to_vec()),
        (Method::PATCH, "/twins/d1", b"\"tags\"".to_vec()),
        (Method::PATCH, "/twins/d1", deep.clone().into_bytes()),
        (Method::PUT, "/twins/d1", b"".to_vec()),
        (Method::POST, "/devices/query", br#"{"query": 5}"#.to_vec()),
        (
            Method::POST,
            "/devices/query",
            br#"{"query": null}"#.to_vec(),
        ),
        (
            Method::POST,
            "/devices/query",
            br#"["SELECT * FROM devices"]"#.to_vec(),
        ),
        (
            Method::POST,
            "/devices/query",
            b"SELECT * FROM devices".to_vec(),
        ),
        (
            Method::POST,
            "/devices",
            br#"{"id": "x", "importMode": "create"}"#.to_vec(),
        ),
        (
            Method::POST,
            "/devices",
            br#"[{"id": 1, "importMode": "create"}]"#.to_vec(),
        ),
        (
            Method::POST,
            "/devices",
            br#"[{"id": "x", "importMode": 7}]"#.to_vec(),
        ),
    ];
    for (method, path, body) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        let r = send_body(&hub, method.clone(), path, &body).await;
        assert_error(
            &r,
            400,
            "DeserializationError",
            &format!("{method} {path} {shown}"),
        );
    }
    // Well-formed JSON whose shape IoT Hub refuses as an argument.
    for (method, path, body) in [
        (Method::PATCH, "/twins/d1", json!({"tags": 5})),
        (Method::PATCH, "/twins/d1", json!({"properties": "x"})),
        (
            Method::PATCH,
            "/twins/d1",
            json!({"properties": {"desired": [1]}}),
        ),
        (Method::PATCH, "/twins/d1", json!({"tags": {"a b": 1}})),
        (
            Method::PATCH,
            "/twins/d1",
            json!({"tags": {"n": 9_007_199_254_740_993_i64}}),
        ),
        (Method::POST, "/devices", json!([])),
    ] {
        let r = send_body(&hub, method.clone(), path, body.to_string().as_bytes()).await;
        assert_error(
            &r,
            400,
            "ArgumentInvalid",
            &format!("{method} {path} {body}"),
        );
    }
    // Nesting deeper than IoT Hub's ten levels, inside serde's limit.
    let mut nested = json!(1);
    for _ in 0..60 {
        nested = json!({ "k": nested });
    }
    let r = hub.patch("/twins/d1", json!({"tags": nested}), None).await;
    assert_error(&r, 400, "ArgumentInvalid", "tags nested 60 deep");
    // The failed writes changed nothing.
    let t = hub.get("/twins/d1").await;
    assert_eq!(t.body["version"], 2, "{t:?}");
    assert_still_serving(&hub).await;
}

#[tokio::test]
async fn oversize_bodies_are_413_message_too_large() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    let big = format!(r#"{{"tags": {{"a": "{}"}}}}"#, "x".repeat(300 * 1024));
    let r = send_body(&hub, Method::PATCH, "/twins/d1", big.as_bytes()).await;
    assert_error(&r, 413, "MessageTooLarge", "300 KB twin patch");
    let r = send_body(&hub, Method::PUT, "/devices/d2", big.as_bytes()).await;
    assert_error(&r, 413, "MessageTooLarge", "300 KB device");
    let huge_bulk = format!(r#"[{{"id": "{}"}}]"#, "x".repeat(5 * 1024 * 1024));
    let r = send_body(&hub, Method::POST, "/devices", huge_bulk.as_bytes()).await;
    assert_error(&r, 413, "MessageTooLarge", "5 MB bulk");
    // A Content-Length that promises 10 GB: the emulator reads at most the limit (it answers 413
    // once the limit is passed, not before, so that honest clients finish sending and read the
    // answer); a client that sends less and gives up costs it nothing lasting.
    let _ = send_raw_and_close(
        &hub,
        &head(
            &hub,
            "PATCH",
            &format!("/twins/d1?{API}"),
            &[
                "Content-Type: application/json",
                "Content-Length: 10000000000",
            ],
        ),
        b"{}",
    )
    .await;
    // A body shorter than its Content-Length, then the connection closes: no answer is owed,
    // but the emulator must not stop serving.
    let _ = send_raw_and_close(
        &hub,
        &head(
            &hub,
            "PATCH",
            &format!("/twins/d1?{API}"),
            &["Content-Type: application/json", "Content-Length: 100"],
        ),
        b"{\"tags\"",
    )
    .await;
    assert_eq!(hub.get("/twins/d1").await.body["version"], 2);
    assert_still_serving(&hub).await;
}

#[tokio::test]
async fn strange_and_percent_encoded_ids_are_ids_or_400s() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    // `%24edgeAgent` is `$edgeAgent`: on a device that is no edge device it does not exist.
    let r = hub.get("/devices/d1/modules/%24edgeAgent").await;
    assert_error(&r, 404, "ModuleNotFound", "%24edgeAgent on a leaf");
    let r = hub
        .put(
            "/devices/d1/modules/%24edgeAgent",
            json!({"moduleId": "$edgeAgent"}),
            None,
        )
        .await;
    // Creating a `$` module ID is a 400 on live hubs, system module names included.
    assert_error(&r, 400, "ArgumentInvalid", "PUT %24edgeAgent");
    let r = hub
        .put("/devices/d1/modules/%24custom", json!({}), None)
        .await;
    assert_error(&r, 400, "ArgumentInvalid", "reserved $ module ID");
    // IDs the SDKs percent-encode round-trip; the path segment, not the body, names the device.
    let odd = "a:b.c+d%e#f*g?h!i(j)k,l=m@n;o$p'q";
    let r = hub
        .put(&format!("/devices/{}", seg(odd)), json!({}), None)
        .await;
    assert_eq!(
        (r.status, r.body["deviceId"].as_str()),
        (200, Some(odd)),
        "{r:?}"
    );
    assert_eq!(hub.get(&format!("/devices/{}", seg(odd))).await.status, 200);
    let r = hub
        .put("/devices/d9", json!({"deviceId": "someone-else"}), None)
        .await;
    assert!(r.status == 400 || r.body["deviceId"] == "d9", "{r:?}");
    // Encoded characters that no ID may hold, and IDs over 128 characters.
    for (what, path) in [
        ("%2F", "/devices/a%2Fb".to_string()),
        (
            "%2F into a module path",
            "/devices/d1%2Fmodules%2Fm".to_string(),
        ),
        ("%00", "/devices/a%00b".to_string()),
        ("%20", "/devices/a%20b".to_string()),
        ("%0A", "/devices/a%0Ab".to_string()),
        ("unicode", "/devices/%C3%BC".to_string()),
        ("129 characters", format!("/devices/{}", "a".repeat(129))),
        ("10 KB", format!("/devices/{}", "a".repeat(10_000))),
        ("module %2F", "/devices/d1/modules/x%2Fy".to_string()),
        (
            "module 129",
            format!("/devices/d1/modules/{}", "m".repeat(129)),
        ),
    ] {
        let r = hub.put(&path, json!({}), None).await;
        assert_error(&r, 400, "ArgumentInvalid", &format!("PUT {what}"));
        let r = hub.get(&path).await;
        assert!(
            matches!(
                (r.status, r.code()),
                (400, Some("ArgumentInvalid"))
                    | (404, Some("DeviceNotFound"))
                    | (404, Some("ModuleNotFound"))
            ),
            "GET {what}: {r:?}"
        );
    }
    // A twin is never created by a write, so an impossible ID is simply not found.
    let r = hub.put("/twins/a%00", json!({}), None).await;
    assert_error(&r, 404, "DeviceNotFound", "PUT /twins/a%00");
    // Percent sequences that do not decode to UTF-8, or do not decode at all.
    for path in [
        "/devices/%FF",
        "/devices/a%C3",
        "/devices/%ED%A0%80",
        "/devices/d1/modules/%FE%FF",
        "/twins/%FF",
        "/twins/d1/modules/%C0%AF",
    ] {
        for method in ["GET", "PUT", "PATCH", "DELETE"] {
            let r = send_raw(
                &hub,
                &head(
                    &hub,
                    method,
                    &format!("{path}?{API}"),
                    &[
                        "If-Match: *",
                        "Content-Type: application/json",
                        "Content-Length: 2",
                    ],
                ),
                b"{}",
            )
            .await
            .expect("an answer");
            if r.status == 405 {
                r.assert_error(405, "InvalidOperation", &format!("{method} {path}"));
            } else {
                r.assert_error(400, "ArgumentInvalid", &format!("{method} {path}"));
            }
        }
    }
    for path in ["/devices/%", "/devices/%G1", "/devices/a%2"] {
        let r = send_raw(&hub, &head(&hub, "GET", &format!("{path}?{API}"), &[]), b"")
            .await
            .expect("an answer");
        assert!(r.status == 400 || r.status == 404, "{path}: {}", r.status);
        assert!(
            r.header("iothub-errorcode").is_some(),
            "{path}: {:?}",
            r.headers
        );
    }
    assert_still_serving(&hub).await;
}

#[tokio::test]
async fn list_parameters_that_are_no_numbers_are_400s() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    for top in ["abc", "1.5", "99999999999999999999", "%FF"] {
        let r = hub.get(&format!("/devices?top={top}")).await;
        assert_error(&r, 400, "ArgumentInvalid", &format!("top={top}"));
    }
    // Numbers outside 1..=1000 mean 1000, as on IoT Hub.
    for top in ["-5", "0", "5000"] {
        let r = hub.get(&format!("/devices?top={top}")).await;
        assert_eq!(r.body.as_array().map(Vec::len), Some(1), "top={top}: {r:?}");
    }
    assert_still_serving(&hub).await;
}

#[tokio::test]
async fn path_traversal_reaches_nothing_it_should_not() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    let no_auth = |method: &str, target: &str| format!("{method} {target} HTTP/1.1").into_bytes();
    for target in [
        format!("/devices/../_emulator/stats?{API}"),
        format!("/devices/%2e%2e/_emulator/stats?{API}"),
        format!("/devices/%2E%2E%2F_emulator%2Fstats?{API}"),
        format!("/twins/d1/../../_emulator/stats?{API}"),
        "/devices/../_emulator/stats".to_string(),
        "/./_emulator/stats".to_string(),
        "/%5Femulator/stats".to_string(),
        "//_emulator/stats".to_string(),
        "/_emulator/./stats".to_string(),
        "/_emulator/stats/..".to_string(),
        "/_emulator/twins/d1/reported/../../../stats".to_string(),
    ] {
        // Unauthenticated: never the stats, never a 200.
        let r = send_raw(&hub, &no_auth("GET", &target), b"")
            .await
            .expect("an answer");
        assert_ne!(
            r.status,
            200,
            "{target}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            matches!(r.status, 400 | 401 | 404),
            "{target}: {}",
            r.status
        );
        assert!(
            r.header("iothub-errorcode").is_some(),
            "{target}: {:?}",
            r.headers
        );
        assert!(r.json().get("total").is_none(), "{target} leaked stats");
    }
    // With the owner's token, `..` is no segment to climb: it is an ID, or no route at all.
    let r = send_raw(
        &hub,
        &head(&hub, "GET", &format!("/devices/%2e%2e?{API}"), &[]),
        b"",
    )
    .await
    .expect("an answer");
    r.assert_error(404, "DeviceNotFound", "GET /devices/%2e%2e");
    let r = send_raw(
        &hub,
        &head(&hub, "GET", &format!("/devices/d1/..?{API}"), &[]),
        b"",
    )
    .await
    .expect("an answer");
    assert!(matches!(r.status, 404), "{}", r.status);
    let r = send_raw(
        &hub,
        &head(&hub, "GET", &format!("/twins/d2/../d1?{API}"), &[]),
        b"",
    )
    .await
    .expect("an answer");
    r.assert_error(404, "NotFound", "/twins/d2/../d1 is no route");
    // A token scoped to one device does not reach another through `..` or `%2F`.
    let d1_token = hub.token(
        Some("iothubowner"),
        &hub.owner_key,
        Some(&format!("{}/devices/d1", hub.host)),
        600,
    );
    hub.create_device("d2").await;
    for target in [
        format!("/devices/d1/../d2?{API}"),
        format!("/devices/d1%2F..%2Fd2?{API}"),
        format!("/devices/d1%2F%2E%2E%2Fd2?{API}"),
        format!("/twins/d1/../../twins/d2?{API}"),
    ] {
        let h = format!("GET {target} HTTP/1.1\r\nAuthorization: {d1_token}");
        let r = send_raw(&hub, h.as_bytes(), b"").await.expect("an answer");
        assert!(
            matches!(r.status, 400 | 401 | 404),
            "{target}: {}",
            r.status
        );
        assert!(
            r.json().get("deviceId").is_none(),
            "{target} served a device: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_still_serving(&hub).await;
}

#[tokio::test]
async fn bad_api_versions_are_400_invalid_protocol_version() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    for query in [
        "",
        "?api-version=",
        "?api-version=2021-04-12%00",
        "?api-version=2021-04-12%20",
        "?api-version=2099-01-01",
        "?api-version=%FF",
        "?API-VERSION=2021-04-12",
        "?api-version",
        "?api-version=2021-04-12&api-version=bogus",
        "?=&&&=",
    ] {
        let r = send_raw(
            &hub,
            &head(&hub, "GET", &format!("/devices/d1{query}"), &[]),
            b"",
        )
        .await
        .expect("an answer");
        // The first api-version counts; a duplicate after a good one is ignored.
        if query.starts_with("?api-version=2021-04-12&") {
            assert_eq!(r.status, 200, "{query}");
        } else {
            r.assert_error(400, "InvalidProtocolVersion", query);
        }
    }
    assert_still_serving(&hub).await;
}

#[tokio::test]
async fn garbage_headers_never_bypass_preconditions_or_crash() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    let patch = br#"{"tags": {"x": 1}}"#;
    let long_etag = format!("If-Match: \"{}\"", "A".repeat(16 * 1024));
    for (what, header) in [
        ("unterminated quote", "If-Match: \"AAAA".to_string()),
        ("weak etag", "If-Match: W/\"xyz\"".to_string()),
        ("list", "If-Match: \"a\", \"b\"".to_string()),
        ("control characters", "If-Match: \"\x01\x02\"".to_string()),
        ("16 KB", long_etag),
    ] {
        let mut h = head(
            &hub,
            "PATCH",
            &format!("/twins/d1?{API}"),
            &[
                "Content-Type: application/json",
                &format!("Content-Length: {}", patch.len()),
            ],
        );
        h.extend_from_slice(b"\r\n");
        h.extend_from_slice(header.as_bytes());
        let r = send_raw(&hub, &h, patch).await.expect("an answer");
        if r.status == 400 {
            // hyper refuses control characters in header values before routing.
            assert_eq!(what, "control characters");
        } else {
            r.assert_error(412, "PreconditionFailed", what);
        }
    }
    // A value that is not text (obs-text bytes) is no etag, and no licence to write blindly.
    let mut h = head(
        &hub,
        "PATCH",
        &format!("/twins/d1?{API}"),
        &[
            "Content-Type: application/json",
            &format!("Content-Length: {}", patch.len()),
        ],
    );
    h.extend_from_slice(b"\r\nIf-Match: \"\xff\xfe\"");
    let r = send_raw(&hub, &h, patch).await.expect("an answer");
    r.assert_error(412, "PreconditionFailed", "non-UTF-8 If-Match");
    let mut h = head(&hub, "DELETE", &format!("/devices/d1?{API}"), &[]);
    h.extend_from_slice(b"\r\nIf-Match: \"\xff\"");
    let r = send_raw(&hub, &h, b"").await.expect("an answer");
    r.assert_error(412, "PreconditionFailed", "non-UTF-8 If-Match on delete");
    assert_eq!(
        hub.get("/twins/d1").await.body["version"],
        2,
        "no write happened"
    );

    // Headers too large for the HTTP layer: refused there, and the emulator keeps serving.
    let huge = format!("X-Junk: {}", "j".repeat(2 * 1024 * 1024));
    let r = send_raw(
        &hub,
        &head(&hub, "GET", &format!("/devices/d1?{API}"), &[&huge]),
        b"",
    )
    .await;
    if let Some(r) = r {
        assert!(r.status == 431 || r.status == 400, "{}", r.status);
    }
    let many: Vec<String> = (0..500).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = send_raw(
        &hub,
        &head(&hub, "GET", &format!("/devices/d1?{API}"), &many),
        b"",
    )
    .await;
    if let Some(r) = r {
        assert!(
            r.status == 431 || r.status == 400 || r.status == 200,
            "{}",
            r.status
        );
    }
    // Authorization that is not text is a missing token.
    let h =
        format!("GET /devices/d1?{API} HTTP/1.1\r\nAuthorization: SharedAccessSignature \u{fffd}")
            .into_bytes();
    let r = send_raw(&hub, &h, b"").await.expect("an answer");
    r.assert_error(401, "IotHubUnauthorizedAccess", "non-ASCII Authorization");
    // The content type is not checked (the SDKs always send JSON): a JSON body under another
    // type is read as JSON, and a non-JSON body under the JSON type is a deserialization error.
    let r = hub
        .raw(
            Method::PATCH,
            &format!("/twins/d1?{API}"),
            None,
            &[
                ("authorization", hub.owner_token()),
                ("content-type", "text/plain".to_string()),
            ],
        )
        .await;
    assert_error(&r, 400, "DeserializationError", "empty text/plain body");
    let mut h = head(
        &hub,
        "PATCH",
        &format!("/twins/d1?{API}"),
        &[
            "Content-Type: application/xml",
            &format!("Content-Length: {}", patch.len()),
        ],
    );
    h.extend_from_slice(b"");
    let r = send_raw(&hub, &h, patch).await.expect("an answer");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_still_serving(&hub).await;
}

#[tokio::test]
async fn query_paging_headers_that_make_no_sense_are_defaults_or_400s() {
    let hub = Emulator::start();
    let rows: Vec<Value> = (0..100)
        .map(|i| json!({"id": format!("q{i:03}"), "importMode": "create"}))
        .collect();
    let r = hub
        .call(Method::POST, "/devices", Some(Value::Array(rows)), &[])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let rows: Vec<Value> = (100..130)
        .map(|i| json!({"id": format!("q{i:03}"), "importMode": "create"}))
        .collect();
    assert_eq!(
        hub.call(Method::POST, "/devices", Some(Value::Array(rows)), &[])
            .await
            .status,
        200
    );
    let q = json!({"query": "SELECT * FROM devices"});
    for count in [
        "-5",
        "abc",
        "0",
        "",
        "1e3",
        "99999999999999999999999",
        " 7 ",
    ] {
        let r = hub
            .call(
                Method::POST,
                "/devices/query",
                Some(q.clone()),
                &[("x-ms-max-item-count", count)],
            )
            .await;
        assert_eq!(r.status, 200, "x-ms-max-item-count {count:?}: {r:?}");
        let n = r.body.as_array().map(Vec::len);
        let expected = if count == " 7 " { 7 } else { 100 };
        assert_eq!(n, Some(expected), "x-ms-max-item-count {count:?}");
        assert!(r.header("x-ms-continuation").is_some());
    }
    let first = hub
        .call(
            Method::POST,
            "/devices/query",
            Some(q.clone()),
            &[("x-ms-max-item-count", "10")],
        )
        .await;
    let token = first
        .header("x-ms-continuation")
        .expect("a token")
        .to_string();
    for (what, bogus) in [
        ("garbage", "not-a-token".to_string()),
        ("base64 of nothing", "AAAA".to_string()),
        ("truncated", token[..token.len() / 2].to_string()),
        ("padded", format!("{token}==")),
        ("huge", "A".repeat(64 * 1024)),
    ] {
        let r = hub
            .call(
                Method::POST,
                "/devices/query",
                Some(q.clone()),
                &[("x-ms-continuation", &bogus)],
            )
            .await;
        if r.status != 431 {
            assert_error(&r, 400, "ArgumentInvalid", what);
        }
    }
    // A token from another query is refused rather than mixed.
    let other = json!({"query": "SELECT deviceId FROM devices"});
    let r = hub
        .call(
            Method::POST,
            "/devices/query",
            Some(other),
            &[("x-ms-continuation", &token)],
        )
        .await;
    assert_error(&r, 400, "ArgumentInvalid", "token of another query");
    // A token that is not text is not silently dropped (which would restart the query).
    let body = q.to_string();
    let mut h = head(
        &hub,
        "POST",
        &format!("/devices/query?{API}"),
        &[
            "Content-Type: application/json",
            &format!("Content-Length: {}", body.len()),
        ],
    );
    h.extend_from_slice(b"\r\nx-ms-continuation: \xff\xfe");
    let r = send_raw(&hub, &h, body.as_bytes())
        .await
        .expect("an answer");
    r.assert_error(400, "ArgumentInvalid", "non-UTF-8 continuation");
    // The right token still works.
    let r = hub
        .call(
            Method::POST,
            "/devices/query",
            Some(q),
            &[
                ("x-ms-continuation", &token),
                ("x-ms-max-item-count", "500"),
            ],
        )
        .await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(100), "{r:?}");
    // Query texts that are no query.
    for text in [
        "",
        "SELECT",
        "SELECT * FROM",
        "DROP TABLE devices",
        "SELECT * FROM devices WHERE (((",
        "\u{0}",
    ] {
        let r = hub
            .call(
                Method::POST,
                "/devices/query",
                Some(json!({"query": text})),
                &[],
            )
            .await;
        assert_error(&r, 400, "ArgumentInvalid", text);
    }
    let deep = format!(
        "SELECT * FROM devices WHERE {}a = 1{}",
        "(".repeat(4000),
        ")".repeat(4000)
    );
    let r = hub
        .call(
            Method::POST,
            "/devices/query",
            Some(json!({"query": deep})),
            &[],
        )
        .await;
    assert_error(&r, 400, "ArgumentInvalid", "4000 nested parentheses");
    let r = hub
        .call(
            Method::POST,
            "/devices/query",
            Some(json!({"query": "x".repeat(9000)})),
            &[],
        )
        .await;
    assert_error(&r, 412, "PreconditionFailed", "over 8 KB of query");
    assert_still_serving(&hub).await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_iot_hub_errors() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    for path in [
        "/",
        "/nothing",
        "/devices/d1/modules/m/extra",
        "/twins/d1/modules",
        "/statistics/devices",
        "/jobs/v2",
        "/_emulator",
        "/_emulator/keys",
    ] {
        let r = hub.get(path).await;
        assert_error(&r, 404, "NotFound", path);
    }
    for (method, path) in [
        (Method::DELETE, "/devices"),
        (Method::PATCH, "/devices/d1"),
        (Method::POST, "/devices/d1"),
        (Method::POST, "/twins/d1"),
        (Method::DELETE, "/twins/d1"),
        (Method::PUT, "/devices/d1/modules"),
        (Method::GET, "/_emulator/twins/d1/reported"),
        (Method::from_bytes(b"FROB").expect("method"), "/devices/d1"),
    ] {
        let r = hub.call(method.clone(), path, Some(json!({})), &[]).await;
        assert_error(&r, 405, "InvalidOperation", &format!("{method} {path}"));
    }
    // Not HTTP at all, after TLS: the connection is refused, the emulator lives on.
    let _ = send_raw(&hub, b"\x00\x01\x02 garbage", b"").await;
    let _ = send_raw(&hub, b"GET", b"").await;
    // Not TLS at all.
    let port = hub.host.rsplit(':').next().expect("port").to_string();
    let mut tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .expect("connecting");
    let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut sink)).await;
    assert_still_serving(&hub).await;
}
