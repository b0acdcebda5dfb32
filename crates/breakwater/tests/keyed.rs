//! Keyed breakers: one per downstream, isolated from each other, bounded in number, evicted
//! when idle or when room is needed, recycled without leaking state between keys.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use breakwater::circuit_breaker::KeyedCircuitBreakerLayer;
use breakwater::clock::ManualClock;
use breakwater::{BoxError, CircuitBreaker, CircuitOpen, CircuitState};
use http::{Request, Response};
use support::send;
use tower::{Layer, Service};

/// Downstreams on loopback, by port: each answers its status, and counts its calls.
#[derive(Clone, Default)]
struct Hosts {
    status: Arc<Mutex<HashMap<u16, u16>>>,
    hits: Arc<Mutex<HashMap<u16, u32>>>,
}

impl Hosts {
    fn set(&self, port: u16, status: u16) {
        self.status.lock().unwrap().insert(port, status);
    }
    fn hits(&self, port: u16) -> u32 {
        self.hits.lock().unwrap().get(&port).copied().unwrap_or(0)
    }
}

impl Service<Request<()>> for Hosts {
    type Response = Response<()>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Response<()>, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let port = request.uri().port_u16().unwrap_or(80);
        *self.hits.lock().unwrap().entry(port).or_default() += 1;
        let status = self
            .status
            .lock()
            .unwrap()
            .get(&port)
            .copied()
            .unwrap_or(200);
        std::future::ready(Ok(Response::builder().status(status).body(()).unwrap()))
    }
}

fn get(port: u16) -> Request<()> {
    Request::get(format!("http://127.0.0.1:{port}/hook"))
        .body(())
        .unwrap()
}

fn layer(clock: &ManualClock, max_keys: usize) -> KeyedCircuitBreakerLayer {
    CircuitBreaker::builder("webhooks")
        .count_window(3)
        .minimum_calls(3)
        .wait_duration_in_open(Duration::from_secs(60))
        .clock(clock.clone())
        .keyed()
        .max_keys(max_keys)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn status<S>(svc: &mut S, port: u16) -> Result<u16, BoxError>
where
    S: Service<Request<()>, Response = Response<()>, Error = BoxError>,
{
    Ok(send(svc, get(port)).await?.status().as_u16())
}

#[tokio::test]
async fn a_failing_host_is_cut_off_and_the_others_are_not() {
    let clock = ManualClock::new();
    let hosts = Hosts::default();
    hosts.set(8001, 503);
    let layer = layer(&clock, 16);
    let mut svc = layer.layer(hosts.clone());
    for _ in 0..3 {
        assert_eq!(status(&mut svc, 8001).await.unwrap(), 503);
        assert_eq!(status(&mut svc, 8002).await.unwrap(), 200);
    }
    let error = status(&mut svc, 8001).await.unwrap_err();
    let open = error.downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(open.key(), Some("http://127.0.0.1:8001"));
    assert_eq!(open.breaker(), "webhooks");
    assert_eq!(
        open.to_string(),
        "circuit breaker `webhooks` for `http://127.0.0.1:8001` is open; retry after 60s"
    );
    assert_eq!(hosts.hits(8001), 3, "the rejected call never reached it");
    for _ in 0..10 {
        assert_eq!(status(&mut svc, 8002).await.unwrap(), 200);
    }
    assert_eq!(
        layer.metrics("http://127.0.0.1:8001").unwrap().state,
        CircuitState::Open
    );
    assert_eq!(
        layer.metrics("http://127.0.0.1:8002").unwrap().state,
        CircuitState::Closed
    );
    // Another service from the layer shares the breakers.
    let mut other = layer.layer(hosts.clone());
    assert!(status(&mut other, 8001).await.is_err());
    // Once the wait is over, the host is probed again.
    clock.advance(Duration::from_secs(60));
    hosts.set(8001, 200);
    assert_eq!(status(&mut svc, 8001).await.unwrap(), 200);
}

#[tokio::test]
async fn a_flood_of_hosts_stays_within_the_bound() {
    let clock = ManualClock::new();
    let layer = layer(&clock, 4);
    let mut svc = layer.layer(Hosts::default());
    for port in 9000..9200 {
        status(&mut svc, port).await.unwrap();
        assert!(layer.len() <= 4);
    }
    assert_eq!(layer.len(), 4);
    assert_eq!(
        layer.breakers_made(),
        4,
        "evicted breakers are recycled, not leaked"
    );
    assert!(layer.keys().contains(&"http://127.0.0.1:9199".to_owned()));
}

#[tokio::test]
async fn room_is_made_by_evicting_a_closed_breaker_before_an_open_one() {
    let clock = ManualClock::new();
    let hosts = Hosts::default();
    hosts.set(8001, 500);
    let layer = layer(&clock, 2);
    let mut svc = layer.layer(hosts.clone());
    for _ in 0..3 {
        status(&mut svc, 8001).await.unwrap();
    }
    // 8002 is used after 8001: 8001 is the least recently used, but open.
    status(&mut svc, 8002).await.unwrap();
    status(&mut svc, 8003).await.unwrap();
    assert_eq!(
        layer.keys(),
        ["http://127.0.0.1:8001", "http://127.0.0.1:8003"]
    );
    assert_eq!(
        layer.metrics("http://127.0.0.1:8001").unwrap().state,
        CircuitState::Open,
        "still cut off"
    );

    // Every breaker open: the least recently used goes all the same (8003 has one success
    // in its window: two failures open it).
    hosts.set(8003, 500);
    for _ in 0..2 {
        status(&mut svc, 8003).await.unwrap();
    }
    assert_eq!(
        layer.metrics("http://127.0.0.1:8003").unwrap().state,
        CircuitState::Open
    );
    status(&mut svc, 8004).await.unwrap();
    assert_eq!(
        layer.keys(),
        ["http://127.0.0.1:8003", "http://127.0.0.1:8004"]
    );
    // 8001 comes back with a fresh breaker: its failures are forgotten.
    assert_eq!(status(&mut svc, 8001).await.unwrap(), 500);
    assert_eq!(hosts.hits(8001), 4);
    assert_eq!(
        layer
            .metrics("http://127.0.0.1:8001")
            .unwrap()
            .buffered_calls,
        1
    );
}

#[tokio::test]
async fn idle_keys_are_evicted_after_the_idle_timeout() {
    let clock = ManualClock::new();
    let layer = layer(&clock, 16);
    let mut svc = layer.layer(Hosts::default());
    status(&mut svc, 8001).await.unwrap();
    status(&mut svc, 8002).await.unwrap();
    // Sweeps come with new keys, every half idle timeout (5 s).
    for (second, port) in [(5, 8003), (10, 8004)] {
        clock.advance(Duration::from_secs(5));
        status(&mut svc, 8002).await.unwrap();
        status(&mut svc, port).await.unwrap();
        assert!(
            layer.keys().contains(&"http://127.0.0.1:8001".to_owned()),
            "at {second} s"
        );
    }
    clock.advance(Duration::from_secs(5));
    status(&mut svc, 8005).await.unwrap();
    // 8001: unused for 15 s. 8002: used 5 s ago. 8003: used 10 s ago.
    assert_eq!(
        layer.keys(),
        [
            "http://127.0.0.1:8002",
            "http://127.0.0.1:8003",
            "http://127.0.0.1:8004",
            "http://127.0.0.1:8005"
        ]
    );
}

/// A downstream whose answers the test releases one by one.
#[derive(Clone, Default)]
struct Held {
    waiting: Arc<Mutex<Vec<tokio::sync::oneshot::Sender<u16>>>>,
}

impl Service<Request<()>> for Held {
    type Response = Response<()>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<()>, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.lock().unwrap().push(tx);
        Box::pin(async move {
            let status = rx.await.map_err(std::io::Error::other)?;
            Ok(Response::builder().status(status).body(()).unwrap())
        })
    }
}

#[tokio::test]
async fn a_call_in_flight_for_an_evicted_key_does_not_reach_the_next_key() {
    let clock = ManualClock::new();
    let held = Held::default();
    let layer = layer(&clock, 1);
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        in_flight.push(tokio::spawn(tower::ServiceExt::oneshot(
            layer.layer(held.clone()),
            get(8001),
        )));
    }
    while held.waiting.lock().unwrap().len() < 3 {
        tokio::task::yield_now().await;
    }
    // 8002 takes the only slot: 8001's breaker is recycled for it.
    let fresh = tokio::spawn(tower::ServiceExt::oneshot(
        layer.layer(held.clone()),
        get(8002),
    ));
    while held.waiting.lock().unwrap().len() < 4 {
        tokio::task::yield_now().await;
    }
    assert_eq!(layer.keys(), ["http://127.0.0.1:8002"]);
    // 8001's three calls fail now: had they been counted, 8002's breaker would open.
    let senders: Vec<_> = held.waiting.lock().unwrap().drain(..).collect();
    let mut senders = senders.into_iter();
    for tx in senders.by_ref().take(3) {
        tx.send(500).unwrap();
    }
    for call in in_flight {
        assert_eq!(call.await.unwrap().unwrap().status(), 500);
    }
    senders.next().unwrap().send(200).unwrap();
    assert_eq!(fresh.await.unwrap().unwrap().status(), 200);
    let m = layer.metrics("http://127.0.0.1:8002").unwrap();
    assert_eq!(
        (m.state, m.buffered_calls, m.failed_calls),
        (CircuitState::Closed, 1, 0)
    );
}

#[test]
fn racing_callers_over_many_hosts_keep_the_bound() {
    let clock = ManualClock::new();
    let layer = layer(&clock, 8);
    let threads: Vec<_> = (0..2u16)
        .map(|t| {
            let layer = layer.clone();
            let clock = clock.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let hosts = Hosts::default();
                for port in 8000..8050 {
                    if port % 3 == 0 {
                        hosts.set(port, 500);
                    }
                }
                let mut svc = layer.layer(hosts);
                runtime.block_on(async {
                    for i in 0..5_000u16 {
                        let port = 8000 + (i * 7 + t * 13) % 50;
                        let _ = status(&mut svc, port).await;
                        if i % 1_000 == 0 {
                            clock.advance(Duration::from_secs(1));
                        }
                    }
                });
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(layer.len() <= 8);
    assert!(layer.breakers_made() <= 8, "{}", layer.breakers_made());
}

#[test]
fn bad_bounds_are_refused_with_the_setting_named() {
    let error = CircuitBreaker::builder("webhooks")
        .keyed()
        .idle_timeout(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "circuit breaker `webhooks`: idle_timeout is 10ms, but it must be a duration of at \
         least 1 s and at most 365 days"
    );
    let error = CircuitBreaker::builder("webhooks")
        .count_window(0)
        .keyed()
        .build()
        .unwrap_err();
    assert_eq!(error.setting(), "count_window");
}
