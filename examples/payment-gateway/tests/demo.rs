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
    // Every phase is readable: 60 px at least of the 910 (from 70 to 980).
    let number = |value: &str| -> f64 { value.parse().unwrap() };
    let starts: Vec<f64> = attributes(&svg, "<line class=\"phase-start\"", "x1")
        .into_iter()
        .map(number)
        .collect();
    assert_eq!(starts.len(), 8, "{svg}");
    let mut ends = starts[1..].to_vec();
    ends.push(980.0);
    for (i, (start, end)) in starts.iter().zip(&ends).enumerate() {
        assert!(
            end - start >= 60.0 - 0.05,
            "phase {} is {:.1} px wide",
            i + 1,
            end - start
        );
    }
    // Phase 8's headline: its timeouts (red) stand apart from the fast failures (orange)
    // that follow them, which spread over the phase instead of a few pixels.
    let calls: Vec<(f64, &str)> = attributes(&svg, "<circle", "cx")
        .into_iter()
        .map(number)
        .zip(attributes(&svg, "<circle", "fill"))
        .collect();
    let in_phase_8 = |fill: &str| -> Vec<f64> {
        calls
            .iter()
            .filter(|&&(x, colour)| x >= starts[7] && colour == fill)
            .map(|&(x, _)| x)
            .collect()
    };
    let (timeouts, fast) = (in_phase_8("#c62828"), in_phase_8("#ef6c00"));
    assert_eq!((timeouts.len(), fast.len()), (10, 20));
    let last_timeout = timeouts.iter().copied().fold(f64::MIN, f64::max);
    let first_fast = fast.iter().copied().fold(f64::MAX, f64::min);
    let last_fast = fast.iter().copied().fold(f64::MIN, f64::max);
    assert!(first_fast >= last_timeout, "{timeouts:?} {fast:?}");
    assert!(last_fast - first_fast >= 30.0, "{fast:?}");
    let _ = std::fs::remove_file(chart);
}

/// The values of the attribute `name` of every element that starts with `element`, in
/// order.
fn attributes<'a>(svg: &'a str, element: &str, name: &str) -> Vec<&'a str> {
    let key = format!(" {name}=\"");
    svg.match_indices(element)
        .map(|(at, _)| {
            let tag = &svg[at..at + svg[at..].find('>').unwrap()];
            let start = tag.find(&key).unwrap() + key.len();
            &tag[start..start + tag[start..].find('"').unwrap()]
        })
        .collect()
}
