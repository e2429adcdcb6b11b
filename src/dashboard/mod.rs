//! `run --dashboard`: a page in the browser that follows a run while it
//! goes on — each transport's phase, connected clients, events/s, latency
//! p50 and p99 per second, errors — and shows the final figures from
//! summary.json when the run ends.
//!
//! The figures are the ones the progress bars show, so the dashboard adds
//! no measurement of its own: the run process serves the page and pushes
//! updates over server-sent events (the tool using what it measures). A
//! transport run in a generator process of its own (a part) writes its
//! updates as JSON lines on its stdout, a pipe to the run process, so
//! parts inside an emulated link's namespace reach the page too. The page
//! and its script are embedded: nothing is fetched from elsewhere.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::progress::{Live, Phase, Progress};
use crate::report::summary::Summary;
use crate::scenario::TransportKind;

/// Where `--dashboard` listens when given no address: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5665";

const PAGE: &str = include_str!("page.html");

/// One message to the page. Serialized as JSON, one per server-sent
/// event, and one per line from a part to its run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Update {
    /// The run began: what it runs and where its results go.
    Started {
        scenario: String,
        transports: Vec<String>,
        repeat: u32,
        clients: u32,
        expected_s: f64,
        results_dir: String,
    },
    /// A transport entered a phase expected to last `length_ms`.
    Phase {
        transport: String,
        phase: String,
        length_ms: u64,
        note: String,
    },
    /// About twice a second while a transport runs.
    Live {
        transport: String,
        /// The phase `second` fell in (the phase being run when there is
        /// no second yet): the figures lag the run by a second or two.
        phase: String,
        clients: u64,
        connected: u64,
        second: Option<u64>,
        delivered_per_s: Option<u64>,
        p50_us: Option<u64>,
        p99_us: Option<u64>,
        errors: u64,
    },
    /// A transport ended; `note` says how.
    Done { transport: String, note: String },
    /// The run ended: its figures as written to summary.json, or, when
    /// it ended without results, `reason` says why.
    Finished {
        results: String,
        complete: bool,
        rows: Vec<FinalRow>,
        reason: Option<String>,
    },
}

/// One transport's final figures, copied from summary.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FinalRow {
    /// 1-based; always 1 without `--repeat`.
    pub repetition: u32,
    pub transport: String,
    pub complete: bool,
    pub expected: Option<u64>,
    pub delivered: u64,
    pub lost: Option<u64>,
    pub delivered_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub errors: u64,
}

impl Update {
    /// The final figures of every transport of the given summaries
    /// (several with `--repeat`).
    pub fn finished(results: &std::path::Path, summaries: &[&Summary]) -> Update {
        let rows = summaries
            .iter()
            .enumerate()
            .flat_map(|(r, s)| {
                s.transports.iter().map(move |t| FinalRow {
                    repetition: r as u32 + 1,
                    transport: t.transport.name().to_owned(),
                    complete: t.complete,
                    expected: t.delivery.expected,
                    delivered: t.delivery.delivered,
                    lost: t.delivery.lost,
                    delivered_per_s: t.throughput.delivered_per_s,
                    p50_us: t.latency_us.p50,
                    p99_us: t.latency_us.p99,
                    p99_9_us: t.latency_us.p99_9,
                    errors: t.errors.values().sum(),
                })
            })
            .collect();
        Update::Finished {
            results: results.display().to_string(),
            complete: summaries.iter().all(|s| s.complete),
            rows,
            reason: None,
        }
    }
}

/// The updates so far and the pages following them.
pub struct Dashboard {
    /// Every update in order: a page that opens late (or reconnects)
    /// gets the whole run so far, then the new ones.
    history: Mutex<Vec<Arc<str>>>,
    tx: broadcast::Sender<Arc<str>>,
    /// The address it listens on (the port chosen when 0 was asked).
    pub addr: SocketAddr,
    /// Cancelled once the final figures are pushed: the server then
    /// finishes the responses it has begun (each page's stream ends after
    /// the final figures) and stops.
    shutdown: CancellationToken,
    serving: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether the run's end has been pushed (see [`Dashboard::abandon`]).
    finished: std::sync::atomic::AtomicBool,
}

impl Dashboard {
    /// Listens on `addr` and serves the page until [`Dashboard::finish`].
    /// Fails (before anything else starts) when the address cannot be had.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Arc<Dashboard>> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let (tx, _) = broadcast::channel(4096);
        let shutdown = CancellationToken::new();
        let board = Arc::new(Dashboard {
            history: Mutex::new(Vec::new()),
            tx,
            addr: listener.local_addr()?,
            shutdown: shutdown.clone(),
            serving: Mutex::new(None),
            finished: std::sync::atomic::AtomicBool::new(false),
        });
        let mut app = Router::new()
            .route("/", get(page))
            .route("/events", get(events))
            .with_state(board.clone());
        if addr.ip().is_loopback() {
            app = app.layer(axum::middleware::from_fn(loopback_host_only));
        }
        let serving = tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await });
            if let Err(e) = serve.await {
                eprintln!("warning: the dashboard stopped serving: {e}");
            }
        });
        *board.serving.lock().expect("dashboard lock") = Some(serving);
        Ok(board)
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn push(&self, update: &Update) {
        let json: Arc<str> = serde_json::to_string(update)
            .expect("updates serialize")
            .into();
        let mut history = self.history.lock().expect("dashboard lock");
        history.push(json.clone());
        // No page open is not an error: the history keeps it.
        let _ = self.tx.send(json);
    }

    /// A part's line, pushed if it is an update (anything else a part
    /// writes on stdout is ignored).
    pub fn push_line(&self, line: &str) {
        if let Ok(update) = serde_json::from_str::<Update>(line) {
            self.push(&update);
        }
    }

    /// Pushes the final figures and waits (at most `limit`) until every
    /// open page has been sent them, so a page keeps them after the run
    /// process ends.
    pub async fn finish(&self, update: &Update, limit: Duration) {
        self.finished
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.push(update);
        self.shutdown.cancel();
        let serving = self.serving.lock().expect("dashboard lock").take();
        if let Some(serving) = serving {
            // The graceful shutdown waits for every open stream, and each
            // ends once the final figures are written to its socket.
            let _ = tokio::time::timeout(limit, serving).await;
        }
    }

    /// The end of a run that stopped before it had final figures (no
    /// results written, parts not joined): the page says so instead of
    /// waiting for them. Does nothing after [`Dashboard::finish`].
    pub async fn abandon(&self, reason: &str) {
        if self.finished.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let update = Update::Finished {
            results: String::new(),
            complete: false,
            rows: Vec::new(),
            reason: Some(reason.to_owned()),
        };
        self.finish(&update, Duration::from_secs(2)).await;
    }

    fn follow(&self) -> (Vec<Arc<str>>, broadcast::Receiver<Arc<str>>) {
        // Under the lock: no update falls between the copy and the
        // subscription, and none arrives twice.
        let history = self.history.lock().expect("dashboard lock");
        (history.clone(), self.tx.subscribe())
    }
}

/// A page bound to loopback answers only requests that name a loopback
/// host: a web page elsewhere cannot reach it through a host name that
/// resolves to 127.0.0.1 (DNS rebinding).
async fn loopback_host_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    if !host.is_some_and(|a| crate::server::is_loopback_host(a.host())) {
        return (
            http::StatusCode::FORBIDDEN,
            "the dashboard listens on loopback and answers only loopback host names (localhost, 127.x.x.x, [::1])\n",
        )
            .into_response();
    }
    next.run(req).await
}

async fn page() -> impl IntoResponse {
    ([(http::header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

/// The run so far, then each update as it comes; the stream ends after
/// the final figures, which lets `finish` know they were sent.
async fn events(
    axum::extract::State(board): axum::extract::State<Arc<Dashboard>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let (history, rx) = board.follow();
    let state = (history.into_iter(), Some(rx), false);
    let stream = futures_util::stream::unfold(state, |(mut past, mut rx, ended)| async move {
        if ended {
            return None;
        }
        let next = match past.next() {
            Some(json) => json,
            // A page too slow to keep up has missed updates: its stream
            // ends, and on reconnecting it is sent the whole run again.
            None => rx.as_mut()?.recv().await.ok()?,
        };
        let last = next.starts_with(r#"{"type":"finished""#);
        if last {
            // Subscribed no longer: the stream ends after this event, and
            // with it the server's graceful shutdown once every page has it.
            rx = None;
        }
        Some((Ok(Event::default().data(&*next)), (past, rx, last)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Where a run's progress goes besides the terminal.
pub enum Sink {
    /// The dashboard this process serves.
    Board(Arc<Dashboard>),
    /// JSON lines on stdout, read by the run process that started this
    /// part and serves the page.
    Lines,
}

impl Sink {
    fn send(&self, update: &Update) {
        match self {
            Sink::Board(board) => board.push(update),
            Sink::Lines => {
                let line = serde_json::to_string(update).expect("updates serialize");
                // The parent reads every line as it comes (a pipe it
                // drains); one that has gone makes the write fail, which
                // costs the run nothing.
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
        }
    }
}

/// When each phase of a transport began, on the run's clock.
type PhaseStarts = Vec<(u64, Phase)>;

/// The terminal's progress and the dashboard's, from the same calls.
pub struct Tee {
    inner: Box<dyn Progress>,
    sink: Sink,
    /// The transport being run and when each of its phases began (on the
    /// run's clock), to label each live second with the phase it fell in.
    current: Mutex<Option<(TransportKind, PhaseStarts)>>,
}

impl Tee {
    pub fn new(inner: Box<dyn Progress>, sink: Sink) -> Tee {
        Tee {
            inner,
            sink,
            current: Mutex::new(None),
        }
    }
}

/// The phase in effect at the middle of the second that began at
/// `second_started_ns`; the latest phase without a second.
fn phase_of(phases: &[(u64, Phase)], second_started_ns: Option<u64>) -> Option<Phase> {
    let Some(start) = second_started_ns else {
        return phases.last().map(|(_, p)| *p);
    };
    let middle = start + 500_000_000;
    phases
        .iter()
        .take_while(|(began, _)| *began <= middle)
        .last()
        .or(phases.first())
        .map(|(_, p)| *p)
}

impl Progress for Tee {
    fn phase(&self, transport: TransportKind, phase: Phase, length: Duration, note: &str) {
        self.inner.phase(transport, phase, length, note);
        let now = crate::clock::now_ns();
        let mut current = self.current.lock().expect("tee lock");
        match current.as_mut() {
            Some((t, phases)) if *t == transport => phases.push((now, phase)),
            _ => *current = Some((transport, vec![(now, phase)])),
        }
        drop(current);
        self.sink.send(&Update::Phase {
            transport: transport.name().to_owned(),
            phase: phase.name().to_owned(),
            length_ms: length.as_millis() as u64,
            note: note.trim_start_matches([';', ' ']).to_owned(),
        });
    }

    fn live(&self, live: &Live) {
        self.inner.live(live);
        let (transport, phase) = {
            let current = self.current.lock().expect("tee lock");
            let Some((transport, phases)) = current.as_ref() else {
                return;
            };
            let Some(phase) = phase_of(phases, live.second_started_ns) else {
                return;
            };
            (*transport, phase)
        };
        self.sink.send(&Update::Live {
            transport: transport.name().to_owned(),
            phase: phase.name().to_owned(),
            clients: live.clients,
            connected: live.connected,
            second: live.second,
            delivered_per_s: live.delivered_per_s,
            p50_us: live.p50_us,
            p99_us: live.p99_us,
            errors: live.errors,
        });
    }

    fn done(&self, transport: TransportKind, note: &str) {
        self.inner.done(transport, note);
        *self.current.lock().expect("tee lock") = None;
        self.sink.send(&Update::Done {
            transport: transport.name().to_owned(),
            note: note.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_page_gets_the_run_so_far_and_the_stream_ends_after_the_final_figures() {
        let board = Dashboard::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        board.push(&Update::Done {
            transport: "websocket".into(),
            note: "done".into(),
        });
        board.push_line("not an update");
        let url = format!("{}events", board.url());
        let reading = tokio::spawn(async move {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        // The page subscribes, then the run ends.
        while board.tx.receiver_count() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let finished = Update::Finished {
            results: "r".into(),
            complete: true,
            rows: vec![],
            reason: None,
        };
        board.finish(&finished, Duration::from_secs(5)).await;
        assert_eq!(board.tx.receiver_count(), 0, "the page was sent the end");
        let body = tokio::time::timeout(Duration::from_secs(5), reading)
            .await
            .expect("the stream ends after the final figures")
            .unwrap();
        let updates: Vec<Update> = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(updates.len(), 2, "{body}");
        assert!(matches!(updates[0], Update::Done { .. }));
        assert_eq!(updates[1], finished);
    }

    #[tokio::test]
    async fn a_page_on_loopback_answers_only_loopback_host_names() {
        let board = Dashboard::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let status = |host: String| {
            let request = http.get(board.url()).header("host", host);
            async move { request.send().await.unwrap().status().as_u16() }
        };
        let port = board.addr.port();
        assert_eq!(status(format!("127.0.0.1:{port}")).await, 200);
        assert_eq!(status(format!("localhost:{port}")).await, 200);
        // A name that resolves to 127.0.0.1 for a page elsewhere.
        assert_eq!(status(format!("rebound.example:{port}")).await, 403);
        assert_eq!(status("127.0.0.1.example".into()).await, 403);
    }

    #[tokio::test]
    async fn a_run_without_results_ends_the_page_saying_why_and_only_once() {
        let board = Dashboard::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        board.abandon("exit 1").await;
        board.abandon("again").await;
        let history = board.history.lock().unwrap().clone();
        assert_eq!(history.len(), 1);
        let Update::Finished { reason, rows, .. } = serde_json::from_str(&history[0]).unwrap()
        else {
            panic!("{history:?}");
        };
        assert_eq!(reason.as_deref(), Some("exit 1"));
        assert!(rows.is_empty());
    }

    #[test]
    fn a_live_second_is_labelled_with_the_phase_it_fell_in() {
        let s = 1_000_000_000;
        let phases = [
            (10 * s, Phase::Connect),
            (12 * s, Phase::Warmup),
            (14 * s, Phase::Measure),
        ];
        assert_eq!(phase_of(&phases, None), Some(Phase::Measure));
        // Its middle decides: the second from 13 s is warm-up; one whose
        // middle is past 14 s, measure.
        assert_eq!(phase_of(&phases, Some(13 * s)), Some(Phase::Warmup));
        assert_eq!(
            phase_of(&phases, Some(13 * s + s / 2 + 1)),
            Some(Phase::Measure)
        );
        assert_eq!(phase_of(&phases, Some(11 * s)), Some(Phase::Connect));
        // Before the first phase was announced: the first.
        assert_eq!(phase_of(&phases, Some(5 * s)), Some(Phase::Connect));
        assert_eq!(phase_of(&[], Some(5 * s)), None);
    }
}
