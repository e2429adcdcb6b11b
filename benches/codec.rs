//! Event codec micro-benchmarks: the per-event work of the server (encode,
//! once per event) and of the generator (decode, once per delivery), by
//! payload size, JSON next to binary.

use std::borrow::Cow;
use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use pushbench::codec::{self, BatchWriter, Encoding, Event, ServerMessage};

const SIZES: [usize; 4] = [16, 256, 4096, 65536];
const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::Binary];

fn event(payload: &[u8]) -> ServerMessage<'_> {
    ServerMessage::Event(Event {
        topic: Cow::Borrowed("SYM0042"),
        seq: 123_456,
        intended_ns: 987_654_321_000,
        published_ns: 987_654_322_000,
        payload: Cow::Borrowed(payload),
    })
}

fn encode(c: &mut Criterion) {
    for encoding in ENCODINGS {
        let mut group = c.benchmark_group(format!("event_encode_{}", encoding.as_str()));
        for size in SIZES {
            let payload = vec![b'x'; size];
            let msg = event(&payload);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::from_parameter(size), &msg, |b, msg| {
                let mut buf = BytesMut::with_capacity(size + 128);
                b.iter(|| {
                    buf.clear();
                    codec::encode(encoding, black_box(msg), &mut buf).unwrap();
                });
            });
        }
        group.finish();
    }
}

fn decode(c: &mut Criterion) {
    for encoding in ENCODINGS {
        let mut group = c.benchmark_group(format!("event_decode_{}", encoding.as_str()));
        for size in SIZES {
            let payload = vec![b'x'; size];
            let mut buf = BytesMut::new();
            codec::encode(encoding, &event(&payload), &mut buf).unwrap();
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::from_parameter(size), &buf, |b, buf| {
                b.iter(|| codec::decode_single(encoding, black_box(buf)).unwrap());
            });
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

criterion_group!(benches, encode, decode, batch);

/// criterion_main!, plus the embedded font: plotters is built with its
/// ab_glyph feature (for pushbench's charts), which criterion's own plots
/// share, and ab_glyph draws only fonts registered first.
fn main() {
    pushbench::report::charts::register_font();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
