//! The peers, each set up like breakwater where it can be: a failure ratio of 50% over (the
//! closest it has to) a count window of 100 calls, 60 s open (an hour for the open rows).
//!
//! - tower-resilience-circuitbreaker: tower middleware; a count window of 100, at least 100
//!   calls, 50%; its default classifier (an error is a failure).
//! - failsafe: wraps futures (the `Wrapped` adapter); no count window, so its default policy
//!   (a success rate over a 30 s time window, or 5 consecutive failures) for the closed rows.
//! - recloser: wraps futures (the `Reclosed` adapter); a ring of 100 calls, 50%.
//! - seatbelt: tower middleware (feature `tower-service`); 50% of at least 100 calls (its
//!   minimum throughput), an error a failure (`RecoveryInfo::retry()`), a success not
//!   (`never()`), open for the same wait. What could not be matched: it has no count window,
//!   only a time window (its sampling duration, 1 s at the shortest); its half-open state
//!   probes progressively (its default) where breakwater lets 10 calls through; its rejection
//!   must be the service's own output, so the error is an enum (`SeatbeltError`) of the
//!   inner error or `Open`; and its circuit is made by each `layer` call (clones of the
//!   service share it), not held by a handle that several layers share.

use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::Duration;

use recloser::{AsyncRecloser, Recloser};
use seatbelt::breaker::Breaker;
use seatbelt::{RecoveryInfo, ResilienceContext};
use tick::Clock;
use tower::{Layer, Service};
use tower_resilience_circuitbreaker::{CircuitBreakerLayer, SlidingWindowType};

use crate::measure::{Req, Res};
use crate::services::Boom;

/// A count window of this many calls, and at least this many before the ratio counts.
pub(crate) const WINDOW: usize = 100;
/// How long a breaker stays open in the closed rows.
pub(crate) const WAIT: Duration = Duration::from_secs(60);
/// Long enough that a tripped breaker stays open through the whole run.
pub(crate) const HOUR: Duration = Duration::from_secs(3600);
/// The time window of the time-window rows.
pub(crate) const TIME_WINDOW: Duration = Duration::from_secs(60);
/// The slow-call threshold of the time-window rows (for the breakers that detect slow calls).
pub(crate) const SLOW: Duration = Duration::from_secs(5);
/// seatbelt's window where the others count the last 100 calls: its shortest sampling
/// duration (it raises anything shorter to a second), with a minimum throughput of 100 calls.
pub(crate) const SEATBELT_SAMPLING: Duration = Duration::from_secs(1);

// ---- tower-resilience-circuitbreaker ----

pub(crate) fn tower_resilience(window: SlidingWindowType, wait: Duration) -> CircuitBreakerLayer {
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

pub(crate) fn failsafe_default()
-> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync + 'static {
    // Its default policy: a success rate over a 30 s time window, or 5 consecutive failures.
    failsafe::Config::new().build()
}

pub(crate) fn failsafe_tripping()
-> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync + 'static {
    let policy =
        failsafe::failure_policy::consecutive_failures(5, failsafe::backoff::constant(HOUR));
    failsafe::Config::new().failure_policy(policy).build()
}

pub(crate) fn failsafe_time_window()
-> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync + 'static {
    let policy = failsafe::failure_policy::success_rate_over_time_window(
        0.5,
        WINDOW as u32,
        TIME_WINDOW,
        failsafe::backoff::constant(WAIT),
    );
    failsafe::Config::new().failure_policy(policy).build()
}

// ---- recloser ----

pub(crate) fn recloser(wait: Duration) -> AsyncRecloser {
    Recloser::custom()
        .error_rate(0.5)
        .closed_len(WINDOW)
        .half_open_len(10)
        .open_wait(wait)
        .build()
        .into()
}

// ---- seatbelt ----

/// seatbelt's answer, as its user would type it: the inner error, or the rejection its
/// `rejected_input_error` makes (its rejected output must have the service's output type).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SeatbeltError {
    /// The inner service failed.
    Inner(Boom),
    /// The breaker is open.
    Open,
}

/// seatbelt's breaker around `S` (a `Bare` or a `Switched`).
pub(crate) type Seatbelt<S> = Breaker<Req, Result<Res, SeatbeltError>, IntoSeatbeltError<S>>;

/// The inner service with its error mapped to [`SeatbeltError`] (free: its future is ready).
#[derive(Debug, Clone)]
pub(crate) struct IntoSeatbeltError<S>(S);

impl<S> Service<Req> for IntoSeatbeltError<S>
where
    S: Service<Req, Response = Res, Error = Boom, Future = Ready<Result<Res, Boom>>>,
{
    type Response = Res;
    type Error = SeatbeltError;
    type Future = Ready<Result<Res, SeatbeltError>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SeatbeltError>> {
        self.0.poll_ready(cx).map_err(SeatbeltError::Inner)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        ready(
            self.0
                .call(request)
                .into_inner()
                .map_err(SeatbeltError::Inner),
        )
    }
}

/// seatbelt's clock, as its users make it on tokio (its breaker only reads `Instant`s from
/// it). Needs a tokio runtime entered: it spawns the clock's timer driver there.
pub(crate) fn seatbelt_clock() -> Clock {
    Clock::new_tokio()
}

/// seatbelt's breaker around `inner`: 50% of at least 100 calls within `sampling` (its
/// window is a time window only), open for `wait`. Each `layer` call makes a circuit of its
/// own; clones of the service share it.
pub(crate) fn seatbelt<S>(
    clock: &Clock,
    sampling: Duration,
    wait: Duration,
    inner: S,
) -> Seatbelt<S>
where
    S: Service<Req, Response = Res, Error = Boom, Future = Ready<Result<Res, Boom>>>,
{
    let context: ResilienceContext<Req, Result<Res, SeatbeltError>> =
        ResilienceContext::new(clock).name("bench");
    Breaker::layer("bench", &context)
        .failure_threshold(0.5)
        .min_throughput(WINDOW as u32)
        .sampling_duration(sampling)
        .break_duration(wait)
        .recovery_with(|result: &Result<Res, SeatbeltError>, _| match result {
            Ok(_) => RecoveryInfo::never(),
            Err(_) => RecoveryInfo::retry(),
        })
        .rejected_input_error(|_, _| SeatbeltError::Open)
        .layer(IntoSeatbeltError(inner))
}
