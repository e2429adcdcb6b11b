//! Server-sent events (the `text/event-stream` format of the HTML
//! standard): encoding, and decoding one event block at a time. Pure.
//!
//! A block is a run of lines ended by an empty line; lines end with LF,
//! CR LF or CR. `data` lines are joined with LF; `:` lines are comments
//! (heartbeats); a block without data dispatches nothing.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub id: Option<Cow<'a, str>>,
    pub event: Option<Cow<'a, str>>,
    pub data: Cow<'a, str>,
    /// Reconnection time the server asks for, in ms.
    pub retry: Option<u64>,
}

/// What one block of the stream amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dispatch<'a> {
    Event(SseEvent<'a>),
    /// A block with no data: comments (heartbeats), a bare `retry:` or `id:`.
    /// `id` and `retry` are still reported, since they change the stream state.
    Nothing {
        id: Option<Cow<'a, str>>,
        retry: Option<u64>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("event stream is not valid UTF-8")]
    InvalidUtf8,
    /// An `id` or `event` value to encode contains a line break.
    #[error("{0} contains a line break")]
    LineBreakIn(&'static str),
}

/// Appends one event: `id:`, `event:`, one `data:` line per line of data.
pub fn encode_event(
    id: Option<&str>,
    event: Option<&str>,
    data: &str,
    out: &mut BytesMut,
) -> Result<(), SseError> {
    for (name, value) in [("id", id), ("event", event)] {
        if let Some(v) = value {
            if v.contains(['\n', '\r']) {
                return Err(SseError::LineBreakIn(name));
            }
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(v.as_bytes());
            out.put_u8(b'\n');
        }
    }
    for line in data.split('\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.trim_end_matches('\r').as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    Ok(())
}

/// Appends a comment block, e.g. a heartbeat (`: keep-alive`).
pub fn encode_comment(text: &str, out: &mut BytesMut) {
    for line in text.split(['\n', '\r']) {
        out.put_slice(b": ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// Splits the next line off `buf` at `pos`: the line and where the next
/// one starts; `None` if the line is not terminated yet. A CR at the very
/// end may be the first half of CR LF, so it waits for the next byte.
fn next_line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = &buf[pos..];
    let end = rest.iter().position(|b| *b == b'\n' || *b == b'\r')?;
    let next = match (rest[end], rest.get(end + 1)) {
        (b'\r', Some(b'\n')) => end + 2,
        (b'\r', None) => return None,
        _ => end + 1,
    };
    Some((&rest[..end], pos + next))
}

/// Decodes the next block from the front of `buf`: what it dispatches and
/// the bytes it used, or `None` until the block's empty line has arrived.
pub fn decode_block(buf: &[u8]) -> Result<Option<(Dispatch<'_>, usize)>, SseError> {
    let mut pos = 0;
    let (mut id, mut event, mut retry) = (None, None, None);
    let mut data: Option<Cow<'_, str>> = None;
    loop {
        let Some((line, next)) = next_line(buf, pos) else {
            return Ok(None);
        };
        pos = next;
        if line.is_empty() {
            break;
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::InvalidUtf8)?;
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                data = Some(match data {
                    None => Cow::Borrowed(value),
                    Some(d) => Cow::Owned(format!("{d}\n{value}")),
                })
            }
            "event" => event = Some(Cow::Borrowed(value)),
            // An id with NUL is ignored, as the standard says.
            "id" if !value.contains('\0') => id = Some(Cow::Borrowed(value)),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                retry = value.parse().ok()
            }
            _ => {}
        }
    }
    let dispatch = match data {
        Some(data) if !data.is_empty() => Dispatch::Event(SseEvent {
            id,
            event,
            data,
            retry,
        }),
        _ => Dispatch::Nothing { id, retry },
    };
    Ok(Some((dispatch, pos)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event<'a>(id: Option<&'a str>, event: Option<&'a str>, data: &'a str) -> Dispatch<'a> {
        Dispatch::Event(SseEvent {
            id: id.map(Into::into),
            event: event.map(Into::into),
            data: data.into(),
            retry: None,
        })
    }

    #[test]
    fn encoded_events_decode_to_themselves() {
        let mut out = BytesMut::new();
        encode_event(Some("42"), Some("tick"), "line one\nline two", &mut out).unwrap();
        assert_eq!(
            &out[..],
            b"id: 42\nevent: tick\ndata: line one\ndata: line two\n\n"
        );
        assert_eq!(
            decode_block(&out),
            Ok(Some((
                event(Some("42"), Some("tick"), "line one\nline two"),
                out.len()
            )))
        );
        assert_eq!(
            encode_event(Some("a\nb"), None, "x", &mut out),
            Err(SseError::LineBreakIn("id"))
        );
    }

    #[test]
    fn every_line_ending_and_the_field_rules_of_the_standard() {
        assert_eq!(
            decode_block(b"data:x\r\n\r\n").unwrap().unwrap().0,
            event(None, None, "x")
        );
        assert_eq!(
            decode_block(b"data:x\r\rrest").unwrap().unwrap(),
            (event(None, None, "x"), 8)
        );
        assert_eq!(
            decode_block(b"data:  two spaces\n\n").unwrap().unwrap().0,
            event(None, None, " two spaces")
        );
        assert_eq!(
            decode_block(b"data\ndata\n\n").unwrap().unwrap().0,
            event(None, None, "\n")
        );
        assert_eq!(
            decode_block(b"id: a\0b\ndata: x\n\n").unwrap().unwrap().0,
            event(None, None, "x")
        );
        let Dispatch::Event(e) = decode_block(b"retry: 1500\nunknown: y\ndata: x\n\n")
            .unwrap()
            .unwrap()
            .0
        else {
            panic!()
        };
        assert_eq!(e.retry, Some(1500));
    }

    #[test]
    fn comments_and_empty_data_dispatch_nothing_but_are_consumed() {
        let mut out = BytesMut::new();
        encode_comment("keep-alive", &mut out);
        assert_eq!(
            decode_block(&out),
            Ok(Some((
                Dispatch::Nothing {
                    id: None,
                    retry: None
                },
                out.len()
            )))
        );
        assert_eq!(
            decode_block(b"id: 7\ndata:\n\n"),
            Ok(Some((
                Dispatch::Nothing {
                    id: Some("7".into()),
                    retry: None
                },
                13
            )))
        );
    }

    #[test]
    fn incomplete_blocks_ask_for_more() {
        let whole = b"id: 1\ndata: abc\r\n\r\n";
        for cut in 0..whole.len() {
            assert_eq!(decode_block(&whole[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(decode_block(b"data: \xff\n\n"), Err(SseError::InvalidUtf8));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut rest = &bytes[..];
            while let Ok(Some((_, used))) = decode_block(rest) {
                prop_assert!(used > 0 && used <= rest.len());
                rest = &rest[used..];
            }
        }

        #[test]
        fn any_data_round_trips(data in "[^\r]{1,200}", id in "[a-z0-9]{0,10}") {
            let mut out = BytesMut::new();
            encode_event(Some(&id), None, &data, &mut out).unwrap();
            let (d, used) = decode_block(&out).unwrap().unwrap();
            prop_assert_eq!(used, out.len());
            match d {
                Dispatch::Event(e) => {
                    prop_assert_eq!(e.data.as_ref(), data.as_str());
                    prop_assert_eq!(e.id.as_deref(), Some(id.as_str()));
                }
                Dispatch::Nothing { .. } => prop_assert!(data.is_empty()),
            }
        }
    }
}
