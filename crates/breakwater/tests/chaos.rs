//! The chaos layer: rates, replays, the two kinds of fault, latency, and bad settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breakwater::chaos::{self, Chaos, FaultKind, Injected, InjectedFault};
use breakwater::{BoxError, CircuitBreaker, CircuitOpen, CircuitState};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A service counting the calls whose future runs, answering the request back.
fn counting(
    reached: &Arc<AtomicU64>,
) -> impl Service<u64, Response = u64, Error = BoxError> + use<> {
    let reached = reached.clone();
    service_fn(move |n: u64| {
        let reached = reached.clone();
        async move {
            reached.fetch_add(1, Ordering::Relaxed);
            Ok::<_, BoxError>(n)
        }
    })
}

/// Runs `calls` calls one after the other; the kinds of fault each got (`None`: passed).
async fn run(chaos: &Chaos, calls: u64) -> Vec<Option<FaultKind>> {
    let reached = Arc::new(AtomicU64::new(0));
    let mut service = chaos.layer(chaos::fault::error()).layer(counting(&reached));
    let mut seen = Vec::new();
    for n in 0..calls {
        let result = service.ready().await.unwrap().call(n).await;
        seen.push(match result {
            Ok(echo) => {
                assert_eq!(echo, n);
                None
            }
            Err(e) => Some(e.downcast_ref::<InjectedFault>().unwrap().injected().kind),
        });
    }
    seen
}

#[tokio::test(flavor = "current_thread")]
async fn a_disabled_chaos_does_nothing_and_counts_nothing() {
    let chaos = Chaos::builder().failure_rate(1.0).build().unwrap();
    assert!(!chaos.is_enabled());
    assert_eq!(run(&chaos, 100).await, vec![None; 100]);
    assert_eq!(chaos.calls(), 0);

    chaos.set_enabled(true);
    assert_eq!(run(&chaos, 3).await, vec![Some(FaultKind::Failed); 3]);
    assert_eq!(chaos.calls(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rates_are_within_a_percent_of_the_settings() {
    let chaos = Chaos::builder()
        .seed(7)
        .failure_rate(0.3)
        .response_loss_rate(0.1)
        .latency_rate(0.2)
        .latency(Duration::from_millis(10))
        .enabled(true)
        .build()
        .unwrap();
    let n = 100_000;
    let reached = Arc::new(AtomicU64::new(0));
    let mut service = chaos.layer(chaos::fault::error()).layer(counting(&reached));
    let (mut failed, mut lost, mut delayed) = (0u64, 0u64, 0u64);
    for call in 0..n {
        let start = tokio::time::Instant::now();
        match service.ready().await.unwrap().call(call).await {
            Ok(_) => {}
            Err(e) => match e.downcast_ref::<InjectedFault>().unwrap().injected().kind {
                FaultKind::Failed => failed += 1,
                FaultKind::ResponseLost => lost += 1,
                other => panic!("{other:?}"),
            },
        }
        match start.elapsed() {
            Duration::ZERO => {}
            d if d == Duration::from_millis(10) => delayed += 1,
            d => panic!("latency {d:?}"),
        }
    }
    let share = |k: u64| k as f64 / n as f64;
    assert!((share(failed) - 0.3).abs() < 0.01, "failed {failed}");
    assert!((share(lost) - 0.1).abs() < 0.01, "lost {lost}");
    assert!((share(delayed) - 0.2).abs() < 0.01, "delayed {delayed}");
    // A lost response reached the inner service; a failed call did not.
    assert_eq!(reached.load(Ordering::Relaxed), n - failed);
    assert_eq!(chaos.calls(), n);
}

#[tokio::test(flavor = "current_thread")]
async fn the_same_seed_replays_the_same_faults_across_clones_and_layers() {
    let settings = Chaos::builder()
        .seed(2026)
        .failure_rate(0.2)
        .response_loss_rate(0.2)
        .enabled(true);
    let first = run(&settings.build().unwrap(), 1_000).await;

    // Another Chaos with the same seed, its calls spread over two layers of clones.
    let again = settings.build().unwrap();
    let (half_a, half_b) = (again.clone(), again.clone());
    let mut replay = run(&half_a, 500).await;
    replay.extend(run(&half_b, 500).await);
    assert_eq!(first, replay);
    assert_eq!(again.calls(), 1_000);

    // The plan says the same without calling anything.
    let planned: Vec<Option<FaultKind>> = (0..1_000).map(|n| again.plan(n).fault()).collect();
    assert_eq!(first, planned);

    // Restarted, it replays from call 0; another seed gives other faults.
    again.restart();
    assert_eq!(run(&again, 1_000).await, first);
    let other = settings.seed(2027).build().unwrap();
    assert_ne!(run(&other, 1_000).await, first);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn latency_is_drawn_within_the_range_before_the_call() {
    let (min, max) = (Duration::from_millis(100), Duration::from_millis(300));
    let chaos = Chaos::builder()
        .seed(3)
        .latency_rate(1.0)
        .latency(min..=max)
        .enabled(true)
        .build()
        .unwrap();
    let reached = Arc::new(AtomicU64::new(0));
    let mut service = chaos.layer(chaos::fault::error()).layer(counting(&reached));
    let mut shortest = Duration::MAX;
    let mut longest = Duration::ZERO;
    for call in 0..2_000u64 {
        let start = tokio::time::Instant::now();
        let future = service.ready().await.unwrap().call(call);
        // Nothing reaches the inner service's body before the latency is waited.
        assert_eq!(reached.load(Ordering::Relaxed), call);
        future.await.unwrap();
        let took = start.elapsed();
        // tokio's timer counts whole milliseconds, rounding up.
        let planned = chaos.plan(call).latency().unwrap();
        assert!(
            took >= planned && took < planned + Duration::from_millis(1),
            "{took:?}"
        );
        shortest = shortest.min(took);
        longest = longest.max(took);
    }
    assert!(
        shortest >= min && shortest < min + Duration::from_millis(5),
        "{shortest:?}"
    );
    assert!(
        longest <= max && longest > max - Duration::from_millis(5),
        "{longest:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_status_fault_answers_for_an_http_service_and_a_breaker_counts_it() {
    let chaos = Chaos::builder()
        .failure_rate(1.0)
        .enabled(true)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::builder("chaos-pg")
        .count_window(10)
        .minimum_calls(10)
        .build()
        .unwrap();
    let reached = Arc::new(AtomicU64::new(0));
    let counter = reached.clone();
    let mut client = tower::ServiceBuilder::new()
        .layer(breaker.layer())
        .layer(chaos.layer(chaos::fault::status(StatusCode::INTERNAL_SERVER_ERROR)))
        .service(service_fn(move |_: Request<()>| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, BoxError>(Response::new(String::from("charged"))) }
        }));
    for n in 0..10 {
        let response = client
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.extensions().get::<Injected>(),
            Some(&Injected {
                call: n,
                kind: FaultKind::Failed
            })
        );
        assert!(response.body().is_empty());
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let rejected = client
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap_err();
    assert!(rejected.is::<CircuitOpen>());
    assert_eq!(reached.load(Ordering::Relaxed), 0);
    assert_eq!(chaos.calls(), 10);
}

#[tokio::test(flavor = "current_thread")]
async fn a_reconfiguration_reaches_the_layers_in_use() {
    let chaos = Chaos::builder().enabled(true).build().unwrap();
    let reached = Arc::new(AtomicU64::new(0));
    let mut service = chaos.layer(chaos::fault::error()).layer(counting(&reached));
    assert!(service.ready().await.unwrap().call(1).await.is_ok());

    chaos
        .reconfigure(&chaos.settings().response_loss_rate(1.0))
        .unwrap();
    let error = service.ready().await.unwrap().call(2).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "fault injected by the chaos layer: call 1, response lost"
    );
    assert_eq!(reached.load(Ordering::Relaxed), 2);

    // A refused reconfiguration changes nothing.
    assert!(
        chaos
            .reconfigure(&chaos.settings().failure_rate(0.5))
            .is_err()
    );
    assert_eq!(
        chaos.settings(),
        Chaos::builder().response_loss_rate(1.0).enabled(true)
    );
}

#[test]
fn bad_settings_are_refused_with_the_setting_the_value_and_what_is_allowed() {
    let refused = |builder: chaos::ChaosBuilder| builder.build().unwrap_err().to_string();
    assert_eq!(
        refused(Chaos::builder().failure_rate(f64::NAN)),
        "chaos setting `failure_rate`: NaN is not allowed: it must be a fraction from 0 to 1 \
         (0.3 is 30%)"
    );
    assert_eq!(
        refused(Chaos::builder().latency_rate(1.5)),
        "chaos setting `latency_rate`: 1.5 is not allowed: it must be a fraction from 0 to 1 \
         (0.3 is 30%)"
    );
    assert_eq!(
        refused(Chaos::builder().response_loss_rate(-0.1)),
        "chaos setting `response_loss_rate`: -0.1 is not allowed: it must be a fraction from 0 \
         to 1 (0.3 is 30%)"
    );
    assert_eq!(
        refused(Chaos::builder().latency(Duration::from_secs(2)..=Duration::from_secs(1))),
        "chaos setting `latency`: 2s..=1s is not allowed: it must be a range whose minimum is \
         at most its maximum"
    );
    assert_eq!(
        refused(Chaos::builder().latency(Duration::from_secs(3601))),
        "chaos setting `latency`: 3601s is not allowed: it must be at most 3600s"
    );
    // The edges are allowed.
    Chaos::builder()
        .failure_rate(0.5)
        .response_loss_rate(0.5)
        .build()
        .unwrap();
    Chaos::builder()
        .latency(Duration::from_secs(3600))
        .build()
        .unwrap();
}
