//! Small workloads over every transport, measured by the real generator:
//! one parametrised set, run for every transport the case applies to.

use std::time::Duration;

use pushbench::codec::Encoding;
use pushbench::runner::{self, Ending, RunOutcome};
use pushbench::scenario::{ServerKind, TransportKind};
use pushbench::server_process::ServerLaunch;
use pushbench::tls::SelfSigned;
use tokio_util::sync::CancellationToken;

use crate::util::{CuttingProxy, parse, start_server, start_server_with, tiny_scenario};

/// What varies between the cases; the checks are the same for all.
#[derive(Default)]
struct Case {
    binary: bool,
    tls: bool,
    /// Chat lines and echo requests from every client.
    client_messages: bool,
    /// Cut every connection at this interval.
    cut_after: Option<Duration>,
}

const CLIENTS: u64 = 40;

fn transports(case: &Case) -> Vec<TransportKind> {
    let encoding = if case.binary {
        Encoding::Binary
    } else {
        Encoding::Json
    };
    TransportKind::ALL
        .into_iter()
        .filter(|t| t.carries(encoding) && t.server() == ServerKind::Pushbench)
        .collect()
}

async fn run(case: &Case) -> RunOutcome {
    let encoding = if case.binary {
        Encoding::Binary
    } else {
        Encoding::Json
    };
    let cert = case.tls.then(|| SelfSigned::generate().unwrap());
    let (server_addr, _state) = start_server_with(encoding, cert.as_ref()).await;
    let proxy = match case.cut_after {
        Some(_) => Some(CuttingProxy::start(server_addr).await),
        None => None,
    };
    let addr = proxy.as_ref().map_or(server_addr, |p| p.addr);
    let names = transports(case)
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(",");
    let mut text = tiny_scenario(&names, encoding.as_str());
    if case.client_messages {
        text.push_str(
            "[messages]\nrate_per_client = 4.0\npayload_bytes = 20\n\
             [echo]\nrate_per_client = 4.0\npayload_bytes = 10\n",
        );
    }
    if case.cut_after.is_some() {
        text = text.replace("1500ms", "3s");
    }
    let mut scenario = parse(&text);
    scenario.tls = case.tls;
    let launch = ServerLaunch::Existing {
        kind: ServerKind::Pushbench,
        addr,
        pid: None,
        tls_cert_pem: cert.as_ref().map(|c| c.cert_pem.clone()),
        tls_name: None,
        token: None,
        control: true,
    };
    let interrupt = CancellationToken::new();
    let run = runner::run_scenario(
        &scenario,
        &launch,
        &interrupt,
        std::sync::Arc::new(pushbench::progress::Silent),
        None,
    );
    match (&proxy, case.cut_after) {
        (Some(proxy), Some(every)) => {
            // Cut on a fixed cadence, shorter than a transport's measured
            // window, so every transport is cut while events flow.
            let cutter = async {
                loop {
                    tokio::time::sleep(every).await;
                    proxy.cut();
                }
            };
            tokio::select! {
                outcome = run => outcome,
                () = cutter => unreachable!(),
            }
        }
        _ => run.await,
    }
}

/// Every subscribed event arrives exactly once and in order, for every
/// transport, with latency, bytes and requests accounted.
fn check_delivery(case: &Case, outcome: &RunOutcome) {
    assert_eq!(outcome.ending, Ending::Complete);
    assert_eq!(outcome.transports.len(), transports(case).len());
    let expected_first = outcome.transports[0].report.delivery.expected;
    for run in &outcome.transports {
        let t = run.kind;
        let d = run.report.delivery;
        assert!(
            run.incomplete_reason.is_none(),
            "{t}: {:?}",
            run.incomplete_reason
        );
        assert_eq!(run.clients_subscribed, CLIENTS, "{t}");
        // 400 events/s for 1.5 s over 8 topics, 3 topics per client.
        assert!(
            d.expected > CLIENTS * 3 * 20,
            "{t}: only {} expected",
            d.expected
        );
        assert_eq!(d.delivered, d.expected, "{t}: {d:?}");
        assert_eq!(
            (
                d.lost,
                d.duplicated,
                d.out_of_order,
                d.unexpected,
                d.missed_reported
            ),
            (0, 0, 0, 0, 0),
            "{t}: {d:?}"
        );
        if !case.client_messages {
            // The publisher's schedule is seeded: the same events for all.
            assert_eq!(d.expected, expected_first, "{t}: same workload");
        }
        let totals = run.totals;
        assert!(totals.bytes_down > d.delivered * 48, "{t}: {totals:?}");
        assert!(
            totals.bytes_up > 0 && totals.requests >= CLIENTS,
            "{t}: {totals:?}"
        );
        let seconds: u64 = run.intervals.iter().map(|i| i.delivered).sum();
        assert_eq!(seconds, d.delivered, "{t}: timeline adds up");
        if case.cut_after.is_none() {
            assert!(run.report.errors.is_empty(), "{t}: {:?}", run.report.errors);
            // With no warm-up every event is intended inside the window, so
            // every delivered event has exactly one latency sample.
            let samples = run.report.latency.len() + run.report.echo_latency.len();
            assert_eq!(samples, d.delivered, "{t}");
            assert_eq!(
                run.report.connect.len(),
                CLIENTS,
                "{t}: one connect time per client; errors {:?}",
                run.report.errors
            );
        }
        match t {
            // One upgrade per client, then frames only.
            TransportKind::Websocket if !case.client_messages && case.cut_after.is_none() => {
                assert_eq!(totals.requests, CLIENTS, "{t}");
                assert_eq!(totals.connections, CLIENTS, "{t}");
            }
            // A new connection per poll.
            TransportKind::LongPollingClose => {
                assert!(totals.connections >= totals.requests / 2, "{t}: {totals:?}");
                assert!(totals.requests > CLIENTS * 2, "{t}: {totals:?}");
            }
            // 40 clients share one connection per worker (100 per connection).
            TransportKind::LongPollingH2 | TransportKind::WebsocketH2
                if case.cut_after.is_none() =>
            {
                assert_eq!(totals.connections, 2, "{t}: {totals:?}");
            }
            TransportKind::LongPolling | TransportKind::ShortPolling => {
                assert!(totals.requests > CLIENTS * 2, "{t}: {totals:?}");
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_delivers_every_event_once_in_order_json() {
    let case = Case::default();
    check_delivery(&case, &run(&case).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_delivers_every_event_once_in_order_binary() {
    let case = Case {
        binary: true,
        ..Case::default()
    };
    check_delivery(&case, &run(&case).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_works_over_tls_with_the_generated_certificate() {
    let case = Case {
        tls: true,
        ..Case::default()
    };
    check_delivery(&case, &run(&case).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_resumes_after_a_forced_disconnect_without_loss() {
    let case = Case {
        cut_after: Some(Duration::from_millis(1500)),
        ..Case::default()
    };
    let outcome = run(&case).await;
    check_delivery(&case, &outcome);
    for run in &outcome.transports {
        let t = run.kind;
        // The cut happened (errors, reconnects) and nothing was lost: the
        // clients resumed from their cursors (SSE: Last-Event-ID).
        assert!(!run.report.errors.is_empty(), "{t}: no connection was cut");
        if t != TransportKind::LongPollingClose && t != TransportKind::ShortPolling {
            assert!(
                run.report.connect.len() > CLIENTS,
                "{t}: nobody reconnected"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_messages_and_echo_are_counted_and_delivered_on_every_transport() {
    let case = Case {
        client_messages: true,
        ..Case::default()
    };
    let outcome = run(&case).await;
    check_delivery(&case, &outcome);
    for run in &outcome.transports {
        let t = run.kind;
        let r = &run.report;
        // 8 messages/s per client over the 1.5 s send window, 40 clients.
        assert!(r.sent > CLIENTS * 8, "{t}: only {} sent", r.sent);
        assert_eq!(r.send_failed, 0, "{t}");
        // One server for every transport: its count runs on from one to the
        // next, so this transport's part is what it counted since its start.
        let server = run.server_stats.as_ref().expect("server stats");
        assert_eq!(
            server.client_messages - run.server_client_messages_before,
            r.sent,
            "{t}: the server got every message"
        );
        // Every echo request was answered to its sender alone.
        assert!(
            r.echo_latency.len() > CLIENTS * 2,
            "{t}: {}",
            r.echo_latency.len()
        );
        assert!(r.echo_latency.len() < r.sent, "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_stops_and_keeps_what_it_measured() {
    let (addr, _state) = start_server(Encoding::Json).await;
    let scenario =
        parse(&tiny_scenario("\"websocket\", \"long_polling\"", "json").replace("1500ms", "60s"));
    let launch = ServerLaunch::Existing {
        kind: ServerKind::Pushbench,
        addr,
        pid: None,
        tls_cert_pem: None,
        tls_name: None,
        token: None,
        control: true,
    };
    let interrupt = CancellationToken::new();
    // Interrupted a second into the measured window, however slowly the
    // machine got there (a fixed delay from the start raced the connect
    // phase on a starved machine).
    let outcome = runner::run_scenario(
        &scenario,
        &launch,
        &interrupt,
        std::sync::Arc::new(InterruptInMeasure(interrupt.clone())),
        None,
    )
    .await;
    assert_eq!(outcome.ending, Ending::Interrupted);
    assert_eq!(
        outcome.transports.len(),
        1,
        "the second transport never starts"
    );
    let run = &outcome.transports[0];
    assert!(
        run.incomplete_reason
            .as_deref()
            .unwrap()
            .contains("interrupted")
    );
    assert!(
        run.report.delivery.delivered > 0,
        "what was measured is kept"
    );
}

/// Progress that presses Ctrl-C (cancels) one second into the first
/// measured window.
struct InterruptInMeasure(CancellationToken);

impl pushbench::progress::Progress for InterruptInMeasure {
    fn phase(&self, _: TransportKind, phase: pushbench::progress::Phase, _: Duration, _: &str) {
        if phase == pushbench::progress::Phase::Measure {
            let stopper = self.0.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                stopper.cancel();
            });
        }
    }
    fn live(&self, _: &pushbench::progress::Live) {}
    fn done(&self, _: TransportKind, _: &str) {}
}
