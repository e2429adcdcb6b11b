//! WebSocket client connections on pushbench's own RFC 6455 codec
//! ([`crate::codec::frame`]): the frames the criterion benchmarks time and
//! CI gates are the frames the generator reads and writes.
//!
//! Frames are parsed by [`FrameReader`], as on the server: one read buffer
//! per connection, every pushed event handed on as a slice of it, text
//! checked as UTF-8 once. Pings are answered, a close is echoed, and a
//! broken frame is answered with the close code RFC 6455 7.4.1 gives it
//! (1002, 1007 or 1009) before the error is returned. Conformance is checked by the Autobahn|Testsuite fuzzing
//! server through `examples/autobahn_client.rs` (scripts/autobahn.sh).

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use futures_util::lock::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::ClientError;
use crate::codec::frame::{self, FrameError, OpCode, encode_close};
use crate::codec::reader::{FrameReader, Read, Role, close_code};

/// The largest HTTP response head the opening handshake accepts.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// The most header fields the handshake's response may carry.
const MAX_RESPONSE_HEADERS: usize = 32;
/// Read at least this much free space at a time: a few events per read
/// without holding much memory in each of thousands of connections.
const READ_CHUNK: usize = 4 * 1024;

/// A data message from the server.
pub use crate::codec::reader::DataMessage as WsMessage;

/// An open client WebSocket over the byte stream `S`.
pub struct WsConn<S> {
    pub reader: WsReader<S>,
    pub writer: WsWriter<S>,
}

/// The reading half: the connection's one read buffer and the message
/// being reassembled, if a fragmented one is under way.
pub struct WsReader<S> {
    io: ReadHalf<S>,
    frames: FrameReader,
    /// Where pongs and close answers go.
    writer: WsWriter<S>,
}

/// The writing half, shared by the reader (pongs, close answers) and
/// whoever sends messages; clones write to the same connection.
pub struct WsWriter<S>(Arc<Mutex<Writer<S>>>);

impl<S> Clone for WsWriter<S> {
    fn clone(&self) -> Self {
        WsWriter(self.0.clone())
    }
}

struct Writer<S> {
    io: WriteHalf<S>,
    out: BytesMut,
    /// A close frame went out: RFC 6455 5.5.1 allows no frame after it.
    closed: bool,
}

impl<S: AsyncRead + AsyncWrite> WsConn<S> {
    /// The opening handshake over HTTP/1.1 (RFC 6455 4.1): `GET path` with
    /// a fresh key, then a `101` whose `Sec-WebSocket-Accept` matches it.
    /// A status other than 101 is [`ClientError::Status`].
    pub async fn handshake(
        mut stream: S,
        host: &str,
        path: &str,
        max_message: usize,
    ) -> Result<WsConn<S>, ClientError>
    where
        S: Unpin,
    {
        // The key and its answer (`check_response`) as tungstenite makes them.
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let handshake = |e: std::io::Error| ClientError::Handshake(e.to_string());
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(handshake)?;
        stream.flush().await.map_err(handshake)?;

        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let head_len = loop {
            if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() >= MAX_RESPONSE_HEAD {
                return Err(ClientError::Handshake(format!(
                    "response head longer than {MAX_RESPONSE_HEAD} bytes"
                )));
            }
            buf.reserve(READ_CHUNK);
            if stream.read_buf(&mut buf).await.map_err(handshake)? == 0 {
                return Err(ClientError::Handshake(
                    "connection closed before the handshake's answer".into(),
                ));
            }
        };
        check_response(&buf[..head_len], &key)?;
        buf.advance(head_len);
        Ok(WsConn::open(stream, buf, max_message))
    }

    /// A WebSocket on a stream whose handshake is done elsewhere (an
    /// HTTP/2 extended CONNECT); `buf` holds bytes already read past it.
    pub fn open(stream: S, buf: BytesMut, max_message: usize) -> WsConn<S> {
        let (read, write) = tokio::io::split(stream);
        let writer = WsWriter(Arc::new(Mutex::new(Writer {
            io: write,
            out: BytesMut::new(),
            closed: false,
        })));
        WsConn {
            reader: WsReader {
                io: read,
                frames: FrameReader::new(Role::Client, buf, max_message),
                writer: writer.clone(),
            },
            writer,
        }
    }

    /// The next data message; see [`WsReader::next`].
    pub async fn next(&mut self) -> Result<WsMessage, ClientError> {
        self.reader.next().await
    }
}

/// Checks the server's answer to the opening handshake.
fn check_response(head: &[u8], key: &str) -> Result<(), ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ClientError::Handshake(
                "incomplete HTTP response head".into(),
            ));
        }
        Err(e) => return Err(ClientError::Handshake(format!("bad HTTP response: {e}"))),
    }
    let status = response.code.unwrap_or(0);
    if status != 101 {
        return Err(ClientError::Status(status));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let upgrade = header("upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ClientError::Handshake(format!(
            "101 without Upgrade: websocket (got {upgrade:?})"
        )));
    }
    let connection = header("connection").unwrap_or_default();
    if !connection
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    {
        return Err(ClientError::Handshake(format!(
            "101 without Connection: Upgrade (got {connection:?})"
        )));
    }
    let accept = header("sec-websocket-accept").unwrap_or_default();
    let want = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    if accept != want {
        return Err(ClientError::Handshake(format!(
            "Sec-WebSocket-Accept {accept:?} does not answer the key (expected {want:?})"
        )));
    }
    // No extension or subprotocol was offered, so none may be chosen.
    for name in ["sec-websocket-extensions", "sec-websocket-protocol"] {
        if let Some(value) = header(name) {
            return Err(ClientError::Handshake(format!(
                "the server chose {name}: {value}, which was not offered"
            )));
        }
    }
    Ok(())
}

impl<S: AsyncRead + AsyncWrite> WsReader<S> {
    /// The next data message. Pings are answered and pongs skipped; a
    /// close is echoed and returned as [`ClientError::Closed`] with its
    /// code; a frame that breaks RFC 6455 is answered with a close frame
    /// and returned as [`ClientError::Protocol`].
    pub async fn next(&mut self) -> Result<WsMessage, ClientError> {
        loop {
            match self.frames.parse() {
                Ok(Read::Data(message)) => return Ok(message),
                Ok(Read::More(want)) => self.fill(want).await?,
                Ok(Read::Ping(payload)) => self.writer.send(OpCode::Pong, &payload).await?,
                Ok(Read::Pong) => {}
                Ok(Read::Close(code)) => {
                    // Echo the code (RFC 6455 5.5.1); the server then closes TCP.
                    self.writer.close(code.map(|c| (c, ""))).await?;
                    return Err(ClientError::Closed(code));
                }
                Err(e) => return Err(self.fail(e).await),
            }
        }
    }

    /// Reads more, until the buffer holds at least `want` bytes or one
    /// read returned something.
    async fn fill(&mut self, want: usize) -> Result<(), ClientError> {
        let buf = &mut self.frames.buf;
        buf.reserve(want.saturating_sub(buf.len()).max(READ_CHUNK));
        match self.io.read_buf(buf).await {
            Ok(0) => Err(ClientError::Closed(None)),
            Ok(_) => Ok(()),
            Err(e) => Err(ClientError::Io(e.to_string())),
        }
    }

    /// Fails the connection (RFC 6455 7.1.7): a close frame with the code
    /// the error calls for, then the error.
    async fn fail(&mut self, e: FrameError) -> ClientError {
        // Best effort: the connection is being given up either way.
        let _ = self.writer.close(Some((close_code(&e), ""))).await;
        ClientError::Protocol(format!("WebSocket: {e}"))
    }

    /// After a close: waits (at most `timeout`) for the server to close
    /// TCP, as RFC 6455 7.1.1 asks of clients, discarding what arrives.
    pub async fn await_eof(&mut self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let buf = &mut self.frames.buf;
                buf.clear();
                buf.reserve(READ_CHUNK);
                match self.io.read_buf(buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

impl<S: AsyncWrite> WsWriter<S> {
    /// Sends a text message as one masked frame.
    pub async fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.send(OpCode::Text, text.as_bytes()).await
    }

    /// Sends a binary message as one masked frame.
    pub async fn send_binary(&self, data: &[u8]) -> Result<(), ClientError> {
        self.send(OpCode::Binary, data).await
    }

    /// Sends several text messages in one write.
    pub async fn send_texts(&self, texts: &[String]) -> Result<(), ClientError> {
        let mut w = self.0.lock().await;
        for text in texts {
            w.encode(OpCode::Text, text.as_bytes())?;
        }
        w.flush().await
    }

    /// Sends one frame, masked with a fresh key (RFC 6455 5.3).
    pub async fn send(&self, opcode: OpCode, payload: &[u8]) -> Result<(), ClientError> {
        let mut w = self.0.lock().await;
        w.encode(opcode, payload)?;
        w.flush().await
    }

    /// Sends a close frame, once; later calls do nothing.
    pub async fn close(&self, close: Option<(u16, &str)>) -> Result<(), ClientError> {
        let mut w = self.0.lock().await;
        if w.closed {
            return Ok(());
        }
        let mut payload = BytesMut::new();
        encode_close(close, &mut payload);
        w.encode(OpCode::Close, &payload)?;
        w.closed = true;
        w.flush().await
    }
}

impl<S: AsyncWrite> Writer<S> {
    fn encode(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), ClientError> {
        if self.closed {
            return Err(ClientError::Closed(None));
        }
        frame::encode_frame(true, opcode, Some(rand::random()), payload, &mut self.out);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        let result = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        }
        .await;
        self.out.clear();
        result.map_err(|e| ClientError::Io(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    fn frame(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        frame::encode_frame(fin, opcode, mask, payload, &mut out);
        out
    }

    /// What the test's server end has read of the client's frames.
    struct Peer {
        io: DuplexStream,
        buf: Vec<u8>,
    }

    impl Peer {
        /// The next (masked) frame the client sent: opcode and unmasked payload.
        async fn frame(&mut self) -> (OpCode, Vec<u8>) {
            loop {
                if let Some((f, used)) = frame::decode_frame(&self.buf).unwrap() {
                    assert!(f.header.mask.is_some(), "client frames are masked");
                    let got = (f.header.opcode, f.unmasked().into_owned());
                    self.buf.drain(..used);
                    return got;
                }
                let mut chunk = [0u8; 4096];
                let n = self.io.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client closed before a whole frame");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }

    /// A client on one end of an in-memory pipe; the test is the server.
    fn pair(max_message: usize) -> (WsConn<DuplexStream>, Peer) {
        let (client, server) = duplex(1 << 20);
        let peer = Peer {
            io: server,
            buf: Vec::new(),
        };
        (WsConn::open(client, BytesMut::new(), max_message), peer)
    }

    #[tokio::test]
    async fn messages_split_across_reads_arrive_whole_and_in_order() {
        let (mut ws, mut server) = pair(1 << 20);
        let mut wire = frame(true, OpCode::Text, None, b"first");
        wire.extend_from_slice(&frame(true, OpCode::Binary, None, &[0, 159, 255]));
        wire.extend_from_slice(&frame(true, OpCode::Text, None, &[b'x'; 70_000]));
        // A byte at a time for the first frames, then the rest.
        for b in &wire[..12] {
            server.io.write_all(&[*b]).await.unwrap();
        }
        server.io.write_all(&wire[12..]).await.unwrap();
        assert_eq!(ws.next().await.unwrap(), WsMessage::Text("first".into()));
        assert_eq!(
            ws.next().await.unwrap(),
            WsMessage::Binary(Bytes::from_static(&[0, 159, 255]))
        );
        let WsMessage::Text(long) = ws.next().await.unwrap() else {
            panic!("not text")
        };
        assert_eq!(long.len(), 70_000);
    }

    #[tokio::test]
    async fn fragments_and_interleaved_pings_make_one_message_and_pongs() {
        let (mut ws, mut server) = pair(1 << 20);
        let mut wire = frame(false, OpCode::Text, None, "h\u{e9}".as_bytes());
        wire.extend_from_slice(&frame(true, OpCode::Ping, None, b"are you there"));
        wire.extend_from_slice(&frame(true, OpCode::Continuation, None, b"llo"));
        server.io.write_all(&wire).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap(),
            WsMessage::Text("h\u{e9}llo".into())
        );
        assert_eq!(
            server.frame().await,
            (OpCode::Pong, b"are you there".to_vec())
        );
    }

    #[tokio::test]
    async fn sent_messages_are_masked_text_frames() {
        let (ws, mut server) = pair(1 << 20);
        ws.writer.send_text("subscribe me").await.unwrap();
        ws.writer
            .send_texts(&["a".to_string(), "b".to_string()])
            .await
            .unwrap();
        for want in ["subscribe me", "a", "b"] {
            assert_eq!(
                server.frame().await,
                (OpCode::Text, want.as_bytes().to_vec())
            );
        }
    }

    #[tokio::test]
    async fn a_close_is_echoed_with_its_code_and_ends_the_stream() {
        let (mut ws, mut server) = pair(1 << 20);
        let mut payload = BytesMut::new();
        encode_close(Some((1001, "going away")), &mut payload);
        server
            .io
            .write_all(&frame(true, OpCode::Close, None, &payload))
            .await
            .unwrap();
        assert!(matches!(
            ws.next().await,
            Err(ClientError::Closed(Some(1001)))
        ));
        let (op, payload) = server.frame().await;
        assert_eq!(
            (op, &payload[..2]),
            (OpCode::Close, &1001u16.to_be_bytes()[..])
        );
        // Nothing may follow a close.
        assert!(ws.writer.send_text("late").await.is_err());
    }

    /// Each broken frame is answered with a close of the code RFC 6455
    /// gives it, and the error names what was wrong.
    #[tokio::test]
    async fn broken_frames_are_refused_with_their_close_codes() {
        let cases: [(BytesMut, u16, &str); 6] = [
            (
                frame(true, OpCode::Text, None, &[0xC3, 0x28]),
                1007,
                "UTF-8",
            ),
            (
                frame(true, OpCode::Text, Some([1, 2, 3, 4]), b"hi"),
                1002,
                "masked",
            ),
            (
                {
                    let mut f = frame(true, OpCode::Text, None, b"hi");
                    f[0] |= 0x40;
                    f
                },
                1002,
                "reserved bits",
            ),
            (
                frame(true, OpCode::Continuation, None, b"hi"),
                1002,
                "continuation",
            ),
            (
                frame(true, OpCode::Binary, None, &[0; 65]),
                1009,
                "longer than 64",
            ),
            (BytesMut::from(&[0x83u8, 0x00][..]), 1002, "opcode"),
        ];
        for (wire, code, says) in cases {
            let (mut ws, mut server) = pair(64);
            server.io.write_all(&wire).await.unwrap();
            match ws.next().await {
                Err(ClientError::Protocol(message)) => {
                    assert!(message.contains(says), "{message:?} should say {says:?}")
                }
                other => panic!("expected a protocol error ({says}), got {other:?}"),
            }
            let (op, payload) = server.frame().await;
            assert_eq!(
                (op, &payload[..]),
                (OpCode::Close, &code.to_be_bytes()[..]),
                "{says}"
            );
        }
    }

    #[test]
    fn the_handshake_answer_must_match_the_key() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        check_response(good.as_bytes(), key).unwrap();
        let wrong_key = good.replace("s3pP", "AAAA");
        assert!(matches!(
            check_response(wrong_key.as_bytes(), key),
            Err(ClientError::Handshake(m)) if m.contains("does not answer the key")
        ));
        assert!(matches!(
            check_response(b"HTTP/1.1 404 Not Found\r\n\r\n", key),
            Err(ClientError::Status(404))
        ));
        let deflate = good.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        );
        assert!(matches!(
            check_response(deflate.as_bytes(), key),
            Err(ClientError::Handshake(m)) if m.contains("not offered")
        ));
    }
}
