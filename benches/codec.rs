//! Codec micro-benchmarks, grouped by payload size with byte throughput:
//! - WebSocket frames: masking next to a plain copy of the same bytes (the
//!   physical reference), and pushbench's frame codec next to tungstenite's;
//! - the event envelope, JSON next to binary: the per-event work of the
//!   server (encode, once per event) and of the generator (decode, once
//!   per delivery);
//! - long-poll batches of N events.

use std::borrow::Cow;
use std::hint::black_box;
use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use pushbench::codec::frame::{self, FrameHeader, OpCode};
use pushbench::codec::{self, BatchWriter, Encoding, Event, ServerMessage};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode as TOpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{
    Frame as TFrame, FrameHeader as TFrameHeader,
};

const SIZES: [usize; 4] = [16, 256, 4096, 65536];
const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::Binary];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn bytes_of(size: usize) -> Vec<u8> {
    (0..size).map(|i| i as u8).collect()
}

fn mask_vs_copy(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask_vs_copy");
    for size in SIZES {
        let src = bytes_of(size);
        let mut dst = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("copy", size), &src, |b, src| {
            b.iter(|| dst.copy_from_slice(black_box(src)))
        });
        group.bench_with_input(BenchmarkId::new("mask", size), &size, |b, _| {
            b.iter(|| frame::apply_mask(black_box(&mut dst), KEY, 0))
        });
    }
    group.finish();
}

fn frame_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_encode_masked");
    for size in SIZES {
        let data = bytes_of(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("pushbench", size), &data, |b, data| {
            let mut out = BytesMut::with_capacity(size + 14);
            b.iter(|| {
                out.clear();
                frame::encode_frame(true, OpCode::Binary, Some(KEY), black_box(data), &mut out);
            })
        });
        let payload = Bytes::from(data.clone());
        group.bench_with_input(
            BenchmarkId::new("tungstenite", size),
            &payload,
            |b, payload| {
                let mut out = Vec::with_capacity(size + 14);
                b.iter(|| {
                    out.clear();
                    let mut f = TFrame::message(payload.clone(), TOpCode::Data(Data::Binary), true);
                    f.header_mut().mask = Some(KEY);
                    f.format(&mut out).unwrap();
                })
            },
        );
    }
    group.finish();
}

fn frame_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_decode");
    for size in SIZES {
        let mut wire = BytesMut::new();
        frame::encode_frame(true, OpCode::Binary, Some(KEY), &bytes_of(size), &mut wire);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("pushbench_header", size),
            &wire,
            |b, wire| b.iter(|| FrameHeader::decode(black_box(wire)).unwrap()),
        );
        group.bench_with_input(
            BenchmarkId::new("tungstenite_header", size),
            &wire,
            |b, wire| {
                b.iter(|| TFrameHeader::parse(&mut Cursor::new(black_box(&wire[..]))).unwrap())
            },
        );
        group.bench_with_input(
            BenchmarkId::new("pushbench_frame_unmasked", size),
            &wire,
            |b, wire| {
                b.iter(|| {
                    let (f, _) = frame::decode_frame(black_box(wire)).unwrap().unwrap();
                    f.unmasked().len()
                })
            },
        );
    }
    group.finish();
}

fn event(payload: &[u8]) -> ServerMessage<'_> {
    ServerMessage::Event(Event {
        topic: Cow::Borrowed("SYM0042"),
        seq: 123_456,
        intended_ns: 987_654_321_000,
        published_ns: 987_654_322_000,
        payload: Cow::Borrowed(payload),
    })
}

fn envelope(c: &mut Criterion) {
    for (name, decode) in [("event_encode", false), ("event_decode", true)] {
        let mut group = c.benchmark_group(name);
        for size in SIZES {
            let payload = vec![b'x'; size];
            group.throughput(Throughput::Bytes(size as u64));
            for encoding in ENCODINGS {
                let id = BenchmarkId::new(encoding.as_str(), size);
                let mut buf = BytesMut::with_capacity(size + 128);
                if decode {
                    codec::encode(encoding, &event(&payload), &mut buf).unwrap();
                    group.bench_with_input(id, &buf, |b, buf| {
                        b.iter(|| codec::decode_single(encoding, black_box(buf)).unwrap())
                    });
                } else {
                    let msg = event(&payload);
                    group.bench_with_input(id, &msg, |b, msg| {
                        b.iter(|| {
                            buf.clear();
                            codec::encode(encoding, black_box(msg), &mut buf).unwrap();
                        })
                    });
                }
            }
        }
        group.finish();
    }
}

fn batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("long_poll_batch_64B_events");
    for n in [1usize, 10, 100, 1000] {
        let payload = vec![b'x'; 64];
        let mut one = BytesMut::new();
        codec::encode(Encoding::Json, &event(&payload), &mut one).unwrap();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &one, |b, one| {
            b.iter(|| {
                let mut batch = BatchWriter::new(Encoding::Json);
                for _ in 0..n {
                    batch.push_encoded(black_box(one));
                }
                batch.finish()
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    mask_vs_copy,
    frame_encode,
    frame_decode,
    envelope,
    batch
);

/// criterion_main!, plus the embedded font: plotters is built with its
/// ab_glyph feature (for pushbench's charts), which criterion's own plots
/// share, and ab_glyph draws only fonts registered first.
fn main() {
    pushbench::report::charts::register_font();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
