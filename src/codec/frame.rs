//! RFC 6455 WebSocket frames: header encoding and decoding at every length
//! boundary, masking, close payloads and reassembly of fragmented
//! messages. Pure functions over byte slices; no I/O.
//!
//! Decoders answer "a value and the bytes it used", "need more bytes"
//! (`Ok(None)`) or a precise [`FrameError`]; they never panic.

use bytes::{BufMut, BytesMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    pub fn from_u8(b: u8) -> Result<OpCode, FrameError> {
        Ok(match b {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(FrameError::ReservedOpCode(other)),
        })
    }

    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("reserved opcode 0x{0:x}")]
    ReservedOpCode(u8),
    #[error("control frame payload of {0} bytes (at most 125 allowed)")]
    ControlFrameTooLong(u64),
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length".
    #[error("payload length {0} not encoded in the minimal number of bytes")]
    NonMinimalLength(u64),
    #[error("64-bit payload length with the most significant bit set")]
    LengthTooLarge,
    #[error("close payload of 1 byte (a code takes 2)")]
    CloseTooShort,
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    #[error("message longer than {0} bytes")]
    MessageTooLong(usize),
    /// RSV1-3 set with no extension negotiated (RFC 6455 5.2).
    #[error("reserved bits 0b{0:03b} set, no extension was negotiated")]
    ReservedBits(u8),
    /// RFC 6455 5.1: "A client MUST close a connection if it detects a masked frame".
    #[error("masked frame from the server")]
    MaskedByServer,
    /// RFC 6455 5.1: "The server MUST close the connection upon receiving a
    /// frame that is not masked".
    #[error("unmasked frame from the client")]
    UnmaskedByClient,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits.
    pub rsv: u8,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

impl FrameHeader {
    /// Bytes the header takes on the wire: 2 to 14.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends the header, its length in the minimal number of bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_u8(u8::from(self.fin) << 7 | (self.rsv & 0x7) << 4 | self.opcode.as_u8());
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        match self.payload_len {
            len @ 0..=125 => out.put_u8(mask_bit | len as u8),
            len @ 126..=0xFFFF => {
                out.put_u8(mask_bit | 126);
                out.put_u16(len as u16);
            }
            len => {
                out.put_u8(mask_bit | 127);
                out.put_u64(len);
            }
        }
        if let Some(key) = self.mask {
            out.put_slice(&key);
        }
    }

    /// Decodes a header from the front of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let opcode = OpCode::from_u8(b0 & 0x0F)?;
        let fin = b0 & 0x80 != 0;
        let (payload_len, mut used) = match b1 & 0x7F {
            126 => {
                let Some(b) = buf.get(2..4) else {
                    return Ok(None);
                };
                let len = u16::from_be_bytes([b[0], b[1]]) as u64;
                if len < 126 {
                    return Err(FrameError::NonMinimalLength(len));
                }
                (len, 4)
            }
            127 => {
                let Some(b) = buf.get(2..10) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(FrameError::LengthTooLarge);
                }
                if len <= 0xFFFF {
                    return Err(FrameError::NonMinimalLength(len));
                }
                (len, 10)
            }
            len => (len as u64, 2),
        };
        if opcode.is_control() {
            if !fin {
                return Err(FrameError::FragmentedControlFrame);
            }
            if payload_len > 125 {
                return Err(FrameError::ControlFrameTooLong(payload_len));
            }
        }
        let mask = if b1 & 0x80 != 0 {
            let Some(k) = buf.get(used..used + 4) else {
                return Ok(None);
            };
            used += 4;
            Some([k[0], k[1], k[2], k[3]])
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin,
                rsv: (b0 >> 4) & 0x7,
                opcode,
                mask,
                payload_len,
            },
            used,
        )))
    }
}

/// XORs `buf` with the masking key, as if `buf` started at byte `offset`
/// of the payload. Masking runs on every byte a client sends, so it should
/// cost about as much as a copy: each 128-byte block is XORed element-wise
/// with the key repeated to 128 bytes, a loop the compiler vectorizes.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let r = offset % 4;
    let key = [key[r], key[(r + 1) % 4], key[(r + 2) % 4], key[(r + 3) % 4]];
    // Small payloads (most pushed events) skip the vector dispatch.
    if buf.len() < BLOCK {
        let word = u32::from_ne_bytes(key);
        let mut chunks = buf.chunks_exact_mut(4);
        for chunk in &mut chunks {
            let masked = u32::from_ne_bytes((&*chunk).try_into().expect("4 bytes")) ^ word;
            chunk.copy_from_slice(&masked.to_ne_bytes());
        }
        for (b, k) in chunks.into_remainder().iter_mut().zip(key) {
            *b ^= k;
        }
        return;
    }
    mask_blocks(buf, key);
}

/// Compiled for several instruction sets, picked at run time: a plain
/// copy uses the widest vectors the CPU has, and so must masking to keep up.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw", "x86_64+avx2", "x86_64+sse4.1"))]
fn mask_blocks(buf: &mut [u8], key: [u8; 4]) {
    let mut pattern = [0u8; BLOCK];
    for chunk in pattern.chunks_exact_mut(4) {
        chunk.copy_from_slice(&key);
    }
    let mut blocks = buf.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        for (b, p) in block.iter_mut().zip(pattern.iter()) {
            *b ^= p;
        }
    }
    for (b, p) in blocks.into_remainder().iter_mut().zip(pattern.iter()) {
        *b ^= p;
    }
}

const BLOCK: usize = 128;

/// A frame as it stands in a buffer: the payload still masked if the
/// header says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// The payload with the mask removed (copied only when masked).
    pub fn unmasked(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.header.mask {
            None => std::borrow::Cow::Borrowed(self.payload),
            Some(key) => {
                let mut v = self.payload.to_vec();
                apply_mask(&mut v, key, 0);
                std::borrow::Cow::Owned(v)
            }
        }
    }
}

/// Decodes a whole frame (header and payload) from the front of `buf`.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some((header, used)) = FrameHeader::decode(buf)? else {
        return Ok(None);
    };
    let Ok(len) = usize::try_from(header.payload_len) else {
        return Err(FrameError::LengthTooLarge);
    };
    let Some(end) = used.checked_add(len) else {
        return Err(FrameError::LengthTooLarge);
    };
    let Some(payload) = buf.get(used..end) else {
        return Ok(None);
    };
    Ok(Some((Frame { header, payload }, end)))
}

/// Appends a whole frame; with a key, the payload is masked as it is copied.
pub fn encode_frame(
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
    out: &mut BytesMut,
) {
    FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    }
    .encode(out);
    let start = out.len();
    out.put_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// Close codes (RFC 6455 7.4.1) pushbench's ends send.
pub mod close {
    /// The endpoint is going away (the server: no pong to two pings).
    pub const AWAY: u16 = 1001;
    /// The frame broke the protocol.
    pub const PROTOCOL: u16 = 1002;
    /// A data type the endpoint does not take (binary where text is asked).
    pub const UNSUPPORTED: u16 = 1003;
    /// A payload that is not what its type says (invalid UTF-8, bad JSON).
    pub const INVALID: u16 = 1007;
    /// A message the endpoint's policy refuses.
    pub const POLICY: u16 = 1008;
    /// A message too big to take.
    pub const TOO_BIG: u16 = 1009;
}

/// Whether a close code may appear on the wire (RFC 6455 7.4 and the IANA
/// registry): 1000-1003, 1007-1014 and 3000-4999.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The payload of a close frame: nothing, or a code and a UTF-8 reason.
pub fn encode_close(close: Option<(u16, &str)>, out: &mut BytesMut) {
    if let Some((code, reason)) = close {
        out.put_u16(code);
        out.put_slice(reason.as_bytes());
    }
}

/// Reads a close frame's (unmasked) payload.
pub fn decode_close(payload: &[u8]) -> Result<Option<(u16, &str)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(FrameError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// A complete message: a data message reassembled from its fragments, or a
/// control frame (which may arrive between fragments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub opcode: OpCode,
    pub data: Vec<u8>,
}

/// Joins fragmented data messages (RFC 6455 5.4).
#[derive(Debug)]
pub struct Reassembler {
    started: Option<OpCode>,
    data: Vec<u8>,
    /// How much of a text message's `data` is known to be UTF-8: each
    /// fragment is checked as it comes, so a bad byte fails the message at
    /// once (RFC 6455 8.1 says a reader SHOULD fail fast) and no byte is
    /// checked twice.
    checked: usize,
    max_len: usize,
}

impl Reassembler {
    pub fn new(max_len: usize) -> Reassembler {
        Reassembler {
            started: None,
            data: Vec::new(),
            checked: 0,
            max_len,
        }
    }

    /// Takes one frame with its unmasked payload; answers a message when
    /// one is complete.
    pub fn push(
        &mut self,
        header: &FrameHeader,
        payload: &[u8],
    ) -> Result<Option<Message>, FrameError> {
        if header.opcode.is_control() {
            return Ok(Some(Message {
                opcode: header.opcode,
                data: payload.to_vec(),
            }));
        }
        match (header.opcode, self.started) {
            (OpCode::Continuation, None) => return Err(FrameError::UnexpectedContinuation),
            (OpCode::Continuation, Some(_)) => {}
            (_, Some(_)) => return Err(FrameError::ExpectedContinuation),
            (op, None) => {
                self.started = Some(op);
                self.data.clear();
                self.checked = 0;
            }
        }
        if self.data.len() + payload.len() > self.max_len {
            self.started = None;
            return Err(FrameError::MessageTooLong(self.max_len));
        }
        self.data.extend_from_slice(payload);
        let text = self.started == Some(OpCode::Text);
        if text {
            self.check_utf8(header.fin)?;
        }
        if !header.fin {
            return Ok(None);
        }
        let opcode = self.started.take().expect("a message was started");
        Ok(Some(Message {
            opcode,
            data: std::mem::take(&mut self.data),
        }))
    }

    /// Checks the text received since the last check; a character cut by
    /// a fragment's end waits for the next fragment, unless this was the last.
    fn check_utf8(&mut self, last: bool) -> Result<(), FrameError> {
        match std::str::from_utf8(&self.data[self.checked..]) {
            Ok(_) => self.checked = self.data.len(),
            Err(e) if e.error_len().is_none() && !last => self.checked += e.valid_up_to(),
            Err(_) => {
                self.started = None;
                return Err(FrameError::InvalidUtf8);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use proptest::prelude::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{
        Control, Data, OpCode as TOpCode,
    };
    use tokio_tungstenite::tungstenite::protocol::frame::{
        Frame as TFrame, FrameHeader as TFrameHeader,
    };

    use super::*;

    const BOUNDARIES: [usize; 9] = [0, 1, 125, 126, 127, 65535, 65536, 65537, 200_000];

    fn theirs(op: OpCode) -> TOpCode {
        match op {
            OpCode::Continuation => TOpCode::Data(Data::Continue),
            OpCode::Text => TOpCode::Data(Data::Text),
            OpCode::Binary => TOpCode::Data(Data::Binary),
            OpCode::Close => TOpCode::Control(Control::Close),
            OpCode::Ping => TOpCode::Control(Control::Ping),
            OpCode::Pong => TOpCode::Control(Control::Pong),
        }
    }

    /// tungstenite's frame with exactly this header (its `Frame::message`
    /// takes data opcodes only).
    fn their_frame(op: OpCode, fin: bool, mask: Option<[u8; 4]>, data: &[u8]) -> TFrame {
        let header = TFrameHeader {
            is_final: fin,
            opcode: theirs(op),
            mask,
            ..Default::default()
        };
        TFrame::from_payload(header, bytes::Bytes::copy_from_slice(data))
    }

    fn payload(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// tungstenite writes a frame; we decode it.
    fn check_theirs_to_ours(op: OpCode, fin: bool, mask: Option<[u8; 4]>, data: &[u8]) {
        let mut wire = Vec::new();
        their_frame(op, fin, mask, data).format(&mut wire).unwrap();
        let (decoded, used) = decode_frame(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(
            decoded.header,
            FrameHeader {
                fin,
                rsv: 0,
                opcode: op,
                mask,
                payload_len: data.len() as u64
            }
        );
        assert_eq!(&*decoded.unmasked(), data);
    }

    /// We write a frame; tungstenite decodes it.
    fn check_ours_to_theirs(op: OpCode, fin: bool, mask: Option<[u8; 4]>, data: &[u8]) {
        let mut wire = BytesMut::new();
        encode_frame(fin, op, mask, data, &mut wire);
        let mut cursor = Cursor::new(&wire[..]);
        let (header, len) = TFrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(
            (header.is_final, header.opcode, header.mask),
            (fin, theirs(op), mask)
        );
        assert_eq!(cursor.position() as usize, wire.len() - data.len());
        // Byte for byte what tungstenite writes for the same frame and key.
        let mut expected = Vec::new();
        their_frame(op, fin, mask, data)
            .format(&mut expected)
            .unwrap();
        assert_eq!(&wire[..], &expected[..]);
    }

    #[test]
    fn frames_cross_check_with_tungstenite_at_every_length_boundary() {
        for &len in &BOUNDARIES {
            for mask in [None, Some([0x37, 0xfa, 0x21, 0x3d])] {
                for op in [OpCode::Text, OpCode::Binary, OpCode::Continuation] {
                    let data = payload(len, len as u8);
                    check_theirs_to_ours(op, true, mask, &data);
                    check_ours_to_theirs(op, true, mask, &data);
                    check_ours_to_theirs(op, false, mask, &data);
                }
            }
        }
        for op in [OpCode::Close, OpCode::Ping, OpCode::Pong] {
            for len in [0, 1, 125] {
                check_theirs_to_ours(op, true, Some([1, 2, 3, 4]), &payload(len, 9));
                check_ours_to_theirs(op, true, None, &payload(len, 9));
            }
        }
    }

    #[test]
    fn header_sizes_follow_the_length_boundaries() {
        let h = |len, mask| FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask,
            payload_len: len,
        };
        assert_eq!(h(125, None).encoded_len(), 2);
        assert_eq!(h(126, None).encoded_len(), 4);
        assert_eq!(h(65535, None).encoded_len(), 4);
        assert_eq!(h(65536, Some([0; 4])).encoded_len(), 14);
        for len in [0u64, 125, 126, 65535, 65536, 1 << 40] {
            let mut out = BytesMut::new();
            h(len, Some([9, 8, 7, 6])).encode(&mut out);
            assert_eq!(out.len(), h(len, Some([0; 4])).encoded_len());
            assert_eq!(
                FrameHeader::decode(&out).unwrap(),
                Some((h(len, Some([9, 8, 7, 6])), out.len()))
            );
            for cut in 0..out.len() {
                assert_eq!(FrameHeader::decode(&out[..cut]), Ok(None), "cut {cut}");
            }
        }
    }

    #[test]
    fn malformed_headers_get_precise_errors() {
        assert_eq!(
            FrameHeader::decode(&[0x83, 0]),
            Err(FrameError::ReservedOpCode(3))
        );
        assert_eq!(
            FrameHeader::decode(&[0x09, 0]),
            Err(FrameError::FragmentedControlFrame)
        );
        assert_eq!(
            FrameHeader::decode(&[0x89, 126, 0, 200]),
            Err(FrameError::ControlFrameTooLong(200))
        );
        assert_eq!(
            FrameHeader::decode(&[0x82, 126, 0, 5]),
            Err(FrameError::NonMinimalLength(5))
        );
        assert_eq!(
            FrameHeader::decode(&[0x82, 127, 0, 0, 0, 0, 0, 0, 1, 0]),
            Err(FrameError::NonMinimalLength(256))
        );
        assert_eq!(
            FrameHeader::decode(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::LengthTooLarge)
        );
    }

    #[test]
    fn masking_matches_bytewise_xor_at_any_offset() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        for len in [0, 1, 3, 7, 8, 9, 31, 64, 1000] {
            for offset in 0..4 {
                let data = payload(len, 3);
                let mut fast = data.clone();
                apply_mask(&mut fast, key, offset);
                let slow: Vec<u8> = data
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[(i + offset) % 4])
                    .collect();
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn close_payloads() {
        let mut out = BytesMut::new();
        encode_close(Some((1000, "bye")), &mut out);
        assert_eq!(decode_close(&out), Ok(Some((1000, "bye"))));
        assert_eq!(decode_close(&[]), Ok(None));
        assert_eq!(decode_close(&[3]), Err(FrameError::CloseTooShort));
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert_eq!(
                decode_close(&bad.to_be_bytes()),
                Err(FrameError::InvalidCloseCode(bad)),
                "{bad}"
            );
        }
        for good in [1000u16, 1001, 1003, 1007, 1008, 1011, 1014, 3000, 4999] {
            assert!(decode_close(&good.to_be_bytes()).is_ok(), "{good}");
        }
        assert_eq!(
            decode_close(&[0x03, 0xe8, 0xff]),
            Err(FrameError::InvalidUtf8)
        );
    }

    /// A header for [`Reassembler::push`], which reads only these fields.
    fn header(fin: bool, opcode: OpCode) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: 0,
        }
    }

    #[test]
    fn fragments_reassemble_with_control_frames_between() {
        let mut r = Reassembler::new(100);
        assert_eq!(r.push(&header(false, OpCode::Text), b"hel"), Ok(None));
        let ping = r.push(&header(true, OpCode::Ping), b"p").unwrap().unwrap();
        assert_eq!(ping.opcode, OpCode::Ping);
        assert_eq!(
            r.push(&header(false, OpCode::Continuation), b"lo "),
            Ok(None)
        );
        assert_eq!(
            r.push(&header(true, OpCode::Continuation), b"world"),
            Ok(Some(Message {
                opcode: OpCode::Text,
                data: b"hello world".to_vec()
            }))
        );
        assert_eq!(
            r.push(&header(true, OpCode::Continuation), b"x"),
            Err(FrameError::UnexpectedContinuation)
        );
        assert_eq!(r.push(&header(false, OpCode::Binary), b"x"), Ok(None));
        assert_eq!(
            r.push(&header(true, OpCode::Binary), b"x"),
            Err(FrameError::ExpectedContinuation)
        );
        let mut r = Reassembler::new(4);
        assert_eq!(
            r.push(&header(true, OpCode::Binary), b"12345"),
            Err(FrameError::MessageTooLong(4))
        );
        assert_eq!(
            r.push(&header(true, OpCode::Text), &[0xff]),
            Err(FrameError::InvalidUtf8)
        );
    }

    /// A text message fails at the fragment with the bad byte, not at its
    /// end; a character split between fragments is not a bad byte.
    #[test]
    fn fragmented_text_is_checked_as_it_comes() {
        let e_acute = "\u{e9}".as_bytes();
        let mut r = Reassembler::new(100);
        assert_eq!(
            r.push(&header(false, OpCode::Text), &[b'a', e_acute[0]]),
            Ok(None)
        );
        assert_eq!(
            r.push(&header(true, OpCode::Continuation), &[e_acute[1], b'b']),
            Ok(Some(Message {
                opcode: OpCode::Text,
                data: "a\u{e9}b".as_bytes().to_vec()
            }))
        );
        assert_eq!(
            r.push(&header(false, OpCode::Text), &[b'a', 0xC3, 0x28]),
            Err(FrameError::InvalidUtf8),
            "fails before the message ends"
        );
        // The failed message is gone: a new one may start.
        assert_eq!(
            r.push(&header(false, OpCode::Text), &[e_acute[0]]),
            Ok(None)
        );
        assert_eq!(
            r.push(&header(true, OpCode::Continuation), b""),
            Err(FrameError::InvalidUtf8),
            "a character cut off by the last fragment"
        );
        // Binary messages are not text.
        assert!(
            r.push(&header(true, OpCode::Binary), &[0xff])
                .unwrap()
                .is_some()
        );
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = FrameHeader::decode(&bytes);
            let _ = decode_frame(&bytes);
            let _ = decode_close(&bytes);
        }

        #[test]
        fn random_frames_round_trip_and_cross_check(
            data in proptest::collection::vec(any::<u8>(), 0..70_000),
            masked in any::<bool>(),
            key in any::<[u8; 4]>(),
            fin in any::<bool>(),
            binary in any::<bool>(),
        ) {
            let op = if binary { OpCode::Binary } else { OpCode::Continuation };
            let mask = masked.then_some(key);
            check_theirs_to_ours(op, fin, mask, &data);
            check_ours_to_theirs(op, fin, mask, &data);
        }
    }
}
