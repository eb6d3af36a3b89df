//! MQTT over WebSockets on the HTTPS listener, as IoT Hub serves it on port 443 for devices
//! behind a firewall that only lets HTTPS out (the device SDKs' `websockets=True`, `MqttWs`):
//! `GET /$iothub/websocket` upgraded with the subprotocol `mqtt`, then MQTT packets in binary
//! frames. The bytes of the frames are handed to the same session code as MQTT over TLS, so
//! authentication (CONNECT's SAS password), topics, the one-connection-per-identity rule,
//! keep-alive and presence are the same; the TLS is the HTTPS listener's.
//!
//! Owns the upgrade and the framing only; the session knows nothing of WebSockets.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::session::MAX_PACKET_BYTES;
use crate::error::Error;
use crate::server::Hub;

/// The path the device SDKs upgrade (`/$iothub/websocket`).
pub(crate) const PATH: &str = "/$iothub/websocket";

/// The WebSocket subprotocol of MQTT 3.1.1 (its §6).
const SUBPROTOCOL: &str = "mqtt";

/// How many bytes may wait between the WebSocket and the session in each direction.
const BRIDGE_BYTES: usize = 64 * 1024;

/// Upgrades the request to a WebSocket carrying MQTT, if the device side is on and the client
/// asked for the `mqtt` subprotocol.
pub(crate) async fn upgrade(
    State(hub): State<Arc<Hub>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if hub.devices.is_none() {
        return Error::RouteNotFound("the MQTT device side is off (--mqtt off)".into())
            .into_response();
    }
    let Ok(ws) = ws else {
        return Error::ArgumentInvalid(format!(
            "{PATH} takes a WebSocket upgrade with the subprotocol `{SUBPROTOCOL}`"
        ))
        .into_response();
    };
    let ws = ws.protocols([SUBPROTOCOL]);
    if ws.selected_protocol() != Some(&HeaderValue::from_static(SUBPROTOCOL)) {
        return Error::ArgumentInvalid(format!(
            "MQTT over WebSockets needs the subprotocol `{SUBPROTOCOL}`"
        ))
        .into_response();
    }
    // An MQTT packet may span frames; one frame or message never needs more than a packet.
    ws.max_message_size(MAX_PACKET_BYTES + 8)
        .max_frame_size(MAX_PACKET_BYTES + 8)
        .on_upgrade(move |socket| serve(socket, hub))
}

/// Runs one MQTT session over `socket` until either side closes.
async fn serve(socket: WebSocket, hub: Arc<Hub>) {
    let Some(devices) = hub.devices.as_ref() else {
        return;
    };
    let (ours, theirs) = tokio::io::duplex(BRIDGE_BYTES);
    tokio::join!(
        devices.serve_connection(hub.clone(), theirs),
        bridge(socket, ours)
    );
}

/// Copies binary frames into the session's input and its output into binary frames. When the
/// client closes, the session reads the end of its input; when the session ends (a DISCONNECT,
/// a refused CONNECT, a superseded connection, the hub stopping), the client gets a close frame.
async fn bridge(socket: WebSocket, session: DuplexStream) {
    let (mut frames_out, mut frames_in) = socket.split();
    let (mut from_session, mut to_session) = tokio::io::split(session);
    let inbound = async {
        while let Some(Ok(message)) = frames_in.next().await {
            match message {
                Message::Binary(bytes) => {
                    if to_session.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                // Pings are answered by the WebSocket layer itself.
                Message::Ping(_) | Message::Pong(_) => {}
                // MQTT travels in binary frames only (MQTT 3.1.1 §6): a text frame ends it.
                Message::Text(_) | Message::Close(_) => break,
            }
        }
        let _ = to_session.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from_session.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if frames_out.send(frame).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = frames_out.send(Message::Close(None)).await;
    };
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
    }
}
