//! Long polling without keep-alive: every poll opens a new TCP connection
//! (and TLS session, when on) and asks the server to close it after the
//! answer (`Connection: close`), as HTTP/1.0 clients do. The connect cost
//! every poll pays shows in bytes, CPU and connections per event.

use ::http::{HeaderValue, header};

use super::http::{self, Http1Sender};
use super::{Alpn, ClientError, Cursor, Dial, Framing, OwnedDial, Received, Transport};

pub struct LongPollCloseClient {
    dial: OwnedDial,
    host: HeaderValue,
    path: String,
}

impl Transport for LongPollCloseClient {
    type Shared = ();
    type Sender = Http1Sender;

    async fn connect(
        dial: &Dial<'_>,
        _shared: &(),
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let mut client = LongPollCloseClient {
            dial: dial.to_owned(),
            host: http::host(dial),
            path: String::new(),
        };
        let first = client.recv(cursor).await?;
        Ok((client, first))
    }

    async fn recv(&mut self, cursor: &impl Cursor) -> Result<Received, ClientError> {
        let dial = self.dial.dial();
        let mut sender = http::handshake_h1(dial.open(Alpn::Http1).await?).await?;
        http::poll_path(
            &mut self.path,
            cursor,
            dial.target.hold,
            dial.target.max_batch,
        );
        let mut request = http::get(&self.path, &self.host)?;
        request
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let response = http::exchange(&mut sender, request, dial.counters).await?;
        Ok(Received {
            body: http::body_of(response).await?.into(),
            framing: Framing::Batch,
        })
    }

    fn sender(&self, dial: &Dial<'_>) -> Http1Sender {
        Http1Sender::new(dial, true)
    }
}
