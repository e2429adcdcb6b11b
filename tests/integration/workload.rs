//! Small workloads over every transport, measured by the real generator.

use pushbench::codec::Encoding;
use pushbench::runner::{self, Ending};
use pushbench::scenario::TransportKind;
use pushbench::server_process::ServerLaunch;
use tokio_util::sync::CancellationToken;

use crate::util::{parse, start_server, tiny_scenario};

async fn check_every_transport(encoding: Encoding) {
    let (addr, _state) = start_server(encoding).await;
    let names = TransportKind::ALL.map(|t| format!("\"{t}\"")).join(",");
    let scenario = parse(&tiny_scenario(&names, encoding.as_str()));
    let launch = ServerLaunch::Existing { addr, pid: None };
    let outcome = runner::run_scenario(
        &scenario,
        &launch,
        &CancellationToken::new(),
        std::sync::Arc::new(pushbench::progress::Silent),
    )
    .await;
    assert_eq!(outcome.ending, Ending::Complete);
    assert_eq!(outcome.transports.len(), TransportKind::ALL.len());
    for run in &outcome.transports {
        let t = run.kind;
        let d = run.report.delivery;
        assert!(
            run.incomplete_reason.is_none(),
            "{t}: {:?}",
            run.incomplete_reason
        );
        assert_eq!(run.clients_subscribed, 40, "{t}");
        // 400 events/s for 1.5 s over 8 topics, 3 topics per client.
        assert!(
            d.expected > 40 * 3 * 20,
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
            "{t}"
        );
        // With no warm-up every event is intended inside the window, so
        // every delivered event has exactly one latency sample.
        assert_eq!(run.report.latency.len(), d.delivered, "{t}");
        assert_eq!(run.report.latency_published.len(), d.delivered, "{t}");
        assert_eq!(
            run.report.connect.len(),
            40,
            "{t}: one connect time per client; errors {:?}",
            run.report.errors
        );
        assert!(run.report.errors.is_empty(), "{t}: {:?}", run.report.errors);
        // Bytes counted at the socket cover at least every event's payload.
        let totals = run.totals;
        assert!(totals.bytes_down > d.delivered * 48, "{t}: {totals:?}");
        assert!(
            totals.bytes_up > 0 && totals.requests >= 40,
            "{t}: {totals:?}"
        );
        assert_eq!(totals.connections, 40, "{t}");
        let seconds: u64 = run.intervals.iter().map(|i| i.delivered).sum();
        assert_eq!(seconds, d.delivered, "{t}: timeline adds up");
    }
    let [ws, lp] = [&outcome.transports[0], &outcome.transports[1]];
    assert_eq!(
        ws.report.delivery.expected, lp.report.delivery.expected,
        "same workload for every transport"
    );
    // Long polling pays for a request per answer; WebSocket only for its upgrade.
    assert_eq!(ws.totals.requests, 40);
    assert!(
        lp.totals.requests > lp.report.delivery.delivered / 10,
        "{:?}",
        lp.totals
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_delivers_every_event_once_in_order_json() {
    check_every_transport(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_delivers_every_event_once_in_order_binary() {
    check_every_transport(Encoding::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_stops_and_keeps_what_it_measured() {
    let (addr, _state) = start_server(Encoding::Json).await;
    let scenario =
        parse(&tiny_scenario("\"websocket\", \"long_polling\"", "json").replace("1500ms", "60s"));
    let launch = ServerLaunch::Existing { addr, pid: None };
    let interrupt = CancellationToken::new();
    let stopper = interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        stopper.cancel();
    });
    let outcome = runner::run_scenario(
        &scenario,
        &launch,
        &interrupt,
        std::sync::Arc::new(pushbench::progress::Silent),
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
