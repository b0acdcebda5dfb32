//! The demo runs to completion, with the open wait and the read timeout shortened.

use std::time::Duration;

use breakwater::CircuitState;
use payment_gateway::demo::{self, CONFIG, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_every_phase_and_writes_its_chart() {
    let config = CONFIG.replace(
        "wait-duration-in-open-state: 30000",
        "wait-duration-in-open-state: 400",
    );
    assert_ne!(
        config, CONFIG,
        "the shipped file no longer has the seed's 30 s wait"
    );
    let chart = std::env::temp_dir().join(format!(
        "payment-gateway-demo-test-{}.svg",
        std::process::id()
    ));
    let options = DemoOptions {
        config,
        read_timeout: Duration::from_millis(300),
        chart: chart.clone(),
        fast_calls: 20,
        hanging_calls: 10,
        retry_every: Duration::from_millis(50),
    };
    let mut out = Vec::new();
    let report = demo::run(&options, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();

    let by_number = |n: usize| &report.phases[n - 1];
    assert_eq!(report.phases.len(), 8, "{text}");
    // 1. Eight charged, two over the card's limit rejected (and ignored by the breaker).
    let healthy = by_number(1);
    assert_eq!(
        (healthy.approved, healthy.rejected, healthy.pg_hits),
        (8, 2, 10)
    );
    assert_eq!(healthy.state_after, CircuitState::Closed);
    // 2. With 8 successes in the window, the fifth 500 makes it half failures of 10.
    let failing = by_number(2);
    assert_eq!((failing.failed, failing.pg_hits), (5, 5));
    assert_eq!(failing.state_after, CircuitState::Open);
    // 3, 4. Fast failures: the PG sees none, hanging or not.
    for n in [3, 4] {
        let phase = by_number(n);
        assert_eq!(
            (phase.unavailable, phase.calls, phase.pg_hits),
            (20, 20, 0),
            "phase {n}"
        );
    }
    // 5. The wait runs out with the PG untouched; 6. five probes close the breaker.
    assert_eq!(by_number(5).pg_hits, 0);
    let probes = by_number(6);
    assert_eq!((probes.approved, probes.pg_hits), (5, 5));
    assert_eq!(probes.state_after, CircuitState::Closed);
    assert_eq!(by_number(7).approved, 10);
    // 8. Ten timeouts while closed, then fast failures once open.
    let hanging = by_number(8);
    assert_eq!(
        (hanging.failed, hanging.unavailable, hanging.pg_hits),
        (10, 20, 10)
    );
    assert_eq!(hanging.state_after, CircuitState::Open);

    let states: Vec<(CircuitState, CircuitState)> =
        report.transitions.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        states,
        [
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed),
            (CircuitState::Closed, CircuitState::Open),
        ]
    );
    assert!(
        report.headline.p99_closed >= Duration::from_millis(300),
        "{text}"
    );
    assert!(
        report.headline.p99_open < Duration::from_millis(300),
        "{text}"
    );
    assert_eq!(report.pg_charged, 23);
    assert_eq!(report.db_done, 23);
    assert!(
        text.contains("the PG charged 23; the database has 23 done: consistent"),
        "{text}"
    );
    assert!(
        text.contains("headline: with the PG hanging behind a 300 ms read timeout"),
        "{text}"
    );

    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.ends_with("</svg>\n"));
    assert_eq!(
        svg.matches("<circle").count(),
        report.phases.iter().map(|p| p.calls).sum::<usize>()
    );
    let _ = std::fs::remove_file(chart);
}
