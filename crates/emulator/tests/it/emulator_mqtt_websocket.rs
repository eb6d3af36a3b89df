//! MQTT over WebSockets on the emulator's HTTPS port, as IoT Hub serves it on 443 for devices
//! behind a firewall: `GET /$iothub/websocket` upgraded with the subprotocol `mqtt` over the
//! listener's TLS, then the same device side as on the MQTT port (authentication, twin GET,
//! reported patches, desired notifications, one connection per identity, presence), spoken here
//! with a plain WebSocket client and the emulator's MQTT codec.

use std::net::SocketAddr;

use crate::support::mqtt::{WAIT, body, key_of, now, who};
use crate::support::{Emulator, PATIENCE, eventually};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use twinops_emulator::mqtt::client::{Client, device_connect, tls_trusting};
use twinops_emulator::mqtt::codec::{self, Packet, Publish};
use twinops_emulator::mqtt::credentials::Who;
use twinops_emulator::mqtt::topic;
use twinops_iothub::connection_string::Secret;

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A device speaking MQTT in binary WebSocket frames.
struct WsDevice {
    ws: WebSocketStream<Tls>,
    /// Bytes received and not yet decoded (a packet may span frames).
    buf: Vec<u8>,
}

impl WsDevice {
    async fn send(&mut self, p: &Packet) {
        self.ws
            .send(Message::Binary(codec::encode(p).into()))
            .await
            .expect("sending a frame");
    }

    /// The next packet from the hub; `None` once it closed the WebSocket.
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if !self.buf.is_empty() {
                let mut rest: &[u8] = &self.buf;
                if let Ok(Some(p)) = codec::read(&mut rest, 1 << 20).await {
                    let used = self.buf.len() - rest.len();
                    self.buf.drain(..used);
                    return Some(p);
                }
            }
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame or a close in time")
            {
                Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn next_publish(&mut self) -> Publish {
        loop {
            match self.recv().await {
                Some(Packet::Publish(p)) => return p,
                Some(_) => continue,
                None => panic!("the hub closed the WebSocket"),
            }
        }
    }

    async fn publish(&mut self, topic: &str, payload: &[u8], id: u16) {
        self.send(&Packet::Publish(Publish {
            topic: topic.into(),
            qos: 1,
            id: Some(id),
            payload: payload.to_vec(),
            ..Publish::default()
        }))
        .await;
    }
}

fn port_of(hub: &Emulator) -> u16 {
    hub.host
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("the HTTPS port")
}

/// Opens `wss://localhost:PORT/$iothub/websocket` on the HTTPS listener, offering `protocol`.
async fn open(
    hub: &Emulator,
    protocol: Option<&str>,
) -> Result<(WebSocketStream<Tls>, Option<String>), tungstenite::Error> {
    let pem = std::fs::read_to_string(&hub.ca_path).expect("the CA file");
    let tls = tokio_rustls::TlsConnector::from(tls_trusting(&pem).expect("a TLS config"));
    let port = port_of(hub);
    let tcp = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("TCP");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("a name");
    let stream = tls.connect(name, tcp).await.expect("TLS");
    let mut request = format!("wss://localhost:{port}/$iothub/websocket")
        .into_client_request()
        .expect("a request");
    if let Some(p) = protocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(p).expect("a header value"),
        );
    }
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await?;
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((ws, chosen))
}

/// Connects as `who` over WebSockets and returns the device and its CONNACK code.
async fn connect(hub: &Emulator, who: &Who, key: &Secret) -> (WsDevice, u8) {
    let (ws, chosen) = open(hub, Some("mqtt")).await.expect("the upgrade");
    assert_eq!(chosen.as_deref(), Some("mqtt"), "the hub speaks `mqtt`");
    let mut device = WsDevice {
        ws,
        buf: Vec::new(),
    };
    let expiry = now() + 3600;
    let connect = device_connect("localhost", who, key, expiry).expect("signing");
    device.send(&Packet::Connect(connect)).await;
    match device.recv().await {
        Some(Packet::ConnAck { code, .. }) => (device, code),
        other => panic!("no CONNACK: {other:?}"),
    }
}

#[tokio::test]
async fn a_device_over_websockets_gets_its_twin_reports_and_receives_desired_patches() {
    let hub = Emulator::start_with(&["--mqtt", "127.0.0.1:0"]);
    let d = hub.create_device("d").await;
    let r = hub
        .patch(
            "/twins/d",
            json!({"properties": {"desired": {"telemetryInterval": 122}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let (mut c, code) = connect(&hub, &who("d", None), &key_of(&d)).await;
    assert_eq!(code, 0, "CONNACK");

    c.send(&Packet::Subscribe {
        id: 1,
        filters: vec![
            (topic::TWIN_RESPONSES.into(), 0),
            (topic::DESIRED_CHANGES.into(), 0),
        ],
    })
    .await;
    assert!(matches!(
        c.recv().await,
        Some(Packet::SubAck { id: 1, codes }) if codes == [0, 0]
    ));

    c.publish("$iothub/twin/GET/?$rid=get-1", b"", 2).await;
    let p = c.next_publish().await;
    assert_eq!(p.topic, "$iothub/twin/res/200/?$rid=get-1");
    assert_eq!(
        body(&p),
        json!({"desired": {"telemetryInterval": 122, "$version": 2}, "reported": {"$version": 1}})
    );

    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=rep-1",
        br#"{"temperature": 21.5}"#,
        3,
    )
    .await;
    let p = c.next_publish().await;
    assert_eq!(p.topic, "$iothub/twin/res/204/?$rid=rep-1&$version=2");
    let twin = hub.get("/twins/d").await.body;
    assert_eq!(twin["properties"]["reported"]["temperature"], 21.5);
    assert_eq!(twin["connectionState"], "Connected", "{twin}");

    let r = hub
        .patch(
            "/twins/d",
            json!({"properties": {"desired": {"telemetryInterval": 200}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let p = c.next_publish().await;
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=3");
    assert_eq!(body(&p), json!({"telemetryInterval": 200, "$version": 3}));

    c.send(&Packet::Disconnect).await;
    assert!(c.recv().await.is_none(), "the hub closes after DISCONNECT");
    eventually(
        "the device disconnected",
        PATIENCE,
        async || hub.get("/twins/d").await.body["connectionState"].clone(),
        |s| s == "Disconnected",
    )
    .await;
}

#[tokio::test]
async fn websocket_connects_are_refused_as_on_the_mqtt_port() {
    let hub = Emulator::start_with(&["--mqtt", "127.0.0.1:0"]);
    let d = hub.create_device("d").await;
    let wrong = Secret::new("cGFzc3dvcmRwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ=");
    let (_c, code) = connect(&hub, &who("d", None), &wrong).await;
    assert_eq!(code, 5, "a wrong key");
    let (_c, code) = connect(&hub, &who("nobody", None), &key_of(&d)).await;
    assert_eq!(code, 5, "an unknown device");
    match open(&hub, None).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("an upgrade without the `mqtt` subprotocol: {other:?}"),
    }
    let plain = hub.get("/$iothub/websocket").await;
    assert_eq!(plain.status, 400, "a GET that is no upgrade: {plain:?}");

    let off = Emulator::start_with(&["--mqtt", "off"]);
    match open(&off, Some("mqtt")).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("`--mqtt off` serves no device side: {other:?}"),
    }
}

#[tokio::test]
async fn one_connection_per_identity_holds_across_websockets_and_the_mqtt_port() {
    let hub = Emulator::start_with(&["--mqtt", "127.0.0.1:0"]);
    let d = hub.create_device("d").await;
    let key = key_of(&d);
    let (mut ws, code) = connect(&hub, &who("d", None), &key).await;
    assert_eq!(code, 0);
    let pem = std::fs::read_to_string(&hub.ca_path).expect("the CA file");
    let connect =
        device_connect("localhost", &who("d", None), &key, now() + 3600).expect("signing");
    let port = hub.mqtt_port().await;
    let _tls = Client::connect(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "localhost",
        tls_trusting(&pem).expect("TLS"),
        &connect,
    )
    .await
    .expect("connecting over TLS");
    assert!(
        ws.recv().await.is_none(),
        "the WebSocket connection is closed when the same device connects on the MQTT port"
    );
}
