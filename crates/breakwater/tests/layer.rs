//! The breaker as a tower layer: the seed's payment scenario, admission in `poll_ready`,
//! cancellation, fail-fast and backpressure modes, stale outcomes, timeouts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use breakwater::classify::Outcome;
use breakwater::classify::http::HttpClassifier;
use breakwater::{BoxError, CircuitBreaker, CircuitOpen, CircuitState};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

/// A payment gateway whose answers can be switched: a status, and how long it takes.
#[derive(Clone, Default)]
struct Gateway {
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<AtomicUsize>,
    readies: Arc<AtomicUsize>,
}

impl Gateway {
    fn answering(status: u16) -> Self {
        let g = Self::default();
        g.set(status);
        g
    }
    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Service<Request<()>> for Gateway {
    type Response = Response<()>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<()>, io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.readies.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let status = self.status.load(Ordering::SeqCst);
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst));
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(Response::builder().status(status).body(()).unwrap())
        })
    }
}

/// The first seed's configuration for the `beeceptor-payment` instance.
fn seed_breaker() -> CircuitBreaker {
    CircuitBreaker::builder("beeceptor-payment")
        .count_window(10)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .slow_call_duration_threshold(Duration::from_secs(5))
        .slow_call_rate_threshold(50.0)
        .wait_duration_in_open(Duration::from_secs(30))
        .permitted_calls_in_half_open(5)
        .build()
        .unwrap()
}

async fn confirm<S>(client: &mut S) -> Result<Response<()>, BoxError>
where
    S: Service<Request<()>, Response = Response<()>, Error = BoxError>,
{
    client.ready().await?.call(Request::new(())).await
}

#[tokio::test(start_paused = true)]
async fn ten_server_errors_open_the_breaker_and_the_eleventh_call_never_reaches_the_gateway() {
    let breaker = seed_breaker();
    let gateway = Gateway::answering(500);
    let mut client = ServiceBuilder::new()
        .layer(breaker.layer())
        .service(gateway.clone());

    for n in 1..=10 {
        assert_eq!(breaker.state(), CircuitState::Closed, "before call {n}");
        let response = confirm(&mut client).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(gateway.hits(), 10);

    let error = confirm(&mut client).await.unwrap_err();
    let open = error.downcast_ref::<CircuitOpen>().expect("a CircuitOpen");
    assert_eq!(open.breaker(), "beeceptor-payment");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(
        error.to_string(),
        "circuit breaker `beeceptor-payment` is open; retry after 30s"
    );
    assert_eq!(gateway.hits(), 10, "the 11th call reached the gateway");
    let m = breaker.metrics();
    assert_eq!(
        (m.failure_rate, m.failed_calls, m.not_permitted_calls),
        (Some(100.0), 10, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn client_errors_never_open_the_breaker() {
    let breaker = seed_breaker();
    let gateway = Gateway::default();
    let mut client = breaker.layer().layer(gateway.clone());
    for n in 0..1_000u16 {
        // Insufficient balance, unknown card, duplicate order...
        gateway.set(400 + n % 100);
        confirm(&mut client).await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().buffered_calls, 0);
    // Nine server errors among any number of rejections stay below the minimum of ten calls.
    for n in 0..9 {
        gateway.set(503);
        confirm(&mut client).await.unwrap();
        gateway.set(402 + n);
        confirm(&mut client).await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().buffered_calls, 9);
    gateway.set(502);
    confirm(&mut client).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(gateway.hits(), 1_000 + 18 + 1);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_recovers_through_half_open_probes() {
    let breaker = seed_breaker();
    let gateway = Gateway::answering(500);
    let mut client = breaker.layer().layer(gateway.clone());
    for _ in 0..10 {
        confirm(&mut client).await.unwrap();
    }
    gateway.set(200);
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(confirm(&mut client).await.unwrap_err().is::<CircuitOpen>());
    tokio::time::advance(Duration::from_secs(1)).await;
    for n in 1..=5 {
        assert_eq!(confirm(&mut client).await.unwrap().status(), 200);
        let expected = if n < 5 {
            CircuitState::HalfOpen
        } else {
            CircuitState::Closed
        };
        assert_eq!(breaker.state(), expected, "after probe {n}");
    }
    assert_eq!(gateway.hits(), 15);
}

#[tokio::test(start_paused = true)]
async fn slow_responses_open_the_breaker() {
    let breaker = seed_breaker();
    let gateway = Gateway::answering(200);
    gateway.delay_ms.store(5_001, Ordering::SeqCst);
    let mut client = breaker.layer().layer(gateway.clone());
    for _ in 0..5 {
        confirm(&mut client).await.unwrap();
    }
    gateway.delay_ms.store(5_000, Ordering::SeqCst);
    for _ in 0..4 {
        confirm(&mut client).await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    gateway.delay_ms.store(10, Ordering::SeqCst);
    confirm(&mut client).await.unwrap();
    // 5 of 10 took longer than 5 s.
    assert_eq!(breaker.state(), CircuitState::Open);
    let m = breaker.metrics();
    assert_eq!(
        (m.slow_calls, m.slow_call_rate, m.failure_rate),
        (5, Some(50.0), Some(0.0))
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_count_as_failures_even_through_a_buffer() {
    let breaker = CircuitBreaker::builder("pg")
        .count_window(4)
        .minimum_calls(4)
        .build()
        .unwrap();
    let gateway = Gateway::answering(200);
    gateway.delay_ms.store(10_000, Ordering::SeqCst);
    // Other errors are ignored here, so only a timeout found in the source chain can count.
    let classifier = HttpClassifier::new().on_error(Outcome::Ignored);
    let mut client = ServiceBuilder::new()
        .layer(breaker.layer_with(classifier))
        .buffer(8)
        .timeout(Duration::from_secs(3))
        .service(gateway.clone());
    for _ in 0..4 {
        let error = confirm(&mut client).await.unwrap_err();
        assert!(breakwater::classify::is_timeout(&*error), "{error:?}");
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.metrics().failed_calls, 4);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_boxed_and_count_as_failures() {
    let breaker = CircuitBreaker::builder("db")
        .count_window(2)
        .build()
        .unwrap();
    let mut client = breaker
        .layer()
        .layer(tower::service_fn(|_: Request<()>| async {
            Err::<Response<()>, _>(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"))
        }));
    let error = confirm(&mut client).await.unwrap_err();
    let io = error.downcast_ref::<io::Error>().expect("the inner error");
    assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(breaker.metrics().failed_calls, 1);
}

/// A service that counts `poll_ready` and is ready only while `ready` is set.
#[derive(Clone, Default)]
struct Probe {
    readies: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Service<u32> for Probe {
    type Response = u32;
    type Error = io::Error;
    type Future = std::future::Ready<Result<u32, io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.readies.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n == 0 {
            Err(io::Error::other("zero"))
        } else {
            Ok(n)
        })
    }
}

fn probe_breaker(permits: u32) -> CircuitBreaker {
    CircuitBreaker::builder("probe")
        .count_window(10)
        .permitted_calls_in_half_open(permits)
        .wait_duration_in_open(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn layered(
    breaker: &CircuitBreaker,
    probe: &Probe,
) -> breakwater::CircuitBreakerService<Probe, breakwater::classify::FailOnError> {
    breaker
        .layer_with(breakwater::classify::FailOnError)
        .layer(probe.clone())
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_fails_fast_without_polling_the_service() {
    let breaker = probe_breaker(1);
    let probe = Probe::default();
    let mut svc = layered(&breaker, &probe);
    breaker.transition_to(CircuitState::Open);
    for _ in 0..3 {
        let error = svc.ready().await.unwrap().call(7).await.unwrap_err();
        assert!(error.is::<CircuitOpen>());
    }
    assert_eq!(probe.readies.load(Ordering::SeqCst), 0);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
    assert_eq!(breaker.metrics().not_permitted_calls, 3);
}

#[tokio::test(start_paused = true)]
async fn the_admission_is_held_from_poll_ready_to_call() {
    let breaker = probe_breaker(1);
    let probe = Probe::default();
    breaker.transition_to(CircuitState::Open);
    breaker.transition_to(CircuitState::HalfOpen);
    let mut holder = layered(&breaker, &probe);
    holder.ready().await.unwrap();
    // The only probe permit is held by `holder`: a clone does not copy it.
    let mut clone = holder.clone();
    let error = clone.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(
        error.downcast_ref::<CircuitOpen>().map(CircuitOpen::state),
        Some(CircuitState::HalfOpen)
    );
    // Polling again does not take a second permit.
    holder.ready().await.unwrap();
    holder.ready().await.unwrap();
    assert_eq!(holder.call(1).await.unwrap(), 1);
    // The single probe succeeded: closed.
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_ready_service_or_a_pending_future_gives_the_permit_back() {
    let breaker = probe_breaker(1);
    breaker.transition_to(CircuitState::Open);
    breaker.transition_to(CircuitState::HalfOpen);
    let gateway = Gateway::answering(200);
    gateway.delay_ms.store(1_000, Ordering::SeqCst);
    let mut first = breaker.layer().layer(gateway.clone());
    first.ready().await.unwrap();
    drop(first);
    let mut second = breaker.layer().layer(gateway.clone());
    let future = second.ready().await.unwrap().call(Request::new(()));
    let mut third = breaker.layer().layer(gateway.clone());
    assert!(confirm(&mut third).await.unwrap_err().is::<CircuitOpen>());
    drop(future);
    assert_eq!(confirm(&mut third).await.unwrap().status(), 200);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_outcome_from_an_earlier_state_is_discarded() {
    let breaker = CircuitBreaker::builder("pg")
        .count_window(2)
        .minimum_calls(2)
        .permitted_calls_in_half_open(2)
        .wait_duration_in_open(Duration::from_secs(10))
        .build()
        .unwrap();
    let slow = Gateway::answering(500);
    slow.delay_ms.store(60_000, Ordering::SeqCst);
    let mut slow_client = breaker.layer().layer(slow.clone());
    // Admitted while closed; answers 500 a minute later.
    let late = tokio::spawn(async move { confirm(&mut slow_client).await });
    tokio::task::yield_now().await;
    let failing = Gateway::answering(500);
    let mut client = breaker.layer().layer(failing.clone());
    confirm(&mut client).await.unwrap();
    confirm(&mut client).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Half-open: one probe succeeds.
    failing.set(200);
    confirm(&mut client).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    // The slow call admitted while closed now fails: it must not sway the half-open test.
    late.await.unwrap().unwrap();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.metrics().buffered_calls, 1);
    confirm(&mut client).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn backpressure_waits_for_the_end_of_the_open_state_and_never_errors() {
    let breaker = probe_breaker(1);
    let probe = Probe::default();
    let mut svc = breaker
        .layer_with(breakwater::classify::FailOnError)
        .backpressure()
        .layer(probe.clone());
    breaker.transition_to(CircuitState::Open);
    let start = tokio::time::Instant::now();
    let waiter = tokio::spawn(async move {
        svc.ready().await.unwrap();
        let at = tokio::time::Instant::now();
        (svc.call(5).await.unwrap(), at)
    });
    tokio::time::sleep(Duration::from_millis(9_999)).await;
    assert!(!waiter.is_finished());
    assert_eq!(probe.readies.load(Ordering::SeqCst), 0);
    let (answer, ready_at) = waiter.await.unwrap();
    assert_eq!(answer, 5);
    assert_eq!(ready_at - start, Duration::from_secs(10));
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().not_permitted_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn backpressure_wakes_on_reset_and_on_a_returned_permit() {
    let breaker = probe_breaker(1);
    let probe = Probe::default();
    let layer = breaker
        .layer_with(breakwater::classify::FailOnError)
        .backpressure();
    breaker.force_open();
    let mut svc = layer.layer(probe.clone());
    let waiter = tokio::spawn(async move { svc.ready().await.map(drop) });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished());
    breaker.reset();
    waiter.await.unwrap().unwrap();

    // Half-open, its one permit held: a second service waits until the permit comes back.
    breaker.transition_to(CircuitState::HalfOpen);
    let mut holder = layer.layer(probe.clone());
    holder.ready().await.unwrap();
    let mut svc = layer.layer(probe.clone());
    let waiter = tokio::spawn(async move { svc.ready().await.map(drop) });
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    assert!(!waiter.is_finished());
    drop(holder);
    waiter.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_service_made_ready_before_the_breaker_opened_does_not_call_through() {
    let breaker = probe_breaker(1);
    let probe = Probe::default();
    let mut svc = layered(&breaker, &probe);
    svc.ready().await.unwrap();
    // The breaker opens between `poll_ready` and `call`.
    breaker.force_open();
    let error = svc.call(7).await.unwrap_err();
    assert_eq!(
        error.downcast_ref::<CircuitOpen>().map(CircuitOpen::state),
        Some(CircuitState::ForcedOpen)
    );
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
    // Ready again while forced open: decided again, rejected, the service left alone.
    let readies = probe.readies.load(Ordering::SeqCst);
    assert!(svc.ready().await.unwrap().call(7).await.is_err());
    assert_eq!(probe.readies.load(Ordering::SeqCst), readies);
    breaker.reset();
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
}

#[test]
fn services_are_clone_and_their_futures_send() {
    fn send<T: Send>(_: &T) {}
    fn clone<T: Clone>(_: &T) {}
    fn sync<T: Sync>(_: &T) {}
    let breaker = probe_breaker(1);
    let mut svc = breaker.layer().layer(Gateway::default());
    clone(&svc);
    send(&svc);
    sync(&breaker.layer());
    send(&svc.call(Request::new(())));
}
