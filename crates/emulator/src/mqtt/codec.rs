//! MQTT 3.1.1 packets, hand-written: the subset IoT Hub speaks (CONNECT/CONNACK, PUBLISH with QoS 0
//! and 1 and PUBACK, SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP, DISCONNECT), plus
//! the QoS 2 packets so that a session can recognise them and close, as IoT Hub does.
//!
//! [`parse`] and [`encode`] are pure; [`read`] pulls one packet off an async reader and refuses a
//! remaining length above the caller's bound before reading the body, so a peer cannot make the
//! emulator allocate more than that. Used by the broker, the in-process client and tests that
//! speak MQTT over another transport (WebSockets).

use tokio::io::{AsyncRead, AsyncReadExt};

/// The protocol level of MQTT 3.1.1.
pub(crate) const PROTOCOL_LEVEL: u8 = 4;

/// CONNACK return codes (MQTT 3.1.1 §3.2.2.3).
pub(crate) mod connack {
    pub(crate) const ACCEPTED: u8 = 0;
    pub(crate) const UNACCEPTABLE_PROTOCOL: u8 = 1;
    pub(crate) const IDENTIFIER_REJECTED: u8 = 2;
    pub(crate) const NOT_AUTHORIZED: u8 = 5;
}

/// The SUBACK code of a refused subscription.
pub(crate) const SUBSCRIPTION_FAILED: u8 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the packet is malformed: {0}")]
    Malformed(&'static str),
    #[error("the packet is over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("reading from the peer: {0}")]
    Io(String),
}

/// A CONNECT packet. Its `Debug` leaves out the password (a SAS token).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Connect {
    pub(crate) protocol_level: u8,
    pub(crate) clean_session: bool,
    pub keep_alive: u16,
    pub(crate) client_id: String,
    pub(crate) will: Option<(String, Vec<u8>)>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Vec<u8>>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("protocol_level", &self.protocol_level)
            .field("clean_session", &self.clean_session)
            .field("keep_alive", &self.keep_alive)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// Present exactly when `qos > 0`.
    pub id: Option<u16>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    ConnAck { session_present: bool, code: u8 },
    Publish(Publish),
    PubAck { id: u16 },
    PubRec { id: u16 },
    PubRel { id: u16 },
    PubComp { id: u16 },
    Subscribe { id: u16, filters: Vec<(String, u8)> },
    SubAck { id: u16, codes: Vec<u8> },
    Unsubscribe { id: u16, filters: Vec<String> },
    UnsubAck { id: u16 },
    PingReq,
    PingResp,
    Disconnect,
}

/// Reads one packet. `Ok(None)` is a clean end of stream before a packet started.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R, limit: usize) -> Result<Option<Packet>, Error> {
    let io = |e: std::io::Error| Error::Io(e.kind().to_string());
    let mut first = [0u8; 1];
    if r.read(&mut first).await.map_err(io)? == 0 {
        return Ok(None);
    }
    let mut len: usize = 0;
    let mut shift = 0;
    loop {
        let b = r.read_u8().await.map_err(io)?;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(Error::Malformed("remaining length over four bytes"));
        }
    }
    if len > limit {
        return Err(Error::TooLarge { limit });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(io)?;
    parse(first[0], &body).map(Some)
}

/// A cursor over a packet body.
struct Body<'a> {
    bytes: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.bytes.len() < n {
            return Err(Error::Malformed("the packet ends early"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn binary(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn string(&mut self) -> Result<String, Error> {
        let b = self.binary()?;
        let s = std::str::from_utf8(b).map_err(|_| Error::Malformed("a string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(Error::Malformed("a string contains U+0000"));
        }
        Ok(s.to_string())
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

/// Parses a packet from its first byte and its body (the bytes after the remaining length).
pub(crate) fn parse(first: u8, body: &[u8]) -> Result<Packet, Error> {
    let kind = first >> 4;
    let flags = first & 0x0f;
    let mut b = Body { bytes: body };
    if kind == 3 {
        return parse_publish(flags, &mut b);
    }
    match required_flags(kind) {
        None => return Err(Error::Malformed("unknown packet type")),
        Some(want) if want != flags => {
            return Err(Error::Malformed("reserved header flags are wrong"));
        }
        Some(_) => {}
    }
    let packet = match kind {
        1 => Packet::Connect(parse_connect(&mut b)?),
        2 => {
            let session_present = b.u8()? & 1 == 1;
            Packet::ConnAck {
                session_present,
                code: b.u8()?,
            }
        }
        4 => Packet::PubAck { id: b.u16()? },
        5 => Packet::PubRec { id: b.u16()? },
        6 => Packet::PubRel { id: b.u16()? },
        7 => Packet::PubComp { id: b.u16()? },
        8 => parse_subscribe(&mut b)?,
        9 => {
            let id = b.u16()?;
            Packet::SubAck {
                id,
                codes: b.rest().to_vec(),
            }
        }
        10 => parse_unsubscribe(&mut b)?,
        11 => Packet::UnsubAck { id: b.u16()? },
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect,
        _ => return Err(Error::Malformed("unknown packet type")),
    };
    Ok(packet)
}

/// The header flags MQTT 3.1.1 fixes for a packet type (2 for PUBREL, SUBSCRIBE and
/// UNSUBSCRIBE, 0 for the others); `None` for PUBLISH, whose flags carry QoS, DUP and RETAIN, and
/// for an unknown type.
fn required_flags(kind: u8) -> Option<u8> {
    match kind {
        6 | 8 | 10 => Some(2),
        1 | 2 | 4 | 5 | 7 | 9 | 11..=14 => Some(0),
        _ => None,
    }
}

fn parse_publish(flags: u8, b: &mut Body<'_>) -> Result<Packet, Error> {
    let qos = (flags >> 1) & 3;
    if qos == 3 {
        return Err(Error::Malformed("PUBLISH with QoS 3"));
    }
    let topic = b.string()?;
    let id = if qos > 0 { Some(b.u16()?) } else { None };
    Ok(Packet::Publish(Publish {
        topic,
        qos,
        retain: flags & 1 == 1,
        dup: flags & 8 == 8,
        id,
        payload: b.rest().to_vec(),
    }))
}

fn parse_subscribe(b: &mut Body<'_>) -> Result<Packet, Error> {
    let id = b.u16()?;
    let mut filters = Vec::new();
    while !b.is_empty() {
        let f = b.string()?;
        let qos = b.u8()?;
        if qos > 2 {
            return Err(Error::Malformed("SUBSCRIBE with QoS above 2"));
        }
        filters.push((f, qos));
    }
    if filters.is_empty() {
        return Err(Error::Malformed("SUBSCRIBE without a topic filter"));
    }
    Ok(Packet::Subscribe { id, filters })
}

fn parse_unsubscribe(b: &mut Body<'_>) -> Result<Packet, Error> {
    let id = b.u16()?;
    let mut filters = Vec::new();
    while !b.is_empty() {
        filters.push(b.string()?);
    }
    if filters.is_empty() {
        return Err(Error::Malformed("UNSUBSCRIBE without a topic filter"));
    }
    Ok(Packet::Unsubscribe { id, filters })
}

fn parse_connect(b: &mut Body<'_>) -> Result<Connect, Error> {
    let name = b.string()?;
    let protocol_level = b.u8()?;
    if name != "MQTT" && name != "MQIsdp" {
        return Err(Error::Malformed("the protocol name is not MQTT"));
    }
    let flags = b.u8()?;
    if flags & 1 != 0 {
        return Err(Error::Malformed("the reserved CONNECT flag is set"));
    }
    let keep_alive = b.u16()?;
    let client_id = b.string()?;
    let will = if flags & 0x04 != 0 {
        let topic = b.string()?;
        Some((topic, b.binary()?.to_vec()))
    } else {
        None
    };
    let username = if flags & 0x80 != 0 {
        Some(b.string()?)
    } else {
        None
    };
    let password = if flags & 0x40 != 0 {
        Some(b.binary()?.to_vec())
    } else {
        None
    };
    Ok(Connect {
        protocol_level,
        clean_session: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

fn put_binary(out: &mut Vec<u8>, b: &[u8]) {
    // Strings over 64 KB cannot be framed; callers only build short ones.
    let n = u16::try_from(b.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&b[..usize::from(n)]);
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    let mut n = body.len();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// The bytes of a packet.
pub fn encode(p: &Packet) -> Vec<u8> {
    let mut body = Vec::new();
    let first = match p {
        Packet::Connect(c) => {
            put_binary(&mut body, b"MQTT");
            body.push(c.protocol_level);
            let mut flags = 0u8;
            if c.clean_session {
                flags |= 0x02;
            }
            if c.will.is_some() {
                flags |= 0x04;
            }
            if c.password.is_some() {
                flags |= 0x40;
            }
            if c.username.is_some() {
                flags |= 0x80;
            }
            body.push(flags);
            body.extend_from_slice(&c.keep_alive.to_be_bytes());
            put_binary(&mut body, c.client_id.as_bytes());
            if let Some((t, m)) = &c.will {
                put_binary(&mut body, t.as_bytes());
                put_binary(&mut body, m);
            }
            if let Some(u) = &c.username {
                put_binary(&mut body, u.as_bytes());
            }
            if let Some(pw) = &c.password {
                put_binary(&mut body, pw);
            }
            0x10
        }
        Packet::ConnAck {
            session_present,
            code,
        } => {
            body.extend_from_slice(&[u8::from(*session_present), *code]);
            0x20
        }
        Packet::Publish(p) => {
            put_binary(&mut body, p.topic.as_bytes());
            if p.qos > 0 {
                body.extend_from_slice(&p.id.unwrap_or(1).to_be_bytes());
            }
            body.extend_from_slice(&p.payload);
            0x30 | (u8::from(p.dup) << 3) | ((p.qos & 3) << 1) | u8::from(p.retain)
        }
        Packet::PubAck { id } => {
            body.extend_from_slice(&id.to_be_bytes());
            0x40
        }
        Packet::PubRec { id } => {
            body.extend_from_slice(&id.to_be_bytes());
            0x50
        }
        Packet::PubRel { id } => {
            body.extend_from_slice(&id.to_be_bytes());
            0x62
        }
        Packet::PubComp { id } => {
            body.extend_from_slice(&id.to_be_bytes());
            0x70
        }
        Packet::Subscribe { id, filters } => {
            body.extend_from_slice(&id.to_be_bytes());
            for (f, q) in filters {
                put_binary(&mut body, f.as_bytes());
                body.push(*q);
            }
            0x82
        }
        Packet::SubAck { id, codes } => {
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(codes);
            0x90
        }
        Packet::Unsubscribe { id, filters } => {
            body.extend_from_slice(&id.to_be_bytes());
            for f in filters {
                put_binary(&mut body, f.as_bytes());
            }
            0xa2
        }
        Packet::UnsubAck { id } => {
            body.extend_from_slice(&id.to_be_bytes());
            0xb0
        }
        Packet::PingReq => 0xc0,
        Packet::PingResp => 0xd0,
        Packet::Disconnect => 0xe0,
    };
    frame(first, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(p: Packet) {
        let bytes = encode(&p);
        let mut r = bytes.as_slice();
        let back = read(&mut r, 1 << 20).await.unwrap().unwrap();
        assert_eq!(back, p);
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn every_packet_survives_a_round_trip() {
        round_trip(Packet::Connect(Connect {
            protocol_level: 4,
            clean_session: false,
            keep_alive: 60,
            client_id: "d/m".into(),
            will: None,
            username: Some("localhost/d/m/?api-version=2019-10-01".into()),
            password: Some(b"SharedAccessSignature sr=x&sig=y&se=1".to_vec()),
        }))
        .await;
        round_trip(Packet::ConnAck {
            session_present: false,
            code: connack::NOT_AUTHORIZED,
        })
        .await;
        round_trip(Packet::Publish(Publish {
            topic: "$iothub/twin/GET/?$rid=1".into(),
            qos: 1,
            id: Some(7),
            payload: b"{}".to_vec(),
            ..Publish::default()
        }))
        .await;
        round_trip(Packet::Publish(Publish {
            topic: "t".into(),
            payload: vec![b'x'; 300],
            ..Publish::default()
        }))
        .await;
        round_trip(Packet::Subscribe {
            id: 3,
            filters: vec![("$iothub/twin/res/#".into(), 1), ("a".into(), 0)],
        })
        .await;
        round_trip(Packet::SubAck {
            id: 3,
            codes: vec![1, SUBSCRIPTION_FAILED],
        })
        .await;
        round_trip(Packet::Unsubscribe {
            id: 4,
            filters: vec!["a".into()],
        })
        .await;
        round_trip(Packet::UnsubAck { id: 4 }).await;
        round_trip(Packet::PubAck { id: 9 }).await;
        round_trip(Packet::PubRel { id: 9 }).await;
        round_trip(Packet::PingReq).await;
        round_trip(Packet::PingResp).await;
        round_trip(Packet::Disconnect).await;
    }

    #[test]
    fn remaining_length_uses_continuation_bytes() {
        let bytes = encode(&Packet::Publish(Publish {
            topic: "t".into(),
            payload: vec![0; 200],
            ..Publish::default()
        }));
        // 2 + 1 topic bytes + 200 payload = 203 = 0xCB 0x01
        assert_eq!(&bytes[..3], &[0x30, 0xcb, 0x01]);
    }

    #[tokio::test]
    async fn oversized_packets_are_refused_before_their_body_is_read() {
        let bytes = [0x30u8, 0xff, 0xff, 0xff, 0x7f];
        let mut r = &bytes[..];
        assert_eq!(
            read(&mut r, 256 * 1024).await,
            Err(Error::TooLarge { limit: 256 * 1024 })
        );
        let five = [0x30u8, 0xff, 0xff, 0xff, 0xff, 0x01];
        let mut r = &five[..];
        assert!(matches!(
            read(&mut r, usize::MAX).await,
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert!(parse(0x36, &[0, 1, b't']).is_err(), "QoS 3");
        assert!(parse(0x80, &[0, 1, 0, 1, b'a', 0]).is_err(), "flags");
        assert!(parse(0x82, &[0, 1]).is_err(), "no filter");
        assert!(parse(0x10, &[0, 4, b'M', b'Q', b'T', b'X', 4, 0, 0, 60]).is_err());
        assert!(parse(0xf0, &[]).is_err());
    }

    #[test]
    fn connect_debug_hides_the_password() {
        let c = Connect {
            password: Some(b"secret-token".to_vec()),
            ..Connect::default()
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
