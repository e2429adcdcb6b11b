//! The server's end of a WebSocket, on pushbench's own codec: the opening
//! handshake (an HTTP/1.1 upgrade, or HTTP/2's extended CONNECT, RFC 8441)
//! and the frames after it.
//!
//! Frames are read by [`FrameReader`], the parser the generator's client
//! uses. Writes go straight from the hub's shared bytes: a large event's
//! frame is its own small header followed by the payload `Bytes` every
//! subscriber shares, written with vectored writes, so fanning it out to
//! many connections copies no payload in user space. Small payloads are
//! copied next to their headers instead (see [`SHARE_FROM`]), and all the
//! frames ready together go out in one write. Where the stream cannot
//! write vectored (a WebSocket inside an HTTP/2 stream), the queued frames
//! are joined into one buffer first, so each flush is still one write.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use bytes_utils::SegmentedBuf;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::frame::{FrameError, FrameHeader, OpCode, encode_close};
use crate::codec::reader::{FrameReader, Read, Role};

/// Read at least this much free space at a time: a few client messages per
/// read without holding much memory in each of thousands of connections.
const READ_CHUNK: usize = 4 * 1024;
/// A read buffer larger than this is let go once it is empty.
const READ_KEEP: usize = 16 * 1024;
/// A large frame's buffer grows by at most this much a read.
const READ_STEP: usize = 64 * 1024;
/// How long closing a connection may take: the close frame out, and the
/// client's answer or end.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// What a failed connection reads and drops, at most, while it waits for
/// the client to close.
const DISCARD_BUDGET: usize = 1 << 20;
/// The most a close frame's reason may take: a control frame's 125 bytes
/// less the code.
const MAX_CLOSE_REASON: usize = 123;
/// Frames are copied into buffers of this size (or one frame's, if
/// larger), each written as one slice.
const CHUNK: usize = 4 * 1024;
/// Payloads this long or longer are written from the shared bytes; shorter
/// ones are copied next to their header. Measured at saturation with the
/// stock ticker's events (about 140 bytes), a write of many small slices
/// cost the server more than copying them: the copy is a few nanoseconds,
/// and the kernel walks every slice.
const SHARE_FROM: usize = 1024;

/// A request to open a WebSocket, checked as RFC 6455 4.2.1 (HTTP/1.1) and
/// RFC 8441 4 (HTTP/2) ask; anything else is refused with its status.
pub struct WsUpgrade {
    /// `Sec-WebSocket-Key` over HTTP/1.1; none over HTTP/2, which has no key.
    key: Option<HeaderValue>,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let refuse = |why: &'static str| (StatusCode::BAD_REQUEST, why).into_response();
        let has = |name: header::HeaderName, token: &str| {
            parts.headers.get_all(name).iter().any(|v| {
                v.as_bytes()
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
            })
        };
        let key = if parts.version <= Version::HTTP_11 {
            if parts.method != Method::GET {
                return Err((
                    StatusCode::METHOD_NOT_ALLOWED,
                    [(header::ALLOW, "GET")],
                    "open a WebSocket with GET\n",
                )
                    .into_response());
            }
            if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
                return Err(refuse(
                    "a WebSocket route: send Connection: Upgrade and Upgrade: websocket\n",
                ));
            }
            // RFC 6455 4.1: the key is 16 random bytes in base64.
            let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).filter(|k| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(k.as_bytes())
                    .is_ok_and(|raw| raw.len() == 16)
            });
            let Some(key) = key else {
                return Err(refuse("Sec-WebSocket-Key must be 16 bytes in base64\n"));
            };
            Some(key.clone())
        } else {
            if parts.method != Method::CONNECT {
                return Err((
                    StatusCode::METHOD_NOT_ALLOWED,
                    [(header::ALLOW, "CONNECT")],
                    "open a WebSocket over HTTP/2 with CONNECT\n",
                )
                    .into_response());
            }
            let websocket = parts
                .extensions
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str() == "websocket");
            if !websocket {
                return Err(refuse(
                    "a WebSocket over HTTP/2 needs :protocol websocket\n",
                ));
            }
            None
        };
        // RFC 6455 4.4: a version the server does not speak gets 426 and
        // the versions it does.
        let version = parts.headers.get(header::SEC_WEBSOCKET_VERSION);
        if version.is_none_or(|v| v.as_bytes() != b"13") {
            return Err((
                StatusCode::UPGRADE_REQUIRED,
                [
                    (header::SEC_WEBSOCKET_VERSION, "13"),
                    (header::UPGRADE, "websocket"),
                ],
                "Sec-WebSocket-Version must be 13\n",
            )
                .into_response());
        }
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(refuse("this connection cannot be upgraded\n"));
        };
        Ok(WsUpgrade { key, on_upgrade })
    }
}

/// A WebSocket on an upgraded HTTP connection.
pub type UpgradedWs = WsSocket<TokioIo<Upgraded>>;

impl WsUpgrade {
    /// Accepts: answers 101 (HTTP/1.1) or 200 (HTTP/2), and runs `serve`
    /// on the WebSocket once the connection is handed over. No extension
    /// or subprotocol is chosen, whatever the client offered.
    pub fn on_upgrade<F, Fut>(self, max_message: usize, serve: F) -> Response
    where
        F: FnOnce(UpgradedWs) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                serve(WsSocket::new(TokioIo::new(upgraded), max_message)).await;
            }
        });
        let Some(key) = self.key else {
            return StatusCode::OK.into_response();
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, "upgrade"),
                (header::UPGRADE, "websocket"),
                (header::SEC_WEBSOCKET_ACCEPT, accept.as_str()),
            ],
        )
            .into_response()
    }
}

/// Why a read ended the connection.
#[derive(Debug)]
pub enum ReadError {
    /// The connection ended or broke: there is no one to answer.
    Gone,
    /// The client broke RFC 6455; fail the connection with its close code.
    Broken(FrameError),
}

/// One open WebSocket: its stream, its read buffer and the frames queued
/// to send.
pub struct WsSocket<S> {
    io: S,
    frames: FrameReader,
    /// Frames to send: each a header from `heads` and its payload, shared.
    out: SegmentedBuf<Bytes>,
    /// Where frame headers are written before they are split off into `out`.
    heads: BytesMut,
    /// A close frame went out: RFC 6455 5.5.1 allows no frame after it.
    close_sent: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsSocket<S> {
    /// A WebSocket whose client messages (and frames) are at most
    /// `max_message` bytes.
    pub fn new(io: S, max_message: usize) -> WsSocket<S> {
        WsSocket {
            io,
            frames: FrameReader::new(Role::Server, BytesMut::new(), max_message),
            out: SegmentedBuf::new(),
            heads: BytesMut::new(),
            close_sent: false,
        }
    }

    /// What the client sent next. A ping's pong is queued (send it with
    /// [`WsSocket::flush`]). Cancel-safe: nothing read is lost if the
    /// future is dropped, so it can wait in a `select!`.
    pub async fn read(&mut self) -> Result<Read, ReadError> {
        loop {
            match self.frames.parse() {
                Ok(Read::More(want)) => {
                    let buf = &mut self.frames.buf;
                    // After a large message the buffer is let go, and a
                    // large frame's room is made as its bytes arrive, not
                    // on the word of its header.
                    if buf.is_empty() && buf.capacity() > READ_KEEP {
                        *buf = BytesMut::new();
                    }
                    let missing = want.saturating_sub(buf.len());
                    buf.reserve(missing.clamp(READ_CHUNK, READ_STEP));
                    match self.io.read_buf(buf).await {
                        Ok(0) | Err(_) => return Err(ReadError::Gone),
                        Ok(_) => {}
                    }
                }
                Ok(Read::Ping(payload)) => {
                    self.queue(OpCode::Pong, &payload);
                    return Ok(Read::Ping(Bytes::new()));
                }
                Ok(read) => return Ok(read),
                Err(e) => return Err(ReadError::Broken(e)),
            }
        }
    }

    /// Queues one unfragmented frame. A payload of [`SHARE_FROM`] bytes
    /// or more is not copied: the write takes it from the shared bytes.
    pub fn queue(&mut self, opcode: OpCode, payload: &Bytes) {
        if self.close_sent {
            return;
        }
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let shared = payload.len() >= SHARE_FROM;
        let need = header.encoded_len() + if shared { 0 } else { payload.len() };
        // A full buffer is queued as it is and a new one started: growing
        // it would copy everything queued so far.
        if self.heads.capacity() - self.heads.len() < need {
            if !self.heads.is_empty() {
                self.out.push(self.heads.split().freeze());
            }
            self.heads = BytesMut::with_capacity(need.max(CHUNK));
        }
        header.encode(&mut self.heads);
        if shared {
            self.out.push(self.heads.split().freeze());
            self.out.push(payload.clone());
        } else {
            self.heads.extend_from_slice(payload);
        }
    }

    /// Whether frames wait to be sent.
    pub fn pending(&self) -> bool {
        !self.heads.is_empty() || bytes::Buf::has_remaining(&self.out)
    }

    /// Sends every queued frame.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.heads.is_empty() {
            self.out.push(self.heads.split().freeze());
        }
        let written = if self.io.is_write_vectored() {
            self.io.write_all_buf(&mut self.out).await
        } else {
            let mut joined = BytesMut::with_capacity(bytes::Buf::remaining(&self.out));
            joined.put(&mut self.out);
            self.io.write_all(&joined).await
        };
        // Let go of what was written (the queue keeps its last chunk,
        // emptied) and of the buffer, so an idle connection holds none.
        let mut queue = std::mem::take(&mut self.out).into_inner();
        queue.clear();
        self.out = queue.into();
        self.heads = BytesMut::new();
        written?;
        self.io.flush().await
    }

    /// Queues one frame and sends everything queued.
    pub async fn send(&mut self, opcode: OpCode, payload: Bytes) -> io::Result<()> {
        self.queue(opcode, &payload);
        self.flush().await
    }

    /// Sends a close frame with `code` and `reason` (cut to fit a control
    /// frame); nothing is queued after it.
    async fn send_close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.send(OpCode::Close, close_payload(code, reason))
            .await?;
        self.close_sent = true;
        Ok(())
    }

    /// Closes on the server's initiative: a close frame with `code` and
    /// `reason` (cut to fit a control frame), then the client's answering
    /// close, so the client sees the reason and not a dropped connection
    /// (1006). All within [`CLOSE_GRACE`]: a client that neither reads nor
    /// answers (over HTTP/2 a stalled stream is not a stalled socket) is
    /// let go.
    pub async fn close(mut self, code: u16, reason: &str) {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if self.send_close(code, reason).await.is_err() {
                return;
            }
            while let Ok(read) = self.read().await {
                if matches!(read, Read::Close(_)) {
                    break;
                }
            }
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    /// Fails the connection (RFC 6455 7.1.7) after a frame that broke the
    /// protocol: the close frame with `code`, then the server's side of
    /// TCP closed, as nothing more the client sends can be trusted (its
    /// close may have been the broken frame). What still arrives is read
    /// and dropped until the client closes too: a socket closed with
    /// unread bytes resets the connection, and the reset can overtake the
    /// close frame. All within [`CLOSE_GRACE`].
    pub async fn fail(mut self, code: u16, reason: &str) {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if self.send_close(code, reason).await.is_err() {
                return;
            }
            let _ = self.io.shutdown().await;
            let mut budget = DISCARD_BUDGET;
            let buf = &mut self.frames.buf;
            while budget > 0 {
                buf.clear();
                buf.reserve(READ_CHUNK);
                match self.io.read_buf(buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => budget = budget.saturating_sub(n),
                }
            }
        })
        .await;
    }

    /// The client closed: answer with its code (RFC 6455 5.5.1) and end;
    /// the server closes TCP first (7.1.1). Within [`CLOSE_GRACE`].
    pub async fn answer_close(mut self, code: Option<u16>) {
        let mut payload = BytesMut::new();
        encode_close(code.map(|c| (c, "")), &mut payload);
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if self.send(OpCode::Close, payload.freeze()).await.is_ok() {
                let _ = self.io.shutdown().await;
            }
        })
        .await;
    }
}

/// A close frame's payload: the code and as much of `reason` as fits, cut
/// at a character boundary (a longer one could not be sent at all).
fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = BytesMut::new();
    encode_close(Some((code, &reason[..end])), &mut payload);
    payload.freeze()
}

#[cfg(test)]
mod tests {
    use tokio::io::{DuplexStream, duplex};

    use super::*;
    use crate::codec::frame::{decode_close, decode_frame, encode_frame};
    use crate::codec::reader::DataMessage;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = close_payload(1008, &"é".repeat(100));
        let (code, reason) = decode_close(&long).unwrap().unwrap();
        assert_eq!(code, 1008);
        assert!((MAX_CLOSE_REASON - 1..=MAX_CLOSE_REASON).contains(&reason.len()));
        let short = close_payload(1008, "short");
        assert_eq!(decode_close(&short).unwrap(), Some((1008, "short")));
    }

    /// Each malformed opening handshake is refused with its status and the
    /// headers that status calls for; a good one passes the checks.
    #[tokio::test]
    async fn bad_handshakes_get_their_status() {
        use axum::http::Request;
        async fn refusal(request: Request<()>) -> Option<Response> {
            let (mut parts, ()) = request.into_parts();
            WsUpgrade::from_request_parts(&mut parts, &()).await.err()
        }
        async fn text(r: Response) -> String {
            let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
            String::from_utf8(body.to_vec()).unwrap()
        }
        let ws = |version: &str, key: &str| {
            Request::get("/ws")
                .header("connection", "keep-alive, Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", version)
                .header("sec-websocket-key", key)
                .body(())
                .unwrap()
        };
        const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
        let post = Request::post("/ws").body(()).unwrap();
        let r = refusal(post).await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "GET");
        let plain = Request::get("/ws").body(()).unwrap();
        assert_eq!(
            refusal(plain).await.unwrap().status(),
            StatusCode::BAD_REQUEST
        );
        let r = refusal(ws("13", "c2hvcnQ=")).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(text(r).await.contains("16 bytes in base64"));
        let old = ws("8", KEY);
        let r = refusal(old).await.unwrap();
        assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(r.headers()["sec-websocket-version"], "13");
        assert_eq!(r.headers()["upgrade"], "websocket");
        // Checks passed; only the connection (none here) cannot be upgraded.
        let r = refusal(ws("13", KEY)).await.unwrap();
        assert_eq!(text(r).await, "this connection cannot be upgraded\n");
        let h2 = Request::get("/ws")
            .version(axum::http::Version::HTTP_2)
            .body(())
            .unwrap();
        let r = refusal(h2).await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "CONNECT");
    }

    /// A server socket on one end of an in-memory pipe; the test is the client.
    fn pair() -> (WsSocket<DuplexStream>, DuplexStream) {
        let (server, client) = duplex(1 << 20);
        (WsSocket::new(server, 1024), client)
    }

    async fn frames_read(client: &mut DuplexStream, n: usize) -> Vec<(OpCode, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while got.len() < n {
            while let Some((f, used)) = decode_frame(&buf).unwrap() {
                assert!(f.header.mask.is_none(), "server frames are not masked");
                got.push((f.header.opcode, f.payload.to_vec()));
                buf.drain(..used);
            }
            if got.len() < n {
                let mut chunk = [0u8; 4096];
                let read = client.read(&mut chunk).await.unwrap();
                assert!(read > 0, "the server closed early");
                buf.extend_from_slice(&chunk[..read]);
            }
        }
        got
    }

    #[tokio::test]
    async fn queued_frames_go_out_whole_and_in_order_across_buffers_and_shared_payloads() {
        let (mut ws, mut client) = pair();
        // Small frames fill several buffers; every seventh payload is
        // large enough to be written from its shared bytes.
        let payloads: Vec<Bytes> = (0..60u8)
            .map(|i| {
                let len = if i % 7 == 3 {
                    SHARE_FROM + usize::from(i)
                } else {
                    100
                };
                Bytes::from(vec![i; len])
            })
            .collect();
        for (i, p) in payloads.iter().enumerate() {
            let op = if i % 2 == 0 {
                OpCode::Text
            } else {
                OpCode::Binary
            };
            ws.queue(op, p);
        }
        ws.queue(OpCode::Ping, &Bytes::new());
        assert!(ws.pending());
        ws.flush().await.unwrap();
        assert!(!ws.pending());
        let got = frames_read(&mut client, payloads.len() + 1).await;
        for (i, p) in payloads.iter().enumerate() {
            let op = if i % 2 == 0 {
                OpCode::Text
            } else {
                OpCode::Binary
            };
            assert_eq!(got[i], (op, p.to_vec()), "frame {i}");
        }
        assert_eq!(got[payloads.len()], (OpCode::Ping, vec![]));
    }

    #[tokio::test]
    async fn pings_are_answered_and_client_messages_read_unmasked() {
        let (mut ws, mut client) = pair();
        let mut wire = BytesMut::new();
        encode_frame(true, OpCode::Ping, Some([1, 2, 3, 4]), b"you?", &mut wire);
        encode_frame(
            true,
            OpCode::Text,
            Some([9, 8, 7, 6]),
            b"publish",
            &mut wire,
        );
        client.write_all(&wire).await.unwrap();
        assert!(matches!(ws.read().await, Ok(Read::Ping(_))));
        assert!(ws.pending());
        ws.flush().await.unwrap();
        assert_eq!(
            frames_read(&mut client, 1).await,
            [(OpCode::Pong, b"you?".to_vec())]
        );
        assert_eq!(
            ws.read().await.unwrap(),
            Read::Data(DataMessage::Text("publish".into()))
        );
        drop(client);
        assert!(matches!(ws.read().await, Err(ReadError::Gone)));
    }

    #[tokio::test]
    async fn a_close_waits_for_the_answer_then_ends() {
        let (ws, mut client) = pair();
        let mut answer = BytesMut::new();
        encode_frame(
            true,
            OpCode::Close,
            Some([1, 1, 1, 1]),
            &[0x03, 0xE8],
            &mut answer,
        );
        client.write_all(&answer).await.unwrap();
        ws.close(1008, "go away").await;
        let got = frames_read(&mut client, 1).await;
        assert_eq!(got[0].0, OpCode::Close);
        assert_eq!(decode_close(&got[0].1).unwrap(), Some((1008, "go away")));
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "bytes after the close: {rest:?}");
    }
}
