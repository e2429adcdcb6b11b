//! Short-polling client: a poll at a fixed interval, answered at once with
//! whatever arrived since the cursor. Events wait on the server for the
//! next poll, so latency grows with the interval while idle polls cost
//! requests: the trade-off this transport exists to show.
//!
//! It is the long-poll exchange with a hold of zero, on one kept-alive
//! HTTP/1.1 connection.

use std::time::Duration;

use tokio::time::Instant;

use super::http::Http1Sender;
use super::{ClientError, Cursor, Dial, LongPollClient, Received, Target, Transport};

pub struct ShortPollClient {
    poller: LongPollClient,
    next_poll: Instant,
    interval: Duration,
}

impl Transport for ShortPollClient {
    type Shared = ();
    type Sender = Http1Sender;

    async fn connect(
        dial: &Dial<'_>,
        _shared: &(),
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let target = Target {
            hold: Duration::ZERO,
            ..dial.target.clone()
        };
        let started = Instant::now();
        let (poller, first) = LongPollClient::connect(
            &Dial {
                target: &target,
                ..*dial
            },
            &(),
            cursor,
        )
        .await?;
        let interval = dial.target.poll_interval;
        let client = ShortPollClient {
            poller,
            next_poll: started + interval,
            interval,
        };
        Ok((client, first))
    }

    async fn recv(&mut self, cursor: &impl Cursor) -> Result<Received, ClientError> {
        tokio::time::sleep_until(self.next_poll).await;
        // A fixed schedule; a poll that ran past its slot skips the missed
        // slots rather than bunching up to catch up.
        self.next_poll += self.interval;
        let now = Instant::now();
        if self.next_poll <= now {
            self.next_poll = now + self.interval;
        }
        self.poller.recv(cursor).await
    }

    fn sender(&self, dial: &Dial<'_>) -> Http1Sender {
        self.poller.sender(dial)
    }
}
