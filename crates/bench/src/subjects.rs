//! The services measured: a bare one that answers at once, and the same behind breakwater and
//! behind each peer, configured alike where the peer allows it.
//!
//! failsafe and recloser are not tower middleware: they wrap a future. Their rows use the
//! thinnest tower adapter a user would write (`Wrapped` for failsafe, `Reclosed` for
//! recloser): the inner service's readiness, and its future handed to the breaker.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breakwater::CircuitBreaker;
use breakwater::classify::FailOnError;
use recloser::{AsyncRecloser, Recloser};
use tower::{Layer, Service};
use tower_resilience_circuitbreaker::{CircuitBreakerLayer, SlidingWindowType};

use crate::measure::{Entry, Expect, Pair};

/// The error of a failing call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Boom;

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

/// A service that is always ready and answers at once: with its request, or failing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bare {
    fail: bool,
}

pub(crate) const OK: Bare = Bare { fail: false };
const FAILING: Bare = Bare { fail: true };

impl Service<u64> for Bare {
    type Response = u64;
    type Error = Boom;
    type Future = Ready<Result<u64, Boom>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: u64) -> Self::Future {
        ready(if self.fail { Err(Boom) } else { Ok(request) })
    }
}

/// A service that is always ready and answers at the second poll: a call that waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitsOnce;

impl Service<u64> for WaitsOnce {
    type Response = u64;
    type Error = Boom;
    type Future = YieldOnce;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: u64) -> Self::Future {
        YieldOnce {
            request,
            yielded: false,
        }
    }
}

/// Pending at the first poll (waking itself), ready at the second.
#[derive(Debug)]
pub(crate) struct YieldOnce {
    request: u64,
    yielded: bool,
}

impl Future for YieldOnce {
    type Output = Result<u64, Boom>;

    #[inline]
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.yielded {
            return Poll::Ready(Ok(self.request));
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A breaker that wraps futures, made a tower service.
#[derive(Clone)]
pub(crate) struct Wrapped<B> {
    breaker: B,
    inner: Bare,
}

impl<B: failsafe::futures::CircuitBreaker> Service<u64> for Wrapped<B> {
    type Response = u64;
    type Error = failsafe::Error<Boom>;
    type Future = failsafe::futures::ResponseFuture<
        Ready<Result<u64, Boom>>,
        B::FailurePolicy,
        B::Instrument,
        failsafe::Any,
    >;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    #[inline]
    fn call(&mut self, request: u64) -> Self::Future {
        self.breaker.call(self.inner.call(request))
    }
}

/// recloser's adapter: a separate type, as `AsyncRecloser` is not a failsafe breaker.
#[derive(Clone)]
pub(crate) struct Reclosed {
    breaker: AsyncRecloser,
    inner: Bare,
}

impl Service<u64> for Reclosed {
    type Response = u64;
    type Error = recloser::Error<Boom>;
    type Future = recloser::RecloserFuture<Ready<Result<u64, Boom>>, recloser::AnyError>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(recloser::Error::Inner)
    }

    #[inline]
    fn call(&mut self, request: u64) -> Self::Future {
        self.breaker.call(self.inner.call(request))
    }
}

const WINDOW: usize = 100;
const WAIT: Duration = Duration::from_secs(60);
/// Long enough that a tripped breaker stays open through the whole run.
const HOUR: Duration = Duration::from_secs(3600);
const TIME_WINDOW: Duration = Duration::from_secs(60);
const SLOW: Duration = Duration::from_secs(5);

// ---- breakwater ----

fn breakwater(wait: Duration) -> CircuitBreaker {
    // The defaults are resilience4j's: a count window of 100 calls, at least 100 of them, 50%.
    let built = CircuitBreaker::builder("bench")
        .wait_duration_in_open(wait)
        .build();
    built.unwrap_or_else(|e| panic!("breakwater's defaults: {e}"))
}

fn breakwater_time_window() -> CircuitBreaker {
    let built = CircuitBreaker::builder("bench-time")
        .time_window(TIME_WINDOW)
        .slow_call_duration_threshold(SLOW)
        .build();
    built.unwrap_or_else(|e| panic!("breakwater, a time window: {e}"))
}

// ---- tower-resilience-circuitbreaker ----

type TowerResilience = tower_resilience_circuitbreaker::CircuitBreaker<
    Bare,
    tower_resilience_circuitbreaker::DefaultClassifier,
>;

fn tower_resilience(window: SlidingWindowType, wait: Duration) -> CircuitBreakerLayer {
    let builder = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_type(window)
        .sliding_window_size(WINDOW)
        .minimum_number_of_calls(WINDOW)
        .wait_duration_in_open(wait);
    let builder = match window {
        SlidingWindowType::CountBased => builder,
        SlidingWindowType::TimeBased => builder
            .sliding_window_duration(TIME_WINDOW)
            .slow_call_duration_threshold(SLOW),
    };
    // With a handle, every service the layer makes shares one circuit (as a breaker should).
    match builder.build_with_handle() {
        Ok((layer, _handle)) => layer,
        Err(e) => panic!("tower-resilience-circuitbreaker's settings: {e}"),
    }
}

// ---- failsafe ----

fn failsafe_default() -> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync + 'static {
    // Its default policy: a success rate over a 30 s time window, or 5 consecutive failures.
    failsafe::Config::new().build()
}

fn failsafe_tripping() -> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync + 'static {
    let policy =
        failsafe::failure_policy::consecutive_failures(5, failsafe::backoff::constant(HOUR));
    failsafe::Config::new().failure_policy(policy).build()
}

fn failsafe_time_window() -> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync + 'static
{
    let policy = failsafe::failure_policy::success_rate_over_time_window(
        0.5,
        WINDOW as u32,
        TIME_WINDOW,
        failsafe::backoff::constant(WAIT),
    );
    failsafe::Config::new().failure_policy(policy).build()
}

// ---- recloser ----

fn recloser(wait: Duration) -> AsyncRecloser {
    Recloser::custom()
        .error_rate(0.5)
        .closed_len(WINDOW)
        .half_open_len(10)
        .open_wait(wait)
        .build()
        .into()
}

/// Makes failing calls until every one is rejected: the breaker is open.
fn trip<S: Service<u64>>(mut svc: S) {
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..10 * WINDOW as u64 {
        if let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) {
            let future = std::pin::pin!(svc.call(i));
            let _ = Future::poll(future, &mut cx);
        }
    }
}

/// How a one-thread row makes its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// `ready().await`, `.await` on the call, in a task.
    Awaited,
    /// `svc.clone().oneshot(req).await` for each request, in a task (axum style).
    ClonePerRequest,
    /// `poll_ready`, `call`, one poll in place with a no-op waker (the old harness).
    InPlace,
}

impl How {
    fn entry<S>(self, label: &'static str, svc: S, expect: Expect) -> Entry
    where
        S: Service<u64> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
    {
        match self {
            How::Awaited => Entry::new(label, svc, expect),
            How::ClonePerRequest => Entry::cloned(label, svc, expect),
            How::InPlace => Entry::in_place(label, svc, expect),
        }
    }
}

/// Closed, on one thread, each call made `how`. Every subject here is `Clone`, so each has a
/// clone-per-request row.
pub(crate) fn closed(how: How) -> Vec<Entry> {
    vec![
        how.entry("bare service", OK, Expect::Success),
        how.entry(
            "breakwater",
            breakwater(WAIT).layer_with(FailOnError).layer(OK),
            Expect::Success,
        ),
        how.entry(
            "tower-resilience-circuitbreaker",
            tower_resilience(SlidingWindowType::CountBased, WAIT).layer(OK),
            Expect::Success,
        ),
        how.entry(
            "failsafe",
            Wrapped {
                breaker: failsafe_default(),
                inner: OK,
            },
            Expect::Success,
        ),
        how.entry(
            "recloser",
            Reclosed {
                breaker: recloser(WAIT),
                inner: OK,
            },
            Expect::Success,
        ),
    ]
}

/// Closed, two tasks sharing each breaker.
pub(crate) fn closed_pairs() -> Vec<Pair> {
    let tower_resilience: TowerResilience =
        tower_resilience(SlidingWindowType::CountBased, WAIT).layer(OK);
    vec![
        Pair::new("bare service", OK),
        Pair::new(
            "breakwater",
            breakwater(WAIT).layer_with(FailOnError).layer(OK),
        ),
        Pair::new("tower-resilience-circuitbreaker", tower_resilience),
        Pair::new(
            "failsafe",
            Wrapped {
                breaker: failsafe_default(),
                inner: OK,
            },
        ),
        Pair::new(
            "recloser",
            Reclosed {
                breaker: recloser(WAIT),
                inner: OK,
            },
        ),
    ]
}

/// Open: every call rejected. Each breaker is tripped by failing calls first, so it is open
/// the way a failing downstream opens it (the wait, an hour, is checked on every call). The
/// last row, breakwater with the automatic transition, must be built inside a tokio runtime.
pub(crate) fn rejected() -> Vec<Entry> {
    let breakwater = breakwater(HOUR);
    trip(breakwater.layer_with(FailOnError).layer(FAILING));
    let tower_resilience = tower_resilience(SlidingWindowType::CountBased, HOUR);
    trip(tower_resilience.layer(FAILING));
    let failsafe = failsafe_tripping();
    trip(Wrapped {
        breaker: failsafe.clone(),
        inner: FAILING,
    });
    let recloser = recloser(HOUR);
    trip(Reclosed {
        breaker: recloser.clone(),
        inner: FAILING,
    });
    let automatic = CircuitBreaker::builder("bench-automatic")
        .wait_duration_in_open(HOUR)
        .automatic_transition_from_open_to_half_open(true)
        .build()
        .unwrap_or_else(|e| panic!("breakwater, the automatic transition: {e}"));
    trip(automatic.layer_with(FailOnError).layer(FAILING));
    vec![
        Entry::new(
            "breakwater",
            breakwater.layer_with(FailOnError).layer(OK),
            Expect::Failure,
        ),
        Entry::new(
            "tower-resilience-circuitbreaker",
            tower_resilience.layer(OK),
            Expect::Failure,
        ),
        Entry::new(
            "failsafe",
            Wrapped {
                breaker: failsafe,
                inner: OK,
            },
            Expect::Failure,
        ),
        Entry::new(
            "recloser",
            Reclosed {
                breaker: recloser,
                inner: OK,
            },
            Expect::Failure,
        ),
        Entry::new(
            "breakwater, automatic transition",
            automatic.layer_with(FailOnError).layer(OK),
            Expect::Failure,
        ),
    ]
}

/// Closed, a 60 s time window with slow-call detection (5 s), on one thread. recloser has no
/// time window; failsafe has one but no slow-call detection.
pub(crate) fn time_window() -> Vec<Entry> {
    vec![
        Entry::new("bare service", OK, Expect::Success),
        Entry::new(
            "breakwater",
            breakwater_time_window().layer_with(FailOnError).layer(OK),
            Expect::Success,
        ),
        Entry::new(
            "tower-resilience-circuitbreaker",
            tower_resilience(SlidingWindowType::TimeBased, WAIT).layer(OK),
            Expect::Success,
        ),
        Entry::new(
            "failsafe (no slow calls)",
            Wrapped {
                breaker: failsafe_time_window(),
                inner: OK,
            },
            Expect::Success,
        ),
    ]
}

/// A 30 s timeout around the bare service; needs a tokio runtime entered.
pub(crate) fn timeouts() -> Vec<Entry> {
    let timeout = Duration::from_secs(30);
    vec![
        Entry::new("bare service", OK, Expect::Success),
        Entry::new(
            "breakwater::TimeoutLayer",
            breakwater::TimeoutLayer::new(timeout)
                .without_override()
                .layer(OK),
            Expect::Success,
        ),
        Entry::new(
            "tower::timeout::TimeoutLayer",
            tower::timeout::TimeoutLayer::new(timeout).layer(OK),
            Expect::Success,
        ),
        Entry::new("bare service, waits once", WaitsOnce, Expect::Success),
        Entry::new(
            "breakwater::TimeoutLayer, waits once",
            breakwater::TimeoutLayer::new(timeout)
                .without_override()
                .layer(WaitsOnce),
            Expect::Success,
        ),
        Entry::new(
            "tower::timeout::TimeoutLayer, waits once",
            tower::timeout::TimeoutLayer::new(timeout).layer(WaitsOnce),
            Expect::Success,
        ),
    ]
}
