//! A lock-free circuit breaker for any tower service.
//!
//! A breaker watches the outcomes of the calls it lets through. While **closed**, it records
//! them in a sliding window (the last N calls, or the calls of the last N seconds); once the
//! window holds [`minimum_calls`](Builder::minimum_calls), a failure rate or slow-call rate at or
//! above its threshold **opens** it. An open breaker rejects calls at once, with
//! [`CircuitOpen`], without touching the service (not even its `poll_ready`). When the wait in
//! the open state is over, the next call attempt moves it to **half-open**, where exactly
//! [`permitted_calls_in_half_open`](Builder::permitted_calls_in_half_open) probe calls go
//! through; when all their outcomes are in, their own window closes the breaker again or opens
//! it for another wait.
//!
//! Which results count as failures is the classifier's business (see
//! [`classify`](crate::classify)): by default for HTTP, `5xx` and every error are failures and
//! `4xx` is ignored, since a rejected card says nothing about the payment gateway's health.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use breakwater::{CircuitBreaker, CircuitOpen, CircuitState};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let breaker = CircuitBreaker::builder("pg-payment")
//!     .count_window(10)
//!     .minimum_calls(10)
//!     .failure_rate_threshold(50.0)
//!     .wait_duration_in_open(Duration::from_secs(30))
//!     .build()?;
//!
//! // A payment gateway that answers 500 to everything.
//! let mut client = ServiceBuilder::new()
//!     .layer(breaker.layer())
//!     .service(service_fn(|_: http::Request<()>| async {
//!         Ok::<_, std::io::Error>(http::Response::builder().status(500).body(()).unwrap())
//!     }));
//!
//! for _ in 0..10 {
//!     let response = client.ready().await?.call(http::Request::new(())).await?;
//!     assert_eq!(response.status(), 500);
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//!
//! let error = client.ready().await?.call(http::Request::new(())).await.unwrap_err();
//! assert!(error.is::<CircuitOpen>());
//! # Ok(())
//! # }
//! ```
//!
//! # Sharing, lifetime and cost
//!
//! A [`CircuitBreaker`] is a handle: cloning it, or making layers from it, shares the one
//! breaker. The breaker is owned by its handles, layers and services: once none is left, its
//! memory (configuration, window, name, subscribers, metric handles, every generation) is
//! given back, and its event streams end ([`RecvError::Closed`]). A call in flight does not
//! keep it alive: the outcome of a call that ends after its breaker is gone is discarded.
//!
//! Per call, the closed path updates no reference count: a service holds the breaker (one
//! `Arc`, so an axum-style clone per request costs one atomic update), and a call admitted
//! while the window is clean (closed, a count window of successes only, nobody timing calls,
//! no metrics asked for) reaches the breaker through a fixed-size slot instead, with the epoch
//! it was admitted in. Each call takes its layer's classifier with it
//! ([`Classify::for_call`](crate::classify::Classify::for_call)): for an
//! [`HttpClassifier`](crate::classify::http::HttpClassifier), the default rules or a view of
//! rules of its own, with no reference count either.
//! Slots (a breaker's state word and window) are recycled, not freed: a dropped breaker's slot
//! moves to a new epoch, so calls still holding it find their outcome stale, and waits in a
//! pool, reachable from a static, for the next breaker with the same window shape; the pool
//! never holds more slots of a shape than were in use at once. A call admitted any other way
//! (a window with failures in it, slow-call detection, a time window, a half-open probe,
//! per-call subscribers, metrics) holds its breaker in an `Arc` until it is recorded.
//!
//! A response future is the inner service's future plus 40 bytes (its permit and classifier;
//! an async caller moves it, so its size is paid on every call): no classifier by value (the
//! default [`HttpClassifier`](crate::classify::http::HttpClassifier) is one null pointer), no
//! copy of the request. A rejected call's [`CircuitOpen`] is boxed once (the box the
//! [`BoxError`](crate::BoxError) needs) and refers to nothing of the breaker; in the
//! [503 mode](CircuitBreakerLayer::respond_503) it is taken out of its box again to go in the
//! response's extensions, so a rejection there allocates twice. With
//! [`end_of_stream`](CircuitBreakerLayer::end_of_stream), the [`RecordingBody`] adds 64 bytes
//! to the inner body.
//!
//! A breaker takes about 1 KiB, plus 8 bytes per call of a count window or 16 per second of a
//! time window, each rounded up to the next power of two above twice the window's size (a
//! count window of 100 calls: 2 KiB more): build one per downstream at start-up (or through a
//! registry), not one per request. [`reconfigure`](CircuitBreaker::reconfigure) replaces the
//! configuration of a breaker in use (a new generation, which every handle and service
//! follows); the old generation is freed once no service holds it.
//!
//! [`RecvError::Closed`]: tokio::sync::broadcast::error::RecvError::Closed
//!
//! # Probes go where they can be used
//!
//! A layered service decides admission in `poll_ready`, as `tower::limit::ConcurrencyLimit`
//! does, and holds the decision until `call`. A half-open probe permit is taken only once the
//! inner service is ready: a service whose inner `poll_ready` is `Pending` (a client still
//! connecting) holds no probe, so another, ready service gets it, and a breaker with one probe
//! cannot be kept half-open by a service that cannot call. While the breaker is open the inner
//! service is not polled at all; fail fast still decides before `call` (the only probe taken,
//! `call` fails at once), and [`backpressure`](CircuitBreakerLayer::backpressure) still waits.
//!
//! # When an outcome is recorded
//!
//! By default, when the response (its head) arrives. With
//! [`end_of_stream`](CircuitBreakerLayer::end_of_stream), when the response body ends or
//! fails; a body dropped before its end records its head's outcome (a success head counts as a
//! success, timed to the drop), and a call whose future is dropped before its response records
//! nothing (and gives back a half-open permit). See [`AtEndOfStream`].
//!
//! On the closed path of a clean window a call makes no shared write: one load of the state
//! word when admitted, and when recorded a load of the state word and two of the window (a
//! success into a full window of successes changes nothing, so it is not written). A failure,
//! or a success into a window with failures in it, is one compare-and-swap. The clock is read
//! only where a setting needs it: slow-call detection, time windows and
//! `metrics_durations` (feature `metrics`) time each call; a count window without
//! them reads no clock while closed. A rejected call costs an atomic count and the boxed error
//! (which copies the breaker's name: no reference count), plus one clock read while open, to see whether the wait is over, unless
//! [`automatic_transition_from_open_to_half_open`](Builder::automatic_transition_from_open_to_half_open)
//! leaves that to a timer. BENCHMARKS.md has the figures, measured the way users call.
//!
//! # Differences from resilience4j
//!
//! The semantics follow resilience4j's `CircuitBreaker` except where noted:
//!
//! - Slow-call detection is off unless configured (see [`Builder`]).
//! - A half-open breaker decides once *all* its permitted probes are recorded.
//! - An outcome that arrives after the state it was admitted in has ended (a slow call admitted
//!   while closed that finishes after the breaker opened) is discarded: each admission carries
//!   the breaker's epoch, bumped on every transition.
//! - `not_permitted_calls` counts rejections since the breaker last opened (or was forced
//!   open), through half-open and until the next opening or [`reset`](CircuitBreaker::reset).
//! - Any state can be entered by hand with [`transition_to`](CircuitBreaker::transition_to); a
//!   transition to the current state does nothing.
//! - The wait in the open state has millisecond resolution, and ends when the clock reaches it.

mod body;
mod config;
mod coordinate;
mod error;
pub mod future;
mod generation;
mod handle;
mod health;
pub mod keyed;
mod layer;
pub(crate) mod observe;
mod permit;
mod policy;
mod recording;
mod reject;
mod service;
mod shared;
mod timer;
#[cfg(feature = "tower-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
pub mod tower_http;

pub use self::body::{ClassifyEnd, RecordingBody};
pub use self::config::{Builder, ConfigError};
pub use self::error::CircuitOpen;
pub use self::handle::{CircuitBreaker, WeakCircuitBreaker};
pub use self::health::{BreakerHealth, HealthReport, HealthStatus};
pub use self::keyed::KeyedCircuitBreakerLayer;
pub use self::layer::CircuitBreakerLayer;
pub use self::observe::events::{Event, EventKind, SubscriptionId};
pub use self::permit::CallPermit;
pub use self::policy::TransitionCause;
pub use self::policy::config::ExponentialBackoff;
#[cfg(breakwater_loom)]
#[doc(hidden)]
pub use self::policy::slot::forget_pooled_slots;
pub use self::policy::snapshot::MetricsSnapshot;
pub use self::policy::state::CircuitState;
pub use self::recording::{
    AtEndOfStream, AtResponse, EndOfStreamCall, Finish, HeadOutcome, RecordAt, ResponseCall,
};
pub use self::reject::{OnOpen, With503, WithError};
pub use self::service::CircuitBreakerService;
