//! What is built and dropped gives its memory back: breakers, reconfigured generations,
//! classifiers with rules of their own and registry reloads leave the live heap where it was.
//!
//! `allocation-counter` replaces the global allocator of this test binary only and counts the
//! current thread's allocations; `bytes_current` is what was allocated and not freed while the
//! closure ran. No metrics recorder is installed. Freed breakers' slots (state word and window)
//! wait in a pool for the next breaker of their window shape; the first breaker of each shape
//! is made before measuring, so the pool is warm and the figures are the steady state.

use std::convert::Infallible;
use std::future::Future;

use allocation_counter::AllocationInfo;
use breakwater::CircuitBreaker;
#[cfg(feature = "yaml")]
use breakwater::Registry;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};

const MIB: i64 = 1 << 20;

fn ok() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

/// One call through `svc`, driven to its end on this thread.
fn call<S: Service<Request<()>>>(svc: &mut S) -> Result<S::Response, S::Error> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut ready = svc.ready();
    let std::task::Poll::Ready(Ok(svc)) = std::pin::pin!(&mut ready).poll(&mut cx) else {
        panic!("the service is always ready");
    };
    let mut future = std::pin::pin!(svc.call(Request::new(())));
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => panic!("the service answers at once"),
    }
}

#[track_caller]
fn assert_given_back(what: &str, info: &AllocationInfo, at_least: u64) {
    assert!(
        info.bytes_total >= at_least,
        "{what}: allocated only {} bytes in all, so the test proves nothing",
        info.bytes_total
    );
    assert!(
        info.bytes_current.abs() < MIB,
        "{what}: {} bytes still live of {} allocated",
        info.bytes_current,
        info.bytes_total
    );
}

fn breaker(name: String) -> CircuitBreaker {
    CircuitBreaker::builder(name)
        .count_window(100)
        .minimum_calls(10)
        .build()
        .unwrap()
}

#[test]
fn building_and_dropping_100_000_breakers_gives_their_memory_back() {
    drop(breaker("warm".into()));
    let info = allocation_counter::measure(|| {
        for i in 0..100_000 {
            let breaker = breaker(format!("tenant-{i}"));
            let stream = breaker.event_stream();
            breaker.on_state_transition(|_| {});
            let mut svc = breaker.layer().layer(ok());
            call(&mut svc).unwrap();
            drop((breaker, svc, stream));
        }
    });
    // A breaker with a window of 100 calls takes more than 3 KiB.
    assert_given_back("100,000 breakers", &info, 100_000 * 3_000);
}

#[test]
fn classifiers_with_rules_of_their_own_give_their_tables_back() {
    use breakwater::classify::{Outcome, http::HttpClassifier};
    let rules = |i: u16| {
        HttpClassifier::new()
            .failure(400 + i % 100)
            .on_error(Outcome::FailureFor(std::time::Duration::from_millis(
                u64::from(i),
            )))
    };
    drop(rules(0));
    let info = allocation_counter::measure(|| {
        for i in 0..100_000u32 {
            let breaker = breaker(format!("rules-{i}"));
            let classifier = rules((i % 60_000) as u16);
            let mut svc = breaker.layer_with(classifier).layer(ok());
            call(&mut svc).unwrap();
            drop((breaker, svc));
        }
    });
    // Each set of rules takes a table from a pool, which gives it back: the pool holds as many
    // tables as were in use at once (one here), not one per set of rules.
    assert_given_back("100,000 classifiers", &info, 100_000 * 500);
}

#[test]
fn breakers_of_every_window_size_share_a_few_pooled_slots() {
    let info = allocation_counter::measure(|| {
        for size in 1..=3_000 {
            let count = CircuitBreaker::builder("count")
                .count_window(size)
                .build()
                .unwrap();
            let seconds = std::time::Duration::from_secs(u64::from(size % 3_600 + 1));
            let time = CircuitBreaker::builder("time")
                .time_window(seconds)
                .build()
                .unwrap();
            drop((count, time));
        }
    });
    // The pool keeps one slot per ring length (a power of two), not one per window size: one
    // per size would keep about 90 MB here.
    assert_given_back("3,000 window sizes", &info, 3_000 * 1_000);
}

#[test]
fn reconfiguring_one_breaker_100_000_times_gives_every_old_generation_back() {
    let breaker = breaker("pg".into());
    let mut svc = breaker.layer().layer(ok());
    // Warm the pool with both shapes used below.
    breaker.reconfigure(|b| b.count_window(50)).unwrap();
    breaker.reconfigure(|b| b.count_window(100)).unwrap();
    call(&mut svc).unwrap();
    let info = allocation_counter::measure(|| {
        for i in 0..100_000 {
            let size = if i % 2 == 0 { 50 } else { 100 };
            breaker.reconfigure(|b| b.count_window(size)).unwrap();
            // The service follows the new generation; the one it held is freed.
            call(&mut svc).unwrap();
        }
    });
    assert_eq!(breaker.metrics().buffered_calls, 1);
    assert_given_back("100,000 reconfigurations", &info, 100_000 * 500);
}

#[test]
fn a_service_never_called_holds_its_own_generation_and_the_latest_only() {
    let breaker = breaker("template".into());
    // A router's route: made once, never called, cloned per request.
    let template = breaker.layer().layer(ok());
    breaker.reconfigure(|b| b.count_window(50)).unwrap();
    breaker.reconfigure(|b| b.count_window(100)).unwrap();
    let info = allocation_counter::measure(|| {
        for i in 0..100_000 {
            let size = if i % 2 == 0 { 50 } else { 100 };
            breaker.reconfigure(|b| b.count_window(size)).unwrap();
        }
    });
    let mut clone = template.clone();
    call(&mut clone).unwrap();
    assert_eq!(breaker.metrics().buffered_calls, 1);
    assert_given_back(
        "100,000 reconfigurations behind a template",
        &info,
        100_000 * 500,
    );
}

#[cfg(feature = "yaml")]
#[test]
fn reloading_a_registry_10_000_times_gives_every_old_generation_back() {
    let file = |size: u32| {
        format!(
            "resilience4j:\n  circuitbreaker:\n    instances:\n      pg:\n        slidingWindowSize: {size}\n        failureRateThreshold: 50\n"
        )
    };
    let registry = Registry::from_yaml(&file(10)).unwrap();
    let mut svc = registry.layer("pg").layer(ok());
    let (ten, twenty) = (
        Registry::from_yaml(&file(10)).unwrap(),
        Registry::from_yaml(&file(20)).unwrap(),
    );
    registry.reload(&twenty);
    registry.reload(&ten);
    call(&mut svc).unwrap();
    let info = allocation_counter::measure(|| {
        for i in 0..10_000 {
            let next = if i % 2 == 0 { &twenty } else { &ten };
            assert_eq!(registry.reload(next), ["pg"]);
            call(&mut svc).unwrap();
        }
    });
    assert_eq!(registry.circuit_breaker("pg").metrics().buffered_calls, 1);
    assert_given_back("10,000 reloads", &info, 10_000 * 1_000);
}
