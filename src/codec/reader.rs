//! Reading one WebSocket connection's frames out of its one read buffer,
//! with no I/O: the generator's client (`client::ws`) and the bundled
//! server (`server::ws`) feed it bytes and act on what it answers, so both
//! ends parse with the same code, the codec that criterion times.
//!
//! A whole unfragmented data frame (every pushed event, almost every client
//! message) is handed on as a slice of the read buffer, never copied; text
//! is checked as UTF-8 once, here, and travels on as [`Utf8Bytes`].

use bytes::{Buf, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frame::{FrameError, FrameHeader, OpCode, Reassembler, apply_mask, close, decode_close};

/// Which end reads: a server reads masked frames, a client unmasked ones
/// (RFC 6455 5.1), and each refuses the other kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// A whole data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataMessage {
    Text(Utf8Bytes),
    Binary(Bytes),
}

/// What the buffer held next.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Data(DataMessage),
    /// Answer with a pong carrying this payload.
    Ping(Bytes),
    Pong,
    /// The peer's close frame, with its code if it gave one.
    Close(Option<u16>),
    /// No whole frame yet: read until the buffer holds at least this many
    /// bytes (0: until anything more arrives).
    More(usize),
}

/// The read side of one connection: its buffer and the message being
/// reassembled, if a fragmented one is under way.
#[derive(Debug)]
pub struct FrameReader {
    role: Role,
    /// Bytes read and not yet parsed; reads append here.
    pub buf: BytesMut,
    fragments: Reassembler,
    fragmented: bool,
    max_message: usize,
}

impl FrameReader {
    /// A reader whose messages (and frames) are at most `max_message`
    /// bytes; `buf` holds bytes already read past the handshake.
    pub fn new(role: Role, buf: BytesMut, max_message: usize) -> FrameReader {
        FrameReader {
            role,
            buf,
            fragments: Reassembler::new(max_message),
            fragmented: false,
            max_message,
        }
    }

    /// Parses what the buffer holds. An error breaks RFC 6455: the
    /// connection is to be failed with [`close_code`] of it.
    pub fn parse(&mut self) -> Result<Read, FrameError> {
        loop {
            let Some((header, head_len)) = FrameHeader::decode(&self.buf)? else {
                return Ok(Read::More(0));
            };
            self.check(&header)?;
            // `check` bounded the length by `max_message`.
            let end = head_len + header.payload_len as usize;
            if self.buf.len() < end {
                return Ok(Read::More(end));
            }
            let mut payload = self.buf.split_to(end);
            payload.advance(head_len);
            if let Some(key) = header.mask {
                apply_mask(&mut payload, key, 0);
            }
            if let Some(read) = self.take(header, payload)? {
                return Ok(read);
            }
        }
    }

    /// What a frame's header alone rules out.
    fn check(&self, header: &FrameHeader) -> Result<(), FrameError> {
        if header.rsv != 0 {
            return Err(FrameError::ReservedBits(header.rsv));
        }
        match (self.role, header.mask.is_some()) {
            (Role::Client, true) => return Err(FrameError::MaskedByServer),
            (Role::Server, false) => return Err(FrameError::UnmaskedByClient),
            _ => {}
        }
        if header.payload_len > self.max_message as u64 {
            return Err(FrameError::MessageTooLong(self.max_message));
        }
        Ok(())
    }

    /// Acts on one whole frame; something to answer when there is.
    fn take(&mut self, header: FrameHeader, payload: BytesMut) -> Result<Option<Read>, FrameError> {
        match header.opcode {
            OpCode::Ping => Ok(Some(Read::Ping(payload.freeze()))),
            OpCode::Pong => Ok(Some(Read::Pong)),
            OpCode::Close => Ok(Some(Read::Close(decode_close(&payload)?.map(|(c, _)| c)))),
            // The common case: the frame is the message, and its payload
            // a slice of the read buffer.
            OpCode::Text | OpCode::Binary if header.fin && !self.fragmented => {
                data(header.opcode, payload.freeze()).map(|m| Some(Read::Data(m)))
            }
            // A fragmented message is joined by copying, and its text is
            // checked again whole: the fragments were checked as they came
            // (to fail fast), but `Utf8Bytes` is only made by a check.
            _ => {
                let done = self.fragments.push(&header, &payload)?;
                self.fragmented = done.is_none();
                done.map(|m| data(m.opcode, Bytes::from(m.data)).map(Read::Data))
                    .transpose()
            }
        }
    }
}

/// A data message from a whole payload: text is checked as UTF-8 here, once.
fn data(opcode: OpCode, payload: Bytes) -> Result<DataMessage, FrameError> {
    match opcode {
        OpCode::Text => Utf8Bytes::try_from(payload)
            .map(DataMessage::Text)
            .map_err(|_| FrameError::InvalidUtf8),
        _ => Ok(DataMessage::Binary(payload)),
    }
}

/// The close code RFC 6455 7.4.1 gives a broken frame: 1007 for text that
/// is not UTF-8, 1009 for a message too long, 1002 for the rest.
pub fn close_code(e: &FrameError) -> u16 {
    match e {
        FrameError::InvalidUtf8 => close::INVALID,
        FrameError::MessageTooLong(_) => close::TOO_BIG,
        _ => close::PROTOCOL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frame::encode_frame;

    /// fin, opcode, masking key, payload.
    type Spec<'a> = (bool, OpCode, Option<[u8; 4]>, &'a [u8]);

    fn wire(frames: &[Spec<'_>]) -> BytesMut {
        let mut out = BytesMut::new();
        for &(fin, op, mask, payload) in frames {
            encode_frame(fin, op, mask, payload, &mut out);
        }
        out
    }

    const KEY: Option<[u8; 4]> = Some([7, 1, 200, 9]);

    #[test]
    fn a_server_unmasks_and_a_client_refuses_masks() {
        let frames = wire(&[(true, OpCode::Text, KEY, b"hello")]);
        let mut server = FrameReader::new(Role::Server, frames.clone(), 64);
        assert_eq!(
            server.parse(),
            Ok(Read::Data(DataMessage::Text("hello".into())))
        );
        assert_eq!(server.parse(), Ok(Read::More(0)));
        let mut client = FrameReader::new(Role::Client, frames, 64);
        assert_eq!(client.parse(), Err(FrameError::MaskedByServer));
        let plain = wire(&[(true, OpCode::Text, None, b"hello")]);
        let mut server = FrameReader::new(Role::Server, plain, 64);
        assert_eq!(server.parse(), Err(FrameError::UnmaskedByClient));
    }

    #[test]
    fn a_partial_frame_asks_for_exactly_what_it_lacks() {
        let mut frames = wire(&[(true, OpCode::Binary, KEY, &[5; 300])]);
        let whole = frames.len();
        let rest = frames.split_off(10);
        let mut server = FrameReader::new(Role::Server, frames, 1024);
        assert_eq!(server.parse(), Ok(Read::More(whole)));
        server.buf.extend_from_slice(&rest);
        assert_eq!(
            server.parse(),
            Ok(Read::Data(DataMessage::Binary(Bytes::from(vec![5; 300]))))
        );
        let mut one = FrameReader::new(Role::Server, BytesMut::from(&[0x81u8][..]), 1024);
        assert_eq!(one.parse(), Ok(Read::More(0)));
    }

    #[test]
    fn control_frames_between_fragments_come_out_in_order() {
        let frames = wire(&[
            (false, OpCode::Text, KEY, "h\u{e9}".as_bytes()),
            (true, OpCode::Ping, KEY, b"there?"),
            (true, OpCode::Pong, KEY, b""),
            (true, OpCode::Continuation, KEY, b"llo"),
            (true, OpCode::Close, KEY, &[0x03, 0xE9]),
        ]);
        let mut server = FrameReader::new(Role::Server, frames, 64);
        assert_eq!(
            server.parse(),
            Ok(Read::Ping(Bytes::from_static(b"there?")))
        );
        assert_eq!(server.parse(), Ok(Read::Pong));
        assert_eq!(
            server.parse(),
            Ok(Read::Data(DataMessage::Text("h\u{e9}llo".into())))
        );
        assert_eq!(server.parse(), Ok(Read::Close(Some(1001))));
    }

    #[test]
    fn broken_frames_name_their_fault_and_close_code() {
        let cases: [(BytesMut, FrameError, u16); 4] = [
            (
                wire(&[(true, OpCode::Text, KEY, &[0xC3, 0x28])]),
                FrameError::InvalidUtf8,
                1007,
            ),
            (
                wire(&[(true, OpCode::Binary, KEY, &[0; 65])]),
                FrameError::MessageTooLong(64),
                1009,
            ),
            (
                wire(&[(true, OpCode::Continuation, KEY, b"x")]),
                FrameError::UnexpectedContinuation,
                1002,
            ),
            (
                wire(&[(true, OpCode::Close, KEY, &[0x03, 0xEC])]),
                FrameError::InvalidCloseCode(1004),
                1002,
            ),
        ];
        for (frames, fault, code) in cases {
            let mut server = FrameReader::new(Role::Server, frames, 64);
            let e = server.parse().unwrap_err();
            assert_eq!((&e, close_code(&e)), (&fault, code));
        }
    }
}
