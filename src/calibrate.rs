//! A reference step: a fixed, CPU-bound piece of work timed on the machine
//! a run happens on, stored in summary.json. Timing figures divided by it
//! can be compared across machines of different speed, so a regression
//! gate does not fail because CI got a slower runner.

use std::borrow::Cow;
use std::time::Instant;

use bytes::BytesMut;

use crate::codec::{self, Encoding, Event, ServerMessage};

/// Events encoded and decoded by one calibration pass.
const EVENTS: usize = 20_000;
const PASSES: usize = 7;

/// Median time, in ns, of encoding and decoding a fixed batch of events in
/// both encodings: the same kind of work the server and generator do per
/// event, without any I/O.
pub fn reference_ns() -> u64 {
    let payload = [b'x'; 64];
    let mut buf = BytesMut::with_capacity(256);
    let mut times: Vec<u64> = (0..PASSES)
        .map(|_| {
            let started = Instant::now();
            let mut checksum = 0u64;
            for i in 0..EVENTS as u64 {
                for encoding in [Encoding::Json, Encoding::Binary] {
                    buf.clear();
                    let event = ServerMessage::Event(Event {
                        topic: Cow::Borrowed("SYM0042"),
                        seq: i,
                        intended_ns: i * 1000,
                        published_ns: i * 1000 + 7,
                        payload: Cow::Borrowed(&payload),
                    });
                    codec::encode(encoding, &event, &mut buf).expect("encodes");
                    if let Ok(ServerMessage::Event(e)) = codec::decode_single(encoding, &buf) {
                        checksum = checksum.wrapping_add(e.seq);
                    }
                }
            }
            std::hint::black_box(checksum);
            started.elapsed().as_nanos() as u64
        })
        .collect();
    times.sort_unstable();
    times[PASSES / 2]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reference_step_takes_measurable_time() {
        assert!(super::reference_ns() > 0);
    }
}
