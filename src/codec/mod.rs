//! Wire formats, as pure functions over byte slices: no I/O, no tokio.
//!
//! Everything the server sends is a [`ServerMessage`]: an event, the answer
//! to a subscription (the current head of each topic), or a notice that
//! events fell out of the server's buffer before this client could read
//! them. Each has a JSON and a binary form; docs/protocol.md is the
//! reference. The server encodes an event once, when it is published, and
//! shares the bytes with every subscriber, so the encoders here run once per
//! event and the decoders once per delivery.
//!
//! Decoders never panic on bad input: they answer with a [`CodecError`].
//!
//! Submodules hold the other wire formats pushbench speaks: [`frame`]
//! (RFC 6455 WebSocket frames) and [`sse`] (server-sent events).

pub mod frame;
pub mod reader;
pub mod sse;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write as _;

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

/// How events and control messages are encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One JSON object per message; WebSocket text frames.
    Json,
    /// A fixed big-endian header then the raw payload; WebSocket binary frames.
    Binary,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Binary => "binary",
        }
    }

    /// The Content-Type of a long-poll batch in this encoding.
    pub fn batch_content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Binary => "application/octet-stream",
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Encoding::Json),
            "binary" => Ok(Encoding::Binary),
            other => Err(format!(
                "unknown encoding {other:?} (allowed: json, binary)"
            )),
        }
    }
}

/// One published event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub topic: Cow<'a, str>,
    /// Sequence number within the topic; the first event of a topic is 1.
    pub seq: u64,
    /// When the open-loop schedule meant the event to be published
    /// (monotonic ns). Latency is measured from here.
    pub intended_ns: u64,
    /// When the server actually published it into its hub (monotonic ns).
    pub published_ns: u64,
    pub payload: Cow<'a, [u8]>,
}

/// Everything a server sends to a subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    Event(Event<'a>),
    /// Answer to a subscription: for each topic, the sequence number the
    /// subscriber's cursor now stands at. Events after it will be delivered.
    Subscribed(Vec<(Cow<'a, str>, u64)>),
    /// Events `first..=last` of `topic` were no longer buffered when this
    /// subscriber asked for them: they will never be delivered.
    Missed {
        topic: Cow<'a, str>,
        first: u64,
        last: u64,
    },
}

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The first byte of a binary record names no known message.
    #[error("unknown binary message tag 0x{0:02x}")]
    UnknownTag(u8),
    /// A topic name was not UTF-8.
    #[error("topic name is not valid UTF-8")]
    InvalidUtf8,
    /// A length field points past the end of a complete frame or body.
    #[error("truncated message: {0}")]
    Truncated(&'static str),
    /// JSON that does not parse or lacks a required field.
    #[error("invalid JSON message: {0}")]
    Json(String),
    /// A topic name longer than the format can carry.
    #[error("topic name longer than 65535 bytes")]
    TopicTooLong,
}

const TAG_EVENT: u8 = 0x01;
const TAG_SUBSCRIBED: u8 = 0x02;
const TAG_MISSED: u8 = 0x03;
/// tag + topic length + seq + intended + published + payload length.
pub const BINARY_EVENT_HEADER: usize = 1 + 2 + 8 + 8 + 8 + 4;

/// Topic names are 1 to 64 ASCII letters, digits, `_`, `-` or `.`, so they
/// need no escaping in a URL query and cannot collide with the `,` and `:`
/// separators of a long-poll cursor.
pub fn is_valid_topic(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Appends one message in `encoding` to `out`.
pub fn encode(
    encoding: Encoding,
    msg: &ServerMessage<'_>,
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    match encoding {
        Encoding::Json => {
            encode_json(msg, out);
            Ok(())
        }
        Encoding::Binary => encode_binary(msg, out),
    }
}

fn encode_json(msg: &ServerMessage<'_>, out: &mut BytesMut) {
    let mut w = out.writer();
    // Writing to a BytesMut cannot fail, and a &str always serializes.
    let result = match msg {
        ServerMessage::Event(e) => (|| {
            w.write_all(b"{\"t\":")?;
            serde_json::to_writer(&mut w, e.topic.as_ref())?;
            write!(
                w,
                ",\"s\":{},\"i\":{},\"p\":{},\"d\":",
                e.seq, e.intended_ns, e.published_ns
            )?;
            serde_json::to_writer(&mut w, &String::from_utf8_lossy(&e.payload))?;
            w.write_all(b"}")?;
            Ok::<_, Box<dyn std::error::Error>>(())
        })(),
        ServerMessage::Subscribed(heads) => {
            let map: BTreeMap<&str, u64> = heads.iter().map(|(t, h)| (t.as_ref(), *h)).collect();
            serde_json::to_writer(&mut w, &WireSubscribedOut { subscribed: map })
                .map_err(Into::into)
        }
        ServerMessage::Missed { topic, first, last } => serde_json::to_writer(
            &mut w,
            &WireMissedOut {
                missed: WireMissed {
                    t: Cow::Borrowed(topic.as_ref()),
                    first: *first,
                    last: *last,
                },
            },
        )
        .map_err(Into::into),
    };
    debug_assert!(result.is_ok());
}

fn put_topic(topic: &str, out: &mut BytesMut) -> Result<(), CodecError> {
    let len = u16::try_from(topic.len()).map_err(|_| CodecError::TopicTooLong)?;
    out.put_u16(len);
    Ok(())
}

fn encode_binary(msg: &ServerMessage<'_>, out: &mut BytesMut) -> Result<(), CodecError> {
    match msg {
        ServerMessage::Event(e) => {
            out.reserve(BINARY_EVENT_HEADER + e.topic.len() + e.payload.len());
            out.put_u8(TAG_EVENT);
            put_topic(&e.topic, out)?;
            out.put_u64(e.seq);
            out.put_u64(e.intended_ns);
            out.put_u64(e.published_ns);
            out.put_u32(
                u32::try_from(e.payload.len())
                    .map_err(|_| CodecError::Truncated("payload over 4 GiB"))?,
            );
            out.put_slice(e.topic.as_bytes());
            out.put_slice(&e.payload);
        }
        ServerMessage::Subscribed(heads) => {
            out.put_u8(TAG_SUBSCRIBED);
            out.put_u16(
                u16::try_from(heads.len())
                    .map_err(|_| CodecError::Truncated("over 65535 topics"))?,
            );
            for (topic, head) in heads {
                put_topic(topic, out)?;
                out.put_u64(*head);
                out.put_slice(topic.as_bytes());
            }
        }
        ServerMessage::Missed { topic, first, last } => {
            out.put_u8(TAG_MISSED);
            put_topic(topic, out)?;
            out.put_u64(*first);
            out.put_u64(*last);
            out.put_slice(topic.as_bytes());
        }
    }
    Ok(())
}

/// A cursor over a byte slice whose reads say "need more bytes" by `None`.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn topic(&mut self, len: u16) -> Option<Result<&'a str, CodecError>> {
        self.take(len as usize)
            .map(|b| std::str::from_utf8(b).map_err(|_| CodecError::InvalidUtf8))
    }
}

/// Decodes one binary message from the front of `buf`: the message and the
/// bytes it used, `None` if `buf` ends before the message does.
pub fn decode_binary(buf: &[u8]) -> Result<Option<(ServerMessage<'_>, usize)>, CodecError> {
    let mut r = Reader { buf, pos: 0 };
    let Some(tag) = r.u8() else { return Ok(None) };
    let msg = match tag {
        TAG_EVENT => {
            let (Some(tlen), Some(seq), Some(intended_ns), Some(published_ns), Some(plen)) =
                (r.u16(), r.u64(), r.u64(), r.u64(), r.u32())
            else {
                return Ok(None);
            };
            let Some(topic) = r.topic(tlen) else {
                return Ok(None);
            };
            let Some(payload) = r.take(plen as usize) else {
                return Ok(None);
            };
            ServerMessage::Event(Event {
                topic: Cow::Borrowed(topic?),
                seq,
                intended_ns,
                published_ns,
                payload: Cow::Borrowed(payload),
            })
        }
        TAG_SUBSCRIBED => {
            let Some(count) = r.u16() else {
                return Ok(None);
            };
            let mut heads = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let (Some(tlen), Some(head)) = (r.u16(), r.u64()) else {
                    return Ok(None);
                };
                let Some(topic) = r.topic(tlen) else {
                    return Ok(None);
                };
                heads.push((Cow::Borrowed(topic?), head));
            }
            ServerMessage::Subscribed(heads)
        }
        TAG_MISSED => {
            let (Some(tlen), Some(first), Some(last)) = (r.u16(), r.u64(), r.u64()) else {
                return Ok(None);
            };
            let Some(topic) = r.topic(tlen) else {
                return Ok(None);
            };
            ServerMessage::Missed {
                topic: Cow::Borrowed(topic?),
                first,
                last,
            }
        }
        other => return Err(CodecError::UnknownTag(other)),
    };
    Ok(Some((msg, r.pos)))
}

#[derive(Deserialize)]
struct WireMsg<'a> {
    #[serde(borrow)]
    t: Option<Cow<'a, str>>,
    s: Option<u64>,
    i: Option<u64>,
    p: Option<u64>,
    #[serde(borrow)]
    d: Option<Cow<'a, str>>,
    #[serde(borrow)]
    subscribed: Option<BTreeMap<Cow<'a, str>, u64>>,
    #[serde(borrow)]
    missed: Option<WireMissed<'a>>,
}

#[derive(Serialize, Deserialize)]
struct WireMissed<'a> {
    #[serde(borrow)]
    t: Cow<'a, str>,
    first: u64,
    last: u64,
}

#[derive(Serialize)]
struct WireMissedOut<'a> {
    missed: WireMissed<'a>,
}

#[derive(Serialize)]
struct WireSubscribedOut<'a> {
    subscribed: BTreeMap<&'a str, u64>,
}

impl<'a> WireMsg<'a> {
    fn into_message(self) -> Result<ServerMessage<'a>, CodecError> {
        if let Some(heads) = self.subscribed {
            return Ok(ServerMessage::Subscribed(heads.into_iter().collect()));
        }
        if let Some(m) = self.missed {
            return Ok(ServerMessage::Missed {
                topic: m.t,
                first: m.first,
                last: m.last,
            });
        }
        let missing = |f: &str| CodecError::Json(format!("event lacks field {f:?}"));
        let payload = match self.d.ok_or_else(|| missing("d"))? {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        };
        Ok(ServerMessage::Event(Event {
            topic: self.t.ok_or_else(|| missing("t"))?,
            seq: self.s.ok_or_else(|| missing("s"))?,
            intended_ns: self.i.ok_or_else(|| missing("i"))?,
            published_ns: self.p.ok_or_else(|| missing("p"))?,
            payload,
        }))
    }
}

/// Decodes one complete JSON message from bytes not yet checked as UTF-8.
pub fn decode_json(buf: &[u8]) -> Result<ServerMessage<'_>, CodecError> {
    decode_json_text(std::str::from_utf8(buf).map_err(|_| CodecError::InvalidUtf8)?)
}

/// Decodes one complete JSON message from text already checked as UTF-8
/// (a WebSocket text frame, checked by the WebSocket reader): the only
/// UTF-8 check an event gets is the one that found it text.
pub fn decode_json_text(text: &str) -> Result<ServerMessage<'_>, CodecError> {
    match scan_event(text) {
        Some((event, used)) if used == text.len() => Ok(ServerMessage::Event(event)),
        _ => parse_json(text.as_bytes()),
    }
}

/// The general JSON parser: any key order, whitespace, escapes, notices.
fn parse_json(buf: &[u8]) -> Result<ServerMessage<'_>, CodecError> {
    serde_json::from_slice::<WireMsg<'_>>(buf)
        .map_err(|e| CodecError::Json(e.to_string()))?
        .into_message()
}

/// Reads an event in exactly the form [`encode`] writes it,
/// `{"t":"TOPIC","s":N,"i":N,"p":N,"d":"PAYLOAD"}` with no whitespace and
/// no escape in either string, without building a JSON value: the
/// generator decodes every delivery, and the general parser cost it more
/// than anything else it does per event. Anything else (another key order,
/// whitespace, an escape, a notice) is `None` and goes to the general
/// parser, so this path accepts only what that one accepts and decodes it
/// the same; a property test holds the two together. Works on text already
/// checked as UTF-8, so its strings are slices, not checked again. Returns
/// the event and the bytes it used.
fn scan_event(text: &str) -> Option<(Event<'_>, usize)> {
    let mut s = Scan { text, pos: 0 };
    s.literal(b"{\"t\":\"")?;
    let topic = s.plain_string()?;
    s.literal(b",\"s\":")?;
    let seq = s.uint()?;
    s.literal(b",\"i\":")?;
    let intended_ns = s.uint()?;
    s.literal(b",\"p\":")?;
    let published_ns = s.uint()?;
    s.literal(b",\"d\":\"")?;
    let payload = s.plain_string()?;
    s.literal(b"}")?;
    let event = Event {
        topic: Cow::Borrowed(topic),
        seq,
        intended_ns,
        published_ns,
        payload: Cow::Borrowed(payload.as_bytes()),
    };
    Some((event, s.pos))
}

/// A batch of events each in [`scan_event`]'s form, `[e1,e2,...]` with no
/// whitespace; `None` (and `out` as it was) for anything else.
fn scan_batch<'a>(body: &'a str, out: &mut Vec<ServerMessage<'a>>) -> Option<()> {
    let before = out.len();
    let scanned = (|| {
        let mut rest = body.strip_prefix('[')?;
        if rest == "]" {
            return Some(());
        }
        loop {
            let (event, used) = scan_event(rest)?;
            out.push(ServerMessage::Event(event));
            // `used` ends just past a `}`: a character boundary.
            rest = &rest[used..];
            match rest.as_bytes() {
                [b']'] => return Some(()),
                [b',', ..] => rest = &rest[1..],
                _ => return None,
            }
        }
    })();
    if scanned.is_none() {
        out.truncate(before);
    }
    scanned
}

/// A cursor over text for [`scan_event`]; every position it stops at is
/// just past an ASCII byte, so a character boundary.
struct Scan<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scan<'a> {
    fn literal(&mut self, text: &[u8]) -> Option<()> {
        self.text.as_bytes()[self.pos..]
            .starts_with(text)
            .then(|| self.pos += text.len())
    }

    /// A JSON unsigned integer as serde reads one into a u64: digits, no
    /// leading zero, no fraction or exponent (the caller's next literal
    /// refuses those), no overflow.
    fn uint(&mut self) -> Option<u64> {
        let rest = &self.text.as_bytes()[self.pos..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        let mut value: u64 = 0;
        for &b in &rest[..digits] {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        self.pos += digits;
        Some(value)
    }

    /// The rest of a string whose opening quote was read, up to and past
    /// its closing quote: text without escapes or control characters.
    /// The end is found by memchr and the control characters by a loop
    /// without early exit, both vectorized: a byte at a time, a 64 KiB
    /// payload took 2.7 times as long as the general parser.
    fn plain_string(&mut self) -> Option<&'a str> {
        let rest = &self.text[self.pos..];
        let bytes = rest.as_bytes();
        let end = memchr::memchr2(b'"', b'\\', bytes)?;
        if bytes[end] != b'"' || bytes[..end].iter().fold(false, |c, &b| c | (b < 0x20)) {
            return None;
        }
        self.pos += end + 1;
        // `end` is at an ASCII quote: a character boundary, no check needed.
        Some(&rest[..end])
    }
}

/// Decodes one complete message from a WebSocket text frame, whose text
/// the WebSocket reader has checked as UTF-8.
pub fn decode_single_text(encoding: Encoding, text: &str) -> Result<ServerMessage<'_>, CodecError> {
    match encoding {
        Encoding::Json => decode_json_text(text),
        Encoding::Binary => decode_single(encoding, text.as_bytes()),
    }
}

/// Decodes one complete message, as carried by one WebSocket frame.
pub fn decode_single(encoding: Encoding, buf: &[u8]) -> Result<ServerMessage<'_>, CodecError> {
    match encoding {
        Encoding::Json => decode_json(buf),
        Encoding::Binary => match decode_binary(buf)? {
            Some((msg, used)) if used == buf.len() => Ok(msg),
            Some(_) => Err(CodecError::Truncated("trailing bytes after message")),
            None => Err(CodecError::Truncated("frame ends inside a message")),
        },
    }
}

/// Builds a long-poll batch body from messages already encoded one by one
/// (the server's shared event bytes are copied in, never re-encoded).
///
/// JSON: `[m1,m2,...]`. Binary: each message prefixed by its u32 length.
#[derive(Debug)]
pub struct BatchWriter {
    encoding: Encoding,
    buf: BytesMut,
    count: usize,
}

impl BatchWriter {
    pub fn new(encoding: Encoding) -> Self {
        let mut buf = BytesMut::with_capacity(256);
        if encoding == Encoding::Json {
            buf.put_u8(b'[');
        }
        BatchWriter {
            encoding,
            buf,
            count: 0,
        }
    }

    /// Appends one message already encoded in this batch's encoding.
    pub fn push_encoded(&mut self, msg: &[u8]) {
        match self.encoding {
            Encoding::Json => {
                if self.count > 0 {
                    self.buf.put_u8(b',');
                }
            }
            Encoding::Binary => self.buf.put_u32(msg.len() as u32),
        }
        self.buf.put_slice(msg);
        self.count += 1;
    }

    /// Encodes and appends one message.
    pub fn push(&mut self, msg: &ServerMessage<'_>) -> Result<(), CodecError> {
        let mut one = BytesMut::new();
        encode(self.encoding, msg, &mut one)?;
        self.push_encoded(&one);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn body_len(&self) -> usize {
        self.buf.len()
    }

    pub fn finish(mut self) -> bytes::Bytes {
        if self.encoding == Encoding::Json {
            self.buf.put_u8(b']');
        }
        self.buf.freeze()
    }
}

/// Decodes a complete long-poll batch body, appending its messages to `out`.
pub fn decode_batch<'a>(
    encoding: Encoding,
    body: &'a [u8],
    out: &mut Vec<ServerMessage<'a>>,
) -> Result<(), CodecError> {
    match encoding {
        Encoding::Json => {
            // The general parser refuses invalid UTF-8 too: checked once,
            // here, the answer is the same and the scanner need not check.
            let text = std::str::from_utf8(body).map_err(|_| CodecError::InvalidUtf8)?;
            if scan_batch(text, out).is_some() {
                return Ok(());
            }
            parse_json_batch(body, out)?;
        }
        Encoding::Binary => {
            let mut rest = body;
            while !rest.is_empty() {
                let mut r = Reader { buf: rest, pos: 0 };
                let len = r
                    .u32()
                    .ok_or(CodecError::Truncated("batch ends inside a length"))?
                    as usize;
                let record = r
                    .take(len)
                    .ok_or(CodecError::Truncated("batch ends inside a message"))?;
                out.push(decode_single(Encoding::Binary, record)?);
                rest = &rest[4 + len..];
            }
        }
    }
    Ok(())
}

/// The general parser's reading of a JSON batch (see [`parse_json`]).
fn parse_json_batch<'a>(
    body: &'a [u8],
    out: &mut Vec<ServerMessage<'a>>,
) -> Result<(), CodecError> {
    let msgs: Vec<WireMsg<'a>> =
        serde_json::from_slice(body).map_err(|e| CodecError::Json(e.to_string()))?;
    for m in msgs {
        out.push(m.into_message()?);
    }
    Ok(())
}

/// What a client asks of the server: over a WebSocket as a text frame, over
/// HTTP as the body of `POST /send` (always JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage<'a> {
    /// Subscribe to topics. `None`: from the current head on; `Some(seq)`:
    /// resume after `seq`, replaying what the server still buffers.
    Subscribe(BTreeMap<String, Option<u64>>),
    /// Publish a message to a topic on the client's behalf (chat lines,
    /// game input, requests): the server stamps a sequence number and every
    /// subscriber of the topic receives it as an event. `intended_ns` is the
    /// client's intended send time, from which its latency is measured.
    /// Borrowed where it can be: a client serializes from its own buffers
    /// and the server reads from the request, neither copying per message.
    Publish {
        #[serde(borrow)]
        topic: Cow<'a, str>,
        intended_ns: u64,
        #[serde(borrow)]
        payload: Cow<'a, str>,
    },
}

impl<'a> ClientMessage<'a> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client messages always serialize")
    }

    pub fn from_json(text: &'a str) -> Result<Self, CodecError> {
        serde_json::from_str(text).map_err(|e| CodecError::Json(e.to_string()))
    }
}

/// One entry of a long-poll cursor: a topic and, once known, the sequence
/// number of the last event the client has of it. The name borrows from
/// the query: a poll allocates nothing per topic to read its cursor.
pub type CursorEntry<'a> = (&'a str, Option<u64>);

/// Formats a long-poll cursor for the `subs` query parameter:
/// `A:5,B,C:0` (`B` without a cursor means "subscribe from now").
pub fn format_cursor<'a>(
    entries: impl IntoIterator<Item = (&'a str, Option<u64>)>,
    out: &mut String,
) {
    use std::fmt::Write as _;
    for (i, (topic, cursor)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(topic);
        if let Some(c) = cursor {
            let _ = write!(out, ":{c}");
        }
    }
}

/// Parses the `subs` query parameter; the error says what is wrong.
pub fn parse_cursor(text: &str) -> Result<Vec<CursorEntry<'_>>, String> {
    if text.is_empty() {
        return Err("subs is empty: name at least one topic".into());
    }
    // Counted before anything is parsed or allocated per topic.
    let n = text.bytes().filter(|b| *b == b',').count() + 1;
    if n > MAX_TOPICS_PER_SUBSCRIPTION {
        return Err(format!(
            "{n} topics in one subscription: at most {MAX_TOPICS_PER_SUBSCRIPTION}"
        ));
    }
    let mut entries: Vec<CursorEntry<'_>> = Vec::with_capacity(n);
    // Past a few topics a set, not a scan of what came before: duplicates
    // are found in linear time (pairwise, 100,000 topics froze the server
    // for 27 s). A few are compared directly, without allocating a set for
    // every long poll.
    let mut seen = (n > 8).then(|| std::collections::HashSet::with_capacity(n));
    for part in text.split(',') {
        let (topic, cursor) = match part.split_once(':') {
            Some((t, c)) => {
                let c: u64 = c
                    .parse()
                    .map_err(|_| format!("cursor of topic {t:?} is not a whole number: {c:?}"))?;
                (t, Some(c))
            }
            None => (part, None),
        };
        if !is_valid_topic(topic) {
            return Err(format!(
                "invalid topic name {topic:?}: 1 to 64 of A-Z a-z 0-9 _ - ."
            ));
        }
        let twice = match &mut seen {
            Some(set) => !set.insert(topic),
            None => entries.iter().any(|(t, _)| *t == topic),
        };
        if twice {
            return Err(format!("topic {topic:?} named twice"));
        }
        entries.push((topic, cursor));
    }
    Ok(entries)
}

/// Topics one subscription may name (a scenario's clients watch at most 64,
/// plus their echo topic). Past it, a subscription is refused with 400 or
/// WebSocket close 1008, before any topic is looked at.
pub const MAX_TOPICS_PER_SUBSCRIPTION: usize = 256;

/// Largest event payload, in bytes, the server publishes and every
/// transport carries (the scenario's `payload_bytes` limit too).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Room for the envelope around a payload: topic, sequence number, two
/// timestamps and framing, in either encoding.
pub const MAX_ENVELOPE_BYTES: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hundred_thousand_topics_are_refused_in_a_few_milliseconds() {
        let huge: Vec<String> = (0..100_000).map(|i| format!("T{i}:{i}")).collect();
        let text = huge.join(",");
        let started = std::time::Instant::now();
        assert!(parse_cursor(&text).is_err());
        // Counting commas: far below the 26.8 s the pairwise check took.
        // A generous bound (a slow machine under load), not a speed claim.
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        // The largest allowed subscription with a duplicate at its end is
        // found by the set.
        let mut most: Vec<String> = (0..MAX_TOPICS_PER_SUBSCRIPTION - 1)
            .map(|i| format!("T{i}"))
            .collect();
        most.push("T0".into());
        assert!(parse_cursor(&most.join(",")).unwrap_err().contains("twice"));
    }

    fn event(payload: &[u8]) -> ServerMessage<'_> {
        ServerMessage::Event(Event {
            topic: "SYM0042".into(),
            seq: 7,
            intended_ns: 1_000_000_123,
            published_ns: 1_000_000_456,
            payload: Cow::Borrowed(payload),
        })
    }

    fn all_messages() -> Vec<ServerMessage<'static>> {
        vec![
            event(b"abcdef"),
            event(b""),
            ServerMessage::Subscribed(vec![("A".into(), 0), ("B.c-d_e".into(), 99)]),
            ServerMessage::Missed {
                topic: "A".into(),
                first: 3,
                last: 9,
            },
        ]
    }

    #[test]
    fn every_message_round_trips_in_both_encodings() {
        for encoding in [Encoding::Json, Encoding::Binary] {
            for msg in all_messages() {
                let mut buf = BytesMut::new();
                encode(encoding, &msg, &mut buf).unwrap();
                assert_eq!(decode_single(encoding, &buf).unwrap(), msg, "{encoding:?}");
            }
        }
    }

    #[test]
    fn json_event_is_compact_and_readable() {
        let mut buf = BytesMut::new();
        encode(Encoding::Json, &event(b"xy"), &mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf).unwrap(),
            r#"{"t":"SYM0042","s":7,"i":1000000123,"p":1000000456,"d":"xy"}"#
        );
    }

    #[test]
    fn binary_event_header_has_documented_size() {
        let mut buf = BytesMut::new();
        encode(Encoding::Binary, &event(b"xyz"), &mut buf).unwrap();
        assert_eq!(buf.len(), BINARY_EVENT_HEADER + "SYM0042".len() + 3);
    }

    #[test]
    fn binary_decoder_asks_for_more_at_every_cut() {
        for msg in all_messages() {
            let mut buf = BytesMut::new();
            encode(Encoding::Binary, &msg, &mut buf).unwrap();
            for cut in 0..buf.len() {
                assert_eq!(decode_binary(&buf[..cut]), Ok(None), "cut at {cut}");
            }
            let (decoded, used) = decode_binary(&buf).unwrap().unwrap();
            assert_eq!((decoded, used), (msg, buf.len()));
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(decode_binary(&[0x7f]), Err(CodecError::UnknownTag(0x7f)));
        let mut bad_utf8 = BytesMut::new();
        encode(
            Encoding::Binary,
            &ServerMessage::Missed {
                topic: "ab".into(),
                first: 1,
                last: 2,
            },
            &mut bad_utf8,
        )
        .unwrap();
        let n = bad_utf8.len();
        bad_utf8[n - 1] = 0xff;
        assert_eq!(decode_binary(&bad_utf8), Err(CodecError::InvalidUtf8));
        assert!(decode_json(b"{\"t\":\"A\"}").is_err());
        assert!(decode_json(b"not json").is_err());
        assert!(decode_single(Encoding::Binary, &[TAG_EVENT, 0, 1]).is_err());
        let mut v = Vec::new();
        assert!(decode_batch(Encoding::Binary, &[0, 0, 0, 9, 1], &mut v).is_err());
        // Every prefix and every single-byte corruption of a valid batch.
        let mut batch = BatchWriter::new(Encoding::Binary);
        for m in all_messages() {
            batch.push(&m).unwrap();
        }
        let body = batch.finish().to_vec();
        for cut in 0..body.len() {
            let _ = decode_batch(Encoding::Binary, &body[..cut], &mut Vec::new());
        }
        for i in 0..body.len() {
            let mut corrupt = body.clone();
            corrupt[i] ^= 0xa5;
            let _ = decode_batch(Encoding::Binary, &corrupt, &mut Vec::new());
        }
    }

    #[test]
    fn batches_round_trip_including_empty() {
        for encoding in [Encoding::Json, Encoding::Binary] {
            let empty = BatchWriter::new(encoding).finish();
            let mut out = Vec::new();
            decode_batch(encoding, &empty, &mut out).unwrap();
            assert!(out.is_empty());

            let mut batch = BatchWriter::new(encoding);
            for m in all_messages() {
                batch.push(&m).unwrap();
            }
            assert_eq!(batch.len(), 4);
            let body = batch.finish();
            decode_batch(encoding, &body, &mut out).unwrap();
            assert_eq!(out, all_messages());
        }
    }

    #[test]
    fn cursor_formats_and_parses() {
        let mut s = String::new();
        format_cursor([("A", Some(5)), ("B", None), ("C", Some(0))], &mut s);
        assert_eq!(s, "A:5,B,C:0");
        assert_eq!(
            parse_cursor(&s).unwrap(),
            vec![("A", Some(5)), ("B", None), ("C", Some(0))]
        );
        assert!(parse_cursor("").unwrap_err().contains("at least one"));
        assert!(parse_cursor("A:x").unwrap_err().contains("whole number"));
        assert!(parse_cursor("A,A").unwrap_err().contains("twice"));
        let too_many: Vec<String> = (0..=MAX_TOPICS_PER_SUBSCRIPTION)
            .map(|i| format!("T{i}"))
            .collect();
        assert!(
            parse_cursor(&too_many.join(","))
                .unwrap_err()
                .contains("at most 256")
        );
        assert!(
            parse_cursor("bad topic")
                .unwrap_err()
                .contains("invalid topic")
        );
    }

    proptest::proptest! {
        #[test]
        fn envelope_decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = decode_binary(&bytes);
            let _ = decode_json(&bytes);
            let _ = decode_single(Encoding::Binary, &bytes);
            let _ = decode_batch(Encoding::Binary, &bytes, &mut Vec::new());
            let _ = decode_batch(Encoding::Json, &bytes, &mut Vec::new());
            let _ = parse_cursor(&String::from_utf8_lossy(&bytes));
        }
    }

    /// `decode_json` (the scanner, then the general parser) must answer
    /// exactly what the general parser alone answers.
    fn same_as_parser(buf: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        match (decode_json(buf), parse_json(buf)) {
            (Ok(fast), Ok(full)) => proptest::prop_assert_eq!(fast, full),
            (Err(_), Err(_)) => {}
            (fast, full) => proptest::prop_assert!(
                false,
                "{:?}: decode_json gave {fast:?}, the parser {full:?}",
                String::from_utf8_lossy(buf)
            ),
        }
        Ok(())
    }

    fn same_batch_as_parser(body: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        let (mut fast, mut full) = (Vec::new(), Vec::new());
        let fast_ok = decode_batch(Encoding::Json, body, &mut fast).is_ok();
        let full_ok = parse_json_batch(body, &mut full).is_ok();
        proptest::prop_assert_eq!(fast_ok, full_ok, "{:?}", String::from_utf8_lossy(body));
        if fast_ok {
            proptest::prop_assert_eq!(fast, full);
        }
        Ok(())
    }

    fn arbitrary_event()
    -> impl proptest::strategy::Strategy<Value = (String, Vec<u8>, u64, u64, u64)> {
        use proptest::prelude::*;
        (
            "[A-Za-z0-9_.-]{1,12}",
            proptest::collection::vec(any::<u8>(), 0..48),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
    }

    fn encoded(
        (topic, payload, seq, intended_ns, published_ns): &(String, Vec<u8>, u64, u64, u64),
    ) -> BytesMut {
        let mut buf = BytesMut::new();
        let msg = ServerMessage::Event(Event {
            topic: topic.as_str().into(),
            seq: *seq,
            intended_ns: *intended_ns,
            published_ns: *published_ns,
            payload: Cow::Borrowed(payload),
        });
        encode(Encoding::Json, &msg, &mut buf).unwrap();
        buf
    }

    /// A byte to corrupt JSON with: mostly the ones whose meaning the
    /// scanner must get right (control characters, quotes, escapes,
    /// digits, white space).
    fn json_byte() -> impl proptest::strategy::Strategy<Value = u8> {
        use proptest::prelude::*;
        prop_oneof![
            0u8..0x20,
            proptest::sample::select(b"\"\\0123456789 .-eE{}[],:".to_vec()),
            any::<u8>(),
        ]
    }

    /// `buf` cut at `at`, with the byte there replaced, and with `byte`
    /// inserted there as well (`at` taken modulo the length).
    fn corruptions(buf: &[u8], at: usize, byte: u8) -> [Vec<u8>; 3] {
        let i = at % buf.len();
        let mut replaced = buf.to_vec();
        replaced[i] = byte;
        let mut inserted = replaced.clone();
        inserted.insert(i, byte);
        [buf[..i].to_vec(), replaced, inserted]
    }

    proptest::proptest! {
        #[test]
        fn the_json_scanner_answers_as_the_parser_does(
            event in arbitrary_event(),
            at in proptest::prelude::any::<usize>(),
            byte in json_byte(),
        ) {
            let buf = encoded(&event);
            // The encoder's own output takes the scanner's path unless the
            // payload needed an escape.
            let plain = event
                .1
                .iter()
                .all(|b| *b >= 0x20 && *b != b'"' && *b != b'\\');
            proptest::prop_assert_eq!(
                scan_event(std::str::from_utf8(&buf).unwrap()).is_some(),
                plain
            );
            same_as_parser(&buf)?;
            for corrupt in corruptions(&buf, at, byte) {
                same_as_parser(&corrupt)?;
            }
        }

        #[test]
        fn the_json_batch_scanner_answers_as_the_parser_does(
            events in proptest::collection::vec(arbitrary_event(), 0..5),
            at in proptest::prelude::any::<usize>(),
            byte in json_byte(),
        ) {
            let mut batch = BatchWriter::new(Encoding::Json);
            for event in &events {
                batch.push_encoded(&encoded(event));
            }
            let body = batch.finish().to_vec();
            same_batch_as_parser(&body)?;
            for corrupt in corruptions(&body, at, byte) {
                same_batch_as_parser(&corrupt)?;
            }
        }
    }

    #[test]
    fn json_the_scanner_leaves_to_the_parser_still_decodes() {
        let cases: [(&[u8], bool); 9] = [
            (br#"{"t":"A","s":1,"i":2,"p":3,"d":"x"}"#, true),
            (br#"{"t":"A","s":1,"i":2,"p":3,"d":"x"} "#, true),
            (br#"{ "t":"A","s":1,"i":2,"p":3,"d":"x"}"#, true),
            (br#"{"s":1,"t":"A","i":2,"p":3,"d":"x"}"#, true),
            (br#"{"t":"A","s":1,"i":2,"p":3,"d":"\u0041\n"}"#, true),
            (
                b"{\"t\":\"A\",\"s\":1,\"i\":2,\"p\":3,\"d\":\"\x01\"}",
                false,
            ),
            (br#"{"t":"A","s":01,"i":2,"p":3,"d":"x"}"#, false),
            (br#"{"t":"A","s":1.5,"i":2,"p":3,"d":"x"}"#, false),
            (
                br#"{"t":"A","s":18446744073709551616,"i":2,"p":3,"d":"x"}"#,
                false,
            ),
        ];
        for (buf, ok) in cases {
            assert_eq!(
                decode_json(buf).is_ok(),
                ok,
                "{}",
                String::from_utf8_lossy(buf)
            );
            same_as_parser(buf).unwrap();
        }
        let mut out = Vec::new();
        decode_batch(
            Encoding::Json,
            br#"[{"t":"A","s":1,"i":2,"p":3,"d":"x"}, {"missed":{"t":"A","first":2,"last":3}}]"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn client_subscribe_message_round_trips() {
        let msg =
            ClientMessage::Subscribe([("A".to_string(), None), ("B".to_string(), Some(4))].into());
        assert_eq!(msg.to_json(), r#"{"subscribe":{"A":null,"B":4}}"#);
        assert_eq!(ClientMessage::from_json(&msg.to_json()).unwrap(), msg);
        assert!(ClientMessage::from_json(r#"{"publish":{}}"#).is_err());
    }
}
