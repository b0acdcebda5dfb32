//! Breakwater's breaker metrics reach `/metrics` through `serve`'s own start-up path. The
//! Prometheus recorder is the process's: this file is a test process of its own, in which
//! nothing installs the recorder before `Server::start` does.

mod support;

use std::time::Duration;

use http::StatusCode;
use payment_gateway::mock_pg::MockPg;
use payment_gateway::serve::{ServeOptions, Server};
use support::TempDb;
use support::client::Http;

#[tokio::test]
async fn the_breakers_metrics_reach_metrics_when_serve_starts_the_service() {
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let server = Server::start(ServeOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        pg_url: pg.url(),
        database_url: format!("sqlite://{}?mode=rwc", db.path().display()),
        log_format: None,
        ..ServeOptions::default()
    })
    .await
    .unwrap();
    let http = Http::new(server.url());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    assert_eq!(http.create("o-1", 25_000).await.0, StatusCode::CREATED);
    let (status, body) = http.success("o-1", 25_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["state"], "done");

    let (status, text) = http.text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    // The metric names of crates/breakwater/src/circuit_breaker/observe/metrics.rs.
    for line in [
        "# TYPE breakwater_circuit_breaker_calls_total counter",
        "breakwater_circuit_breaker_calls_total{breaker=\"beeceptor-payment\",outcome=\"success\"} 1",
        "breakwater_circuit_breaker_calls_total{breaker=\"beeceptor-payment\",outcome=\"failure\"} 0",
        "breakwater_circuit_breaker_calls_total{breaker=\"beeceptor-payment\",outcome=\"ignored\"} 0",
        "breakwater_circuit_breaker_calls_total{breaker=\"beeceptor-payment\",outcome=\"rejected\"} 0",
        "breakwater_circuit_breaker_slow_calls_total{breaker=\"beeceptor-payment\"} 0",
        "# TYPE breakwater_circuit_breaker_state gauge",
        "breakwater_circuit_breaker_state{breaker=\"beeceptor-payment\",state=\"closed\"} 1",
        "breakwater_circuit_breaker_state{breaker=\"beeceptor-payment\",state=\"open\"} 0",
        "payment_confirmations_total{outcome=\"approved\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line `{line}` in\n{text}"
        );
    }

    let _ = stop.send(());
    let ran = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("serve stops within 10 s")
        .unwrap();
    assert_eq!(ran, Ok(()));
}
