//! Socket.IO clients (Engine.IO protocol v4, Socket.IO protocol v5),
//! written against the two protocol specifications: long polling
//! (`transports: ["polling"]`) and WebSocket (`transports: ["websocket"]`),
//! each without upgrades, so every figure belongs to one transport.
//!
//! A Socket.IO server numbers nothing, so everything pushbench needs
//! travels in the event the generator's publisher emits: topic (the room),
//! sequence number, intended and sent time. The times are decimal strings
//! because JavaScript numbers hold integers exactly only up to 2^53, below
//! pushbench's 18-digit nanosecond timestamps. The clients translate each
//! `event` into pushbench's own JSON event, so decoding, tracking and timing
//! are the same code as for every other transport; a joined room is
//! reported as a subscription from sequence number 0. The bytes are counted
//! at the socket as they came, Engine.IO framing and all.
//!
//! Socket.IO has no resume: a client that reconnects rejoins its rooms, and
//! what was emitted meanwhile is never delivered. pushbench counts it as
//! lost rather than hiding it.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ::http::{HeaderValue, Request, header};
use bytes::{Bytes, BytesMut};
use hyper::client::conn::http1::SendRequest;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::http::{self, Body};
use super::ws::{WsConn, WsMessage};
use super::{
    Alpn, ClientError, Conn, Cursor, Dial, Framing, MessageSender, Received, SocketCounters,
    Transport,
};
use crate::codec::{self, Encoding, Event, ServerMessage};

/// The Engine.IO endpoint of a Socket.IO server.
pub const PATH: &str = "/socket.io/";

/// Engine.IO packet separator in a polling payload (record separator).
const SEPARATOR: char = '\u{1e}';

/// The acknowledgement id of a client's `join`.
const JOIN_ACK: &str = "0";

/// One Engine.IO packet of a payload, by its type digit.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Open(&'a str),
    Close,
    Ping,
    Pong,
    /// A Socket.IO packet (its own type digit first).
    Message(&'a str),
    Noop,
    Other(&'a str),
}

impl<'a> Packet<'a> {
    pub fn parse(text: &'a str) -> Packet<'a> {
        let (kind, rest) = text.split_at(text.len().min(1));
        match kind {
            "0" => Packet::Open(rest),
            "1" => Packet::Close,
            "2" => Packet::Ping,
            "3" => Packet::Pong,
            "4" => Packet::Message(rest),
            "6" => Packet::Noop,
            _ => Packet::Other(text),
        }
    }
}

/// The fields of the open packet pushbench uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Open {
    pub sid: String,
    pub ping_interval: u64,
}

/// An event as the publisher emits it and the server forwards it.
#[derive(Debug, Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    t: Cow<'a, str>,
    s: u64,
    #[serde(borrow)]
    i: Cow<'a, str>,
    #[serde(borrow)]
    p: Cow<'a, str>,
    #[serde(borrow)]
    d: Cow<'a, str>,
}

/// What a Socket.IO packet meant to a subscriber.
#[derive(Debug, PartialEq, Eq)]
pub enum SioPacket {
    /// Namespace connected (`0{…}`).
    Connected,
    /// The ack of the client's `join`.
    Joined,
    /// One event, as pushbench's JSON event.
    Event(Bytes),
    /// Anything else (other events, other acks): not pushbench's.
    Ignored,
    /// The server disconnected the namespace or refused it.
    Refused(String),
}

/// Reads one Socket.IO packet (after the Engine.IO `4`).
pub fn parse_sio(text: &str) -> Result<SioPacket, ClientError> {
    let (kind, rest) = text.split_at(text.len().min(1));
    match kind {
        "0" => Ok(SioPacket::Connected),
        "1" => Ok(SioPacket::Refused(
            "the server disconnected the namespace".into(),
        )),
        "4" => Ok(SioPacket::Refused(format!("connection refused: {rest}"))),
        "3" if rest.starts_with(JOIN_ACK) && rest[JOIN_ACK.len()..].starts_with('[') => {
            Ok(SioPacket::Joined)
        }
        "2" if rest.starts_with("[\"event\",") => event_to_pushbench(rest).map(SioPacket::Event),
        _ => Ok(SioPacket::Ignored),
    }
}

/// `["event",{…}]` as pushbench's own JSON event message.
fn event_to_pushbench(array: &str) -> Result<Bytes, ClientError> {
    let (_, e): (Cow<'_, str>, WireEvent<'_>) = serde_json::from_str(array)
        .map_err(|e| ClientError::Decode(codec::CodecError::Json(e.to_string())))?;
    let number = |field: &str, text: &str| {
        text.parse::<u64>().map_err(|_| {
            ClientError::Protocol(format!(
                "Socket.IO event field {field} is {text:?}, not a decimal timestamp"
            ))
        })
    };
    let mut out = BytesMut::with_capacity(array.len() + 16);
    codec::encode(
        Encoding::Json,
        &ServerMessage::Event(Event {
            topic: e.t,
            seq: e.s,
            intended_ns: number("i", &e.i)?,
            published_ns: number("p", &e.p)?,
            payload: Cow::Borrowed(e.d.as_bytes()),
        }),
        &mut out,
    )?;
    Ok(out.freeze())
}

/// The client's `join` with an ack id: its answer tells the rooms are joined.
fn join_packet(cursor: &impl Cursor) -> String {
    let rooms: Vec<&str> = cursor.entries().map(|(t, _)| t).collect();
    format!(
        "42{JOIN_ACK}[\"join\",{}]",
        serde_json::to_string(&rooms).expect("topic names serialize")
    )
}

/// The subscription answer pushbench's tracker expects: every room from 0,
/// since the publisher numbers each room's events from 1 in every run.
fn subscribed(cursor: &impl Cursor) -> Received {
    let heads = cursor
        .entries()
        .map(|(t, _)| (Cow::Borrowed(t), 0))
        .collect();
    let mut out = BytesMut::new();
    codec::encode(Encoding::Json, &ServerMessage::Subscribed(heads), &mut out)
        .expect("JSON encoding cannot fail");
    Received {
        body: out.freeze().into(),
        framing: Framing::Single,
    }
}

fn open(text: &str) -> Result<Open, ClientError> {
    serde_json::from_str(text)
        .map_err(|e| ClientError::Handshake(format!("Engine.IO open packet: {e}: {text:?}")))
}

/// Socket.IO over Engine.IO long polling: one kept-alive HTTP/1.1
/// connection, a GET held by the server until it has packets, a POST for
/// what the client sends (the pong to every ping), one at a time.
pub struct SocketIoPollingClient {
    sender: SendRequest<Body>,
    counters: Arc<SocketCounters>,
    host: HeaderValue,
    /// `/socket.io/?EIO=4&transport=polling&sid=…`
    path: String,
}

impl SocketIoPollingClient {
    async fn get(&mut self) -> Result<String, ClientError> {
        let request = http::get(&self.path, &self.host)?;
        let response = http::exchange(&mut self.sender, request, &self.counters).await?;
        let body = http::body_of(response).await?;
        String::from_utf8(body.to_vec())
            .map_err(|_| ClientError::Protocol("Engine.IO payload is not UTF-8".into()))
    }

    async fn post(&mut self, payload: String) -> Result<(), ClientError> {
        let request = Request::post(&self.path)
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
            .body(Body::from(payload))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let response = http::exchange(&mut self.sender, request, &self.counters).await?;
        http::body_of(response).await.map(drop)
    }

    /// Polls until a payload brings events (answering pings on the way),
    /// returned as one pushbench batch; `until_joined` instead returns once
    /// the join is acknowledged.
    async fn poll(&mut self, until_joined: bool) -> Result<Vec<Bytes>, ClientError> {
        loop {
            let payload = self.get().await?;
            let mut events = Vec::new();
            let mut ping = false;
            let mut joined = false;
            for packet in payload.split(SEPARATOR) {
                match Packet::parse(packet) {
                    Packet::Ping => ping = true,
                    Packet::Close => return Err(ClientError::Closed(None)),
                    Packet::Message(m) => match parse_sio(m)? {
                        SioPacket::Event(e) => events.push(e),
                        SioPacket::Joined => joined = true,
                        SioPacket::Refused(why) => return Err(ClientError::Protocol(why)),
                        SioPacket::Connected | SioPacket::Ignored => {}
                    },
                    _ => {}
                }
            }
            if ping {
                self.post("3".into()).await?;
            }
            if (until_joined && joined) || (!until_joined && !events.is_empty()) {
                return Ok(events);
            }
        }
    }
}

impl Transport for SocketIoPollingClient {
    type Shared = ();
    type Sender = NoSender;

    async fn connect(
        dial: &Dial<'_>,
        _shared: &(),
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let sender = http::handshake_h1(dial.open(Alpn::Http1).await?).await?;
        let mut client = SocketIoPollingClient {
            sender,
            counters: dial.counters.clone(),
            host: http::host(dial),
            path: format!("{PATH}?EIO=4&transport=polling"),
        };
        let first = client.get().await?;
        let Some(Packet::Open(text)) = first.split(SEPARATOR).next().map(Packet::parse) else {
            return Err(ClientError::Handshake(format!(
                "expected an Engine.IO open packet, got {first:?}"
            )));
        };
        let sid = open(text)?.sid;
        client.path = format!("{PATH}?EIO=4&transport=polling&sid={sid}");
        client.post("40".into()).await?;
        client.post(join_packet(cursor)).await?;
        // Events cannot come before the join's ack: the generator publishes
        // only once every client has subscribed.
        client.poll(true).await?;
        Ok((client, subscribed(cursor)))
    }

    async fn recv(&mut self, _cursor: &impl Cursor) -> Result<Received, ClientError> {
        let events = self.poll(false).await?;
        let mut body =
            BytesMut::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
        body.extend_from_slice(b"[");
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                body.extend_from_slice(b",");
            }
            body.extend_from_slice(e);
        }
        body.extend_from_slice(b"]");
        Ok(Received {
            body: body.freeze().into(),
            framing: Framing::Batch,
        })
    }

    fn sender(&self, _dial: &Dial<'_>) -> NoSender {
        NoSender
    }
}

/// A Socket.IO connection over an Engine.IO WebSocket, straight to
/// `transport=websocket` (no polling first). Also the generator's
/// publisher to a Socket.IO server.
pub struct SocketIoWs<S = Conn> {
    ws: WsConn<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SocketIoWs<S> {
    /// The WebSocket handshake, Engine.IO's open packet and Socket.IO's
    /// namespace connect.
    pub async fn connect(
        stream: S,
        addr: std::net::SocketAddr,
        counters: &SocketCounters,
    ) -> Result<SocketIoWs<S>, ClientError> {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let path = format!("{PATH}?EIO=4&transport=websocket");
        let ws = WsConn::handshake(
            stream,
            &addr.to_string(),
            &path,
            super::websocket::MAX_MESSAGE,
        )
        .await?;
        let mut client = SocketIoWs { ws };
        let first = client.text().await?;
        let Packet::Open(text) = Packet::parse(&first) else {
            return Err(ClientError::Handshake(format!(
                "expected an Engine.IO open packet, got {first:?}"
            )));
        };
        open(text)?;
        client.send("40".into()).await?;
        loop {
            let text = client.text().await?;
            if let Packet::Message(m) = Packet::parse(&text) {
                match parse_sio(m)? {
                    SioPacket::Connected => return Ok(client),
                    SioPacket::Refused(why) => return Err(ClientError::Handshake(why)),
                    _ => {}
                }
            }
        }
    }

    pub async fn send(&mut self, text: String) -> Result<(), ClientError> {
        self.ws.writer.send_text(&text).await
    }

    /// Sends several packets as frames written together.
    pub async fn send_all(&mut self, texts: Vec<String>) -> Result<(), ClientError> {
        self.ws.writer.send_texts(&texts).await
    }

    /// The next Engine.IO packet that is not a ping (pings are answered).
    pub async fn text(&mut self) -> Result<Utf8Bytes, ClientError> {
        loop {
            match self.ws.next().await? {
                WsMessage::Text(t) => {
                    if t.as_str() == "2" {
                        self.send("3".into()).await?;
                        continue;
                    }
                    if t.as_str() == "1" {
                        return Err(ClientError::Closed(None));
                    }
                    return Ok(t);
                }
                WsMessage::Binary(_) => continue,
            }
        }
    }
}

/// Socket.IO over an Engine.IO WebSocket: one connection, one `join`, then
/// a frame per event.
pub struct SocketIoWebSocketClient {
    inner: SocketIoWs,
}

impl Transport for SocketIoWebSocketClient {
    type Shared = ();
    type Sender = NoSender;

    async fn connect(
        dial: &Dial<'_>,
        _shared: &(),
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let stream = dial.open(Alpn::Http1).await?;
        let mut inner = SocketIoWs::connect(stream, dial.target.addr, dial.counters).await?;
        inner.send(join_packet(cursor)).await?;
        loop {
            let text = inner.text().await?;
            if let Packet::Message(m) = Packet::parse(&text) {
                match parse_sio(m)? {
                    SioPacket::Joined => break,
                    SioPacket::Refused(why) => return Err(ClientError::Protocol(why)),
                    _ => {}
                }
            }
        }
        Ok((SocketIoWebSocketClient { inner }, subscribed(cursor)))
    }

    async fn recv(&mut self, _cursor: &impl Cursor) -> Result<Received, ClientError> {
        loop {
            let text = self.inner.text().await?;
            if let Packet::Message(m) = Packet::parse(&text) {
                match parse_sio(m)? {
                    SioPacket::Event(body) => {
                        return Ok(Received {
                            body: body.into(),
                            framing: Framing::Single,
                        });
                    }
                    SioPacket::Refused(why) => return Err(ClientError::Protocol(why)),
                    _ => {}
                }
            }
        }
    }

    fn sender(&self, _dial: &Dial<'_>) -> NoSender {
        NoSender
    }
}

/// Socket.IO clients send no client messages (the scenario refuses
/// `[messages]` and `[echo]` with them).
pub struct NoSender;

impl MessageSender for NoSender {
    async fn send(&mut self, _message: String) -> Result<(), ClientError> {
        Err(ClientError::Protocol(
            "Socket.IO transports send no client messages".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rooms(Vec<(String, Option<u64>)>);
    impl Cursor for Rooms {
        fn entries(&self) -> impl Iterator<Item = (&str, Option<u64>)> {
            self.0.iter().map(|(t, c)| (t.as_str(), *c))
        }
    }

    #[test]
    fn engine_io_packets_are_told_apart_by_their_first_digit() {
        assert_eq!(
            Packet::parse("0{\"sid\":\"x\"}"),
            Packet::Open("{\"sid\":\"x\"}")
        );
        assert_eq!(Packet::parse("2"), Packet::Ping);
        assert_eq!(Packet::parse("42[\"a\"]"), Packet::Message("2[\"a\"]"));
        assert_eq!(Packet::parse("1"), Packet::Close);
        assert_eq!(Packet::parse(""), Packet::Other(""));
    }

    #[test]
    fn an_event_becomes_pushbench_json_with_exact_timestamps() {
        let packet = r#"2["event",{"t":"SYM0001","s":7,"i":"100000000123456789","p":"100000000123456999","d":"ab\"c"}]"#;
        let SioPacket::Event(body) = parse_sio(packet).unwrap() else {
            panic!("not an event");
        };
        let msg = codec::decode_single(Encoding::Json, &body).unwrap();
        let ServerMessage::Event(e) = msg else {
            panic!("not an event: {msg:?}");
        };
        assert_eq!(e.topic, "SYM0001");
        assert_eq!(e.seq, 7);
        assert_eq!(e.intended_ns, 100_000_000_123_456_789);
        assert_eq!(e.published_ns, 100_000_000_123_456_999);
        assert_eq!(&*e.payload, b"ab\"c");
    }

    #[test]
    fn a_timestamp_sent_as_a_js_number_is_refused_not_rounded() {
        let packet = r#"2["event",{"t":"A","s":1,"i":1e17,"p":"1","d":""}]"#;
        assert!(parse_sio(packet).is_err());
    }

    #[test]
    fn the_join_and_its_ack_and_other_packets() {
        let rooms = Rooms(vec![("A".into(), None), ("B".into(), Some(3))]);
        assert_eq!(join_packet(&rooms), r#"420["join",["A","B"]]"#);
        assert_eq!(
            parse_sio(r#"30[{"joined":["A"]}]"#).unwrap(),
            SioPacket::Joined
        );
        assert_eq!(parse_sio(r#"0{"sid":"q"}"#).unwrap(), SioPacket::Connected);
        assert_eq!(parse_sio(r#"2["other",1]"#).unwrap(), SioPacket::Ignored);
        assert!(matches!(
            parse_sio(r#"4{"message":"no"}"#).unwrap(),
            SioPacket::Refused(_)
        ));
        let answer = subscribed(&rooms);
        assert_eq!(answer.body.as_bytes(), br#"{"subscribed":{"A":0,"B":0}}"#);
    }
}
