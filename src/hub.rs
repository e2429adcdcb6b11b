//! The event hub: topics, a sequence number per topic, a bounded buffer of
//! recent events per topic, and wake-ups for whoever waits on a topic.
//!
//! Every transport reads from the hub the same way: a [`Subscriber`] holds a
//! cursor per topic (the last sequence number it has) and [`Subscriber::drain`]
//! hands out everything after it, or a [`Drained::Missed`] notice when the
//! buffer no longer reaches back that far. A WebSocket keeps its subscriber
//! for the life of the connection; a long poll builds one per request from
//! the cursor the client sends. Either way the semantics are identical, and
//! an event published between two polls waits in the buffer for the next.
//!
//! Events are encoded once, in [`Hub::publish`], and the bytes are shared by
//! every subscriber. Publishing never waits for a subscriber.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::sync::Notify;

use crate::clock;
use crate::codec::{self, Encoding, Event, ServerMessage};

/// One encoded event, shared by every subscriber.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub topic: Arc<str>,
    pub seq: u64,
    pub bytes: Bytes,
}

/// What [`Subscriber::drain`] hands out: lent, not cloned. The caller
/// copies or clones what it keeps, so a drain costs no reference-count
/// traffic per event.
#[derive(Debug)]
pub enum Drained<'a> {
    Event(&'a Encoded),
    /// Events `first..=last` of `topic` had left the buffer.
    Missed {
        topic: &'a str,
        first: u64,
        last: u64,
    },
}

pub struct Hub {
    encoding: Encoding,
    limits: HubLimits,
    /// Every buffered event in publish order: what the hub-wide byte budget
    /// evicts from, oldest first. Locked before any topic.
    ledger: Mutex<Ledger>,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    published: AtomicU64,
    next_subscriber: AtomicU64,
}

pub struct Topic {
    name: Arc<str>,
    state: Mutex<TopicState>,
}

struct TopicState {
    /// Sequence number of the newest event; 0 before the first.
    head: u64,
    /// Events `head - events.len() + 1 ..= head`.
    events: VecDeque<Encoded>,
    /// Encoded bytes of `events`.
    bytes: usize,
    waiters: Vec<(u64, Arc<Notify>)>,
}

/// How much the hub holds. `serve` exposes each as a flag.
#[derive(Clone, Copy, Debug)]
pub struct HubLimits {
    /// Events kept per topic.
    pub events_per_topic: usize,
    /// Bytes of encoded events kept per topic (the newest is always kept).
    pub bytes_per_topic: usize,
    /// Topics held; a new one past it is refused.
    pub topics: usize,
    /// Bytes of encoded events kept over all topics: past it the oldest
    /// events of the whole hub leave first. Without it, topics × bytes per
    /// topic was the only bound (terabytes at the defaults).
    pub bytes: usize,
}

impl Default for HubLimits {
    /// No limit but the count of events per topic (1024).
    fn default() -> Self {
        HubLimits {
            events_per_topic: 1024,
            bytes_per_topic: usize::MAX,
            topics: usize::MAX,
            bytes: usize::MAX,
        }
    }
}

/// What an event costs the server-wide budget besides its encoded bytes:
/// its record in the topic buffer, its ledger entry and the allocator's
/// share. Without it a budget of small events held several times its size.
const EVENT_OVERHEAD: usize = 128;

/// Topics a [`Subscriber`] holds without a heap allocation: the scenarios'
/// clients watch a few (the stock ticker's five), and a long poll builds a
/// subscriber for every request.
const INLINE_TOPICS: usize = 8;

/// See [`Hub::ledger`].
#[derive(Default)]
struct Ledger {
    /// (topic, sequence number, bytes) of every event published and not
    /// yet evicted by this ledger. Entries of events a topic's own limits
    /// evicted stay behind, stale, until they reach the front or a
    /// compaction drops them.
    entries: VecDeque<(Arc<Topic>, u64, usize)>,
    /// Bytes of events still buffered, over all topics, each counted with
    /// [`EVENT_OVERHEAD`].
    bytes: usize,
    /// Events still buffered, over all topics.
    live: usize,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    /// The client claims to have events this server never published
    /// (e.g. it resumes against a restarted server).
    #[error("cursor {cursor} of topic {topic:?} is ahead of its newest event {head}")]
    CursorAhead {
        topic: String,
        cursor: u64,
        head: u64,
    },
    #[error("invalid topic name {0:?}: 1 to 64 of A-Z a-z 0-9 _ - .")]
    InvalidTopic(String),
    #[error(transparent)]
    TopicLimit(#[from] TopicLimit),
}

/// A new topic was asked for while the hub holds its most.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the server holds its most topics ({max}); topic {topic:?} is new")]
pub struct TopicLimit {
    pub topic: String,
    pub max: usize,
}

impl Hub {
    pub fn new(encoding: Encoding, limits: HubLimits) -> Hub {
        Hub {
            encoding,
            limits: HubLimits {
                events_per_topic: limits.events_per_topic.max(1),
                ..limits
            },
            ledger: Mutex::new(Ledger::default()),
            topics: RwLock::new(HashMap::new()),
            published: AtomicU64::new(0),
            next_subscriber: AtomicU64::new(1),
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The topic of that name, created on first use unless the hub holds
    /// its most topics already.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, TopicLimit> {
        if let Some(t) = self.topics.read().expect("hub lock").get(name) {
            return Ok(t.clone());
        }
        let mut topics = self.topics.write().expect("hub lock");
        if topics.len() >= self.limits.topics && !topics.contains_key(name) {
            return Err(TopicLimit {
                topic: name.to_owned(),
                max: self.limits.topics,
            });
        }
        Ok(topics
            .entry(Arc::from(name))
            .or_insert_with_key(|name| {
                Arc::new(Topic {
                    name: name.clone(),
                    state: Mutex::new(TopicState {
                        head: 0,
                        events: VecDeque::new(),
                        bytes: 0,
                        waiters: Vec::new(),
                    }),
                })
            })
            .clone())
    }

    /// Publishes one event: assigns its sequence number, stamps the actual
    /// publish time, encodes it once and wakes the topic's subscribers.
    /// Returns the sequence number.
    pub fn publish(&self, topic: &Arc<Topic>, intended_ns: u64, payload: &[u8]) -> u64 {
        let mut buf = BytesMut::with_capacity(64 + payload.len());
        // Ledger before topic, everywhere: publishes are serialized here,
        // and the hub-wide eviction below may lock any topic.
        let mut ledger = self.ledger.lock().expect("ledger lock");
        let mut state = topic.state.lock().expect("topic lock");
        let seq = state.head + 1;
        let event = ServerMessage::Event(Event {
            topic: topic.name.as_ref().into(),
            seq,
            intended_ns,
            published_ns: clock::now_ns(),
            payload: payload.into(),
        });
        codec::encode(self.encoding, &event, &mut buf).expect("topic names are validated");
        let bytes = buf.freeze();
        state.head = seq;
        state.bytes += bytes.len();
        state.events.push_back(Encoded {
            topic: topic.name.clone(),
            seq,
            bytes,
        });
        let len = state.events.back().map_or(0, |e| e.bytes.len());
        ledger.entries.push_back((topic.clone(), seq, len));
        ledger.bytes += len + EVENT_OVERHEAD;
        ledger.live += 1;
        while state.events.len() > self.limits.events_per_topic
            || (state.bytes > self.limits.bytes_per_topic && state.events.len() > 1)
        {
            let old = state.events.pop_front().expect("more than one event");
            state.bytes -= old.bytes.len();
            ledger.bytes -= old.bytes.len() + EVENT_OVERHEAD;
            ledger.live -= 1;
        }
        for (_, waiter) in &state.waiters {
            waiter.notify_one();
        }
        drop(state);
        self.evict_over_budget(&mut ledger);
        drop(ledger);
        self.published.fetch_add(1, Ordering::Relaxed);
        seq
    }

    /// Drops the hub's oldest events until it holds at most its byte
    /// budget; subscribers behind them get a `missed` notice, as after any
    /// eviction. Stale ledger entries are skipped, and compacted away once
    /// they outnumber the live ones, so the ledger stays proportional to
    /// what is buffered.
    fn evict_over_budget(&self, ledger: &mut Ledger) {
        while ledger.bytes > self.limits.bytes {
            let Some((topic, seq, len)) = ledger.entries.pop_front() else {
                break;
            };
            let mut state = topic.state.lock().expect("topic lock");
            let first = state.head + 1 - state.events.len() as u64;
            if !state.events.is_empty() && seq == first {
                state.events.pop_front();
                state.bytes -= len;
                ledger.bytes -= len + EVENT_OVERHEAD;
                ledger.live -= 1;
            }
        }
        if ledger.entries.len() > 2 * ledger.live + 1024 {
            ledger.entries.retain(|(topic, seq, _)| {
                let state = topic.state.lock().expect("topic lock");
                *seq + state.events.len() as u64 > state.head
            });
        }
    }

    /// Events published so far, over all topics.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The newest sequence number of every topic.
    pub fn heads(&self) -> BTreeMap<String, u64> {
        let topics = self.topics.read().expect("hub lock");
        topics
            .iter()
            .map(|(name, t)| (name.to_string(), t.state.lock().expect("topic lock").head))
            .collect()
    }
}

/// Where a fresh subscription starts: each topic and its head at that moment.
pub type Started = Vec<(Arc<str>, u64)>;

/// A reader of some topics, with a cursor per topic and one wake-up shared
/// by all of them. Dropping it unregisters the wake-up.
pub struct Subscriber {
    id: u64,
    /// Made and registered with every topic at the first wait, not at
    /// subscription: a long poll answered at once (the usual case under
    /// load) never allocates it nor touches the topics' waiter lists.
    notify: Option<Arc<Notify>>,
    /// Each topic and its cursor; a long poll's few topics held inline, so
    /// a poll answered at once allocates nothing here either.
    topics: SmallVec<[(Arc<Topic>, u64); INLINE_TOPICS]>,
    /// Round-robin start, so a capped drain does not always favour topic 0.
    next_topic: usize,
}

impl Subscriber {
    /// Subscribes to `entries`: a topic with `Some(cursor)` resumes after
    /// that sequence number; a topic with `None` starts at its current head.
    /// Returns the subscriber and, for the `None` topics, the head it starts at.
    pub fn new(
        hub: &Hub,
        entries: &[(impl AsRef<str>, Option<u64>)],
    ) -> Result<(Subscriber, Started), SubscribeError> {
        let id = hub.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let mut sub = Subscriber {
            id,
            notify: None,
            topics: SmallVec::with_capacity(entries.len()),
            next_topic: 0,
        };
        let mut started = Vec::new();
        for (name, cursor) in entries {
            let name = name.as_ref();
            if !codec::is_valid_topic(name) {
                return Err(SubscribeError::InvalidTopic(name.to_owned()));
            }
            let topic = hub.topic(name)?;
            let state = topic.state.lock().expect("topic lock");
            let cursor = match *cursor {
                Some(c) if c > state.head => {
                    return Err(SubscribeError::CursorAhead {
                        topic: name.to_owned(),
                        cursor: c,
                        head: state.head,
                    });
                }
                Some(c) => c,
                None => {
                    started.push((topic.name.clone(), state.head));
                    state.head
                }
            };
            drop(state);
            sub.topics.push((topic, cursor));
        }
        Ok((sub, started))
    }

    /// Waits until some subscribed topic may have events after its cursor.
    /// A wake-up that arrives while the subscriber is busy is kept, not lost.
    pub async fn changed(&mut self) {
        if self.notify.is_none() {
            self.register();
        }
        self.notify
            .as_ref()
            .expect("registered above")
            .notified()
            .await
    }

    /// Registers the wake-up with every topic. Under each topic's lock, an
    /// event published after the cursor since the last drain (it woke
    /// nobody) leaves a wake-up pending, so none slips in unnoticed.
    fn register(&mut self) {
        let notify = Arc::new(Notify::new());
        for (topic, cursor) in &self.topics {
            let mut state = topic.state.lock().expect("topic lock");
            if state.head != *cursor {
                notify.notify_one();
            }
            state.waiters.push((self.id, notify.clone()));
        }
        self.notify = Some(notify);
    }

    /// Hands out, in order per topic, what has been published after the
    /// cursors, at most `max_events` events and roughly `max_bytes`; moves
    /// the cursors. Returns true when it stopped at a cap with more left.
    pub fn drain(
        &mut self,
        max_events: usize,
        max_bytes: usize,
        out: &mut impl FnMut(Drained<'_>),
    ) -> bool {
        let (mut events, mut bytes) = (0usize, 0usize);
        let n = self.topics.len();
        for k in 0..n {
            let i = (self.next_topic + k) % n;
            let (topic, cursor) = &mut self.topics[i];
            let state = topic.state.lock().expect("topic lock");
            if state.head == *cursor {
                continue;
            }
            let first_buffered = state.head + 1 - state.events.len() as u64;
            if *cursor + 1 < first_buffered {
                out(Drained::Missed {
                    topic: &topic.name,
                    first: *cursor + 1,
                    last: first_buffered - 1,
                });
                *cursor = first_buffered - 1;
            }
            let skip = (*cursor + 1 - first_buffered) as usize;
            for e in state.events.iter().skip(skip) {
                if events >= max_events || (bytes >= max_bytes && events > 0) {
                    self.next_topic = i;
                    return true;
                }
                events += 1;
                bytes += e.bytes.len();
                *cursor += 1;
                out(Drained::Event(e));
            }
        }
        self.next_topic = (self.next_topic + 1) % n.max(1);
        false
    }

    /// The cursor of every topic, in subscription order.
    pub fn cursors(&self) -> impl Iterator<Item = (&str, u64)> {
        self.topics.iter().map(|(t, c)| (t.name.as_ref(), *c))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if self.notify.is_none() {
            return;
        }
        for (topic, _) in &self.topics {
            let mut state = topic.state.lock().expect("topic lock");
            if let Some(pos) = state.waiters.iter().position(|(id, _)| *id == self.id) {
                state.waiters.swap_remove(pos);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(sub: &mut Subscriber) -> (Vec<u64>, Vec<(u64, u64)>) {
        let (mut got, mut missed) = (Vec::new(), Vec::new());
        sub.drain(usize::MAX, usize::MAX, &mut |d| match d {
            Drained::Event(e) => match codec::decode_single(Encoding::Binary, &e.bytes).unwrap() {
                ServerMessage::Event(ev) => got.push(ev.seq),
                other => panic!("unexpected {other:?}"),
            },
            Drained::Missed { first, last, .. } => missed.push((first, last)),
        });
        (got, missed)
    }

    #[test]
    fn no_event_is_lost_between_polls() {
        let hub = Hub::new(
            Encoding::Binary,
            HubLimits {
                events_per_topic: 16,
                ..HubLimits::default()
            },
        );
        let topic = hub.topic("A").unwrap();
        hub.publish(&topic, 1, b"x");
        // First poll subscribes from now: it gets the head, not old events.
        let (sub, started) = Subscriber::new(&hub, &[("A", None)]).unwrap();
        assert_eq!(started, vec![(Arc::from("A"), 1)]);
        let cursor = sub.cursors().next().unwrap().1;
        drop(sub);
        // Published while no poll is outstanding...
        hub.publish(&topic, 2, b"x");
        hub.publish(&topic, 3, b"x");
        // ...and delivered by the next poll, which carries the cursor.
        let (mut sub, started) = Subscriber::new(&hub, &[("A", Some(cursor))]).unwrap();
        assert!(started.is_empty());
        assert_eq!(seqs(&mut sub), (vec![2, 3], vec![]));
        assert_eq!(seqs(&mut sub), (vec![], vec![]));
    }

    #[test]
    fn buffer_overrun_is_reported_as_missed() {
        let hub = Hub::new(
            Encoding::Binary,
            HubLimits {
                events_per_topic: 4,
                ..HubLimits::default()
            },
        );
        let topic = hub.topic("A").unwrap();
        for i in 0..10 {
            hub.publish(&topic, i, b"");
        }
        let (mut sub, _) = Subscriber::new(&hub, &[("A", Some(2))]).unwrap();
        assert_eq!(seqs(&mut sub), (vec![7, 8, 9, 10], vec![(3, 6)]));
    }

    #[test]
    fn cursor_ahead_of_head_is_refused() {
        let hub = Hub::new(
            Encoding::Json,
            HubLimits {
                events_per_topic: 4,
                ..HubLimits::default()
            },
        );
        let err = Subscriber::new(&hub, &[("A", Some(3))]).err().unwrap();
        assert_eq!(
            err,
            SubscribeError::CursorAhead {
                topic: "A".into(),
                cursor: 3,
                head: 0
            }
        );
        assert!(Subscriber::new(&hub, &[("a b", None)]).is_err());
    }

    #[test]
    fn drain_respects_the_cap_and_resumes_where_it_stopped() {
        let hub = Hub::new(
            Encoding::Binary,
            HubLimits {
                events_per_topic: 100,
                ..HubLimits::default()
            },
        );
        let (a, b) = (hub.topic("A").unwrap(), hub.topic("B").unwrap());
        let (mut sub, _) = Subscriber::new(&hub, &[("A", None), ("B", None)]).unwrap();
        for i in 0..5 {
            hub.publish(&a, i, b"");
            hub.publish(&b, i, b"");
        }
        let mut n = 0;
        assert!(sub.drain(3, usize::MAX, &mut |_| n += 1));
        assert_eq!(n, 3);
        assert!(!sub.drain(100, usize::MAX, &mut |_| n += 1));
        assert_eq!(n, 10);
    }

    #[tokio::test]
    async fn a_publish_wakes_the_subscriber_even_if_it_was_not_yet_waiting() {
        let hub = Hub::new(
            Encoding::Json,
            HubLimits {
                events_per_topic: 4,
                ..HubLimits::default()
            },
        );
        let topic = hub.topic("A").unwrap();
        let (mut sub, _) = Subscriber::new(&hub, &[("A", None)]).unwrap();
        // Before its first wait: the wake-up is registered then, and finds
        // the event the subscriber has not read.
        hub.publish(&topic, 0, b"");
        tokio::time::timeout(std::time::Duration::from_secs(5), sub.changed())
            .await
            .expect("woken");
        // Registered, read up, then busy elsewhere while another arrives.
        sub.drain(usize::MAX, usize::MAX, &mut |_| {});
        hub.publish(&topic, 0, b"");
        tokio::time::timeout(std::time::Duration::from_secs(5), sub.changed())
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn subscribers_register_at_their_first_wait_and_unregister_when_dropped() {
        let hub = Hub::new(
            Encoding::Json,
            HubLimits {
                events_per_topic: 4,
                ..HubLimits::default()
            },
        );
        let topic = hub.topic("A").unwrap();
        let waiters = || topic.state.lock().unwrap().waiters.len();
        let (sub, _) = Subscriber::new(&hub, &[("A", None)]).unwrap();
        assert_eq!(waiters(), 0, "a subscription answered at once never waits");
        drop(sub);
        assert_eq!(waiters(), 0);
        let (mut sub, _) = Subscriber::new(&hub, &[("A", None)]).unwrap();
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(20), sub.changed());
        assert!(quiet.await.is_err(), "nothing was published");
        assert_eq!(waiters(), 1);
        drop(sub);
        assert_eq!(topic.state.lock().unwrap().waiters.len(), 0);
        assert_eq!(hub.heads(), BTreeMap::from([("A".to_string(), 0)]));
    }

    #[test]
    fn a_topic_keeps_at_most_its_bytes_but_always_the_newest_event() {
        let hub = Hub::new(
            Encoding::Binary,
            HubLimits {
                events_per_topic: 1000,
                bytes_per_topic: 3_000,
                ..HubLimits::default()
            },
        );
        let topic = hub.topic("A").unwrap();
        for i in 0..10 {
            hub.publish(&topic, i, &[b'x'; 1000]);
        }
        let (mut sub, _) = Subscriber::new(&hub, &[("A", Some(0))]).unwrap();
        let (got, missed) = seqs(&mut sub);
        // Each event is 1,000 bytes of payload plus its envelope: two fit.
        assert_eq!(got, vec![9, 10]);
        assert_eq!(missed, vec![(1, 8)]);
        // One event larger than the whole budget is still kept.
        hub.publish(&topic, 11, &[b'x'; 5000]);
        let (got, _) = seqs(&mut sub);
        assert_eq!(got, vec![11]);
    }

    #[test]
    fn topics_past_the_cap_are_refused_and_existing_ones_still_served() {
        let hub = Hub::new(
            Encoding::Binary,
            HubLimits {
                events_per_topic: 4,
                topics: 2,
                ..HubLimits::default()
            },
        );
        hub.topic("A").unwrap();
        hub.topic("B").unwrap();
        assert_eq!(
            hub.topic("C").err(),
            Some(TopicLimit {
                topic: "C".into(),
                max: 2
            })
        );
        assert!(hub.topic("A").is_ok());
        assert!(matches!(
            Subscriber::new(&hub, &[("A", None), ("D", None)]),
            Err(SubscribeError::TopicLimit(_))
        ));
    }

    #[test]
    fn the_hub_wide_budget_evicts_the_oldest_events_of_any_topic() {
        let one = {
            let hub = Hub::new(Encoding::Binary, HubLimits::default());
            let t = hub.topic("A").unwrap();
            hub.publish(&t, 0, &[b'x'; 100]);
            hub.ledger.lock().unwrap().bytes
        };
        // Room for two and a half events over all topics.
        let hub = Hub::new(
            Encoding::Binary,
            HubLimits {
                bytes: one * 5 / 2,
                ..HubLimits::default()
            },
        );
        let (a, b, c) = (
            hub.topic("A").unwrap(),
            hub.topic("B").unwrap(),
            hub.topic("C").unwrap(),
        );
        for t in [&a, &b, &c] {
            hub.publish(t, 0, &[b'x'; 100]);
        }
        // A's event, the oldest, left; B's and C's stay.
        let (mut sub, _) =
            Subscriber::new(&hub, &[("A", Some(0)), ("B", Some(0)), ("C", Some(0))]).unwrap();
        let (got, missed) = seqs(&mut sub);
        assert_eq!(missed, vec![(1, 1)]);
        assert_eq!(got, vec![1, 1]);
        assert!(hub.ledger.lock().unwrap().bytes <= one * 5 / 2);
    }

    #[test]
    fn the_ledger_stays_proportional_to_what_is_buffered() {
        let hub = Hub::new(
            Encoding::Binary,
            HubLimits {
                events_per_topic: 4,
                ..HubLimits::default()
            },
        );
        let t = hub.topic("A").unwrap();
        for i in 0..100_000 {
            hub.publish(&t, i, b"x");
        }
        let ledger = hub.ledger.lock().unwrap();
        assert_eq!(ledger.live, 4);
        assert!(
            ledger.entries.len() <= 2 * 4 + 1024 + 1,
            "{}",
            ledger.entries.len()
        );
    }
}
