//! Per-client delivery accounting: every event of a subscribed topic should
//! arrive exactly once and in order. Pure bookkeeping, no I/O.

use std::collections::{BTreeSet, HashMap};

/// Counts of one client, or summed over many.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct DeliveryCounts {
    /// Events published on the client's topics while it was subscribed.
    pub expected: u64,
    /// Distinct expected events that arrived.
    pub delivered: u64,
    /// `expected - delivered`: never arrived (including `missed`).
    pub lost: u64,
    /// Arrivals of an event already delivered.
    pub duplicated: u64,
    /// Events that arrived after a later event of the same topic.
    pub out_of_order: u64,
    /// Events the server said had left its buffer before it could send them.
    pub missed_reported: u64,
    /// Events for topics the client never subscribed to, or from before its
    /// subscription began.
    pub unexpected: u64,
}

impl std::ops::AddAssign for DeliveryCounts {
    fn add_assign(&mut self, o: Self) {
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.missed_reported += o.missed_reported;
        self.unexpected += o.unexpected;
    }
}

/// What an arriving event was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival, in order.
    New,
    /// First arrival, after a later event of its topic.
    Late,
    Duplicate,
    Unexpected,
}

/// Gaps wider than this are not tracked event by event; a later arrival
/// inside such a gap counts as a duplicate rather than late.
const MAX_TRACKED_GAP: u64 = 100_000;

#[derive(Debug)]
struct TopicTrack {
    name: String,
    /// Head when the subscription began; events after it are expected.
    start: Option<u64>,
    /// Highest sequence number seen (or skipped over as missed).
    max_seen: u64,
    /// Sequence numbers below `max_seen` not yet seen.
    holes: BTreeSet<u64>,
}

/// The cursor to resume from: the highest sequence number seen per topic.
impl crate::client::Cursor for Tracker {
    fn entries(&self) -> impl Iterator<Item = (&str, Option<u64>)> {
        self.topics
            .iter()
            .map(|t| (t.name.as_str(), t.start.map(|_| t.max_seen)))
    }
}

#[derive(Debug)]
pub struct Tracker {
    topics: Vec<TopicTrack>,
    counts: DeliveryCounts,
}

impl Tracker {
    pub fn new(topics: Vec<String>) -> Tracker {
        Tracker {
            topics: topics
                .into_iter()
                .map(|name| TopicTrack {
                    name,
                    start: None,
                    max_seen: 0,
                    holes: BTreeSet::new(),
                })
                .collect(),
            counts: DeliveryCounts::default(),
        }
    }

    fn find(&mut self, topic: &str) -> Option<&mut TopicTrack> {
        self.topics.iter_mut().find(|t| t.name == topic)
    }

    /// True once the server has answered the subscription for every topic.
    pub fn subscribed(&self) -> bool {
        self.topics.iter().all(|t| t.start.is_some())
    }

    /// The server's answer to a subscription. Only the first answer for a
    /// topic fixes where expectations start; a resume keeps them.
    pub fn on_subscribed(&mut self, topic: &str, head: u64) {
        if let Some(t) = self.find(topic)
            && t.start.is_none()
        {
            t.start = Some(head);
            t.max_seen = head;
        }
    }

    pub fn on_event(&mut self, topic: &str, seq: u64) -> Arrival {
        let Some(t) = self.topics.iter_mut().find(|t| t.name == topic) else {
            self.counts.unexpected += 1;
            return Arrival::Unexpected;
        };
        let Some(start) = t.start else {
            self.counts.unexpected += 1;
            return Arrival::Unexpected;
        };
        if seq <= start {
            self.counts.unexpected += 1;
            return Arrival::Unexpected;
        }
        let arrival = if seq > t.max_seen {
            if seq - t.max_seen - 1 <= MAX_TRACKED_GAP {
                t.holes.extend(t.max_seen + 1..seq);
            }
            t.max_seen = seq;
            Arrival::New
        } else if t.holes.remove(&seq) {
            Arrival::Late
        } else {
            Arrival::Duplicate
        };
        match arrival {
            Arrival::New => self.counts.delivered += 1,
            Arrival::Late => {
                self.counts.delivered += 1;
                self.counts.out_of_order += 1;
            }
            Arrival::Duplicate => self.counts.duplicated += 1,
            Arrival::Unexpected => {}
        }
        arrival
    }

    /// The server reported `first..=last` gone: they will not come.
    pub fn on_missed(&mut self, topic: &str, first: u64, last: u64) {
        let Some(t) = self.topics.iter_mut().find(|t| t.name == topic) else {
            return;
        };
        let Some(start) = t.start else { return };
        let first = first.max(start + 1);
        if last < first {
            return;
        }
        let newly = if last > t.max_seen {
            last - t.max_seen.max(first - 1)
        } else {
            0
        };
        let filled_holes = t.holes.range(first..=last).count() as u64;
        t.holes.retain(|s| !(first..=last).contains(s));
        self.counts.missed_reported += newly + filled_holes;
        t.max_seen = t.max_seen.max(last);
    }

    /// True when every topic has reached its final head.
    pub fn complete(&self, final_heads: &HashMap<String, u64>) -> bool {
        self.topics.iter().all(|t| {
            t.start.is_some() && t.max_seen >= final_heads.get(&t.name).copied().unwrap_or(0)
        })
    }

    /// Final counts, with `expected` and `lost` from the topics' final heads.
    /// A client whose subscription never succeeded expects nothing. Without
    /// a head for a topic (the server died), the highest sequence number
    /// seen stands in: gaps below it still count as lost, what came after
    /// it cannot be known.
    pub fn finish(&self, final_heads: &HashMap<String, u64>) -> DeliveryCounts {
        let mut c = self.counts;
        c.expected = self
            .topics
            .iter()
            .filter_map(|t| {
                let head = final_heads
                    .get(&t.name)
                    .copied()
                    .unwrap_or(t.max_seen)
                    .max(t.max_seen);
                t.start.map(|s| head.saturating_sub(s))
            })
            .sum();
        c.lost = c.expected.saturating_sub(c.delivered);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Cursor;

    fn cursor(t: &Tracker) -> Vec<(&str, Option<u64>)> {
        t.entries().collect()
    }

    fn heads(a: u64, b: u64) -> HashMap<String, u64> {
        HashMap::from([("A".into(), a), ("B".into(), b)])
    }

    fn tracker() -> Tracker {
        let mut t = Tracker::new(vec!["A".into(), "B".into()]);
        assert_eq!(cursor(&t), vec![("A", None), ("B", None)]);
        t.on_subscribed("A", 10);
        t.on_subscribed("B", 0);
        t
    }

    #[test]
    fn in_order_delivery_is_complete_with_nothing_lost() {
        let mut t = tracker();
        for s in 11..=13 {
            assert_eq!(t.on_event("A", s), Arrival::New);
        }
        assert_eq!(t.on_event("B", 1), Arrival::New);
        assert!(t.complete(&heads(13, 1)));
        let c = t.finish(&heads(13, 1));
        assert_eq!(
            (
                c.expected,
                c.delivered,
                c.lost,
                c.duplicated,
                c.out_of_order
            ),
            (4, 4, 0, 0, 0)
        );
        assert_eq!(cursor(&t), vec![("A", Some(13)), ("B", Some(1))]);
    }

    #[test]
    fn duplicates_reordering_and_losses_are_each_counted() {
        let mut t = tracker();
        assert_eq!(t.on_event("A", 11), Arrival::New);
        assert_eq!(t.on_event("A", 11), Arrival::Duplicate);
        assert_eq!(t.on_event("A", 14), Arrival::New);
        assert_eq!(t.on_event("A", 12), Arrival::Late);
        assert_eq!(t.on_event("A", 12), Arrival::Duplicate);
        assert_eq!(t.on_event("A", 9), Arrival::Unexpected);
        assert_eq!(t.on_event("C", 1), Arrival::Unexpected);
        let c = t.finish(&heads(15, 0));
        // 11..=15 expected; 13 and 15 never came.
        assert_eq!(
            c,
            DeliveryCounts {
                expected: 5,
                delivered: 3,
                lost: 2,
                duplicated: 2,
                out_of_order: 1,
                missed_reported: 0,
                unexpected: 2
            }
        );
        assert!(!t.complete(&heads(15, 0)));
    }

    #[test]
    fn missed_notice_counts_as_lost_and_moves_the_cursor() {
        let mut t = tracker();
        t.on_event("A", 11);
        t.on_missed("A", 12, 20);
        assert_eq!(t.on_event("A", 21), Arrival::New);
        let c = t.finish(&heads(21, 0));
        assert_eq!(
            (c.expected, c.delivered, c.lost, c.missed_reported),
            (11, 2, 9, 9)
        );
        assert_eq!(cursor(&t)[0], ("A", Some(21)));
    }

    #[test]
    fn a_resumed_subscription_keeps_its_original_start() {
        let mut t = tracker();
        t.on_event("A", 11);
        t.on_subscribed("A", 50);
        assert_eq!(t.finish(&heads(12, 0)).expected, 2);
    }

    #[test]
    fn without_final_heads_gaps_below_the_highest_seen_still_count() {
        let mut t = tracker();
        t.on_event("A", 11);
        t.on_event("A", 14);
        let c = t.finish(&HashMap::new());
        assert_eq!((c.expected, c.delivered, c.lost), (4, 2, 2));
    }

    #[test]
    fn a_client_that_never_subscribed_expects_nothing() {
        let t = Tracker::new(vec!["A".into()]);
        assert_eq!(t.finish(&heads(100, 0)), DeliveryCounts::default());
        assert!(!t.complete(&heads(0, 0)));
    }
}
