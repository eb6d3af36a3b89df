//! The emulator's MQTT device side through the real binary, with twinops' own MQTT client over
//! TLS: CONNECT authentication, twin GET before SUBSCRIBE, reported patches, desired-change
//! notifications from every REST writer, one connection per identity, presence, keep-alive,
//! `--mqtt off` and a busy port.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::mqtt::{WAIT, body, key_of, now, who};
use crate::support::{Emulator, PATIENCE, eventually};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use twinops_emulator::mqtt::client::{Client, ConnectError, device_connect, tls_trusting};
use twinops_emulator::mqtt::codec::{Packet, Publish};
use twinops_emulator::mqtt::credentials::Who;
use twinops_emulator::mqtt::topic;
use twinops_iothub::connection_string::Secret;

fn mqtt_hub() -> Emulator {
    Emulator::start_with(&["--mqtt", "127.0.0.1:0"])
}

async fn tls(hub: &Emulator) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read_to_string(&hub.ca_path).expect("the CA file");
    tls_trusting(&pem).expect("a TLS config")
}

async fn connect_as(
    hub: &Emulator,
    who: &Who,
    key: &Secret,
    expiry: u64,
) -> Result<Client, ConnectError> {
    let port = hub.mqtt_port().await;
    let connect = device_connect("localhost", who, key, expiry).expect("signing");
    Client::connect(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "localhost",
        tls(hub).await,
        &connect,
    )
    .await
}

async fn connect(hub: &Emulator, who: &Who, key: &Secret) -> Client {
    connect_as(hub, who, key, now() + 3600)
        .await
        .expect("connecting")
}

/// The next PUBLISH from the hub (other packets are skipped).
async fn next_publish(c: &mut Client) -> Publish {
    loop {
        match tokio::time::timeout(WAIT, c.recv()).await {
            Ok(Some(Packet::Publish(p))) => return p,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the hub closed the connection"),
            Err(_) => panic!("no PUBLISH within {WAIT:?}"),
        }
    }
}

/// The next packet of any kind.
async fn next_packet(c: &mut Client) -> Option<Packet> {
    tokio::time::timeout(WAIT, c.recv())
        .await
        .expect("a packet or a close in time")
}

#[tokio::test]
async fn wrong_key_expired_token_and_unknown_identity_get_connack_5() {
    let hub = mqtt_hub();
    let d = hub.create_device("d1").await;
    let key = key_of(&d);
    let wrong = Secret::new("cGFzc3dvcmRwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ=");
    for (who, key, expiry) in [
        (who("d1", None), &wrong, now() + 3600),
        (who("d1", None), &key, now() - 301),
        (who("nobody", None), &key, now() + 3600),
    ] {
        match connect_as(&hub, &who, key, expiry).await {
            Err(ConnectError::Refused(5)) => {}
            Err(e) => panic!("{who:?}: {e}"),
            Ok(_) => panic!("{who:?} was let in"),
        }
    }
    // Inside the five minutes of clock skew the token still works.
    connect_as(&hub, &who("d1", None), &key, now() - 60)
        .await
        .expect("a token within the skew");
}

#[tokio::test]
async fn disabled_devices_cannot_connect() {
    let hub = mqtt_hub();
    let d = hub.create_device("off").await;
    let r = hub
        .put(
            "/devices/off",
            json!({"deviceId": "off", "status": "disabled"}),
            Some("*"),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(matches!(
        connect_as(&hub, &who("off", None), &key_of(&d), now() + 60).await,
        Err(ConnectError::Refused(5))
    ));
}

#[tokio::test]
async fn twin_get_is_answered_before_any_subscribe() {
    let hub = mqtt_hub();
    hub.create_device("d").await;
    let m = hub.create_module("d", "m").await;
    let r = hub
        .patch(
            "/twins/d/modules/m",
            json!({"properties": {"desired": {"telemetryInterval": 122}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let mut c = connect(&hub, &who("d", Some("m")), &key_of(&m)).await;
    c.publish("$iothub/twin/GET/?$rid=abc-1", b"")
        .await
        .expect("publish");
    let p = next_publish(&mut c).await;
    assert_eq!(p.topic, "$iothub/twin/res/200/?$rid=abc-1");
    assert_eq!(
        body(&p),
        json!({"desired": {"telemetryInterval": 122, "$version": 2}, "reported": {"$version": 1}})
    );
}

#[tokio::test]
async fn reported_patch_moves_twin_etag_and_reported_version() {
    let hub = mqtt_hub();
    let d = hub.create_device("d").await;
    let before = hub.get("/twins/d").await.body;
    let mut c = connect(&hub, &who("d", None), &key_of(&d)).await;
    c.subscribe(&[topic::TWIN_RESPONSES]).await.expect("sub");
    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=7",
        br#"{"temperature": 21.5, "fw": {"v": "1.2"}}"#,
    )
    .await
    .expect("publish");
    let p = next_publish(&mut c).await;
    assert_eq!(p.topic, "$iothub/twin/res/204/?$rid=7&$version=2");
    let after = hub.get("/twins/d").await.body;
    assert_ne!(after["etag"], before["etag"]);
    assert_eq!(after["version"], before["version"].as_i64().unwrap() + 1);
    assert_eq!(after["properties"]["reported"]["$version"], 2);
    assert_eq!(after["properties"]["reported"]["temperature"], 21.5);
    assert_eq!(after["properties"]["reported"]["fw"]["v"], "1.2");

    c.publish("$iothub/twin/PATCH/properties/reported/?$rid=8", b"{oops")
        .await
        .expect("publish");
    assert_eq!(
        next_publish(&mut c).await.topic,
        "$iothub/twin/res/400/?$rid=8"
    );
    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=9",
        br#"{"bad.key": 1}"#,
    )
    .await
    .expect("publish");
    assert_eq!(
        next_publish(&mut c).await.topic,
        "$iothub/twin/res/400/?$rid=9"
    );
    assert_eq!(
        hub.get("/twins/d").await.body["properties"]["reported"]["$version"],
        2,
        "refused patches change nothing"
    );
}

#[tokio::test]
async fn desired_writes_from_patch_put_and_bulk_are_pushed_with_their_version() {
    let hub = mqtt_hub();
    let d = hub.create_device("d").await;
    let mut c = connect(&hub, &who("d", None), &key_of(&d)).await;
    c.subscribe(&[topic::DESIRED_CHANGES]).await.expect("sub");
    assert!(matches!(
        next_packet(&mut c).await,
        Some(Packet::SubAck { codes, .. }) if codes == [1]
    ));

    let r = hub
        .patch(
            "/twins/d",
            json!({"properties": {"desired": {"telemetryInterval": 200}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let p = next_publish(&mut c).await;
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
    assert_eq!(body(&p), json!({"telemetryInterval": 200, "$version": 2}));

    let r = hub
        .put(
            "/twins/d",
            json!({"properties": {"desired": {"a": 1, "b": {"c": 2}}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let p = next_publish(&mut c).await;
    assert_eq!(topic::version(&p.topic), Some(3));
    assert_eq!(
        body(&p),
        json!({"a": 1, "b": {"c": 2}, "telemetryInterval": null, "$version": 3}),
        "a replace sends the new desired and what it removed as null"
    );

    let rows =
        json!([{"id": "d", "importMode": "updateTwin", "properties": {"desired": {"a": null}}}]);
    let r = hub
        .call(reqwest::Method::POST, "/devices", Some(rows), &[])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let p = next_publish(&mut c).await;
    assert_eq!(body(&p), json!({"a": null, "$version": 4}));
}

#[tokio::test]
async fn clearing_desired_sends_every_key_as_null_and_leaves_the_merged_view_empty() {
    let hub = mqtt_hub();
    let d = hub.create_device("d").await;
    let r = hub
        .patch(
            "/twins/d",
            json!({"properties": {"desired": {"foo": 1, "bar": {"baz": 2, "tweedle": {"dee": 3}}}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut c = connect(&hub, &who("d", None), &key_of(&d)).await;
    c.subscribe(&[topic::DESIRED_CHANGES]).await.expect("sub");
    assert!(matches!(
        next_packet(&mut c).await,
        Some(Packet::SubAck { .. })
    ));
    c.publish("$iothub/twin/GET/?$rid=1", b"")
        .await
        .expect("GET");
    let mut view = body(&next_publish(&mut c).await)["desired"].clone();

    for if_match in [None, Some("*")] {
        let r = hub
            .patch(
                "/twins/d",
                json!({"properties": {"desired": null}}),
                if_match,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let p = next_publish(&mut c).await;
        let patch = body(&p);
        assert_eq!(topic::version(&p.topic), patch["$version"].as_i64());
        json_patch::merge(&mut view, &patch);
        view.as_object_mut().expect("an object").remove("$version");
        assert_eq!(view, json!({}), "the device's merged view after {patch}");
    }
}

#[tokio::test]
async fn a_second_connection_for_the_same_identity_closes_the_first() {
    let hub = mqtt_hub();
    let d = hub.create_device("d").await;
    let key = key_of(&d);
    let mut first = connect(&hub, &who("d", None), &key).await;
    let mut second = connect(&hub, &who("d", None), &key).await;
    assert_eq!(
        next_packet(&mut first).await,
        None,
        "the first connection is closed"
    );
    second
        .send(&Packet::PingReq)
        .await
        .expect("the second one works");
    assert_eq!(next_packet(&mut second).await, Some(Packet::PingResp));
}

#[tokio::test]
async fn connection_state_follows_the_connection_without_moving_etags() {
    let hub = mqtt_hub();
    let d = hub.create_device("d").await;
    let before = hub.get("/twins/d").await.body;
    assert_eq!(before["connectionState"], "Disconnected");
    let c = connect(&hub, &who("d", None), &key_of(&d)).await;
    let connected = poll(&hub, "Connected").await;
    assert_eq!(connected["etag"], before["etag"]);
    assert_eq!(connected["version"], before["version"]);
    assert_ne!(connected["lastActivityTime"], before["lastActivityTime"]);
    let identity = hub.get("/devices/d").await.body;
    assert_eq!(identity["connectionState"], "Connected");
    assert_eq!(identity["etag"], d["etag"]);
    assert_ne!(
        identity["connectionStateUpdatedTime"],
        "0001-01-01T00:00:00Z"
    );
    drop(c);
    poll(&hub, "Disconnected").await;
}

/// The twin of `d` once its `connectionState` is `state`.
async fn poll(hub: &Emulator, state: &str) -> Value {
    eventually(
        &format!("d's connectionState {state}"),
        PATIENCE,
        async || hub.get("/twins/d").await.body,
        |t| t["connectionState"] == state,
    )
    .await
}

#[tokio::test]
async fn telemetry_is_acknowledged_and_qos_2_closes_the_connection() {
    let hub = mqtt_hub();
    let d = hub.create_device("d").await;
    let mut c = connect(&hub, &who("d", None), &key_of(&d)).await;
    let id = c
        .publish("devices/d/messages/events/", b"{\"t\": 1}")
        .await
        .expect("publish");
    assert_eq!(next_packet(&mut c).await, Some(Packet::PubAck { id }));
    c.send(&Packet::Publish(Publish {
        topic: "devices/d/messages/events/".into(),
        qos: 2,
        id: Some(9),
        ..Publish::default()
    }))
    .await
    .expect("send");
    assert_eq!(next_packet(&mut c).await, None);
}

#[tokio::test]
async fn silence_past_one_and_a_half_keep_alives_closes_the_connection() {
    let hub = mqtt_hub();
    let d = hub.create_device("d").await;
    let port = hub.mqtt_port().await;
    let mut connect =
        device_connect("localhost", &who("d", None), &key_of(&d), now() + 60).expect("signing");
    connect.keep_alive = 1;
    let mut c = Client::connect(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "localhost",
        tls(&hub).await,
        &connect,
    )
    .await
    .expect("connecting");
    let started = std::time::Instant::now();
    assert_eq!(
        next_packet(&mut c).await,
        None,
        "silence closes the connection"
    );
    // A lower bound only: the hub must allow one and a half keep-alives (1.5 s) of silence.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
}

#[tokio::test]
async fn a_tls_1_2_only_client_connects() {
    let hub = mqtt_hub();
    let d = hub.create_device("d").await;
    let pem = std::fs::read(&hub.ca_path).expect("CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("PEM")).expect("trust");
    }
    let tls12 = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("TLS 1.2")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connect =
        device_connect("localhost", &who("d", None), &key_of(&d), now() + 60).expect("signing");
    Client::connect(
        SocketAddr::from(([127, 0, 0, 1], hub.mqtt_port().await)),
        "localhost",
        Arc::new(tls12),
        &connect,
    )
    .await
    .expect("a TLS 1.2 connection");
}

#[tokio::test]
async fn mqtt_off_serves_rest_only() {
    let hub = Emulator::start_with(&["--mqtt", "off"]);
    assert_eq!(hub.info().await, json!({"mqtt": null}));
    assert_eq!(hub.get("/devices/x").await.status, 404);
}

#[test]
fn a_busy_mqtt_port_is_a_warning_and_rest_still_serves() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let at = busy.local_addr().expect("addr").to_string();
    let mut child = Command::new(crate::support::BIN)
        .args(["--listen", "127.0.0.1:0", "--mqtt", &at])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut l = String::new();
        assert!(out.read_line(&mut l).expect("read") > 0, "{lines:?}");
        lines.push(l);
    }
    assert!(lines[0].starts_with("twinops emulator listening on https://localhost:"));
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(
        err.contains(&format!(
            "warning: MQTT over TLS not started: cannot listen on {at}"
        )),
        "{err}"
    );
    assert!(
        err.contains("devices connect over WebSockets on the HTTPS port only"),
        "{err}"
    );
    drop(busy);
}

/// The twin at `path` once `ok` holds for it.
async fn twin_until(hub: &Emulator, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(
        &format!("{path} with {what}"),
        PATIENCE,
        async || hub.get(path).await.body,
        ok,
    )
    .await
}

#[tokio::test]
async fn simulated_devices_echo_desired_values_and_offline_ones_stay_away() {
    let hub = Emulator::start_with(&[
        "--mqtt",
        "127.0.0.1:0",
        "--simulate-devices",
        "sim-*:100ms",
        "--simulate-offline",
        "sim-2",
    ]);
    for id in ["sim-1", "sim-2", "other"] {
        hub.create_device(id).await;
        let r = hub
            .patch(
                &format!("/twins/{id}"),
                json!({"properties": {"desired": {"telemetryInterval": 30}}}),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let echoed = |t: &Value, v: i64| t["properties"]["reported"]["telemetryInterval"] == v;
    let t = twin_until(&hub, "/twins/sim-1", "the echo of 30", |t| echoed(t, 30)).await;
    assert_eq!(t["connectionState"], "Connected");
    let r = hub
        .patch(
            "/twins/sim-1",
            json!({"properties": {"desired": {"telemetryInterval": 45}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    twin_until(&hub, "/twins/sim-1", "the echo of 45", |t| echoed(t, 45)).await;
    for id in ["sim-2", "other"] {
        let t = hub.get(&format!("/twins/{id}")).await.body;
        assert_eq!(t["connectionState"], "Disconnected", "{id}");
        assert_eq!(t["properties"]["reported"]["$version"], 1, "{id}");
    }
}
