//! The server's per-request work for a long poll, without HTTP: parse the
//! cursor, subscribe, drain what is waiting into a batch, drop the
//! subscription. Under load most polls find events waiting; this is the
//! part of their cost that is pushbench's own code rather than hyper's.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group};
use pushbench::codec::{self, BatchWriter, Encoding};
use pushbench::hub::{Drained, Hub, HubLimits, Subscriber};

fn long_poll_answered_at_once(c: &mut Criterion) {
    let mut group = c.benchmark_group("long_poll_answered_at_once");
    for topics in [1usize, 5, 20] {
        let hub = Hub::new(Encoding::Json, HubLimits::default());
        let payload = vec![b'x'; 64];
        let mut query = String::new();
        for i in 0..topics {
            let topic = hub.topic(&format!("SYM{i:04}")).unwrap();
            for _ in 0..4 {
                hub.publish(&topic, 0, &payload);
            }
            // Two events behind the head: each poll gets two per topic.
            query.push_str(&format!("{}SYM{i:04}:2", if i > 0 { "," } else { "" }));
        }
        group.bench_with_input(BenchmarkId::from_parameter(topics), &query, |b, query| {
            b.iter(|| {
                let entries = codec::parse_cursor(black_box(query)).unwrap();
                let (mut sub, _) = Subscriber::new(&hub, &entries).unwrap();
                let mut batch = BatchWriter::new(Encoding::Json);
                sub.drain(usize::MAX, usize::MAX, &mut |d| {
                    if let Drained::Event(e) = d {
                        batch.push_encoded(&e.bytes);
                    }
                });
                batch.finish()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, long_poll_answered_at_once);

/// criterion_main!, plus the embedded font criterion's plots need (see
/// benches/codec.rs).
fn main() {
    pushbench::report::charts::register_font();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
